"""Dependency, parallel and verification phrases found in a plan's prose.

Pure string work on the text of one task item, one section preamble or one free
statement; resolving what a reference points at is the parser's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Emphasis markers around labels ("**Depends on**:", "_Requirements: 1.3_") get in the way of
# matching; they are dropped before the phrases below are looked for.
_EMPHASIS = re.compile(r"(?<![\w`])[*_]+|[*_]+(?![\w`])")

# "depends on", "Dependencies:", "Blocked by", "Wait for:", "Depends on**:" ...
_HARD_KEYWORD = re.compile(
    r"\b(?:depends\s+on|blocked\s+by|waits?\s+for|requires\s+tasks?)\b[ \t]*:?[ \t]*"
    r"|\b(?:dependencies|dependency|depends|prerequisites?)[ \t]*:[ \t]*",
    re.IGNORECASE,
)
# "(after 6A and 6B complete)": only inside parentheses, and only ids that resolve count,
# because "after" is common prose ("after 5 minutes").
_SOFT_AFTER = re.compile(r"\(\s*after\s+([^)]*)\)", re.IGNORECASE)
_BULLET = re.compile(r"^[ \t]*[-*+][ \t]+(?!\[[ xX]\])(.*)$")
NONE_WORDS = re.compile(r"^\s*(?:none|nothing|n/?a|no\s+dependencies|-+|—)\b", re.IGNORECASE)

# One reference: an optional kind word, then something id-like (it holds a digit, or is one
# capital letter after "Phase").
_REFERENCE = re.compile(
    r"(?:\b(?P<kind>tasks?|phases?|sub-?agents?|steps?|stories|story)\s+)?"
    r"(?<![\w\-])(?:(?<=\.\.)|(?<!\.))(?P<id>"
    r"[A-Za-z]*\d(?:[\w\-]|\.(?!\.))*[A-Za-z0-9]"  # T001, 2.1, 45-01, 6A ("T003..T010" is a range)
    # Capitals, a dash, digits (TASK-12, T-1), or T and one digit (T1). Only so: "OAuth2", "v2" or
    # "M2" after "depends on" name no task.
    r"|(?-i:[A-Z]+-\d(?:[\w\-]|\.(?!\.))*[A-Za-z0-9]|[A-Z]+-\d|T\d)"
    r"|\d)",
    re.IGNORECASE,
)
_RANGE_GLUE = re.compile(r"^\s*(?:[–—]|-|\.\.|to|through|thru)\s*$", re.IGNORECASE)
_CLAUSE_END = re.compile(r"[;\n)]|\.\s|\.$")

_PARALLEL = re.compile(
    r"\b(?:can|may|could)\s+(?:be\s+)?(?:run|ran|done|executed|worked\s+on)\s+in\s+parallel\b"
    r"|\bparallel\s+with\b|\bin\s+parallel\s+with\b",
    re.IGNORECASE,
)
_PARALLEL_WITH = re.compile(r"\bparallel\s+with\s+([^)\n;]*)", re.IGNORECASE)

_VERIFY_LABEL = re.compile(r"\b(?:run|verify|verification|test|tests|check)\s*:\s*", re.IGNORECASE)
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
_FENCE_OPEN = re.compile(r"^[ \t]*(?:[-*+][ \t]+)?(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)[ \t]*$")
SHELL_LANGUAGES = frozenset({"", "bash", "sh", "shell", "zsh", "console", "terminal"})
_BETWEEN_COMMANDS = re.compile(r"^[\s,;]*(?:(?:and|or|then|&&)\s*)?$", re.IGNORECASE)

# Free statements between task ids elsewhere in the plan ("T008 blocks T009", "T001 → T002").
_FORWARD_WORDS = re.compile(r"\s(?:blocks|before|→|->|=>|⟶)\s", re.IGNORECASE)
_WORDS_FORWARD = re.compile(r"^(?:blocks|before)$", re.IGNORECASE)
_BACKWARD_WORDS = re.compile(r"\s(?:depends\s+on|requires|after|needs)\s", re.IGNORECASE)


@dataclass(frozen=True)
class Reference:
    """A name in the plan's text that should point at a task, a section or a phase."""

    kind: str
    """"task", "phase", "section" or "" when the plan did not say."""
    name: str
    range_end: str | None = None
    """For "T003–T010a": the last id of the range (name is the first)."""


@dataclass
class DependencyClause:
    """What one stretch of text says a thing waits for."""

    references: list[Reference] = field(default_factory=list)
    explicit_none: bool = False
    """The plan said "Dependencies: None": nothing implied either."""
    strict: bool = True
    """Unresolvable references are reported (False for "(after ...)", which is also prose)."""


def plain(text: str) -> str:
    """The text without emphasis markers, so "**Depends on**:" reads as "Depends on:"."""
    return _EMPHASIS.sub("", text)


def _kind(word: str | None) -> str:
    if not word:
        return ""
    word = word.lower()
    if word.startswith("phase"):
        return "phase"
    if word.startswith(("sub", "step", "stor")):
        return "section"
    return "task"


