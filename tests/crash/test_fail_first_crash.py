"""A kill while a task's tests run at base (engine/fail_first.py), or just after their result is
journaled, resumes to the end an uninterrupted run reaches: the task committed once, with the same
fail-first result, and no scratch tree, worktree or branch left behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.engine.fail_first import CRASH_POINTS
from orchestrator.persistence.checkpoints import RunStore
from tests.conftest import git, make_repo, orchestrate

GREET = "def greet(name):\n    return f'Hello, {name}!'\n"
SHOUT = "\n\ndef shout(name):\n    return greet(name).upper()\n"
TESTS = {
    # Fails without the change: fail-first ok.
    "red-green": "import greet\n\nassert greet.shout('ann') == 'HELLO, ANN!'\n",
    # Passes without it: passed-at-base (under require, the first attempt fails; the script's
    # second attempt writes the red-green test).
    "passes-at-base": "import greet\n\nassert greet.greet('Ann') == 'Hello, Ann!'\n",
}

PLAN = """\
# Plan

## Phase 1: Work

- [ ] T001 Add `shout(name)` to `greet.py`, with a test
  - Verify: `python3 test_shout.py`
- [ ] T002 Add `notes.txt`
  - Verify: `test -f notes.txt`
"""


def _project(tmp_path: Path, first_test: str, config: str) -> tuple[Path, Path]:
    repo = make_repo(
        tmp_path / "repo",
        {"plan.md": PLAN, "greet.py": GREET, ".gitignore": "__pycache__/\n", "orchestrate.toml": config},
    )
    script: dict[str, Any] = {
        "T001": {
            "attempts": [
                [
                    {"append": "greet.py", "content": SHOUT},
                    {"write": "test_shout.py", "content": TESTS[first_test]},
                ],
                [{"write": "test_shout.py", "content": TESTS["red-green"]}],
            ]
        },
        "T002": [{"write": "notes.txt", "content": "notes\n"}],
    }
    script_path = tmp_path / "script.json"
    script_path.write_text(json.dumps(script))
    return repo, script_path


def _fail_first_results(repo: Path) -> list[str]:
    store = RunStore.for_repo(repo, Path("checkpoints"))
    return [str(r["result"]) for r in store.records(str(store.latest())) if r["type"] == "fail_first"]


@pytest.mark.parametrize(
    ("first_test", "mode", "final"),
    [
        ("red-green", "warn", "ok"),
        ("passes-at-base", "require", "ok"),
        ("passes-at-base", "warn", "passed-at-base"),
    ],
)
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_kill_at_base_resumes_exactly(
    tmp_path: Path, point: str, first_test: str, mode: str, final: str
) -> None:
    repo, script = _project(tmp_path, first_test, f'sandbox = "none"\nfail_first = "{mode}"\n')

    crashed = orchestrate(
        repo,
        *("run", "plan.md", "--script", str(script), "--branch", "feature"),
        env={"ORCHESTRATE_CRASH_AT": f"{point}:T001"},
    )
    assert crashed.returncode == 137, crashed.stderr
    if point == "mid_fail_first":  # killed while the scratch tree was in use
        assert any((repo / "checkpoints" / ".fail-first").rglob("test_shout.py"))

    resumed = orchestrate(repo, "resume")

    assert resumed.returncode == 0, resumed.stderr
    log = git(repo, "log", "--format=%(trailers:key=Orchestrate-Task,valueonly)", "feature").split()
    assert sorted(log) == ["T001", "T002"]  # each committed exactly once
    assert f"fail-first={final}" in git(
        repo, "log", "--format=%B", "--grep=Orchestrate-Task: T001", "feature"
    )
    assert (
        git(repo, "show", "feature:test_shout.py") + "\n"
        == TESTS["red-green" if mode == "require" else first_test]
    )
    assert _fail_first_results(repo)[-1] == final
    assert not (repo / "checkpoints" / ".fail-first").exists()
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert git(repo, "branch", "--format=%(refname:short)").split() == ["feature", "work"]
    assert git(repo, "status", "--porcelain") == ""
