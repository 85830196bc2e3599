"""What a plan asks of every unit (issue 17 item 4): its rules sections (units.py finds them by
their headings), the rules an orchestration prompt writes inside its sub-agent prompt template
("CRITICAL RULES (from /MJ/CLAUDE.md):" and a list, in a code block), and the standards they hold
one item each (`Plan.standards`, for every worker prompt and every review)."""

from __future__ import annotations

import re

from orchestrator.domain.plan import PlanSection
from orchestrator.planfile import refs
from orchestrator.planfile.outline import Outline

_TEMPLATE_HEADING = re.compile(
    r"\b(?:prompt\s+template|sub-?agent\s+prompt|worker\s+prompt)\b", re.IGNORECASE
)
_RULES_LABEL = re.compile(r"^\s*(?P<label>[A-Z][A-Z /&'-]*\b(?:RULES?|STANDARDS?)\b[^:\n]*):\s*$")
_STANDARDS_TITLE = re.compile(r"\b(?:rules?|standards?|definition\s+of\s+done)\b", re.IGNORECASE)
_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])\s+(?:\[[ xX]\]\s+)?(?P<text>.+)$")
_LABEL = re.compile(r"^[\W_]*(?P<label>[^:\n]{1,30}?)[*_]*:[*_]*\s*$")
_MARKS = re.compile(r"[✅❌⚠️✔✓☑⛔🚫\ufe0f]")


def _title(label: str) -> str:
    """ "CRITICAL RULES (from /MJ/CLAUDE.md)" -> "Critical Rules (from /MJ/CLAUDE.md)"."""
    return " ".join(
        word.capitalize() if word.isalpha() and word.isupper() else word for word in label.split()
    )


def template_rules(outline: Outline, known: list[str]) -> list[PlanSection]:
    """The rules lists inside the code blocks of a sub-agent prompt template section, each a rules
    section of its own; one whose title a rules section of the plan already has is left out."""
    seen = {" ".join(title.lower().split()[:2]) for title in known}
    found: list[PlanSection] = []
    lines = outline.lines
    for section in outline.sections:
        if not _TEMPLATE_HEADING.search(section.title):
            continue
        for n in range(section.line + 1, section.end):
            label = _RULES_LABEL.match(lines[n]) if outline.in_code[n] else None
            if label is None:
                continue
            items: list[str] = []
            for k in range(n + 1, section.end):
                if not outline.in_code[k] or _ITEM.match(lines[k]) is None:
                    break
                items.append(lines[k].strip())
            title = _title(label.group("label"))
            if items and " ".join(title.lower().split()[:2]) not in seen:
                seen.add(" ".join(title.lower().split()[:2]))
                found.append(PlanSection(title=title, line=n + 1, text=f"{title}:\n" + "\n".join(items)))
    return found


def standards(rules: list[PlanSection]) -> list[str]:
    """The items of the rules sections whose title speaks of rules or standards, one each, with a
    short label they stand under ("Never: Use `any` types")."""
    found: list[str] = []
    for section in rules:
        if not _STANDARDS_TITLE.search(section.title):
            continue
        label = ""
        for line in section.text.splitlines()[1:]:
            item = _ITEM.match(line)
            if item is None:
                said = _LABEL.match(_MARKS.sub("", refs.plain_labels(line)).strip())
                label = said.group("label").strip() if said and len(said.group("label").split()) <= 2 else ""
                continue
            if line.startswith((" ", "\t")):
                continue
            text = " ".join(_MARKS.sub("", refs.plain_labels(item.group("text"))).split())
            standard = f"{label}: {text}" if label else text
            if text and standard not in found:
                found.append(standard)
    return found
