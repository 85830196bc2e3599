"""Ticks change exactly one byte, atomically, and refuse when the task is gone."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import PlanChangedError
from orchestrator.planfile import parse_bytes, parse_plan, set_box, with_box

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "plans"


def diff_positions(a: bytes, b: bytes) -> list[int]:
    assert len(a) == len(b)
    return [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]


def test_tick_changes_exactly_the_box_byte(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.md"
    original = (FIXTURES / "speckit.md").read_bytes()
    plan_file.write_bytes(original)
    before = parse_plan(plan_file)
    target = before.task("T005")
    assert target is not None

    after = set_box(plan_file, "T005", True)

    written = plan_file.read_bytes()
    assert diff_positions(original, written) == [target.box_offset]
    assert written[target.box_offset : target.box_offset + 1] == b"x"
    assert after.task("T005").checked  # type: ignore[union-attr]
    assert after.sha256 != before.sha256


def test_untick_keeps_everything_else_and_upper_case_x_survives_a_tick(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.md"
    plan_file.write_bytes(b"- [X] T001 done\r\n- [ ] T002 open")
    set_box(plan_file, "T001", True)
    assert plan_file.read_bytes() == b"- [X] T001 done\r\n- [ ] T002 open"
    set_box(plan_file, "T001", False)
    assert plan_file.read_bytes() == b"- [ ] T001 done\r\n- [ ] T002 open"


def test_idempotent_tick_does_not_rewrite_the_file(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.md"
    plan_file.write_bytes(b"- [x] T001 done\n")
    os.utime(plan_file, ns=(1_000_000_000, 1_000_000_000))
    inode = plan_file.stat().st_ino
    set_box(plan_file, "T001", True)
    assert plan_file.stat().st_mtime_ns == 1_000_000_000
    assert plan_file.stat().st_ino == inode


def test_atomic_write_keeps_mode_and_leaves_no_temp_file(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.md"
    plan_file.write_bytes(b"- [ ] T001 a\n")
    plan_file.chmod(0o640)
    set_box(plan_file, "T001", True)
    assert stat.S_IMODE(plan_file.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.md"]


def test_tick_through_a_symlink_writes_the_target(tmp_path: Path) -> None:
    real = tmp_path / "real.md"
    real.write_bytes(b"- [ ] T001 a\n")
    link = tmp_path / "link.md"
    link.symlink_to(real)
    set_box(link, "T001", True)
    assert link.is_symlink()
    assert real.read_bytes() == b"- [x] T001 a\n"


def test_refuses_when_the_task_is_gone(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.md"
    plan_file.write_bytes(b"- [ ] T001 a\n- [ ] T002 b\n")
    plan = parse_plan(plan_file)
    plan_file.write_bytes(b"- [ ] T002 b\n")
    with pytest.raises(PlanChangedError, match="T001 is no longer in the plan"):
        set_box(plan_file, "T001", True)
    # A task that moved is found again by id.
    plan_file.write_bytes(b"# New heading\n\nintro\n\n- [ ] T002 b\n")
    after = set_box(plan_file, "T002", True, expected=plan.task("T002"))
    assert after.task("T002").checked  # type: ignore[union-attr]


def test_refuses_when_the_task_text_changed(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.md"
    plan_file.write_bytes(b"- [ ] T001 a\n")
    old = parse_plan(plan_file).task("T001")
    plan_file.write_bytes(b"- [ ] T001 something else\n")
    with pytest.raises(PlanChangedError, match="changed since it was read"):
        set_box(plan_file, "T001", True, expected=old)
    assert plan_file.read_bytes() == b"- [ ] T001 something else\n"


def test_with_box_refuses_stale_offsets() -> None:
    plan = parse_bytes(b"- [ ] T001 a\n", Path("p.md"))
    stale = plan.tasks[0]
    with pytest.raises(PlanChangedError):
        with_box(b"xx- [ ] T001 a\n", stale, True)


# ---- properties -----------------------------------------------------------------------------

_line = st.sampled_from(
    [
        "# Title",
        "## Phase 1: Setup",
        "### Phase 2 Success Criteria",
        "- [ ] T001 [P] task",
        "- [x] done task",
        "- [X] 2.1 kiro child",
        "  - [ ] nested task",
        "- [ ]* 1.3 optional",
        "1. [ ] ordered",
        "> - [ ] quoted",
        "```",
        "~~~",
        "````",
        "    - [ ] indented",
        "<details>",
        "</details>",
        "| [ ] | cell |",
        "---",
        "title: x",
        "",
        "Depends on: T001",
        "- Verify: `make test`",
        "plain text with `code`",
        "- [/] in progress",
        "Legend: `[/]` `[-]`",
        "- [-] skipped",
        "🎯 emoji ünïcode",
        "(depends on T001, T999)",
    ]
)
_eol = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def markdown_plans(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(_line, min_size=1, max_size=30))
    eol = draw(_eol)
    final = draw(st.booleans())
    front = draw(st.booleans())
    text = eol.join((["---", "a: b", "---"] if front else []) + lines) + (eol if final else "")
    return text.encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markdown_plans())
def test_structured_random_markdown_never_raises_and_tick_untick_restores(data: bytes) -> None:
    if not data.decode().strip():
        return
    plan = parse_bytes(data, Path("p.md"))
    for task in plan.tasks:
        ticked = with_box(data, task, True)
        assert len(diff_positions(data, ticked)) <= 1
        reparsed = parse_bytes(ticked, Path("p.md"))
        again = reparsed.task(task.id)
        assert again is not None
        assert again.checked
        restored = with_box(ticked, again, task.checked)
        if task.state.value in ("open", "done"):
            assert restored == data


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=400)
)
def test_arbitrary_text_never_raises(text: str) -> None:
    if not text.strip().lstrip("\ufeff").strip():
        return
    plan = parse_bytes(text.encode(), Path("p.md"))
    for task in plan.tasks:
        assert text.encode()[task.box_offset - 1 : task.box_offset] == b"["


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(markdown_plans())
def test_set_box_round_trip_on_disk(tmp_path: Path, data: bytes) -> None:
    if not data.decode().strip():
        return
    plan_file = tmp_path / "plan.md"
    plan_file.write_bytes(data)
    plan = parse_bytes(data, plan_file)
    for task in plan.tasks:
        box = data[task.box_offset : task.box_offset + 1]
        if box not in (b" ", b"x"):  # an untick loses the case of [X]: tick then untick only from ' '
            continue
        set_box(plan_file, task.id, not task.checked)
        set_box(plan_file, task.id, task.checked)
        assert plan_file.read_bytes() == data
