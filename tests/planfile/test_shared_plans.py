"""The real-world plans in ../shared/plans: counts, phases and order as read by hand."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.domain import dag
from orchestrator.domain.plan import Plan, Severity
from orchestrator.planfile import parse_bytes, parse_plan, with_box

REALTIME = "MemberJunction__MJ__plans__audio-sage-realtime-implementation-plan.md"
PASTE = "MemberJunction__MJ__plans__PASTE-TO-ORCHESTRATOR-REALTIME.md"
SPECKIT_TASKS = "github__spec-kit__templates__tasks-template.md"
SPECKIT_PLAN = "github__spec-kit__templates__plan-template.md"
RALPH = "PepijnSenders__x-cli__@fix_plan.md"
OUROBOROS = "MLGBJDLW__ouroboros__.ouroboros__specs__templates__tasks-template.md"
KIRO = "gregcastro23__WhatToEatNext__.kiro__specs__main-page-restoration__tasks.md"
SEED = "seed-orchestrator-prompt.md"


def load(shared_plans: Path, name: str) -> Plan:
    return parse_plan(shared_plans / name)


@pytest.mark.parametrize(
    ("name", "total", "ticked"),
    [
        (REALTIME, 44, 15),
        (PASTE, 7, 0),
        (SPECKIT_TASKS, 34, 0),
        (SPECKIT_PLAN, 10, 0),
        (RALPH, 23, 11),
        (OUROBOROS, 20, 0),
        (KIRO, 46, 44),
    ],
)
def test_task_counts(shared_plans: Path, name: str, total: int, ticked: int) -> None:
    plan = load(shared_plans, name)
    assert len(plan.tasks) == total
    assert sum(task.checked for task in plan.tasks) == ticked


@pytest.mark.parametrize("name", [REALTIME, PASTE, SPECKIT_TASKS, SPECKIT_PLAN, RALPH, OUROBOROS, KIRO, SEED])
def test_real_plans_have_no_errors_but_kiros_disagreement(shared_plans: Path, name: str) -> None:
    plan = load(shared_plans, name)
    assert plan.errors == []
    assert dag.cycles(plan) == []
    assert len({task.id for task in plan.tasks}) == len(plan.tasks)


def test_realtime_plan_phases_and_first_task(shared_plans: Path) -> None:
    plan = load(shared_plans, REALTIME)
    assert [phase.id for phase in plan.phases] == ["2", "3", "4", "5"]
    assert plan.phases[0].title == "WebSocket Infrastructure"
    order = dag.execution_order(plan)
    first_open = next(plan.task(task_id) for task_id in order if not plan.task(task_id).checked)  # type: ignore[union-attr]
    assert first_open is not None
    assert first_open.line == 1276
    assert first_open.title.startswith("WebSocket connections stable for >5 minutes")
    assert dag.ready(plan, set())[0].line == 1276


def test_realtime_success_criteria_join_their_phase(shared_plans: Path) -> None:
    plan = load(shared_plans, REALTIME)
    by_line = {task.line: task for task in plan.tasks}
    assert by_line[1273].phase == "2"
    assert by_line[1305].phase == "5"
    assert by_line[1228].phase == "5"  # "### 5.6 Security Audit" inside "## Phase 5"
    assert by_line[1228].section_path[-1] == "5.6 Security Audit"
    # The phase's text is its own section, which is what a sub-agent needs to read.
    assert "2.1 Backend WebSocket Setup" in plan.phase("2").text  # type: ignore[union-attr]
    assert "Phase 3: Eleven Labs" not in plan.phase("2").text  # type: ignore[union-attr]
    # Phases run in order: the first task of phase 3 waits for the last of phase 2.
    assert by_line[1281].depends_on == [by_line[1278].id]


def test_ouroboros_optional_tasks_and_explicit_dependencies(shared_plans: Path) -> None:
    plan = load(shared_plans, OUROBOROS)
    assert sorted(task.id for task in plan.tasks if task.optional) == ["1.3", "3.3"]
    assert plan.task("1.2").depends_on == ["1.1"]  # type: ignore[union-attr]
    assert plan.task("1").depends_on == ["1.1", "1.2"]  # type: ignore[union-attr]  # not the optional 1.3
    assert plan.task("3.1").depends_on == ["2"]  # type: ignore[union-attr]  # "Dependencies: Phase 1 complete"
    assert [phase.id for phase in plan.phases][:3] == ["1", "2", "3"]


def test_kiro_parent_child_disagreement_is_reported(shared_plans: Path) -> None:
    plan = load(shared_plans, KIRO)
    warnings = [d for d in plan.diagnostics if d.code == dag.PARENT_CHILD]
    assert [d.line for d in warnings] == [35, 235]
    assert all(d.severity is Severity.WARNING for d in warnings)
    assert not plan.task("3").checked  # type: ignore[union-attr]  # reported, never fixed
    assert plan.task("2.1").parent == "2"  # type: ignore[union-attr]
    assert plan.task("2").depends_on == ["2.1", "2.2", "2.3"]  # type: ignore[union-attr]


def test_speckit_ids_parallel_and_explicit(shared_plans: Path) -> None:
    plan = load(shared_plans, SPECKIT_TASKS)
    assert plan.task("T014").depends_on == ["T012", "T013"]  # type: ignore[union-attr]
    assert plan.task("T005").parallel  # type: ignore[union-attr]
    assert plan.task("T005").depends_on == plan.task("T006").depends_on == ["T004"]  # type: ignore[union-attr]
    assert plan.task("T007").depends_on == ["T005", "T006"]  # type: ignore[union-attr]
    assert plan.task("T010").phase == "3"  # type: ignore[union-attr]
    # TXXX is a placeholder, not an id: six tasks would otherwise share it.
    assert not any(task.id == "TXXX" for task in plan.tasks)


def test_ralph_priority_sections_are_phases(shared_plans: Path) -> None:
    plan = load(shared_plans, RALPH)
    assert [phase.id for phase in plan.phases] == [
        "high-priority",
        "medium-priority",
        "low-priority",
        "completed",
    ]
    assert dag.ready(plan, set())[0].title == "Implement post commands (create, delete, reply)"


def test_seed_prompt_sub_agents_run_side_by_side(shared_plans: Path) -> None:
    plan = load(shared_plans, SEED)
    assert [t.id for t in plan.tasks[:2]] == ["2a", "2b"]
    assert plan.task("2a").line == 52  # type: ignore[union-attr]  # its heading
    assert plan.task("2a").depends_on == plan.task("2b").depends_on == []  # type: ignore[union-attr]
    ready = [task.id for task in dag.ready(plan, set())]
    assert ready == ["2a", "2b"]
    # "(after 6A and 6B complete)"
    assert plan.task("6c").depends_on == ["6a", "6b"]  # type: ignore[union-attr]
    assert [phase.id for phase in plan.phases][:5] == ["2", "3", "4", "5", "6"]


ALL = [REALTIME, PASTE, SPECKIT_TASKS, SPECKIT_PLAN, RALPH, OUROBOROS, KIRO, SEED]


@pytest.mark.parametrize("name", ALL)
def test_every_open_box_ticks_and_unticks_back_to_the_same_bytes(shared_plans: Path, name: str) -> None:
    data = (shared_plans / name).read_bytes()
    plan = parse_bytes(data, shared_plans / name)
    for task in plan.tasks:
        if task.checked:
            continue
        ticked = with_box(data, task, True)
        # One byte per box of the unit (a Sub-Agent's criteria), nothing else.
        changed = [i for i in range(len(data)) if data[i] != ticked[i]]
        assert changed == [o for o in task.box_offsets if data[o : o + 1] == b" "]
        assert changed
        again = parse_bytes(ticked, shared_plans / name)
        assert again.task(task.id) is not None
        assert again.task(task.id).checked  # type: ignore[union-attr]
        assert with_box(ticked, task, False) == data


@pytest.mark.slow  # a wall-clock bound: a loaded machine could fail it for the wrong reason
@pytest.mark.parametrize("name", ALL)
def test_real_plans_parse_well_under_50_ms(shared_plans: Path, name: str) -> None:
    data = (shared_plans / name).read_bytes()
    parse_bytes(data, shared_plans / name)  # warm
    best = min(_timed(lambda: parse_bytes(data, shared_plans / name)) for _ in range(3))
    assert best < 0.050


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def test_kiro_plan_phases_are_its_numbered_parents(shared_plans: Path) -> None:
    plan = load(shared_plans, KIRO)
    parents = [t for t in plan.tasks if t.parent is None]
    assert [p.id for p in plan.phases] == [t.id for t in parents]
    assert plan.task("2.1").phase == "2"  # type: ignore[union-attr]
