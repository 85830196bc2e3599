"""The run loop and each task's state machine.

    while slots free: start ready tasks         (scheduler + executor)
    for each finished task: land it or fail it  (merge, re-verify, tick + commit, one at a time)

Every transition is journaled before the action it announces (and fsync'd, unless a power cut that
lost it would only run an attempt again: then the next synced record carries it), and the
in-memory RunState is the fold of exactly those records, so what `show` and `resume` read is what
happened.

With --parallel N the tasks' attempts run on worker threads, each in its own git worktree; the
journal, the events and everything that touches the run's branch stay on this module's lock and
the main thread, so there is one writer of the run's state and one merge at a time.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from orchestrator.agents.base import (
    Agent,
    AgentConfigError,
    AgentEvent,
    AgentListener,
    AgentRequest,
    AgentStatus,
    AgentUnavailable,
)
from orchestrator.config import CONFIG_FILE, PYPROJECT, Settings
from orchestrator.domain import dag
from orchestrator.domain import transitions as t
from orchestrator.domain.events import (
    Event,
    Notice,
    Reporter,
    RunStarted,
    TaskInfo,
    TaskRetrying,
    derive,
)
from orchestrator.domain.plan import BoxState, Plan, Task
from orchestrator.domain.state import RunState, RunStatus, TaskStatus
from orchestrator.engine import protected
from orchestrator.engine.coverage import done_message
from orchestrator.engine.crash import crash_point
from orchestrator.engine.executor import Executor, InlineExecutor, TaskResult
from orchestrator.engine.prompts import PromptRenderer, finished_dependencies
from orchestrator.engine.scheduler import Scheduler, is_group
from orchestrator.engine.verification import (
    CommandResult,
    VerificationOutcome,
    commands_for,
    run_verification,
)
from orchestrator.engine.worktrees import Worktree, WorktreeExecutor, worktrees_root
from orchestrator.errors import OrchestrateError, OutOfSpace, out_of_space
from orchestrator.input_files import PLAN_LIMIT, SETTINGS_LIMIT
from orchestrator.persistence.journal import Journal
from orchestrator.persistence.repo import RUN_TRAILER, TASK_TRAILER, GitError, GitRepo
from orchestrator.planfile.parser import plan_bytes_as_left, read_plan_bytes
from orchestrator.planfile.writer import atomic_write as write_plan
from orchestrator.planfile.writer import set_box, with_box
from orchestrator.tools.environment import redact, secret
from orchestrator.tools.sandbox import Sandbox

IDENTITY_HINT = (
    'set one with `git config user.name "Your Name"` and `git config user.email you@example.com` '
    "(add --global for every repository)"
)
"""What to do when git has no identity to commit with (the pre-flight and a stop mid-run say it)."""


class BudgetExceeded(Exception):  # noqa: N818 - reads as the event it is
    """The run's spend reached --max-cost: stop cleanly, resumably."""


class StopRequested(Exception):  # noqa: N818
    """A stop (a first Ctrl-C, SIGTERM or SIGHUP) was asked for and the current step has finished."""


@dataclass
class RunContext:
    """Everything a run works on; built by engine.session after pre-flight."""

    repo: GitRepo
    plan_path: Path
    plan_rel: str
    settings: Settings
    run_id: str
    branch: str
    journal: Journal
    state: RunState
    selection: list[str]
    preexisting: dict[str, str | None]
    sandbox: Sandbox
    """The run's confinement, detected once in pre-flight: every agent and verification command
    runs in it."""

    def passed_env(self) -> dict[str, str]:
        """The variables the user named in `pass_env` that are set: commands get them on top of
        the allow-list."""
        values = {name: secret(name) for name in self.settings.pass_env}
        return {name: value for name, value in values.items() if value is not None}


@dataclass
class RunResult:
    run_id: str
    status: RunStatus
    message: str
    state: RunState
    resume_hint: str = ""

    @property
    def exit_code(self) -> int:
        return 0 if self.status is RunStatus.COMPLETE else 1


_REF_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def ref_name(run_id: str, task_id: str, label: str) -> str:
    """refs/orchestrate/<run>/<task>/<label>, with the task id made safe for a ref."""
    safe = _REF_UNSAFE.sub("_", task_id).strip(".") or "task"
    safe = safe.replace("..", "_")
    if safe.endswith(".lock"):
        safe += "_"
    return f"refs/orchestrate/{run_id}/{safe}/{label}"


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


