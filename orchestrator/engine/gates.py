"""Human gates: a person settles a task that waits for one (`orchestrate accept` / `reject`), and
the plan commands ask what waits (`waiting_for_human`).

Both commands take the run lock (no run or resume works on the repository meanwhile), find the
latest run of the plan that holds the task, and journal what the person decided in that run's
journal before acting on it: accept commits the task's kept work and its tick (engine.acceptance),
reject opens the task again with the note for its next attempt's prompt. `orchestrate resume` then
goes on with what waited behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.config import load_settings
from orchestrator.domain import transitions as t
from orchestrator.domain.events import ListReporter
from orchestrator.domain.state import RunState, TaskStatus
from orchestrator.engine.acceptance import half_accepted, land_accepted
from orchestrator.engine.crash import crash_point
from orchestrator.engine.recorder import Recorder
from orchestrator.errors import PreflightError, UsageError
from orchestrator.persistence.checkpoints import RunLock, RunStore
from orchestrator.persistence.repo import GitRepo, find_repo_root
from orchestrator.planfile import parse_plan


@dataclass
class Settled:
    """What a person's decision did."""

    run_id: str
    task_id: str
    by: str
    commit: str | None = None
    """accept: the commit that landed the task."""
    kept_in: str | None = None
    """reject: the ref that keeps the rejected work (None: it had none)."""


@dataclass
class _Found:
    git: GitRepo
    plan_path: Path
    plan_rel: str
    store: RunStore
    run_id: str
    state: RunState


def _find(git: GitRepo, plan_path: Path, plan_rel: str, task_id: str) -> _Found:
    """The latest run of the plan that holds `task_id`, or a one-line UsageError."""
    if parse_plan(plan_path).task(task_id) is None:
        raise UsageError(f"no task '{task_id}' in {plan_rel}; `orchestrate status {plan_rel}` lists them")
    store = RunStore.for_repo(git.root, load_settings(git.root, {}).checkpoints_dir)
    for run_id in reversed(store.run_ids()):
        state = RunState.from_records(store.transitions(run_id))
        if state.plan == plan_rel and task_id in state.tasks:
            return _Found(git, plan_path, plan_rel, store, run_id, state)
    raise UsageError(f"task {task_id} of {plan_rel} does not wait for a human (no run has stopped it)")


def _waiting(found: _Found, task_id: str, *, or_half_accepted: bool = False) -> None:
    record = found.state.tasks[task_id]
    if record.status is TaskStatus.NEEDS_HUMAN or (or_half_accepted and half_accepted(record)):
        return
    raise UsageError(
        f"task {task_id} of {found.plan_rel} does not wait for a human (it is {record.status.value} "
        f"in run {found.run_id})"
    )


def accept(plan_path: Path, task_id: str, note: str = "", *, repo: Path | None = None) -> Settled:
    """Commit a task that waits for a person: its kept work (if any) on the branch's head, its box
    ticked, an Orchestrate-Attested-By trailer naming the git identity. Finishes an accept a kill
    cut short."""
    from orchestrator.engine.session import check_identity, locate  # what `status` need not load

    located = locate(plan_path, repo)
    git = located.repo
    with RunLock(git, "accept"):
        found = _find(git, located.plan_path, located.plan_rel, task_id)
        _waiting(found, task_id, or_half_accepted=True)
        state = found.state
        if git.current_branch() != state.branch:
            raise PreflightError(
                f"run {found.run_id} commits on branch '{state.branch}' but HEAD is on "
                f"'{git.current_branch()}'; `git switch {state.branch}` first"
            )
        check_identity(git)
        record = state.tasks[task_id]
        journal = found.store.journal(found.run_id).open()
        try:
            recorder = Recorder(journal, state, ListReporter())
            if not half_accepted(record):
                dirty = git.status()
                if dirty:
                    raise PreflightError(
                        f"the work tree has uncommitted changes ({len(dirty)} path(s), e.g. {dirty[0][1]}); "
                        "commit or stash them first: the accepted task's commit holds the whole tree"
                    )
                by = git.identity()
                tree = _accepted_tree(git, record.held_ref, task_id, found)
                recorder.record(t.TaskAccepted(task=task_id, by=by, note=note, tree=tree))
                crash_point("after_accepted", task_id)
            record = state.tasks[task_id]
            sha = land_accepted(git, found.plan_path, found.plan_rel, found.run_id, record, recorder)
        finally:
            journal.close()
    return Settled(found.run_id, task_id, record.attested_by, commit=sha)


def _accepted_tree(git: GitRepo, held_ref: str | None, task_id: str, found: _Found) -> str | None:
    """The tree the accepted task's commit holds: its kept work merged onto the branch's head (the
    head itself when it had no edits)."""
    head = git.head()
    kept = git.rev(held_ref) if held_ref else None
    if kept is None or head is None:
        return git.head_tree()
    merged = git.merge_tree(head, kept)
    if merged.tree is None:
        raise UsageError(
            f"the work of task {task_id}, kept in {held_ref}, conflicts with commits made since "
            f"({', '.join(merged.conflicts)}); reject it (`orchestrate reject {found.plan_rel} {task_id} "
            "--note TEXT`) so it is done again on the branch as it is"
        )
    return merged.tree


def reject(plan_path: Path, task_id: str, note: str, *, repo: Path | None = None) -> Settled:
    """Open a task that waits for a person again: its next attempt's prompt carries `note`; its
    work stays in its ref."""
    if not note.strip():
        raise UsageError("--note: say why the work is rejected; the next attempt's prompt carries it")
    from orchestrator.engine.session import locate

    located = locate(plan_path, repo)
    git = located.repo
    with RunLock(git, "reject"):
        found = _find(git, located.plan_path, located.plan_rel, task_id)
        _waiting(found, task_id)
        record = found.state.tasks[task_id]
        by = "" if git.identity_problem() else git.identity()
        journal = found.store.journal(found.run_id).open()
        try:
            recorder = Recorder(journal, found.state, ListReporter())
            kept = record.held_ref if record.held_ref and git.ref_exists(record.held_ref) else None
            if kept is not None:
                recorder.record(t.EditsSaved(task=task_id, attempt=record.attempt, ref=kept), durable=False)
            recorder.record(t.TaskRejected(task=task_id, by=by, note=note))
        finally:
            journal.close()
    return Settled(found.run_id, task_id, by, kept_in=kept)


def waiting_for_human(plan_path: Path) -> dict[str, str]:
    """Tasks of the plan that wait for a person in its latest run that holds them (task -> why),
    read without the lock: what `status`, `next` and the like show."""
    root = find_repo_root(plan_path.expanduser().resolve().parent)
    if root is None:
        return {}
    try:
        plan_rel = plan_path.expanduser().resolve().relative_to(root).as_posix()
        store = RunStore.for_repo(root, load_settings(root, {}).checkpoints_dir)
        run_ids = store.run_ids()
    except (ValueError, OSError, UsageError):
        return {}
    seen: set[str] = set()
    waiting: dict[str, str] = {}
    for run_id in reversed(run_ids):
        try:
            state = RunState.from_records(store.transitions(run_id))
        except UsageError:
            continue
        if state.plan != plan_rel:
            continue
        for task_id, record in state.tasks.items():
            if task_id in seen:
                continue
            seen.add(task_id)
            if record.status is TaskStatus.NEEDS_HUMAN:
                waiting[task_id] = record.reason
    return waiting
