"""The run's vocabulary: every fact the engine learns is one typed transition.

The engine builds a transition, the journal stores it (one JSON line, `type` the discriminator, `v`
the format version), the state fold (domain/state.py) matches on its class, and the events the
reporters receive are derived from it in one place (engine/reporting.py). Nothing is written twice
under two names.

Format versions:
  1  (orchestrate up to 73f7c88) the same records, written from untyped dicts: the field names
     and meanings are those below, so a journal of format 1 reads as format 2 does;
  2  the records validated on read; task_running names its workspace, a run's end the tasks it
     left.
A record of a later format, of a type not listed here, or whose fields do not fit is refused with a
message naming the journal's line (see persistence.journal.read_transitions).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from orchestrator.domain.review import CheckedCriterion, ReviewOutcome
from orchestrator.domain.usage import Usage

FORMAT_VERSION = 2
"""The format this orchestrate writes."""
READABLE_VERSIONS = (1, 2)


def _now() -> float:
    return round(time.time(), 3)


class _Transition(BaseModel):
    # Fields a later orchestrate of the same format adds (or a record of an older one carried and
    # nothing reads, such as a start record's pid) are kept out of the way, not refused.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    v: int = FORMAT_VERSION
    at: float = Field(default_factory=_now)
    """Unix time the transition was journaled."""


class TaskTransition(_Transition):
    """A step of one task's state machine."""

    task: str


class _Spend(BaseModel):
    """Usage of model calls, under OpenTelemetry's gen_ai semantic-convention names."""

    model_config = ConfigDict(populate_by_name=True)

    input_tokens: int = Field(0, alias="gen_ai.usage.input_tokens")
    output_tokens: int = Field(0, alias="gen_ai.usage.output_tokens")
    cache_creation_input_tokens: int = Field(0, alias="gen_ai.usage.cache_creation.input_tokens")
    cache_read_input_tokens: int = Field(0, alias="gen_ai.usage.cache_read.input_tokens")
    cost_usd: float = 0.0
    calls: int = 0
    cost_known: bool = True

    @property
    def usage(self) -> Usage:
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens,
            cost_usd=self.cost_usd,
            calls=self.calls,
            cost_known=self.cost_known,
        )


def spend(usage: Usage) -> dict[str, Any]:
    """The fields of `usage` for a transition that carries spend (cost rounded to a millionth)."""
    return {**usage.model_dump(), "cost_usd": round(usage.cost_usd, 6)}


# -- the run -------------------------------------------------------------------------------------


class RunStarted(_Transition):
    type: Literal["run_started"] = "run_started"
    run_id: str
    plan: str = ""
    """The plan's path relative to the repository root."""
    repo: str = ""
    branch: str = ""
    base: str | None = None
    """HEAD when the run started."""
    agent: str = ""
    settings: dict[str, Any] = Field(default_factory=dict)
    selection: dict[str, Any] = Field(default_factory=dict)
    preexisting: dict[str, str | None] = Field(default_factory=dict)
    plan_sha256: str = ""
    pid: int | None = None


class GitBaseline(_Transition):
    """What a resume holds git's own files to (persistence's GitRepo.git_baseline: digests and
    names only, never a value), kept as GitRepo wrote it."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: Literal["git_baseline"] = "git_baseline"

    def facts(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SandboxChosen(_Transition):
    type: Literal["sandbox"] = "sandbox"
    kind: str = ""
    """'bubblewrap' or 'none'."""
    warning: str | None = None


class RunResumed(_Transition):
    type: Literal["run_resumed"] = "run_resumed"
    overrides: dict[str, Any] = Field(default_factory=dict)
    """The remembered settings this resume changed."""
    pid: int | None = None
    selection: dict[str, Any] | None = None
    """The run's selection as the plan now has it (tasks the user added since join)."""


class ChecksBaseline(_Transition):
    """The project's default checks, run once before the run's first task."""

    type: Literal["checks_baseline"] = "checks_baseline"
    commands: list[str] = Field(default_factory=list)
    failing: dict[str, str] = Field(default_factory=dict)
    """The checks that already failed then (command -> how): not blamed on a task."""


