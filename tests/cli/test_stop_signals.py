"""SIGTERM and SIGHUP stop a run as the first Ctrl-C does; after any end of orchestrate, SIGKILL
included, nothing it started keeps running: a writer an agent step, a verification command or the
command agent left behind in a session of its own dies with the step, and one a SIGKILL left
behind is killed by `resume` before it touches the tree. Real `orchestrate` processes."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.tools.processes import kill_leftovers, working_for
from orchestrator.tools.sandbox import SandboxUnavailable, detect_sandbox
from tests.conftest import git, make_repo

ORCHESTRATE = str(Path(sys.executable).parent / "orchestrate")

# The first call leaves a writer behind, in a session of its own, and waits; later calls (on
# resume) find leak.txt and pass at once.
LEAK_SH = """\
[ -f leak.txt ] && exit 0
setsid sh -c 'while true; do date >> leak.txt; sleep 0.1; done' &
sleep "$1"
"""

PLAN = """\
# Leaky plan

- [ ] T001 Leave a writer behind
  - Verify: `{verify}`
"""

SOURCES = ("agent", "verify", "command")


def _project(tmp_path: Path, source: str, wait: float) -> tuple[Path, list[str]]:
    """A repository whose one task leaves a writer behind from `source`; the `run` arguments."""
    leak = f"sh leak.sh {wait:g}"
    repo = make_repo(
        tmp_path / "repo",
        {"plan.md": PLAN.format(verify=leak if source == "verify" else "true"), "leak.sh": LEAK_SH},
    )
    with open(repo / ".git" / "info" / "exclude", "a") as f:
        f.write("leak.txt\n")  # the writer's file is no one's change to the tree
    if source == "command":
        return repo, ["--agent", "command", "--agent-command", leak]
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"T001": [{"run": leak}] if source == "agent" else []}))
    return repo, ["--agent", "scripted", "--script", str(script)]


def _env(sandbox: str) -> dict[str, str]:
    return {**os.environ, "ORCHESTRATE_SANDBOX": sandbox}


def _start(repo: Path, args: list[str], sandbox: str = "none") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [ORCHESTRATE, "run", str(repo / "plan.md"), *args],
        cwd=repo,
        env=_env(sandbox),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # our signals go to orchestrate alone, as `kill PID` sends them
    )


def _orchestrate(repo: Path, *args: str, sandbox: str = "none") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ORCHESTRATE, *args], cwd=repo, env=_env(sandbox), capture_output=True, text=True, timeout=120
    )


def _wait_for_leak(repo: Path, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    leak = repo / "leak.txt"
    deadline = time.monotonic() + timeout
    while not leak.exists() or leak.stat().st_size == 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"the writer never started (orchestrate exited {proc.returncode}):\n{err}")
        time.sleep(0.02)


def _growing(path: Path) -> bool:
    time.sleep(0.3)  # a write under way when its writer was killed lands
    before = path.stat().st_size
    time.sleep(0.6)
    return path.stat().st_size != before


def _run_id(repo: Path) -> str:
    listed = _orchestrate(repo, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) == 1, rows
    return str(rows[0]["id"])


def _committed_tasks(repo: Path) -> list[str]:
    return git(repo, "log", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split()


def _sandbox_or_skip(sandbox: str) -> None:
    if sandbox == "bubblewrap":
        try:
            detect_sandbox("bubblewrap")
        except SandboxUnavailable as exc:
            pytest.skip(str(exc))


@pytest.mark.parametrize(
    ("sig", "source"),
    [(signal.SIGTERM, s) for s in SOURCES] + [(signal.SIGHUP, "agent")],
    ids=lambda v: v.name if isinstance(v, signal.Signals) else v,
)
def test_a_stop_signal_stops_after_the_step_and_leaves_nothing_running(
    tmp_path: Path, sig: signal.Signals, source: str
) -> None:
    repo, args = _project(tmp_path, source, wait=2)
    proc = _start(repo, args)
    _wait_for_leak(repo, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err  # stopped, resumable
    assert "stopping after the current step" in err
    # The way to abort is named whatever the first signal was (not "press Ctrl-C again").
    assert "a second stop signal (Ctrl-C, SIGTERM or SIGHUP) aborts" in err
    assert "orchestrate resume" in err
    run_id = _run_id(repo)
    try:
        assert not _growing(repo / "leak.txt"), "the writer outlived the stop"
        assert working_for(run_id) == []
    finally:
        kill_leftovers(run_id)

    resumed = _orchestrate(repo, "resume", *args)
    assert resumed.returncode == 0, resumed.stderr
    assert "killed" not in resumed.stderr  # nothing was left to kill
    assert _committed_tasks(repo) == ["T001"]


def test_a_second_signal_of_another_kind_aborts_at_once_and_leaves_nothing_running(tmp_path: Path) -> None:
    repo, args = _project(tmp_path, "agent", wait=60)
    proc = _start(repo, args)
    _wait_for_leak(repo, proc)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err  # stopped, resumable
    assert "aborted by a second stop signal" in err
    assert "Ctrl-C" not in err.replace("(Ctrl-C, SIGTERM or SIGHUP)", "")
    assert time.monotonic() - started < 30  # not the step's 60 s
    run_id = _run_id(repo)
    try:
        assert not _growing(repo / "leak.txt")
        assert working_for(run_id) == []
    finally:
        kill_leftovers(run_id)
    resumed = _orchestrate(repo, "resume", *args)
    assert resumed.returncode == 0, resumed.stderr
    assert _committed_tasks(repo) == ["T001"]


def test_a_hangup_of_the_terminal_stops_gracefully(tmp_path: Path) -> None:
    # On a real terminal that goes away: orchestrate is told by SIGHUP, and every write to the
    # terminal fails from then on; the stop must still be the graceful one.
    repo, args = _project(tmp_path, "agent", wait=2)
    pid, master = pty.fork()
    if pid == 0:  # the child: orchestrate on the terminal's slave side
        try:
            os.chdir(repo)
            os.execve(ORCHESTRATE, [ORCHESTRATE, "run", str(repo / "plan.md"), *args], _env("none"))
        finally:
            os._exit(127)
    try:
        deadline = time.monotonic() + 30
        while not (repo / "leak.txt").exists():
            assert time.monotonic() < deadline, "the writer never started"
            try:
                os.read(master, 1 << 16)  # keep the terminal drained
            except OSError:
                break
        os.close(master)  # the terminal hangs up: SIGHUP to orchestrate
        master = -1
        _, status = os.waitpid(pid, 0)
        pid = 0
    finally:
        if master >= 0:
            os.close(master)
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3  # stopped, resumable
    run_id = _run_id(repo)
    try:
        assert not _growing(repo / "leak.txt")
        assert working_for(run_id) == []
    finally:
        kill_leftovers(run_id)
    shown = _orchestrate(repo, "show", run_id)
    assert "stopped on request" in shown.stdout + shown.stderr
    resumed = _orchestrate(repo, "resume", *args)
    assert resumed.returncode == 0, resumed.stderr
    assert _committed_tasks(repo) == ["T001"]


@pytest.mark.parametrize("source", SOURCES)
def test_resume_kills_what_a_sigkilled_run_left_before_it_touches_the_tree(
    tmp_path: Path, source: str
) -> None:
    repo, args = _project(tmp_path, source, wait=60)
    proc = _start(repo, args)
    _wait_for_leak(repo, proc)
    proc.kill()
    proc.communicate(timeout=30)
    run_id = _run_id(repo)
    try:
        assert _growing(repo / "leak.txt"), "nothing was left running: the test proves nothing"

        resumed = _orchestrate(repo, "resume", *args)
        assert resumed.returncode == 0, resumed.stderr
        assert not _growing(repo / "leak.txt"), "the writer outlived the resume"
        # Said, and said first: before the run touched anything.
        first = resumed.stderr.lstrip().splitlines()[0]
        assert "warning: killed pid" in first, resumed.stderr
        assert "left running by an earlier orchestrate of this run" in first, resumed.stderr
        killed = [line for line in resumed.stderr.splitlines() if "left running by an earlier" in line]
        assert any("while true" in line for line in killed), resumed.stderr
        assert any("sleep 60" in line for line in killed), resumed.stderr
        assert working_for(run_id) == []
        assert _committed_tasks(repo) == ["T001"]
        assert git(repo, "status", "--porcelain") == ""
    finally:
        kill_leftovers(run_id)


@pytest.mark.parametrize("source", ["agent", "verify"])
def test_under_bubblewrap_a_sigkill_ends_the_sandbox_with_orchestrate(tmp_path: Path, source: str) -> None:
    _sandbox_or_skip("bubblewrap")
    repo, args = _project(tmp_path, source, wait=60)
    proc = _start(repo, args, sandbox="bubblewrap")
    _wait_for_leak(repo, proc)
    proc.kill()
    proc.communicate(timeout=30)
    run_id = _run_id(repo)
    try:
        assert not _growing(repo / "leak.txt"), "the sandbox outlived orchestrate"
        assert working_for(run_id) == []
    finally:
        kill_leftovers(run_id)
    resumed = _orchestrate(repo, "resume", *args, sandbox="bubblewrap")
    assert resumed.returncode == 0, resumed.stderr
    assert _committed_tasks(repo) == ["T001"]


PARALLEL_PLAN = """\
# Side by side

