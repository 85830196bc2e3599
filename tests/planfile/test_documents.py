"""Documents an orchestration prompt names (issue 17 items 1-3): found in the repository (as written,
beside the prompt, at the root, or by the trailing components of a path from another machine), the
sections its units are given, and the boxes of the driven plan its units complete."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestrator.domain.plan import BoxState, Severity
from orchestrator.errors import PlanChangedError
from orchestrator.planfile import parse_plan
from orchestrator.planfile.documents import says, tick_linked
from tests.conftest import make_repo

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "seed"


def seed_repo(tmp_path: Path, *, with_plan: bool = True) -> Path:
    files = {
        "README.md": "# shop\n",
        "plans/orchestrator-prompt.md": (FIXTURES / "orchestrator-prompt.md").read_text(),
    }
    if with_plan:
        files["plans/cart-plan.md"] = (FIXTURES / "cart-plan.md").read_text()
    return make_repo(tmp_path / "repo", files)


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_a_path_from_another_machine_is_found_by_its_trailing_components(tmp_path: Path) -> None:
    repo = seed_repo(tmp_path)
    prompt = repo / "plans/orchestrator-prompt.md"
    plan = parse_plan(prompt)
    found = {d.reference: d.path for d in plan.documents}
    assert found["/Users/someone/code/shop/plans/cart-plan.md"] == "plans/cart-plan.md"
    assert found["/Users/someone/code/shop/CLAUDE.md"] is None
    # Reported (naming the reference and its line), as an info: nothing of the run needs it.
    missing = [d for d in plan.diagnostics if "CLAUDE.md" in d.message]
    assert [(d.severity, d.line) for d in missing] == [(Severity.INFO, line_of(prompt, "shop/CLAUDE.md"))]
    assert "`/Users/someone/code/shop/CLAUDE.md`" in missing[0].message


def test_a_relative_path_and_a_link_out_of_the_repository(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.md").write_text("# secret\n\n## Phase 2: Cart Core\n\n### 2.1 Cart Model\n\nleak\n")
    prompt = (FIXTURES / "orchestrator-prompt.md").read_text()
    prompt = prompt.replace("/Users/someone/code/shop/plans/cart-plan.md", "docs/cart-plan.md")
    repo = make_repo(
        tmp_path / "repo",
        {"plans/prompt.md": prompt, "docs/cart-plan.md": (FIXTURES / "cart-plan.md").read_text()},
    )
    plan = parse_plan(repo / "plans/prompt.md")
    assert {d.reference: d.path for d in plan.documents}["docs/cart-plan.md"] == "docs/cart-plan.md"
    # A link in the repository to a file outside it is not read.
    (repo / "docs/cart-plan.md").unlink()
    (repo / "docs/cart-plan.md").symlink_to(outside / "secret.md")
    plan = parse_plan(repo / "plans/prompt.md")
    assert {d.reference: d.path for d in plan.documents}["docs/cart-plan.md"] is None
    unit = plan.task("2a")
    assert unit is not None
    assert unit.sections == []
    assert all("leak" not in d.message for d in plan.diagnostics)


def test_a_unit_is_given_its_section_of_the_plan_and_its_files(tmp_path: Path) -> None:
    plan = parse_plan(seed_repo(tmp_path) / "plans/orchestrator-prompt.md")
    first, second = plan.task("2a"), plan.task("2b")
    assert first is not None
    assert second is not None
    assert [(e.document, e.heading, e.line) for e in first.sections] == [
        ("plans/cart-plan.md", "2.1 Cart Model", 9)
    ]
    text = first.sections[0].text
    assert text.startswith("### 2.1 Cart Model")
    assert "keyed by product id" in text
    assert "Prices are" not in text  # section 2.2: another unit's
    assert first.files == ["src/cart.py"]
    assert second.files == ["src/prices.py"]  # from a nested "Files to update:" list
    assert [e.heading for e in second.sections] == ["2.2 Prices"]


def test_criteria_marked_in_the_plan_are_linked_to_its_boxes(tmp_path: Path) -> None:
    repo = seed_repo(tmp_path)
    prompt = repo / "plans/orchestrator-prompt.md"
    driven = repo / "plans/cart-plan.md"
    plan = parse_plan(prompt)
    first, second, checkout = plan.task("2a"), plan.task("2b"), plan.task("3a")
    assert first is not None
    assert second is not None
    assert checkout is not None
    # Matched by its text, the plan's trailing note allowed.
    assert [(b.document, b.line, b.title, b.state) for b in first.linked] == [
        (
            "plans/cart-plan.md",
            line_of(driven, "Cart keeps items"),
            "Cart keeps items between requests (testing pending)",
            BoxState.OPEN,
        )
    ]
    data = driven.read_bytes()
    assert data[first.linked[0].box_offset - 1 : first.linked[0].box_offset + 2] == b"[ ]"
    # "Mark all Phase 3 Success Criteria": every box of that list.
    assert [b.title for b in checkout.linked] == ["Checkout completes in under 2 seconds", "No order is lost"]
    # A criterion the plan says in a line that is not a box: a warning at the Update line.
    assert second.linked == []
    warned = [d for d in plan.diagnostics if d.code == "unlinked-criterion"]
    assert [(d.severity, d.line) for d in warned] == [
        (Severity.WARNING, line_of(prompt, '"Totals are right"'))
    ]
    assert "2. ✅ Totals are right" in warned[0].message
    assert "not a box" in warned[0].message
    assert "plans/cart-plan.md:" in warned[0].message


def test_without_the_plan_each_reference_it_needs_is_a_warning(tmp_path: Path) -> None:
    repo = seed_repo(tmp_path, with_plan=False)
    prompt = repo / "plans/orchestrator-prompt.md"
    plan = parse_plan(prompt)
    infos = [d for d in plan.diagnostics if d.code == "unresolved-document"]
    assert len(infos) == 2  # the plan and CLAUDE.md, each once
    sections = [d for d in plan.diagnostics if d.code == "missing-section"]
    assert [d.line for d in sections] == [
        line_of(prompt, '"2.1 Cart Model"'),
        line_of(prompt, '"2.2 Prices"'),
        line_of(prompt, '"3.1 Checkout Flow"'),
    ]
    assert all(d.severity is Severity.WARNING for d in sections)
    assert "/Users/someone/code/shop/plans/cart-plan.md" in sections[0].message
    marks = [d for d in plan.diagnostics if d.code == "unlinked-criterion"]
    assert len(marks) == 3


@pytest.mark.parametrize(
    ("title", "criterion", "expected"),
    [
        (
            "WebSocket connections stable for >5 minutes (testing pending)",
            "WebSocket connections stable for >5 minutes",
            True,
        ),
        (
            "Eleven Labs conversation connects successfully (testing pending - requires agent creation)",
            "Eleven Labs conversation connects successfully",
            True,
        ),
        ("**Totals** are right", "Totals are right", True),
        ("Totals are rightly rounded", "Totals are right", False),
        ("Cart model designed", "Cart", False),
    ],
)
def test_a_criterion_matches_a_box_with_a_trailing_note(title: str, criterion: str, expected: bool) -> None:
    assert says(title, criterion) is expected


def test_ticking_a_linked_box_finds_it_again_after_an_edit(tmp_path: Path) -> None:
    repo = seed_repo(tmp_path)
    driven = repo / "plans/cart-plan.md"
    plan = parse_plan(repo / "plans/orchestrator-prompt.md")
    checkout = plan.task("3a")
    assert checkout is not None
    # The user adds a line above the boxes: their offsets moved; each is found by heading and text.
    driven.write_text(driven.read_text().replace("**Status**: Planning", "**Status**: Planning\n\nNote.\n"))
    before = driven.read_bytes()
    assert tick_linked(repo, checkout.linked, True) == ["plans/cart-plan.md"]
    after = driven.read_bytes()
    changed = [i for i in range(len(before)) if before[i] != after[i]]
    assert len(changed) == 2
    assert all(after[i : i + 1] == b"x" for i in changed)
    assert tick_linked(repo, checkout.linked, True) == []  # idempotent
    driven.write_text(driven.read_text().replace("- [x] No order is lost\n", ""))
    with pytest.raises(PlanChangedError, match="No order is lost"):
        tick_linked(repo, checkout.linked, True)


def test_the_shared_seed_prompt_links_to_its_plan(tmp_path: Path, shared_plans: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "plans").mkdir()
    shutil.copy(shared_plans / "seed-orchestrator-prompt.md", repo / "plans/seed-orchestrator-prompt.md")
    shutil.copy(
        shared_plans / "MemberJunction__MJ__plans__audio-sage-realtime-implementation-plan.md",
        repo / "plans/audio-sage-realtime-implementation-plan.md",
    )
    plan = parse_plan(repo / "plans/seed-orchestrator-prompt.md")
    ids = {task.id: task for task in plan.tasks}
    assert [e.heading for e in ids["2a"].sections] == ["2.1 Backend WebSocket Setup"]
    assert [b.title for b in ids["2a"].linked] == [
        "WebSocket connections stable for >5 minutes (testing pending)"
    ]
    assert len(ids["6a"].linked) == 4  # "Mark all Phase 5 Success Criteria"
    assert len(ids["6b"].linked) == 7  # the security checklist of the section it is given
    assert all(b.state is BoxState.OPEN for b in ids["6c"].linked)  # "all remaining": open, unclaimed
    assert "packages/MJServer/src/index.ts" in ids["2a"].files
    problems = [d for d in plan.diagnostics if d.severity is not Severity.INFO]
    assert len(problems) == 1
    assert "Prompt override works correctly" in problems[0].message
    assert "9. ✅ Prompt override works correctly" in problems[0].message


def test_global_rules_go_to_every_unit_and_are_listed_one_by_one(tmp_path: Path) -> None:
    plan = parse_plan(seed_repo(tmp_path) / "plans/orchestrator-prompt.md")
    # The template's rules, written inside its code block, are a rules section too.
    assert [(r.title, r.line) for r in plan.rules] == [
        ("Verification Standards", 72),
        ("Critical Rules (from /shop/CLAUDE.md)", 83),
    ]
    assert plan.standards == [
        "Python compiles without errors",
        "No `Any` types used",
        "Never store card numbers",
        "Prices are Decimal, never float",
    ]


def test_rules_under_never_and_always_labels_keep_their_label(tmp_path: Path) -> None:
    text = (
        "# Prompt\n\n## Critical Rules (from the codebase)\n\n❌ **Never:**\n- Use `any` types\n\n"
        "✅ **Always:**\n- Use NgModules\n\n## Sub-Agent Prompt Template\n\n"
        "```\nCRITICAL RULES:\n- Never\n```\n\n"
        "### Task 1: Do it\n\nDo it.\n"
    )
    repo = make_repo(tmp_path / "repo", {"plan.md": text})
    plan = parse_plan(repo / "plan.md")
    assert [r.title for r in plan.rules] == ["Critical Rules (from the codebase)"]  # not twice
    assert plan.standards == ["Never: Use `any` types", "Always: Use NgModules"]


VARIANTS_PLAN = """\
# Plan

