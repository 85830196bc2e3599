"""Parsing rules on hand-written plans: fences, boxes, ids, phases, dependencies, verification."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from orchestrator.domain import dag
from orchestrator.domain.plan import BoxState, Plan, Severity, Task
from orchestrator.errors import PlanError
from orchestrator.planfile import parse_bytes, parse_plan
from orchestrator.planfile.parser import MAX_NESTING

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "plans"


def parse(text: str) -> Plan:
    return parse_bytes(text.encode(), Path("plan.md"))


def task(plan: Plan, task_id: str) -> Task:
    found = plan.task(task_id)
    assert found is not None, f"{task_id} not in {[t.id for t in plan.tasks]}"
    return found


def titles(plan: Plan) -> list[str]:
    return [t.title for t in plan.tasks]


def test_fence_traps() -> None:
    plan = parse_plan(FIXTURES / "fences.md")
    assert titles(plan) == [
        "First real task",
        "Second real task, with an example inside the item",
        "Third real task: a bare fence of equal length closed the one above",
        "Fourth real task, after a blank line inside details",
        "Fifth real task, upper-case X",
    ]
    assert [t.checked for t in plan.tasks] == [False, False, False, True, True]
    notes = {d.line: d.message for d in plan.diagnostics if d.severity is Severity.INFO}
    assert "HTML block" in notes[34]
    assert "block quote" in notes[48]
    assert plan.errors == []


def test_a_heading_inside_a_fence_is_not_a_phase() -> None:
    plan = parse_plan(FIXTURES / "fences.md")
    assert [p.id for p in plan.phases] == ["plan"]


def test_box_offsets_point_at_the_box_character() -> None:
    data = (FIXTURES / "fences.md").read_bytes()
    plan = parse_bytes(data, FIXTURES / "fences.md")
    for t in plan.tasks:
        assert data[t.box_offset - 1 : t.box_offset + 2] in (b"[ ]", b"[x]", b"[X]")
        assert data.count(b"\n", 0, t.box_offset) + 1 == t.line


def test_box_offsets_with_crlf_bom_emoji_and_nesting() -> None:
    text = (
        "\ufeff# Plän 🎯\r\n\r\n> quote\r\n\r\n"
        "1. - [ ] nested on one line\r\n- [x] ünïcödé → done\r\n  - [ ] child"
    )
    data = text.encode()
    plan = parse_bytes(data, Path("p.md"))
    assert titles(plan) == ["nested on one line", "ünïcödé → done", "child"]
    for t in plan.tasks:
        assert data[t.box_offset - 1 : t.box_offset + 2] in (b"[ ]", b"[x]")
    assert plan.title == "Plän 🎯"


def test_optional_tasks_and_tabs() -> None:
    plan = parse("# T\n\n- [ ]* 1.3 Write tests\n-\t[ ] 1.4 Tabbed\n")
    assert task(plan, "1.3").optional
    assert task(plan, "1.4").title == "Tabbed"


def test_in_progress_and_skipped_need_a_legend() -> None:
    plan = parse_plan(FIXTURES / "legend.md")
    assert [t.state for t in plan.tasks] == [
        BoxState.DONE,
        BoxState.IN_PROGRESS,
        BoxState.SKIPPED,
        BoxState.OPEN,
    ]
    without = parse("# T\n\n- [/] half\n- [-] skipped\n- [ ] open\n")
    assert titles(without) == ["open"]
    assert sum("no legend" in d.message for d in without.diagnostics) == 2


def test_skipped_tasks_are_settled_for_ready() -> None:
    plan = parse_plan(FIXTURES / "legend.md")
    # The skipped box is settled, but the in-progress one before it is still open work.
    assert [t.title for t in dag.ready(plan, set())] == ["Being worked on"]
    in_progress = plan.tasks[1].id
    assert [t.title for t in dag.ready(plan, {in_progress})] == ["Still open"]


def test_a_box_ticked_out_of_order_does_not_open_later_phases() -> None:
    plan = parse("# P\n\n## Phase 1: A\n\n- [ ] first\n- [x] second\n\n## Phase 2: B\n\n- [ ] third\n")
    first, _, third = plan.tasks
    assert [t.id for t in dag.ready(plan, set())] == [first.id]
    assert [[t.id for t in wave] for wave in dag.waves(plan, set())] == [[first.id], [third.id]]
    assert [t.id for t in dag.ready(plan, {first.id})] == [third.id]


def test_front_matter_is_not_a_heading_or_task() -> None:
    plan = parse("---\ntitle: From front matter\n- [ ] not a task\n---\n\n- [ ] real\n")
    assert titles(plan) == ["real"]
    assert plan.title == "From front matter"


def test_plan_without_checkboxes_has_zero_tasks_and_says_so() -> None:
    plan = parse("# Notes\n\n- a bullet\n- [link](x)\n")
    assert plan.tasks == []
    assert [d.code for d in plan.diagnostics] == [dag.NO_TASKS]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"  \n\n", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "binary"),
        (b"- [ ] caf\xe9\n", "not UTF-8"),
    ],
)
def test_unreadable_content_is_a_plan_error(data: bytes, message: str) -> None:
    with pytest.raises(PlanError, match=message) as caught:
        parse_bytes(data, Path("bad.md"))
    assert "bad.md" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="no such plan file"):
        parse_plan(tmp_path / "missing.md")
    with pytest.raises(PlanError, match="is a directory"):
        parse_plan(tmp_path)


def test_plan_sha256_is_the_digest_of_the_bytes() -> None:
    import hashlib

    data = b"- [ ] one\n"
    assert parse_bytes(data, Path("p.md")).sha256 == hashlib.sha256(data).hexdigest()


# ---- ids ------------------------------------------------------------------------------------


def test_plan_ids_of_every_family() -> None:
    plan = parse(
        "- [ ] T010a [P] spec-kit\n"
        "- [ ] 2. Kiro parent\n"
        "  - [ ] 2.1 Kiro child\n"
        "- [ ] 45-01: GSD plan\n"
        "- [ ] Phase 2.1: GSD inserted phase\n"
        "- [ ] TASK-12 tracker id\n"
        "- [ ] 50 concurrent sessions supported\n"
        "- [ ] 99.5% uptime\n"
    )
    ids = [t.id for t in plan.tasks]
    assert ids[:6] == ["T010a", "2", "2.1", "45-01", "phase-2.1", "TASK-12"]
    assert ids[6] == "50-concurrent-sessions-supported"
    assert ids[7] == "99-5-uptime"
    assert task(plan, "T010a").title == "spec-kit"
    assert task(plan, "T010a").parallel


def test_derived_ids_are_stable_when_tasks_are_inserted() -> None:
    before = parse("## Phase 3: X\n\n- [ ] Write the parser\n- [ ] Write the writer\n")
    after = parse(
        "## Phase 3: X\n\n- [ ] Add a new first task\n- [ ] Write the parser\n- [ ] Write the writer\n"
    )
    assert [t.id for t in before.tasks] == ["3-write-the-parser", "3-write-the-writer"]
    assert [t.id for t in after.tasks][1:] == ["3-write-the-parser", "3-write-the-writer"]


def test_derived_id_collisions_get_a_suffix_and_non_ascii_a_hash() -> None:
    plan = parse("- [ ] Run the tests\n- [ ] Run the tests\n- [ ] 实现登录\n")
    assert [t.id for t in plan.tasks][:2] == ["run-the-tests", "run-the-tests-2"]
    assert plan.tasks[2].id.startswith("t-")
    for t in plan.tasks:
        assert all(c.isalnum() or c in ".-" for c in t.id)


def test_duplicate_and_unknown_ids_and_cycles_are_errors() -> None:
    plan = parse_plan(FIXTURES / "cycle.md")
    codes = sorted(d.code for d in plan.errors)
    assert codes == [dag.CYCLE, dag.DUPLICATE_ID]
    cycle = next(d for d in plan.errors if d.code == dag.CYCLE)
    assert "T101 (line 5)" in cycle.message
    assert "T103 (line 7)" in cycle.message
    assert "T102 (line 6)" in cycle.message
    assert [t.id for t in plan.tasks][-1] == "T001-dup"
    # The order functions still work on a broken plan.
    assert len(dag.execution_order(plan)) == len(plan.tasks)


# ---- phases ---------------------------------------------------------------------------------


def test_a_heading_that_names_a_phase_puts_its_tasks_in_that_phase() -> None:
    plan = parse(
        "# Plan\n\n## Phase 1: Build\n\nText of phase one.\n\n### 1.1 Step\n\n- [ ] build it\n\n"
        "## Phase 2: Ship\n\n- [ ] ship it\n\n## Success Metrics\n\n### Phase 1 Success Criteria\n\n"
        "- [ ] it builds\n"
    )
    assert [p.id for p in plan.phases] == ["1", "2"]
    assert plan.tasks[2].phase == "1"
    assert "Text of phase one." in plan.phases[0].text
    assert "it builds" in plan.phases[0].text
    assert "ship it" not in plan.phases[0].text
    # Phases run in order: ship waits for both phase-1 tasks, the last of which is on line 20.
    assert task(plan, "2-ship-it").depends_on == ["1-it-builds"]


def test_tasks_before_any_heading_go_to_the_implicit_phase() -> None:
    plan = parse("- [ ] a\n- [ ] b\n")
    assert [(p.id, p.line) for p in plan.phases] == [("plan", None)]
    assert task(plan, "b").depends_on == ["a"]


def test_repeated_phase_numbers_with_other_titles_are_separate_phases() -> None:
    plan = parse("## v1\n### Phase 1: Alpha\n- [ ] a\n## v2\n### Phase 1: Beta\n- [ ] b\n")
    assert [p.id for p in plan.phases] == ["1", "1~2"]
    assert task(plan, "1-b").phase == "1~2"


def test_gsd_roadmap() -> None:
    plan = parse_plan(FIXTURES / "gsd.md")
    assert [(p.id, p.title) for p in plan.phases] == [("1", "Foundation"), ("2", "Features"), ("3", "Polish")]
    assert plan.phases[1].depends_on == ["1"]
    # The phase items come after the plans of their phase.
    assert task(plan, "phase-2").depends_on == ["02-02"]
    assert task(plan, "02-01").depends_on == ["phase-1"]
    # Phase 3 depends on phase 1 only, so it is ready beside phase 2.
    assert [t.id for t in dag.ready(plan, set())] == ["02-01", "03-01"]
    assert task(plan, "02-01").verify == ["pytest tests/test_model.py"]
    assert task(plan, "02-02").verify == ["pytest tests/test_view.py", "ruff check src"]


# ---- dependencies ---------------------------------------------------------------------------


def test_speckit_explicit_and_free_statements() -> None:
    plan = parse_plan(FIXTURES / "speckit.md")
    assert task(plan, "T002").depends_on == task(plan, "T001").id.split()
    assert task(plan, "T005").depends_on == ["T004"]
    assert task(plan, "T008").depends_on == ["T006", "T007"]
    assert "T004" in task(plan, "T006").depends_on  # "T004 blocks T006"
    assert "T002" in task(plan, "T003").depends_on  # "T001 → T002 → T003"
    unknown = [d for d in plan.errors if d.code == dag.UNKNOWN_ID]
    assert [(d.line, "T999" in d.message) for d in unknown] == [(20, True)]


def test_ranges_and_kiro_dependencies() -> None:
    plan = parse(
        "## Phase 1: A\n\n- [ ] T001 a\n- [ ] T002 b\n- [ ] T003 c\n- [ ] T003a c2\n- [ ] T004 d\n\n"
        "## Phase 2: B\n\n- [ ] T010 e (depends on T001–T003a)\n"
        "- [ ] 3.1 f\n  - Dependencies: Task 1.9\n- [ ] 3.2 g\n  - Dependencies: None\n"
    )
    assert task(plan, "T010").depends_on == ["T001", "T002", "T003", "T003a", "T004"]
    assert [d.code for d in plan.errors] == [dag.UNKNOWN_ID]
    # "Dependencies: None" drops the in-phase order, but phase 2 still follows phase 1.
    assert task(plan, "3.2").depends_on == ["T004"]


def test_parallel_runs_and_optional_tasks() -> None:
    plan = parse(
        "- [ ] T001 first\n- [ ] T002 [P] left\n- [ ] T003 [P] right\n- [ ]* T004 optional\n- [ ] T005 join\n"
    )
    assert task(plan, "T002").depends_on == task(plan, "T003").depends_on == ["T001"]
    assert task(plan, "T004").depends_on == ["T002", "T003"]
    assert task(plan, "T005").depends_on == ["T002", "T003"]  # nothing waits on an optional task
    waves = [[t.id for t in wave] for wave in dag.waves(plan, set())]
    assert waves == [["T001"], ["T002", "T003"], ["T004", "T005"]]


def test_sections_that_run_in_parallel_and_after() -> None:
    plan = parse(
        "## Phase 2: Build\n\n#### Sub-Agent 2A: one\n\n- [ ] a1\n- [ ] a2\n\n"
        "#### Sub-Agent 2B: two\n\n**Launch:** (can run in parallel with 2A)\n\n- [ ] b1\n\n"
        "#### Sub-Agent 2C: three\n\n**Launch:** (after 2A and 2B complete)\n\n- [ ] c1\n\n"
        "### Phase 3: Next\n\n**Wait for:** Phase 2 sub-agents to complete\n\n- [ ] d1\n"
    )
    # Each Sub-Agent heading is one unit; its boxes are its steps.
    assert [t.id for t in plan.tasks] == ["2a", "2b", "2c", "3-d1"]
    assert [s.title for s in task(plan, "2a").steps] == ["a1", "a2"]
    assert task(plan, "2b").depends_on == []
    assert task(plan, "2c").depends_on == ["2a", "2b"]
    assert task(plan, "3-d1").depends_on == ["2c"]
    assert plan.phase("3").depends_on == ["2"]  # type: ignore[union-attr]


def test_parent_depends_on_children_and_disagreement_both_ways() -> None:
    plan = parse("- [x] 1. parent\n  - [ ] 1.1 open child\n- [ ] 2. parent\n  - [x] 2.1 done child\n")
    assert task(plan, "1").depends_on == ["1.1"]
    messages = [d.message for d in plan.diagnostics if d.code == dag.PARENT_CHILD]
    assert len(messages) == 2
    assert "1 is ticked" in messages[0]
    assert "2 is not ticked" in messages[1]


def test_verify_commands() -> None:
    plan = parse(
        "- [ ] one. Run: `make test`\n"
        "- [ ] two\n  - **Verify:** `pytest -q` then `ruff check .`\n  - Verification: `mypy --strict x`\n"
        "- [ ] three: run `not a label` and Test: ``echo `hi` ``\n"
        "- [ ] four with `code` but no label\n"
    )
    assert [t.verify for t in plan.tasks] == [
        ["make test"],
        ["pytest -q", "ruff check .", "mypy --strict x"],
        ["echo `hi`"],
        [],
    ]


def test_task_context_is_its_own_item_with_sub_bullets() -> None:
    plan = parse(
        "- [ ] 1. parent\n  note for parent\n  - [ ] 1.1 child\n    - detail of child\n- [ ] 2. next\n"
    )
    assert task(plan, "1").context == "- [ ] 1. parent\n  note for parent"
    assert task(plan, "1.1").context == "- [ ] 1.1 child\n  - detail of child"


def test_flat_kiro_children_belong_to_their_numbered_parent() -> None:
    plan = parse(
        "# Plan\n\n- [ ] 1. Setup\n- [ ] 2. Models\n"
        "- [ ] 2.1 Base classes\n- [ ] 2.2 Validation\n- [ ] 3. API\n"
    )
    assert task(plan, "2.1").parent == "2"
    assert task(plan, "2").depends_on == ["2.1", "2.2"]
    assert task(plan, "2.1").depends_on == ["1"]
    assert task(plan, "3").depends_on == ["2"]


def test_a_title_that_wraps_keeps_its_second_line_but_not_a_verify_line() -> None:
    plan = parse(
        "# T\n\n- [ ] T001 Add a thing that is long\n  and wraps onto a second line\n"
        "  Verify: `true`\n- [ ] T002 Short\n"
    )
    first, second = plan.tasks
    assert first.title == "Add a thing that is long and wraps onto a second line"
    assert first.verify == ["true"]
    assert second.title == "Short"


# ---- real-world shapes: GSD roadmaps across milestones -----------------------------------------


def test_gsd_plan_files_as_items_carry_the_plan_id() -> None:
    plan = parse_plan(FIXTURES / "gsd_milestones.md")
    plans = {t.id: t.title for t in plan.tasks if not t.id.startswith("phase-")}
    assert plans == {
        "08-01": "Filter mesh and frame",
        "08-02": "Clip-in mount",
        "07-01": "Spout geometry",
        "7.1-01": "Sleeve moulding",
        "09-01": "Contacts and cord",
    }
    assert task(plan, "08-01").phase == "8"
    assert task(plan, "7.1-01").phase == "7.1"


def test_gsd_phases_run_in_the_order_of_the_phase_list_and_take_its_names() -> None:
    plan = parse_plan(FIXTURES / "gsd_milestones.md")
    # The "Phase Details" headings come as 8, 7, 7.1, 9; the list (and the plan) says 7, 7.1, 8, 9.
    assert [p.id for p in plan.phases] == ["5", "5.1", "6", "7", "7.1", "8", "9", "10"]
    assert plan.phase("5").title == "Heating Element"  # type: ignore[union-attr]  # from the list item
    assert plan.phase("10").title == "Tea Basket"  # type: ignore[union-attr]
    assert plan.phase("8").title == "Filter"  # type: ignore[union-attr]  # the heading's
    # A decimal phase is inserted after its integer one, not a sub-task of it.
    assert task(plan, "phase-5.1").parent is None
    assert task(plan, "phase-5.1").depends_on == ["phase-5"]


def test_gsd_depends_on_ignores_asides_and_knows_earlier_milestones() -> None:
    plan = parse_plan(FIXTURES / "gsd_milestones.md")
    # "**Depends on**: Phase 7.1 (v2.0 handle done first)": the aside names no phase.
    assert task(plan, "08-01").depends_on == ["phase-7.1"]
    assert plan.phase("8").depends_on == ["7.1"]  # type: ignore[union-attr]
    # "Phase 4" was shipped in a milestone this file no longer lists: a warning, not an error.
    assert plan.errors == []
    warning = next(d for d in plan.diagnostics if d.severity is Severity.WARNING)
    assert warning.line == 41
    assert "phase 4" in warning.message
    assert task(plan, "07-01").depends_on == []


def test_gsd_phases_that_run_in_parallel() -> None:
    plan = parse_plan(FIXTURES / "gsd_milestones.md")
    # Phase 7 "can run in parallel with any v2.0 phase": nothing waits for it by default.
    assert task(plan, "phase-7").parallel
    assert "phase-7" not in dag_ancestors(plan, "phase-10")
    # "(can run in parallel with Phases 7-7.1 ...)": a range of phases, and what follows waits for both.
    assert plan.phase("9").parallel_with == ["7", "7.1"]  # type: ignore[union-attr]
    assert task(plan, "09-01").depends_on == ["phase-8"]
    assert "phase-9" in task(plan, "phase-10").depends_on
    assert [t.id for t in dag.ready(plan, set())] == ["07-01", "08-01"]


def dag_ancestors(plan: Plan, task_id: str) -> set[str]:
    found: set[str] = set()
    stack = list(task(plan, task_id).depends_on)
    while stack:
        current = stack.pop()
        if current not in found:
            found.add(current)
            stack.extend(task(plan, current).depends_on)
    return found


# ---- real-world shapes: Kiro's numbered parents ----------------------------------------------


def test_kiro_numbered_parents_are_phases() -> None:
    plan = parse_plan(FIXTURES / "kiro_phases.md")
    assert [(p.id, p.title, p.line) for p in plan.phases] == [
        ("1", "Set up the project", 3),
        ("2", "Build the store", 12),
        ("3", "Optional extras", 21),
        ("4", "Checkpoint - all tests pass", 25),
    ]
    assert task(plan, "1.2").phase == "1"  # a flat child joins its parent's phase
    assert task(plan, "review-the-schema-with-the-team").phase == "2"  # so does an unnumbered task after it
    # The phase's text is the parent item and what belongs to it: a sub-agent's context.
    text = plan.phase("2").text  # type: ignore[union-attr]
    assert "Define the schema" in text
    assert "Benchmark the schema" in text
    assert "Set up the project" not in text
    assert "Optional extras" not in text
    # Phases run in order: 2.1 waits for parent 1, which waits for its required children.
    assert task(plan, "1").depends_on == ["1.1", "1.2"]
    assert task(plan, "2.1").depends_on == ["1"]
    assert plan.errors == []


def test_a_plain_numbered_list_is_not_split_into_phases() -> None:
    plan = parse("# Chores\n\n- [ ] 1. Buy milk\n- [ ] 2. Walk the dog\n")
    assert [p.id for p in plan.phases] == ["plan"]
    assert task(plan, "2").depends_on == ["1"]


def test_optional_tasks_never_hide_the_end_of_a_phase() -> None:
    plan = parse_plan(FIXTURES / "kiro_phases.md")
    review = "review-the-schema-with-the-team"
    # The optional benchmark waits for the review; the review is still where phase 2 ends, so the
    # next required phase (3 is optional throughout) waits for it.
    assert task(plan, "benchmark-the-schema").depends_on == [review]
    assert task(plan, "4").depends_on == [review]
    # An optional parent whose children are all optional is done when they are.
    assert task(plan, "3").depends_on == ["3.1", "3.2"]


def test_a_heading_that_only_mentions_a_phase_again_is_not_reported() -> None:
    plan = parse(
        "## Phase 2: Database\n\n- [ ] T001 schema\n\n## Parallel Execution Guide\n\n"
        "### Phase 2 (Database) - Maximum Parallelization\n\nT001 alone.\n"
    )
    assert plan.diagnostics == []
    assert [p.id for p in plan.phases] == ["2"]


def test_a_shell_block_under_a_verify_label_is_the_tasks_commands() -> None:
    plan = parse_plan(FIXTURES / "verify_blocks.md")
    assert [t.verify for t in plan.tasks] == [
        ["make build", "./scripts/check.sh --strict"],  # comments dropped, continuations joined
        ["mkdocs build --strict", "vale docs/"],  # console prompts dropped; inline commands too
        ["python -m app.settings --check"],  # ~~~ fences, no language
        [],  # a JSON block is not a command
        [],  # the label does not end its line; an example block is not a check
    ]
    assert task(plan, "T001").title == "Compile the extension"


def test_a_dependencies_label_over_a_bullet_list() -> None:
    plan = parse(
        "## Phase 1: Core\n\n- [ ] core\n\n## Phase 2: Docs\n\n- [ ] docs\n\n"
        "## Phase 3: Release\n\n**Dependencies:**\n- Phase 1 complete\n- Nothing else (docs can wait)\n\n"
        "- [ ] ship\n- [ ] 3.1 announce\n  - Dependencies:\n    - Task 9.9\n"
    )
    # Phase 3 waits for phase 1 only, so it may run beside phase 2.
    assert task(plan, "3-ship").depends_on == ["1-core"]
    assert plan.phase("3").depends_on == ["1"]  # type: ignore[union-attr]
    unknown = [d for d in plan.errors if d.code == dag.UNKNOWN_ID]
    assert [(d.line, "9.9" in d.message) for d in unknown] == [(16, True)]


def test_numbers_in_prose_are_not_task_ids() -> None:
    plan = parse(
        "# Rollout\n\n- [ ] 1. Pilot\n  - [ ] 1.1 Pick a region\n- [ ] 2. Expand\n- [ ] 3. Approve\n\n"
        "Rolling out to 1 region requires 3 approvals. T1 → 1.1 is fine.\n"
    )
    assert plan.errors == []
    assert task(plan, "1.1").depends_on == []


# ---- real-world shapes: spec-kit dependency sections ------------------------------------------


def test_a_comma_ends_one_depends_on_statement_and_starts_the_next() -> None:
    plan = parse_plan(FIXTURES / "speckit_order.md")
    # "T003 depends on T002 (Dialog), T004 depends on T001": T003 does not wait for T004.
    assert "T004" not in task(plan, "T003").depends_on
    assert "T002" in task(plan, "T003").depends_on
    assert "T001" in task(plan, "T004").depends_on
    assert "T003" not in task(plan, "T001").depends_on


def test_a_stated_order_wins_over_the_order_of_the_list() -> None:
    plan = parse_plan(FIXTURES / "speckit_order.md")
    # "Recommended order: T005 → T007 → T006": the footer comes last although listed second.
    assert plan.errors == []
    assert dag.cycles(plan) == []
    order = dag.execution_order(plan)
    assert order.index("T005") < order.index("T007") < order.index("T006")
    assert task(plan, "T007").depends_on == ["T005"]
    note = next(d for d in plan.diagnostics if d.severity is Severity.INFO)
    assert note.line == 22
    assert "T006 waits for T007" in note.message


def deep_list(depth: int, after: str = "") -> str:
    return (
        "# Deep\n\n" + "".join("  " * n + f"- [ ] T{n + 1:03d} level {n + 1}\n" for n in range(depth)) + after
    )


def test_boxes_nested_deep_are_tasks_with_their_parents() -> None:
    plan = parse(deep_list(MAX_NESTING // 2 - 1))
    assert [t.id for t in plan.tasks] == [f"T{n:03d}" for n in range(1, MAX_NESTING // 2)]
    assert plan.errors == []
    for parent, child in itertools.pairwise(plan.tasks):
        assert child.line == parent.line + 1


def test_nesting_past_the_bound_is_an_error_at_the_first_line_not_read() -> None:
    depth = MAX_NESTING // 2 - 1
    plan = parse(deep_list(depth + 5, after="\n- [ ] T999 a top-level task after it\n"))
    assert len(plan.tasks) == depth
    [error] = plan.errors
    assert error.code == "nesting"
    assert error.line == 3 + depth
    assert f"lines {3 + depth}-{3 + depth + 6} are not read" in error.message


@pytest.mark.parametrize(
    "text",
    [
        ">" * 100_000 + " - [ ] deep\n",
        "- " * 100_000 + "[ ] deep\n",
        "".join("   " * n + "1. [ ] x\n" for n in range(500)),
        "".join("> " * (n % 120) + "- x\n" for n in range(5000)),
    ],
    ids=["quotes", "bullets-on-one-line", "ordered-lists", "mixed"],
)
def test_pathological_nesting_parses_without_recursion_and_is_reported(text: str) -> None:
    plan = parse("- [ ] T1 first\n\n" + text)
    assert [t.id for t in plan.tasks][:1] == ["T1"]
    assert [d.code for d in plan.errors] == ["nesting"]


GSD_ROADMAP_WITH_ARCHIVE = """\
# Roadmap: Recipe Box

