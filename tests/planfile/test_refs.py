"""refs.py on its own: the dependency, parallel and verification phrases real plans write.

Pure string work, so every case is one line of plan text and what it says; the parser and the
dependency builder resolve these names (tests/planfile/test_dependencies.py).
"""

from __future__ import annotations

import pytest

from orchestrator.planfile import refs
from orchestrator.planfile.refs import DependencyClause, Reference, Statement


def task(name: str, end: str | None = None) -> Reference:
    return Reference("task", name, end)


def phase(name: str, end: str | None = None) -> Reference:
    return Reference("phase", name, end)


def section(name: str) -> Reference:
    return Reference("section", name)


def bare(name: str, end: str | None = None) -> Reference:
    return Reference("", name, end)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # spec-kit: the task's own words
        ("T005 Wire the router (depends on T001)", [DependencyClause([bare("T001")])]),
        ("T014 Glue (depends on T012, T013)", [DependencyClause([bare("T012"), bare("T013")])]),
        ("T020 Docs, depends on T003–T010a", [DependencyClause([bare("T003", "T010a")])]),
        ("Blocked by: T012", [DependencyClause([bare("T012")])]),
        ("requires task T004", [DependencyClause([bare("T004")])]),  # the keyword takes "task"
        # Kiro: "Dependencies: Task 1.1", inline or a label over a bullet list
        ("Dependencies: Task 1.1", [DependencyClause([task("1.1")])]),
        ("Dependencies: Tasks 2.1 to 2.4", [DependencyClause([task("2.1", "2.4")])]),
        (
            "Build it\n**Dependencies:**\n- Task 1.1\n- Task 1.2\n\nMore words",
            [DependencyClause([task("1.1"), task("1.2")])],
        ),
        ("_Dependencies: None_", [DependencyClause(explicit_none=True)]),
        ("Dependencies: N/A", [DependencyClause(explicit_none=True)]),
        # GSD roadmap: phase level, emphasis around the label, an aside in parentheses not read
        ("**Depends on**: Phase 44", [DependencyClause([phase("44")])]),
        ("**Depends on**: Phases 14-16", [DependencyClause([phase("14-16")])]),
        ("**Depends on**: Phase 4 (v1.0 complete)", [DependencyClause([phase("4")])]),
        ("**Depends on**: Nothing (first phase)", [DependencyClause(explicit_none=True)]),
        ("**Wait for:** Phase 2 sub-agents", [DependencyClause([phase("2")])]),
        # seed prompt: "(after 6A and 6B complete)" is prose too, so not strict
        (
            "Sub-Agent 6C (after 6A and 6B complete)",
            [DependencyClause([bare("6A"), bare("6B")], strict=False)],
        ),
        # words that are not dependencies
        ("Wait 5 minutes after deploying", []),
        ("Depends on the weather", []),
        ("After 5 minutes, retry", []),
        ("", []),
    ],
)
def test_dependency_clauses(text: str, expected: list[DependencyClause]) -> None:
    assert refs.dependency_clauses(text) == expected


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("T001", [bare("T001")]),
        ("T003–T010a", [bare("T003", "T010a")]),
        ("T003 - T010", [bare("T003", "T010")]),
        ("T003 .. T010", [bare("T003", "T010")]),
        ("T003-T010a", [bare("T003-T010a")]),  # one name: resolving splits it where ids exist
        ("Tasks 2.1 through 2.4", [task("2.1", "2.4")]),
        ("Task 1.1 and 1.2", [task("1.1"), task("1.2")]),  # the kind word carries on
        ("Phase 2 and Phase 3", [phase("2"), phase("3")]),
        ("Sub-Agent 2A", [section("2A")]),
        ("Step 3, Story 4", [section("3"), section("4")]),
        ("45-01", [bare("45-01")]),
        ("the router and the cache", []),
    ],
)
def test_references_in(clause: str, expected: list[Reference]) -> None:
    assert refs.references_in(clause) == expected