## Phase 1: Base

### 1.1 Setup

- [ ] Lint config in place

## Success Metrics

### Phase 1 Success Criteria
- [ ] Server starts (testing pending)
- [ ] Client connects
- [ ] Logs are clean

### Planning Checklist
- [ ] Owner named
"""

VARIANTS_PROMPT = """\
# Orchestrator

Plan: `plans/the-plan.md`

### Phase 1: Base

#### Sub-Agent 1A: Both

**Provide to sub-agent:** Complete "1.1 Setup" section

**Verification:**
- [ ] Done

**Update:** Mark "Server starts" and "Client connects" in the plan's Phase 1 Success Criteria section

#### Sub-Agent 1B: Items

**Verification:**
- [ ] Done

**Update:** Mark all items in Planning Checklist

#### Sub-Agent 1C: Given

**Provide to sub-agent:**
- Complete "Phase 1: Base" → "1.1 Setup" section
- Current implementation: `src/old.py`
- Files to update:
  - `/Users/me/proj/src/setup.py` (UPDATE)
  - `src/made.py` (NEW)
- Integration: Update `src/made.py`

**Verification:**
- [ ] Done

**Update:** Mark setup items in plan; tick "Logs are clean"

#### Sub-Agent 1D: Unclear

**Verification:**
- [ ] Done

