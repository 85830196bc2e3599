"""What the engine reports while it runs. The engine emits these to a Reporter and never prints;
the CLI's live table, plain lines and JSONL output are Reporters, and tests use a list.

Most events are what a journaled transition (domain/transitions.py) means to the user, derived from
it and the state it leaves in one place, `derive`: the reporters see the facts the journal holds,
under the names of the event schema `--json` prints. Three are not transitions: RunStarted (the
run's table of contents), TaskRetrying (a decision about what comes next) and Notice (words)."""

from __future__ import annotations

import time
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, Field

from orchestrator.domain import transitions as t
from orchestrator.domain.state import RunState
from orchestrator.domain.usage import Usage


class _Event(BaseModel):
    at: float = Field(default_factory=time.time)
    """Unix time the event happened."""


class TaskInfo(BaseModel):
    id: str
    phase: str
    title: str
    settled: bool = False
    """Already done (or skipped) in the plan when the run started."""


class RunStarted(_Event):
    event: Literal["run_started"] = "run_started"
    run_id: str
    plan: str
    branch: str
    agent: str
    resumed: bool = False
    parallel: int = 1
    tasks: list[TaskInfo] = Field(default_factory=list)
    """Every task of the run's selection, in execution order."""
    max_cost: float | None = None
    """The run's spending limit in USD; None when it has none (every run states it)."""


class TaskStarted(_Event):
    event: Literal["task_started"] = "task_started"
    task_id: str
    attempt: int
    workspace: str = ""
    node: str = ""
    """The Ray node the attempt runs on (`--executor ray`); "" on this machine."""


class AgentActivity(_Event):
    event: Literal["agent_activity"] = "agent_activity"
    task_id: str
    kind: str
    """'model_call', 'tool_call', 'message', 'progress' (from the backend's AgentEvent)."""
    detail: str = ""
    usage: Usage | None = None
    """For model calls: this call's usage."""
    task_usage: Usage | None = None
    """For model calls: the task's usage so far, all attempts."""
    run_usage: Usage | None = None
    """For model calls: the run's usage so far."""


class AgentFinished(_Event):
    event: Literal["agent_finished"] = "agent_finished"
    task_id: str
    attempt: int
    status: str
    summary: str = ""
    usage: Usage = Field(default_factory=Usage)


class VerificationFinished(_Event):
    event: Literal["verification_finished"] = "verification_finished"
    task_id: str
    attempt: int
    command: str
    exit_code: int
    ok: bool
    duration: float
    output_tail: str = ""
    preexisting: bool = False
    """It failed as it already did before the run's first task: reported, not blamed on this one."""


class FailFirstChecked(_Event):
    """The tests an attempt added or changed, run at base (see transitions.FailFirstChecked)."""

    event: Literal["fail_first"] = "fail_first"
    task_id: str
    attempt: int
    result: str
    """ok, passed-at-base, none or off."""
    tests: list[str] = Field(default_factory=list)
    weakened: list[str] = Field(default_factory=list)
    """What the attempt's diff did to tests that were already there."""
    note: str = ""


class TaskRetrying(_Event):
    event: Literal["task_retrying"] = "task_retrying"
    task_id: str
    next_attempt: int
    reason: str


class TaskFinished(_Event):
    event: Literal["task_finished"] = "task_finished"
    task_id: str
    status: Literal["done", "unverified", "failed", "skipped", "needs_human"]
    """done: verified and committed; unverified: committed with no verification to run;
    failed: attempts exhausted; skipped: a dependency failed; needs_human: waits for a person
    (`orchestrate accept` / `reject`), not committed."""
    reason: str = ""
    commit: str | None = None
    attempts: int = 0
    usage: Usage = Field(default_factory=Usage)


class Notice(_Event):
    event: Literal["notice"] = "notice"
    level: Literal["info", "warning", "error"] = "info"
    message: str
    task_id: str | None = None


class RunFinished(_Event):
    event: Literal["run_finished"] = "run_finished"
    run_id: str
    status: Literal["complete", "failed", "stopped", "waiting"]
    """complete: every selected task done; failed: some task failed; stopped: resumable stop
    (budget, interrupt, API unavailable); waiting: the rest waits for a person."""
    message: str = ""
    done: int = 0
    failed: int = 0
    skipped: int = 0
    unverified: int = 0
    """Of `done`, the tasks no check judged: ticked on the agent's word."""
    remaining: int = 0
    needs_human: list[str] = Field(default_factory=list)
    """Tasks that wait for a person (`orchestrate accept` / `reject`)."""
    usage: Usage = Field(default_factory=Usage)
    resume_hint: str = ""
    """The command that continues this run, when it is resumable."""


