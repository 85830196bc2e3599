"""The task graph of a plan: what is wrong with it, in what order it runs, what is ready now.

`Task.depends_on` already holds every direct dependency (the parser adds those implied by
the order of phases and tasks), so the graph here is exactly tasks and their depends_on.
Every function is deterministic: where the graph leaves a choice, phase order and then
document order decide. None of them raises on a bad graph: `validate` reports cycles and
unknown ids, and the ordering functions treat a dependency on an unknown id as met and
break a cycle at its earliest task, so a plan with a mistake can still be shown.

A task is settled when the plan marks it done or skipped, or when its id is in the
`settled` set given by the caller (the engine's tasks finished in this run).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable

from orchestrator.domain.plan import Diagnostic, Plan, Severity, Task

CYCLE = "cycle"
UNKNOWN_ID = "unknown-id"
DUPLICATE_ID = "duplicate-id"
PARENT_CHILD = "parent-child"
NO_TASKS = "no-tasks"
LINT_ERROR_CODES = frozenset({CYCLE, UNKNOWN_ID, DUPLICATE_ID, PARENT_CHILD, NO_TASKS})
"""Findings `orchestrate lint` fails on, whatever their severity."""


def fails_lint(diagnostic: Diagnostic) -> bool:
    """Whether `orchestrate lint` fails on this finding; the dry-run says and exits the same."""
    return diagnostic.severity is Severity.ERROR or diagnostic.code in LINT_ERROR_CODES


def validate(plan: Plan) -> list[Diagnostic]:
    """Duplicate ids, dependencies on unknown ids, and cycles (naming every id and line in them)."""
    found: list[Diagnostic] = []
    first_line: dict[str, int] = {}
    for task in plan.tasks:
        if task.id in first_line:
            found.append(
                Diagnostic(
                    severity=Severity.ERROR,
                    line=task.line,
                    message=f"duplicate task id {task.id} (also on line {first_line[task.id]})",
                    code=DUPLICATE_ID,
                )
            )
        else:
            first_line[task.id] = task.line
    for task in plan.tasks:
        for dep in task.depends_on:
            if dep not in first_line:
                found.append(
                    Diagnostic(
                        severity=Severity.ERROR,
                        line=task.line,
                        message=f"task {task.id} depends on unknown task id {dep}",
                        code=UNKNOWN_ID,
                    )
                )
    by_id = _by_id(plan)
    for cycle in cycles(plan):
        ring = " -> ".join(f"{task_id} (line {by_id[task_id].line})" for task_id in [*cycle, cycle[0]])
        found.append(
            Diagnostic(
                severity=Severity.ERROR,
                line=by_id[cycle[0]].line,
                message=f"dependency cycle: {ring}; break it by removing one of these dependencies",
                code=CYCLE,
            )
        )
    return found


def cycles(plan: Plan) -> list[list[str]]:
    """Each cycle as task ids in dependency order (a waits for b waits for ... a), earliest first."""
    by_id = _by_id(plan)
    position: dict[str, int] = {}
    for index, task in enumerate(plan.tasks):
        position.setdefault(task.id, index)
    result: list[list[str]] = []
    for component in _strong_components(plan, by_id):
        members = set(component)
        if len(component) == 1 and component[0] not in by_id[component[0]].depends_on:
            continue
        start = min(component, key=position.__getitem__)
        result.append(_cycle_through(start, members, by_id, position))
    result.sort(key=lambda ring: position[ring[0]])
    return result


def _cycle_through(
    start: str, members: set[str], by_id: dict[str, Task], position: dict[str, int]
) -> list[str]:
    """A shortest cycle from `start` back to itself inside one strongly connected component."""
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for dep in sorted(by_id[node].depends_on, key=lambda d: position.get(d, 0)):
                if dep == start:
                    ring = [node]
                    while ring[-1] != start:
                        ring.append(parent[ring[-1]])
                    return ring[::-1]
                if dep in members and dep not in parent:
                    parent[dep] = node
                    following.append(dep)
        frontier = following
    return [start]


def _strong_components(plan: Plan, by_id: dict[str, Task]) -> list[list[str]]:
    """Tarjan's algorithm, iterative so that a 100k-task chain does not hit the recursion limit."""
    index_of: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in plan.tasks:
        if root.id in index_of:
            continue
        work: list[tuple[str, int]] = [(root.id, 0)]
        while work:
            node, edge = work.pop()
            if edge == 0:
                index_of[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            deps = [d for d in by_id[node].depends_on if d in by_id]
            if edge < len(deps):
                work.append((node, edge + 1))
                dep = deps[edge]
                if dep not in index_of:
                    work.append((dep, 0))
                elif dep in on_stack:
                    low[node] = min(low[node], index_of[dep])
                continue
            if low[node] == index_of[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                caller = work[-1][0]
                low[caller] = min(low[caller], low[node])
    return components


def execution_order(plan: Plan) -> list[str]:
    """Every task id in a topological order; phase order, then document order, where free."""
    return [task.id for task in _ordered(plan, plan.tasks)]


def cleared(plan: Plan, settled: Collection[str]) -> set[str]:
    """Settled tasks whose every ancestor is settled too.

    A box ticked out of order (a later phase's task done while an earlier phase still has open
    work) does not open the way for its successors: phases run in order, whatever was ticked."""
    done = _settled(plan, settled)
    by_id = _by_id(plan)
    result: set[str] = set()
    for task_id in execution_order(plan):
        if task_id in done and all(d in result or d not in by_id for d in by_id[task_id].depends_on):
            result.add(task_id)
    return result


def ready(plan: Plan, settled: Collection[str], exclude: Collection[str] = frozenset()) -> list[Task]:
    """Open tasks (optional ones included) whose ancestors are all settled, in execution order."""
    done = _settled(plan, settled)
    clear = cleared(plan, settled)
    order = _rank(plan)
    candidates = [
        task
        for task in plan.tasks
        if task.id not in done
        and task.id not in exclude
        and all(dep in clear or dep not in order for dep in task.depends_on)
    ]
    return sorted(candidates, key=lambda task: order[task.id])


def waves(plan: Plan, settled: Collection[str]) -> list[list[Task]]:
    """The rest of the plan as waves: each wave's tasks could run at once once the previous are done."""
    settled_ids = _settled(plan, settled)
    done = cleared(plan, settled)
    order = _rank(plan)
    remaining = [task for task in plan.tasks if task.id not in done]
    result: list[list[Task]] = []
    while remaining:
        free = [task for task in remaining if all(d in done or d not in order for d in task.depends_on)]
        passed = [task for task in free if task.id in settled_ids]
        if passed:  # ticked out of order: it clears as soon as what it waits for has run
            done.update(task.id for task in passed)
            remaining = [task for task in remaining if task.id not in done]
            continue
        wave = free or [min(remaining, key=lambda task: order[task.id])]  # a cycle: release its earliest
        wave.sort(key=lambda task: order[task.id])
        result.append(wave)
        done.update(task.id for task in wave)
        remaining = [task for task in remaining if task.id not in done]
    return result


def descendants(plan: Plan, task_id: str) -> set[str]:
    """Every task that waits, directly or not, for `task_id`: what its failure blocks."""
    dependents: dict[str, list[str]] = {}
    for task in plan.tasks:
        for dep in task.depends_on:
            dependents.setdefault(dep, []).append(task.id)
    found: set[str] = set()
    stack = list(dependents.get(task_id, ()))
    while stack:
        current = stack.pop()
        if current in found:
            continue
        found.add(current)
        stack.extend(dependents.get(current, ()))
    found.discard(task_id)
    return found


def unit_weight(task: Task) -> float:
    del task
    return 1.0


def remaining_path_length(
    plan: Plan, settled: Collection[str], weight: Callable[[Task], float] = unit_weight
) -> dict[str, float]:
    """For each unsettled task, the heaviest chain of unsettled tasks from it to the end (itself included)."""
    done = _settled(plan, settled)
    by_id = _by_id(plan)
    dependents: dict[str, list[str]] = {}
    for task in plan.tasks:
        for dep in task.depends_on:
            dependents.setdefault(dep, []).append(task.id)
    length: dict[str, float] = {}
    for task_id in reversed(execution_order(plan)):
        if task_id in done:
            continue
        tail = max((length[d] for d in dependents.get(task_id, ()) if d in length), default=0.0)
        length[task_id] = weight(by_id[task_id]) + tail
    return length


def _by_id(plan: Plan) -> dict[str, Task]:
    by_id: dict[str, Task] = {}
    for task in plan.tasks:
        by_id.setdefault(task.id, task)
    return by_id


def _settled(plan: Plan, settled: Iterable[str]) -> set[str]:
    return {task.id for task in plan.tasks if task.settled} | set(settled)


def _rank(plan: Plan) -> dict[str, int]:
    return {task_id: rank for rank, task_id in enumerate(execution_order(plan))}


def _ordered(plan: Plan, tasks: list[Task]) -> list[Task]:
    """Kahn's algorithm with a heap keyed by (phase order, document position)."""
    phase_order = {phase.id: phase.order for phase in plan.phases}
    key = {task.id: (phase_order.get(task.phase, 0), index) for index, task in enumerate(tasks)}
    by_id = {task.id: task for task in tasks}
    waiting: dict[str, set[str]] = {}
    dependents: dict[str, list[str]] = {}
    for task in tasks:
        deps = {d for d in task.depends_on if d in by_id and d != task.id}
        waiting[task.id] = deps
        for dep in deps:
            dependents.setdefault(dep, []).append(task.id)
    heap = [(key[task_id], task_id) for task_id, deps in waiting.items() if not deps]
    heapq.heapify(heap)
    emitted: set[str] = set()
    result: list[Task] = []
    while len(emitted) < len(by_id):
        if not heap:  # a cycle: release its earliest remaining task
            stuck = min((t for t in by_id if t not in emitted), key=key.__getitem__)
            waiting[stuck] = set()
            heap.append((key[stuck], stuck))
        _, task_id = heapq.heappop(heap)
        if task_id in emitted:
            continue
        emitted.add(task_id)
        result.append(by_id[task_id])
        for dependent in dependents.get(task_id, ()):
            pending = waiting[dependent]
            pending.discard(task_id)
            if not pending and dependent not in emitted:
                heapq.heappush(heap, (key[dependent], dependent))
    return result
