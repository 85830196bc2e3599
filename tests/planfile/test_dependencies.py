"""dependencies.py on its own: the dependency stage over an outline, on the shapes real plans write.

Each case is a small plan in one family's shape (README "Plans it reads", DESIGN.md's table); the
outline, phases and ids stages run first, as parse_plan runs them, and the table says every
task's direct dependencies and what the stage reported. The parser's own tests check the same
rules through the whole Plan; these pin the stage's result without the Plan around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from textwrap import dedent

import pytest

from orchestrator.domain.plan import Diagnostic, Severity
from orchestrator.planfile import parse_plan
from orchestrator.planfile.dependencies import build_dependencies, dedupe
from orchestrator.planfile.ids import assign_ids
from orchestrator.planfile.outline import build_outline
from orchestrator.planfile.phases import assign_phases
from orchestrator.planfile.units import find_units, first_task_lines


@dataclass
class Stage:
    depends: dict[str, list[str]]
    diagnostics: list[Diagnostic]
    phase_depends: dict[str, list[str]] = field(default_factory=dict)
    phase_parallel: dict[str, list[str]] = field(default_factory=dict)


def run_stage(markdown: str) -> Stage:
    text = dedent(markdown).lstrip("\n")
    outline = build_outline(text.encode(), text)
    diagnostics: list[Diagnostic] = []
    units = find_units(outline, diagnostics)
    outline.tasks = units.tasks
    outline.first_task_line = first_task_lines(outline, units.tasks)
    layout = assign_phases(outline, "plan", diagnostics)
    ids = assign_ids(outline, diagnostics)
    before = len(diagnostics)
    found = build_dependencies(outline, layout, ids, diagnostics)
    phases = layout.phases
    return Stage(
        depends={ids[index]: deps for index, deps in found.items()},
        diagnostics=diagnostics[before:],
        phase_depends={info.id: info.depends_on for info in phases if info.depends_on},
        phase_parallel={info.id: info.parallel_with for info in phases if info.parallel_with},
    )


CASES = {
    "ralph: a plain list runs in document order": (
        """
        # Fix plan
        ## High Priority
        - [ ] Fix login
        - [x] Fix logout
        ## Low Priority
        - [ ] Polish
        """,
        {"fix-login": [], "fix-logout": ["fix-login"], "polish": ["fix-logout"]},
    ),
    "spec-kit: a [P] run waits for what precedes it, what follows waits for the run": (
        """
        ## Phase 1: Setup
        - [ ] T001 Create project
        - [ ] T002 [P] Lint config
        - [ ] T003 [P] Test config
        - [ ] T004 Wire CI
        """,
        {"T001": [], "T002": ["T001"], "T003": ["T001"], "T004": ["T002", "T003"]},
    ),
    "spec-kit: depends on another phase's task keeps the phase order; a range is every task in it": (
        """
        ## Phase 1: Setup
        - [ ] T001 Create project
        - [ ] T002 Lint config
        - [ ] T003 Test config
        ## Phase 2: Core
        - [ ] T004 Model (depends on T001)
        - [ ] T005 Service
        - [ ] T006 Docs (depends on T001–T003)
        """,
        {
            "T001": [],
            "T002": ["T001"],
            "T003": ["T002"],
            "T004": ["T001", "T003"],
            "T005": ["T004"],
            "T006": ["T001", "T002", "T003"],
        },
    ),
    "spec-kit: a same-phase depends on replaces the list order": (
        """
        - [ ] T001 one
        - [ ] T002 two
        - [ ] T003 three (depends on T001)
        - [ ] T004 four
        """,
        {"T001": [], "T002": ["T001"], "T003": ["T001"], "T004": ["T003"]},
    ),
    "gsd roadmap: Depends on: Phase N, and Nothing": (
        """
        # Roadmap
        ## Phase 1: Foundation
        - [ ] 01-01: scaffold
        ## Phase 2: API
        - [ ] 02-01: routes
        ## Phase 3: UI
        **Depends on**: Phase 1
        - [ ] 03-01: pages
        ## Phase 4: Polish
        **Depends on**: Nothing
        - [ ] 04-01: polish
        """,
        {"01-01": [], "02-01": ["01-01"], "03-01": ["01-01"], "04-01": []},
    ),
    "gsd roadmap: phase items wait for their phase's tasks, the next phase for the item": (
        """
        # Roadmap
        - [ ] Phase 1: Foundation - scaffolding
        - [ ] Phase 2: API - routes
        ## Phase 1 Details
        - [ ] 01-01: scaffold
        - [ ] 01-02: config
        ## Phase 2 Details
        - [ ] 02-01: routes
        """,
        {
            "phase-1": ["01-02"],
            "phase-2": ["02-01"],
            "01-01": [],
            "01-02": ["01-01"],
            "02-01": ["phase-1"],
        },
    ),
    "kiro: a parent waits for its required children, nothing waits for an optional one": (
        """
        # Tasks
        - [ ] 1. Set up
          - [ ] 1.1 Create layout
          - [ ] 1.2 Add config
          - [ ]* 1.3 Write extra tests
        - [ ] 2. Build it
        - [ ] 2.1 Parser
          - Dependencies: Task 1.1
        - [ ] 2.2 Writer
        """,
        {
            "1": ["1.1", "1.2"],
            "1.1": [],
            "1.2": ["1.1"],
            "1.3": ["1.2"],
            "2": ["2.1", "2.2"],
            "2.1": ["1.1", "1"],
            "2.2": ["2.1"],
        },
    ),
    "kiro: a Dependencies label over a bullet list": (
        """
        - [ ] 1. First
        - [ ] 2. Second
        - [ ] 3. Third
          - **Dependencies:**
            - Task 1
        """,
        {"1": [], "2": ["1"], "3": ["1"]},
    ),
    "seed prompt: sub-agent units in parallel with 2A, and one after both": (
        """
        ## Phase 2: Agents
        #### Sub-Agent 2A: Backend
        - [ ] Backend done
        #### Sub-Agent 2B: Frontend
        **Can run in parallel with 2A**
        - [ ] Frontend done
        #### Sub-Agent 2C: Glue
        (after 2A and 2B complete)
        - [ ] Glue done
        """,
        {"2a": [], "2b": [], "2c": ["2a", "2b"]},
    ),
    "phase plan: Wait for: Phase 1 from a later phase": (
        """
        ## Phase 1: Audio
        - [ ] Audio streams
        ## Phase 2: Video
        - [ ] Video streams
        ## Phase 3: Mixing
        **Wait for:** Phase 1
        - [ ] Mixer works
        """,
        {"1-audio-streams": [], "2-video-streams": ["1-audio-streams"], "3-mixer-works": ["1-audio-streams"]},
    ),
    "free statements elsewhere add edges between ids": (
        """
        - [ ] T001 one
        - [ ] T002 two
        - [ ] T003 three
        - [ ] T004 four

        Note: T001 blocks T004. T001 → T002 → T003.
        """,
        {"T001": [], "T002": ["T001"], "T003": ["T002"], "T004": ["T003", "T001"]},
    ),
    "bare numbers in prose are counts, not Kiro ids": (
        """
        - [ ] 1. First
        - [ ] 2. Second
        - [ ] 3. Third

        1 region requires 3 approvals.
        """,
        {"1": [], "2": ["1"], "3": ["2"]},
    ),
}


@pytest.mark.parametrize(("markdown", "expected"), CASES.values(), ids=CASES.keys())
def test_dependencies(markdown: str, expected: dict[str, list[str]]) -> None:
    stage = run_stage(markdown)
    assert stage.depends == expected
    assert stage.diagnostics == []


def test_phase_ranges_and_parallel_phases() -> None:
    stage = run_stage(
        """
        ## Phase 14: A
        - [ ] 14-01: a
        ## Phase 15: B
        - [ ] 15-01: b
        ## Phase 16: C
        - [ ] 16-01: c
        ## Phase 17: D
        **Depends on**: Phases 14-15
        - [ ] 17-01: d
        ## Phase 18: E
        Can run in parallel with 17
        - [ ] 18-01: e
        ## Phase 19: F
        - [ ] 19-01: f
        """
    )
    assert stage.depends == {
        "14-01": [],
        "15-01": ["14-01"],
        "16-01": ["15-01"],
        "17-01": ["14-01", "15-01"],
        "18-01": ["14-01", "15-01"],  # starts with the phase it runs beside
        "19-01": ["17-01", "18-01"],  # and what follows waits for both
    }
    assert stage.phase_parallel == {"18": ["17"]}
    assert stage.diagnostics == []


@pytest.mark.parametrize(
    ("markdown", "severity", "message", "expected"),
    [
        pytest.param(
            """
            - [ ] T001 one (depends on T999)
            - [ ] T002 two
            """,
            Severity.ERROR,
            "unknown dependency T999: no task, section or phase has that id",
            {"T001": [], "T002": ["T001"]},
            id="unknown id",
        ),
        pytest.param(
            """
            ## Phase 45: Now
            **Depends on**: Phase 44
            - [ ] 45-01: thing
            ## Phase 46: Next
            - [ ] 46-01: other
            """,
            Severity.WARNING,
            "phase 44 is not in this plan (an earlier milestone?); taken as done",
            {"45-01": [], "46-01": ["45-01"]},
            id="archived milestone",
        ),
        pytest.param(
            """
            - [ ] T001 one
            - [ ] T002 two
            - [ ] T003 three

            Critical path: T003 → T002
            """,
            Severity.INFO,
            "T002 waits for T003 as this line says, so T003 no longer waits for T002, "
            "which the list puts before it",
            {"T001": [], "T002": ["T001", "T003"], "T003": ["T001"]},
            id="a statement against the list order",
        ),
    ],
)
def test_reports(markdown: str, severity: Severity, message: str, expected: dict[str, list[str]]) -> None:
    stage = run_stage(markdown)
    assert [(d.severity, d.message) for d in stage.diagnostics] == [(severity, message)]
    assert stage.depends == expected


def test_phase_depends_on_names_the_phases() -> None:
    stage = run_stage(
        """
        ## Phase 1: A
        - [ ] 01-01: a
        ## Phase 2: B
        - [ ] 02-01: b
        ## Phase 3: C
        **Depends on**: Phase 1, Phase 2
        - [ ] 03-01: c
        """
    )
    assert stage.phase_depends == {"3": ["1", "2"]}
    assert stage.depends["03-01"] == ["01-01", "02-01"]


def test_dedupe_keeps_first_order() -> None:
    assert dedupe(["T2", "T1", "T2", "T3", "T1"]) == ["T2", "T1", "T3"]


def test_a_phase_preamble_about_its_own_tasks_is_not_the_phases_dependency(tmp_path: Path) -> None:
    # "Task 3 depends on 1" under a phase heading named the phase's own tasks as what the whole
    # phase waits for: every task waited for itself (a cycle lint reported).
    path = tmp_path / "plan.md"
    path.write_text(
        "# Plan\n\n## Phase 1\n\n"
        "Tasks 1-2 can be done in parallel (different files). Task 3 depends on 1.\n\n"
        "### Task 1: A\n- [ ] a\n\n### Task 2: B\n- [ ] b\n\n### Task 3: C\n- [ ] c\n"
    )
    plan = parse_plan(path)
    assert plan.errors == []
    assert {t.id: t.depends_on for t in plan.tasks} == {"task-1": [], "task-2": [], "task-3": ["task-1"]}
