"""Task statuses and run state, rebuilt by folding the run's journal records in order.

Each task walks a durable state machine, each step recorded before the action it announces:

    pending -> running(attempt) -> agent_done(tree*) -> verified(tree) -> committing -> done(sha)
                    ^                |                                       |
                    +---- retry -----+  (attempt failed, with its tree)        +-> failed / skipped

    (*) in the run's own work tree only: what a resume tells the user's later changes by.

The journal is the record of what was attempted; the commits' trailers are the truth of what was
finished. Resume reconciles the two (see orchestrator/engine/resume.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from orchestrator.domain import transitions as t
from orchestrator.domain.review import CheckedCriterion, ReviewOutcome
from orchestrator.domain.usage import Usage


def rejection(note: str, by: str) -> str:
    """What the next attempt's prompt says about a person's rejection of the last one."""
    who = f" ({by})" if by else ""
    return f"A person reviewed the previous attempt's work and rejected it{who}: {note}"


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    """An attempt started; the agent may have left partial edits."""
    AGENT_DONE = "agent_done"
    """The agent finished; verification is under way (resume verifies again). In the run's own
    work tree (serial runs) the tree as the agent left it is recorded."""
    VERIFIED = "verified"
    """Verification passed on the recorded tree; the commit has not started."""
    COMMITTING = "committing"
    """The tick and the commit are under way: the branch's trailers say whether it happened."""
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    """Not run because a task it depends on failed."""
    NEEDS_HUMAN = "needs_human"
    """Waits for a person (a manual unit, a reviewer's needs_human): `orchestrate accept` commits
    it, `orchestrate reject` re-opens it; its dependents wait, the other tasks go on."""

    @property
    def in_flight(self) -> bool:
        return self in (
            TaskStatus.RUNNING,
            TaskStatus.AGENT_DONE,
            TaskStatus.VERIFIED,
            TaskStatus.COMMITTING,
        )


class RunStatus(StrEnum):
    RUNNING = "running"
    """Under way, or killed before it could say otherwise."""
    COMPLETE = "complete"
    FAILED = "failed"
    STOPPED = "stopped"
    WAITING = "waiting"
    """Ended with every task that could run done, and some waiting for a person."""


class VerificationRecord(BaseModel):
    command: str
    exit_code: int
    ok: bool
    duration: float = 0.0
    output_tail: str = ""
    preexisting: bool = False
    """It failed as it already did before the run's first task: not blamed on this one."""


class FailFirstRecord(BaseModel):
    """What fail-first found for an attempt (see transitions.FailFirstChecked)."""

    result: str
    """ok, passed-at-base, none or off."""
    tests: list[str] = Field(default_factory=list)
    checks: list[VerificationRecord] = Field(default_factory=list)
    """The checks run at base, as they went there."""
    weakened: list[str] = Field(default_factory=list)
    note: str = ""

    def __str__(self) -> str:
        """One line for a report: `passed-at-base: every check that runs them passed at base
        (tests/test_x.py); tests weakened: ...`."""
        line = f"{self.result}: {self.note}" if self.note else self.result
        if self.tests:
            line += f" ({', '.join(self.tests)})"
        if self.weakened:
            line += "; tests weakened: " + "; ".join(self.weakened)
        return line


class ReviewRecord(BaseModel):
    """One review round of an attempt: the verdict per criterion, and whether its evidence held."""

    round: int
    model: str = ""
    asked: list[str] = Field(default_factory=list)
    criteria: list[CheckedCriterion] = Field(default_factory=list)
    outcome: ReviewOutcome = "not_held"
    problems: list[str] = Field(default_factory=list)


class AttemptRecord(BaseModel):
    number: int
    agent_status: str | None = None
    summary: str = ""
    usage: Usage = Field(default_factory=Usage)
    """The worker's model calls."""
    review_usage: Usage = Field(default_factory=Usage)
    """The reviewer's model calls, kept apart from the worker's."""
    reviews: list[ReviewRecord] = Field(default_factory=list)
    not_reviewed: str = ""
    """Why the attempt's criteria went unreviewed (no reviewer could judge them), when they did."""
    tree: str | None = None
    verifications: list[VerificationRecord] = Field(default_factory=list)
    failure: str | None = None
    prompt_file: str | None = None
    protected_restored: list[str] = Field(default_factory=list)
    fail_first: FailFirstRecord | None = None
    """The attempt's tests run at base, and what its diff did to existing tests."""
    node: str = ""
    """The Ray node it ran on (`--executor ray`); "" on this machine."""


