"""Which tasks may start now: the ready tasks of the run's selection, best first.

The scheduler knows the plan (boxes are the truth of what is settled), what the run settled,
failed or skipped, and what is in flight; it never runs anything. The runner asks it for ready
tasks each time a slot frees up, so the same loop serves one slot (in place) or N (worktrees).
"""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.domain import dag
from orchestrator.domain.plan import Plan, Task


def ancestors(plan: Plan, task_ids: Iterable[str]) -> set[str]:
    """Every task the given ones wait for, directly or not."""
    by_id = {t.id: t for t in plan.tasks}
    seen: set[str] = set()
    stack = list(task_ids)
    while stack:
        task = by_id.get(stack.pop())
        if task is None:
            continue
        for dep in task.depends_on:
            if dep not in seen:
                seen.add(dep)
                stack.append(dep)
    return seen


def select_tasks(plan: Plan, phase: str | None = None, task: str | None = None) -> list[str]:
    """Ids of the tasks a run covers, in the plan's order: everything, or one phase or one task
    together with the unsettled tasks they wait for."""
    if phase is None and task is None:
        return [t.id for t in plan.tasks]
    targets: set[str] = set()
    if phase is not None:
        targets |= {t.id for t in plan.tasks if t.phase == phase}
    if task is not None:
        targets.add(task)
    needed = targets | {i for i in ancestors(plan, targets) if (t := plan.task(i)) and not t.settled}
    return [t.id for t in plan.tasks if t.id in needed]


def is_group(plan: Plan, task: Task) -> bool:
    """A task with nested checkboxes: no agent of its own; done once its children are."""
    return any(t.parent == task.id for t in plan.tasks)


class Scheduler:
    def __init__(self, plan: Plan, selection: Iterable[str]):
        self.selection = list(selection)
        self.failed: set[str] = set()
        self.skipped: set[str] = set()
        self.waiting: set[str] = set()
        """Tasks that wait for a person: not run again; their dependents wait too."""
        # A unit without a box that is done when the run starts (by its commit's trailer, see
        # unit_history) stays done however often the plan is read again: the file never says so.
        self.done: set[str] = {t.id for t in plan.tasks if t.boxless and t.settled}
        self.plan = plan
        self._priority: dict[str, tuple[float, int]] = {}
        self._shape: object = None
        self.update_plan(plan)

    def update_plan(self, plan: Plan) -> None:
        """After a tick the plan is re-read; priorities follow the remaining work. A tick of the
        run's own changes no priority: they are worked out again (a walk of the whole DAG) only
        when the plan's tasks, their dependencies or what is settled outside the run changed."""
        self.plan = plan
        shape = (
            tuple((t.id, tuple(t.depends_on)) for t in plan.tasks),
            frozenset(t.id for t in plan.tasks if t.settled and t.id not in self.done),
        )
        if shape == self._shape:
            return
        self._shape = shape
        order = {task_id: i for i, task_id in enumerate(dag.execution_order(plan))}
        lengths = dag.remaining_path_length(plan, self.settled())
        self._priority = {t.id: (-lengths.get(t.id, 0), order.get(t.id, 0)) for t in plan.tasks}

    def settled(self) -> set[str]:
        return {t.id for t in self.plan.tasks if t.settled} | self.done

    def ready(self, in_flight: Iterable[str] = ()) -> list[Task]:
        """Selected tasks whose ancestors are all settled, not yet run, not blocked; those on the
        longest remaining path first (critical path), then plan order."""
        chosen = set(self.selection)
        exclude = self.failed | self.skipped | self.waiting | set(in_flight)
        ready = [t for t in dag.ready(self.plan, self.done, exclude) if t.id in chosen]
        return sorted(ready, key=lambda t: self._priority.get(t.id, (0.0, 0)))

    def remaining(self) -> list[str]:
        settled = self.settled()
        return [
            i for i in self.selection if i not in settled and i not in self.failed and i not in self.skipped
        ]

    def blocked_by(self, failed_id: str) -> list[str]:
        """Selected, unsettled tasks that wait (directly or not) on `failed_id`."""
        settled = self.settled()
        chosen = set(self.selection)
        below = dag.descendants(self.plan, failed_id)
        return [
            t.id
            for t in self.plan.tasks
            if t.id in below
            and t.id in chosen
            and t.id not in settled
            and t.id not in self.skipped
            and t.id not in self.failed
        ]
