"""Starting and resuming runs: pre-flight checks, then the Runner.

Pre-flight refuses, before anything changes, what a run cannot do well: a plan outside a git
repository, a plan with errors, an unknown agent or a bad script, a verification program that does
not exist, a dirty tree, a protected branch, another run holding the repository. Each refusal says
what to do. Resume first reconciles the journal with the branch's commits and the work tree.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from orchestrator.agents.base import Agent, AgentConfigError, ReadyCheck
from orchestrator.agents.registry import create_agent
from orchestrator.config import Settings, check_checkpoints_dir, load_settings
from orchestrator.domain import transitions as t
from orchestrator.domain.events import Notice, Reporter, RunFinished, RunStarted, TaskInfo
from orchestrator.domain.plan import Plan
from orchestrator.domain.state import RunState, RunStatus, TaskRecord, TaskStatus
from orchestrator.engine.baseline import take_baseline
from orchestrator.engine.remembered import remembered, resume_settings
from orchestrator.engine.runner import (
    IDENTITY_HINT,
    RunContext,
    Runner,
    RunResult,
    prompt_renderer,
    ref_name,
)
from orchestrator.engine.scheduler import select_tasks
from orchestrator.engine.stop import StopToken
from orchestrator.engine.unit_history import done_by_commits
from orchestrator.engine.verification import commands_for, missing_programs
from orchestrator.engine.worktrees import (
    Worktree,
    WorktreeExecutor,
    branch_prefix,
    is_worktree,
    keep_worktree,
    remove_worktree,
    worktrees_root,
)
from orchestrator.errors import OutOfSpace, PlanError, PreflightError, UsageError, out_of_space
from orchestrator.input_files import PLAN_LIMIT, check_regular_file
from orchestrator.persistence.checkpoints import RunLock, RunStore, new_run_id
from orchestrator.persistence.repo import GitError, GitRepo, find_repo_root
from orchestrator.planfile import parse_plan
from orchestrator.planfile.writer import set_box
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


def load_plan(path: Path) -> Plan:
    plan = parse_plan(path)
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


def announce_sandbox(runner: Runner) -> None:
    """Journal what confines the run's commands; when nothing does, warn the user, every run."""
    sandbox = runner.ctx.sandbox
    runner.record(t.SandboxChosen(kind=sandbox.kind, warning=sandbox.warning), durable=False)
    if sandbox.warning:
        runner.notice(sandbox.warning, "warning")


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
    runner_hook: Any = None,
) -> RunResult:
    """Pre-flight, then run the plan. `stop` is how the caller asks the run to stop after its
    current step (the CLI's signal handlers hold it); `runner_hook(runner)` is called before the
    loop starts, for observers (the benchmarks read the executor's timings)."""
    located = locate(plan_path, repo)
    git = located.repo
    settings = load_settings(git.root, overrides)
    run_id = new_run_id()
    tag_children(run_id)  # every process the run starts carries its id: a later resume finds it
    # The lock first: what is read below (the plan, the tree) is read by one run at a time, so two
    # runs started together cannot both set out on a task the plan shows open.
    with RunLock(git, "run", run_id):
        plan = done_by_commits(load_plan(located.plan_path), git)
        if phase is not None and plan.phase(phase) is None:
            raise UsageError(f"no phase '{phase}' in the plan; `orchestrate status PLAN` lists them")
        if task is not None and plan.task(task) is None:
            raise UsageError(f"no task '{task}' in the plan; `orchestrate next PLAN` lists them")
        selection = select_tasks(plan, phase=phase, task=task)
        sandbox = run_sandbox(settings, RunStore.for_repo(git.root, settings.checkpoints_dir).root)
        agent = build_agent(settings, plan, sandbox)
        check_programs(plan, selection, settings)
        check_checkpoints_dir(git.root, settings)
        renderer = prompt_renderer(git, located.plan_path, settings, plan=plan, selection=selection)
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
        announce_sandbox(runner)
        take_baseline(runner)
        if runner_hook is not None:
            runner_hook(runner)
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


