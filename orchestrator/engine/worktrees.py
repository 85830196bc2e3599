"""Parallel tasks: each on a thread of its own, in its own git worktree on its own branch.

    start(task)      a thread: a worktree cut from the run branch's head (a spare one made ahead
                     of time, or a new one), the task's attempts in it (agent + verification),
                     its slot freed for the next task, then its verified work committed on its
                     own branch
    wait()           the tasks that finished
    integrate(task)  on the main thread: the task branch's commit merged onto the run's current
                     head (`git merge-tree`, nothing touched on conflict) and checked out in the
                     run's work tree, where the runner re-verifies it, ticks the box and commits
    release(task)    the worktree and its branch removed once the task's commit is on the run branch

Agents and verification in different worktrees run at once. A caretaker thread keeps spare
worktrees (detached at the run's head, at most one per slot and no more than tasks left to start)
and removes finished ones, off the tasks' critical path: a task starting takes a spare, moved to
the head (`git reset --hard`) only when the head moved since it was made; this is what keeps the
gap between two tasks of a slot short.

Two locks. `git worktree add` and `remove` (and `branch -D`) read every worktree's
administrative files and may find another's half written, so those run one at a time on the
admin lock, where a task waiting to start goes first. The run's work tree and branch (merge,
tick, commit) are the main thread's alone, on `lock`. The journal has a single writer (the runner,
under its own lock). The plan file is never ticked in a worktree: only on the run's branch, at
merge time, so parallel tasks cannot conflict over it.
"""

from __future__ import annotations

import itertools
import os
import queue
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.domain.plan import Task
from orchestrator.engine.crash import crash_point
from orchestrator.engine.executor import Merge, TaskResult, Work
from orchestrator.persistence.repo import GitError, GitRepo

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
WORKTREES_DIR = ".worktrees"
"""Under the checkpoints directory (kept out of git): <checkpoints>/.worktrees/<run>/<task>."""


QUIET = 0.05
"""Seconds without a task starting, finishing or landing before the caretaker does a chore: its git
processes would compete for the CPU with those on the tasks' path (a machine may have two cores)."""
PATIENCE = 0.3
"""Seconds a chore waits for such a lull at most."""


def safe_name(task_id: str) -> str:
    """A task id as one path component and one ref component."""
    name = _UNSAFE.sub("_", task_id).strip(".") or "task"
    name = name.replace("..", "_")
    return name + "_" if name.endswith(".lock") else name


def branch_prefix(run_id: str) -> str:
    return f"orchestrate/{run_id}"


def task_branch(run_id: str, task_id: str) -> str:
    return f"{branch_prefix(run_id)}/{safe_name(task_id)}"


def worktrees_root(checkpoints_root: Path, run_id: str) -> Path:
    return checkpoints_root / WORKTREES_DIR / run_id


@dataclass(frozen=True)
class Worktree:
    path: Path
    branch: str
    """Where the task's verified work is committed (made then: the worktree itself is detached)."""
    base: str
    """The run branch's commit it was cut from."""

    def as_record(self) -> dict[str, str]:
        return {"worktree": str(self.path), "branch": self.branch, "base": self.base}


@dataclass
class Timings:
    """Seconds spent on each worktree chore (for the benchmarks)."""

    add: list[float] = field(default_factory=list)
    """A task's wait for its worktree: claiming a spare, or making one when none is ready."""
    spare: list[float] = field(default_factory=list)
    """Making a spare worktree, in the background."""
    commit: list[float] = field(default_factory=list)
    merge: list[float] = field(default_factory=list)
    remove: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Spare:
    """A worktree made ahead of time, detached at `base`, that no task has claimed yet."""

    path: Path
    base: str


def _ignore(*args: object) -> None:
    del args


def _none() -> int:
    return 0


def merge_onto_head(repo: GitRepo, lock: threading.Lock, base: str, head_of_task: str | None) -> Merge:
    """Put a task's commit (made on `base`) into the run's work tree: as it is when the run's branch
    has not moved since, else merged onto its head (`git merge-tree`: nothing is touched when the
    two conflict). Under `lock`, the run's work tree's."""
    head_of_task = head_of_task or base
    with lock:
        head = repo.head_now() or base
        moved = head != base
        if head_of_task == base:
            return Merge(moved=moved)
        if not moved:
            repo.checkout_tree(head_of_task)
            return Merge()
        merged = repo.merge_tree(head, head_of_task)
        if merged.tree is None:
            return Merge(conflicts=merged.conflicts, moved=True)
        repo.checkout_tree(merged.tree)
    return Merge(moved=True)


