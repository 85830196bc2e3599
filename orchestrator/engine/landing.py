"""A verified task onto the run's branch, or out of the run.

    verified -> committing -> done     merge (parallel), re-verify if the branch moved, tick + commit
                    |
                    +-> merge failed   once: run again on the new head; twice: failed
    failed -> its dependents skipped   (the failure cascade)

One landing at a time, on the main thread: the run's work tree and branch have one writer. The
commit (the box ticked and the work, with the task's trailers) is the point of truth; each step is
journaled before the action it announces.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

from orchestrator.domain import transitions as t
from orchestrator.domain.events import TaskRetrying
from orchestrator.domain.plan import BoxState, Plan, Task
from orchestrator.engine.crash import crash_point
from orchestrator.engine.evidence import task_trailers
from orchestrator.engine.executor import Executor, TaskResult
from orchestrator.engine.guard import Guard
from orchestrator.engine.recorder import Recorder
from orchestrator.engine.scheduler import Scheduler
from orchestrator.engine.verification import VerificationOutcome, commands_for
from orchestrator.persistence.repo import GitRepo
from orchestrator.planfile.documents import tick_linked
from orchestrator.planfile.parser import plan_bytes_as_left, read_plan_bytes
from orchestrator.planfile.writer import atomic_write as write_plan
from orchestrator.planfile.writer import set_box, with_box

_REF_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

Verify = Callable[[Task, int, list[str], Path], VerificationOutcome]
"""Runs a task's checks in a work tree, journaling each (engine.attempts.Attempts.verify)."""


def ref_name(run_id: str, task_id: str, label: str) -> str:
    """refs/orchestrate/<run>/<task>/<label>, with the task id made safe for a ref."""
    safe = _REF_UNSAFE.sub("_", task_id).strip(".") or "task"
    safe = safe.replace("..", "_")
    if safe.endswith(".lock"):
        safe += "_"
    return f"refs/orchestrate/{run_id}/{safe}/{label}"


def _linked_now(item: Task, ticked: Task) -> Task:
    """`item` with the boxes `ticked` just ticked in other documents marked done."""
    done = {(box.document, box.heading, box.title) for box in ticked.linked}
    if not any((box.document, box.heading, box.title) in done for box in item.linked):
        return item
    boxes = [
        box.model_copy(update={"state": BoxState.DONE})
        if (box.document, box.heading, box.title) in done
        else box
        for box in item.linked
    ]
    return item.model_copy(update={"linked": boxes})


def commit_message(plan: Plan, task: Task) -> str:
    """`Phase 2: <task title>` for a numbered phase; `<heading>: <task title>` for a phase the plan
    names otherwise (`## High Priority`); the title alone in a plan without phases."""
    title = " ".join(task.title.split()) or task.id
    phase = plan.phase(task.phase)
    if phase is None or phase.line is None:  # the implicit phase of a plain list
        return title
    if task.phase[:1].isdigit():
        return f"Phase {task.phase}: {title}"
    heading = " ".join(phase.title.split())
    return f"{heading}: {title}" if heading else title


