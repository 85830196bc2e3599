"""Parallel tasks: each on a thread of its own, in its own git worktree on its own branch.

    start(task)      a thread: `git worktree add` (cut from the run branch's head), the task's
                     attempts in it (agent + verification), then its work committed on its branch
    wait()           the tasks that finished
    integrate(task)  on the main thread: the task branch's commit merged onto the run's current
                     head (`git merge-tree`, nothing touched on conflict) and checked out in the
                     run's work tree, where the runner re-verifies it, ticks the box and commits
    release(task)    the worktree and its branch removed once the task's commit is on the run branch

Agents and verification in different worktrees run at once; every git operation that touches the
main repository (worktree add and remove, commits, the merge) holds one lock, and the journal has a
single writer (the runner, under its own lock). The plan file is never ticked in a worktree: only
on the run's branch, at merge time, so parallel tasks cannot conflict over it.
"""

from __future__ import annotations

import queue
import re
import threading
import time
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
    base: str
    """The run branch's commit it was cut from."""

    def as_record(self) -> dict[str, str]:
        return {"worktree": str(self.path), "branch": self.branch, "base": self.base}


@dataclass
class Timings:
    """Seconds spent on each worktree chore, one entry per task (for the benchmarks)."""

    add: list[float] = field(default_factory=list)
    commit: list[float] = field(default_factory=list)
    merge: list[float] = field(default_factory=list)
    remove: list[float] = field(default_factory=list)


def _ignore(*args: object) -> None:
    del args


