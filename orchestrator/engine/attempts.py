"""A task from running to verified: its attempts, each an agent call, guarded (what the agent may
not change is undone) and verified (its checks, guarded in turn), until one passes or none are left.

    running(attempt) -> agent_done -> verified           (the landing takes it from there)
         ^                  |
         +--- retry --------+  attempt failed: its reason goes to the next prompt

Each step is journaled before the action it announces (engine.recorder); a kill between any two is
resumed from what was recorded (engine.resume). Runs on a worker thread with --parallel N.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from orchestrator.agents.base import Agent, AgentEvent, AgentListener, AgentRequest, AgentStatus, RateGate
from orchestrator.config import Settings
from orchestrator.domain import transitions as t
from orchestrator.domain.events import TaskRetrying
from orchestrator.domain.plan import Plan, Task
from orchestrator.engine.crash import crash_point
from orchestrator.engine.executor import Executor, TaskResult
from orchestrator.engine.fail_first import FailFirst
from orchestrator.engine.guard import Guard
from orchestrator.engine.prompts import PromptRenderer, finished_dependencies
from orchestrator.engine.recorder import Recorder
from orchestrator.engine.review import ReviewStage
from orchestrator.engine.scheduler import is_group
from orchestrator.engine.stop import StopToken
from orchestrator.engine.verification import (
    CommandResult,
    VerificationOutcome,
    commands_for,
    run_verification,
)
from orchestrator.persistence.repo import GitRepo
from orchestrator.planfile.manual import manual_words
from orchestrator.planfile.parser import plan_bytes_as_left
from orchestrator.tools.environment import redact
from orchestrator.tools.sandbox import Sandbox

_UNSAFE_IN_NAMES = re.compile(r"[^A-Za-z0-9._-]+")


def manual_reason(task: Task) -> str:
    """Why a unit the plan marks as manual waits for a person."""
    words = manual_words(task.title)
    said = f'"{words}"' if words else "a checkpoint"
    return f"the plan marks it as a person's step ({said}): no agent is given it"


class Artifacts(Protocol):
    """Where an attempt's prompt is kept: the run's journal (engine.ray_cluster sends a node's back
    to it)."""

    def write_artifact(self, relative: str, text: str) -> Path: ...


class BudgetExceeded(Exception):  # noqa: N818 - reads as the event it is
    """The run's spend reached --max-cost: stop cleanly, resumably."""


