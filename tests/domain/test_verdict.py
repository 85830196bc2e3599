"""The submit_verdict contract as orchestrate reads it, and how a verdict's entries are matched to
the criteria asked."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.domain.review import SUBMIT_VERDICT_SCHEMA, CommandRun, Quote, VerdictError, parse_verdict
from orchestrator.engine.review import match_criteria


def entry(criterion: str, verdict: str = "met", **more: Any) -> dict[str, Any]:
    return {"criterion": criterion, "verdict": verdict, "reason": "r", "evidence": [], **more}


def test_the_schema_is_the_issue_s_contract() -> None:
    item = SUBMIT_VERDICT_SCHEMA["properties"]["criteria"]["items"]
    assert item["required"] == ["criterion", "verdict", "reason", "evidence"]
    assert item["properties"]["verdict"]["enum"] == ["met", "not_met", "needs_human"]
    quote, command = item["properties"]["evidence"]["items"]["anyOf"]
    assert quote["required"] == ["path", "start_line", "end_line", "quote"]
    assert command["required"] == ["command", "exit_code", "output_tail"]


def test_both_kinds_of_evidence_are_read() -> None:
    verdict = parse_verdict(
        {
            "criteria": [
                entry(
                    "a",
                    evidence=[
                        {"path": "a.py", "start_line": 1, "end_line": "2", "quote": "x"},
                        {"command": "true", "exit_code": 0, "output_tail": ""},
                    ],
                )
            ]
        }
    )
    assert verdict.criteria[0].evidence == [
        Quote(path="a.py", start_line=1, end_line=2, quote="x"),
        CommandRun(command="true", exit_code=0, output_tail=""),
    ]


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ([], 'must be an object {"criteria": [...]}'),
        ({"criteria": []}, "criteria is empty"),
        ({"criteria": [entry("a", "yes")]}, "criteria[0].verdict must be one of"),
        ({"criteria": [entry("a", evidence=[{"file": "a"}])]}, "neither a quote"),
        (
            {"criteria": [entry("a", evidence=[{"command": "x", "exit_code": True}])]},
            "exit_code must be an integer",
        ),
    ],
)
def test_a_broken_input_says_what_is_wrong(raw: Any, says: str) -> None:
    with pytest.raises(VerdictError, match=None) as caught:
        parse_verdict(raw)
    assert says in str(caught.value)


def test_verdict_words_are_read_as_meant() -> None:
    words = [
        parse_verdict({"criteria": [entry("a", w)]}).criteria[0].verdict
        for w in ("Met", "not met", "needs-human")
    ]
    assert words == ["met", "not_met", "needs_human"]


def test_criteria_are_matched_by_words_number_or_position() -> None:
    asked = ["`greet.py` defines `greet(name)`", "The greeting is polite", "No `any` types used"]
    given = parse_verdict(
        {"criteria": [entry("3."), entry("the greeting is polite"), entry("greet.py defines greet(name)")]}
    ).criteria
    matched, missing = match_criteria(asked, given)
    assert missing == []
    assert [matched[n].criterion for n in range(3)] == [
        "greet.py defines greet(name)",
        "the greeting is polite",
        "3.",
    ]
    by_position = parse_verdict({"criteria": [entry("first"), entry("second"), entry("third")]}).criteria
    assert match_criteria(asked, by_position)[1] == []
    short = parse_verdict({"criteria": [entry("The greeting is polite")]}).criteria
    assert match_criteria(asked, short)[1] == [0, 2]
