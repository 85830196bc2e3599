"""Units of work, their steps and criteria, the checks plans carry and the dependencies they state in
prose and tables (issue 12 items 1, 2, 3, 7): per family on small fixtures, and on the real plans in
../shared/plans with the counts read from them by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.domain import dag
from orchestrator.domain.plan import BoxState, Expectation, Plan, StepKind, Task, TaskKind
from orchestrator.planfile import parse_bytes, parse_plan, with_box

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "plans"

WAGGLE = "seungpyoson__waggle__docs__superpowers__plans__2026-03-27-waggle-machine-runtime.md"
ORBITAL = "slothworks-apps__orbital__docs__superpowers__plans__2026-09-30-session-instructions.md"
SNNDL = "NJUAIXGY__SnnDL__docs__plans__2026-03-11-local-storage-phaseA-implementation-plan.md"
SEED = "seed-orchestrator-prompt.md"
REALTIME = "MemberJunction__MJ__plans__audio-sage-realtime-implementation-plan.md"
PASTE = "MemberJunction__MJ__plans__PASTE-TO-ORCHESTRATOR-REALTIME.md"


def fixture(name: str) -> Plan:
    return parse_plan(FIXTURES / name)


def task(plan: Plan, task_id: str) -> Task:
    found = plan.task(task_id)
    assert found is not None, f"{task_id} not in {[t.id for t in plan.tasks]}"
    return found


def parse(text: str) -> Plan:
    return parse_bytes(text.encode(), Path("plan.md"))


# ---- superpowers, current format: checkbox steps -------------------------------------------------


def test_superpowers_task_is_one_unit_with_its_step_boxes_and_checks() -> None:
    plan = fixture("superpowers_steps.md")
    assert [(t.id, t.kind) for t in plan.tasks] == [
        ("task-1", TaskKind.HEADING),
        ("task-2", TaskKind.HEADING),
    ]
    first = task(plan, "task-1")
    assert first.title == "The greeting function"
    assert first.line == 18
    assert first.box_offset is None
    assert [s.title for s in first.steps] == [
        "Step 1: Write the failing test",
        "Step 2: Run test to verify it fails",
        "Step 3: Write minimal implementation",
        "Step 4: Run test to verify it passes",
        "Step 5: Commit",
    ]
    assert all(s.kind is StepKind.STEP and s.box_offset is not None for s in first.steps)
    assert first.files == ["greeter.py", "tests/test_greeter.py"]  # "Test: `...`" is a file, not a check
    red, green = first.checks
    assert (red.expect, red.step, red.line) == (Expectation.FAIL, 1, 36)
    assert red.command == "cd /Users/someone/Projects/greeter && pytest tests/test_greeter.py -q"
    assert red.expected.startswith("FAIL with")
    assert not red.final
    assert (green.command, green.expect, green.step) == (
        "pytest tests/test_greeter.py -q",
        Expectation.PASS,
        3,
    )
    assert first.verify == ["pytest tests/test_greeter.py -q"]  # the red step is not a final check
    second = task(plan, "task-2")
    assert second.depends_on == ["task-1"]
    assert [(c.command, c.expect) for c in second.checks] == [
        ("python greeter.py Ada", Expectation.OUTPUT),  # "prints ...": for a reviewer
        ("pytest -q", Expectation.PASS),  # a shell block under "Run:", "Expected: both PASS."
        ('python -c "import greeter"', Expectation.PASS),
    ]
    assert second.verify == ["pytest -q", 'python -c "import greeter"']
    # The commit step's git commands are never checks: orchestrate commits.
    assert not any(c.command.startswith("git") for t in plan.tasks for c in t.checks)
    assert plan.preamble.startswith("> **For agentic workers:**")


def test_ticking_a_superpowers_unit_ticks_every_step_box_one_byte_each() -> None:
    data = (FIXTURES / "superpowers_steps.md").read_bytes()
    plan = parse_bytes(data, FIXTURES / "superpowers_steps.md")
    unit = task(plan, "task-1")
    ticked = with_box(data, unit, True)
    assert [i for i in range(len(data)) if data[i] != ticked[i]] == unit.box_offsets
    assert len(unit.box_offsets) == 5
    again = parse_bytes(ticked, FIXTURES / "superpowers_steps.md")
    assert task(again, "task-1").state is BoxState.DONE
    assert task(again, "task-2").state is BoxState.OPEN
    assert with_box(ticked, task(again, "task-1"), False) == data


# ---- superpowers, older format: paragraph steps ----------------------------------------------------


def test_older_superpowers_paragraph_steps_and_checks_in_any_language() -> None:
    plan = fixture("superpowers_paragraphs.md")
    first, second = plan.tasks
    assert [s.title for s in first.steps] == [
        "Step 1: Write the failing test",
        "Step 2: Run test to verify it fails",
        "Step 3: Write minimal implementation",
        "Step 4: Run test to verify it passes",
    ]
    assert all(s.box_offset is None for s in first.steps)
    assert first.boxless
    assert [(c.command, c.expect, c.step) for c in first.checks] == [
        ("go test ./cache -run TestCache -count=1", Expectation.FAIL, 1),  # 编译失败
        ("go test ./cache -count=1", Expectation.PASS, 3),  # a bare shell block, then 退出码 0
    ]
    assert [(c.command, c.expect) for c in second.checks] == [
        ("go build ./...", Expectation.PASS),  # two Run: lines share one Expected:
        ("go vet ./cache", Expectation.PASS),
        ("go run ./cmd/server --dry-run", Expectation.OUTPUT),  # "No output"
    ]


# ---- GSD PLAN.md -------------------------------------------------------------------------------------


def test_gsd_task_blocks_with_verify_done_and_front_matter_depends_on() -> None:
    plan = fixture("gsd_plan.md")
    assert plan.requires == ["02-01"]
    assert [(t.id, t.kind) for t in plan.tasks] == [
        ("task-1", TaskKind.BLOCK),
        ("task-2", TaskKind.BLOCK),
        ("check-the-login-page-by-hand", TaskKind.BLOCK),
    ]
    login, store, human = plan.tasks
    assert login.title == "Login endpoint"
    assert login.files == ["src/auth/login.ts", "src/auth/login.test.ts"]
    assert login.verify == ["npm test -- login"]
    assert [(s.title, s.kind) for s in login.steps] == [
        ("POST /login returns a session cookie for a valid user", StepKind.CRITERION)
    ]
    assert login.uncovered == []  # its verify passes for it
    assert [(c.command, c.expect) for c in store.checks] == [
        ("npx tsc --noEmit", Expectation.PASS),
        ("curl -s localhost:3000/me", Expectation.OUTPUT),
    ]
    assert store.depends_on == ["task-1"]
    assert human.manual
    assert human.verify == []
    assert human.uncovered == ["A human saw the dashboard"]


# ---- heading plans without boxes -------------------------------------------------------------------


def test_heading_plan_marks_optional_and_prose_dependencies() -> None:
    plan = fixture("heading_plan.md")
    assert [t.id for t in plan.tasks] == ["task-1", "task-2", "task-3", "task-4", "fix-5", "task-6"]
    assert all(t.kind is TaskKind.HEADING and t.boxless for t in plan.tasks)
    assert task(plan, "task-1").mark == "✅"  # "### ✅ TASK 1"
    assert task(plan, "task-1").checked
    assert task(plan, "task-3").mark == "⏸️"
    assert not task(plan, "task-3").checked
    assert task(plan, "fix-5").optional
    assert task(plan, "fix-5").title == "Faster startup"
    # "Tasks 1-3 can be done in parallel (different packages). Task 4 depends on 1+3."
    assert task(plan, "task-2").depends_on == task(plan, "task-3").depends_on == []
    assert task(plan, "task-4").depends_on == ["task-1", "task-3"]
    assert task(plan, "task-6").depends_on == ["task-4"]  # nothing waits on the optional fix
    assert task(plan, "task-1").verify == ["go test ./pkg/reader/..."]
    assert plan.errors == []


def test_depends_on_column() -> None:
    plan = fixture("depends_table.md")
    assert {t.id: t.depends_on for t in plan.tasks} == {
        "task-1": [],
        "task-2": ["task-1"],
        "task-3": ["task-1"],
        "task-4": ["task-2", "task-3"],
    }


def test_depends_on_column_naming_an_unknown_task_is_a_lint_error() -> None:
    plan = parse(
        "# P\n\n| Task | Depends On |\n|---|---|\n| 2 | 7 |\n\n## Task 1: a\n\nx\n\n## Task 2: b\n\ny\n"
    )
    assert [d.code for d in plan.errors] == [dag.UNKNOWN_ID]
    assert plan.errors[0].line == 5


def test_box_less_phase_headings_with_a_tasks_list() -> None:
    plan = fixture("phase_tasks.md")
    assert [(t.id, t.phase, t.title) for t in plan.tasks] == [
        ("phase-1", "1", "Data model"),
        ("phase-2", "2", "Rendering"),
    ]
    first = plan.tasks[0]
    assert [(s.title, s.kind) for s in first.steps] == [
        ("Add the `reports` table", StepKind.STEP),
        ("Add the migration", StepKind.STEP),
        ("reports can be stored", StepKind.CRITERION),
    ]
    assert first.uncovered == ["reports can be stored"]
    assert plan.tasks[1].depends_on == ["phase-1"]


def test_heading_units_numbered_again_in_each_phase_get_the_phase_first() -> None:
    plan = parse("# P\n\n## Phase 1: A\n\n### Task 1: a\n\nx\n\n## Phase 2: B\n\n### Task 1: b\n\ny\n")
    assert [t.id for t in plan.tasks] == ["1-task-1", "2-task-1"]
    assert plan.errors == []


def test_a_long_unit_text_states_no_dependency_by_accident() -> None:
    plan = parse(
        "# P\n\n### Task 1: a\n\nThe runner waits for 5 seconds.\n\n```go\n// depends on T999\n```\n\n"
        "### Task 2: b\n\nIt waits for 2 minutes too.\n"
    )
    assert task(plan, "task-2").depends_on == ["task-1"]
    assert plan.errors == []


# ---- the seed: Sub-Agent units ---------------------------------------------------------------------


def test_seed_shaped_sub_agents_are_units_with_criteria() -> None:
    plan = fixture("seed_units.md")
    assert [t.id for t in plan.tasks] == ["2a", "2b", "3a", "3b", "3c"]
    backend = task(plan, "2a")
    assert [(s.title, s.kind) for s in backend.steps] == [
        ("Handler class manages sessions", StepKind.CRITERION),
        ("TypeScript compiles without errors", StepKind.CRITERION),
    ]
    assert backend.uncovered == ["Handler class manages sessions", "TypeScript compiles without errors"]
    assert task(plan, "2b").state is BoxState.OPEN  # one of its two boxes ticked
    assert task(plan, "2b").depends_on == []  # can run in parallel with 2A
    assert task(plan, "3a").depends_on == ["2a", "2b"]  # Wait for: Phase 2 sub-agents
    assert task(plan, "3b").depends_on == ["2a", "2b"]
    assert task(plan, "3c").depends_on == ["3a", "3b"]  # (after 3A and 3B complete)
    # The global checklist speaks to every unit: rules, not tasks.
    assert [r.title for r in plan.rules] == ["Critical Rules", "Verification Standards"]
    assert "No `any` types used" in plan.rules[1].text
    assert plan.preamble == "You are an autonomous orchestrator."


# ---- spec-kit: check tasks and the `__` title bug --------------------------------------------------


def test_code_spans_keep_their_underscores_in_titles() -> None:
    plan = fixture("speckit_converge.md")
    assert task(plan, "T003").title == "Move the CLI entry into `src/specify_cli/__init__.py`"
    assert task(plan, "T004").title == "Add `__main__` support in `src/specify_cli/__main__.py`"
    assert task(plan, "T005").title == "Export `main` from `src/specify_cli/__init__.py`"
    heading = parse("# P\n\n### Task 1: Edit `pkg/__init__.py`\n\nx\n")
    assert heading.tasks[0].title == "Edit pkg/__init__.py"


def test_a_task_whose_text_is_a_command_is_a_check_task() -> None:
    plan = fixture("speckit_converge.md")
    check = task(plan, "T011")
    assert check.command == "uv run pytest tests/unit -q"
    assert check.verify == ["uv run pytest tests/unit -q"]
    assert task(plan, "T012").command is None


# ---- no task of any kind ---------------------------------------------------------------------------


def test_a_plan_with_no_task_of_any_kind_parses_to_zero_tasks_and_a_diagnostic() -> None:
    plan = fixture("no_tasks.md")
    assert plan.tasks == []
    assert [d.code for d in plan.diagnostics] == [dag.NO_TASKS]
    assert "### Task 1" in plan.diagnostics[0].message


# ---- the real plans in ../shared/plans -------------------------------------------------------------

# name: (units, step boxes, ticked units, checks, of which expected to fail)
SHARED_COUNTS = {
    WAGGLE: (6, 36, 0, 13, 6),
    ORBITAL: (5, 28, 5, 9, 3),
    SNNDL: (5, 0, 0, 12, 3),
    SEED: (12, 58, 0, 0, 0),
}


@pytest.mark.parametrize("name", list(SHARED_COUNTS))
def test_shared_heading_plans_units_steps_and_checks(shared_plans: Path, name: str) -> None:
    plan = parse_plan(shared_plans / name)
    units, boxes, ticked, checks, red = SHARED_COUNTS[name]
    assert len(plan.tasks) == units
    assert all(t.kind is TaskKind.HEADING for t in plan.tasks)
    assert sum(len([s for s in t.steps if s.box_offset is not None]) for t in plan.tasks) == boxes
    assert sum(t.checked for t in plan.tasks) == ticked
    assert sum(len(t.checks) for t in plan.tasks) == checks
    assert sum(c.expect is Expectation.FAIL for t in plan.tasks for c in t.checks) == red
    assert plan.errors == []
    # Document order: each unit waits for the one before it (the seed's sub-agents aside).
    if name != SEED:
        assert [t.depends_on for t in plan.tasks] == [[]] + [[t.id] for t in plan.tasks[:-1]]


def test_waggle_units(shared_plans: Path) -> None:
    plan = parse_plan(shared_plans / WAGGLE)
    assert [len(t.steps) for t in plan.tasks] == [6, 5, 7, 6, 6, 6]
    first = plan.tasks[0]
    assert first.title == "Define Runtime Types and Local Paths"
    assert first.files == [
        "internal/runtime/types.go",
        "internal/config/config.go",
        "internal/config/config_test.go",
    ]
    assert first.verify == ["go test ./internal/config ./internal/runtime -count=1"]
    assert plan.tasks[-1].verify == ["go test ./... -count=1", "go build ./..."]  # Run: over a bash block


def test_orbital_units_are_done_and_their_commands_were_written_on_the_authors_machine(
    shared_plans: Path,
) -> None:
    plan = parse_plan(shared_plans / ORBITAL)
    assert [len(t.steps) for t in plan.tasks] == [5, 6, 6, 6, 5]
    assert all(
        c.command.startswith("cd /Users/tomin/Projects/slothworks/orbital && ")
        for t in plan.tasks
        for c in t.checks
    )
    assert [c.expect for c in plan.tasks[3].checks] == [Expectation.PASS, Expectation.PASS]  # "clean."
    assert [r.title for r in plan.rules] == ["Global Constraints"]


def test_snndl_paragraph_steps(shared_plans: Path) -> None:
    plan = parse_plan(shared_plans / SNNDL)
    assert [len(t.steps) for t in plan.tasks] == [4, 4, 4, 2, 2]
    assert all(t.boxless for t in plan.tasks)
    assert [len(t.verify) for t in plan.tasks] == [1, 1, 2, 4, 1]


def test_seed_units_and_their_criteria(shared_plans: Path) -> None:
    plan = parse_plan(shared_plans / SEED)
    assert [t.id for t in plan.tasks] == [
        "2a",
        "2b",
        "3a",
        "3b",
        "4a",
        "4b",
        "5a",
        "5b",
        "5c",
        "6a",
        "6b",
        "6c",
    ]
    assert [len(t.steps) for t in plan.tasks] == [5, 5, 6, 5, 7, 5, 5, 4, 5, 4, 3, 4]
    assert all(s.kind is StepKind.CRITERION for t in plan.tasks for s in t.steps)
    assert all(len(t.uncovered) == len(t.steps) for t in plan.tasks)  # no command checks any of them
    deps = {t.id: t.depends_on for t in plan.tasks}
    assert deps["2b"] == []
    assert deps["3b"] == ["2a", "2b"]
    assert deps["5c"] == ["4a", "4b"]  # "can run in parallel with 5A/5B"
    assert deps["6a"] == deps["6b"] == ["5a", "5b", "5c"]
    assert deps["6c"] == ["6a", "6b"]
    # The template's "CRITICAL RULES (from /MJ/CLAUDE.md):" list, in its code block, too (issue 17).
    assert [r.title for r in plan.rules] == [
        "Verification Standards",
        "Common Pitfalls (AVOID THESE)",
        "Critical Rules (from /MJ/CLAUDE.md)",
    ]


@pytest.mark.parametrize(("name", "boxes"), [(REALTIME, 44), (PASTE, 7)])
def test_box_plans_stay_box_units(shared_plans: Path, name: str, boxes: int) -> None:
    plan = parse_plan(shared_plans / name)
    assert len(plan.tasks) == boxes
    assert all(
        t.kind is TaskKind.BOX and t.steps == [] and t.box_offsets == [t.box_offset] for t in plan.tasks
    )


def test_status_marks_anywhere_in_a_unit_heading() -> None:
    plan = parse(
        "# P\n\n### ✅ Task 1: a\n\nx\n\n### Task 2: b ✅\n\ny\n\n### Task 3: c (DONE)\n\nz\n\n"
        "### ⏸️ Task 4: d\n\nw\n\n### Task 5: Make it done\n\nv\n\n### TASK 6 — COMPLETE: e\n\nu\n"
    )
    assert [(t.id, t.title, t.mark, t.checked) for t in plan.tasks] == [
        ("task-1", "a", "✅", True),
        ("task-2", "b", "✅", True),
        ("task-3", "c", "DONE", True),
        ("task-4", "d", "⏸️", False),
        ("task-5", "Make it done", "", False),
        ("task-6", "e", "COMPLETE", True),
    ]


def test_gsd_checkpoints_are_manual_units_named_by_what_they_show() -> None:
    plan = parse(
        '<tasks>\n<task type="checkpoint:human-verify" gate="blocking">\n'
        "  <what-built>Login page with session cookie</what-built>\n"
        "  <how-to-verify>\n    1. Visit http://localhost:3000/login\n  </how-to-verify>\n</task>\n"
        '<task type="checkpoint:decision">\n  <decision>Which session store?</decision>\n</task>\n</tasks>\n'
    )
    assert [(t.id, t.manual, t.kind) for t in plan.tasks] == [
        ("login-page-with-session-cookie", True, TaskKind.BLOCK),
        ("which-session-store", True, TaskKind.BLOCK),
    ]
    assert plan.tasks[1].depends_on == ["login-page-with-session-cookie"]


def test_xml_in_a_code_block_is_no_task() -> None:
    plan = parse('# P\n\n```xml\n<task type="auto">\n  <name>Task 1: x</name>\n</task>\n```\n\n- [ ] real\n')
    assert [t.title for t in plan.tasks] == ["real"]


def test_status_lines_heading_deps_and_a_table_naming_units_t1() -> None:
    plan = parse(
        "# P\n\n| Task | Title | Prereqs |\n|---|---|---|\n| T1 | a | — |\n| T2 | b | T1 |\n\n"
        "### Task 1: a\n\n**Status:** ✅ Complete\n\nx\n\n### Task 2: b\n\n**Status:** In progress\n\n"
        "### Task 3: c (depends on Task 1)\n\ny\n\n### Task 4: d\n\n**Status:** Done\n"
    )
    assert [(t.id, t.mark, t.checked, t.depends_on) for t in plan.tasks] == [
        ("task-1", "✅", True, []),
        ("task-2", "", False, ["task-1"]),
        ("task-3", "", False, ["task-1"]),
        ("task-4", "DONE", True, ["task-3"]),
    ]


def test_paragraph_steps_written_with_the_label_alone_in_bold_or_as_headings() -> None:
    plan = parse(
        "# P\n\n### Task 1: a\n\n**Step 1:** Write the failing test\n\n**Step 2: Run it**\n\n"
        "Run: `make test`\nExpected: PASS\n\n#### Step 3: Commit\n"
    )
    unit = plan.tasks[0]
    assert [s.title for s in unit.steps] == [
        "Step 1: Write the failing test",
        "Step 2: Run it",
        "Step 3: Commit",
    ]
    assert [(c.command, c.step) for c in unit.checks] == [("make test", 1)]


def test_criteria_of_a_heading_unit_without_boxes() -> None:
    plan = parse(
        "# P\n\n### TASK 1: Login\n\n**Files:** `src/login.ts`\n\nBuild it.\n\n"
        "**Acceptance Criteria:**\n- User can log in\n- Bad password shows an error\n  - with a message\n\n"
        "**Deliverable:** a login page\n\n#### Verification\n\n- `npm test` passes\n\n"
        "Run: `npm run lint`\n\n### TASK 2: Logout\n\nNothing else.\n"
    )
    login = plan.tasks[0]
    assert [(s.title, s.kind) for s in login.steps] == [
        ("User can log in", StepKind.CRITERION),
        ("Bad password shows an error", StepKind.CRITERION),
        ("a login page", StepKind.CRITERION),
        ("`npm test` passes", StepKind.CRITERION),
    ]
    assert login.files == ["src/login.ts"]
    assert [(c.command, c.step) for c in login.checks] == [("npm run lint", None), ("npm test", 3)]
    assert login.verify == ["npm run lint", "npm test"]
    assert login.uncovered == ["User can log in", "Bad password shows an error", "a login page"]
    assert plan.tasks[1].steps == []


def test_prose_that_mentions_verifying_is_no_criteria_label() -> None:
    plan = parse(
        "# P\n\n### Task 1: a\n\n- [ ] **Step 1: Write the test**\n\nAdd a test that verifies the hook.\n\n"
        "- [ ] Run it\n\n**Verification:**\n\n- [ ] The hook is gone\n"
    )
    assert [s.kind for s in plan.tasks[0].steps] == [StepKind.STEP, StepKind.STEP, StepKind.CRITERION]


def test_a_rules_section_holding_units_stops_at_the_first() -> None:
    plan = parse("# P\n\n## Conventions\n\n- tabs, not spaces\n\n### Task 1: a\n\nx\n\n### Task 2: b\n\ny\n")
    assert [t.id for t in plan.tasks] == ["task-1", "task-2"]
    assert [(r.title, r.text) for r in plan.rules] == [
        ("Conventions", "## Conventions\n\n- tabs, not spaces")
    ]