## Milestones

- [x] **v1.0 MVP** - Phases 1-4 (shipped 2026-03-02)
- [ ] **v1.1 Sharing** - Phases 5-6

## Phases

- [x] **Phase 1: Foundation** - skeleton
- [x] **Phase 2: Recipe Storage** - store recipes
- [ ] **Phase 5: Share Links** - share links
- [ ] **Phase 6: Public Pages** - public pages

## Phase Details

### Phase 5: Share Links
**Goal**: share
**Depends on**: Phase 4

Plans:
- [ ] 05-01: link model
- [ ] 05-02: revoke

### Phase 6: Public Pages
**Goal**: pages
**Depends on**: Phase 5

Plans:
- [ ] 06-01: route
"""


def test_gsd_roadmap_milestone_lines_and_a_collapsed_milestone(tmp_path: Path) -> None:
    path = tmp_path / "ROADMAP.md"
    path.write_text(GSD_ROADMAP_WITH_ARCHIVE)
    plan = parse_plan(path)
    # The milestone lines summarise phases; they are not units of work.
    assert not any("v1.1" in t.title or "v1.0" in t.title for t in plan.tasks)
    assert [p.id for p in plan.phases] == ["1", "2", "5", "6"]
    # Phase 4 is archived (phases 1 and 2 are listed, done; 5 is the first with open work): done.
    assert plan.errors == []
    assert any("phase 4" in d.message and d.severity is Severity.WARNING for d in plan.diagnostics)
    assert task(plan, "05-01").depends_on == []
    # A phase missing between two with open work is still a mistake.
    gap = GSD_ROADMAP_WITH_ARCHIVE.replace("- [x] **Phase 1", "- [ ] **Phase 1")
    path.write_text(gap)
    assert any("phase 4" in d.message for d in parse_plan(path).errors)
