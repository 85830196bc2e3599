"""A kill during a review, then resume: the task is checked and reviewed again, and ends as one
commit, exactly as an uninterrupted run ends it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.engine.crash import CRASH_ENV, REVIEW_CRASH_POINTS
from tests.conftest import git, make_repo, orchestrate
from tests.engine.test_review import ALL_MET, KIND, PLAN


def records(repo: Path, kind: str) -> list[dict[str, Any]]:
    [path] = (repo / "checkpoints").glob("*/journal.jsonl")
    return [r for line in path.read_text().splitlines() if (r := json.loads(line))["type"] == kind]


@pytest.mark.parametrize("point", REVIEW_CRASH_POINTS)
def test_a_kill_during_review_is_resumed_by_reviewing_again(point: str, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {".gitignore": "__pycache__/\n", "plan.md": PLAN})
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps({"task-1": {"attempts": [[{"write": "greet.py", "content": KIND}]], "reviews": [ALL_MET]}})
    )

    killed = orchestrate(repo, "run", "plan.md", "--script", str(script), env={CRASH_ENV: f"{point}:task-1"})
    assert killed.returncode == 137, killed.stderr
    before = len(records(repo, "review_round"))
    assert before == (1 if point == "after_review" else 0)
    assert records(repo, "task_verified") == []

    resumed = orchestrate(repo, "resume")
    assert resumed.returncode == 0, resumed.stderr
    after = records(repo, "review_round")
    assert len(after) == before + 1  # reviewed again
    assert after[-1]["outcome"] == "met"
    assert len(records(repo, "task_verified")) == 1
    log = git(repo, "log", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split()
    assert log == ["task-1"]
    assert "- [x] The greeting is polite" in (repo / "plan.md").read_text()
    assert (repo / "greet.py").read_text() == KIND
    assert git(repo, "status", "--porcelain") == ""
