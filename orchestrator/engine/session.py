"""Starting and resuming runs: pre-flight checks, resume's recovery (engine.resume), then the Runner.

Pre-flight refuses, before anything changes, what a run cannot do well: a plan outside a git
repository, a plan with errors, an unknown agent or a bad script, a verification program that does
not exist, a dirty tree, a protected branch, another run holding the repository. Each refusal says
what to do. Resume first reconciles the journal with the branch's commits and the work tree.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

from orchestrator.agents.base import Agent, AgentConfigError, ReadyCheck
from orchestrator.agents.registry import create_agent
from orchestrator.config import Settings, check_checkpoints_dir, load_settings
from orchestrator.domain import transitions as t
from orchestrator.domain.events import Notice, Reporter, RunFinished, RunStarted, TaskInfo
from orchestrator.domain.plan import Plan
from orchestrator.domain.state import RunState, RunStatus
from orchestrator.engine.baseline import take_baseline
from orchestrator.engine.guard import settings_as_found
from orchestrator.engine.prompts import PromptRenderer
from orchestrator.engine.recorder import Recorder
from orchestrator.engine.remembered import remembered, resume_settings
from orchestrator.engine.resume import (
    Recovery,
    reconcile,
    resumed_selection,
    some,
    wait_for_index_lock,
)
from orchestrator.engine.review import check_review_possible
from orchestrator.engine.runner import (
    IDENTITY_HINT,
    RunContext,
    Runner,
    RunResult,
    prompt_renderer,
    run_paths,
)
from orchestrator.engine.scheduler import select_tasks
from orchestrator.engine.stop import StopToken
from orchestrator.engine.unit_history import read_plan
from orchestrator.engine.verification import commands_for, missing_programs
from orchestrator.errors import OutOfSpace, PlanError, PreflightError, UsageError, out_of_space
from orchestrator.input_files import PLAN_LIMIT, check_regular_file
from orchestrator.persistence.checkpoints import RunLock, RunStore, new_run_id
from orchestrator.persistence.repo import GitRepo, find_repo_root
from orchestrator.tools.processes import kill_leftovers, tag_children
from orchestrator.tools.sandbox import Sandbox, SandboxUnavailable, credential_paths, detect_sandbox


@runtime_checkable
class PlanAwareAgent(Protocol):
    """A backend that can check its own configuration against the plan (the scripted agent)."""

    def check_tasks(self, task_ids: list[str]) -> None: ...


@dataclass
class Located:
    repo: GitRepo
    plan_path: Path
    plan_rel: str


def locate(plan_path: Path, repo: Path | None = None) -> Located:
    """The repository a plan belongs to (or `repo`), refusing a plan outside any repository."""
    plan_path = plan_path.expanduser()
    check_regular_file(plan_path, what="plan", limit=PLAN_LIMIT, error=PlanError, hint="split the plan")
    plan_abs = plan_path.resolve()
    root = find_repo_root(repo.expanduser().resolve() if repo else plan_abs)
    if root is None:
        where = repo if repo else plan_abs.parent
        raise PreflightError(
            f"{where} is not inside a git repository; run `git init` there (and commit) or pass --repo"
        )
    try:
        rel = plan_abs.relative_to(root).as_posix()
    except ValueError:
        raise PreflightError(
            f"the plan {plan_abs} is outside the repository {root}; orchestrate ticks and commits the "
            "plan, so it must live in the repository it runs in"
        ) from None
    return Located(GitRepo(root), plan_abs, rel)


def load_plan(path: Path, git: GitRepo) -> Plan:
    """The plan as a run reads it (engine.unit_history.read_plan), refused when it has errors."""
    plan = read_plan(path, git)
    if plan.errors:
        first = plan.errors[0]
        more = f" (and {len(plan.errors) - 1} more; see `orchestrate lint`)" if len(plan.errors) > 1 else ""
        raise PlanError(f"{first.message}{more}", path=path, line=first.line)
    return plan


def build_agent(settings: Settings, plan: Plan, sandbox: Sandbox) -> Agent:
    try:
        agent = create_agent(settings)
        if isinstance(agent, PlanAwareAgent):
            agent.check_tasks([item.id for item in plan.tasks])
        if isinstance(agent, ReadyCheck):
            agent.check_ready(sandbox)
    except AgentConfigError as exc:
        raise UsageError(str(exc)) from None
    return agent


def run_sandbox(settings: Settings, state_root: Path) -> Sandbox:
    """The run's one sandbox, found in pre-flight: bubblewrap where it works (or where the settings
    require it), hiding the run's state (`state_root`) and the user's credential files from every
    command."""
    try:
        sandbox = detect_sandbox(settings.sandbox)
    except SandboxUnavailable as exc:
        raise PreflightError(str(exc)) from None
    return sandbox.hiding(state_root, *credential_paths())


def announce_sandbox(recorder: Recorder, sandbox: Sandbox) -> None:
    """Journal what confines the run's commands; when nothing does, warn the user, every run."""
    recorder.record(t.SandboxChosen(kind=sandbox.kind, warning=sandbox.warning), durable=False)
    if sandbox.warning:
        recorder.notice(sandbox.warning, "warning")