def _wait_for_index_lock(git: GitRepo, reporter: Reporter, branch: str = "", run_id: str = "") -> None:
    """A kill during `git commit` can leave index.lock behind (or a git still finishing); one
    during a ref update, the ref's lock. The run's own refs are the run's alone (we hold the run
    lock), so their locks are stale at once."""
    common = git.common_dir
    shared = [git.git_dir / "index.lock", common / "HEAD.lock", common / "packed-refs.lock"]
    if branch:
        shared.append(common / "refs" / "heads" / f"{branch}.lock")
    deadline = time.monotonic() + 5.0
    while any(lock.exists() for lock in shared) and time.monotonic() < deadline:
        time.sleep(0.05)
    own: list[Path] = []
    if run_id:
        for space in (
            common / "refs" / "heads" / branch_prefix(run_id),
            common / "refs" / "orchestrate" / run_id,
        ):
            own.extend(space.rglob("*.lock") if space.is_dir() else [])
    for lock in [*shared, *own]:
        if lock.exists():
            lock.unlink(missing_ok=True)
            reporter.emit(
                Notice(level="warning", message=f"removed a stale {lock} left by an interrupted git")
            )


def resume_run(
    run_id: str | None,
    overrides: Mapping[str, Any],
    reporter: Reporter,
    *,
    repo: Path | None = None,
    stop: StopToken | None = None,
    runner_hook: Any = None,
) -> RunResult:
    """Reconcile the run's journal with the branch and the work tree, then go on (see start_run
    for `stop` and `runner_hook`)."""
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
        _wait_for_index_lock(git, reporter, state.branch, run_id)
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
            plan = load_plan(plan_path)
            sandbox = run_sandbox(settings, store.root)
            agent = build_agent(settings, plan, sandbox)
            selection = resumed_selection(plan, state.selection)
            check_programs(plan, selection, settings)
            renderer = prompt_renderer(git, plan_path, settings, plan=plan, selection=selection)
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
            runner = Runner(ctx, agent, reporter, plan, renderer=renderer, stop=stop)
            changed = {k: v for k, v in remembered(settings).items() if state.settings.get(k) != v}
            runner.record(
                t.RunResumed(
                    overrides=changed, pid=os.getpid(), selection={**state.selection, "ids": selection}
                )
            )
            if resumed.differences:
                runner.notice(resumed.notice(), "info" if resumed.from_flags else "warning")
            if tampered:
                runner.record(t.GitTampered(changes=tampered))
                runner.notice(
                    "git's own files were changed since the run started (by an agent a stop interrupted, "
                    f"or by you), and put back: {'; '.join(tampered)}",
                    "error",
                )
            announce_sandbox(runner)
            reconciled = reconcile(runner, plan)
            plan = reconciled.plan
            # The tree's changes are the run's where a task picked up mid-way made them; the rest
            # are someone else's, but for the plan's: the user's edits to it are read and kept
            # (committed with the next task's tick).
            leftover = [
                p for p in runner.ours(git.changed_paths()) if p != state.plan and p not in reconciled.owned
            ]
            if leftover and not settings.allow_dirty:
                raise PreflightError(
                    f"the work tree has changes the run did not make ({_some(leftover)}); commit or "
                    "stash them, or pass --allow-dirty to leave them in the tree, out of the run's commits"
                )
            if leftover:
                # With --allow-dirty they stay as they are, out of every commit of the run (as a
                # new run's are) unless a task changes them; journaled, so that a later resume
                # knows them for the user's even in a tree a task was verified on.
                theirs = {path: git.hash_file(path) for path in leftover}
                runner.record(t.UserChanges(paths=theirs))
                ctx.preexisting.update(theirs)
                runner.notice(
                    f"changes the run did not make ({_some(leftover)}) stay in the work tree, out of "
                    "the run's commits (--allow-dirty)"
                )
            take_baseline(runner)  # only if the run was stopped before it was taken
            if runner_hook is not None:
                runner_hook(runner)
            return runner.run(resumed=True)
        except OSError as exc:
            if out_of_space(exc):
                raise _stopped_for_space(exc, run_id) from exc
            raise
        finally:
            journal.close()


