"""Task statuses and run state, rebuilt by folding the run's journal records in order.

Each task walks a durable state machine, each step recorded before the action it announces:

    pending -> running(attempt) -> agent_done(tree*) -> verified(tree) -> committing -> done(sha)
                    ^                |                                       |
                    +---- retry -----+  (attempt failed, with its tree)        +-> failed / skipped

    (*) in the run's own work tree only: what a resume tells the user's later changes by.

The journal is the record of what was attempted; the commits' trailers are the truth of what was
finished. Resume reconciles the two (see orchestrator/engine/session.py).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from orchestrator.domain.usage import Usage

# OpenTelemetry gen_ai semantic-convention names for usage, used as journal keys.
OTEL_USAGE_KEYS: dict[str, str] = {
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
    "cache_creation_input_tokens": "gen_ai.usage.cache_creation.input_tokens",
    "cache_read_input_tokens": "gen_ai.usage.cache_read.input_tokens",
}


def usage_to_record(usage: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {otel: getattr(usage, name) for name, otel in OTEL_USAGE_KEYS.items()}
    out["cost_usd"] = round(usage.cost_usd, 6)
    out["calls"] = usage.calls
    return out


def usage_from_record(record: dict[str, Any]) -> Usage:
    values: dict[str, Any] = {name: int(record.get(otel, 0) or 0) for name, otel in OTEL_USAGE_KEYS.items()}
    values["cost_usd"] = float(record.get("cost_usd", 0.0) or 0.0)
    values["calls"] = int(record.get("calls", 0) or 0)
    return Usage(**values)


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


class VerificationRecord(BaseModel):
    command: str
    exit_code: int
    ok: bool
    duration: float = 0.0
    output_tail: str = ""
    preexisting: bool = False
    """It failed as it already did before the run's first task: not blamed on this one."""


class AttemptRecord(BaseModel):
    number: int
    agent_status: str | None = None
    summary: str = ""
    usage: Usage = Field(default_factory=Usage)
    tree: str | None = None
    verifications: list[VerificationRecord] = Field(default_factory=list)
    failure: str | None = None
    prompt_file: str | None = None
    protected_restored: list[str] = Field(default_factory=list)


