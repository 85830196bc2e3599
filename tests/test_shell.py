from __future__ import annotations

import time
from pathlib import Path

from orchestrator.tools.shell import run_shell


def test_exit_code_and_interleaved_output(tmp_path: Path) -> None:
    result = run_shell("echo out; echo err >&2; exit 3", tmp_path, timeout=10)
    assert result.exit_code == 3
    assert not result.ok
    assert "out" in result.output
    assert "err" in result.output


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    start = time.monotonic()
    result = run_shell(f"(sleep 3; touch {marker}) & sleep 30", tmp_path, timeout=0.5)
    assert result.timed_out
    assert result.exit_code == 124
    assert time.monotonic() - start < 5
    time.sleep(3.5)
    assert not marker.exists(), "a grandchild outlived the timeout"


def test_long_output_keeps_head_and_tail(tmp_path: Path) -> None:
    result = run_shell("seq 1 100000", tmp_path, timeout=10, output_limit=2000)
    assert result.truncated
    assert result.output.startswith("1\n")
    assert result.output.rstrip().endswith("100000")
    assert "characters cut" in result.output