def resumed_selection(plan: Plan, selection: Mapping[str, Any]) -> list[str]:
    """The run's tasks in the plan as it is now. Tasks the user added since join: any of them in a
    run of the whole plan; with --phase, those of that phase; with --task, those the task now waits
    for; and with either, the unticked tasks that the selection now waits for. Tasks the user
    removed are gone."""
    phase = selection.get("phase") if isinstance(selection.get("phase"), str) else None
    task = selection.get("task") if isinstance(selection.get("task"), str) else None
    gone = (phase is not None and plan.phase(phase) is None) or (task is not None and plan.task(task) is None)
    # A phase or task the user took out of the plan: the run keeps what it had, nothing more.
    fresh = [] if gone else select_tasks(plan, phase=phase, task=task)
    had = selection.get("ids")
    chosen = set(fresh) | (set(had) if isinstance(had, list) else set())
    return [item.id for item in plan.tasks if item.id in chosen]


def _keep_and_reset(runner: Runner, task_id: str, attempt: int, why: str) -> None:
    """Keep the tree's uncommitted edits in a named ref, then put the tree back to the branch head:
    all of it but the plan, whose edits (a task the user added meanwhile) are kept and read; the
    run's own tick in it, which no commit carries, the caller has undone.

    A parallel run's tasks work in worktrees: its work tree holds no task's edits, only the user's
    (the dirty-tree check decides about those), so nothing is reset there."""
    if isinstance(runner.executor, WorktreeExecutor):
        return
    git = runner.repo
    run_id = runner.ctx.run_id
    paths = [p for p in runner.ours(git.changed_paths()) if p != runner.ctx.plan_rel]
    if not paths:
        return
    ref = unused_ref(git, ref_name(run_id, task_id, f"attempt-{attempt}"))
    sha = git.save_snapshot(ref, f"orchestrate: edits of {why} task {task_id} (run {run_id})")
    if sha:
        runner.record(t.EditsSaved(task=task_id, attempt=attempt, ref=ref))
        runner.notice(f"its {why} edits are kept in {ref}", task_id=task_id)
    git.restore_head(paths)


def unused_ref(git: GitRepo, ref: str) -> str:
    """`ref`, or `ref-2`, `ref-3`, ... when an earlier resume already kept something there: a ref
    that keeps someone's edits is never overwritten."""
    candidate, n = ref, 1
    while git.ref_exists(candidate):
        n += 1
        candidate = f"{ref}-{n}"
    return candidate


@dataclass
class Reconciled:
    """What resume found, to go on from."""

    plan: Plan
    """The plan as it is now."""
    in_place: list[str]
    """Tasks picked up mid-way in the run's work tree."""
    owned: set[str]
    """The paths those tasks changed: all their commits may hold. Any other change in the tree but
    the plan's is not the run's."""