def paths_both_changed(repo: GitRepo, lock: threading.Lock, base: str, head_of_task: str | None) -> list[str]:
    """Paths both the task (base -> its commit) and the run's branch (base -> HEAD) changed."""
    with lock:
        theirs = set(repo.changed_between(base, "HEAD"))
        return sorted(p for p in repo.changed_between(base, head_of_task or base) if p in theirs)


class GitLock:
    """A lock where urgent holders (a task waiting to start) go before the others (chores)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held = False
        self._urgent = 0

    def acquire(self, urgent: bool = False) -> None:
        with self._cond:
            self._urgent += urgent
            while self._held or (not urgent and self._urgent):
                self._cond.wait()
            self._urgent -= urgent
            self._held = True

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def __enter__(self) -> GitLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @contextmanager
    def urgent(self) -> Iterator[None]:
        self.acquire(urgent=True)
        try:
            yield
        finally:
            self.release()


class WorktreeExecutor:
    def __init__(
        self,
        repo: GitRepo,
        slots: int,
        root: Path,
        run_id: str,
        *,
        on_added: Callable[[Task, Worktree], None] | None = None,
        on_removed: Callable[[str], None] | None = None,
        on_slot_free: Callable[[], None] | None = None,
        unstarted: Callable[[], int] | None = None,
    ):
        self.repo = repo
        self.slots = slots
        self.root = root
        self.run_id = run_id
        self.lock = threading.Lock()
        """The run's work tree and branch: merges, ticks, commits."""
        self.timings = Timings()
        self._admin = GitLock()
        """`git worktree add` and `remove`, `branch -D`: one at a time (see the module's docstring)."""
        self._on_added = on_added or _ignore
        self._on_removed = on_removed or _ignore
        self._on_slot_free = on_slot_free or _ignore
        self._unstarted = unstarted or _none
        """How many tasks may still start: no more spares than that."""
        self._mutex = threading.Lock()
        self._active: set[str] = set()
        """Tasks whose thread still works (a subset of _running, which also holds finished ones
        until wait() collects them)."""
        self._running: dict[str, threading.Thread] = {}
        self._finished: queue.Queue[tuple[str, TaskResult | BaseException]] = queue.Queue()
        self._adopted: dict[str, Worktree] = {}
        self._taken: set[Path] = set()
        """Paths of adopted worktrees (set before the run starts)."""
        self._names = itertools.count(1)
        self._care = threading.Condition()
        """Guards what the caretaker works from: spares, removals, closing, poked."""
        self._spares: list[Spare] = []
        self._making = 0
        self._removals: deque[tuple[str, dict[str, str]]] = deque()
        self._closing = False
        self._poked = False
        self._caretaker: threading.Thread | None = None
        self._last_busy = 0.0
        """When a task last started, finished or landed (time.monotonic())."""
        self._spares_broken = False
        """Making a spare failed once: no more tries."""

    # -- naming ----------------------------------------------------------------------------

    def branch_for(self, task_id: str) -> str:
        return task_branch(self.run_id, task_id)

    def _new_path(self) -> Path:
        """A worktree directory no worktree of the run uses (names are not reused: a resumed run
        may still hold an adopted one)."""
        while True:
            path = self.root / f"wt-{next(self._names)}"
            if path not in self._taken and not path.exists():
                return path

    def adopt(self, task_id: str, worktree: Worktree) -> None:
        """Resume: run the task's next step in the worktree a killed run left (its work is intact)."""
        self._adopted[task_id] = worktree
        self._taken.add(worktree.path)

    # -- the protocol ----------------------------------------------------------------------

    def start(self, task: Task, work: Work) -> None:
        thread = threading.Thread(
            target=self._run, args=(task, work), name=f"orchestrate-{task.id}", daemon=True
        )
        with self._mutex:
            self._running[task.id] = thread
            self._active.add(task.id)
        thread.start()

    def free(self) -> int:
        with self._mutex:
            return self.slots - len(self._active)

    def wait(self, block: bool = True) -> list[TaskResult]:
        with self._mutex:
            if not self._running:
                return []
        items = [self._next()] if block else []
        while True:
            try:
                items.append(self._finished.get_nowait())
            except queue.Empty:
                break
        results: list[TaskResult] = []
        error: BaseException | None = None
        for task_id, outcome in items:
            with self._mutex:
                thread = self._running.pop(task_id, None)
            if thread is not None:
                thread.join()
            if isinstance(outcome, BaseException):
                error = error or outcome
            else:
                results.append(outcome)
        if error is not None:
            # The run stops; tasks that finished beside the failure are picked up by resume.
            raise error
        return results

    def _next(self) -> tuple[str, TaskResult | BaseException]:
        while True:
            # A timeout keeps the main thread responsive to Ctrl-C while it waits.
            try:
                return self._finished.get(timeout=0.5)
            except queue.Empty:
                continue

    def integrate(self, result: TaskResult) -> Merge:
        self._busy()
        started = time.perf_counter()
        merge = merge_onto_head(self.repo, self.lock, result.extra["base"], result.extra.get("head"))
        if not merge.conflicts and result.extra.get("head", result.extra["base"]) != result.extra["base"]:
            self.timings.merge.append(time.perf_counter() - started)
        return merge

    def overlap(self, result: TaskResult) -> list[str]:
        return paths_both_changed(self.repo, self.lock, result.extra["base"], result.extra.get("head"))

    def release(self, result: TaskResult) -> None:
        """Removed in the background: nothing waits for it (resume removes what a kill left)."""
        if "worktree" not in result.extra:
            return
        with self._care:
            self._removals.append((result.task.id, dict(result.extra)))
        self._poke()

    def discard(self, result: TaskResult, keep_ref: str, message: str) -> str | None:
        extra = result.extra
        if not extra:
            return None
        kept = keep_worktree(
            self.repo, Path(extra["worktree"]), extra["branch"], extra["base"], keep_ref, message
        )
        self._remove(result.task.id, extra, urgent=True)
        return kept

    def close(self, wait: bool = True) -> None:
        if wait:
            while True:
                with self._mutex:
                    threads = list(self._running.values())
                    self._running.clear()
                if not threads:
                    break
                for thread in threads:
                    thread.join()
        with self._mutex:
            self._running.clear()
        with self._care:
            self._closing = True
            self._care.notify_all()
            caretaker, self._caretaker = self._caretaker, None
        if caretaker is not None and wait:
            caretaker.join()
        if wait:
            self._drop_spares()  # those the caretaker did not get to (it may never have started)
        try:
            self.root.rmdir()  # only when every worktree of the run is gone
            self.root.parent.rmdir()
        except OSError:
            pass

    # -- worker side -----------------------------------------------------------------------

    def _run(self, task: Task, work: Work) -> None:
        try:
            outcome: TaskResult | BaseException = self._attempts(task, work)
        except BaseException as exc:  # delivered to the main thread by wait()
            outcome = exc
        if isinstance(outcome, TaskResult) and outcome.passed:
            self.checks_passed(task.id)  # unless the work said so already
            try:
                outcome.extra["head"] = self._commit(task, outcome.extra, outcome.tree)
                crash_point("after_branch_commit", task.id)
            except BaseException as exc:
                outcome = exc
            self._finished.put((task.id, outcome))
            return
        with self._mutex:
            self._active.discard(task.id)
        self._finished.put((task.id, outcome))
        if not isinstance(outcome, BaseException):
            self._free_slot(task.id)

    def checks_passed(self, task_id: str) -> None:
        self._busy()
        with self._mutex:
            if task_id not in self._active:
                return
            self._active.discard(task_id)
        # The next task starts from this thread, before this one's snapshot, branch commit and
        # merge: none of them is on the next task's path, so they also give way to what is.
        self._free_slot(task_id)

    def _free_slot(self, task_id: str) -> None:
        try:
            self._on_slot_free()
        except BaseException as exc:
            self._finished.put((f"{task_id} (starting the next task)", exc))

    def _attempts(self, task: Task, work: Work) -> TaskResult:
        worktree = self._adopted.pop(task.id, None) or self._add(task)
        result = work(worktree.path)
        result.extra.update(worktree.as_record())
        if result.stopped and result.attempts == 0:
            self._remove(task.id, result.extra, urgent=True)  # stopped before it began: nothing to keep
        return result

    def _add(self, task: Task) -> Worktree:
        self._busy()
        started = time.perf_counter()
        branch = self.branch_for(task.id)
        worktree = self._claim(branch) or self._make(branch)
        self.timings.add.append(time.perf_counter() - started)
        self._poke()  # the caretaker makes the next spare
        crash_point("after_worktree", task.id)
        self._on_added(task, worktree)
        return worktree

    def _claim(self, branch: str) -> Worktree | None:
        """A spare, moved to the run's head when the head moved since it was made, or None when
        no spare is ready. It stays detached: the task's branch is made when its work is
        committed (see _commit), which spares a git process at the start of every task."""
        with self._care:
            if not self._spares:
                return None
            spare = self._spares.pop(0)
        base = self.repo.head_now()
        assert base is not None  # pre-flight refuses a repository without commits
        if spare.base != base:
            try:
                self.repo.move_worktree_to(spare.path, base)
            except GitError:  # a spare gone bad is not worth a task: make a new worktree
                self._remove_all([], [spare.path], urgent=True)
                return None
        return Worktree(spare.path, branch, base)

    def _make(self, branch: str) -> Worktree:
        path = self._new_path()
        with self._admin.urgent():
            base = self.repo.head_now()
            assert base is not None
            self.repo.worktree_add_detached(path, base)
        self.repo.populate_worktree(path)
        return Worktree(path, branch, base)

    def _commit(self, task: Task, extra: dict[str, str], tree: str | None) -> str:
        """The task's work, the tree it was verified with, as one commit on its branch, its parent
        the commit the worktree was cut from. The worktree's own index is left alone: it goes
        after the merge."""
        started = time.perf_counter()
        path, branch, base = Path(extra["worktree"]), extra["branch"], extra["base"]
        if tree is None:  # resumed: the verified work is on its branch, or in its worktree
            tip = self.repo.rev(f"refs/heads/{branch}")
            try:
                tree = self.repo.linked(path).snapshot_tree() if is_worktree(path) else None
            except GitError:  # not a worktree of ours any more
                tree = None
            if tip is not None and (tree is None or tree == self.repo.rev(f"{tip}^{{tree}}")):
                return tip
            if tree is None:
                return base
        message = f"orchestrate: work of task {task.id} (run {self.run_id})"
        sha = self.repo.commit_tree(tree, base, message)
        self.repo.set_branch(branch, sha)
        self.timings.commit.append(time.perf_counter() - started)
        return sha

    # -- the caretaker: spares ahead of time, removals after --------------------------------

    def _poke(self) -> None:
        with self._care:
            if self._closing:
                return
            self._poked = True
            if self._caretaker is None:
                self._caretaker = threading.Thread(
                    target=self._take_care, name="orchestrate-worktrees", daemon=True
                )
                self._caretaker.start()
            self._care.notify_all()

    def _spare_wanted(self) -> bool:
        with self._care:
            if self._closing or self._spares_broken:
                return False
            ready = len(self._spares) + self._making
        if ready >= self.slots:
            return False
        # Asked without holding _care: the runner answers under its own lock, which it may hold
        # while it calls start().
        return ready < min(self.slots, self._unstarted())

    def _busy(self) -> None:
        self._last_busy = time.monotonic()

    def _lull(self) -> None:
        """Wait for a lull in the tasks' own git work (see QUIET), unless the run is closing."""
        began = time.monotonic()
        with self._care:
            while not self._closing:
                now = time.monotonic()
                calm, waited = now - self._last_busy, now - began
                if calm >= QUIET or waited >= PATIENCE:
                    return
                self._care.wait(min(QUIET - calm, PATIENCE - waited))

    def _take_care(self) -> None:
        lower_priority()
        while True:
            if self._spare_wanted():
                self._lull()
                try:
                    self._make_spare()
                except GitError:
                    # No spares then: each task makes its own worktree, as it would have to
                    # anyway if this failure is not a passing one (and then it says why).
                    self._spares_broken = True
                continue
            with self._care:
                idle = not self._removals and not self._closing
                if idle:
                    if not self._poked:
                        self._care.wait()
                    self._poked = False
                    continue
            self._lull()
            with self._care:  # after the lull: what was released meanwhile goes in the same batch
                jobs = list(self._removals)
                self._removals.clear()
                closing = self._closing
                spares: list[Spare] = []
                if closing:
                    spares, self._spares = self._spares, []
            self._remove_all(jobs, [s.path for s in spares])
            if closing:
                return

    def _remove_all(
        self, jobs: list[tuple[str, dict[str, str]]], spares: list[Path], urgent: bool = False
    ) -> None:
        """Finished tasks' worktrees and branches, and spares, all at once (a few git processes
        whatever their number); when that fails, one by one."""
        jobs = [(task_id, extra) for task_id, extra in jobs if "worktree" in extra]
        if not jobs and not spares:
            return
        started = time.perf_counter()
        paths = [Path(extra["worktree"]) for _, extra in jobs] + spares
        branches = [extra["branch"] for _, extra in jobs] + [""] * len(spares)
        self._admin.acquire(urgent)
        try:
            self.repo.remove_worktrees(paths, [b for b in branches if b])
        except GitError:
            for path, branch in zip(paths, branches, strict=True):
                remove_worktree(self.repo, path, branch)
        finally:
            self._admin.release()
        each = (time.perf_counter() - started) / (len(jobs) + len(spares))
        for task_id, _ in jobs:
            self.timings.remove.append(each)
            self._on_removed(task_id)

    def _make_spare(self) -> None:
        started = time.perf_counter()
        with self._care:
            self._making += 1
        try:
            with self._admin:
                base = self.repo.head_now()
                assert base is not None
                path = self._new_path()
                self.repo.worktree_add_detached(path, base)
            self.repo.populate_worktree(path)
            with self._care:
                self._spares.append(Spare(path, base))
        finally:
            with self._care:
                self._making -= 1
        self.timings.spare.append(time.perf_counter() - started)

    def _drop_spares(self) -> None:
        with self._care:
            spares, self._spares = self._spares, []
        self._remove_all([], [spare.path for spare in spares])

    # -- shared ----------------------------------------------------------------------------

    def _remove(self, task_id: str, extra: dict[str, str], urgent: bool = False) -> None:
        if "worktree" not in extra:
            return
        started = time.perf_counter()
        self._admin.acquire(urgent)
        try:
            remove_worktree(self.repo, Path(extra["worktree"]), extra["branch"])
        finally:
            self._admin.release()
        self.timings.remove.append(time.perf_counter() - started)
        self._on_removed(task_id)