- [ ] T001 [P] One
  - Verify: `true`
- [ ] T002 [P] Two
  - Verify: `true`
"""


def test_an_aborted_parallel_run_leaves_nothing_running(tmp_path: Path) -> None:
    # Two tasks side by side, each in its own worktree and thread, each leaving a writer behind:
    # the abort does not wait for the threads, yet what they started dies with the run.
    repo = make_repo(tmp_path / "repo", {"plan.md": PARALLEL_PLAN})
    leaks = {t: tmp_path / f"leak-{t}.txt" for t in ("T001", "T002")}
    steps = {
        t: {
            "attempts": [
                [{"run": f"setsid sh -c 'while true; do date >> {leak}; sleep 0.1; done' & sleep 60"}],
                [],
            ]
        }
        for t, leak in leaks.items()
    }
    script = tmp_path / "script.json"
    script.write_text(json.dumps(steps))
    args = ["--agent", "scripted", "--script", str(script), "--parallel", "2"]
    proc = _start(repo, args)
    deadline = time.monotonic() + 30
    while not all(p.exists() for p in leaks.values()):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the writers never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err  # stopped, resumable
    assert "aborted" in err
    run_id = _run_id(repo)
    try:
        assert not any(_growing(p) for p in leaks.values()), "a thread's writer outlived the run"
        assert working_for(run_id) == []
    finally:
        kill_leftovers(run_id)
    resumed = _orchestrate(repo, "resume", *args[:-2])  # --parallel is the run's own
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(_committed_tasks(repo)) == ["T001", "T002"]