def reconcile(runner: Runner, plan: Plan) -> Reconciled:
    """Make the journal agree with the branch and the work tree before going on.

    - a commit with the task's trailer on the branch: the task is done (whatever the journal says);
    - journaled done but no such commit (the branch was reset): the task runs again;
    - verified or committing, no commit: an unticked tree that still matches the verified hash is
      committed now; a tick without its commit is not trusted (undone, then verified again);
    - agent finished, tree intact: verification (perhaps half-done) runs again;
    - agent finished, verified, or between attempts, and the user changed the tree since (serial
      runs): see _pick_up_in_place; paths the task did not change are the user's, never part of
      its commit;
    - caught mid-run (or its tree changed since): its edits are kept in a ref, the tree is reset
      (but for the plan: the user's edits to it are kept and read, a task added there joins the
      run; the run's own tick that no commit carries is undone), and the task is re-run;
    - in flight but taken out of the plan by the user: its edits are kept in a ref, the tree reset;
    - failed or skipped: a fresh allowance of attempts;
    - a task of a parallel run: see _reconcile_worktrees.
    """
    git = runner.repo
    state = runner.state
    run_id = runner.ctx.run_id
    committed = {c.task_id: c.sha for c in git.trailer_commits(run_id)}
    in_worktrees = _reconcile_worktrees(runner, committed)
    in_place: list[str] = []
    owned: set[str] = set()
    # Tasks of a serial run can only be picked up mid-way by a serial executor (in place).
    adopt_in_place = not isinstance(runner.executor, WorktreeExecutor)
    plan_file = runner.ctx.plan_path
    # A kill during a tick can leave the plan writer's temp file beside the plan.
    for stray in plan_file.parent.glob(f".{plan_file.name}.*.tmp"):
        stray.unlink(missing_ok=True)
    for task_id, record in list(state.tasks.items()):
        task = plan.task(task_id)
        if task_id in committed:
            if record.status is not TaskStatus.DONE or record.commit != committed[task_id]:
                runner.record(
                    t.TaskDone(task=task_id, commit=committed[task_id], reason="found its commit on resume")
                )
            continue
        if record.status is TaskStatus.DONE:
            runner.notice(
                f"its commit {str(record.commit)[:10]} is no longer on the branch; running it again",
                "warning",
                task_id,
            )
            runner.record(t.TaskReset(task=task_id, reason="commit missing from the branch"))
            continue
        if record.status in (TaskStatus.FAILED, TaskStatus.SKIPPED):
            runner.record(t.TaskReset(task=task_id, reason="resumed"))
            continue
        if task_id in in_worktrees:
            continue
        if task is None and (record.status.in_flight or record.tree is not None):
            # The user took the task out of the plan: what it left in the tree goes to a ref.
            _keep_and_reset(runner, task_id, record.attempt, "interrupted")
            if record.status.in_flight:
                runner.record(t.AttemptInterrupted(task=task_id, attempt=record.attempt))
            continue
        if record.status is TaskStatus.PENDING and record.tree is not None and task is not None:
            # Between a failed attempt and the next: its edits are what the retry builds on.
            point = _pick_up_in_place(runner, record, owned) if adopt_in_place else None
            if point is not None:
                runner.resume_at(task_id, point)
                in_place.append(task_id)
            elif not adopt_in_place:
                _keep_and_reset(runner, task_id, record.attempt, "interrupted")
            continue
        if not record.status.in_flight or task is None:
            continue
        if task.checked and task.id not in runner.scheduler.done:
            # The tick is in the work tree but no commit carries it: not trusted.
            plan = set_box(runner.ctx.plan_path, task_id, False)
            task = plan.task(task_id) or task
        if adopt_in_place and record.tree is not None:
            point = _pick_up_in_place(runner, record, owned)
            if point is not None:
                runner.resume_at(task_id, point)
                in_place.append(task_id)
            else:  # what it left was set aside there
                runner.record(t.AttemptInterrupted(task=task_id, attempt=record.attempt))
            continue
        if adopt_in_place and record.status is not TaskStatus.RUNNING:
            # Its agent's tree is not on record (a journal of an older orchestrate): whose the
            # tree's changes are cannot be told, so none of them are taken for its work.
            runner.notice("its work tree is not on record; running it again", "warning", task_id)
        _keep_and_reset(runner, task_id, record.attempt, "interrupted")
        runner.record(t.AttemptInterrupted(task=task_id, attempt=record.attempt))
    plan = done_by_commits(parse_plan(runner.ctx.plan_path), git)
    runner.replan(plan, resumed_selection(plan, state.selection))
    if runner.ctx.plan_rel in git.changed_paths():
        runner.notice(
            f"{runner.ctx.plan_rel} has changes no commit carries; resume reads the plan as it is now "
            "and commits them with the next task"
        )
    return Reconciled(plan, in_place, owned)