class TaskRecord(BaseModel):
    id: str
    status: TaskStatus = TaskStatus.PENDING
    attempts: list[AttemptRecord] = Field(default_factory=list)
    attempts_since_reset: int = 0
    """Attempts counted against max_attempts: a resume gives a failed task a fresh allowance."""
    usage: Usage = Field(default_factory=Usage)
    """Every model call of the task, its worker's and its reviewer's."""
    review_usage: Usage = Field(default_factory=Usage)
    """Of `usage`, the reviewer's calls."""
    tree: str | None = None
    """The work tree's hash as verified (verified, committing), as a failed attempt left it
    (pending, between attempts), or as the agent left it (agent_done, in the run's work tree)."""
    commit: str | None = None
    unverified: bool = False
    reason: str = ""
    saved_refs: list[str] = Field(default_factory=list)
    """Refs that keep edits of interrupted or failed attempts."""
    worktree: str | None = None
    """Parallel runs: the git worktree the task's attempts run in, while it exists."""
    branch: str | None = None
    """Parallel runs: the worktree's branch (orchestrate/<run>/<task>), while it exists."""
    base: str | None = None
    """Parallel runs: the run branch's commit the worktree was cut from."""
    merged_from: str | None = None
    """Parallel runs: the task branch's commit that was brought onto the run's branch."""
    merge_failures: int = 0
    """Parallel runs: times the task's work did not merge (or verify) on the run's new head."""
    checks: dict[str, VerificationRecord] = Field(default_factory=dict)
    """The checks of its latest attempt (or of a check task's own run), by command, each as it
    last ran (a re-check on the run's new head counts): what its commit's evidence counts."""
    held_ref: str | None = None
    """Needs-human: where its work is kept while it waits (the ref may not exist: no edits)."""
    attested_by: str = ""
    """Who accepted it (`Name <email>`), when a person did."""
    note: str = ""
    """The note of whoever accepted or rejected it last."""
    rejected: str = ""
    """What its next prompt says of a person's rejection (also on the rejected attempt's failure;
    here for a unit no attempt ran)."""

    @property
    def attempt(self) -> int:
        return self.attempts[-1].number if self.attempts else 0

    def current(self) -> AttemptRecord | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def fail_first(self) -> FailFirstRecord | None:
        """Fail-first's finding on the latest attempt (the one verified, once the task is)."""
        current = self.current()
        return current.fail_first if current is not None else None


