"""Whole-tree kills: what a command starts dies with it, even after setsid, even orphaned, even
after orchestrate itself was SIGKILLed (found again by its mark), and under bubblewrap even with
its marks wiped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.tools import processes
from orchestrator.tools.sandbox import SandboxUnavailable, detect_sandbox
from orchestrator.tools.shell import run_shell

LEAK = "while true; do date >> leak.txt; sleep 0.05; done"


def _wait_for(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or path.stat().st_size == 0:
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def _growing(path: Path) -> bool:
    """Whether something still appends to `path` (its writer sleeps 0.05 s between lines)."""
    time.sleep(0.2)  # a write already under way when its writer was killed lands
    before = path.stat().st_size
    time.sleep(0.5)
    return path.stat().st_size != before


def test_run_shell_kills_a_setsid_grandchild_left_behind(tmp_path: Path) -> None:
    result = run_shell(f"setsid sh -c '{LEAK}' & sleep 0.3", tmp_path, timeout=30)
    assert result.ok
    assert not _growing(tmp_path / "leak.txt")


def test_run_shell_timeout_kills_a_setsid_grandchild(tmp_path: Path) -> None:
    result = run_shell(f"setsid sh -c '{LEAK}' & sleep 30", tmp_path, timeout=0.5)
    assert result.timed_out
    assert not _growing(tmp_path / "leak.txt")


def test_run_shell_interrupted_kills_its_tree(tmp_path: Path) -> None:
    # A second Ctrl-C arrives as KeyboardInterrupt wherever the main thread waits.
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_shell(f"setsid sh -c '{LEAK}' & sleep 30", tmp_path, timeout=30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not _growing(tmp_path / "leak.txt")


def test_kill_tree_finds_an_orphan_that_left_the_session(tmp_path: Path) -> None:
    tree = processes.spawn(["bash", "-c", f"setsid sh -c '{LEAK}' &"], cwd=tmp_path, env=None)
    assert tree.popen.wait(timeout=10) == 0
    _wait_for(tmp_path / "leak.txt")
    killed = processes.kill_tree(tree)
    assert any("while true" in k.command for k in killed), killed
    assert not _growing(tmp_path / "leak.txt")


def test_kill_tree_finds_a_descendant_that_wiped_its_marks_while_its_parent_lives(tmp_path: Path) -> None:
    tree = processes.spawn(
        ["bash", "-c", f"env -i PATH=\"$PATH\" setsid sh -c '{LEAK}' & sleep 30"], cwd=tmp_path, env=None
    )
    _wait_for(tmp_path / "leak.txt")
    processes.kill_tree(tree)
    tree.popen.wait(timeout=10)
    assert not _growing(tmp_path / "leak.txt")


_STARTER = """
import sys, time
from pathlib import Path
from orchestrator.tools.processes import tag_children
from orchestrator.tools.shell import run_shell
from orchestrator.tools.sandbox import detect_sandbox
sandbox = detect_sandbox(sys.argv[3])
tag_children(sys.argv[1])
run_shell(sys.argv[2], cwd=Path.cwd(), timeout=120, sandbox=sandbox)
"""


def _start_and_sigkill(tmp_path: Path, run_id: str, command: str, sandbox: str = "none") -> None:
    """A process that starts `command` for run `run_id`, SIGKILLed once the command writes."""
    starter = subprocess.Popen(
        [sys.executable, "-c", _STARTER, run_id, command, sandbox],
        cwd=tmp_path,
        start_new_session=True,  # a test's kill must not reach pytest's own group
    )
    try:
        _wait_for(tmp_path / "leak.txt")
    finally:
        starter.kill()
        starter.wait()


def test_kill_leftovers_finds_what_a_sigkilled_starter_left(tmp_path: Path) -> None:
    run_id = f"test-{os.getpid()}-{time.monotonic_ns()}"
    _start_and_sigkill(tmp_path, run_id, f"setsid sh -c '{LEAK}' & sleep 60")
    assert _growing(tmp_path / "leak.txt"), "nothing was left running: the test proves nothing"
    killed = processes.kill_leftovers(run_id)
    assert any("while true" in k.command for k in killed), killed
    assert any(k.command.startswith("sleep 60") for k in killed), killed
    assert not _growing(tmp_path / "leak.txt")
    assert processes.kill_leftovers(run_id) == []


def test_kill_leftovers_leaves_other_runs_alone(tmp_path: Path) -> None:
    mine, other = f"mine-{time.monotonic_ns()}", f"other-{time.monotonic_ns()}"
    _start_and_sigkill(tmp_path, other, f"setsid sh -c '{LEAK}' & sleep 60")
    try:
        assert processes.kill_leftovers(mine) == []
        assert _growing(tmp_path / "leak.txt")
    finally:
        processes.kill_leftovers(other)


def test_bubblewrap_ends_everything_inside_when_its_starter_is_sigkilled(tmp_path: Path) -> None:
    # Nothing of ours kills here: --die-with-parent and the PID namespace must, even for a
    # process that wiped its marks and left the session.
    try:
        detect_sandbox("bubblewrap")
    except SandboxUnavailable as exc:
        pytest.skip(str(exc))
    _start_and_sigkill(
        tmp_path, f"bwrap-{time.monotonic_ns()}", f"env -i setsid sh -c '{LEAK}' & sleep 60", "bubblewrap"
    )
    assert not _growing(tmp_path / "leak.txt")
