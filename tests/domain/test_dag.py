"""The task graph on hand-built plans: validation, order, readiness, waves, blast radius, critical path."""

from __future__ import annotations

from pathlib import Path

from orchestrator.domain import dag
from orchestrator.domain.plan import BoxState, Phase, Plan, Task


def make_plan(
    edges: dict[str, list[str]], done: set[str] = frozenset(), phases: dict[str, str] | None = None
) -> Plan:  # type: ignore[assignment]
    tasks = [
        Task(
            id=task_id,
            title=f"task {task_id}",
            state=BoxState.DONE if task_id in done else BoxState.OPEN,
            phase=(phases or {}).get(task_id, "1"),
            line=line,
            box_offset=0,
            depends_on=deps,
        )
        for line, (task_id, deps) in enumerate(edges.items(), start=1)
    ]
    phase_ids = sorted({t.phase for t in tasks})
    return Plan(
        path=Path("p.md"),
        title="p",
        phases=[Phase(id=p, title=p, order=i) for i, p in enumerate(phase_ids)],
        tasks=tasks,
    )


DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": []}


def test_validate_reports_cycles_with_ids_and_lines_unknown_and_duplicates() -> None:
    plan = make_plan({"a": ["c"], "b": ["a"], "c": ["b"], "d": ["zz"], "e": ["e"]})
    plan.tasks.append(plan.tasks[0].model_copy(update={"line": 9}))
    found = dag.validate(plan)
    by_code = {
        code: [d for d in found if d.code == code] for code in (dag.CYCLE, dag.UNKNOWN_ID, dag.DUPLICATE_ID)
    }
    assert [d.message.split(";")[0] for d in by_code[dag.CYCLE]] == [
        "dependency cycle: a (line 1) -> c (line 3) -> b (line 2) -> a (line 1)",
        "dependency cycle: e (line 5) -> e (line 5)",
    ]
    assert [d.line for d in by_code[dag.UNKNOWN_ID]] == [4]
    assert [d.line for d in by_code[dag.DUPLICATE_ID]] == [9]


def test_execution_order_is_topological_and_document_order_where_free() -> None:
    plan = make_plan(DIAMOND)
    assert dag.execution_order(plan) == ["a", "b", "c", "d", "e"]
    reversed_doc = make_plan({"d": ["b", "c"], "c": ["a"], "b": ["a"], "a": []})
    assert dag.execution_order(reversed_doc) == ["a", "c", "b", "d"]


def test_execution_order_follows_phase_order_first() -> None:
    plan = make_plan({"x": [], "y": []}, phases={"x": "2", "y": "1"})
    assert dag.execution_order(plan) == ["y", "x"]


def test_execution_order_survives_a_cycle() -> None:
    plan = make_plan({"a": ["b"], "b": ["a"], "c": []})
    assert sorted(dag.execution_order(plan)) == ["a", "b", "c"]


def test_ready_respects_settled_exclude_and_plan_ticks() -> None:
    plan = make_plan(DIAMOND, done={"a"})
    assert [t.id for t in dag.ready(plan, set())] == ["b", "c", "e"]
    assert [t.id for t in dag.ready(plan, {"b"}, exclude={"e"})] == ["c"]
    assert [t.id for t in dag.ready(plan, {"b", "c"})] == ["d", "e"]


def test_waves() -> None:
    plan = make_plan(DIAMOND)
    assert [[t.id for t in wave] for wave in dag.waves(plan, set())] == [["a", "e"], ["b", "c"], ["d"]]
    assert [[t.id for t in wave] for wave in dag.waves(plan, {"a", "b"})] == [["c", "e"], ["d"]]


def test_descendants_is_what_a_failure_blocks() -> None:
    plan = make_plan(DIAMOND)
    assert dag.descendants(plan, "a") == {"b", "c", "d"}
    assert dag.descendants(plan, "d") == set()


def test_remaining_path_length_for_critical_path_first() -> None:
    plan = make_plan({"a": [], "b": ["a"], "c": ["b"], "x": []})
    assert dag.remaining_path_length(plan, set()) == {"a": 3.0, "b": 2.0, "c": 1.0, "x": 1.0}
    weighted = dag.remaining_path_length(plan, {"a"}, weight=lambda t: 5.0 if t.id == "x" else 1.0)
    assert weighted == {"b": 2.0, "c": 1.0, "x": 5.0}


def test_long_chains_do_not_hit_the_recursion_limit() -> None:
    chain = {f"t{i}": ([f"t{i - 1}"] if i else []) for i in range(20_000)}
    chain["t0"] = ["t19999"]
    plan = make_plan(chain)
    assert len(dag.cycles(plan)[0]) == 20_000