class Attempts:
    """Runs a task's attempts in a workspace (see `run`)."""

    def __init__(
        self,
        *,
        repo: GitRepo,
        plan_rel: str,
        settings: Settings,
        agent: Agent | None,
        renderer: PromptRenderer,
        recorder: Recorder,
        journal: Artifacts,
        executor: Executor,
        guard: Guard,
        sandbox: Sandbox,
        env: Callable[[], dict[str, str]],
        plan: Callable[[], Plan],
        stop: StopToken,
        fail_first: FailFirst,
        rate_gate: RateGate | None = None,
        spent: Callable[[], float] | None = None,
    ):
        self.repo = repo
        self.plan_rel = plan_rel
        self.settings = settings
        self.agent = agent
        self.renderer = renderer
        self.recorder = recorder
        self.state = recorder.state
        self.journal = journal
        self.executor = executor
        self.guard = guard
        self.sandbox = sandbox
        self.env = env
        """The variables of `pass_env` that are set: what commands get on top of the allow-list."""
        self.plan = plan
        """The plan as it is now (each landing ticks a box)."""
        self.stop = stop
        self.fail_first = fail_first
        """Checks passed: the tests the attempt changed must fail at base (engine.fail_first)."""
        self.rate_gate = rate_gate
        self.spent = spent or (lambda: self.state.usage.cost_usd)
        """What the run has spent so far, in USD: its state's (on a Ray node: the whole cluster's,
        as the driver's relay last said)."""
        self.review = ReviewStage(
            repo=repo,
            plan_rel=plan_rel,
            settings=settings,
            agent=agent,
            renderer=renderer,
            recorder=recorder,
            sandbox=sandbox,
            env=env,
            plan=plan,
            rate_gate=rate_gate,
        )
        self.resume_at: dict[str, str] = {}
        """Tasks resume picks up mid-way: 'verify' (its agent's work is intact), 'commit' (its
        verified work is intact) or 'retry' (a failed attempt's edits are intact for the next)."""
        self.cost_unknown_said = False

    def run(self, task: Task, workspace: Path) -> TaskResult:
        """Run the task's attempts in `workspace` until one passes verification or none are left."""
        result = TaskResult(task=task, workspace=workspace)
        record = self.state.task(task.id)
        commands = commands_for(task.verify, self.settings.verify)
        point = self.resume_at.pop(task.id, None)  # 'retry' needs nothing: the edits are in place
        result.attempts = record.attempt
        if point == "commit":
            result.passed, result.unverified, result.tree = True, record.unverified, record.tree
            return result
        if task.manual:
            # A person's step: no agent can do it, so none is asked to; it waits for a person.
            result.needs_human = manual_reason(task)
            return result
        if is_group(self.plan(), task):
            return self._group(task, workspace, commands, result)
        if not commands and self.settings.require_verify:
            result.reason = "the task has no verification command and --require-verify is set"
            return result
        ws_repo = self.repo.at(workspace)
        failure = self.last_failure(task.id)
        if task.command is not None and point is None and not record.attempts:
            point = "verify"  # a check task: orchestrate runs its command; an agent only if it fails
        # Whether the previous attempt's edits are in the workspace: after a failed attempt of
        # this loop, or when resume found them intact; not in a fresh worktree (after a merge
        # conflict) nor after resume set them aside.
        changes_kept = point == "retry"
        while True:
            if point == "verify":
                attempt = record.attempt
                point = None
            else:
                if record.attempts_since_reset >= self.settings.max_attempts:
                    result.reason = failure or "no attempts left"
                    return result
                if self.stop.stopping:
                    result.stopped = True
                    return result
                self.check_budget()
                attempt = record.attempt + 1
                if not self._agent_attempt(
                    task, attempt, workspace, ws_repo, commands, failure, changes_kept
                ):
                    failure = self.last_failure(task.id)
                    changes_kept = True
                    if record.attempts_since_reset < self.settings.max_attempts:
                        self._retrying(task, attempt, failure)
                    continue
                if self.stop.stopping:
                    result.stopped = True
                    return result
            result.attempts = attempt
            plan_bytes = plan_bytes_as_left(workspace / self.plan_rel)
            outcome = self.verify(task, attempt, commands, workspace)
            crash_point("after_verify", task.id)
            # The checks ran code the agent may have written, which no sandbox keeps from the
            # workspace: what they changed that no one may is undone, and fails the attempt.
            passed = outcome.passed and commands
            broke = self._checks_broke(task, attempt, ws_repo, plan_bytes) if passed else ""
            tree = ws_repo.snapshot_tree() if passed and not broke else None
            if tree is not None:
                found = self.fail_first.check(task, attempt, ws_repo, tree, outcome.results, workspace)
                if found.stopped:
                    self.recorder.notice(
                        "its tests at base were cut short by the stop; resume checks again", task_id=task.id
                    )
                    result.stopped = True
                    return result
                broke = found.reason
            if outcome.passed and not broke:
                tree = tree or ws_repo.snapshot_tree()
                # What no command judges, a reviewer does (engine.review): not met, the attempt
                # fails with its reasons; for a human, the task waits for one.
                judged = self.review.judge(task, attempt, ws_repo, tree)
                if judged is not None and judged.outcome == "needs_human":
                    return self._needs_human(task, judged.reason, tree, result)
                if judged is not None and judged.outcome != "met":
                    failure, changes_kept = judged.reason, True
                    self._attempt_failed(task, attempt, failure, tree)
                    continue
                # What is left (the snapshot, the branch commit) is not the task's work: its slot
                # may take the next task meanwhile.
                self.executor.checks_passed(task.id)
                # A task whose every check failed before the run began has no evidence either,
                # unless a reviewer's checked evidence says it is done.
                unverified = not outcome.evidence and judged is None
                self.recorder.record(
                    t.TaskVerified(task=task.id, attempt=attempt, tree=tree, unverified=unverified)
                )
                crash_point("after_verified", task.id)
                result.passed, result.unverified, result.tree = True, unverified, tree
                return result
            if not broke and self._cut_short_by_stop(outcome):
                # No verdict: the task stays as its agent left it, and resume verifies again.
                self.recorder.notice(
                    "its check was cut short by the stop; resume checks again", task_id=task.id
                )
                result.stopped = True
                return result
            failure = broke or outcome.failure_report()
            changes_kept = True
            self.recorder.record(
                t.AttemptFailed(task=task.id, attempt=attempt, reason=failure, tree=ws_repo.snapshot_tree())
            )
            crash_point("after_failed_attempt", task.id)
            if record.attempts_since_reset < self.settings.max_attempts:
                failed = outcome.failure
                self._retrying(
                    task, attempt, broke or (failed.explain() if failed else "verification failed")
                )

    def _attempt_failed(self, task: Task, attempt: int, reason: str, tree: str) -> None:
        self.recorder.record(t.AttemptFailed(task=task.id, attempt=attempt, reason=reason, tree=tree))
        crash_point("after_failed_attempt", task.id)
        if self.state.task(task.id).attempts_since_reset < self.settings.max_attempts:
            self._retrying(task, attempt, reason)

    def _needs_human(self, task: Task, reason: str, tree: str, result: TaskResult) -> TaskResult:
        """The reviewer says only a person can judge the task: not verified, it waits for one (the
        runner holds it: Landing.hold)."""
        del task
        result.needs_human, result.tree = reason, tree
        return result

    def _retrying(self, task: Task, attempt: int, why: str) -> None:
        self.recorder.emit(
            TaskRetrying(task_id=task.id, next_attempt=attempt + 1, reason=why.splitlines()[0])
        )

    def check_budget(self) -> None:
        limit = self.settings.max_cost
        if limit is not None and self.spent() >= limit:
            raise BudgetExceeded

    def last_failure(self, task_id: str) -> str:
        record = self.state.task(task_id)
        for attempt in reversed(record.attempts):
            if attempt.failure and attempt.failure != "interrupted":
                return attempt.failure
        return record.rejected  # a person rejected a unit no attempt ran (a manual one, reworded)

    def _agent_attempt(
        self,
        task: Task,
        attempt: int,
        workspace: Path,
        ws_repo: GitRepo,
        commands: list[str],
        failure: str,
        changes_kept: bool,
    ) -> bool:
        """One agent call; False (attempt journaled as failed) when the agent did not finish cleanly
        or touched what it may not."""
        assert self.agent is not None
        since_reset = self.state.task(task.id).attempts_since_reset
        rendered = self.renderer.render(
            self.plan(),
            task,
            commands,
            attempt=attempt,
            # The last attempt this one's budget allows: max_attempts since the last reset (a
            # resume gives a failed task a new budget; attempts keep their numbers).
            max_attempts=attempt - 1 - since_reset + self.settings.max_attempts,
            failure=failure,
            workspace=workspace,
            changes_kept=changes_kept,
            dependencies=finished_dependencies(self.plan(), task, self.state, self.repo),
        )
        prompt_file = f"prompts/{_UNSAFE_IN_NAMES.sub('_', task.id)}.attempt-{attempt}.md"
        self.journal.write_artifact(prompt_file, rendered.as_text())
        # In place, an fsync before the agent edits: a resume after a power cut must know whose
        # edits the work tree holds. In a worktree the edits are the worktree's (a leftover one is
        # kept in a ref), so the record is synced with the next one.
        in_place = workspace == self.repo.root
        self.recorder.record(
            t.TaskRunning(task=task.id, attempt=attempt, prompt_file=prompt_file, workspace=str(workspace)),
            durable=in_place,
        )
        crash_point("after_start", task.id)
        plan_bytes = plan_bytes_as_left(workspace / self.plan_rel)
        limit = self.settings.max_cost
        request = AgentRequest(
            task_id=task.id,
            attempt=attempt,
            system_prompt=rendered.system,
            prompt=rendered.prompt,
            workspace=workspace,
            model=self.settings.model,
            max_turns=self.settings.max_turns,
            command_timeout=self.settings.command_timeout,
            env=self.env(),
            sandbox=self.sandbox,
            max_cost=None if limit is None else max(0.0, limit - self.spent()),
            rate_gate=self.rate_gate,
        )
        outcome = self.agent.run(request, self._listener(task.id, attempt))
        crash_point("after_agent", task.id)
        restored, tampered = self.guard.put_back(ws_repo, plan_bytes)
        # In place, the tree as the agent left it: after a stop the user may edit the tree, and a
        # resume tells their changes (paths that differ from this tree) from the task's (paths
        # this tree changed), which are all its commit may hold. Two git processes against an
        # agent call. In a worktree no one else edits, so no snapshot: the verification that
        # follows decides (a kill before it ends is resumed by verifying again).
        # Synced with the verdict that follows (task_verified, attempt_failed): lost to a power
        # cut, the attempt is merely run again.
        tree = ws_repo.snapshot_tree() if in_place else None
        self.recorder.record(
            t.AgentFinished(
                task=task.id,
                attempt=attempt,
                status=outcome.status.value,
                summary=redact(outcome.summary[:4000]),
                turns=outcome.turns,
                tree=tree,
                **t.spend(outcome.usage),
            ),
            durable=False,
        )
        crash_point("after_agent_record", task.id)
        reason = self.guard.reason(task, attempt, restored, tampered, "the agent")
        if not restored and outcome.status is not AgentStatus.DONE:
            reason = reason or (
                f"the agent reported {outcome.status.value}: {outcome.summary.strip() or 'no reason given'}"
            )
        if reason:
            tree = tree or ws_repo.snapshot_tree()
            self.recorder.record(t.AttemptFailed(task=task.id, attempt=attempt, reason=reason, tree=tree))
            crash_point("after_failed_attempt", task.id)
            return False
        return True

    def _listener(self, task_id: str, attempt: int) -> AgentListener:
        def listen(event: AgentEvent) -> None:
            if event.kind == "model_call" and event.usage is not None:
                # The model that answered as the backend says it, else the backend's name (an
                # agent CLI may not say which model it used).
                model = event.model or (self.agent.name if self.agent is not None else "")
                self.recorder.record(
                    t.ModelCall(
                        task=task_id,
                        attempt=attempt,
                        detail=event.detail,
                        model=model,
                        **t.spend(event.usage),
                    )
                )
                if not event.usage.cost_known:
                    self._cost_unknown()
                if not event.session_over:  # its work is done: verified and committed all the same
                    self.check_budget()
            else:
                self.recorder.record(
                    t.AgentActed(task=task_id, kind=event.kind, detail=event.detail), durable=False
                )

        return listen

    def _cost_unknown(self) -> None:
        """Said once a run: --max-cost counts only what is priced, so it cannot hold this backend."""
        if self.settings.max_cost is None or self.cost_unknown_said:
            return
        self.cost_unknown_said = True
        self.recorder.notice(
            f"what the {self.settings.agent} backend's calls cost is unknown: --max-cost "
            f"${self.settings.max_cost:.2f} cannot be enforced for this backend (it counts only "
            "priced calls); watch the spend with the provider",
            level="warning",
        )

    def verify(self, task: Task, attempt: int, commands: list[str], workspace: Path) -> VerificationOutcome:
        """The task's checks in `workspace`, each journaled as it ends."""

        def heard(result: CommandResult) -> None:
            # The evidence, synced with the verdict that follows (task_verified, attempt_failed);
            # without a verdict resume verifies again anyway.
            self.recorder.record(
                t.CheckRan(
                    task=task.id,
                    attempt=attempt,
                    command=result.command,
                    exit_code=result.exit_code,
                    ok=result.ok,
                    duration=round(result.duration, 3),
                    timed_out=result.timed_out,
                    output_tail=result.output_tail,
                    preexisting=result.preexisting,
                ),
                durable=False,
            )
            crash_point("mid_verify", task.id)

        return run_verification(
            commands,
            cwd=workspace,
            timeout=self.settings.timeout,
            on_result=heard,
            sandbox=self.sandbox.with_network(self.settings.verify_network),
            env=self.env(),
            preexisting=self.state.preexisting_failures(task.verify),
        )

    def _checks_broke(self, task: Task, attempt: int, ws_repo: GitRepo, plan_bytes: bytes | None) -> str:
        """Undo what the task's checks changed that they may not (see Guard): the reason the
        attempt failed, or "" when they changed nothing of it."""
        restored, tampered = self.guard.put_back(ws_repo, plan_bytes)
        return self.guard.reason(task, attempt, restored, tampered, "its checks")

    def _cut_short_by_stop(self, outcome: VerificationOutcome) -> bool:
        """The check failed because the stop's own signal killed it: a terminal's Ctrl-C or
        hang-up goes to its whole process group, and a command caught starting (before it is in a
        session of its own) dies of it."""
        failed = outcome.failure
        return failed is not None and failed.exit_code < 0 and self.stop.stopping

    def _group(self, task: Task, workspace: Path, commands: list[str], result: TaskResult) -> TaskResult:
        """A parent of nested checkboxes: its children did the work; check it, then tick it."""
        attempt = self.state.task(task.id).attempt + 1
        self.recorder.record(
            t.TaskRunning(task=task.id, attempt=attempt, group=True, workspace=str(workspace))
        )
        result.attempts = attempt
        ws_repo = self.repo.at(workspace)
        if commands:
            plan_bytes = plan_bytes_as_left(workspace / self.plan_rel)
            outcome = self.verify(task, attempt, commands, workspace)
            broke = self._checks_broke(task, attempt, ws_repo, plan_bytes) if outcome.passed else ""
            if not outcome.passed or broke:
                result.reason = broke or outcome.failure_report()
                self.recorder.record(t.AttemptFailed(task=task.id, attempt=attempt, reason=result.reason))
                return result
        tree = ws_repo.snapshot_tree()
        self.recorder.record(t.TaskVerified(task=task.id, attempt=attempt, tree=tree, unverified=False))
        result.passed, result.tree = True, tree
        return result