def check_programs(plan: Plan, selection: list[str], settings: Settings) -> None:
    commands: list[str] = []
    for task_id in selection:
        task = plan.task(task_id)
        if task is not None and not task.settled:
            commands.extend(commands_for(task.verify, settings.verify))
    missing = missing_programs(dict.fromkeys(commands))
    if missing:
        command, program = missing[0]
        raise PreflightError(
            f"verification command `{command}` needs `{program}`, which is not on PATH; "
            "install it or fix the plan's verify command"
        )


def check_identity(repo: GitRepo) -> None:
    """Commits need an author and a committer: refuse now rather than after a paid agent call."""
    problem = repo.identity_problem()
    if problem is not None:
        raise PreflightError(f"git has no identity to commit with ({problem}); {IDENTITY_HINT}")


class Ready(NamedTuple):
    """What a run (started or resumed) goes with once its pre-flight passed."""

    plan: Plan
    selection: list[str]
    agent: Agent
    sandbox: Sandbox
    renderer: PromptRenderer


def preflight(
    git: GitRepo, plan_path: Path, settings: Settings, state_root: Path, select: Callable[[Plan], list[str]]
) -> Ready:
    """The checks a run and a resume share, in this order, before anything changes: the plan reads
    without errors; the tasks it selects (`select` refuses what it cannot); the sandbox works
    (hiding `state_root`); the agent backend is known and ready (in that sandbox); every
    verification program exists; the checkpoints directory is usable; the prompt templates compile
    and render the selection."""
    plan = load_plan(plan_path, git)
    selection = select(plan)
    if settings.executor == "ray":
        from orchestrator.engine.ray_cluster import check_reachable, import_ray

        import_ray()  # installed, or say how before anything changes
        check_reachable(settings.ray_address)
    sandbox = run_sandbox(settings, state_root)
    agent = build_agent(settings, plan, sandbox)
    check_review_possible(settings, agent, plan, selection)
    check_programs(plan, selection, settings)
    check_checkpoints_dir(git.root, settings)
    renderer = prompt_renderer(git, plan_path, settings, plan=plan, selection=selection)
    return Ready(plan, selection, agent, sandbox, renderer)


def _check_branch(repo: GitRepo, settings: Settings) -> str:
    """The branch the run commits on; switches to (or creates) --branch."""
    if settings.branch:
        if settings.branch in settings.protected_branches:
            raise PreflightError(f"--branch {settings.branch} is a protected branch; name a work branch")
        if repo.current_branch() != settings.branch:
            repo.switch(settings.branch, create=not repo.branch_exists(settings.branch))
        return settings.branch
    branch = repo.current_branch()
    if branch is None:
        raise PreflightError("HEAD is detached; pass --branch NAME to run on a work branch")
    if branch in settings.protected_branches:
        raise PreflightError(
            f"refusing to commit on protected branch '{branch}'; pass --branch NAME to create a work branch"
        )
    return branch


def _emit_nothing_to_do(reporter: Reporter, plan: Plan, rel: str, branch: str, settings: Settings) -> None:
    reporter.emit(
        RunStarted(
            run_id="-",
            plan=rel,
            branch=branch,
            agent=settings.agent,
            tasks=[
                TaskInfo(id=item.id, phase=item.phase, title=item.title, settled=True) for item in plan.tasks
            ],
        )
    )
    reporter.emit(RunFinished(run_id="-", status="complete", message="nothing to do: every task is ticked"))


def _unfinished_run_hint(git: GitRepo, settings: Settings) -> str:
    store = RunStore.for_repo(git.root, settings.checkpoints_dir)
    latest = store.latest()
    if latest is None:
        return ""
    state = RunState.from_records(store.transitions(latest))
    if state.status in (RunStatus.COMPLETE, RunStatus.FAILED):
        return ""
    return f"; or continue the interrupted run with `orchestrate resume {latest}`"


