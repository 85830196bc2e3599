"""engine.attempts directly: a task's attempts in a real repository with the scripted agent and
real checks, from running to verified (or out of attempts), each step journaled."""

from __future__ import annotations

from orchestrator.domain.events import TaskRetrying, TaskStarted, VerificationFinished
from orchestrator.domain.state import TaskStatus
from tests.engine.conftest import GREET, SCRIPT
from tests.engine.parts import MakeParts, make_parts

WRONG = "def greet(name):\n    return name\n"


def test_an_attempt_that_passes_its_checks_is_verified(make_parts: MakeParts) -> None:
    p = make_parts()
    result = p.attempts.run(p.task("T001"), p.repo.root)
    assert (result.passed, result.unverified, result.attempts) == (True, False, 1)
    assert result.tree == p.repo.snapshot_tree()
    assert p.kinds("T001") == ["task_running", "agent_finished", "verification", "task_verified"]
    assert p.state.task("T001").status is TaskStatus.VERIFIED
    assert (p.repo.root / "greet.py").read_text() == GREET
    assert [type(e).__name__ for e in p.reporter.events] == [
        "TaskStarted",
        "AgentActivity",
        "AgentFinished",
        "VerificationFinished",
    ]


def test_a_failed_check_retries_with_its_reason_in_the_next_prompt(make_parts: MakeParts) -> None:
    script = {"T001": {"attempts": [[{"write": "greet.py", "content": WRONG}], SCRIPT["T001"]]}}
    p = make_parts(script)
    result = p.attempts.run(p.task("T001"), p.repo.root)
    assert (result.passed, result.attempts) == (True, 2)
    assert p.kinds("T001") == [
        *("task_running", "agent_finished", "verification", "attempt_failed"),
        *("task_running", "agent_finished", "verification", "task_verified"),
    ]
    retried = [e for e in p.reporter.events if isinstance(e, TaskRetrying)]
    assert [(e.next_attempt, e.reason.split("`")[0]) for e in retried] == [(2, "")]
    second = (p.journal.directory / "prompts" / "T001.attempt-2.md").read_text()
    assert "exited 1" in second
    assert [e.ok for e in p.reporter.events if isinstance(e, VerificationFinished)] == [False, True]


def test_out_of_attempts_the_result_carries_the_last_failure(make_parts: MakeParts) -> None:
    p = make_parts({"T001": [{"write": "greet.py", "content": WRONG}]}, max_attempts=2)
    result = p.attempts.run(p.task("T001"), p.repo.root)
    assert not result.passed
    assert result.reason.startswith("`python3 -c")
    assert "exited 1" in result.reason
    record = p.state.task("T001")
    assert (record.status, record.attempt, record.attempts_since_reset) == (TaskStatus.PENDING, 2, 2)
    assert record.tree == p.repo.snapshot_tree()  # its edits stay for resume to check


def test_an_agent_that_changes_a_protected_path_fails_its_attempt_and_the_change_is_undone(
    make_parts: MakeParts,
) -> None:
    script = {"T001": [*SCRIPT["T001"], {"write": "orchestrate.toml", "content": "verify = []\n"}]}
    p = make_parts(script, max_attempts=1)
    result = p.attempts.run(p.task("T001"), p.repo.root)
    assert not result.passed
    assert "changed paths it may not change (orchestrate.toml)" in result.reason
    assert not (p.repo.root / "orchestrate.toml").exists()
    assert p.kinds("T001") == ["task_running", "agent_finished", "protected_restored", "attempt_failed"]


def test_a_stop_asked_for_before_an_attempt_starts_none(make_parts: MakeParts) -> None:
    p = make_parts()
    p.stop.arm(lambda: None)
    assert p.stop.request()
    result = p.attempts.run(p.task("T001"), p.repo.root)
    assert (result.stopped, result.passed) == (True, False)
    assert p.kinds("T001") == []
    assert not any(isinstance(e, TaskStarted) for e in p.reporter.events)


def test_resume_picks_up_verified_work_without_calling_the_agent(make_parts: MakeParts) -> None:
    p = make_parts()
    p.attempts.run(p.task("T001"), p.repo.root)
    before = p.kinds("T001")
    p.attempts.resume_at["T001"] = "commit"
    result = p.attempts.run(p.task("T001"), p.repo.root)
    assert (result.passed, result.tree) == (True, p.state.task("T001").tree)
    assert p.kinds("T001") == before


__all__ = ["make_parts"]  # the fixture, imported for pytest