def _pick_up_in_place(runner: Runner, record: TaskRecord, owned: set[str]) -> str | None:
    """Where a serial task with its tree on record goes on in the run's work tree ('retry',
    'verify', 'commit'; the paths it changed are added to `owned`), or None: run it again.

    The task's paths are those its recorded tree (as its agent left it, as verified, or as a
    failed attempt left it) changes against the branch head, less what was dirty before an
    --allow-dirty run and still is as it was; paths where the tree now differs from the recorded
    one were changed since the stop, by someone else (the user). Apart, the task goes on with its
    own paths and the user's stay as they are, never part of its commit (the dirty-tree check
    decides about them). Where the user changed a path of the task's, whose work the path holds
    cannot be told: the whole tree is kept in a named ref, the task's paths are put back as the
    branch has them (the user's other changes stay), and the attempt runs again."""
    git = runner.repo
    plan_rel = runner.ctx.plan_rel
    head_tree = git.head_tree()
    recorded = record.tree
    if recorded is None or head_tree is None:
        return None
    now = git.snapshot_tree()
    preexisting = runner.ctx.preexisting
    mine = {
        path
        for path in git.changed_between(head_tree, recorded)
        if path != plan_rel
        and (path not in preexisting or git.rev(f"{recorded}:{path}") != preexisting[path])
    }
    theirs = {path for path in git.changed_between(recorded, now) if path != plan_rel}
    retry = record.status is TaskStatus.PENDING
    if not theirs & mine:
        owned |= mine
        if theirs:
            since = {
                TaskStatus.PENDING: "its failed attempt",
                TaskStatus.AGENT_DONE: "its agent finished (yours, or a check's that a stop cut short)",
            }.get(record.status, "it was verified")
            runner.notice(
                f"its work is intact and picked up where it stopped; the changes made since {since} "
                f"({_some(sorted(theirs))}) are not part of it",
                task_id=record.id,
            )
        return "retry" if retry else _pick_up_at(record, now)
    if not mine & set(git.changed_between(head_tree, now)):
        return None  # none of its edits is left in the tree (set aside earlier): nothing to keep
    ref = unused_ref(git, ref_name(runner.ctx.run_id, record.id, f"attempt-{record.attempt}"))
    run = runner.ctx.run_id
    if git.save_snapshot(ref, f"orchestrate: the work tree as resume found it, task {record.id} (run {run})"):
        runner.record(t.EditsSaved(task=record.id, attempt=record.attempt, ref=ref))
    touched = _some(sorted(theirs & mine))
    runner.notice(
        f"{touched} changed since the stop, and its attempt had changed them too: the work tree as it "
        f"was is kept in {ref}; its own paths are put back and the attempt runs again",
        "warning",
        record.id,
    )
    git.restore_head(sorted(mine))
    return None


def _some(paths: list[str], shown: int = 3) -> str:
    """A few of `paths`, and how many more."""
    more = f", and {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(paths[:shown]) + more


def _pick_up_at(record: TaskRecord, tree: str) -> str | None:
    """Where a task caught after its agent finished goes on, given its work tree's hash now:
    'commit' (its verified work is intact), 'verify' (verified work whose tree moved, or an
    agent's work whose check was cut short: the check decides, on the tree as it is), or None
    (run it again)."""
    if record.status in (TaskStatus.VERIFIED, TaskStatus.COMMITTING) and tree == record.tree:
        return "commit"
    if record.status in (TaskStatus.AGENT_DONE, TaskStatus.VERIFIED, TaskStatus.COMMITTING):
        return "verify"
    return None


_SAID = {
    "commit": "its verified work is intact; merging it",
    "verify": "its agent's work is intact; verifying it again",
    "retry": "its previous attempt's edits are intact; the next attempt builds on them",
}