class UserChanges(_Transition):
    type: Literal["user_changes"] = "user_changes"
    paths: dict[str, str | None] = Field(default_factory=dict)
    """Paths the user changed while the run was stopped, with their blob ids (--allow-dirty)."""


class GitTampered(_Transition):
    """Git's own files were changed and put back: by `task`'s agent or checks, by one of `tasks`
    (a parallel run cannot tell which), or since the run stopped."""

    type: Literal["git_tampered"] = "git_tampered"
    changes: list[str] = Field(default_factory=list)
    task: str | None = None
    attempt: int | None = None
    tasks: list[str] | None = None


class RunEnded(_Transition):
    """How a run went, when it ended or stopped."""

    status: Literal["complete", "failed", "stopped", "waiting"] = "stopped"
    """waiting: every task that could run did; some wait for a person (accept or reject)."""
    message: str = ""
    resume_hint: str = ""
    remaining: int = 0
    """Tasks of the selection neither settled nor failed nor skipped."""


class RunStopped(RunEnded):
    type: Literal["run_stopped"] = "run_stopped"


class RunFinished(RunEnded):
    type: Literal["run_finished"] = "run_finished"


# -- a task --------------------------------------------------------------------------------------


class TaskRunning(TaskTransition):
    """An attempt starts (announced before the agent may edit anything)."""

    type: Literal["task_running"] = "task_running"
    attempt: int | None = None
    prompt_file: str | None = None
    group: bool = False
    """A parent box whose children did the work: checked, not given to an agent."""
    workspace: str = ""
    node: str = ""
    """Where the attempt runs when not on this machine: the Ray node (`--executor ray`)."""


class ModelCall(TaskTransition, _Spend):
    type: Literal["model_call"] = "model_call"
    attempt: int | None = None
    detail: str = ""
    role: Literal["worker", "reviewer"] = "worker"
    """Whose call: the task's worker or its reviewer (a ledger of its own)."""
    model: str = ""
    """The model that answered, where the backend says ("" in journals from before reviewers)."""


class AgentActed(TaskTransition):
    """A tool call, a message, progress: for the record, no recovery depends on it."""

    type: Literal["agent_event"] = "agent_event"
    kind: str = ""
    detail: str = ""


class AgentFinished(TaskTransition, _Spend):
    type: Literal["agent_finished"] = "agent_finished"
    attempt: int | None = None
    status: str | None = None
    summary: str = ""
    turns: int | None = None
    tree: str | None = None
    """In the run's own work tree: the tree as the agent left it."""


class ProtectedRestored(TaskTransition):
    type: Literal["protected_restored"] = "protected_restored"
    attempt: int | None = None
    paths: list[str] = Field(default_factory=list)


class CheckRan(TaskTransition):
    type: Literal["verification"] = "verification"
    attempt: int | None = None
    command: str = ""
    exit_code: int = -1
    ok: bool = False
    duration: float = 0.0
    timed_out: bool = False
    output_tail: str = ""
    preexisting: bool = False
    """It failed as it already did before the run's first task: reported, not blamed on the task."""


class AttemptFailed(TaskTransition):
    type: Literal["attempt_failed"] = "attempt_failed"
    attempt: int | None = None
    reason: str = ""
    tree: str | None = None
    """The workspace as the failed attempt left it: what the next attempt builds on."""


class AttemptInterrupted(TaskTransition):
    """A kill or a stop cut the attempt short: not the task's fault, it does not count."""

    type: Literal["attempt_interrupted"] = "attempt_interrupted"
    attempt: int | None = None