class Runner:
    def __init__(
        self,
        ctx: RunContext,
        agent: Agent | None,
        reporter: Reporter,
        plan: Plan,
        executor: Executor | None = None,
        renderer: PromptRenderer | None = None,
    ):
        self.ctx = ctx
        self.settings = ctx.settings
        self.repo = ctx.repo
        self.agent = agent
        self.reporter = reporter
        self.plan = plan
        self.state = ctx.state
        self.scheduler = Scheduler(plan, ctx.selection)
        self.executor: Executor = executor or self._default_executor()
        self.renderer = renderer or prompt_renderer(self.repo, ctx.plan_path, self.settings)
        self._lock = threading.RLock()
        self._stop_requested = False
        self._reporting = False
        """Set when the loop starts: what resume records before it is not reported as progress."""
        self._halt = False
        """The run is ending (an error, a budget stop): tasks in flight stop after their step."""
        self._open: set[str] = set()
        """Tasks started and not yet landed, failed or set aside: never started twice."""
        self._rank = {task_id: n for n, task_id in enumerate(dag.execution_order(plan))}
        self._settings_at_start = {
            name: protected.settings_bytes(self.repo.root, name) for name in (CONFIG_FILE, PYPROJECT)
        }
        """The settings files as the run found them in its work tree (an uncommitted edit of the
        user's included): what a later run or resume would read (see _undo_forbidden)."""
        self._resume_at: dict[str, str] = {}
        for record in self.state.tasks.values():
            if record.status is TaskStatus.DONE:
                self.scheduler.done.add(record.id)

    def _default_executor(self) -> Executor:
        if self.settings.parallel <= 1:
            return InlineExecutor(self.repo, keep=self.ours)
        return WorktreeExecutor(
            self.repo,
            self.settings.parallel,
            worktrees_root(self.ctx.journal.directory.parent, self.ctx.run_id),
            self.ctx.run_id,
            on_added=self._worktree_added,
            on_removed=self._worktree_removed,
            on_slot_free=self._top_up,
            unstarted=self._unstarted,
        )

    def _unstarted(self) -> int:
        """Tasks of the selection still to start (for the spare worktrees made ahead of time)."""
        with self._lock:
            return len(self.scheduler.remaining()) - len(self._open)

    def _worktree_added(self, task: Task, worktree: Worktree) -> None:
        # Not synced on its own: task_running follows at once and its sync covers this record (a
        # worktree whose record a power cut lost is a leftover, which resume removes).
        self.record(t.WorktreeAdded(task=task.id, **worktree.as_record()), durable=False)

    def _worktree_removed(self, task_id: str) -> None:
        self.record(t.WorktreeRemoved(task=task_id), durable=False)

    # -- journal + events ------------------------------------------------------------------

    def record(self, transition: t.Transition, *, durable: bool = True) -> None:
        """Journal `transition` (before the action it announces), fold it into the run's state
        and, once the run is under way, report what it means (see domain.events.derive)."""
        with self._lock:
            self.ctx.journal.append(transition, durable=False)
            self.state.apply(transition)
            event = derive(transition, self.state) if self._reporting else None
        if durable:
            self.ctx.journal.sync()  # outside the lock: parallel tasks do not queue behind it
        if event is not None:
            self.emit(event)

    def emit(self, event: Event) -> None:
        with self._lock:
            self.reporter.emit(event)

    def notice(
        self, message: str, level: Literal["info", "warning", "error"] = "info", task_id: str | None = None
    ) -> None:
        self.emit(Notice(message=message, level=level, task_id=task_id))

    # -- control ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        """First stop signal (Ctrl-C, SIGTERM, SIGHUP): finish the current step, then stop
        resumably."""
        if not self._stop_requested:
            self._stop_requested = True
            self.notice(
                "stopping after the current step (a second stop signal (Ctrl-C, SIGTERM or SIGHUP) "
                "aborts now; both are resumable)",
                level="warning",
            )

    def resume_at(self, task_id: str, point: str) -> None:
        """Pick a task up mid-way on resume: 'verify' (its agent's work is intact), 'commit' (its
        verified work is intact) or 'retry' (a failed attempt's edits are intact for the next)."""
        self._resume_at[task_id] = point

    def ours(self, paths: list[str]) -> list[str]:
        """The changed paths that belong to the run: not those dirty before an --allow-dirty run
        and still as they were."""
        if not self.ctx.preexisting:
            return paths
        return [
            p
            for p in paths
            if p not in self.ctx.preexisting or self.repo.hash_file(p) != self.ctx.preexisting[p]
        ]

    def _untouched_preexisting(self) -> list[str]:
        return [p for p, blob in self.ctx.preexisting.items() if self.repo.hash_file(p) == blob]

    # -- the loop --------------------------------------------------------------------------

    def run(self, resumed: bool = False) -> RunResult:
        self._reporting = True
        self.emit(
            RunStarted(
                run_id=self.ctx.run_id,
                plan=self.ctx.plan_rel,
                branch=self.ctx.branch,
                agent=self.settings.agent,
                resumed=resumed,
                parallel=self.executor.slots,
                max_cost=self.settings.max_cost,
                tasks=[
                    TaskInfo(
                        id=item.id,
                        phase=item.phase,
                        title=item.title,
                        settled=item.settled or item.id in self.scheduler.done,
                    )
                    for item in self.plan.tasks
                    if item.id in set(self.ctx.selection)
                ],
            )
        )
        status = RunStatus.COMPLETE
        message = ""
        hint = ""
        wait_for_tasks = True
        try:
            self._loop()
        except BudgetExceeded:
            spent = self.state.usage.cost_usd
            limit = self.settings.max_cost or 0.0
            status = RunStatus.STOPPED
            suggestion = max(limit * 2, spent + 1.0)
            hint = f"orchestrate resume {self.ctx.run_id} --max-cost {suggestion:.2f}"
            message = (
                f"budget reached: spent ${spent:.2f} of --max-cost ${limit:.2f}; resume with a higher limit"
            )
        except AgentUnavailable as exc:
            status = RunStatus.STOPPED
            hint = f"orchestrate resume {self.ctx.run_id}"
            message = f"the agent backend is unavailable: {exc}; resume when it is back"
        except AgentConfigError as exc:
            # Its key or model stopped working mid-run (a check before the first task passed).
            status = RunStatus.STOPPED
            hint = f"orchestrate resume {self.ctx.run_id}"
            message = f"the agent backend cannot go on: {exc}; then resume"
        except StopRequested:
            status = RunStatus.STOPPED
            hint = f"orchestrate resume {self.ctx.run_id}"
            message = "stopped on request after the current step"
        except KeyboardInterrupt:
            wait_for_tasks = False
            status = RunStatus.STOPPED
            hint = f"orchestrate resume {self.ctx.run_id}"
            message = (
                "aborted by a second stop signal (Ctrl-C, SIGTERM or SIGHUP); the interrupted task is "
                "picked up on resume"
            )
        except OrchestrateError as exc:
            # Work may have been done by now: whatever stops the run (a commit git refused, the
            # plan changed under it) is a resumable stop once its cause is fixed, exit 1, not 2.
            status = RunStatus.STOPPED
            hint = f"orchestrate resume {self.ctx.run_id}"
            remedy = "make room" if out_of_space(exc) else "put that right"
            message = f"stopped: {self._explain(exc)}; {remedy}, then resume"
        except OSError as exc:
            if not out_of_space(exc):
                self._finish(RunStatus.STOPPED, f"stopped by an internal error: {exc!r}", "")
                raise
            # A full disk (a quota, a file-size limit) wherever the write was: git's index, a
            # worktree, an artifact. Every durable step before it was journaled.
            status = RunStatus.STOPPED
            hint = f"orchestrate resume {self.ctx.run_id}"
            where = f" ({exc.filename})" if exc.filename else ""
            message = f"stopped: {exc.strerror}{where}; make room, then resume"
        except BaseException as exc:
            self._finish(RunStatus.STOPPED, f"stopped by an internal error: {exc!r}", "")
            raise
        finally:
            self._halt = True
            self.executor.close(wait=wait_for_tasks)
        if status is RunStatus.COMPLETE:
            if self.state.count(TaskStatus.FAILED) or self.state.count(TaskStatus.SKIPPED):
                status = RunStatus.FAILED
                failed = [item.id for item in self.state.tasks.values() if item.status is TaskStatus.FAILED]
                message = f"task(s) failed: {', '.join(failed)}; their dependents were skipped"
                hint = f"orchestrate resume {self.ctx.run_id}"
            elif self.scheduler.remaining():
                # Nothing ready yet something left: the selection waits on tasks outside it.
                status = RunStatus.FAILED
                message = (
                    f"{len(self.scheduler.remaining())} task(s) wait on tasks outside this run's selection"
                )
            else:
                message = done_message(self.state)
        return self._finish(status, message, hint)

    def _explain(self, exc: OrchestrateError) -> str:
        """What stopped the run, in words that say what to do: a commit refused for want of a git
        identity (removed since the pre-flight checked it) says how to set one."""
        if isinstance(exc, GitError):
            problem = self.repo.identity_problem()
            if problem is not None:
                return f"git has no identity to commit with ({problem}); {IDENTITY_HINT}"
        return exc.render()

    def _finish(self, status: RunStatus, message: str, hint: str) -> RunResult:
        ending = t.RunStopped if status is RunStatus.STOPPED else t.RunFinished
        ended = ending(
            status=status.value,
            message=message,
            resume_hint=hint,
            remaining=len(self.scheduler.remaining()),
        )
        self._reporting = False  # the summary comes last, after the notices below
        try:
            self.record(ended)
        except OutOfSpace:
            # No room left for the last word: the run reads as interrupted, which resume takes
            # up alike; the summary still says why it stopped.
            self.notice("the run's journal had no room for its last record", level="warning")
        saved = [ref for task in self.state.tasks.values() for ref in task.saved_refs]
        if saved:
            self.notice("edits of interrupted or failed attempts are kept in: " + ", ".join(saved))
        summary = derive(ended, self.state)
        assert summary is not None
        self.emit(summary)
        return RunResult(self.ctx.run_id, status, message, self.state, hint)

    def _loop(self) -> None:
        concurrent = self.executor.slots > 1
        finished: list[TaskResult] = []
        while True:
            if concurrent or not finished:
                self._top_up()
            if not finished:
                with self._lock:
                    anything_open = bool(self._open)
                if not anything_open:
                    if self._stop_requested:
                        raise StopRequested
                    return
                finished = self.executor.wait()
                continue
            finished.sort(key=lambda r: self._rank.get(r.task.id, 0))
            result = finished.pop(0)
            try:
                if result.stopped:
                    pass  # left as it is: resume picks it up
                elif result.passed:
                    self._land(result)
                else:
                    self._fail(result)
            finally:
                with self._lock:
                    self._open.discard(result.task.id)
            if concurrent:
                finished.extend(self.executor.wait(block=False))

    def _top_up(self) -> None:
        """Start ready tasks, those on the longest remaining path first, while slots are free.

        Parallel runs call it from worker threads too, the moment a task frees its slot, so a
        new task need not wait for this thread to finish landing others."""
        with self._lock:
            if self._stop_requested or self._halt:
                return
            free = self.executor.free()
            if free <= 0:
                return
            for task in self.scheduler.ready(self._open)[:free]:
                self._open.add(task.id)
                self.state.task(task.id)  # created here, so worker threads only ever look it up
                self.executor.start(task, self._work_for(task))

    def _work_for(self, task: Task) -> Any:
        def work(workspace: Path) -> TaskResult:
            return self._attempts(task, workspace)

        return work

    # -- one task ------------------------------------------------------------------------

    def _check_budget(self) -> None:
        limit = self.settings.max_cost
        if limit is not None and self.state.usage.cost_usd >= limit:
            raise BudgetExceeded

    def _listener(self, task_id: str, attempt: int) -> AgentListener:
        def listen(event: AgentEvent) -> None:
            if event.kind == "model_call" and event.usage is not None:
                self.record(
                    t.ModelCall(task=task_id, attempt=attempt, detail=event.detail, **t.spend(event.usage))
                )
                if not event.session_over:  # its work is done: verified and committed all the same
                    self._check_budget()
            else:
                self.record(t.AgentActed(task=task_id, kind=event.kind, detail=event.detail), durable=False)

        return listen

    def _verify(self, task: Task, attempt: int, commands: list[str], workspace: Path) -> VerificationOutcome:
        def heard(result: CommandResult) -> None:
            # The evidence, synced with the verdict that follows (task_verified, attempt_failed);
            # without a verdict resume verifies again anyway.
            self.record(
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
            sandbox=self.ctx.sandbox.with_network(self.settings.verify_network),
            env=self.ctx.passed_env(),
            preexisting=self.state.preexisting_failures(task.verify),
        )

    def _guard(
        self, workspace_repo: GitRepo, plan_bytes: bytes | None, staged: bool = False
    ) -> tuple[list[str], list[str]]:
        """Undo what the agent or its checks may not change (see _undo_forbidden) and put the plan
        file back as it was before them (`plan_bytes`), never through a link put in the place of
        the plan's folder (that is tampering too). Returns the paths restored and, in words, the
        tampering undone."""
        restored, tampered = self._undo_forbidden(workspace_repo, staged)
        changed_plan, links = protected.put_back(
            workspace_repo.root, self.ctx.plan_rel, plan_bytes, PLAN_LIMIT
        )
        tampered += [f"{words}; the plan put back" for words in links]
        if changed_plan:
            restored.insert(0, self.ctx.plan_rel)
        return restored, tampered

    def _undo_forbidden(self, workspace_repo: GitRepo, staged: bool = False) -> tuple[list[str], list[str]]:
        """Undo what neither an agent nor a check it wrote may change: git's own files (its config,
        hooks, a worktree's `.git` file, a repository inside the tree: tampering), `protected_paths`,
        and pyproject.toml's settings table (see engine.protected). `staged`: a merge may have
        staged them (the run's work tree before its commit). Returns the paths restored and, in
        words, the tampering undone."""
        changed = workspace_repo.changed_paths()
        found = workspace_repo.undo_tampering(changed)
        tampered = found.here
        if found.shared and self.executor.slots == 1:
            tampered += found.shared
        elif found.shared:  # any agent at work may have done it: said, not held against this one
            with self._lock:
                at_work = sorted(self._open)
            self.record(t.GitTampered(changes=found.shared, tasks=at_work))
            what = f"{', '.join(at_work)} were at work: {'; '.join(found.shared)}"
            self.notice(f"git's own files were changed while {what}", "error")
        restored: list[str] = []
        in_place = workspace_repo.root == self.repo.root
        # Not the user's own uncommitted edit (an --allow-dirty run), as long as it is intact.
        preexisting = self.ctx.preexisting if in_place else {}
        hit = [
            p
            for p in protected.matching(changed, self.settings.protected_paths)
            if p not in preexisting or workspace_repo.hash_file(p) != preexisting[p]
        ]
        if hit:
            if staged:
                workspace_repo.restore_head(hit)
            else:
                workspace_repo.reset_paths(hit)
            restored.extend(hit)
        if in_place:
            restored += self._undo_ignored_settings(changed)
        if not protected.matching([PYPROJECT], self.settings.protected_paths):
            restored += self._undo_settings_table(workspace_repo, changed, staged)
        return restored, tampered

    def _undo_ignored_settings(self, changed: list[str]) -> list[str]:
        """orchestrate.toml is read from the work tree: one that git ignores (the agent's own
        .gitignore) shows in no status, is never committed, and yet the next run or resume would
        read it. Put back as the run found it."""
        if (
            CONFIG_FILE in changed
            or protected.settings_bytes(self.repo.root, CONFIG_FILE) == (self._settings_at_start[CONFIG_FILE])
        ):
            return []
        protected.put_back(self.repo.root, CONFIG_FILE, self._settings_at_start[CONFIG_FILE], SETTINGS_LIMIT)
        return [CONFIG_FILE]

    def _undo_settings_table(self, workspace_repo: GitRepo, changed: list[str], staged: bool) -> list[str]:
        """pyproject.toml's [tool.orchestrate] as it was: in the run's work tree, as the run found
        it (read before it began, so an uncommitted edit of the user's is the reference, and one
        git ignores is seen); in a worktree, as its commit has it. Alone, byte for byte, where that
        can be done; else the whole file's change."""
        root = workspace_repo.root
        if root == self.repo.root:
            before = self._settings_at_start[PYPROJECT]
        elif PYPROJECT in changed:
            before = workspace_repo.head_bytes(PYPROJECT)
        else:
            return []
        now = protected.settings_bytes(root, PYPROJECT)
        if not protected.table_changed(before, now):
            return []
        fixed = protected.with_table_of(before, now) if now is not None else None
        if fixed is not None and protected.is_regular_file(root / PYPROJECT):
            protected.put_back(root, PYPROJECT, fixed if fixed.strip() or before else None, SETTINGS_LIMIT)
            return [f"{PYPROJECT} {protected.TABLE_NAME}"]
        if PYPROJECT in changed:
            if staged:
                workspace_repo.restore_head([PYPROJECT])
            else:
                workspace_repo.reset_paths([PYPROJECT])
        else:  # ignored by git: as the run found it
            protected.put_back(root, PYPROJECT, before, SETTINGS_LIMIT)
        return [f"{PYPROJECT} (the whole file: its {protected.TABLE_NAME} could not be put back alone)"]

    def _forbidden_reason(
        self, task: Task, attempt: int, restored: list[str], tampered: list[str], who: str
    ) -> str:
        """Journal and say what `who` ("the agent", "its checks") changed that it may not; the
        reason its attempt failed, or "" when nothing was."""
        reasons: list[str] = []
        if tampered:
            # Nothing of it ran (orchestrate's git names its own git dir and turns such programs
            # off), but an agent that tries is not trusted with this attempt.
            what = "; ".join(tampered)
            self.record(t.GitTampered(task=task.id, attempt=attempt, changes=tampered))
            self.notice(f"{who} tampered with git's own files: {what}", level="error", task_id=task.id)
            reasons.append(f"tampering with git's own files ({what}); none of it was run")
        if restored:
            self.record(t.ProtectedRestored(task=task.id, attempt=attempt, paths=restored))
            self.notice(f"{who} changed {', '.join(restored)}; undone", level="warning", task_id=task.id)
            may = "it" if who == "the agent" else "they"
            reasons.append(f"{who} changed paths {may} may not change ({', '.join(restored)}); undone")
        return "; ".join(reasons) + ", and the attempt failed" if reasons else ""

    def _attempts(self, task: Task, workspace: Path) -> TaskResult:
        """Run the task's attempts in `workspace` until one passes verification or none are left."""
        result = TaskResult(task=task, workspace=workspace)
        record = self.state.task(task.id)
        commands = commands_for(task.verify, self.settings.verify)
        point = self._resume_at.pop(task.id, None)  # 'retry' needs nothing: the edits are in place
        result.attempts = record.attempt
        if point == "commit":
            result.passed, result.unverified, result.tree = True, record.unverified, record.tree
            return result
        if is_group(self.plan, task):
            return self._group(task, workspace, commands, result)
        if not commands and self.settings.require_verify:
            result.reason = "the task has no verification command and --require-verify is set"
            return result
        ws_repo = self.repo.at(workspace)
        failure = self._last_failure(task.id)
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
                if self._stop_requested or self._halt:
                    result.stopped = True
                    return result
                self._check_budget()
                attempt = record.attempt + 1
                if not self._agent_attempt(
                    task, attempt, workspace, ws_repo, commands, failure, changes_kept
                ):
                    failure = self._last_failure(task.id)
                    changes_kept = True
                    if record.attempts_since_reset < self.settings.max_attempts:
                        self.emit(
                            TaskRetrying(
                                task_id=task.id, next_attempt=attempt + 1, reason=failure.splitlines()[0]
                            )
                        )
                    continue
                if self._stop_requested or self._halt:
                    result.stopped = True
                    return result
            result.attempts = attempt
            plan_bytes = plan_bytes_as_left(workspace / self.ctx.plan_rel)
            outcome = self._verify(task, attempt, commands, workspace)
            crash_point("after_verify", task.id)
            # The checks ran code the agent may have written, which no sandbox keeps from the
            # workspace: what they changed that no one may is undone, and fails the attempt.
            passed = outcome.passed and commands
            broke = self._checks_broke(task, attempt, ws_repo, plan_bytes) if passed else ""
            if outcome.passed and not broke:
                # What is left (the snapshot, the branch commit) is not the task's work: its slot
                # may take the next task meanwhile.
                self.executor.checks_passed(task.id)
                tree = ws_repo.snapshot_tree()
                # A task whose every check failed before the run began has no evidence either.
                unverified = not outcome.evidence
                self.record(t.TaskVerified(task=task.id, attempt=attempt, tree=tree, unverified=unverified))
                crash_point("after_verified", task.id)
                result.passed, result.unverified, result.tree = True, unverified, tree
                return result
            if not broke and self._cut_short_by_stop(outcome):
                # No verdict: the task stays as its agent left it, and resume verifies again.
                self.notice("its check was cut short by the stop; resume checks again", task_id=task.id)
                result.stopped = True
                return result
            failure = broke or outcome.failure_report()
            changes_kept = True
            self.record(
                t.AttemptFailed(task=task.id, attempt=attempt, reason=failure, tree=ws_repo.snapshot_tree())
            )
            crash_point("after_failed_attempt", task.id)
            if record.attempts_since_reset < self.settings.max_attempts:
                failed = outcome.failure
                why = broke or (failed.explain() if failed else "verification failed")
                self.emit(TaskRetrying(task_id=task.id, next_attempt=attempt + 1, reason=why.splitlines()[0]))

    def _checks_broke(self, task: Task, attempt: int, ws_repo: GitRepo, plan_bytes: bytes | None) -> str:
        """Undo what the task's checks changed that they may not (see _guard): the reason the
        attempt failed, or "" when they changed nothing of it."""
        restored, tampered = self._guard(ws_repo, plan_bytes)
        return self._forbidden_reason(task, attempt, restored, tampered, "its checks")

    def _cut_short_by_stop(self, outcome: VerificationOutcome) -> bool:
        """The check failed because the stop's own signal killed it: a terminal's Ctrl-C or
        hang-up goes to its whole process group, and a command caught starting (before it is in a
        session of its own) dies of it."""
        failed = outcome.failure
        return failed is not None and failed.exit_code < 0 and (self._stop_requested or self._halt)

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
        rendered = self.renderer.render(
            self.plan,
            task,
            commands,
            attempt=attempt,
            max_attempts=self.settings.max_attempts,
            failure=failure,
            workspace=workspace,
            changes_kept=changes_kept,
            dependencies=finished_dependencies(self.plan, task, self.state, self.repo),
        )
        prompt_file = f"prompts/{_REF_UNSAFE.sub('_', task.id)}.attempt-{attempt}.md"
        self.ctx.journal.write_artifact(prompt_file, rendered.as_text())
        # In place, an fsync before the agent edits: a resume after a power cut must know whose
        # edits the work tree holds. In a worktree the edits are the worktree's (a leftover one is
        # kept in a ref), so the record is synced with the next one.
        in_place = workspace == self.repo.root
        self.record(
            t.TaskRunning(task=task.id, attempt=attempt, prompt_file=prompt_file, workspace=str(workspace)),
            durable=in_place,
        )
        crash_point("after_start", task.id)
        plan_file = workspace / self.ctx.plan_rel
        plan_bytes = plan_bytes_as_left(plan_file)
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
            env=self.ctx.passed_env(),
            sandbox=self.ctx.sandbox,
            max_cost=None if limit is None else max(0.0, limit - self.state.usage.cost_usd),
        )
        outcome = self.agent.run(request, self._listener(task.id, attempt))
        crash_point("after_agent", task.id)
        restored, tampered = self._guard(ws_repo, plan_bytes)
        # In place, the tree as the agent left it: after a stop the user may edit the tree, and a
        # resume tells their changes (paths that differ from this tree) from the task's (paths
        # this tree changed), which are all its commit may hold. Two git processes against an
        # agent call. In a worktree no one else edits, so no snapshot: the verification that
        # follows decides (a kill before it ends is resumed by verifying again).
        # Synced with the verdict that follows (task_verified, attempt_failed): lost to a power
        # cut, the attempt is merely run again.
        tree = ws_repo.snapshot_tree() if in_place else None
        self.record(
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
        reason = self._forbidden_reason(task, attempt, restored, tampered, "the agent")
        if not restored and outcome.status is not AgentStatus.DONE:
            reason = reason or (
                f"the agent reported {outcome.status.value}: {outcome.summary.strip() or 'no reason given'}"
            )
        if reason:
            tree = tree or ws_repo.snapshot_tree()
            self.record(t.AttemptFailed(task=task.id, attempt=attempt, reason=reason, tree=tree))
            crash_point("after_failed_attempt", task.id)
            return False
        return True

    def _last_failure(self, task_id: str) -> str:
        for attempt in reversed(self.state.task(task_id).attempts):
            if attempt.failure and attempt.failure != "interrupted":
                return attempt.failure
        return ""

    def _group(self, task: Task, workspace: Path, commands: list[str], result: TaskResult) -> TaskResult:
        """A parent of nested checkboxes: its children did the work; check it, then tick it."""
        attempt = self.state.task(task.id).attempt + 1
        self.record(t.TaskRunning(task=task.id, attempt=attempt, group=True, workspace=str(workspace)))
        result.attempts = attempt
        ws_repo = self.repo.at(workspace)
        if commands:
            plan_bytes = plan_bytes_as_left(workspace / self.ctx.plan_rel)
            outcome = self._verify(task, attempt, commands, workspace)
            broke = self._checks_broke(task, attempt, ws_repo, plan_bytes) if outcome.passed else ""
            if not outcome.passed or broke:
                result.reason = broke or outcome.failure_report()
                self.record(t.AttemptFailed(task=task.id, attempt=attempt, reason=result.reason))
                return result
        tree = ws_repo.snapshot_tree()
        self.record(t.TaskVerified(task=task.id, attempt=attempt, tree=tree, unverified=False))
        result.passed, result.tree = True, tree
        return result

    # -- landing ---------------------------------------------------------------------------

    def _land(self, result: TaskResult) -> None:
        """Bring the task's work onto the run's branch (checked again when the branch moved since
        it began), tick the box and commit both: one commit, the point of truth."""
        task = result.task
        self.record(t.TaskCommitting(task=task.id, workspace=result.extra))
        crash_point("after_committing", task.id)
        merge = self.executor.integrate(result)
        if merge.conflicts:
            self._merge_failed(result, merge.conflicts, "its changes conflict with work merged meanwhile")
            return
        crash_point("after_merge", task.id)
        if merge.moved:
            plan_bytes = plan_bytes_as_left(self.ctx.plan_path)
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
                    restored, tampered = self._guard(self.repo, plan_bytes, staged=True)
                attempt = self.state.task(task.id).attempt
                self._forbidden_reason(task, attempt, restored, tampered, "its checks")
        with self.executor.lock:
            plan = self._tick(task)
            crash_point("after_tick", task.id)
            sha = self.repo.commit_all(
                commit_message(self.plan, task),
                {TASK_TRAILER: task.id, RUN_TRAILER: self.ctx.run_id},
                exclude=self._untouched_preexisting(),
            )
        crash_point("after_commit", task.id)
        # Parallel runs: where the work was done and which commit of its branch was merged.
        extra = result.extra
        self.record(
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
        with self._lock:
            self.plan = plan
            self.scheduler.done.add(task.id)
            self.scheduler.update_plan(plan)
        self.executor.release(result)

    def _tick(self, task: Task) -> Plan:
        """Tick the task's box: one byte, atomically. When the file is still the one we parsed,
        the box's offset is known and the new plan differs in that box alone, so there is no need
        to parse a large plan again; otherwise the writer re-reads and finds the task by id."""
        path = self.ctx.plan_path
        data = read_plan_bytes(path)
        known = self.plan.task(task.id)
        if known is None or hashlib.sha256(data).hexdigest() != self.plan.sha256:
            return set_box(path, task.id, True)
        updated = with_box(data, known, True)
        if updated is not data:
            write_plan(path, updated)
        tasks = [
            item.model_copy(update={"state": BoxState.DONE}) if item.id == task.id else item
            for item in self.plan.tasks
        ]
        return self.plan.model_copy(update={"tasks": tasks, "sha256": hashlib.sha256(updated).hexdigest()})

    def _recheck(self, task: Task) -> VerificationOutcome | None:
        """The task's checks again, in the run's work tree, on the merge (None: it has none)."""
        commands = commands_for(task.verify, self.settings.verify)
        if not commands:
            return None
        return self._verify(task, self.state.task(task.id).attempt, commands, self.repo.root)

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
        self.record(
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
            self._fail(result)
            return
        ref = self.executor.discard(
            result,
            ref_name(self.ctx.run_id, task.id, f"unmerged-attempt-{record.attempt}"),
            f"orchestrate: work of task {task.id} that did not merge (run {self.ctx.run_id})",
        )
        if ref:
            self.record(t.EditsSaved(task=task.id, attempt=record.attempt, ref=ref))
        self.notice(f"{reason}; running it again on the new head", level="warning", task_id=task.id)
        self.emit(TaskRetrying(task_id=task.id, next_attempt=record.attempt + 1, reason=reason))

    def _fail(self, result: TaskResult) -> None:
        task = result.task
        record = self.state.task(task.id)
        ref = self.executor.discard(
            result,
            ref_name(self.ctx.run_id, task.id, f"failed-attempt-{record.attempt}"),
            f"orchestrate: edits of failed task {task.id} (run {self.ctx.run_id})",
        )
        keep = ref_name(self.ctx.run_id, task.id, f"failed-attempt-{record.attempt}")
        if ref is None and keep not in record.saved_refs and self.repo.ref_exists(keep):
            ref = keep  # saved before a kill cut the journal short
        if ref:
            self.record(t.EditsSaved(task=task.id, attempt=record.attempt, ref=ref))
        self.record(t.TaskFailed(task=task.id, reason=result.reason, ref=ref))
        with self._lock:
            self.scheduler.failed.add(task.id)
        for blocked in self.scheduler.blocked_by(task.id):
            self.record(t.TaskSkipped(task=blocked, reason=f"depends on failed task {task.id}"))
            with self._lock:
                self.scheduler.skipped.add(blocked)


def prompt_renderer(
    repo: GitRepo,
    plan_path: Path,
    settings: Settings,
    *,
    plan: Plan | None = None,
    selection: list[str] | None = None,
) -> PromptRenderer:
    """The run's templates, read once from the commit the run starts from, compiled, and tried on
    the open tasks of `selection` (a mistake or an unsafe access in one is a ConfigError)."""
    return PromptRenderer.for_run(repo, plan_path, settings, plan=plan, selection=selection or [])
