"""Where a task's attempts run: the seam between the runner's loop and the work trees.

The runner asks the scheduler for ready tasks while the executor has free slots, hands each to
`start` with the work to do (a callable taking the workspace to run in), then collects results
with `wait`. Landing a passed task on the run's branch (tick + commit) stays in the runner, one at a
time, on the main thread; before it, `integrate` brings the task's changes into the run's work
tree (saying whether they conflict and whether the branch moved since the task began), after it
`release` drops the task's workspace, and after a failure `discard` keeps its edits in a ref and
cleans the workspace.

InlineExecutor is the serial default: one slot, the repository's own work tree as the workspace,
nothing to integrate. WorktreeExecutor (engine/worktrees.py) runs N tasks at once, each in its own
`git worktree`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orchestrator.domain.plan import Task
from orchestrator.persistence.repo import GitRepo


@dataclass
class TaskResult:
    """How a task's attempts ended, before landing."""

    task: Task
    workspace: Path
    passed: bool = False
    unverified: bool = False
    """Passed with no verification command to run."""
    stopped: bool = False
    """A stop was requested mid-task: leave it resumable, neither landed nor failed."""
    reason: str = ""
    attempts: int = 0
    tree: str | None = None
    """The workspace's tree as verified (when it passed, or when it waits for a person)."""
    needs_human: str = ""
    """Why the task must wait for a person (a manual unit, a reviewer's needs_human verdict):
    set with `tree` and without TaskVerified recorded, the runner holds it (Landing.hold): its
    work is kept in a ref, nothing is ticked or committed, its dependents wait."""
    extra: dict[str, str] = field(default_factory=dict)
    """Executor-specific facts (worktree path, branch, commit) for the journal."""


Work = Callable[[Path], TaskResult]
"""A task's attempts, run in the given workspace; journals and reports as it goes."""


@dataclass
class Merge:
    """What bringing a task's work into the run's work tree found."""

    conflicts: list[str] = field(default_factory=list)
    """Paths that did not merge (nothing was changed then)."""
    moved: bool = False
    """The run's branch moved since the task began: its checks must run again on the merge."""


class Executor(Protocol):
    slots: int
    """How many tasks may be in flight at once."""

    @property
    def lock(self) -> AbstractContextManager[Any]:
        """Held around every git operation on the run's work tree and branch (merge, tick, commit)."""
        ...

    def start(self, task: Task, work: Work) -> None: ...

    def wait(self, block: bool = True) -> list[TaskResult]:
        """The started tasks that have finished their attempts; with `block`, at least one
        (unless none is in flight)."""
        ...

    def free(self) -> int:
        """Slots free for another task now."""
        ...

    def checks_passed(self, task_id: str) -> None:
        """Said from the task's work: its checks passed, what is left of it is bookkeeping, so its
        slot may take another task."""
        ...

    def integrate(self, result: TaskResult) -> Merge:
        """Make the run's work tree hold the task's changes (before the tick and the commit)."""
        ...

    def release(self, result: TaskResult) -> None:
        """The task's commit is on the run's branch: drop its workspace."""
        ...

    def overlap(self, result: TaskResult) -> list[str]:
        """Paths both the task and the run's branch changed since the task began."""
        ...

    def discard(self, result: TaskResult, keep_ref: str, message: str) -> str | None:
        """Keep the task's uncommitted edits in `keep_ref` (returned, None if there were none)
        and return its workspace to the run's head."""
        ...

    def close(self, wait: bool = True) -> None:
        """No more tasks: wait for those in flight (unless aborting) and tidy up."""
        ...


class InlineExecutor:
    """One task at a time, in the repository's own work tree, on the caller's thread."""

    slots = 1

    def __init__(self, repo: GitRepo, keep: Callable[[list[str]], list[str]] | None = None):
        self.repo = repo
        self.lock = threading.Lock()
        self._pending: list[tuple[Task, Work]] = []
        # Which changed paths a reset may touch (paths dirty before an --allow-dirty run are not ours).
        self._keep = keep or (lambda paths: paths)

    def start(self, task: Task, work: Work) -> None:
        self._pending.append((task, work))

    def free(self) -> int:
        return self.slots - len(self._pending)

    def wait(self, block: bool = True) -> list[TaskResult]:
        if not self._pending or not block:
            return []
        task, work = self._pending[0]
        try:
            return [work(self.repo.root)]
        finally:
            self._pending.pop(0)

    def checks_passed(self, task_id: str) -> None:
        del task_id  # the next task needs this work tree, landed: it waits anyway

    def integrate(self, result: TaskResult) -> Merge:
        del result  # the work is already in the run's work tree
        return Merge()

    def release(self, result: TaskResult) -> None:
        del result

    def overlap(self, result: TaskResult) -> list[str]:
        del result
        return []

    def discard(self, result: TaskResult, keep_ref: str, message: str) -> str | None:
        del result
        sha = self.repo.save_snapshot(keep_ref, message)
        self.repo.reset_paths(self._keep(self.repo.changed_paths()))
        return keep_ref if sha else None

    def close(self, wait: bool = True) -> None:
        del wait
        self._pending.clear()
