"""The run loop: take ready tasks, hand them to the executor, apply what comes back.

    while tasks are open:
        start ready tasks while slots are free         (scheduler + executor)
        for each task whose attempts came back:        (engine.attempts: running -> verified)
            land it, or fail it and skip its dependents (engine.landing: verified -> committed)

Every transition is journaled before the action it announces (engine.recorder), and the in-memory
RunState is the fold of exactly those transitions, so what `show` and `resume` read is what
happened. Every way a run ends (done, failed, stopped by a signal or a budget, an error) is one
journaled transition and one summary (see _ending).

With --parallel N the tasks' attempts run on worker threads, each in its own git worktree; the
journal, the events and everything that touches the run's branch stay on the recorder's lock and
the main thread, so there is one writer of the run's state and one merge at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.agents.base import Agent, AgentConfigError, AgentUnavailable
from orchestrator.agents.rate import LocalRateGate
from orchestrator.config import Settings
from orchestrator.domain import dag
from orchestrator.domain import transitions as t
from orchestrator.domain.events import Event, Reporter, RunStarted, TaskInfo, derive
from orchestrator.domain.plan import Plan, Task
from orchestrator.domain.state import RunState, RunStatus, TaskStatus
from orchestrator.engine.attempts import Attempts, BudgetExceeded
from orchestrator.engine.coverage import done_message
from orchestrator.engine.executor import Executor, InlineExecutor, TaskResult, Work
from orchestrator.engine.fail_first import SCRATCH_DIR, FailFirst
from orchestrator.engine.guard import Guard
from orchestrator.engine.landing import Landing, commit_message, ref_name
from orchestrator.engine.prompts import PromptRenderer
from orchestrator.engine.recorder import Level, Recorder
from orchestrator.engine.report import report_files, run_report
from orchestrator.engine.scheduler import Scheduler
from orchestrator.engine.stop import StopToken
from orchestrator.engine.worktrees import Timings, Worktree, WorktreeExecutor, worktrees_root
from orchestrator.errors import OrchestrateError, OutOfSpace, out_of_space
from orchestrator.persistence.journal import Journal, read_transitions
from orchestrator.persistence.repo import GitError, GitRepo
from orchestrator.tools.environment import secret
from orchestrator.tools.sandbox import Sandbox

if TYPE_CHECKING:
    from orchestrator.engine.ray_cluster import AttemptOrder, RayTimings

__all__ = [
    "NEEDS_HUMAN_EXIT",
    "BudgetExceeded",
    "RunContext",
    "RunResult",
    "Runner",
    "commit_message",
    "ref_name",
]

IDENTITY_HINT = (
    'set one with `git config user.name "Your Name"` and `git config user.email you@example.com` '
    "(add --global for every repository)"
)
"""What to do when git has no identity to commit with (the pre-flight and a stop mid-run say it)."""


NEEDS_HUMAN_EXIT = 4
"""The run did everything it could and some tasks wait for a person (`orchestrate accept` or
`reject`, then `resume`): not 0 (they are not done), not 1 (nothing failed), not 3 (resuming alone
would change nothing)."""


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


def run_paths(ctx: RunContext, paths: list[str]) -> list[str]:
    """The changed paths that belong to the run: not those dirty before an --allow-dirty run (or
    the user's, accepted by a resume) and still as they were."""
    if not ctx.preexisting:
        return paths
    return [p for p in paths if p not in ctx.preexisting or ctx.repo.hash_file(p) != ctx.preexisting[p]]


@dataclass
class RunResult:
    run_id: str
    status: RunStatus
    message: str
    state: RunState
    resume_hint: str = ""
    timings: Timings | RayTimings | None = None
    """Seconds spent on each worktree chore, when the tasks ran in worktrees (--parallel N), or on
    bundling and landing, when they ran on Ray nodes."""

    @property
    def exit_code(self) -> int:
        """0 complete, 4 waiting for a person, 1 otherwise (the CLI makes a stop 3)."""
        if self.status is RunStatus.WAITING:
            return NEEDS_HUMAN_EXIT
        return 0 if self.status is RunStatus.COMPLETE else 1


@dataclass
class Ending:
    """How the run ends: its status, why, and the command that continues it."""

    status: RunStatus
    message: str
    hint: str = ""


class Runner:
    """One run's loop over its parts: the scheduler (what is ready), the executor (where attempts
    run), Attempts (running -> verified), Landing (verified -> committed, or failed), one Recorder
    and one StopToken. Built by engine.session, for a resume from what engine.resume recovered."""

    def __init__(
        self,
        ctx: RunContext,
        agent: Agent | None,
        reporter: Reporter,
        plan: Plan,
        executor: Executor | None = None,
        renderer: PromptRenderer | None = None,
        stop: StopToken | None = None,
        *,
        recorder: Recorder | None = None,
        resume_at: dict[str, str] | None = None,
        adopted: dict[str, Worktree] | None = None,
        results: dict[str, tuple[str, str]] | None = None,
        settings_at_start: dict[str, bytes | None] | None = None,
    ):
        """`recorder`, `resume_at`, `adopted`, `results` and `settings_at_start` come from resume: the
        writer it recorded with, where the tasks it picked up mid-way go on (engine.resume.Recovered), and
        the settings files as it found them before it put the tree right."""
        self.ctx = ctx
        self.settings = ctx.settings
        self.repo = ctx.repo
        self.state = ctx.state
        self.recorder = recorder or Recorder(ctx.journal, ctx.state, reporter)
        self.lock = self.recorder.lock
        self.stop = stop or StopToken()
        self.scheduler = Scheduler(plan, ctx.selection)
        self._open: set[str] = set()
        """Tasks started and not yet landed, failed or set aside: never started twice."""
        self._rank = {task_id: n for n, task_id in enumerate(dag.execution_order(plan))}
        self.agent = agent
        self.executor: Executor = executor or self._default_executor()
        renderer = renderer or PromptRenderer.for_run(self.repo, ctx.plan_path, self.settings)
        self.renderer = renderer
        guard = Guard(
            self.repo,
            ctx.plan_rel,
            self.settings,
            ctx.preexisting,
            self.recorder,
            parallel=self.executor.slots > 1,
            at_work=self._at_work,
            settings_at_start=settings_at_start,
            documents=lambda: self.scheduler.plan.linked_documents,
        )
        self.guard = guard
        self.attempts = Attempts(
            repo=self.repo,
            plan_rel=ctx.plan_rel,
            settings=self.settings,
            agent=agent,
            renderer=renderer,
            recorder=self.recorder,
            journal=ctx.journal,
            executor=self.executor,
            guard=guard,
            sandbox=ctx.sandbox,
            env=ctx.passed_env,
            plan=lambda: self.scheduler.plan,
            stop=self.stop,
            fail_first=FailFirst(
                settings=self.settings,
                recorder=self.recorder,
                sandbox=ctx.sandbox,
                env=ctx.passed_env,
                scratch_root=ctx.journal.directory.parent / SCRATCH_DIR,
                stop=self.stop,
            ),
            rate_gate=LocalRateGate(self.settings.requests_per_minute),
        )
        self.landing = Landing(
            repo=self.repo,
            plan_path=ctx.plan_path,
            run_id=ctx.run_id,
            verify_defaults=self.settings.verify,
            recorder=self.recorder,
            executor=self.executor,
            guard=guard,
            scheduler=self.scheduler,
            verify=self.attempts.verify,
            ours=self.ours,
            untouched_preexisting=self._untouched_preexisting,
        )
        self.attempts.resume_at.update(resume_at or {})
        for task_id, worktree in (adopted or {}).items():
            assert isinstance(self.executor, WorktreeExecutor)
            self.executor.adopt(task_id, worktree)
        for task_id, (branch, base) in (results or {}).items():
            from orchestrator.engine.ray_cluster import RayExecutor

            assert isinstance(self.executor, RayExecutor)
            self.executor.adopt(task_id, branch, base)
        for record in self.state.tasks.values():
            if record.status is TaskStatus.DONE:
                self.scheduler.done.add(record.id)
            elif record.status is TaskStatus.NEEDS_HUMAN:
                self.scheduler.waiting.add(record.id)

    @property
    def plan(self) -> Plan:
        """The plan as it is now: each landing ticks a box."""
        return self.scheduler.plan

    def _default_executor(self) -> Executor:
        if self.settings.executor == "ray":
            from orchestrator.engine.ray_cluster import RayExecutor

            executor = RayExecutor.connect(
                self.repo, self.settings, self.ctx.run_id, self.recorder, self.ctx.journal, self._order_for
            )
            executor.stop_token = self.stop
            return executor
        if self.settings.parallel <= 1:
            return InlineExecutor(self.repo, keep=self.ours)
        return WorktreeExecutor(
            self.repo,
            self.settings.parallel,
            worktrees_root(self.ctx.journal.directory.parent, self.ctx.run_id),
            self.ctx.run_id,
            on_added=self._worktree_added,
            on_removed=self._worktree_removed,
            on_slot_free=self._take_ready,
            unstarted=self._unstarted,
        )

    def _order_for(self, task: Task, base: str, relay: object) -> AttemptOrder:
        """What a Ray node needs to run `task`'s attempts from the run's head `base`."""
        from orchestrator.engine.ray_cluster import AttemptOrder, portable_agent

        with self.lock:
            state = self.state.model_copy(deep=True)
        return AttemptOrder(
            run_id=self.ctx.run_id,
            task=task,
            plan=self.plan,
            plan_rel=self.ctx.plan_rel,
            settings=self.settings,
            state=state,
            base=base,
            renderer=self.renderer.parts(),
            settings_at_start=self.guard.settings_at_start,
            agent=portable_agent(self.agent),
            relay=relay,
        )

    def _unstarted(self) -> int:
        """Tasks of the selection still to start (for the spare worktrees made ahead of time)."""
        with self.lock:
            return len(self.scheduler.remaining()) - len(self._open)

    def _at_work(self) -> list[str]:
        with self.lock:
            return sorted(self._open)

    def _worktree_added(self, task: Task, worktree: Worktree) -> None:
        # Not synced on its own: task_running follows at once and its sync covers this record (a
        # worktree whose record a power cut lost is a leftover, which resume removes).
        self.record(t.WorktreeAdded(task=task.id, **worktree.as_record()), durable=False)

    def _worktree_removed(self, task_id: str) -> None:
        self.record(t.WorktreeRemoved(task=task_id), durable=False)

    # -- what resume and the session use ---------------------------------------------------

    def record(self, transition: t.Transition, *, durable: bool = True) -> None:
        self.recorder.record(transition, durable=durable)

    def emit(self, event: Event) -> None:
        self.recorder.emit(event)

    def notice(self, message: str, level: Level = "info", task_id: str | None = None) -> None:
        self.recorder.notice(message, level, task_id)

    def _stopping(self) -> None:
        self.notice(
            "stopping after the current step (a second stop signal (Ctrl-C, SIGTERM or SIGHUP) "
            "aborts now; both are resumable)",
            level="warning",
        )

    def ours(self, paths: list[str]) -> list[str]:
        return run_paths(self.ctx, paths)

    def _untouched_preexisting(self) -> list[str]:
        return [p for p, blob in self.ctx.preexisting.items() if self.repo.hash_file(p) == blob]

    # -- the loop --------------------------------------------------------------------------

    def run(self, resumed: bool = False) -> RunResult:
        """Run the selection's tasks until none is left or the run stops; every way it ends is
        journaled and summed up (see _ending)."""
        self.recorder.reporting = True
        self.attempts.fail_first.clear_leftovers()
        self.stop.arm(self._stopping)
        self.emit(self._table_of_contents(resumed))
        aborted = False
        try:
            self._loop()
        except BaseException as exc:
            ending = self._ending(exc)
            if ending is None:
                self._finish(Ending(RunStatus.STOPPED, f"stopped by an internal error: {exc!r}"))
                raise
            aborted = isinstance(exc, KeyboardInterrupt)
        else:
            ending = self._outcome()
        finally:
            self.stop.halt()
            self.executor.close(wait=not aborted)
        return self._finish(ending)

    def _loop(self) -> None:
        """Take ready tasks, hand them to the executor, apply what comes back (several at once:
        in plan order), until nothing is open."""
        concurrent = self.executor.slots > 1
        finished: list[TaskResult] = []
        while True:
            if concurrent or not finished:
                self._take_ready()
            if not finished:
                with self.lock:
                    anything_open = bool(self._open)
                if not anything_open:
                    if self.stop.requested:
                        raise StopRequested
                    return
                finished = self.executor.wait()
                continue
            finished.sort(key=lambda r: self._rank.get(r.task.id, 0))
            self._apply(finished.pop(0))
            if concurrent:
                finished.extend(self.executor.wait(block=False))

    def _take_ready(self) -> None:
        """Start ready tasks, those on the longest remaining path first, while slots are free.

        Parallel runs call it from worker threads too, the moment a task frees its slot, so a
        new task need not wait for this thread to finish landing others."""
        with self.lock:
            if self.stop.stopping:
                return
            free = self.executor.free()
            if free <= 0:
                return
            for task in self.scheduler.ready(self._open)[:free]:
                self._open.add(task.id)
                self.state.task(task.id)  # created here, so worker threads only ever look it up
                self.executor.start(task, self._work_for(task))

    def _work_for(self, task: Task) -> Work:
        def work(workspace: Path) -> TaskResult:
            return self.attempts.run(task, workspace)

        return work

    def _apply(self, result: TaskResult) -> None:
        """A task's attempts came back: land it, fail it, or (stopped mid-way) leave it as it is
        for resume to pick up."""
        try:
            if result.stopped:
                pass
            elif result.needs_human:
                self.landing.hold(result)
            elif result.passed:
                self.landing.land(result)
            else:
                self.landing.fail(result)
        finally:
            with self.lock:
                self._open.discard(result.task.id)

    # -- how it ends -----------------------------------------------------------------------

    def _table_of_contents(self, resumed: bool) -> Event:
        chosen = set(self.ctx.selection)
        return RunStarted(
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
                if item.id in chosen
            ],
        )

    def _outcome(self) -> Ending:
        """The loop ran out of tasks: every one done, or some failed, or some wait on tasks outside
        the selection."""
        resume = f"orchestrate resume {self.ctx.run_id}"
        if self.state.count(TaskStatus.FAILED) or self.state.count(TaskStatus.SKIPPED):
            failed = [item.id for item in self.state.tasks.values() if item.status is TaskStatus.FAILED]
            message = f"task(s) failed: {', '.join(failed)}; their dependents were skipped"
            if self.scheduler.waiting:
                message += f"; {self._waiting_message()}"
            return Ending(RunStatus.FAILED, message, resume)
        if self.scheduler.waiting:
            first = sorted(self.scheduler.waiting, key=lambda i: self._rank.get(i, 0))[0]
            hint = f"orchestrate accept {self.ctx.plan_rel} {first}"
            return Ending(RunStatus.WAITING, self._waiting_message(), hint)
        if self.scheduler.remaining():
            # Nothing ready yet something left: the selection waits on tasks outside it.
            waiting = len(self.scheduler.remaining())
            return Ending(RunStatus.FAILED, f"{waiting} task(s) wait on tasks outside this run's selection")
        return Ending(RunStatus.COMPLETE, done_message(self.state))

    def _waiting_message(self) -> str:
        """What waits for a person, what waits on it, and what to type."""
        waiting = sorted(self.scheduler.waiting, key=lambda i: self._rank.get(i, 0))
        behind = len(self.scheduler.remaining()) - len(waiting)
        plan = self.ctx.plan_rel
        more = f" ({behind} more task(s) wait on them)" if behind > 0 else ""
        return (
            f"{len(waiting)} task(s) wait for a human: {', '.join(waiting)}{more}; "
            f"`orchestrate accept {plan} TASK [--note TEXT]` commits one, "
            f"`orchestrate reject {plan} TASK --note TEXT` re-opens it; "
            f"then `orchestrate resume {self.ctx.run_id}`"
        )

    def _ending(self, exc: BaseException) -> Ending | None:
        """How the run ends when `exc` stopped the loop: each is a resumable stop, or None for an
        internal error (which the caller lets through)."""
        resume = f"orchestrate resume {self.ctx.run_id}"
        match exc:
            case BudgetExceeded():
                spent = self.state.usage.cost_usd
                limit = self.settings.max_cost or 0.0
                suggestion = max(limit * 2, spent + 1.0)
                spending = f"spent ${spent:.2f} of --max-cost ${limit:.2f}"
                message = f"budget reached: {spending}; resume with a higher limit"
                return Ending(RunStatus.STOPPED, message, f"{resume} --max-cost {suggestion:.2f}")
            case AgentUnavailable():
                message = f"the agent backend is unavailable: {exc}; resume when it is back"
                return Ending(RunStatus.STOPPED, message, resume)
            case AgentConfigError():
                # Its key or model stopped working mid-run (a check before the first task passed).
                message = f"the agent backend cannot go on: {exc}; then resume"
                return Ending(RunStatus.STOPPED, message, resume)
            case StopRequested():
                return Ending(RunStatus.STOPPED, "stopped on request after the current step", resume)
            case KeyboardInterrupt():
                message = (
                    "aborted by a second stop signal (Ctrl-C, SIGTERM or SIGHUP); the interrupted task is "
                    "picked up on resume"
                )
                return Ending(RunStatus.STOPPED, message, resume)
            case OrchestrateError():
                # Work may have been done by now: whatever stops the run (a commit git refused, the
                # plan changed under it) is a resumable stop once its cause is fixed, exit 1, not 2.
                remedy = "make room" if out_of_space(exc) else "put that right"
                return Ending(
                    RunStatus.STOPPED, f"stopped: {self._explain(exc)}; {remedy}, then resume", resume
                )
            case OSError() if out_of_space(exc):
                # A full disk (a quota, a file-size limit) wherever the write was: git's index, a
                # worktree, an artifact. Every durable step before it was journaled.
                where = f" ({exc.filename})" if exc.filename else ""
                return Ending(
                    RunStatus.STOPPED, f"stopped: {exc.strerror}{where}; make room, then resume", resume
                )
        return None

    def _explain(self, exc: OrchestrateError) -> str:
        """What stopped the run, in words that say what to do: a commit refused for want of a git
        identity (removed since the pre-flight checked it) says how to set one."""
        if isinstance(exc, GitError):
            problem = self.repo.identity_problem()
            if problem is not None:
                return f"git has no identity to commit with ({problem}); {IDENTITY_HINT}"
        return exc.render()

    def _finish(self, ending: Ending) -> RunResult:
        kind = t.RunStopped if ending.status is RunStatus.STOPPED else t.RunFinished
        ended = kind(
            status=ending.status.value,
            message=ending.message,
            resume_hint=ending.hint,
            remaining=len(self.scheduler.remaining()),
        )
        self.recorder.reporting = False  # the summary comes last, after the notices below
        try:
            self.record(ended)
        except OutOfSpace:
            # No room left for the last word: the run reads as interrupted, which resume takes
            # up alike; the summary still says why it stopped.
            self.notice("the run's journal had no room for its last record", level="warning")
        saved = [ref for task in self.state.tasks.values() for ref in task.saved_refs]
        if saved:
            self.notice("edits of interrupted or failed attempts are kept in: " + ", ".join(saved))
        self._write_report()
        summary = derive(ended, self.state)
        assert summary is not None
        self.emit(summary)
        timings: Timings | RayTimings | None = getattr(self.executor, "timings", None)
        return RunResult(self.ctx.run_id, ending.status, ending.message, self.state, ending.hint, timings)

    def _write_report(self) -> None:
        """report.md and report.json in the run's directory, however the run ended; a report that
        cannot be written is a warning, never the run's end."""
        journal = self.ctx.journal
        try:
            report = run_report(self.state, read_transitions(journal.path), self.repo)
            # Through the journal: atomically, never through a link planted on the way.
            written = [journal.write_artifact(name, text) for name, text in report_files(report).items()]
        except (OrchestrateError, OSError) as exc:
            self.notice(f"the run report could not be written: {exc}", level="warning")
            return
        self.notice(f"run report: {written[0]}")


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
