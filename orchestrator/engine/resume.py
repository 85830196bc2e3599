"""Resume as its own step: the run's journal read against the branch and the work tree, put right,
and the state a Runner goes on from returned (Recovered); nothing here touches a Runner.

The journal is the record of what was attempted; the commits' trailers are the truth of what was
finished. `reconcile` makes them agree (see its docstring for each case), keeping whatever is not
provably the run's (the user's edits, an interrupted attempt's) in a named ref before it resets
anything; every step it takes is journaled like the run's own.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.domain import transitions as t
from orchestrator.domain.events import Notice, Reporter
from orchestrator.domain.plan import BoxState, LinkedBox, Plan, Task
from orchestrator.domain.state import RunState, TaskRecord, TaskStatus
from orchestrator.engine.acceptance import half_accepted, land_accepted
from orchestrator.engine.landing import ref_name
from orchestrator.engine.recorder import Level, Recorder
from orchestrator.engine.runner import RunContext, run_paths
from orchestrator.engine.scheduler import select_tasks
from orchestrator.engine.unit_history import read_plan
from orchestrator.engine.worktrees import (
    Worktree,
    branch_prefix,
    is_worktree,
    keep_worktree,
    remove_worktree,
    worktrees_root,
)
from orchestrator.persistence.repo import GitError, GitRepo
from orchestrator.planfile import parse_plan
from orchestrator.planfile.documents import boxes_now, tick_linked
from orchestrator.planfile.writer import set_box


@dataclass
class Recovery:
    """What resume works with while it puts the run right, before any Runner exists."""

    ctx: RunContext
    recorder: Recorder
    parallel: bool
    """Tasks run in worktrees (--parallel N): the run's work tree holds no task's edits."""
    points: dict[str, str] = field(default_factory=dict)
    adopted: dict[str, Worktree] = field(default_factory=dict)
    remote: bool = False
    """The resume runs attempts on Ray nodes (--executor ray): a result one fetched can land."""
    results: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def repo(self) -> GitRepo:
        return self.ctx.repo

    @property
    def state(self) -> RunState:
        return self.ctx.state

    def record(self, transition: t.Transition, *, durable: bool = True) -> None:
        self.recorder.record(transition, durable=durable)

    def notice(self, message: str, level: Level = "info", task_id: str | None = None) -> None:
        self.recorder.notice(message, level, task_id)

    def ours(self, paths: list[str]) -> list[str]:
        return run_paths(self.ctx, paths)


@dataclass
class Recovered:
    """What resume found, to go on from: a Runner is built from it."""

    plan: Plan
    """The plan as it is now."""
    selection: list[str]
    """The run's tasks in the plan as it is now (see resumed_selection)."""
    points: dict[str, str]
    """Tasks picked up mid-way: 'verify' (its agent's work is intact), 'commit' (its verified work
    is intact) or 'retry' (a failed attempt's edits are intact for the next)."""
    adopted: dict[str, Worktree]
    """Parallel runs: the worktree each task picked up mid-way goes on in."""
    results: dict[str, tuple[str, str]]
    """Ray runs: the verified result a node sent back, not landed yet: task -> (branch, base)."""
    in_place: list[str]
    """Tasks picked up mid-way in the run's work tree."""
    owned: set[str]
    """The paths those tasks changed: all their commits may hold. Any other change in the tree but
    the plan's is not the run's."""


def wait_for_index_lock(git: GitRepo, reporter: Reporter, branch: str = "", run_id: str = "") -> None:
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


def untick_linked(git: GitRepo, task: Task) -> None:
    """A landing cut short: the boxes of other documents the task ticks (Task.linked) that the
    branch head has open but the work tree has ticked were ticked by that landing, which no commit
    carries: not trusted, unticked (one byte each). A box the head has ticked (another unit's, or
    the user's) stays."""
    by_document: dict[str, list[LinkedBox]] = {}
    for box in task.linked:
        by_document.setdefault(box.document, []).append(box)
    for document, boxes in by_document.items():
        at_head = git.head_bytes(document)
        if at_head is None or not (git.root / document).is_file():
            continue
        head_states = boxes_now(git.root, boxes, at_head)
        states = boxes_now(git.root, boxes)
        cut_short = [
            box
            for box, now, head in zip(boxes, states, head_states, strict=True)
            if now is BoxState.DONE and head is BoxState.OPEN
        ]
        if cut_short:
            tick_linked(git.root, cut_short, False)