BACKGROUND_NICENESS = 10


def lower_priority() -> None:
    """Make the calling thread, and the git processes it starts (they inherit it), give way to
    the others for the CPU. Linux only (elsewhere a thread cannot have a priority of its own);
    a thread cannot raise its priority again, so only threads that do background work call it."""
    if sys.platform != "linux":
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)
    except OSError:
        pass


def keep_worktree(repo: GitRepo, path: Path, branch: str, base: str, ref: str, message: str) -> str | None:
    """Keep what a task's worktree holds beyond `base` (its uncommitted edits, or without the
    worktree, its branch) in `ref`, a commit on `base`; `ref`, or None when there is nothing."""
    tree: str | None = None
    if is_worktree(path):
        try:
            worktree = repo.linked(path)  # its git dir as orchestrate knows it, not as its .git says
            # Without an index its files were never checked out: nothing in it is anyone's work.
            tree = worktree.snapshot_tree() if (worktree.git_dir / "index").is_file() else None
        except GitError:  # not a work tree any more (a kill cut its creation or removal short)
            tree = None
    if tree is None:
        tree = repo.rev(f"refs/heads/{branch}^{{tree}}")
    if tree is None or tree == repo.rev(f"{base}^{{tree}}"):
        return None
    sha = repo.commit_tree(tree, base, message)
    repo.update_ref(ref, sha)
    return ref


def remove_worktree(repo: GitRepo, path: Path, branch: str) -> None:
    repo.worktree_remove(path)
    if branch:
        repo.delete_branch(branch)


def is_worktree(path: Path) -> bool:
    """A checked-out worktree (a kill during `git worktree add` can leave a bare directory, in
    which git would find the main repository instead)."""
    return (path / ".git").is_file()
