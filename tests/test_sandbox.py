from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator.tools.sandbox import Sandbox, detect_sandbox

bubblewrap = detect_sandbox("auto")
needs_bwrap = pytest.mark.skipif(bubblewrap.kind != "bubblewrap", reason=bubblewrap.warning or "no bwrap")


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=30, check=False)


@needs_bwrap
def test_workspace_is_writable_and_the_rest_is_not(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    script = f"echo made > made.txt && (echo x > {outside}/escape.txt) 2>/dev/null; echo done"
    done = _run(bubblewrap.wrap(["bash", "-c", script], work), work)
    assert done.returncode == 0, done.stderr
    assert (work / "made.txt").read_text() == "made\n"
    assert not (outside / "escape.txt").exists()


@needs_bwrap
def test_network_is_off(tmp_path: Path) -> None:
    probe = "import socket; socket.create_connection(('127.0.0.1', 9), timeout=2)"
    inside = _run(bubblewrap.wrap(["python3", "-c", probe], tmp_path), tmp_path)
    assert inside.returncode != 0
    assert "Network is unreachable" in inside.stderr or "Connection refused" in inside.stderr


@needs_bwrap
def test_git_directory_is_read_only(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    done = _run(bubblewrap.wrap(["bash", "-c", "touch .git/x"], tmp_path), tmp_path)
    assert done.returncode != 0
    assert not (tmp_path / ".git" / "x").exists()


def test_none_leaves_the_command_alone(tmp_path: Path) -> None:
    assert Sandbox("none").wrap(["true"], tmp_path) == ["true"]
    assert detect_sandbox("none").warning == ""
