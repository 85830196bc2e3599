"""--parallel N: tasks side by side in git worktrees, brought back onto the run's branch one at a
time, in real repositories with the scripted agent and real verification commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.domain.events import (
    Event,
    ListReporter,
    RunFinished,
    TaskFinished,
    TaskRetrying,
    TaskStarted,
)
from orchestrator.domain.state import RunStatus, TaskStatus
from orchestrator.engine.session import resume_run, start_run
from orchestrator.engine.stop import StopToken
from orchestrator.persistence.checkpoints import RunStore
from orchestrator.persistence.repo import GitRepo
from orchestrator.planfile import parse_plan
from tests.conftest import git
from tests.engine.conftest import write_project

FAN_PLAN = """\
# Fan-out

## Phase 1: Base

- [ ] T001 Write `base.txt`
  - Verify: `test -f base.txt`

## Phase 2: Parts

- [ ] T002 [P] Write `a.txt`
  - Verify: `grep -q a a.txt`
- [ ] T003 [P] Write `b.txt`
  - Verify: `grep -q b b.txt`
- [ ] T004 [P] Write `c.txt`
  - Verify: `grep -q c c.txt`

## Phase 3: Join

- [ ] T005 Write `all.txt`
  - Verify: `test -f all.txt && test -f a.txt && test -f b.txt && test -f c.txt`