def references_in(clause: str) -> list[Reference]:
    """Every reference in a clause, ranges joined ("T003–T010a", "Tasks 2.1 to 2.4")."""
    found: list[Reference] = []
    matches = list(_REFERENCE.finditer(clause))
    index = 0
    kind = ""
    while index < len(matches):
        match = matches[index]
        if match.group("kind"):
            kind = _kind(match.group("kind"))
        name = match.group("id")
        following = matches[index + 1] if index + 1 < len(matches) else None
        if following is not None and _RANGE_GLUE.match(clause[match.end() : following.start()]):
            found.append(Reference(kind, name, following.group("id")))
            index += 2
            continue
        found.append(Reference(kind, name))
        index += 1
    return found


def _clause_after(text: str, start: int) -> str:
    """The statement after a keyword, up to the end of its sentence or of the parentheses it
    stands in. An aside in parentheses is dropped: in "Phase 4 (v1.0 complete)" and "Phase 12
    (can run in parallel with Phases 14-16)" only the phase before it is depended on."""
    pieces: list[str] = []
    position = start
    while True:
        end = _CLAUSE_END.search(text, position)
        opening = text.find("(", position, end.start() if end else len(text))
        if opening < 0:
            pieces.append(text[position : end.start() if end else len(text)])
            return "".join(pieces)
        pieces.append(text[position:opening])
        closing = text.find(")", opening)
        if closing < 0:
            return "".join(pieces)
        position = closing + 1


def dependency_clauses(text: str) -> list[DependencyClause]:
    """The dependency statements in one task's (or one section's) own text."""
    text = plain(text)
    clauses: list[DependencyClause] = []
    for match in _HARD_KEYWORD.finditer(text):
        clause = _clause_after(text, match.end())
        if not clause.strip():  # "**Dependencies:**" and a list below it
            clause = _bullets_after(text, match.end())
        if NONE_WORDS.match(clause):
            clauses.append(DependencyClause(explicit_none=True))
            continue
        refs = references_in(clause)
        if refs:
            clauses.append(DependencyClause(refs))
    for match in _SOFT_AFTER.finditer(text):
        refs = references_in(match.group(1))
        if refs:
            clauses.append(DependencyClause(refs, strict=False))
    return clauses


def _bullets_after(text: str, start: int) -> str:
    """The plain bullets right below a label that ends its line, as one comma-separated clause."""
    line_end = text.find("\n", start)
    if line_end < 0 or text[start:line_end].strip():
        return ""
    items: list[str] = []
    for line in text[line_end + 1 :].split("\n"):
        bullet = _BULLET.match(line)
        if bullet is None:
            if line.strip() or items:
                break
            continue
        items.append(_clause_after(bullet.group(1), 0))
    return ", ".join(items)


def says_parallel(text: str) -> bool:
    return _PARALLEL.search(plain(text)) is not None


def parallel_with(text: str) -> list[Reference]:
    """What "can run in parallel with 2A" / "parallel with 5A/5B" names."""
    text = plain(text)
    return [ref for m in _PARALLEL_WITH.finditer(text) for ref in references_in(m.group(1))]


def starts_with_verify_label(line: str) -> bool:
    """A line that opens with "Verify:", "**Run:**" and the like."""
    plain = line.replace("*", "").replace("_", " ")
    match = _VERIFY_LABEL.search(plain)
    return bool(match and not plain[: match.start()].strip())


def verify_commands(text: str) -> list[str]:
    """Inline code right after "Run:", "Verify:", "Verification:", "Test:" (labels may be bold),
    or a shell code block right under such a label that ends its line: one command per line."""
    text = plain_labels(text)
    commands: list[str] = []
    for label in _VERIFY_LABEL.finditer(text):
        block = _fenced_after(text, label)
        if block is not None:
            commands.extend(c for c in block if c not in commands)
            continue
        position = label.end()
        while True:
            span = _CODE_SPAN.search(text, position)
            if span is None or not _BETWEEN_COMMANDS.match(text[position : span.start()]):
                break
            if len(span.group(1)) >= 3 and "\n" in span.group(2):  # a fence, not inline code
                break
            command = span.group(2).strip()
            if span.group(1) != "`" and command.startswith("`"):
                command = command.strip()
            if command and command not in commands:
                commands.append(command)
            position = span.end()
    return commands


def inline_commands(text: str) -> list[str]:
    """The code spans at the start of `text` (after a label), joined by "and", ",", "&&" ...:
    "`npm run typecheck -w web` and `npm run lint`" -> both."""
    commands: list[str] = []
    position = 0
    while True:
        span = _CODE_SPAN.search(text, position)
        if span is None or not _BETWEEN_COMMANDS.match(text[position : span.start()]):
            return commands
        if len(span.group(1)) >= 3 and "\n" in span.group(2):
            return commands
        command = span.group(2).strip()
        if command and command not in commands:
            commands.append(command)
        position = span.end()