def start_run(
    plan_path: Path,
    overrides: Mapping[str, Any],
    reporter: Reporter,
    *,
    repo: Path | None = None,
    phase: str | None = None,
    task: str | None = None,
    stop: StopToken | None = None,
) -> RunResult:
    """Pre-flight, then run the plan. `stop` is how the caller asks the run to stop after its
    current step (the CLI's signal handlers hold it)."""
    located = locate(plan_path, repo)
    git = located.repo
    settings = load_settings(git.root, overrides)
    run_id = new_run_id()
    tag_children(run_id)  # every process the run starts carries its id: a later resume finds it
    # The lock first: what is read below (the plan, the tree) is read by one run at a time, so two
    # runs started together cannot both set out on a task the plan shows open.
    with RunLock(git, "run", run_id):

        def select(plan: Plan) -> list[str]:
            if phase is not None and plan.phase(phase) is None:
                raise UsageError(f"no phase '{phase}' in the plan; `orchestrate status PLAN` lists them")
            if task is not None and plan.task(task) is None:
                raise UsageError(f"no task '{task}' in the plan; `orchestrate next PLAN` lists them")
            return select_tasks(plan, phase=phase, task=task)

        state_root = RunStore.for_repo(git.root, settings.checkpoints_dir).root
        plan, selection, agent, sandbox, renderer = preflight(
            git, located.plan_path, settings, state_root, select
        )
        for note in renderer.notes:
            reporter.emit(Notice(level="warning", message=note))
        dirty = git.status()
        if dirty and not settings.allow_dirty:
            hint = _unfinished_run_hint(git, settings)
            raise PreflightError(
                f"the work tree has uncommitted changes ({len(dirty)} path(s), e.g. {dirty[0][1]}); "
                f"commit or stash them, or pass --allow-dirty{hint}"
            )
        if git.head() is None:
            raise PreflightError("the repository has no commits yet; make an initial commit first")
        check_identity(git)
        branch = _check_branch(git, settings)
        if all(item.settled for item in plan.tasks if item.id in set(selection)):
            _emit_nothing_to_do(reporter, plan, located.plan_rel, branch, settings)
            return RunResult("-", RunStatus.COMPLETE, "nothing to do", RunState())
        store = RunStore.for_repo(git.root, settings.checkpoints_dir)
        store.ensure_excluded(git)
        journal = store.journal(run_id).open()
        preexisting = {path: git.hash_file(path) for _, path in git.status()}
        state = RunState()
        ctx = RunContext(
            repo=git,
            plan_path=located.plan_path,
            plan_rel=located.plan_rel,
            settings=settings,
            run_id=run_id,
            branch=branch,
            journal=journal,
            state=state,
            selection=selection,
            preexisting=preexisting,
            sandbox=sandbox,
        )
        runner = Runner(ctx, agent, reporter, plan, renderer=renderer, stop=stop)
        runner.record(
            t.RunStarted(
                run_id=run_id,
                plan=located.plan_rel,
                repo=str(git.root),
                branch=branch,
                base=git.head(),
                agent=settings.agent,
                settings=remembered(settings),
                selection={"phase": phase, "task": task, "ids": selection},
                preexisting=preexisting,
                plan_sha256=plan.sha256,
                pid=os.getpid(),
            )
        )
        # What a resume holds git's own files to, whatever an agent a kill interrupted left there.
        runner.record(t.GitBaseline(**git.git_baseline()), durable=False)
        announce_sandbox(runner.recorder, sandbox)
        take_baseline(runner)
        try:
            return runner.run()
        except OSError as exc:
            if out_of_space(exc):
                raise _stopped_for_space(exc, run_id) from exc
            raise
        finally:
            journal.close()


def _stopped_for_space(exc: OSError, run_id: str) -> OutOfSpace:
    """A disk that filled up mid-run (wherever the write was: git's index, a worktree, an
    artifact) stops the run resumably, exit 1."""
    where = f" ({exc.filename})" if exc.filename else ""
    return OutOfSpace(f"{exc.strerror}{where}; make room, then `orchestrate resume {run_id}`")


def repo_for_resume(repo: Path | None) -> GitRepo:
    start = (repo or Path.cwd()).expanduser().resolve()
    root = find_repo_root(start)
    if root is None:
        raise PreflightError(f"{start} is not inside a git repository; pass --repo PATH")
    return GitRepo(root)


