"""Stage 3 of parsing: every task's id, its own ("T001", "2.1", "45-01") or one derived from its
words and the nearest numbered heading ("2-websocket-connections-stable-for-5"); a repeated own id
is an error and loads as `<id>-dup2`. See the parser's docstring for the rules.
"""

from __future__ import annotations

import hashlib
import re

from orchestrator.domain import dag
from orchestrator.domain.plan import Diagnostic, Severity
from orchestrator.planfile.outline import Outline

_SLUG_WORD = re.compile(r"[a-z0-9]+")


def assign_ids(outline: Outline, diagnostics: list[Diagnostic]) -> list[str]:
    """Every task's id, by task index (ids do not depend on phases)."""
    ids = [""] * len(outline.tasks)
    first_line: dict[str, int] = {}
    taken: set[str] = set()
    for task in outline.tasks:
        if task.own_id is None:
            continue
        wanted = task.own_id
        if wanted in first_line:
            renamed = unique(f"{wanted}-dup", taken, start=2, joiner="")
            diagnostics.append(
                Diagnostic(
                    severity=Severity.ERROR,
                    line=task.line + 1,
                    message=f"duplicate task id {wanted} (also on line {first_line[wanted]}); "
                    f"this one is loaded as {renamed}: give each task its own id",
                    code=dag.DUPLICATE_ID,
                )
            )
            wanted = renamed
        else:
            first_line[wanted] = task.line + 1
        ids[task.index] = wanted
        taken.add(wanted.lower())
    for task in outline.tasks:
        if task.own_id is not None:
            continue
        words = slug(task.title) or "t-" + hashlib.sha1(task.title.encode()).hexdigest()[:6]
        scope = next(
            (
                outline.sections[s].scope
                for s in reversed(outline.chain(task.section))
                if outline.sections[s].scope
            ),
            None,
        )
        ids[task.index] = unique(f"{scope}-{words}" if scope else words, taken)
    return ids


def unique(wanted: str, taken: set[str], start: int = 2, joiner: str = "-") -> str:
    candidate = wanted
    number = start
    while candidate.lower() in taken:
        candidate = f"{wanted}{joiner}{number}"
        number += 1
    taken.add(candidate.lower())
    return candidate


def slug(text: str, max_length: int = 40) -> str:
    words = _SLUG_WORD.findall(text.lower())
    slug = ""
    for word in words:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > max_length:
            break
        slug = candidate
    if not slug and words:
        slug = words[0][:max_length]
    return slug