"""

FAN_SCRIPT: dict[str, Any] = {
    "T001": [{"write": "base.txt", "content": "base\n"}],
    "T002": [{"write": "a.txt", "content": "a\n"}, {"sleep": 0.3}],
    "T003": [{"write": "b.txt", "content": "b\n"}, {"sleep": 0.2}],
    "T004": [{"write": "c.txt", "content": "c\n"}, {"sleep": 0.1}],
    "T005": [{"write": "all.txt", "content": "all\n"}],
}


def _commits(repo: Path) -> list[str]:
    raw = git(repo, "log", "--reverse", "--format=%(trailers:key=Orchestrate-Task,valueonly)%x1e")
    return [r.strip() for r in raw.split("\x1e") if r.strip()]


def _run(plan: Path, script: Path, parallel: int = 3, **overrides: Any) -> tuple[Any, ListReporter]:
    reporter = ListReporter()
    settings = {"agent": "scripted", "script": script, "parallel": parallel, **overrides}
    return start_run(plan, settings, reporter), reporter


def _nothing_left_behind(repo: Path) -> None:
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert git(repo, "for-each-ref", "refs/heads/orchestrate/") == ""
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    leftovers = repo / "checkpoints" / ".worktrees"
    assert not leftovers.exists() or not any(leftovers.rglob("*"))


def _started(events: list[Event]) -> dict[str, TaskStarted]:
    return {e.task_id: e for e in events if isinstance(e, TaskStarted)}


def test_parallel_tasks_on_different_files_each_land_as_one_commit_with_its_tick(tmp_path: Path) -> None:
    repo, plan, script = write_project(tmp_path, plan=FAN_PLAN, script=FAN_SCRIPT)
    result, reporter = _run(plan, script)

    assert result.exit_code == 0, result.message
    assert all(t.checked for t in parse_plan(plan).tasks)
    commits = _commits(repo)
    assert sorted(commits) == ["T001", "T002", "T003", "T004", "T005"]
    assert commits[0] == "T001"
    assert commits[-1] == "T005"
    for n, task in enumerate(reversed(commits)):
        files = git(repo, "show", "--name-only", "--format=", f"HEAD~{n}").splitlines()
        expected = {"T001": "base.txt", "T002": "a.txt", "T003": "b.txt", "T004": "c.txt", "T005": "all.txt"}
        assert sorted(files) == sorted([expected[task], "plan.md"])
        body = git(repo, "log", "-1", "--format=%B", f"HEAD~{n}")
        assert f"Orchestrate-Task: {task}" in body
        assert f"Orchestrate-Run: {result.run_id}" in body
    _nothing_left_behind(repo)

    # The three parts ran side by side, each in a worktree of its own.
    started = _started(reporter.events)
    spaces = {started[t].workspace for t in ("T002", "T003", "T004")}
    assert len(spaces) == 3
    assert all(f"/checkpoints/.worktrees/{result.run_id}/" in s for s in spaces)
    # The journal says where each task ran and which commit of its branch was merged.
    records = RunStore(repo / "checkpoints").records(result.run_id)
    done = {r["task"]: r for r in records if r["type"] == "task_done"}
    for task in ("T002", "T003", "T004"):
        assert done[task]["branch"] == f"orchestrate/{result.run_id}/{task}"
        assert done[task]["worktree"] == started[task].workspace
        assert git(repo, "cat-file", "-t", done[task]["merged_from"]) == "commit"
    added = [r for r in records if r["type"] == "worktree_added"]
    assert sorted(r["task"] for r in added) == ["T001", "T002", "T003", "T004", "T005"]
    assert result.state.tasks["T002"].merged_from == done["T002"]["merged_from"]


@pytest.mark.slow  # the order and the overlap come from 0.1 s sleeps: a loaded machine could change them
def test_parallel_tasks_run_side_by_side_and_the_shortest_lands_first(tmp_path: Path) -> None:
    # Gaps of 0.7 s between the three: 0.1 s gaps were reordered on a 2-core machine at load 8.
    sleeps = {"T002": 1.9, "T003": 1.2, "T004": 0.5}
    spread = {**FAN_SCRIPT, **{t: [FAN_SCRIPT[t][0], {"sleep": s}] for t, s in sleeps.items()}}
    repo, plan, script = write_project(tmp_path, plan=FAN_PLAN, script=spread)
    result, reporter = _run(plan, script)

    assert result.exit_code == 0, result.message
    assert _commits(repo)[1:4] == ["T004", "T003", "T002"]
    started = _started(reporter.events)
    finished = {e.task_id: e.at for e in reporter.events if isinstance(e, TaskFinished)}
    assert max(started[t].at for t in ("T002", "T003", "T004")) < min(
        finished[t] for t in ("T002", "T003", "T004")
    )


def test_dependents_start_only_after_their_dependencies_are_merged(tmp_path: Path) -> None:
    repo, plan, script = write_project(tmp_path, plan=FAN_PLAN, script=FAN_SCRIPT)
    result, _ = _run(plan, script, parallel=4)
    assert result.exit_code == 0

    records = RunStore(repo / "checkpoints").records(result.run_id)
    first_run = {}
    for r in records:
        if r["type"] == "task_running":
            first_run.setdefault(r["task"], r["at"])
    done_at = {r["task"]: r["at"] for r in records if r["type"] == "task_done"}
    for task in parse_plan(plan).tasks:
        for dep in task.depends_on:
            assert first_run[task.id] >= done_at[dep], f"{task.id} started before {dep} was merged"
    position = {t: n for n, t in enumerate(_commits(repo))}
    for task in parse_plan(plan).tasks:
        assert all(position[d] < position[task.id] for d in task.depends_on)


CONFLICT_PLAN = """\
# Conflicts

- [ ] T002 [P] Put A first in `shared.txt`
  - Verify: `test -f shared.txt`
- [ ] T003 [P] Put C first in `shared.txt`
  - Verify: `test -f shared.txt`
- [ ] T004 [P] Put D in `other.txt`
  - Verify: `test -f other.txt`