def resume_run(
    run_id: str | None,
    overrides: Mapping[str, Any],
    reporter: Reporter,
    *,
    repo: Path | None = None,
    stop: StopToken | None = None,
) -> RunResult:
    """Reconcile the run's journal with the branch and the work tree, then go on (see start_run
    for `stop`)."""
    git = repo_for_resume(repo)
    base_settings = load_settings(git.root, {})
    store = RunStore.for_repo(git.root, base_settings.checkpoints_dir)
    run_id = store.resolve(run_id)
    # The lock before the journal, the plan or the tree is read (see start_run).
    with RunLock(git, "resume", run_id):
        # Before anything is read or touched: what an earlier orchestrate of this run left running
        # when it was killed (an agent's command still writing, a git of its holding a lock).
        for process in kill_leftovers(run_id):
            left = f"killed {process}, left running by an earlier orchestrate of this run"
            reporter.emit(Notice(level="warning", message=left))
        tag_children(run_id)
        journaled = store.transitions(run_id)
        state = RunState.from_records(journaled)
        if not state.run_id:
            raise UsageError(f"run {run_id} has no readable start record in {store.run_dir(run_id)}")
        # Before any other git command: git's own files as the run found them when it started.
        baseline = next((r for r in journaled if isinstance(r, t.GitBaseline)), None)
        tampered = git.resume_git_baseline(baseline.facts()) if baseline is not None else []
        if state.status is RunStatus.COMPLETE:
            raise UsageError(
                f"run {run_id} is complete; nothing to resume (start a new one with `orchestrate run`)"
            )
        # Of the run's recorded settings, only what cannot widen the run (see engine.remembered).
        resumed = resume_settings(git.root, run_id, state.settings, overrides, store.root)
        settings = resumed.settings
        plan_path = git.root / state.plan
        if not plan_path.is_file():
            raise PlanError("the run's plan file is gone", path=plan_path)
        wait_for_index_lock(git, reporter, state.branch, run_id)
        branch = git.current_branch()
        if branch != state.branch:
            raise PreflightError(
                f"run {run_id} commits on branch '{state.branch}' but HEAD is on '{branch}'; "
                f"`git switch {state.branch}` and resume again"
            )
        check_identity(git)
        check_checkpoints_dir(git.root, settings)
        journal = store.journal(run_id).open()
        try:
            plan, selection, agent, sandbox, renderer = preflight(
                git, plan_path, settings, store.root, lambda plan: resumed_selection(plan, state.selection)
            )
            ctx = RunContext(
                repo=git,
                plan_path=plan_path,
                plan_rel=state.plan,
                settings=settings,
                run_id=run_id,
                branch=state.branch,
                journal=journal,
                state=state,
                selection=selection,
                preexisting=dict(state.preexisting),
                sandbox=sandbox,
            )
            recorder = Recorder(journal, state, reporter)
            found = settings_as_found(git)  # before resume puts anything back
            changed = {k: v for k, v in remembered(settings).items() if state.settings.get(k) != v}
            recorder.record(
                t.RunResumed(
                    overrides=changed, pid=os.getpid(), selection={**state.selection, "ids": selection}
                )
            )
            if resumed.differences:
                recorder.notice(resumed.notice(), "info" if resumed.from_flags else "warning")
            if tampered:
                recorder.record(t.GitTampered(changes=tampered))
                recorder.notice(
                    "git's own files were changed since the run started (by an agent a stop interrupted, "
                    f"or by you), and put back: {'; '.join(tampered)}",
                    "error",
                )
            announce_sandbox(recorder, sandbox)
            # Tasks ran in worktrees or on Ray nodes: the run's work tree holds no task's edits.
            apart = settings.parallel > 1 or settings.executor == "ray"
            recovery = Recovery(ctx, recorder, parallel=apart, remote=settings.executor == "ray")
            recovered = reconcile(recovery, plan)
            ctx.selection = recovered.selection
            # The tree's changes are the run's where a task picked up mid-way made them; the rest
            # are someone else's, but for the plan's: the user's edits to it are read and kept
            # (committed with the next task's tick).
            leftover = [
                p for p in run_paths(ctx, git.changed_paths()) if p != state.plan and p not in recovered.owned
            ]
            if leftover and not settings.allow_dirty:
                raise PreflightError(
                    f"the work tree has changes the run did not make ({some(leftover)}); commit or "
                    "stash them, or pass --allow-dirty to leave them in the tree, out of the run's commits"
                )
            if leftover:
                # With --allow-dirty they stay as they are, out of every commit of the run (as a
                # new run's are) unless a task changes them; journaled, so that a later resume
                # knows them for the user's even in a tree a task was verified on.
                theirs = {path: git.hash_file(path) for path in leftover}
                recorder.record(t.UserChanges(paths=theirs))
                ctx.preexisting.update(theirs)
                recorder.notice(
                    f"changes the run did not make ({some(leftover)}) stay in the work tree, out of "
                    "the run's commits (--allow-dirty)"
                )
            runner = Runner(
                ctx,
                agent,
                reporter,
                recovered.plan,
                renderer=renderer,
                stop=stop,
                recorder=recorder,
                resume_at=recovered.points,
                adopted=recovered.adopted,
                results=recovered.results,
                settings_at_start=found,
            )
            take_baseline(runner)  # only if the run was stopped before it was taken
            return runner.run(resumed=True)
        except OSError as exc:
            if out_of_space(exc):
                raise _stopped_for_space(exc, run_id) from exc
            raise
        finally:
            journal.close()
