"""`orchestrate run --agent claude-code` end to end: the installed CLI in a subprocess, with a fake
`claude` replaying what the real one printed (tests/fixtures/claude_code), in a real repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import git, make_repo, orchestrate
from tests.fakes.claude_cli import FIXTURES, calls, result, script

PLAN = """\
# Plan

## Phase 1: Files

- [ ] T001 Create `hello.py`
  - Verify: `test -f hello.py`
- [ ] T002 Create `notes.txt`
  - Verify: `test -f notes.txt`
"""
EDITS = {"hello.py": "print('hello')\n", "notes.txt": "notes\n"}
# The commands the fake claude logs to its own folder, which bubblewrap would keep read-only.
UNCONFINED = {"ORCHESTRATE_SANDBOX": "none"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"plan.md": PLAN, ".gitignore": "checkpoints/\n"})


def tasks_committed(repo: Path) -> list[str]:
    return git(repo, "log", "--reverse", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split()


def fixture_lines(name: str) -> list[str]:
    return (FIXTURES / f"{name}.jsonl").read_text().splitlines()


def test_an_outage_stops_the_run_resumably_and_burns_no_attempt(repo: Path, fake_bin: Path) -> None:
    script(fake_bin, fixture_lines("overloaded"), exit=1)
    run = ["run", "plan.md", "--agent", "claude-code"]
    stopped = orchestrate(repo, *run, "--max-attempts", "1", env=UNCONFINED)
    assert stopped.returncode == 3, stopped.stderr  # stopped, resumable
    assert "the agent backend is unavailable: the API was unavailable for claude-code" in stopped.stderr
    assert "orchestrate resume" in stopped.stderr
    assert "0 done, 0 failed, 0 skipped, 2 remaining" in stopped.stderr
    assert tasks_committed(repo) == []

    # The API is back: the same attempt budget (1) still does both tasks.
    script(fake_bin, [result(result="done")], edits=EDITS)
    resumed = orchestrate(repo, "resume", "--agent", "claude-code", env=UNCONFINED)
    assert resumed.returncode == 0, resumed.stderr
    assert tasks_committed(repo) == ["T001", "T002"]


def test_a_missing_login_is_refused_before_the_first_task(repo: Path, fake_bin: Path) -> None:
    script(fake_bin, [result()], auth={"loggedIn": False, "authMethod": "none"}, edits=EDITS)
    refused = orchestrate(repo, "run", "plan.md", "--agent", "claude-code", env=UNCONFINED)
    assert refused.returncode == 2
    assert "claude-code is not logged in" in refused.stderr
    assert "ANTHROPIC_API_KEY" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert calls(fake_bin) == []  # no session started
    assert tasks_committed(repo) == []


def test_a_rejected_key_is_refused_before_the_first_task(repo: Path, fake_bin: Path) -> None:
    bad_key = json.loads(fixture_lines("bad_key")[-1])
    script(fake_bin, [result()], probe=bad_key, edits=EDITS)
    refused = orchestrate(repo, "run", "plan.md", "--agent", "claude-code", env=UNCONFINED)
    assert refused.returncode == 2
    assert "claude-code cannot use its key (401: Invalid API key" in refused.stderr
    assert calls(fake_bin) == []


def test_work_finished_past_the_budget_is_committed_and_the_run_stops(repo: Path, fake_bin: Path) -> None:
    # The session costs $0.13 of the $0.05 left: its work is done, so it is verified and committed;
    # the next task does not start.
    script(fake_bin, [result(result="done", total_cost_usd=0.13)], edits=EDITS)
    run = ["run", "plan.md", "--agent", "claude-code"]
    stopped = orchestrate(repo, *run, "--max-cost", "0.05", env=UNCONFINED)
    assert stopped.returncode == 3, stopped.stderr  # stopped, resumable
    assert "budget reached: spent $0.13 of --max-cost $0.05" in stopped.stderr
    assert tasks_committed(repo) == ["T001"]
    (session,) = calls(fake_bin)
    argv = session["argv"]
    assert argv[argv.index("--max-budget-usd") + 1] == "0.0500"
    assert "--model" not in argv  # the user chose none