@pytest.mark.parametrize(
    ("text", "parallel", "with_"),
    [
        ("**Can run in parallel with 2A**", True, [bare("2A")]),
        ("Sub-Agent 5C: can run in parallel with 5A/5B", True, [bare("5A"), bare("5B")]),
        ("Phase 12 (can run in parallel with Phases 14-16)", True, [phase("14-16")]),
        ("Can run in parallel with any M2 phase", True, []),  # parallel with nothing named
        ("These tasks can be done in parallel", True, []),
        ("[P] tasks run in parallel", False, []),  # the [P] mark is the parser's, not a phrase
        ("Run the parallel build", False, []),
    ],
)
def test_parallel_phrases(text: str, parallel: bool, with_: list[Reference]) -> None:
    assert refs.says_parallel(text) is parallel
    assert refs.parallel_with(text) == with_


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("T008 blocks T009", [Statement([bare("T008")], [bare("T009")])]),
        (
            "T001 → T002 → T003",
            [Statement([bare("T001")], [bare("T002")]), Statement([bare("T002")], [bare("T003")])],
        ),
        ("T010 depends on T008", [Statement([bare("T008")], [bare("T010")])]),
        (
            # a comma ends one "X depends on Y" and starts the next
            "T003 depends on T002, T004 depends on T001",
            [Statement([bare("T002")], [bare("T003")]), Statement([bare("T001")], [bare("T004")])],
        ),
        (
            # arrows keep a comma-separated group together
            "T001 → T002, T003",
            [Statement([bare("T001")], [bare("T002"), bare("T003")])],
        ),
        (
            "Tests (T004-T007) before implementation (T008-T014)",
            [Statement([bare("T004-T007")], [bare("T008-T014")])],
        ),
        ("**T005** needs **T002**", [Statement([bare("T002")], [bare("T005")])]),
        ("Models before services", []),  # no ids on either side
        ("T001 and T002", []),
    ],
)
def test_free_statements(line: str, expected: list[Statement]) -> None:
    assert refs.free_statements(line) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Add the parser. Verify: `pytest tests/parser`", ["pytest tests/parser"]),
        ("**Run:** `make lint` and `make test`", ["make lint", "make test"]),
        ("Check: `ruff check .`, `mypy --strict src`", ["ruff check .", "mypy --strict src"]),
        ("Verification: ``grep -c '`' file``", ["grep -c '`' file"]),
        ("Test: `pytest -k snake_case_name`", ["pytest -k snake_case_name"]),  # `_` kept in code
        ("Run: the whole suite, then `pytest`", []),  # prose between label and code: not a command
        ("Uses `foo()` internally", []),  # code without a label
        (
            "Step 2\n  Run:\n  ```bash\n  $ pytest -q \\\n      tests/x\n  # a comment\n  ruff check\n  ```",
            ["pytest -q tests/x", "ruff check"],
        ),
        ("Run:\n```console\nmake\n```", ["make"]),
        ("Run:\n```python\nprint('no')\n```", []),  # another language is not a command
        ("Verify: `make` and Verify: `make`", ["make"]),  # each command once
    ],
)
def test_verify_commands(text: str, expected: list[str]) -> None:
    assert refs.verify_commands(text) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Verify: `pytest`", True),
        ("  **Run:** `make`", True),
        ("_Test_: `x`", True),
        ("Then verify: `pytest`", False),
        ("Runs fast", False),
    ],
)
def test_starts_with_verify_label(line: str, expected: bool) -> None:
    assert refs.starts_with_verify_label(line) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("**Depends on**: Phase 1", "Depends on: Phase 1"),
        ("_Requirements: 1.3_", "Requirements: 1.3"),
        ("snake_case_name stays", "snake_case_name stays"),
    ],
)
def test_plain(text: str, expected: str) -> None:
    assert refs.plain(text) == expected


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        # "Blocked by: T-1" and `TASK-12` ids, as the parser's docstring promises.
        ("Blocked by: TASK-1", [bare("TASK-1")]),
        ("Blocked by: T-1", [bare("T-1")]),
        # A one-digit id after capitals.
        ("depends on T1", [bare("T1")]),
        # ".." glues a range without spaces too.
        ("depends on T003..T010", [bare("T003", "T010")]),
        # Mixed case or lower case before one digit is a word, not an id.
        ("depends on OAuth2 support and v2 of the API", []),
    ],
)
def test_ids_with_a_dash_one_digit_or_an_unspaced_range(clause: str, expected: list[Reference]) -> None:
    found = [ref for c in refs.dependency_clauses(clause) for ref in c.references]
    assert found == expected


def test_a_comma_splits_worded_forward_statements() -> None:
    # A comma splits "X depends on Y, Z depends on W" and "X blocks Y, Z blocks W".
    assert refs.free_statements("T001 blocks T004, T002 blocks T005") == [
        Statement([bare("T001")], [bare("T004")]),
        Statement([bare("T002")], [bare("T005")]),
    ]


def test_plain_labels_keeps_code_spans() -> None:
    assert refs.plain_labels("**Run:** `ls *_test.py` **now**") == "Run: `ls *_test.py` now"