**Update:** the changelog
"""


def test_update_statements_as_people_write_them(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {"plans/prompt.md": VARIANTS_PROMPT, "plans/the-plan.md": VARIANTS_PLAN, "src/setup.py": "x = 1\n"},
    )
    plan = parse_plan(repo / "plans/prompt.md")
    linked = {task.id: [box.title for box in task.linked] for task in plan.tasks}
    assert linked == {
        "1a": ["Server starts (testing pending)", "Client connects"],
        "1b": ["Owner named"],
        "1c": ["Lint config in place", "Logs are clean"],
        "1d": [],
    }
    one = plan.task("1a")
    assert one is not None
    assert [e.heading for e in one.sections] == ["1.1 Setup"]  # the section named alone
    given = plan.task("1c")
    assert given is not None
    assert given.files == ["src/old.py", "src/setup.py", "src/made.py"]
    # Given to read or update, not in the repository, created by no unit: an info naming it.
    missing = [(d.severity, d.message) for d in plan.diagnostics if d.code == "unresolved-file"]
    assert missing == [
        (
            Severity.INFO,
            "1c: `src/old.py`, given to it to read or update, is not in the repository "
            "(and no unit of the plan creates it)",
        )
    ]
    unclear = [d for d in plan.diagnostics if d.code == "unlinked-criterion"]
    assert len(unclear) == 1
    assert "1d: cannot tell which box `the changelog` names" in unclear[0].message


NESTED_PLAN = """\
# Plan