def _fenced_after(text: str, label: re.Match[str]) -> list[str] | None:
    """The commands of a fenced shell block that follows a label ending its line, or None."""
    line_end = text.find("\n", label.start())
    if line_end < 0 or text[label.start() : line_end].partition(":")[2].strip():
        return None
    lines = text[line_end + 1 :].split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    opening = _FENCE_OPEN.match(lines[0]) if lines else None
    if opening is None or opening.group("lang").lower() not in SHELL_LANGUAGES:
        return None
    return block_commands(lines[1:], opening.group("fence"))[0]


def block_commands(lines: list[str], fence: str) -> tuple[list[str], int]:
    """The commands in the body of a shell block opened by `fence` (`lines` start after the opening
    line): a line ending in a backslash continues on the next, a `$ ` prompt is dropped, comments
    and blank lines are skipped. Also how many lines were read, the closing fence included."""
    commands: list[str] = []
    pending = ""
    read = 0
    for line in lines:
        read += 1
        stripped = line.strip()
        if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
            break
        if pending:
            stripped = f"{pending} {stripped}"
            pending = ""
        if stripped.endswith("\\"):
            pending = stripped[:-1].rstrip()
            continue
        stripped = stripped.removeprefix("$ ")
        if stripped and not stripped.startswith("#"):
            commands.append(stripped)
    return commands, read


def plain_labels(text: str) -> str:
    """Drop emphasis markers outside code spans: commands keep their `*` and `_`."""
    pieces: list[str] = []
    position = 0
    for span in _CODE_SPAN.finditer(text):
        pieces.append(_EMPHASIS.sub("", text[position : span.start()]))
        pieces.append(span.group(0))
        position = span.end()
    pieces.append(_EMPHASIS.sub("", text[position:]))
    return "".join(pieces)


@dataclass(frozen=True)
class Statement:
    """A free statement: every task in `later` waits for every task in `earlier`."""

    earlier: list[Reference]
    later: list[Reference]


def free_statements(line: str) -> list[Statement]:
    """Ordering statements between ids in a line of prose ("T008 blocks T009, T015")."""
    line = plain(line)
    statements: list[Statement] = []
    for sentence in re.split(r"[;\n]|\.\s", line):
        parts = re.split(
            r"(\s(?:blocks|before|→|->|=>|⟶|depends\s+on|requires|after|needs)\s)", f" {sentence} "
        )
        if len(parts) < 3:
            continue
        texts = parts[0::2]
        words = [word.strip().lower() for word in parts[1::2]]
        backward = [_BACKWARD_WORDS.match(f" {word} ") is not None for word in words]
        objects = [references_in(text) for text in texts]  # what the word before a side points at
        subjects = list(objects)  # what the word after it speaks of
        for index in range(1, len(texts) - 1):
            # "T003 depends on T002, T004 depends on T001": between two words, the comma ends the
            # first statement and starts the second. Arrows keep groups: "T001 → T002, T003 → T004".
            head, comma, tail = texts[index].rpartition(",")
            # Words split at a comma too ("T001 blocks T004, T002 blocks T005"); arrows chain.
            worded = _WORDS_FORWARD.match(words[index - 1]) and _WORDS_FORWARD.match(words[index])
            if comma and (backward[index - 1] or backward[index] or worded):
                objects[index] = references_in(head)
                subjects[index] = references_in(tail)
        for index, word in enumerate(words):
            left, right = subjects[index], objects[index + 1]
            if not left or not right:
                continue
            left, right = _shared_kind(left, right), _shared_kind(right, left)
            if backward[index]:
                statements.append(Statement(right, left))
            elif _FORWARD_WORDS.match(f" {word} "):
                statements.append(Statement(left, right))
    return statements


def _shared_kind(references: list[Reference], other_side: list[Reference]) -> list[Reference]:
    """ "Task 4 depends on 1+3": bare numbers take the kind the other side names."""
    kinds = {ref.kind for ref in other_side if ref.kind}
    if len(kinds) != 1:
        return references
    kind = kinds.pop()
    return [Reference(kind, ref.name, ref.range_end) if not ref.kind else ref for ref in references]


_PARALLEL_GROUP = re.compile(
    r"(?P<subject>\b(?:tasks?|sub-?agents?|fix(?:es)?)\b[^.;\n]*?)\s+(?:can|may|could)\s+(?:all\s+)?(?:be\s+)?"
    r"(?:run|ran|done|executed|worked\s+on|built|implemented)\s+in\s+parallel(?!\s+with)",
    re.IGNORECASE,
)


def parallel_groups(text: str) -> list[list[Reference]]:
    """ "Tasks 1-3 can be done in parallel", "Task 2 and Task 3 can run in parallel": the units of
    each such sentence, which may run side by side (bare numbers are task numbers here)."""
    groups: list[list[Reference]] = []
    for match in _PARALLEL_GROUP.finditer(plain(text)):
        found = references_in(match.group("subject"))
        if found:
            groups.append([Reference(ref.kind or "task", ref.name, ref.range_end) for ref in found])
    return groups