class GitLock:
    """One lock for the main repository's git operations, where creating a worktree (a task
    waiting to start) goes before merges, commits and removals (work already done)."""

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
    ):
        self.repo = repo
        self.slots = slots
        self.root = root
        self.run_id = run_id
        self.lock = GitLock()
        """Held for every git operation on the main repository."""
        self.timings = Timings()
        self._on_added = on_added or _ignore
        self._on_removed = on_removed or _ignore
        self._on_slot_free = on_slot_free or _ignore
        self._mutex = threading.Lock()
        self._active: set[str] = set()
        """Tasks whose thread still works (a subset of _running, which also holds finished ones
        until wait() collects them)."""
        self._running: dict[str, threading.Thread] = {}
        self._finished: queue.Queue[tuple[str, TaskResult | BaseException]] = queue.Queue()
        self._adopted: dict[str, Worktree] = {}
        self._janitor: queue.Queue[tuple[str, dict[str, str]] | None] = queue.Queue()
        self._janitor_thread: threading.Thread | None = None

    # -- naming ----------------------------------------------------------------------------

    def path_for(self, task_id: str) -> Path:
        return self.root / safe_name(task_id)

    def branch_for(self, task_id: str) -> str:
        return task_branch(self.run_id, task_id)

    def adopt(self, task_id: str, worktree: Worktree) -> None:
        """Resume: run the task's next step in the worktree a killed run left (its work is intact)."""
        self._adopted[task_id] = worktree

    # -- the protocol ----------------------------------------------------------------------

    def start(self, task: Task, work: Work) -> None:
        thread = threading.Thread(
            target=self._run, args=(task, work), name=f"orchestrate-{task.id}", daemon=True
        )
        with self._mutex:
            self._running[task.id] = thread
            self._active.add(task.id)
        thread.start()

    def in_flight(self) -> list[str]:
        with self._mutex:
            return list(self._running)

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
        extra = result.extra
        base = extra["base"]
        # Committed here rather than on the worker, so that its slot frees up sooner.
        head_of_task = extra["head"] = self._commit(result.task, extra, result.tree)
        crash_point("after_branch_commit", result.task.id)
        started = time.perf_counter()
        with self.lock:
            head = self.repo.head() or base
            moved = head != base
            if head_of_task == base:
                return Merge(moved=moved)
            if not moved:
                self.repo.checkout_tree(head_of_task)
                self.timings.merge.append(time.perf_counter() - started)
                return Merge()
            merged = self.repo.merge_tree(head, head_of_task)
            if merged.tree is None:
                return Merge(conflicts=merged.conflicts, moved=True)
            self.repo.checkout_tree(merged.tree)
        self.timings.merge.append(time.perf_counter() - started)
        return Merge(moved=True)

    def overlap(self, result: TaskResult) -> list[str]:
        extra = result.extra
        base, head_of_task = extra["base"], extra.get("head", extra["base"])
        with self.lock:
            theirs = set(self.repo.changed_between(base, "HEAD"))
            return sorted(p for p in self.repo.changed_between(base, head_of_task) if p in theirs)

    def release(self, result: TaskResult) -> None:
        """Removed in the background: nothing waits for it (resume removes what a kill left)."""
        if self._janitor_thread is None:
            self._janitor_thread = threading.Thread(
                target=self._tidy, name="orchestrate-janitor", daemon=True
            )
            self._janitor_thread.start()
        self._janitor.put((result.task.id, dict(result.extra)))

    def _tidy(self) -> None:
        while (item := self._janitor.get()) is not None:
            self._remove(*item)

    def discard(self, result: TaskResult, keep_ref: str, message: str) -> str | None:
        extra = result.extra
        if not extra:
            return None
        kept = self.keep(Path(extra["worktree"]), extra["branch"], extra["base"], keep_ref, message)
        self._remove(result.task.id, extra)
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
        if self._janitor_thread is not None:
            self._janitor.put(None)
            if wait:
                self._janitor_thread.join()
            self._janitor_thread = None
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
        with self._mutex:
            self._active.discard(task.id)
        self._finished.put((task.id, outcome))
        if not isinstance(outcome, BaseException):
            try:
                self._on_slot_free()  # start the next task from here, not after the main thread's merges
            except BaseException as exc:
                self._finished.put((f"{task.id} (starting the next task)", exc))

    def _attempts(self, task: Task, work: Work) -> TaskResult:
        worktree = self._adopted.pop(task.id, None) or self._add(task)
        result = work(worktree.path)
        result.extra.update(worktree.as_record())
        if result.stopped and result.attempts == 0:
            self._remove(task.id, result.extra)  # stopped before it began: nothing to keep
        return result

    def _add(self, task: Task) -> Worktree:
        started = time.perf_counter()
        path, branch = self.path_for(task.id), self.branch_for(task.id)
        with self.lock.urgent():
            base = self.repo.head()
            assert base is not None  # pre-flight refuses a repository without commits
            if path.exists() or self.repo.branch_exists(branch):  # a leftover resume did not claim
                remove_worktree(self.repo, path, branch)
            self.repo.worktree_add(path, branch, base)
        self.timings.add.append(time.perf_counter() - started)
        crash_point("after_worktree", task.id)
        worktree = Worktree(path, branch, base)
        self._on_added(task, worktree)
        return worktree

    def _commit(self, task: Task, extra: dict[str, str], tree: str | None) -> str:
        """The task's work, the tree it was verified with, as one commit on its branch, its parent
        the commit the worktree was cut from. The worktree's own index is left alone: it goes
        after the merge."""
        started = time.perf_counter()
        path, branch, base = Path(extra["worktree"]), extra["branch"], extra["base"]
        with self.lock:
            if tree is None:  # resumed: the verified work is on its branch, or in its worktree
                tip = self.repo.rev(f"refs/heads/{branch}")
                tree = GitRepo(path).snapshot_tree() if is_worktree(path) else None
                if tip is not None and (tree is None or tree == self.repo.rev(f"{tip}^{{tree}}")):
                    return tip
                if tree is None:
                    return base
            message = f"orchestrate: work of task {task.id} (run {self.run_id})"
            sha = self.repo.git("commit-tree", tree, "-p", base, "-m", message).strip()
            self.repo.update_ref(f"refs/heads/{branch}", sha)
        self.timings.commit.append(time.perf_counter() - started)
        return sha

    # -- shared ----------------------------------------------------------------------------

    def keep(self, path: Path, branch: str, base: str, keep_ref: str, message: str) -> str | None:
        with self.lock:
            return keep_worktree(self.repo, path, branch, base, keep_ref, message)

    def _remove(self, task_id: str, extra: dict[str, str]) -> None:
        if "worktree" not in extra:
            return
        started = time.perf_counter()
        with self.lock:
            remove_worktree(self.repo, Path(extra["worktree"]), extra["branch"])
        self.timings.remove.append(time.perf_counter() - started)
        self._on_removed(task_id)


def keep_worktree(repo: GitRepo, path: Path, branch: str, base: str, ref: str, message: str) -> str | None:
    """Keep what a task's worktree holds beyond `base` (its uncommitted edits, or without the
    worktree, its branch) in `ref`, a commit on `base`; `ref`, or None when there is nothing."""
    tree: str | None = None
    if is_worktree(path):
        try:
            tree = GitRepo(path).snapshot_tree()
        except GitError:  # not a work tree any more (a kill cut its creation or removal short)
            tree = None
    if tree is None:
        tree = repo.rev(f"refs/heads/{branch}^{{tree}}")
    if tree is None or tree == repo.rev(f"{base}^{{tree}}"):
        return None
    sha = repo.git("commit-tree", tree, "-p", base, "-m", message).strip()
    repo.update_ref(ref, sha)
    return ref


def remove_worktree(repo: GitRepo, path: Path, branch: str) -> None:
    repo.worktree_remove(path)
    repo.delete_branch(branch)


def is_worktree(path: Path) -> bool:
    """A checked-out worktree (a kill during `git worktree add` can leave a bare directory, in
    which git would find the main repository instead)."""
    return (path / ".git").is_file()
