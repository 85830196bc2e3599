"""Units a plan marks as a person's step (issue 13 item 3): the words people write for it, and the
ones that only talk about something manual (an agent's work)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.planfile import parse_bytes, parse_plan
from orchestrator.planfile.manual import manual_words


@pytest.mark.parametrize(
    ("title", "words"),
    [
        ("Execute the quickstart scenarios manually", "manually"),
        ("T040 [P] Manual validation of the login flow", "Manual validation"),
        ("Manually verify the audio plays", "Manually verify"),
        ("Perform manual QA on staging", "manual QA"),
        ("UAT sign-off with the client", "UAT"),
        ("User acceptance testing of the export", "User acceptance testing"),
        ("Human review of the onboarding copy", "Human review"),
        ("T012 [Manual] Check the colours on a phone", "[Manual]"),
        ("Test the export by hand", "by hand"),
        # About something manual, or making something for a person: an agent's work.
        ("Add a manual override flag", ""),
        ("Manual override for the scheduler", ""),
        ("Write the manual test checklist", ""),
        ("Allow users to manually trigger a sync", ""),
        ("Implement manual QA tracking table", ""),
        ("Ensure the list can be manually refreshed", ""),
        ("Run quickstart.md validation", ""),
        ("Checkpoint - Verify Phase 1", ""),
    ],
)
def test_manual_words(title: str, words: str) -> None:
    assert manual_words(title) == words


def test_a_box_plan_marks_its_manual_units() -> None:
    plan = parse_bytes(
        b"# P\n\n- [ ] T001 Add a manual override flag\n"
        b"- [ ] T002 Execute the quickstart scenarios manually\n",
        Path("plan.md"),
    )
    assert [(t.id, t.manual) for t in plan.tasks] == [("T001", False), ("T002", True)]


def test_no_unit_of_the_real_plans_is_manual(shared_plans: Path) -> None:
    # None of them writes a person's step as a unit ("Remaining manual steps" is a report's line).
    manual = {
        path.name: [t.id for t in parse_plan(path).tasks if t.manual]
        for path in sorted(shared_plans.glob("*.md"))
    }
    assert manual
    assert all(ids == [] for ids in manual.values()), manual
