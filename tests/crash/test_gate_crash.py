"""Kills at the human gates' steps, then resume (or the same command again): the run ends as an
uninterrupted one does. A task stopped for a human stays stopped; an accept a kill cut short ends
as one commit carrying its trailers."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.engine.acceptance import ACCEPT_CRASH_POINTS
from tests.cli.test_human_gates import (
    ATTESTER,
    NEEDS_HUMAN_EXIT,
    commit_trailers,
    journal,
    project,
    run,
    task_commits,
)
from tests.conftest import git, orchestrate


@pytest.mark.parametrize("parallel", ["1", "2"])
def test_a_kill_after_needs_human_then_resume_keeps_it_waiting(tmp_path: Path, parallel: str) -> None:
    repo, script = project(tmp_path)
    code, out = run(
        repo, script, "--parallel", parallel, env={"ORCHESTRATE_CRASH_AT": "after_needs_human:T002"}
    )
    assert code == 137, out
    for _ in range(2):
        resumed = orchestrate(repo, "resume")
        assert resumed.returncode == NEEDS_HUMAN_EXIT, resumed.stdout + resumed.stderr
        assert sorted(task_commits(repo)) == ["T001", "T003"]
    records = journal(repo)
    assert [r["task"] for r in records if r["type"] == "task_needs_human"] == ["T002"]
    assert not [r for r in records if r["type"] == "task_running" and r["task"] in ("T002", "T004")]
    assert git(repo, "status", "--porcelain") == ""
    assert orchestrate(repo, "accept", "plan.md", "T002").returncode == 0
    done = orchestrate(repo, "resume")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(task_commits(repo)) == ["T001", "T002", "T003", "T004"]


@pytest.mark.parametrize("point", ACCEPT_CRASH_POINTS)
@pytest.mark.parametrize("then", ["resume", "accept"])
def test_a_kill_during_accept_ends_as_one_commit(tmp_path: Path, point: str, then: str) -> None:
    repo, script = project(tmp_path)
    assert run(repo, script)[0] == NEEDS_HUMAN_EXIT
    killed = orchestrate(repo, "accept", "plan.md", "T002", env={"ORCHESTRATE_CRASH_AT": f"{point}:T002"})
    assert killed.returncode == 137, killed.stdout + killed.stderr
    if then == "accept":  # the same command again finishes it
        again = orchestrate(repo, "accept", "plan.md", "T002")
        assert again.returncode == 0, again.stdout + again.stderr
        assert task_commits(repo) == ["T001", "T003", "T002"]
    resumed = orchestrate(repo, "resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert task_commits(repo) == ["T001", "T003", "T002", "T004"]
    assert commit_trailers(repo, "HEAD~1")["Orchestrate-Attested-By"] == ATTESTER
    assert git(repo, "show", "--name-only", "--format=", "HEAD~1").split() == ["plan.md"]
    assert "- [x] T002" in (repo / "plan.md").read_text()
    assert git(repo, "status", "--porcelain") == ""