def _reconcile_worktrees(runner: Runner, committed: dict[str, str]) -> set[str]:
    """Parallel runs: each task a kill caught in its worktree, and whatever else the run left.

    - a merge cut short in the run's work tree: the tree goes back to the branch head (the work is
      safe on the task's branch; a tick without its commit is not trusted);
    - committed on the run's branch: done (the caller records it); its worktree and branch go;
    - verified, with its work intact on its branch or in its worktree: merged without running again;
    - its agent's work intact: verified again there; between attempts, edits intact: the next
      attempt runs there (as the serial rules say, with the worktree as the work tree);
    - anything else: its edits are kept in a named ref, the worktree and branch go, it runs again;
    - worktrees and branches of the run that no task claims: kept in a ref, then removed.

    Returns the tasks it took care of."""
    git = runner.repo
    state = runner.state
    run_id = runner.ctx.run_id
    executor = runner.executor
    handled: set[str] = set()
    merging = [
        r
        for r in state.tasks.values()
        if r.branch and r.status is TaskStatus.COMMITTING and r.id not in committed
    ]
    if merging:
        _undo_merge(runner, merging)
    claimed: set[str] = set()
    kept: set[Path] = set()
    for record in list(state.tasks.values()):
        if not (record.branch and record.worktree and record.base):
            continue
        handled.add(record.id)
        worktree = Worktree(Path(record.worktree), record.branch, record.base)
        point = None if record.id in committed else _worktree_point(runner, record, worktree)
        if point is not None and isinstance(executor, WorktreeExecutor):
            executor.adopt(record.id, worktree)
            runner.resume_at(record.id, point)
            claimed.add(worktree.branch)
            kept.add(worktree.path.resolve())
            runner.notice(f"{_SAID[point]} (worktree {worktree.path})", task_id=record.id)
            continue
        if record.id not in committed:
            ref = keep_worktree(
                git,
                worktree.path,
                worktree.branch,
                worktree.base,
                ref_name(run_id, record.id, f"attempt-{record.attempt}"),
                f"orchestrate: edits of interrupted task {record.id} (run {run_id})",
            )
            if ref:
                runner.record(t.EditsSaved(task=record.id, attempt=record.attempt, ref=ref))
                runner.notice(f"its interrupted edits are kept in {ref}", task_id=record.id)
            if record.status.in_flight:
                runner.record(t.AttemptInterrupted(task=record.id, attempt=record.attempt))
        remove_worktree(git, worktree.path, worktree.branch)
        runner.record(t.WorktreeRemoved(task=record.id))
    _remove_leftovers(runner, claimed, kept)
    return handled


def _undo_merge(runner: Runner, merging: list[TaskRecord]) -> None:
    """A merge cut short in the run's work tree: the paths it wrote go back to the branch head (the
    work is safe on the task's branch) and its tick, which no commit carries, is undone. The rest
    of the tree stays as it is: what the user changed since the kill is theirs (the plan's edits
    are read; the dirty-tree check decides about the others). Where the user changed a path the
    merge wrote, the tree as it was is first kept in a named ref, which the output names."""
    git = runner.repo
    plan_rel = runner.ctx.plan_rel
    head = git.head()
    head_tree = git.head_tree()
    now = git.snapshot_tree()
    from_head = set(runner.ours(git.changed_between(head_tree, now))) if head_tree else set()
    wrote: set[str] = set()
    theirs: set[str] = set()
    for record in merging:
        expected = _merge_result(git, record, head)
        if expected is None:  # what the merge wrote cannot be told: all of it, kept first
            wrote |= from_head
            theirs |= from_head
            continue
        paths = set(git.changed_between(str(head_tree), expected))
        wrote |= paths
        # Neither the branch head's content nor the merge's: someone wrote it after the kill.
        theirs |= paths & from_head & set(git.changed_between(expected, now))
    wrote.discard(plan_rel)
    theirs.discard(plan_rel)
    first = merging[0]
    if theirs:
        ref = unused_ref(git, ref_name(runner.ctx.run_id, first.id, f"interrupted-merge-{first.attempt}"))
        if git.save_snapshot(ref, f"orchestrate: the work tree as resume found it (run {runner.ctx.run_id})"):
            runner.record(t.EditsSaved(task=first.id, attempt=first.attempt, ref=ref))
            runner.notice(
                f"its merge into the work tree was cut short, and {', '.join(sorted(theirs))} changed "
                f"since; the work tree as it was is kept in {ref}",
                "warning",
                first.id,
            )
    git.restore_head(sorted(wrote & from_head))
    plan = parse_plan(runner.ctx.plan_path)
    for record in merging:
        task = plan.task(record.id)
        if task is not None and task.checked:
            plan = set_box(runner.ctx.plan_path, record.id, False)
    runner.notice("its merge into the work tree was cut short; merging it again", task_id=first.id)


