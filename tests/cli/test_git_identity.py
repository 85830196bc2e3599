"""The git identity commits need is checked in the pre-flight, before any agent is paid for; an
identity lost after work was done stops the run resumably (exit 1), and resume commits the work
once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import GIT_IDENTITY, git, make_repo

CLI = "from orchestrator.cli.app import main; main()"
PLAN = "# Plan\n\n- [ ] T001 Write `a.txt`\n  - Verify: `test -f a.txt`\n"


@pytest.fixture
def no_identity(tmp_path: Path) -> dict[str, str]:
    """An environment where git knows no identity: none in the environment, none in any config,
    and no guessing from the host name (user.useConfigOnly)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tuseConfigOnly = true\n")
    env = {k: v for k, v in os.environ.items() if k not in GIT_IDENTITY}
    env.update(HOME=str(home), GIT_CONFIG_GLOBAL=str(home / ".gitconfig"), GIT_CONFIG_NOSYSTEM="1")
    return env


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def _project(tmp_path: Path, steps: list[dict[str, object]]) -> tuple[Path, Path]:
    repo = make_repo(tmp_path / "repo", {"plan.md": PLAN})
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"T001": steps}))
    return repo, script


def test_a_run_without_a_git_identity_is_refused_before_any_agent_call(
    tmp_path: Path, no_identity: dict[str, str]
) -> None:
    repo, script = _project(tmp_path, [{"write": "agent-was-here.txt", "content": "paid\n"}])
    head = git(repo, "rev-parse", "HEAD")

    done = _cli(no_identity, repo, "run", "plan.md", "--agent", "scripted", "--script", str(script))

    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "git config user.email" in lines[0]
    assert "git config user.name" in lines[0]
    assert not (repo / "agent-was-here.txt").exists()
    assert git(repo, "rev-parse", "HEAD") == head
    assert _cli(no_identity, repo, "runs", "--json").stdout.strip() == "[]"


def test_resume_without_a_git_identity_is_refused_before_any_agent_call(
    tmp_path: Path, no_identity: dict[str, str]
) -> None:
    repo, script = _project(tmp_path, [{"write": "a.txt", "content": "a\n"}])
    git(repo, "config", "user.name", "Repo User")
    git(repo, "config", "user.email", "repo@example.invalid")
    crashed = _cli(
        {**no_identity, "ORCHESTRATE_CRASH_AT": "after_start:T001"},
        repo,
        "run", "plan.md", "--agent", "scripted", "--script", str(script),
    )  # fmt: skip
    assert crashed.returncode == 137, crashed.stderr
    git(repo, "config", "--unset", "user.email")

    done = _cli(no_identity, repo, "resume")

    assert done.returncode == 2, done.stderr
    assert "git config user.email" in done.stderr.strip().splitlines()[-1]
    assert not (repo / "a.txt").exists()


def _started(repo: Path) -> bool:
    """Whether the agent's first step is done: in place, or in the task's worktree under the run's
    state directory (which the run makes and removes folders in as it goes: a walk may race it)."""
    if (repo / "started.txt").is_file():
        return True
    try:
        return any(True for _ in (repo / "checkpoints").rglob("started.txt"))
    except OSError:
        return False


@pytest.mark.parametrize("parallel", [1, 2])
def test_an_identity_lost_mid_run_is_a_resumable_stop_and_resume_commits_once(
    tmp_path: Path, no_identity: dict[str, str], parallel: int
) -> None:
    repo, script = _project(
        tmp_path,
        [{"write": "started.txt", "content": "x\n"}, {"sleep": 2.0}, {"write": "a.txt", "content": "a\n"}],
    )
    # The user's own (global) configuration: the repository's .git/config changing during an
    # agent's step would be taken for the agent's tampering (and put back).
    global_config = Path(no_identity["GIT_CONFIG_GLOBAL"])
    without = global_config.read_text()
    with_identity = without + "\tname = Global User\n\temail = global@example.invalid\n"
    global_config.write_text(with_identity)
    run = subprocess.Popen(
        [sys.executable, "-c", CLI, "run", "plan.md", "--agent", "scripted", "--script", str(script)]
        + ["--parallel", str(parallel)],
        cwd=repo,
        env=no_identity,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    try:
        while not _started(repo):
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
    except BaseException:
        run.kill()
        run.communicate()
        raise
    global_config.write_text(without)  # while the agent works
    _, err = run.communicate(timeout=120)

    assert run.returncode == 3, err  # stopped, resumable
    assert "Traceback" not in err
    assert "git config user.email" in err
    assert "orchestrate resume" in err
    global_config.write_text(with_identity)
    resumed = _cli(no_identity, repo, "resume")
    assert resumed.returncode == 0, resumed.stderr
    raw = git(repo, "log", "--format=%(trailers:key=Orchestrate-Task,valueonly)%x1e")
    assert [r.strip() for r in raw.split("\x1e") if r.strip()] == ["T001"]
    assert (repo / "a.txt").read_text() == "a\n"