def _keep_and_reset(rec: Recovery, task_id: str, attempt: int, why: str) -> None:
    """Keep the tree's uncommitted edits in a named ref, then put the tree back to the branch head:
    all of it but the plan, whose edits (a task the user added meanwhile) are kept and read; the
    run's own tick in it, which no commit carries, the caller has undone.

    A parallel run's tasks work in worktrees: its work tree holds no task's edits, only the user's
    (the dirty-tree check decides about those), so nothing is reset there."""
    if rec.parallel or ran_elsewhere(rec.state.task(task_id)):
        return
    git = rec.repo
    run_id = rec.ctx.run_id
    paths = [p for p in rec.ours(git.changed_paths()) if p != rec.ctx.plan_rel]
    if not paths:
        return
    ref = unused_ref(git, ref_name(run_id, task_id, f"attempt-{attempt}"))
    sha = git.save_snapshot(ref, f"orchestrate: edits of {why} task {task_id} (run {run_id})")
    if sha:
        rec.record(t.EditsSaved(task=task_id, attempt=attempt, ref=ref))
        rec.notice(f"its {why} edits are kept in {ref}", task_id=task_id)
    git.restore_head(paths)


def ran_elsewhere(record: TaskRecord) -> bool:
    """The task's last attempt ran on a Ray node: its edits were never in this work tree (and the
    trees it recorded are in this repository only when its result came back)."""
    return bool(record.attempts and record.attempts[-1].node)


def _finish_hold(rec: Recovery, record: TaskRecord) -> None:
    """A task waits for a person, and a kill may have caught its work between the work tree and
    the ref it is kept in while it waits (see Landing.hold): it goes to that ref (if not there
    yet) and the tree back to the branch head, as the hold would have left them. What else is in
    the tree (a user's change since) is not the run's to move: the dirty-tree check decides."""
    if rec.parallel or record.held_ref is None:
        return
    git = rec.repo
    paths = [p for p in rec.ours(git.changed_paths()) if p != rec.ctx.plan_rel]
    if not paths:
        return
    now = git.snapshot_tree()
    if git.ref_exists(record.held_ref):
        held = git.rev(f"{record.held_ref}^{{tree}}")
    elif now == record.tree:
        run_id = rec.ctx.run_id
        git.save_snapshot(
            record.held_ref, f"orchestrate: work of task {record.id}, waiting for a human (run {run_id})"
        )
        held = now
    else:
        held = None
    if held is not None and held == now:
        git.restore_head(paths)


def unused_ref(git: GitRepo, ref: str) -> str:
    """`ref`, or `ref-2`, `ref-3`, ... when an earlier resume already kept something there: a ref
    that keeps someone's edits is never overwritten."""
    candidate, n = ref, 1
    while git.ref_exists(candidate):
        n += 1
        candidate = f"{ref}-{n}"
    return candidate