## Phase 2: Core

### 2.1 Build

Build it.

### Success Criteria
- [ ] Core builds (pending)
- [ ] Core is fast

## Phase 3: Edge

### Success Criteria
- [ ] Edge works
"""

NESTED_PROMPT = """\
# Orchestrator

Read `plans/nested.md` first.

### Phase 2: Core

#### Sub-Agent 2A: Build

**Provide to sub-agent:**
- Complete "Phase 2: Core" → "2.1 Build" section

**Verification:**
- [ ] Built

**Update:** Mark "Core builds" in Phase 2 Success Criteria
**Update:** Mark "Core is fast" in the Success Criteria of Phase 2

#### Sub-Agent 2B: Edge

**Verification:**
- [ ] Edged

**Update:** Mark all of Phase 3's Success Criteria
"""


def test_a_phases_success_criteria_written_under_the_phase(tmp_path: Path) -> None:
    """ "Phase 2 Success Criteria" where the plan has "### Success Criteria" inside "## Phase 2"."""
    repo = make_repo(tmp_path / "repo", {"plans/prompt.md": NESTED_PROMPT, "plans/nested.md": NESTED_PLAN})
    plan = parse_plan(repo / "plans/prompt.md")
    linked = {task.id: [(box.title, box.line) for box in task.linked] for task in plan.tasks}
    assert linked == {
        "2a": [("Core builds (pending)", 10), ("Core is fast", 11)],
        "2b": [("Edge works", 16)],
    }
    assert [d for d in plan.diagnostics if d.severity is not Severity.INFO] == []