class TaskRecord(BaseModel):
    id: str
    status: TaskStatus = TaskStatus.PENDING
    attempts: list[AttemptRecord] = Field(default_factory=list)
    attempts_since_reset: int = 0
    """Attempts counted against max_attempts: a resume gives a failed task a fresh allowance."""
    usage: Usage = Field(default_factory=Usage)
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

    @property
    def attempt(self) -> int:
        return self.attempts[-1].number if self.attempts else 0

    def current(self) -> AttemptRecord | None:
        return self.attempts[-1] if self.attempts else None


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
    def from_records(cls, records: list[dict[str, Any]]) -> RunState:
        state = cls()
        for record in records:
            state.apply(record)
        return state

    def apply(self, record: dict[str, Any]) -> None:
        kind = record.get("type")
        at = float(record.get("at", 0.0) or 0.0)
        self.updated_at = max(self.updated_at, at)
        if kind == "run_started":
            self.run_id = str(record["run_id"])
            self.plan = str(record.get("plan", ""))
            self.repo = str(record.get("repo", ""))
            self.branch = str(record.get("branch", ""))
            self.base = record.get("base")
            self.agent = str(record.get("agent", ""))
            self.settings = dict(record.get("settings", {}))
            self.selection = dict(record.get("selection", {}))
            self.preexisting = dict(record.get("preexisting", {}))
            self.started_at = at
            self.status = RunStatus.RUNNING
            return
        if kind == "sandbox":
            self.sandbox = str(record.get("kind", ""))
            warning = str(record.get("warning") or "")
            if warning and warning not in self.warnings:
                self.warnings.append(warning)
            return
        if kind == "run_resumed":
            self.resumes += 1
            self.status = RunStatus.RUNNING
            self.message = ""
            self.settings.update(record.get("overrides", {}))
            if isinstance(record.get("selection"), dict):  # tasks the user added since join the run
                self.selection = dict(record["selection"])
            return
        if kind == "checks_baseline":
            self.baseline = {str(k): str(v) for k, v in dict(record.get("failing", {})).items()}
            return
        if kind == "user_changes":
            self.preexisting.update(record.get("paths", {}))
            return
        if kind in ("run_stopped", "run_finished"):
            self.status = RunStatus(record.get("status", "stopped"))
            self.message = str(record.get("message", ""))
            return
        task_id = record.get("task")
        if not isinstance(task_id, str):
            return
        task = self.task(task_id)
        attempt = task.current()
        if kind == "task_running":
            number = int(record.get("attempt", task.attempt + 1))
            task.attempts.append(AttemptRecord(number=number, prompt_file=record.get("prompt_file")))
            task.attempts_since_reset += 1
            task.status = TaskStatus.RUNNING
            task.tree = None
        elif kind == "model_call":
            usage = usage_from_record(record)
            task.usage = task.usage + usage
            self.usage = self.usage + usage
            if attempt is not None:
                attempt.usage = attempt.usage + usage
        elif kind == "agent_finished" and attempt is not None:
            attempt.agent_status = record.get("status")
            attempt.summary = str(record.get("summary", ""))
            attempt.tree = record.get("tree")
            task.tree = attempt.tree
            task.status = TaskStatus.AGENT_DONE
        elif kind == "protected_restored" and attempt is not None:
            attempt.protected_restored = list(record.get("paths", []))
        elif kind == "verification" and attempt is not None:
            attempt.verifications.append(
                VerificationRecord(
                    command=str(record.get("command", "")),
                    exit_code=int(record.get("exit_code", -1)),
                    ok=bool(record.get("ok", False)),
                    duration=float(record.get("duration", 0.0)),
                    output_tail=str(record.get("output_tail", "")),
                    preexisting=bool(record.get("preexisting", False)),
                )
            )
        elif kind == "attempt_failed":
            if attempt is not None:
                attempt.failure = str(record.get("reason", ""))
            task.status = TaskStatus.PENDING
            # The failed attempt's edits stay for the next attempt; resume checks they are intact.
            task.tree = record.get("tree")
        elif kind == "attempt_interrupted":
            # A kill or a stop is not the task's fault: the attempt does not count.
            if attempt is not None:
                attempt.failure = "interrupted"
            task.status = TaskStatus.PENDING
            task.attempts_since_reset = max(task.attempts_since_reset - 1, 0)
            task.tree = None
        elif kind == "task_verified":
            task.status = TaskStatus.VERIFIED
            task.tree = record.get("tree")
            task.unverified = bool(record.get("unverified", False))
        elif kind == "task_committing":
            task.status = TaskStatus.COMMITTING
        elif kind == "task_done":
            task.status = TaskStatus.DONE
            task.commit = record.get("commit")
            task.merged_from = record.get("merged_from", task.merged_from)
            task.unverified = bool(record.get("unverified", task.unverified))
            task.reason = str(record.get("reason", ""))
        elif kind == "task_failed":
            task.status = TaskStatus.FAILED
            task.reason = str(record.get("reason", ""))
        elif kind == "task_skipped":
            task.status = TaskStatus.SKIPPED
            task.reason = str(record.get("reason", ""))
        elif kind == "task_reset":
            task.status = TaskStatus.PENDING
            task.attempts_since_reset = 0
            task.tree = None
            task.reason = ""
            task.merge_failures = 0
        elif kind == "worktree_added":
            task.worktree = record.get("worktree")
            task.branch = record.get("branch")
            task.base = record.get("base")
        elif kind == "worktree_removed":
            task.worktree = task.branch = task.base = None
        elif kind == "merge_failed":
            # Verified in its worktree, but not on the run's new head: one more round of attempts,
            # from a fresh worktree; the reason goes to the next prompt.
            task.merge_failures += 1
            if attempt is not None:
                attempt.failure = str(record.get("failure") or record.get("reason", ""))
            if record.get("rerun", True):
                task.status = TaskStatus.PENDING
                task.attempts_since_reset = 0
                task.tree = None
        elif kind == "edits_saved":
            ref = record.get("ref")
            if isinstance(ref, str) and ref not in task.saved_refs:
                task.saved_refs.append(ref)