Event = Annotated[
    RunStarted
    | TaskStarted
    | AgentActivity
    | AgentFinished
    | VerificationFinished
    | FailFirstChecked
    | TaskRetrying
    | TaskFinished
    | Notice
    | RunFinished,
    Field(discriminator="event"),
]


class Reporter(Protocol):
    def emit(self, event: Event) -> None: ...


class ListReporter:
    """Keeps every event; for tests and for summaries."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)


UNVERIFIED_REASON = "no verification command; ticked on the agent's word"


def derive(transition: t.Transition, state: RunState) -> Event | None:
    """What `transition` tells the reporters, given the state it was folded into (None: nothing
    worth a line, such as a worktree added)."""
    match transition:
        case t.TaskRunning():
            return TaskStarted(
                task_id=transition.task,
                attempt=state.task(transition.task).attempt,
                workspace=transition.workspace,
                node=transition.node,
                at=transition.at,
            )
        case t.ModelCall():
            task = state.task(transition.task)
            return AgentActivity(
                task_id=transition.task,
                kind="model_call",
                detail=transition.detail,
                usage=transition.usage,
                task_usage=task.usage,
                run_usage=state.usage,
                at=transition.at,
            )
        case t.AgentActed():
            return AgentActivity(
                task_id=transition.task, kind=transition.kind, detail=transition.detail, at=transition.at
            )
        case t.AgentFinished():
            current = state.task(transition.task).current()
            seen = current.usage if current is not None else Usage()
            reported = transition.usage
            return AgentFinished(
                task_id=transition.task,
                attempt=transition.attempt or 0,
                status=transition.status or "",
                summary=transition.summary,
                # As the model calls added it up, or as the backend said at the end when it
                # reported usage only then.
                usage=seen if seen.calls or not reported.calls else reported,
                at=transition.at,
            )
        case t.CheckRan():
            return VerificationFinished(
                task_id=transition.task,
                attempt=transition.attempt or 0,
                command=transition.command,
                exit_code=transition.exit_code,
                ok=transition.ok,
                duration=transition.duration,
                output_tail=transition.output_tail,
                preexisting=transition.preexisting,
                at=transition.at,
            )
        case t.FailFirstChecked():
            return FailFirstChecked(
                task_id=transition.task,
                attempt=transition.attempt or 0,
                result=transition.result,
                tests=list(transition.tests),
                weakened=list(transition.weakened),
                note=transition.note,
                at=transition.at,
            )
        case t.TaskDone():
            task = state.task(transition.task)
            return TaskFinished(
                task_id=transition.task,
                status="unverified" if task.unverified else "done",
                reason=UNVERIFIED_REASON if task.unverified else "",
                commit=transition.commit,
                attempts=task.attempt,
                usage=task.usage,
                at=transition.at,
            )
        case t.TaskFailed():
            task = state.task(transition.task)
            return TaskFinished(
                task_id=transition.task,
                status="failed",
                reason=transition.reason.splitlines()[0] if transition.reason else "",
                attempts=task.attempt,
                usage=task.usage,
                at=transition.at,
            )
        case t.TaskNeedsHuman():
            task = state.task(transition.task)
            return TaskFinished(
                task_id=transition.task,
                status="needs_human",
                reason=transition.reason.splitlines()[0] if transition.reason else "",
                attempts=task.attempt,
                usage=task.usage,
                at=transition.at,
            )
        case t.TaskSkipped():
            return TaskFinished(
                task_id=transition.task, status="skipped", reason=transition.reason, at=transition.at
            )
        case t.RunEnded():
            tasks = state.tasks.values()
            return RunFinished(
                run_id=state.run_id,
                status=transition.status,
                message=transition.message,
                done=sum(1 for task in tasks if task.status == "done"),
                failed=sum(1 for task in tasks if task.status == "failed"),
                skipped=sum(1 for task in tasks if task.status == "skipped"),
                # Of the done, those no check judged: ticked on the agent's word.
                unverified=sum(1 for task in tasks if task.status == "done" and task.unverified),
                remaining=transition.remaining,
                needs_human=[task.id for task in tasks if task.status == "needs_human"],
                usage=state.usage,
                resume_hint=transition.resume_hint,
                at=transition.at,
            )
    return None
