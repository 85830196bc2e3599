"""Units a plan marks as a person's step: no agent is given them, they wait for a human.

What people write (spec-kit's "Execute the quickstart scenarios manually", "Manual validation of
the login flow", "UAT sign-off", "Human review of the copy", a `[Manual]` tag, GSD's
`checkpoint:*` tasks, read in units.py). The words must say that a person does the unit, not that
the unit is about something manual: "Add a manual override flag", "Write the manual test
checklist" and "Allow users to manually trigger a sync" are work for an agent.
"""

from __future__ import annotations

import re

# A leading id, box markers and emphasis: "T012 [P] [US1] **Manually verify**" -> "Manually verify".
_LEAD = re.compile(r"^(?:\s*(?:[A-Z]{1,4}-?\d+[\w.]*|\d+(?:\.\d+)*\.?|\[[^\]]*\]|[*_`]+|[-:—]))*\s*")
_TAG = re.compile(r"\[(?:manual|human|uat)\]|\((?:manual|human)\)", re.IGNORECASE)

# What a person does by hand: "manual testing", "manual QA", "manual validation of ...".
_MANUAL_ACT = re.compile(
    r"\bmanual(?:ly)?\s+(?:qa|test(?:s|ing)?|validat(?:e|ion|ing)|verif(?:y|ication|ying)|check(?:s|ing)?"
    r"|review(?:ing)?|inspect(?:ion|ing)?|smoke[- ]test(?:s|ing)?|acceptance|walk-?through|e2e|end-to-end)\b",
    re.IGNORECASE,
)
_BY_HAND = re.compile(r"\bmanually\b|\bby hand\b", re.IGNORECASE)
_UAT = re.compile(r"\bUAT\b|\buser acceptance test(?:s|ing)?\b", re.IGNORECASE)
_HUMAN = re.compile(
    r"\bhuman\s+(?:review|verification|validation|check|sign[- ]?off|approval|judg(?:e)?ment|QA)\b",
    re.IGNORECASE,
)

# The unit's first word when a person is told to do something (with "manually" / "by hand").
_PERSON_VERBS = frozenset(
    "execute run perform do test verify validate check review confirm inspect try walk click open "
    "visit exercise smoke-test play listen watch sign approve".split()
)
# The unit's first word when it makes something (a checklist, a flag, docs): an agent's work
# even when what it makes is about manual testing.
_MAKING_VERBS = frozenset(
    "add write create implement build document draft generate update define design prepare set "
    "introduce support allow enable provide extend refactor fix remove rename move".split()
)


def manual_words(title: str) -> str:
    """The words of `title` that make the unit a person's step, or "" when it is not one."""
    text = _LEAD.sub("", title.replace("**", " ")).strip()
    tag = _TAG.search(title)
    if tag:
        return tag.group(0)
    first = text.split(maxsplit=1)[0].lower().strip(",.:;") if text else ""
    if first in _MAKING_VERBS:
        return ""
    if first == "manually":
        return " ".join(text.split()[:2])
    for pattern in (_MANUAL_ACT, _UAT, _HUMAN):
        found = pattern.search(text)
        if found:
            return found.group(0)
    if first in _PERSON_VERBS:
        found = _BY_HAND.search(text)
        if found:
            return found.group(0)
    return ""