def _merge_result(git: GitRepo, record: TaskRecord, head: str | None) -> str | None:
    """The tree the task's merge was writing into the run's work tree (see
    WorktreeExecutor.integrate), or None when it cannot be told."""
    tip = git.rev(f"refs/heads/{record.branch}") if record.branch else None
    if tip is None or head is None or record.base is None:
        return None
    if head == record.base:
        return git.rev(f"{tip}^{{tree}}")
    return git.merge_tree(head, tip).tree


def _worktree_point(runner: Runner, record: TaskRecord, worktree: Worktree) -> str | None:
    git = runner.repo
    status = record.status
    if status in (TaskStatus.VERIFIED, TaskStatus.COMMITTING):
        tip = git.rev(f"refs/heads/{worktree.branch}")
        if tip and tip != worktree.base and git.rev(f"{tip}^{{tree}}") == record.tree:
            return "commit"  # its work is committed on its branch
    if not is_worktree(worktree.path):
        return None
    try:
        ws = git.linked(worktree.path)  # its git dir as orchestrate made it, not as its .git file says
    except GitError:
        return None
    (ws.git_dir / "index.lock").unlink(missing_ok=True)  # ours alone: stale after a kill
    tampered = ws.undo_tampering(ws.changed_paths()).here
    if tampered:  # by an attempt a kill cut short: its work is not picked up
        runner.record(t.GitTampered(task=record.id, attempt=record.attempt, changes=tampered))
        runner.notice(f"the agent tampered with git's own files: {'; '.join(tampered)}", "error", record.id)
        return None
    tree = ws.snapshot_tree()
    if status is TaskStatus.PENDING:
        return "retry" if record.tree is not None and tree == record.tree else None
    return _pick_up_at(record, tree)


def _remove_leftovers(runner: Runner, claimed: set[str], kept: set[Path]) -> None:
    """Worktrees and branches of this run that no task claims (spares made ahead of time, a kill
    between `git worktree add` and its journal record): whatever they hold is kept in a ref, then
    they go; and so do directories under the run's worktree folder that git never registered (a
    kill early in `git worktree add`)."""
    git = runner.repo
    run_id = runner.ctx.run_id
    root = worktrees_root(runner.ctx.journal.directory.parent, run_id).resolve()
    prefix = branch_prefix(run_id)
    for entry in git.worktrees():
        inside = entry.path.resolve().is_relative_to(root)
        ours = entry.branch is not None and entry.branch.startswith(prefix + "/")
        if (inside or ours) and entry.branch not in claimed and entry.path.resolve() not in kept:
            _drop_leftover(runner, entry.path, entry.branch or "", entry.head)
    for branch in git.branches(prefix):
        if branch not in claimed:
            _drop_leftover(runner, root / branch.rsplit("/", 1)[-1], branch, None)
    git.clear_worktree_staging()
    strays = [p for p in root.iterdir() if p.resolve() not in kept] if root.is_dir() else []
    for stray in strays:
        shutil.rmtree(stray, ignore_errors=True)
    if strays:
        git.git("worktree", "prune")


def _drop_leftover(runner: Runner, path: Path, branch: str, head: str | None) -> None:
    git = runner.repo
    run_id = runner.ctx.run_id
    name = branch.rsplit("/", 1)[-1] if branch else path.name
    base = git.rev(f"refs/heads/{branch}") if branch else head
    if base is not None and base.strip("0"):  # a worktree caught being created has a null HEAD
        ref = keep_worktree(
            git,
            path,
            branch,
            # A worktree's uncommitted edits are relative to its branch's commit.
            base,
            ref_name(run_id, name, "leftover"),
            f"orchestrate: a leftover worktree of run {run_id}",
        )
        if ref:
            runner.notice(f"a leftover worktree of the run held edits; they are kept in {ref}")
    if branch:
        remove_worktree(git, path, branch)
    else:
        git.worktree_remove(path)
