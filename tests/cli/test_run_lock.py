"""Two `orchestrate run` on one repository: the repository lock is taken before the plan is read,
so a task is never run and committed twice, and the run refused names the one that holds it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import git, make_repo

CLI = "from orchestrator.cli.app import main; main()"
PLAN = "# Plan\n\n- [ ] T001 Write `a.txt`\n  - Verify: `test -f a.txt`\n"


def _project(tmp_path: Path, seconds: float) -> tuple[Path, Path]:
    repo = make_repo(tmp_path / "repo", {"plan.md": PLAN})
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"T001": [{"sleep": seconds}, {"write": "a.txt", "content": "a\n"}]}))
    return repo, script


def _start(repo: Path, script: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLI,
            "run",
            str(repo / "plan.md"),
            "--agent",
            "scripted",
            "--script",
            str(script),
        ],
        cwd=repo,
        env=env or dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _commits_of(repo: Path, task: str) -> int:
    raw = git(repo, "log", "--format=%(trailers:key=Orchestrate-Task,valueonly)%x1e")
    return sum(1 for r in raw.split("\x1e") if r.strip() == task)


def _run_ids(repo: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", CLI, "runs", "--repo", str(repo), "--json"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return [row["id"] for row in json.loads(done.stdout)]


def test_two_runs_started_together_commit_the_task_once_and_the_second_names_the_first(
    tmp_path: Path,
) -> None:
    repo, script = _project(tmp_path, 2.0)
    first, second = _start(repo, script), _start(repo, script)
    outputs = {p.pid: p.communicate(timeout=120) for p in (first, second)}
    codes = {p.pid: p.returncode for p in (first, second)}

    assert sorted(codes.values()) == [0, 2], outputs
    assert _commits_of(repo, "T001") == 1
    winner = next(pid for pid, code in codes.items() if code == 0)
    loser = next(pid for pid, code in codes.items() if code == 2)
    refusal = outputs[loser][1]
    assert len(refusal.strip().splitlines()) == 1, refusal
    assert "Traceback" not in refusal
    (run_id,) = _run_ids(repo)
    assert run_id in refusal, refusal
    assert f"pid {winner}" in refusal, refusal


def test_a_run_held_up_before_its_first_look_at_the_tree_does_not_repeat_a_task(tmp_path: Path) -> None:
    """Run B is held at its first `git status` (a slow disk, a busy machine) while run A carries out
    the whole plan. B read the plan before A ticked it: B must not run T001 again."""
    repo, script = _project(tmp_path, 0.2)
    gate = tmp_path / "gate"
    gate.mkdir()
    wrapper = tmp_path / "bin" / "git"
    wrapper.parent.mkdir()
    real_git = shutil.which("git")
    wrapper.write_text(
        "#!/bin/sh\n"
        # The subcommand may follow options (`git -c k=v status`).
        'for arg in "$@"; do [ "$arg" = status ] && break; done\n'
        f'if [ "$arg" = status ] && [ ! -e "{gate}/open" ]; then\n'
        f'  touch "{gate}/waiting"; n=0\n'
        f'  while [ ! -e "{gate}/open" ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done\n'
        "fi\n"
        f'exec "{real_git}" "$@"\n'
    )
    wrapper.chmod(0o755)
    held_env = {**os.environ, "PATH": f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}"}

    held = _start(repo, script, held_env)
    deadline = time.monotonic() + 60
    while not (gate / "waiting").exists():
        assert held.poll() is None, held.communicate()
        assert time.monotonic() < deadline, "run B never reached `git status`"
        time.sleep(0.02)
    other = _start(repo, script)
    other_out, other_err = other.communicate(timeout=120)
    (gate / "open").touch()
    held_out, held_err = held.communicate(timeout=120)

    assert _commits_of(repo, "T001") == 1, (other_err, held_err)
    # B took the lock before anything else: A, started while B was held, is the one refused.
    assert other.returncode == 2, other_err
    assert held.returncode == 0, held_err
    (run_id,) = _run_ids(repo)
    assert run_id in other_err, other_err
    assert f"pid {held.pid}" in other_err, other_err