def reconcile(rec: Recovery, plan: Plan) -> Recovered:
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
    - accepted by a person, not committed (a kill cut `orchestrate accept` short): committed now;
    - waiting for a person: it goes on waiting (a hold a kill cut short is finished);
    - a task of a parallel run: see _reconcile_worktrees.
    """
    git = rec.repo
    state = rec.state
    run_id = rec.ctx.run_id
    committed = {c.task_id: c.sha for c in git.trailer_commits(run_id)}
    done = {record.id for record in state.tasks.values() if record.status is TaskStatus.DONE}
    in_worktrees = _reconcile_worktrees(rec, committed)
    in_place: list[str] = []
    owned: set[str] = set()
    plan_file = rec.ctx.plan_path
    # A kill during a tick can leave the plan writer's temp file beside the plan.
    for stray in plan_file.parent.glob(f".{plan_file.name}.*.tmp"):
        stray.unlink(missing_ok=True)
    for task_id, record in list(state.tasks.items()):
        task = plan.task(task_id)
        # Tasks of a serial run can only be picked up mid-way in place, if they ran here.
        adopt_in_place = not rec.parallel and not ran_elsewhere(record)
        if task_id in committed:
            if record.status is not TaskStatus.DONE or record.commit != committed[task_id]:
                rec.record(
                    t.TaskDone(task=task_id, commit=committed[task_id], reason="found its commit on resume")
                )
            continue
        if record.status is TaskStatus.DONE:
            rec.notice(
                f"its commit {str(record.commit)[:10]} is no longer on the branch; running it again",
                "warning",
                task_id,
            )
            rec.record(t.TaskReset(task=task_id, reason="commit missing from the branch"))
            continue
        if record.status in (TaskStatus.FAILED, TaskStatus.SKIPPED):
            rec.record(t.TaskReset(task=task_id, reason="resumed"))
            continue
        if half_accepted(record):
            # A person accepted it and a kill cut `orchestrate accept` short: finished here.
            land_accepted(git, rec.ctx.plan_path, rec.ctx.plan_rel, run_id, record, rec.recorder)
            continue
        if task_id in in_worktrees:
            continue
        if record.status is TaskStatus.NEEDS_HUMAN:
            _finish_hold(rec, record)
            continue
        if task is None and (record.status.in_flight or record.tree is not None):
            # The user took the task out of the plan: what it left in the tree goes to a ref.
            _keep_and_reset(rec, task_id, record.attempt, "interrupted")
            if record.status.in_flight:
                rec.record(t.AttemptInterrupted(task=task_id, attempt=record.attempt))
            continue
        if record.status is TaskStatus.PENDING and record.tree is not None and task is not None:
            # Between a failed attempt and the next: its edits are what the retry builds on.
            point = _pick_up_in_place(rec, record, owned) if adopt_in_place else None
            if point is not None:
                rec.points[task_id] = point
                in_place.append(task_id)
            elif not adopt_in_place:
                _keep_and_reset(rec, task_id, record.attempt, "interrupted")
            continue
        if not record.status.in_flight or task is None:
            continue
        untick_linked(rec.repo, task)
        if task.checked and task.id not in done:
            # The tick is in the work tree but no commit carries it: not trusted.
            plan = set_box(rec.ctx.plan_path, task_id, False)
            task = plan.task(task_id) or task
        if adopt_in_place and record.tree is not None:
            point = _pick_up_in_place(rec, record, owned)
            if point is not None:
                rec.points[task_id] = point
                in_place.append(task_id)
            else:  # what it left was set aside there
                rec.record(t.AttemptInterrupted(task=task_id, attempt=record.attempt))
            continue
        if adopt_in_place and record.status is not TaskStatus.RUNNING:
            # Its agent's tree is not on record (a journal of an older orchestrate): whose the
            # tree's changes are cannot be told, so none of them are taken for its work.
            rec.notice("its work tree is not on record; running it again", "warning", task_id)
        _keep_and_reset(rec, task_id, record.attempt, "interrupted")
        rec.record(t.AttemptInterrupted(task=task_id, attempt=record.attempt))
    plan = read_plan(rec.ctx.plan_path, git)
    selection = resumed_selection(plan, state.selection)
    if rec.ctx.plan_rel in git.changed_paths():
        rec.notice(
            f"{rec.ctx.plan_rel} has changes no commit carries; resume reads the plan as it is now "
            "and commits them with the next task"
        )
    return Recovered(plan, selection, rec.points, rec.adopted, rec.results, in_place, owned)


def _pick_up_in_place(rec: Recovery, record: TaskRecord, owned: set[str]) -> str | None:
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
    git = rec.repo
    plan_rel = rec.ctx.plan_rel
    head_tree = git.head_tree()
    recorded = record.tree
    if recorded is None or head_tree is None:
        return None
    now = git.snapshot_tree()
    preexisting = rec.ctx.preexisting
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
            rec.notice(
                f"its work is intact and picked up where it stopped; the changes made since {since} "
                f"({some(sorted(theirs))}) are not part of it",
                task_id=record.id,
            )
        return "retry" if retry else _pick_up_at(record, now)
    if not mine & set(git.changed_between(head_tree, now)):
        return None  # none of its edits is left in the tree (set aside earlier): nothing to keep
    ref = unused_ref(git, ref_name(rec.ctx.run_id, record.id, f"attempt-{record.attempt}"))
    run = rec.ctx.run_id
    if git.save_snapshot(ref, f"orchestrate: the work tree as resume found it, task {record.id} (run {run})"):
        rec.record(t.EditsSaved(task=record.id, attempt=record.attempt, ref=ref))
    touched = some(sorted(theirs & mine))
    rec.notice(
        f"{touched} changed since the stop, and its attempt had changed them too: the work tree as it "
        f"was is kept in {ref}; its own paths are put back and the attempt runs again",
        "warning",
        record.id,
    )
    git.restore_head(sorted(mine))
    return None


def some(paths: list[str], shown: int = 3) -> str:
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


def _reconcile_worktrees(rec: Recovery, committed: dict[str, str]) -> set[str]:
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
    git = rec.repo
    state = rec.state
    run_id = rec.ctx.run_id
    handled: set[str] = set()
    merging = [
        r
        for r in state.tasks.values()
        if r.branch and r.status is TaskStatus.COMMITTING and r.id not in committed
    ]
    if merging:
        _undo_merge(rec, merging)
    claimed: set[str] = set()
    kept: set[Path] = set()
    for record in list(state.tasks.values()):
        if record.branch and record.base and not record.worktree:
            handled.add(record.id)
            if _reconcile_result(rec, record, record.branch, record.base, committed):
                claimed.add(record.branch)
            continue
        if not (record.branch and record.worktree and record.base):
            continue
        handled.add(record.id)
        worktree = Worktree(Path(record.worktree), record.branch, record.base)
        point = None if record.id in committed else _worktree_point(rec, record, worktree)
        if point is not None and rec.parallel:
            rec.adopted[record.id] = worktree
            rec.points[record.id] = point
            claimed.add(worktree.branch)
            kept.add(worktree.path.resolve())
            rec.notice(f"{_SAID[point]} (worktree {worktree.path})", task_id=record.id)
            continue
        held = record.held_ref if record.status is TaskStatus.NEEDS_HUMAN else None
        if record.id not in committed:
            ref = keep_worktree(
                git,
                worktree.path,
                worktree.branch,
                worktree.base,
                # Waiting for a person: its work goes where the hold said it would be kept.
                held or ref_name(run_id, record.id, f"attempt-{record.attempt}"),
                f"orchestrate: edits of interrupted task {record.id} (run {run_id})",
            )
            if ref and not held:
                rec.record(t.EditsSaved(task=record.id, attempt=record.attempt, ref=ref))
                rec.notice(f"its interrupted edits are kept in {ref}", task_id=record.id)
            if record.status.in_flight:
                rec.record(t.AttemptInterrupted(task=record.id, attempt=record.attempt))
        remove_worktree(git, worktree.path, worktree.branch)
        rec.record(t.WorktreeRemoved(task=record.id))
    _remove_leftovers(rec, claimed, kept)
    return handled


def _reconcile_result(
    rec: Recovery, record: TaskRecord, branch: str, base: str, committed: dict[str, str]
) -> bool:
    """A result a Ray node sent back (engine.ray_cluster), on `branch`: landed as it is when it was
    verified, is intact and the resume runs on Ray (True: the branch is the task's); else kept in
    a named ref, and the task runs again (an attempt in flight was interrupted)."""
    git = rec.repo
    tip = git.rev(f"refs/heads/{branch}")
    verified = record.status in (TaskStatus.VERIFIED, TaskStatus.COMMITTING)
    if (
        record.id not in committed
        and verified
        and rec.remote
        and tip
        and git.rev(f"{tip}^{{tree}}") == record.tree
    ):
        rec.points[record.id] = "commit"
        rec.results[record.id] = (branch, base)
        rec.notice(f"{_SAID['commit']} (the result its Ray node sent back)", task_id=record.id)
        return True
    if record.id not in committed:
        held = record.held_ref if record.status is TaskStatus.NEEDS_HUMAN else None
        if tip and tip != base:
            ref = held or unused_ref(git, ref_name(rec.ctx.run_id, record.id, f"attempt-{record.attempt}"))
            git.update_ref(ref, tip)
            if not held:
                rec.record(t.EditsSaved(task=record.id, attempt=record.attempt, ref=ref))
                rec.notice(f"the work its Ray node sent back is kept in {ref}", task_id=record.id)
        if record.status.in_flight:
            rec.record(t.AttemptInterrupted(task=record.id, attempt=record.attempt))
    git.delete_branch(branch)
    rec.record(t.WorktreeRemoved(task=record.id))
    return False


def _undo_merge(rec: Recovery, merging: list[TaskRecord]) -> None:
    """A merge cut short in the run's work tree: the paths it wrote go back to the branch head (the
    work is safe on the task's branch) and its tick, which no commit carries, is undone. The rest
    of the tree stays as it is: what the user changed since the kill is theirs (the plan's edits
    are read; the dirty-tree check decides about the others). Where the user changed a path the
    merge wrote, the tree as it was is first kept in a named ref, which the output names."""
    git = rec.repo
    plan_rel = rec.ctx.plan_rel
    head = git.head()
    head_tree = git.head_tree()
    now = git.snapshot_tree()
    from_head = set(rec.ours(git.changed_between(head_tree, now))) if head_tree else set()
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
        ref = unused_ref(git, ref_name(rec.ctx.run_id, first.id, f"interrupted-merge-{first.attempt}"))
        if git.save_snapshot(ref, f"orchestrate: the work tree as resume found it (run {rec.ctx.run_id})"):
            rec.record(t.EditsSaved(task=first.id, attempt=first.attempt, ref=ref))
            rec.notice(
                f"its merge into the work tree was cut short, and {', '.join(sorted(theirs))} changed "
                f"since; the work tree as it was is kept in {ref}",
                "warning",
                first.id,
            )
    git.restore_head(sorted(wrote & from_head))
    plan = parse_plan(rec.ctx.plan_path)
    for record in merging:
        task = plan.task(record.id)
        if task is not None:
            untick_linked(git, task)
        if task is not None and task.checked:
            plan = set_box(rec.ctx.plan_path, record.id, False)
    rec.notice("its merge into the work tree was cut short; merging it again", task_id=first.id)


def _merge_result(git: GitRepo, record: TaskRecord, head: str | None) -> str | None:
    """The tree the task's merge was writing into the run's work tree (see
    WorktreeExecutor.integrate), or None when it cannot be told."""
    tip = git.rev(f"refs/heads/{record.branch}") if record.branch else None
    if tip is None or head is None or record.base is None:
        return None
    if head == record.base:
        return git.rev(f"{tip}^{{tree}}")
    return git.merge_tree(head, tip).tree


def _worktree_point(rec: Recovery, record: TaskRecord, worktree: Worktree) -> str | None:
    git = rec.repo
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
        rec.record(t.GitTampered(task=record.id, attempt=record.attempt, changes=tampered))
        rec.notice(f"the agent tampered with git's own files: {'; '.join(tampered)}", "error", record.id)
        return None
    tree = ws.snapshot_tree()
    if status is TaskStatus.PENDING:
        return "retry" if record.tree is not None and tree == record.tree else None
    return _pick_up_at(record, tree)


def _remove_leftovers(rec: Recovery, claimed: set[str], kept: set[Path]) -> None:
    """Worktrees and branches of this run that no task claims (spares made ahead of time, a kill
    between `git worktree add` and its journal record): whatever they hold is kept in a ref, then
    they go; and so do directories under the run's worktree folder that git never registered (a
    kill early in `git worktree add`)."""
    git = rec.repo
    run_id = rec.ctx.run_id
    root = worktrees_root(rec.ctx.journal.directory.parent, run_id).resolve()
    prefix = branch_prefix(run_id)
    for entry in git.worktrees():
        inside = entry.path.resolve().is_relative_to(root)
        ours = entry.branch is not None and entry.branch.startswith(prefix + "/")
        if (inside or ours) and entry.branch not in claimed and entry.path.resolve() not in kept:
            _drop_leftover(rec, entry.path, entry.branch or "", entry.head)
    for branch in git.branches(prefix):
        if branch not in claimed:
            _drop_leftover(rec, root / branch.rsplit("/", 1)[-1], branch, None)
    git.clear_worktree_staging()
    strays = [p for p in root.iterdir() if p.resolve() not in kept] if root.is_dir() else []
    for stray in strays:
        shutil.rmtree(stray, ignore_errors=True)
    if strays:
        git.prune_worktrees()


def _drop_leftover(rec: Recovery, path: Path, branch: str, head: str | None) -> None:
    git = rec.repo
    run_id = rec.ctx.run_id
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
            rec.notice(f"a leftover worktree of the run held edits; they are kept in {ref}")
    if branch:
        remove_worktree(git, path, branch)
    else:
        git.worktree_remove(path)
