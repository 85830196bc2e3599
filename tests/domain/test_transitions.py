"""The journal's vocabulary: every transition round-trips through its record, and a record that is
not a transition this orchestrate reads is refused in one line."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from orchestrator.domain import transitions as t
from orchestrator.domain.review import CheckedCriterion, CheckedEvidence
from orchestrator.domain.usage import Usage

KINDS = get_args(get_args(t.Transition)[0])

SAMPLES: list[t.Transition] = [
    t.RunStarted(run_id="r1", plan="plan.md", settings={"parallel": 2}, selection={"ids": ["T1"]}),
    t.GitBaseline(**{"settings": ["d1"], "keys": ["core.bare"], "hooks": {}, "git_dir": "/r/.git"}),
    t.SandboxChosen(kind="none", warning="unconfined"),
    t.RunResumed(overrides={"max_cost": 2.0}, selection={"ids": ["T1", "T2"]}),
    t.ChecksBaseline(commands=["make lint"], failing={"make lint": "exit 2"}),
    t.UserChanges(paths={"notes.txt": "a" * 40, "gone.txt": None}),
    t.GitTampered(changes=["config"], tasks=["T1"]),
    t.RunStopped(
        status="stopped", message="budget reached", resume_hint="orchestrate resume r1", remaining=2
    ),
    t.RunFinished(status="complete", message="every task done"),
    t.TaskRunning(task="T1", attempt=1, prompt_file="prompts/T1.attempt-1.md", workspace="/r"),
    t.ModelCall(task="T1", attempt=1, detail="claude", **t.spend(Usage(input_tokens=3, calls=1))),
    t.AgentActed(task="T1", kind="tool_call", detail="write a.py"),
    t.AgentFinished(task="T1", attempt=1, status="done", summary="ok", turns=2, tree="1" * 40),
    t.ProtectedRestored(task="T1", attempt=1, paths=["orchestrate.toml"]),
    t.CheckRan(task="T1", attempt=1, command="pytest", exit_code=0, ok=True, duration=0.5),
    t.FailFirstChecked(
        task="T1",
        attempt=1,
        result="passed-at-base",
        tests=["tests/test_a.py"],
        checks=[t.CheckAtBase(command="pytest", exit_code=0, ok=True, duration=0.4)],
        base="e" * 40,
        weakened=["tests/test_b.py: skip added: @pytest.mark.skip"],
        note="every check that runs them passed at base",
    ),
    t.AttemptFailed(task="T1", attempt=1, reason="`pytest` exited 1", tree="2" * 40),
    t.AttemptInterrupted(task="T1", attempt=1),
    t.TaskVerified(task="T1", attempt=2, tree="3" * 40),
    t.ReviewRound(
        task="T1",
        attempt=2,
        round=1,
        model="claude-haiku-4-5",
        asked=["polite"],
        criteria=[
            CheckedCriterion(
                criterion="polite",
                verdict="met",
                reason="says hello",
                evidence=[CheckedEvidence(path="a.py", start_line=1, end_line=1, quote="Hello", held=True)],
            )
        ],
        outcome="met",
    ),
    t.ReviewSkipped(task="T1", attempt=2, reason="no reviewer"),
    t.TaskCommitting(task="T1", workspace={"worktree": "/wt"}),
    t.TaskDone(task="T1", commit="c" * 40, unverified=False, merged_from="d" * 40),
    t.TaskNeedsHuman(
        task="T1", attempt=1, reason="the plan marks it", tree="4" * 40, ref="refs/orchestrate/r1/T1/x"
    ),
    t.TaskAccepted(task="T1", by="Ann <ann@example.com>", note="looks right", tree="5" * 40),
    t.TaskRejected(task="T1", by="Ann <ann@example.com>", note="wrong colour"),
    t.TaskFailed(task="T1", reason="no attempts left", ref="refs/orchestrate/r1/T1/failed-attempt-3"),
    t.TaskSkipped(task="T2", reason="depends on failed task T1"),
    t.TaskReset(task="T1", reason="resumed"),
    t.WorktreeAdded(task="T1", worktree="/wt", branch="orchestrate/r1/T1", base="b" * 40),
    t.WorktreeRemoved(task="T1"),
    t.RemoteResult(task="T1", node="1e247319 (10.0.0.7)", branch="orchestrate/r1/T1", base="b" * 40),
    t.MergeFailed(task="T1", attempt=1, files=["a.py"], reason="conflict", failure="conflict.\n", rerun=True),
    t.EditsSaved(task="T1", attempt=1, ref="refs/orchestrate/r1/T1/attempt-1"),
]


def test_every_kind_of_transition_has_a_sample() -> None:
    assert {type(sample) for sample in SAMPLES} == set(KINDS)


@pytest.mark.parametrize("transition", SAMPLES, ids=lambda s: type(s).__name__)
def test_each_transition_round_trips_through_its_journal_record(transition: t.Transition) -> None:
    record = t.to_record(transition)
    assert list(record)[:3] == ["v", "type", "at"]
    assert record["v"] == t.FORMAT_VERSION
    assert t.parse(record) == transition


def test_a_format_1_record_reads_as_format_2_does() -> None:
    # As orchestrate 73f7c88 wrote it: the same names, no workspace on task_running.
    old = {"v": 1, "type": "task_running", "at": 5.0, "task": "T1", "attempt": 2, "prompt_file": "p.md"}
    assert t.parse(old) == t.TaskRunning(v=1, at=5.0, task="T1", attempt=2, prompt_file="p.md")
    unversioned = t.parse({"type": "sandbox", "at": 1.0, "kind": "none", "warning": None, "pid": 7})
    assert unversioned == t.SandboxChosen(v=1, at=1.0, kind="none")


@pytest.mark.parametrize(
    ("record", "says"),
    [
        ({"v": 3, "type": "task_done", "task": "T1"}, "written in journal format 3; this orchestrate reads"),
        ({"v": 2, "type": "task_teleported", "task": "T1"}, "unknown record type 'task_teleported'"),
        ({"v": 2, "type": "task_done"}, "a task_done record without its task"),
        ({"v": 2, "type": "verification", "task": "T1", "exit_code": "x"}, "whose exit_code is wrong"),
        ([1, 2], "not a journal record (a JSON list, not an object)"),
    ],
)
def test_a_record_that_is_not_a_transition_is_refused_in_one_line(record: Any, says: str) -> None:
    with pytest.raises(t.RecordError) as caught:
        t.parse(record)
    assert says in str(caught.value)
    assert "\n" not in str(caught.value)