"""


def _conflict_project(tmp_path: Path, script: dict[str, Any]) -> tuple[Path, Path, Path]:
    repo, plan, script_path = write_project(tmp_path, plan=CONFLICT_PLAN, script=script)
    (repo / "shared.txt").write_text("x\n")
    (repo / "other.txt").write_text("o\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "files the tasks edit")
    return repo, plan, script_path


@pytest.mark.slow  # which task lands first is ordered by sleeps: a loaded machine could reorder them
def test_a_task_whose_edit_conflicts_runs_again_on_the_new_head_and_lands(tmp_path: Path) -> None:
    script: dict[str, Any] = {
        "T002": [{"write": "shared.txt", "content": "A\n"}, {"sleep": 0.1}],
        "T003": {
            "attempts": [
                [{"write": "shared.txt", "content": "C\n"}, {"sleep": 0.4}],
                # On the new head shared.txt holds T002's line: add to it.
                [{"append": "shared.txt", "content": "C\n"}],
            ]
        },
    }
    repo, plan, script_path = _conflict_project(tmp_path, script)
    result, reporter = _run(plan, script_path, parallel=3)

    assert result.exit_code == 0, result.message
    commits = _commits(repo)
    assert sorted(commits) == ["T002", "T003", "T004"]
    assert commits.index("T002") < commits.index("T003")
    assert (repo / "shared.txt").read_text() == "A\nC\n"
    assert git(repo, "show", "HEAD:shared.txt") == "A\nC"
    record = result.state.tasks["T003"]
    assert len(record.attempts) == 2
    assert record.merge_failures == 1
    assert "shared.txt" in (record.attempts[0].failure or "")
    retries = [e for e in reporter.events if isinstance(e, TaskRetrying)]
    assert [(e.task_id, e.next_attempt) for e in retries] == [("T003", 2)]
    assert "shared.txt" in retries[0].reason
    # The rerun's prompt tells the agent its earlier changes are not in the fresh worktree.
    prompt = (repo / "checkpoints" / result.run_id / "prompts" / "T003.attempt-2.md").read_text()
    assert "conflicting files: shared.txt" in prompt
    assert "your previous changes are NOT in the work tree" in prompt
    assert "still in the work tree" not in prompt
    assert prompt.count("NOT in the work tree") == 1  # the template says it, the failure does not
    # The work that did not merge is kept, not lost.
    assert any("unmerged" in ref for ref in record.saved_refs)
    assert git(repo, "show", f"{record.saved_refs[0]}:shared.txt") == "C"
    assert all(t.checked for t in parse_plan(plan).tasks)
    _nothing_left_behind(repo)


@pytest.mark.slow  # which task lands first is ordered by sleeps: a loaded machine could reorder them
def test_a_task_that_conflicts_again_after_its_rerun_fails_naming_the_files(tmp_path: Path) -> None:
    script: dict[str, Any] = {
        "T002": [{"write": "shared.txt", "content": "A\n"}, {"sleep": 0.1}],
        "T003": {
            "attempts": [
                [{"write": "shared.txt", "content": "C\n"}, {"sleep": 0.35}],
                # Cut from a head where other.txt is still "o"; T004 changes it meanwhile.
                [{"write": "other.txt", "content": "C2\n"}, {"sleep": 0.9}],
            ]
        },
        "T004": [{"write": "other.txt", "content": "D\n"}, {"sleep": 0.8}],
    }
    repo, plan, script_path = _conflict_project(tmp_path, script)
    result, reporter = _run(plan, script_path, parallel=3)

    assert result.exit_code == 1
    assert result.status is RunStatus.FAILED
    record = result.state.tasks["T003"]
    assert record.status is TaskStatus.FAILED
    assert "conflicting files: other.txt" in record.reason
    assert "run again on the new head" in record.reason
    failed = [e for e in reporter.events if isinstance(e, TaskFinished) and e.status == "failed"]
    assert [e.task_id for e in failed] == ["T003"]
    assert "other.txt" in failed[0].reason
    assert sorted(_commits(repo)) == ["T002", "T004"]
    assert (repo / "other.txt").read_text() == "D\n"
    ticked = {t.id: t.checked for t in parse_plan(plan).tasks}
    assert ticked == {"T002": True, "T003": False, "T004": True}
    # Both versions of T003's work are kept in refs.
    assert len(record.saved_refs) == 2
    assert git(repo, "show", f"{record.saved_refs[-1]}:other.txt") == "C2"
    _nothing_left_behind(repo)


def test_the_agent_in_a_worktree_cannot_change_the_plan(tmp_path: Path) -> None:
    script: dict[str, Any] = dict(FAN_SCRIPT)
    script["T003"] = {
        "attempts": [
            [{"write": "b.txt", "content": "b\n"}, {"append": "plan.md", "content": "\n- [x] T999 sneaky\n"}],
            [{"write": "b.txt", "content": "b\n"}],
        ]
    }
    repo, plan, script_path = write_project(tmp_path, plan=FAN_PLAN, script=script)
    result, _ = _run(plan, script_path)
    assert result.exit_code == 0
    assert "T999" not in plan.read_text()
    first = result.state.tasks["T003"].attempts[0]
    assert first.protected_restored == ["plan.md"]
    assert "T999" not in git(repo, "log", "-p")
    _nothing_left_behind(repo)


def test_a_failing_parallel_task_skips_its_dependents_and_keeps_its_edits(tmp_path: Path) -> None:
    script: dict[str, Any] = dict(FAN_SCRIPT)
    script["T003"] = [{"write": "wrong.txt", "content": "x\n"}]
    repo, plan, script_path = write_project(tmp_path, plan=FAN_PLAN, script=script)
    result, reporter = _run(plan, script_path, max_attempts=2)
    assert result.exit_code == 1
    statuses = {e.task_id: e.status for e in reporter.events if isinstance(e, TaskFinished)}
    assert statuses == {"T001": "done", "T002": "done", "T003": "failed", "T004": "done", "T005": "skipped"}
    ref = result.state.tasks["T003"].saved_refs[0]
    assert "wrong.txt" in git(repo, "show", "--name-only", "--format=", ref)
    assert not (repo / "wrong.txt").exists()
    _nothing_left_behind(repo)


class _StopWhenStarted:
    """A reporter that asks the run to stop (a first Ctrl-C: its stop token) once a given task has
    started."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.stop = StopToken()
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, TaskStarted) and event.task_id == self.task_id:
            assert self.stop.request()