class RunState(BaseModel):
    run_id: str = ""
    plan: str = ""
    """The plan's path relative to the repository root."""
    repo: str = ""
    branch: str = ""
    base: str | None = None
    """HEAD when the run started."""
    agent: str = ""
    settings: dict[str, Any] = Field(default_factory=dict)
    """The settings the run was started with (resume reuses them; flags may override)."""
    selection: dict[str, Any] = Field(default_factory=dict)
    preexisting: dict[str, str | None] = Field(default_factory=dict)
    """Paths already dirty when an --allow-dirty run started, or changed by the user while it was
    stopped (recorded by an --allow-dirty resume: `user_changes`), with their blob ids: not the
    run's, kept out of its commits while they stay as they were."""
    status: RunStatus = RunStatus.RUNNING
    message: str = ""
    started_at: float = 0.0
    updated_at: float = 0.0
    resumes: int = 0
    sandbox: str = ""
    """What confined the commands last time the run went: 'bubblewrap' or 'none'."""
    warnings: list[str] = Field(default_factory=list)
    """Every distinct warning about the run's confinement, from its start and each resume."""
    baseline: dict[str, str] | None = None
    """The default checks that already failed when the run started (command -> how), taken once
    before its first task; None until taken. A task is not blamed for them."""
    order: list[str] = Field(default_factory=list)
    """Task ids in the order the run first touched them."""
    tasks: dict[str, TaskRecord] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    """Every model call of the run, workers' and reviewers'."""
    review_usage: Usage = Field(default_factory=Usage)
    """Of `usage`, the reviewers' calls."""
    models: dict[str, Usage] = Field(default_factory=dict)
    """The run's usage per model ("" for calls whose backend did not name one): a run with a
    reviewer uses two."""

    def task(self, task_id: str) -> TaskRecord:
        record = self.tasks.get(task_id)
        if record is None:
            record = TaskRecord(id=task_id)
            self.tasks[task_id] = record
            self.order.append(task_id)
        return record

    def preexisting_failures(self, own: list[str]) -> set[str]:
        """Default checks that failed before the run began, but for those the task names itself
        (a task that says `Run: make lint` is judged by it)."""
        return set(self.baseline or {}) - set(own)

    def count(self, status: TaskStatus) -> int:
        return sum(1 for t in self.tasks.values() if t.status is status)

    @classmethod
    def from_records(cls, transitions: Iterable[t.Transition]) -> RunState:
        state = cls()
        for transition in transitions:
            state.apply(transition)
        return state

    def apply(self, transition: t.Transition) -> None:
        """Fold one transition in (the journal's order is the order they happened in)."""
        self.updated_at = max(self.updated_at, transition.at)
        match transition:
            case t.RunStarted():
                self.run_id = transition.run_id
                self.plan = transition.plan
                self.repo = transition.repo
                self.branch = transition.branch
                self.base = transition.base
                self.agent = transition.agent
                self.settings = dict(transition.settings)
                self.selection = dict(transition.selection)
                self.preexisting = dict(transition.preexisting)
                self.started_at = transition.at
                self.status = RunStatus.RUNNING
            case t.SandboxChosen(kind=kind, warning=warning):
                self.sandbox = kind
                if warning and warning not in self.warnings:
                    self.warnings.append(warning)
            case t.RunResumed():
                self.resumes += 1
                self.status = RunStatus.RUNNING
                self.message = ""
                self.settings.update(transition.overrides)
                if transition.selection is not None:  # tasks the user added since join the run
                    self.selection = dict(transition.selection)
            case t.ChecksBaseline():
                self.baseline = dict(transition.failing)
            case t.UserChanges():
                self.preexisting.update(transition.paths)
            case t.RunEnded():
                self.status = RunStatus(transition.status)
                self.message = transition.message
            case t.GitBaseline() | t.GitTampered():
                pass  # what resume holds git's files to, and what was put back: no state of a task
            case _:
                self._apply_to_task(transition)

    def _apply_to_task(self, transition: t.Transition) -> None:
        if not isinstance(transition, t.TaskTransition):
            return
        task = self.task(transition.task)
        attempt = task.current()
        match transition:
            case t.TaskRunning():
                number = transition.attempt if transition.attempt is not None else task.attempt + 1
                task.attempts.append(
                    AttemptRecord(number=number, prompt_file=transition.prompt_file, node=transition.node)
                )
                task.attempts_since_reset += 1
                task.status = TaskStatus.RUNNING
                task.tree = None
                task.checks = {}
            case t.ModelCall():
                usage = transition.usage
                task.usage = task.usage + usage
                self.usage = self.usage + usage
                self.models[transition.model] = self.models.get(transition.model, Usage()) + usage
                if transition.role == "reviewer":
                    task.review_usage = task.review_usage + usage
                    self.review_usage = self.review_usage + usage
                    if attempt is not None:
                        attempt.review_usage = attempt.review_usage + usage
                elif attempt is not None:
                    attempt.usage = attempt.usage + usage
            case t.ReviewRound() if attempt is not None:
                attempt.reviews.append(
                    ReviewRecord(
                        round=transition.round,
                        model=transition.model,
                        asked=list(transition.asked),
                        criteria=list(transition.criteria),
                        outcome=transition.outcome,
                        problems=list(transition.problems),
                    )
                )
            case t.ReviewSkipped() if attempt is not None:
                attempt.not_reviewed = transition.reason
            case t.AgentFinished() if attempt is not None:
                attempt.agent_status = transition.status
                attempt.summary = transition.summary
                attempt.tree = transition.tree
                task.tree = attempt.tree
                task.status = TaskStatus.AGENT_DONE
            case t.ProtectedRestored() if attempt is not None:
                attempt.protected_restored = list(transition.paths)
            case t.CheckRan():
                ran = VerificationRecord(
                    command=transition.command,
                    exit_code=transition.exit_code,
                    ok=transition.ok,
                    duration=transition.duration,
                    output_tail=transition.output_tail,
                    preexisting=transition.preexisting,
                )
                task.checks[ran.command] = ran
                if attempt is not None:
                    attempt.verifications.append(ran)
            case t.FailFirstChecked() if attempt is not None:
                attempt.fail_first = FailFirstRecord(
                    result=transition.result,
                    tests=list(transition.tests),
                    checks=[
                        VerificationRecord(
                            command=check.command,
                            exit_code=check.exit_code,
                            ok=check.ok,
                            duration=check.duration,
                            output_tail=check.output_tail,
                        )
                        for check in transition.checks
                    ],
                    weakened=list(transition.weakened),
                    note=transition.note,
                )
            case t.AttemptFailed():
                if attempt is not None:
                    attempt.failure = transition.reason
                task.status = TaskStatus.PENDING
                # The failed attempt's edits stay for the next attempt; resume checks they are intact.
                task.tree = transition.tree
            case t.AttemptInterrupted():
                # A kill or a stop is not the task's fault: the attempt does not count.
                if attempt is not None:
                    attempt.failure = "interrupted"
                task.status = TaskStatus.PENDING
                task.attempts_since_reset = max(task.attempts_since_reset - 1, 0)
                task.tree = None
            case t.TaskVerified():
                task.status = TaskStatus.VERIFIED
                task.tree = transition.tree
                task.unverified = transition.unverified
            case t.TaskCommitting():
                task.status = TaskStatus.COMMITTING
            case t.TaskDone():
                task.status = TaskStatus.DONE
                task.commit = transition.commit
                if transition.merged_from is not None:
                    task.merged_from = transition.merged_from
                if transition.unverified is not None:
                    task.unverified = transition.unverified
                task.reason = transition.reason
            case t.TaskNeedsHuman():
                task.status = TaskStatus.NEEDS_HUMAN
                task.reason = transition.reason
                task.tree = transition.tree
                task.held_ref = transition.ref
            case t.TaskAccepted():
                # Verified by a person: the commit follows, as after a verification that passed.
                task.status = TaskStatus.VERIFIED
                task.tree = transition.tree
                task.attested_by = transition.by
                task.note = transition.note
            case t.TaskRejected():
                # Open again, with a fresh allowance; the note is what the next prompt shows.
                task.rejected = rejection(transition.note, transition.by)
                if attempt is not None:
                    attempt.failure = task.rejected
                task.status = TaskStatus.PENDING
                task.attempts_since_reset = 0
                task.tree = None
                task.reason = ""
                task.note = transition.note
            case t.TaskFailed():
                task.status = TaskStatus.FAILED
                task.reason = transition.reason
            case t.TaskSkipped():
                task.status = TaskStatus.SKIPPED
                task.reason = transition.reason
            case t.TaskReset():
                task.status = TaskStatus.PENDING
                task.attempts_since_reset = 0
                task.tree = None
                task.reason = ""
                task.merge_failures = 0
            case t.WorktreeAdded():
                task.worktree = transition.worktree
                task.branch = transition.branch
                task.base = transition.base
            case t.RemoteResult():
                task.branch = transition.branch
                task.base = transition.base
            case t.WorktreeRemoved():
                task.worktree = task.branch = task.base = None
            case t.MergeFailed():
                # Verified in its worktree, but not on the run's new head: one more round of
                # attempts, from a fresh worktree; the reason goes to the next prompt.
                task.merge_failures += 1
                if attempt is not None:
                    attempt.failure = transition.failure or transition.reason
                if transition.rerun:
                    task.status = TaskStatus.PENDING
                    task.attempts_since_reset = 0
                    task.tree = None
            case t.EditsSaved(ref=str(ref)) if ref not in task.saved_refs:
                task.saved_refs.append(ref)