class CheckAtBase(BaseModel):
    """A check as it went against the base commit with the attempt's test changes applied."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    command: str
    exit_code: int = -1
    ok: bool = False
    duration: float = 0.0
    timed_out: bool = False
    output_tail: str = ""


class FailFirstChecked(TaskTransition):
    """The tests the attempt added or changed, run against the commit it started from with only
    those test changes applied (engine.fail_first): they must fail there. And what the attempt's
    diff did to tests that were already there (deleted, skipped, fewer assertions)."""

    type: Literal["fail_first"] = "fail_first"
    attempt: int | None = None
    result: Literal["ok", "passed-at-base", "none", "off"] = "none"
    """ok: a check failed at base; passed-at-base: every check passed there (the new tests are no
    evidence); none: no test added or changed, or no check runs one; off: not run (fail_first = "off")."""
    tests: list[str] = Field(default_factory=list)
    """The test files the attempt added or changed (applied at base)."""
    checks: list[CheckAtBase] = Field(default_factory=list)
    """Each check run at base, in order (the first that failed ends them)."""
    base: str | None = None
    """The commit the attempt started from."""
    weakened: list[str] = Field(default_factory=list)
    """What the diff did to existing tests, one finding a line (a deleted test file, a test added to
    a skip, assertions removed)."""
    note: str = ""
    """Why the result is what it is, in a sentence (no check runs the changed tests, ...)."""


class TaskVerified(TaskTransition):
    type: Literal["task_verified"] = "task_verified"
    attempt: int | None = None
    tree: str | None = None
    unverified: bool = False
    """Passed with no verification command to run."""


class ReviewRound(TaskTransition):
    """A reviewer judged the attempt's work against the unit's criteria, and orchestrate checked
    the evidence it gave (quotes against the attempt's tree, commands run again)."""

    type: Literal["review_round"] = "review_round"
    attempt: int | None = None
    round: int = 1
    model: str = ""
    asked: list[str] = Field(default_factory=list)
    """The criteria the reviewer was given."""
    criteria: list[CheckedCriterion] = Field(default_factory=list)
    """Its verdict per criterion, each evidence item marked as holding or not."""
    outcome: ReviewOutcome = "not_held"
    problems: list[str] = Field(default_factory=list)
    """Why the verdict was not accepted (evidence that did not hold, criteria without a verdict)."""


class ReviewSkipped(TaskTransition):
    """The unit has criteria for a reviewer, and no reviewer could judge them: said, not hidden."""

    type: Literal["review_skipped"] = "review_skipped"
    attempt: int | None = None
    reason: str = ""


class TaskCommitting(TaskTransition):
    type: Literal["task_committing"] = "task_committing"
    workspace: dict[str, str] = Field(default_factory=dict)


class TaskDone(TaskTransition):
    type: Literal["task_done"] = "task_done"
    commit: str | None = None
    unverified: bool | None = None
    """None: as the task's verification said."""
    worktree: str | None = None
    branch: str | None = None
    base: str | None = None
    merged_from: str | None = None
    reason: str = ""


class TaskNeedsHuman(TaskTransition):
    """The task waits for a person: a unit the plan marks as manual, or a reviewer's needs_human
    verdict. Not ticked, not committed; tasks that do not depend on it go on, its dependents wait
    (neither failed nor skipped). `orchestrate accept` lands it, `orchestrate reject` re-opens it."""

    type: Literal["task_needs_human"] = "task_needs_human"
    attempt: int | None = None
    reason: str = ""
    tree: str | None = None
    """The work tree as the attempt left it, verified by its checks (None: no attempt ran)."""
    ref: str | None = None
    """Where its work is kept (a commit on the head it was done on) while it waits; journaled
    before the work is moved there, so the ref may not exist: then it had no edits."""


class TaskAccepted(TaskTransition):
    """A person accepted a task that waited for one (`orchestrate accept`): its work (if any) and
    its tick are committed next, with an Orchestrate-Attested-By trailer."""

    type: Literal["task_accepted"] = "task_accepted"
    by: str = ""
    """`Name <email>`: the git identity of whoever accepted it."""
    note: str = ""
    tree: str | None = None
    """The tree the commit holds but for the tick: the task's kept work on the branch's head."""


class TaskRejected(TaskTransition):
    """A person rejected a task that waited for one (`orchestrate reject`): it is open again and
    its next attempt's prompt carries the note."""

    type: Literal["task_rejected"] = "task_rejected"
    by: str = ""
    note: str = ""


class TaskFailed(TaskTransition):
    type: Literal["task_failed"] = "task_failed"
    reason: str = ""
    ref: str | None = None


class TaskSkipped(TaskTransition):
    type: Literal["task_skipped"] = "task_skipped"
    reason: str = ""


class TaskReset(TaskTransition):
    type: Literal["task_reset"] = "task_reset"
    reason: str = ""


class WorktreeAdded(TaskTransition):
    type: Literal["worktree_added"] = "worktree_added"
    worktree: str | None = None
    branch: str | None = None
    base: str | None = None


class WorktreeRemoved(TaskTransition):
    type: Literal["worktree_removed"] = "worktree_removed"


class RemoteResult(TaskTransition):
    """An attempt that ran on a Ray node came back: its work (the commit the node made on `base`,
    fetched from the bundle it returned) is on `branch` of this repository, ready to land."""

    type: Literal["remote_result"] = "remote_result"
    node: str = ""
    branch: str | None = None
    base: str | None = None


class MergeFailed(TaskTransition):
    """Verified in its worktree, but its work does not fit on the run's new head."""

    type: Literal["merge_failed"] = "merge_failed"
    attempt: int | None = None
    files: list[str] = Field(default_factory=list)
    reason: str = ""
    failure: str | None = None
    """What the next prompt shows the agent."""
    rerun: bool = True


class EditsSaved(TaskTransition):
    type: Literal["edits_saved"] = "edits_saved"
    attempt: int | None = None
    ref: str | None = None


Transition = Annotated[
    RunStarted
    | GitBaseline
    | SandboxChosen
    | RunResumed
    | ChecksBaseline
    | UserChanges
    | GitTampered
    | RunStopped
    | RunFinished
    | TaskRunning
    | ModelCall
    | AgentActed
    | AgentFinished
    | ProtectedRestored
    | CheckRan
    | FailFirstChecked
    | AttemptFailed
    | AttemptInterrupted
    | TaskVerified
    | ReviewRound
    | ReviewSkipped
    | TaskCommitting
    | TaskDone
    | TaskNeedsHuman
    | TaskAccepted
    | TaskRejected
    | TaskFailed
    | TaskSkipped
    | TaskReset
    | WorktreeAdded
    | WorktreeRemoved
    | RemoteResult
    | MergeFailed
    | EditsSaved,
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[Transition] = TypeAdapter(Transition)
TYPES = frozenset(kind.model_fields["type"].default for kind in get_args(get_args(Transition)[0]))


class RecordError(ValueError):
    """A journal record that is not a transition of a format this orchestrate reads."""


def parse(record: object) -> Transition:
    """The transition a journal record holds (format 1 or 2), or RecordError saying in one line
    why it is not one."""
    if not isinstance(record, dict):
        raise RecordError(f"not a journal record (a JSON {type(record).__name__}, not an object)")
    version = record.get("v", 1)
    if version not in READABLE_VERSIONS:
        raise RecordError(
            f"written in journal format {version!r}; this orchestrate reads formats "
            f"{', '.join(map(str, READABLE_VERSIONS))}: use the orchestrate that wrote it"
        )
    kind = record.get("type")
    if kind not in TYPES:
        raise RecordError(f"unknown record type {kind!r} (journal format {version})")
    try:
        return _ADAPTER.validate_python({**record, "v": version})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"][1:]) or "record"
        if first["type"] == "missing":
            raise RecordError(f"a {kind} record without its {where}") from None
        raise RecordError(f"a {kind} record whose {where} is wrong: {first['msg']}") from None


def to_record(transition: Transition) -> dict[str, Any]:
    """The JSON object the journal stores for `transition`: its version, type and time first."""
    fields = transition.model_dump(mode="json", by_alias=True)
    return {"v": fields.pop("v"), "type": fields.pop("type"), "at": fields.pop("at"), **fields}
