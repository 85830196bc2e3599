"""engine.landing directly: a verified task becomes one commit (its work and its ticked box, with
the run's trailers); a failed one keeps its edits in a ref and its dependents are skipped."""

from __future__ import annotations

from orchestrator.domain.events import TaskFinished
from orchestrator.domain.state import TaskStatus
from orchestrator.engine.landing import commit_message, ref_name
from tests.conftest import git
from tests.engine.parts import RUN_ID, MakeParts, make_parts

WRONG = "def greet(name):\n    return name\n"


def test_a_verified_task_lands_as_one_commit_with_its_box_ticked(make_parts: MakeParts) -> None:
    p = make_parts()
    task = p.task("T001")
    result = p.attempts.run(task, p.repo.root)
    p.landing.land(result)
    repo = p.repo.root
    assert (
        git(repo, "log", "-1", "--format=%s")
        == commit_message(p.scheduler.plan, task)
        == ("Phase 1: Create `greet.py` with a `greet(name)` function")
    )
    trailers = git(repo, "log", "-1", "--format=%(trailers:only,unfold)")
    assert f"Orchestrate-Task: T001\nOrchestrate-Run: {RUN_ID}" in trailers
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["greet.py", "plan.md"]
    assert "- [x] T001" in p.plan_path.read_text()
    assert git(repo, "status", "--porcelain") == ""
    assert p.kinds("T001")[-2:] == ["task_committing", "task_done"]
    record = p.state.task("T001")
    assert (record.status, record.commit) == (TaskStatus.DONE, git(repo, "rev-parse", "HEAD"))
    assert "T001" in p.scheduler.done
    assert p.scheduler.plan.task("T001").checked  # type: ignore[union-attr]
    finished = [e for e in p.reporter.events if isinstance(e, TaskFinished)]
    assert [(e.task_id, e.status, e.commit, e.attempts) for e in finished] == [
        ("T001", "done", record.commit, 1)
    ]


def test_a_failed_task_keeps_its_edits_in_a_ref_and_its_dependents_are_skipped(make_parts: MakeParts) -> None:
    p = make_parts({"T001": [{"write": "greet.py", "content": WRONG}]}, max_attempts=1)
    head = git(p.repo.root, "rev-parse", "HEAD")
    result = p.attempts.run(p.task("T001"), p.repo.root)
    blocked = p.scheduler.blocked_by("T001")
    assert blocked  # the phase after it waits for it
    p.landing.fail(result)
    ref = ref_name(RUN_ID, "T001", "failed-attempt-1")
    assert git(p.repo.root, "show", f"{ref}:greet.py") == WRONG.strip()
    assert not (p.repo.root / "greet.py").exists()
    assert git(p.repo.root, "rev-parse", "HEAD") == head
    assert p.state.task("T001").status is TaskStatus.FAILED
    assert p.state.task("T001").saved_refs == [ref]
    assert {i for i in blocked if p.state.task(i).status is TaskStatus.SKIPPED} == set(blocked)
    assert p.scheduler.failed == {"T001"}
    assert p.scheduler.skipped == set(blocked)
    finished = {e.task_id: e.status for e in p.reporter.events if isinstance(e, TaskFinished)}
    assert finished == {"T001": "failed", **dict.fromkeys(blocked, "skipped")}


def test_ref_names_are_safe_for_any_task_id() -> None:
    assert ref_name("r", "T001", "x") == "refs/orchestrate/r/T001/x"
    assert ref_name("r", "2.1 a/b", "x") == "refs/orchestrate/r/2.1_a_b/x"
    assert ref_name("r", "..", "x") == "refs/orchestrate/r/task/x"
    assert ref_name("r", "a.lock", "x") == "refs/orchestrate/r/a.lock_/x"


__all__ = ["make_parts"]  # the fixture, imported for pytest