class Landing:
    """Lands verified tasks (`land`) and fails the others (`fail`), one at a time."""

    def __init__(
        self,
        *,
        repo: GitRepo,
        plan_path: Path,
        run_id: str,
        verify_defaults: list[str],
        recorder: Recorder,
        executor: Executor,
        guard: Guard,
        scheduler: Scheduler,
        verify: Verify,
        ours: Callable[[list[str]], list[str]],
        untouched_preexisting: Callable[[], list[str]],
    ):
        self.repo = repo
        self.plan_path = plan_path
        self.run_id = run_id
        self.verify_defaults = verify_defaults
        self.recorder = recorder
        self.state = recorder.state
        self.executor = executor
        self.guard = guard
        self.scheduler = scheduler
        """What is settled, failed and skipped, and the plan as it is now: a landing ticks it."""
        self.verify = verify
        self.ours = ours
        """The changed paths that belong to the run (not the user's, in an --allow-dirty run)."""
        self.untouched_preexisting = untouched_preexisting

    def land(self, result: TaskResult) -> None:
        """Bring the task's work onto the run's branch (checked again when the branch moved since
        it began), tick the box and commit both: one commit, the point of truth."""
        task = result.task
        self.recorder.record(t.TaskCommitting(task=task.id, workspace=result.extra))
        crash_point("after_committing", task.id)
        merge = self.executor.integrate(result)
        if merge.conflicts:
            self._merge_failed(result, merge.conflicts, "its changes conflict with work merged meanwhile")
            return
        crash_point("after_merge", task.id)
        if merge.moved:
            plan_bytes = plan_bytes_as_left(self.plan_path)
            outcome = self._recheck(task)
            if outcome is not None and not outcome.passed:
                failed = outcome.failure
                why = f"on the run's new head {failed.explain() if failed else 'verification failed'}"
                files = self.executor.overlap(result)
                self._merge_failed(result, files, why, outcome.failure_report())
                return
            if outcome is not None:
                # The checks ran again, in the run's own work tree: what they changed that no one
                # may is put back before the commit (the task's work was verified where it ran).
                with self.executor.lock:
                    restored, tampered = self.guard.put_back(self.repo, plan_bytes, staged=True)
                attempt = self.state.task(task.id).attempt
                self.guard.reason(task, attempt, restored, tampered, "its checks")
        plan = self.scheduler.plan
        with self.executor.lock:
            ticked = self._tick(plan, task)
            crash_point("after_tick", task.id)
            sha = self.repo.commit_all(
                commit_message(plan, task),
                task_trailers(self.state.task(task.id), self.run_id),
                exclude=self.untouched_preexisting(),
            )
        crash_point("after_commit", task.id)
        # Parallel runs: where the work was done and which commit of its branch was merged.
        extra = result.extra
        self.recorder.record(
            t.TaskDone(
                task=task.id,
                commit=sha,
                unverified=result.unverified,
                worktree=extra.get("worktree"),
                branch=extra.get("branch"),
                base=extra.get("base"),
                merged_from=extra.get("head"),
            )
        )
        crash_point("after_done", task.id)
        with self.recorder.lock:
            self.scheduler.done.add(task.id)
            self.scheduler.update_plan(ticked)
        self.executor.release(result)

    def _tick(self, plan: Plan, task: Task) -> Plan:
        """Tick the task's box: one byte, atomically. When the file is still the one we parsed,
        the box's offset is known and the new plan differs in that box alone, so there is no need
        to parse a large plan again; otherwise the writer re-reads and finds the task by id.

        First the boxes of other documents the task completes (`Task.linked`), by the same rule
        (a document changed since it was read is read again): the commit that follows carries them
        with the plan's. A kill between the two leaves ticks no commit carries; resume undoes them."""
        known = plan.task(task.id)
        tick_linked(self.repo.root, (known or task).linked, True)
        crash_point("after_linked_tick", task.id)
        path = self.plan_path
        data = read_plan_bytes(path)
        if known is None or hashlib.sha256(data).hexdigest() != plan.sha256:
            return set_box(path, task.id, True)
        updated = with_box(data, known, True)
        if updated is not data:
            write_plan(path, updated)
        tasks = [
            item.model_copy(update={"state": BoxState.DONE}) if item.id == task.id else item
            for item in plan.tasks
        ]
        if known.linked:  # boxes other units link to may be these: their states as now written
            tasks = [_linked_now(item, known) for item in tasks]
        return plan.model_copy(update={"tasks": tasks, "sha256": hashlib.sha256(updated).hexdigest()})

    def _recheck(self, task: Task) -> VerificationOutcome | None:
        """The task's checks again, in the run's work tree, on the merge (None: it has none)."""
        commands = commands_for(task.verify, self.verify_defaults)
        if not commands:
            return None
        return self.verify(task, self.state.task(task.id).attempt, commands, self.repo.root)

    def _merge_failed(self, result: TaskResult, files: list[str], why: str, output: str = "") -> None:
        """The task passed in its worktree but does not fit on the run's current head: the first
        time it runs again from a fresh worktree; the second time it fails, naming the files."""
        task = result.task
        record = self.state.task(task.id)
        with self.executor.lock:
            self.repo.restore_head(self.ours(self.repo.changed_paths()))
        names = ", ".join(files) if files else "none changed by both"
        reason = f"its work does not fit on the run's branch: {why} (conflicting files: {names})"
        final = record.merge_failures >= 1
        self.recorder.record(
            t.MergeFailed(
                task=task.id,
                attempt=record.attempt,
                files=files,
                reason=reason,
                # What the next prompt shows the agent (the retry template says where it starts).
                failure=f"{reason}.\n{output[-4000:]}".strip(),
                rerun=not final,
            )
        )
        if final:
            result.reason = f"{reason}; it was run again on the new head and still does not fit"
            self.fail(result)
            return
        ref = self.executor.discard(
            result,
            ref_name(self.run_id, task.id, f"unmerged-attempt-{record.attempt}"),
            f"orchestrate: work of task {task.id} that did not merge (run {self.run_id})",
        )
        if ref:
            self.recorder.record(t.EditsSaved(task=task.id, attempt=record.attempt, ref=ref))
        self.recorder.notice(f"{reason}; running it again on the new head", level="warning", task_id=task.id)
        self.recorder.emit(TaskRetrying(task_id=task.id, next_attempt=record.attempt + 1, reason=reason))

    def hold(self, result: TaskResult) -> None:
        """The task waits for a person: recorded (with where its work will be kept) before its work
        leaves the workspace for that ref, so the next task starts from the branch's head. Nothing
        is ticked or committed; its dependents wait, the others go on (`orchestrate accept` lands
        it, `reject` re-opens it)."""
        task = result.task
        record = self.state.task(task.id)
        keep = ref_name(self.run_id, task.id, f"needs-human-{record.attempt}")
        self.recorder.record(
            t.TaskNeedsHuman(
                task=task.id, attempt=record.attempt, reason=result.needs_human, tree=result.tree, ref=keep
            )
        )
        crash_point("after_needs_human", task.id)
        self.executor.discard(
            result, keep, f"orchestrate: work of task {task.id}, waiting for a human (run {self.run_id})"
        )
        with self.recorder.lock:
            self.scheduler.waiting.add(task.id)

    def fail(self, result: TaskResult) -> None:
        """The task is out of attempts: its edits kept in a ref, and every task of the selection
        that waits on it (directly or not) skipped."""
        task = result.task
        record = self.state.task(task.id)
        keep = ref_name(self.run_id, task.id, f"failed-attempt-{record.attempt}")
        ref = self.executor.discard(
            result, keep, f"orchestrate: edits of failed task {task.id} (run {self.run_id})"
        )
        if ref is None and keep not in record.saved_refs and self.repo.ref_exists(keep):
            ref = keep  # saved before a kill cut the journal short
        if ref:
            self.recorder.record(t.EditsSaved(task=task.id, attempt=record.attempt, ref=ref))
        self.recorder.record(t.TaskFailed(task=task.id, reason=result.reason, ref=ref))
        with self.recorder.lock:
            self.scheduler.failed.add(task.id)
        for blocked in self.scheduler.blocked_by(task.id):
            self.recorder.record(t.TaskSkipped(task=blocked, reason=f"depends on failed task {task.id}"))
            with self.recorder.lock:
                self.scheduler.skipped.add(blocked)
