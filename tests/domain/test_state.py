"""The state fold, directly: what RunState.from_records makes of each journal record, and of the
sequences a resume meets (a task caught mid-attempt, verified but not committed, committed, ...).

Records are written as the engine writes them (engine/runner.py, engine/session.py); the fold is
pure, so each case is a list of records in and a few fields out.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.domain import transitions as t
from orchestrator.domain.state import RunState, RunStatus, TaskRecord, TaskStatus
from orchestrator.domain.usage import Usage

STARTED: dict[str, Any] = {
    "type": "run_started",
    "at": 100.0,
    "run_id": "20260101-000000-abcd",
    "plan": "plan.md",
    "repo": "/repo",
    "branch": "orchestrate/run",
    "base": "b" * 40,
    "agent": "scripted",
    "settings": {"max_attempts": 2, "parallel": 1},
    "selection": {"ids": ["T001", "T002"]},
    "preexisting": {"notes.txt": "f" * 40},
}
TREE = "1" * 40
OTHER_TREE = "2" * 40
SHA = "c" * 40


def fold(*records: dict[str, Any]) -> RunState:
    """The state after run_started and `records`, each stamped a second after the one before."""
    stamped = [STARTED] + [{"at": 101.0 + n, **r} for n, r in enumerate(records)]
    return RunState.from_records(t.parse(record) for record in stamped)


def task(type_: str, task_id: str = "T001", **fields: Any) -> dict[str, Any]:
    return {"type": type_, "task": task_id, **fields}


def test_run_started_sets_the_run_and_its_recorded_settings() -> None:
    state = fold()
    assert state.run_id == "20260101-000000-abcd"
    assert (state.plan, state.repo, state.branch, state.base, state.agent) == (
        "plan.md",
        "/repo",
        "orchestrate/run",
        "b" * 40,
        "scripted",
    )
    assert state.settings == {"max_attempts": 2, "parallel": 1}
    assert state.selection == {"ids": ["T001", "T002"]}
    assert state.preexisting == {"notes.txt": "f" * 40}
    assert state.status is RunStatus.RUNNING
    assert state.started_at == state.updated_at == 100.0
    assert state.tasks == {}
    assert state.order == []


def test_an_empty_journal_folds_to_a_blank_state() -> None:
    state = RunState.from_records([])
    assert state.run_id == ""
    assert state.status is RunStatus.RUNNING
    assert state.tasks == {}


# Each case: the task records after run_started, then what the fold makes of T001.
TASK_CASES: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = [
    (
        "running: caught mid-attempt",
        [task("task_running", attempt=1, prompt_file="prompts/T001.attempt-1.md")],
        {"status": TaskStatus.RUNNING, "attempt": 1, "attempts_since_reset": 1, "tree": None},
    ),
    (
        "running without a number counts on from the last",
        [task("task_running", attempt=1), task("attempt_failed", reason="x"), task("task_running")],
        {"status": TaskStatus.RUNNING, "attempt": 2, "attempts_since_reset": 2},
    ),
    (
        "agent finished: its tree recorded",
        [task("task_running", attempt=1), task("agent_finished", status="done", summary="ok", tree=TREE)],
        {"status": TaskStatus.AGENT_DONE, "tree": TREE},
    ),
    (
        "verified but not committed",
        [
            task("task_running", attempt=1),
            task("agent_finished", status="done", tree=TREE),
            task("verification", command="true", exit_code=0, ok=True),
            task("task_verified", tree=TREE),
        ],
        {"status": TaskStatus.VERIFIED, "tree": TREE, "unverified": False},
    ),
    (
        "verified with no check to run",
        [task("task_running", attempt=1), task("task_verified", tree=TREE, unverified=True)],
        {"status": TaskStatus.VERIFIED, "unverified": True},
    ),
    (
        "committing: the branch's trailers will say",
        [task("task_running", attempt=1), task("task_verified", tree=TREE), task("task_committing")],
        {"status": TaskStatus.COMMITTING, "tree": TREE, "commit": None},
    ),
    (
        "committed",
        [
            task("task_running", attempt=1),
            task("task_verified", tree=TREE),
            task("task_committing"),
            task("task_done", commit=SHA, merged_from="d" * 40),
        ],
        {"status": TaskStatus.DONE, "commit": SHA, "merged_from": "d" * 40, "reason": ""},
    ),
    (
        "done on resume, found by its trailer with a reason",
        [task("task_done", commit=SHA, reason="found committed on resume")],
        {"status": TaskStatus.DONE, "commit": SHA, "reason": "found committed on resume", "attempt": 0},
    ),
    (
        "a failed attempt keeps its tree for the next",
        [task("task_running", attempt=1), task("attempt_failed", reason="check failed", tree=OTHER_TREE)],
        {"status": TaskStatus.PENDING, "tree": OTHER_TREE, "attempts_since_reset": 1},
    ),
    (
        "an interrupted attempt does not count",
        [task("task_running", attempt=1), task("attempt_interrupted")],
        {"status": TaskStatus.PENDING, "tree": None, "attempts_since_reset": 0, "attempt": 1},
    ),
    (
        "failed",
        [task("task_running", attempt=1), task("task_failed", reason="2 attempts failed")],
        {"status": TaskStatus.FAILED, "reason": "2 attempts failed"},
    ),
    (
        "skipped",
        [task("task_skipped", reason="T000 failed")],
        {"status": TaskStatus.SKIPPED, "reason": "T000 failed", "attempt": 0},
    ),
    (
        "reset on resume: a fresh allowance",
        [
            task("task_running", attempt=1),
            task("attempt_failed", reason="x", tree=TREE),
            task("merge_failed", reason="conflict", rerun=False),
            task("task_failed", reason="gave up"),
            task("task_reset"),
        ],
        {
            "status": TaskStatus.PENDING,
            "attempts_since_reset": 0,
            "tree": None,
            "reason": "",
            "merge_failures": 0,
            "attempt": 1,
        },
    ),
    (
        "worktree added",
        [task("worktree_added", worktree="/wt/T001", branch="orchestrate/r/T001", base=SHA)],
        {"worktree": "/wt/T001", "branch": "orchestrate/r/T001", "base": SHA, "status": TaskStatus.PENDING},
    ),
    (
        "worktree removed",
        [task("worktree_added", worktree="/wt/T001", branch="b", base=SHA), task("worktree_removed")],
        {"worktree": None, "branch": None, "base": None},
    ),
    (
        "merge failed: another round from a fresh worktree",
        [
            task("task_running", attempt=1),
            task("task_verified", tree=TREE),
            task("merge_failed", reason="conflict", failure="conflicting files: a.txt"),
        ],
        {"status": TaskStatus.PENDING, "merge_failures": 1, "attempts_since_reset": 0, "tree": None},
    ),
    (
        "merge failed with no rerun left",
        [
            task("task_running", attempt=1),
            task("task_verified", tree=TREE),
            task("merge_failed", rerun=False),
        ],
        {"status": TaskStatus.VERIFIED, "merge_failures": 1, "tree": TREE, "attempts_since_reset": 1},
    ),
    (
        "edits saved, each ref once",
        [
            task("edits_saved", ref="refs/orchestrate/r/T001/1"),
            task("edits_saved", ref="refs/orchestrate/r/T001/1"),
            task("edits_saved", ref="refs/orchestrate/r/T001/2"),
            task("edits_saved", ref=None),
        ],
        {"saved_refs": ["refs/orchestrate/r/T001/1", "refs/orchestrate/r/T001/2"]},
    ),
    (
        "git tampered in an attempt changes nothing of the task",
        [task("task_running", attempt=1), task("git_tampered", attempt=1, changes=["hooks/pre-commit"])],
        {"status": TaskStatus.RUNNING, "attempt": 1, "reason": ""},
    ),
    (
        "an agent event changes nothing of the task",
        [task("task_running", attempt=1), task("agent_event", kind="tool", detail="read_file a.txt")],
        {"status": TaskStatus.RUNNING, "attempt": 1},
    ),
]


@pytest.mark.parametrize(("records", "expected"), [c[1:] for c in TASK_CASES], ids=[c[0] for c in TASK_CASES])
def test_each_task_record_folds_as_its_step_says(
    records: list[dict[str, Any]], expected: dict[str, Any]
) -> None:
    record = fold(*records).tasks["T001"]
    got = {name: getattr(record, name) for name in expected}
    assert got == expected


def test_the_records_of_an_attempt_land_on_that_attempt() -> None:
    state = fold(
        task("task_running", attempt=1, prompt_file="prompts/T001.attempt-1.md"),
        task("agent_finished", status="done", summary="wrote a.txt", tree=TREE),
        task("protected_restored", paths=["plan.md"]),
        task("verification", command="test -f a.txt", exit_code=1, ok=False, duration=0.25, output_tail="no"),
        task("attempt_failed", reason="check failed", tree=TREE),
        task("task_running", attempt=2),
        task("merge_failed", reason="conflict"),
    )
    first, second = state.tasks["T001"].attempts
    assert first.number == 1
    assert first.prompt_file == "prompts/T001.attempt-1.md"
    assert (first.agent_status, first.summary, first.tree) == ("done", "wrote a.txt", TREE)
    assert first.protected_restored == ["plan.md"]
    assert [(v.command, v.exit_code, v.ok, v.duration, v.output_tail) for v in first.verifications] == [
        ("test -f a.txt", 1, False, 0.25, "no")
    ]
    assert first.failure == "check failed"
    # merge_failed names the reason when it has no failure report of its own.
    assert (second.number, second.failure, second.verifications) == (2, "conflict", [])


def test_records_of_an_attempt_before_any_attempt_are_ignored() -> None:
    """agent_finished, protected_restored and verification need an attempt to land on (a journal
    cut before task_running is folded as if they were not there); a verification before any attempt
    is a check task's own run of its command: it counts in the task's checks (its evidence)."""
    record = fold(
        task("agent_finished", status="done", tree=TREE),
        task("protected_restored", paths=["plan.md"]),
        task("verification", command="true", exit_code=0, ok=True),
    ).tasks["T001"]
    assert list(record.checks) == ["true"]
    assert record.model_copy(update={"checks": {}}) == TaskRecord(id="T001")


def test_model_calls_add_up_on_the_attempt_the_task_and_the_run() -> None:
    one = Usage(input_tokens=100, output_tokens=20, cache_read_input_tokens=5, cost_usd=0.01, calls=1)
    call = task("model_call", **t.spend(one))
    state = fold(
        task("task_running", attempt=1),
        call,
        task("attempt_failed", reason="x"),
        task("task_running", attempt=2),
        call,
        task("model_call", "T002", **t.spend(one)),
    )
    t1 = state.tasks["T001"]
    assert [a.usage.input_tokens for a in t1.attempts] == [100, 100]
    assert t1.usage.input_tokens == 200
    assert t1.usage.calls == 2
    assert state.usage.input_tokens == 300
    assert state.usage.cache_read_input_tokens == 15
    assert state.usage.cost_usd == pytest.approx(0.03)


def test_usage_round_trips_through_its_record_under_the_otel_names() -> None:
    usage = Usage(input_tokens=7, output_tokens=3, cache_creation_input_tokens=2, cost_usd=0.1234567, calls=4)
    record = t.to_record(t.ModelCall(task="T001", **t.spend(usage)))
    assert record["gen_ai.usage.input_tokens"] == 7
    assert record["cost_usd"] == 0.123457
    parsed = t.parse(record)
    assert isinstance(parsed, t.ModelCall)
    assert parsed.usage == usage.model_copy(update={"cost_usd": 0.123457})
    assert isinstance(empty := t.parse({"type": "model_call", "task": "T001"}), t.ModelCall)
    assert empty.usage == Usage()


def test_a_stop_then_a_resume_with_a_new_selection_and_overrides() -> None:
    state = fold(
        task("task_running", attempt=1),
        {"type": "run_stopped", "status": "stopped", "message": "stopped by Ctrl-C", "resume_hint": "resume"},
    )
    assert (state.status, state.message) == (RunStatus.STOPPED, "stopped by Ctrl-C")
    assert state.tasks["T001"].status is TaskStatus.RUNNING  # caught mid-attempt: resume picks it up

    state = fold(
        task("task_running", attempt=1),
        {"type": "run_stopped", "status": "stopped", "message": "stopped by Ctrl-C"},
        {
            "type": "run_resumed",
            "overrides": {"max_attempts": 5},
            "pid": 42,
            "selection": {"ids": ["T001", "T002", "T003"]},
        },
    )
    assert (state.status, state.message, state.resumes) == (RunStatus.RUNNING, "", 1)
    assert state.settings == {"max_attempts": 5, "parallel": 1}
    assert state.selection == {"ids": ["T001", "T002", "T003"]}


def test_a_resume_without_a_selection_keeps_the_run_s() -> None:
    state = fold({"type": "run_resumed", "overrides": {}}, {"type": "run_resumed"})
    assert state.resumes == 2
    assert state.selection == STARTED["selection"]
    assert state.settings == STARTED["settings"]


@pytest.mark.parametrize("status", [RunStatus.COMPLETE, RunStatus.FAILED])
def test_run_finished_sets_the_outcome(status: RunStatus) -> None:
    state = fold({"type": "run_finished", "status": status.value, "message": "done"})
    assert (state.status, state.message) == (status, "done")


def test_run_stopped_without_a_status_reads_as_stopped() -> None:
    assert fold({"type": "run_stopped"}).status is RunStatus.STOPPED


def test_the_sandbox_record_keeps_the_last_kind_and_each_warning_once() -> None:
    state = fold(
        {"type": "sandbox", "kind": "none", "warning": "bubblewrap is not installed"},
        {"type": "run_resumed"},
        {"type": "sandbox", "kind": "none", "warning": "bubblewrap is not installed"},
        {"type": "run_resumed"},
        {"type": "sandbox", "kind": "bubblewrap", "warning": None},
    )
    assert state.sandbox == "bubblewrap"
    assert state.warnings == ["bubblewrap is not installed"]


def test_user_changes_join_the_preexisting_paths() -> None:
    state = fold(
        {"type": "user_changes", "paths": {"mine.txt": "a" * 40, "gone.txt": None}},
        {"type": "user_changes", "paths": {"notes.txt": "e" * 40}},
    )
    assert state.preexisting == {"notes.txt": "e" * 40, "mine.txt": "a" * 40, "gone.txt": None}


@pytest.mark.parametrize(
    "record",
    [
        {"type": "git_baseline", "config": {}, "hooks": []},
        {"type": "git_tampered", "changes": ["config"]},
        {"type": "git_tampered", "changes": ["hooks/post-checkout"], "tasks": ["T001"]},
    ],
    ids=["git_baseline", "git_tampered of the run", "git_tampered during tasks"],
)
def test_run_level_records_the_fold_has_no_field_for_change_nothing_but_the_time(
    record: dict[str, Any],
) -> None:
    before = fold(task("task_running", attempt=1))
    after = fold(task("task_running", attempt=1), record)
    assert after.updated_at == before.updated_at + 1
    assert after.model_copy(update={"updated_at": before.updated_at}) == before


def test_tasks_keep_the_order_the_run_first_touched_them() -> None:
    state = fold(
        task("task_skipped", "T003", reason="x"),
        task("task_running", "T001", attempt=1),
        task("task_done", "T003", commit=SHA),
        task("worktree_added", "T002", worktree="/wt", branch="b", base=SHA),
    )
    assert state.order == ["T003", "T001", "T002"]
    assert state.count(TaskStatus.DONE) == 1
    assert state.count(TaskStatus.RUNNING) == 1


def test_the_time_is_the_latest_record_s_even_out_of_order() -> None:
    records = [
        STARTED,
        {**task("task_running", attempt=1), "at": 150.0},
        {**task("task_failed"), "at": 120.0},
    ]
    state = RunState.from_records(t.parse(record) for record in records)
    assert state.updated_at == 150.0
    assert state.started_at == 100.0


def test_in_flight_statuses_are_the_ones_resume_must_pick_up() -> None:
    assert {s for s in TaskStatus if s.in_flight} == {
        TaskStatus.RUNNING,
        TaskStatus.AGENT_DONE,
        TaskStatus.VERIFIED,
        TaskStatus.COMMITTING,
    }