def test_a_stop_lets_the_tasks_in_flight_finish_and_land_then_resume_completes(tmp_path: Path) -> None:
    repo, plan, script = write_project(tmp_path, plan=FAN_PLAN, script=FAN_SCRIPT)
    reporter = _StopWhenStarted("T002")
    settings = {"agent": "scripted", "script": script, "parallel": 3}
    result = start_run(plan, settings, reporter, stop=reporter.stop)
    assert result.status is RunStatus.STOPPED
    landed = _commits(repo)
    assert landed[0] == "T001"
    assert "T005" not in landed

    resumed = resume_run(None, {}, ListReporter(), repo=repo)
    assert resumed.exit_code == 0
    assert sorted(_commits(repo)) == ["T001", "T002", "T003", "T004", "T005"]
    assert all(t.checked for t in parse_plan(plan).tasks)
    _nothing_left_behind(repo)
    finished = resumed.state.status
    assert finished is RunStatus.COMPLETE
    assert isinstance(reporter.events[-1], RunFinished)


def test_resume_removes_spare_worktrees_and_half_made_directories_a_kill_left(tmp_path: Path) -> None:
    repo, plan, script = write_project(tmp_path, plan=FAN_PLAN, script=FAN_SCRIPT)
    reporter = _StopWhenStarted("T002")
    result = start_run(
        plan, {"agent": "scripted", "script": script, "parallel": 3}, reporter, stop=reporter.stop
    )
    assert result.status is RunStatus.STOPPED
    # What a kill at the wrong moment leaves: a spare (detached, no task's) and a directory
    # `git worktree add` made before it registered the worktree.
    root = repo / "checkpoints" / ".worktrees" / result.run_id
    git(repo, "worktree", "add", "-q", "--detach", str(root / "wt-90"), "HEAD")
    (root / "wt-91" / "sub").mkdir(parents=True)
    # ... and of a worktree written by hand: its admin directory still aside, its .git file
    # naming an admin directory that never arrived, and one made but never checked out.
    (repo / ".git" / "orchestrate-worktrees" / "wt-92").mkdir(parents=True)
    (root / "wt-92").mkdir()
    (root / "wt-92" / ".git").write_text(f"gitdir: {repo / '.git' / 'worktrees' / 'wt-92'}\n")
    GitRepo(repo).worktree_add_detached(root / "wt-93", git(repo, "rev-parse", "HEAD").strip())

    resumed = resume_run(None, {}, ListReporter(), repo=repo)
    assert resumed.exit_code == 0
    assert sorted(_commits(repo)) == ["T001", "T002", "T003", "T004", "T005"]
    _nothing_left_behind(repo)
    assert not (repo / ".git" / "orchestrate-worktrees").exists()
    assert not git(repo, "for-each-ref", "refs/orchestrate/")  # an empty worktree held no one's edits
