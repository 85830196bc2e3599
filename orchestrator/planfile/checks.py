"""The checks a unit's text carries: `Run: \\`cmd\\`` (or `Verify:`, `Test:`, `Check:`) inline or over
a fenced shell block, or a bare shell block followed by `Expected:`; each with the `Expected:` text
that follows it and the outcome that text asks for. Pure string work over lines.

What an expectation asks for (`expectation`): FAIL when its first word is FAIL (or it speaks of a
failure: "fails", "error", "失败"), PASS when it says so ("PASS", "passes", "clean", "exit code 0",
"通过"), otherwise OUTPUT: words about what the command prints ("No output", "Shows list of skills"),
kept for a reviewer, never guessed at. A check with no `Expected:` must succeed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrator.domain.plan import Expectation
from orchestrator.planfile import refs

_LIST_MARK = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+(?:\[[ xX]\][ \t]+)?")
_LABEL = re.compile(r"^(?:run|verify|verification|test|tests|check|command)\s*:\s*", re.IGNORECASE)
_EXPECTED = re.compile(r"^expected(?:\s+(?:output|result|outcome))?\s*:\s*", re.IGNORECASE)
_FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)")
_STEP = re.compile(
    r"^(?:#{1,6}[ \t]+)?(?:[-*+][ \t]+(?:\[[ xX]\][ \t]+)?)?(?:\*\*|__)?step\s+\d+", re.IGNORECASE
)
_HEADING = re.compile(r"^#{1,6}[ \t]")
_GIT_WRITE = re.compile(r"^git\s+(?:add|commit|push|tag|checkout|switch|merge|rebase|stash)\b")

_FAIL_FIRST = re.compile(
    r"^\W*(?:fail|fails|failed|failure|error|red|编译失败|测试失败|失败|报错)", re.IGNORECASE
)
_PASS_FIRST = re.compile(
    r"^\W*(?:pass|passes|passed|passing|ok|clean|success|succeeds|green|all\s+pass|both\s+pass|"
    r"exit(?:s)?\s+(?:code\s+)?0|退出码\s*0|通过|全部通过|编译通过|成功)",
    re.IGNORECASE,
)
_PASS_WORDS = re.compile(
    r"\b(?:pass|passes|passed|succeeds?|successful(?:ly)?|clean|exit(?:s)?\s+(?:code\s+)?0|"
    r"(?:no|without|zero|0)\s+(?:errors?|failures?|warnings?))\b|通过|成功|退出码\s*0",
    re.IGNORECASE,
)
_FAIL_WORDS = re.compile(
    r"\b(?:fail|fails|failed|failing|failure|errors?|cannot|can't|undefined|not\s+(?:found|defined|exist))\b"
    r"|失败|报错|错误",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class FoundCheck:
    command: str
    line: int
    """Index into the lines given."""
    expect: Expectation
    expected: str


def expectation(text: str) -> Expectation:
    """What `Expected: <text>` asks of a command (see the module docstring)."""
    words = refs.plain_labels(text).strip()
    if not words:
        return Expectation.PASS
    if _FAIL_FIRST.match(words):
        return Expectation.FAIL
    if _PASS_FIRST.match(words):
        return Expectation.PASS
    head = re.split(r"(?<=[.;。])\s|\n", words, maxsplit=1)[0]
    if _PASS_WORDS.search(head) and not _FAIL_WORDS.search(_PASS_WORDS.sub("", head)):
        return Expectation.PASS
    if _FAIL_WORDS.search(head):
        return Expectation.FAIL
    return Expectation.OUTPUT


def code_mask(lines: list[str]) -> list[bool]:
    """Per line: inside a fenced code block, its fences included (CommonMark's closing rule)."""
    mask = [False] * len(lines)
    fence = ""
    for index, line in enumerate(lines):
        if fence:
            mask[index] = True
            stripped = line.strip()
            if stripped.startswith(fence) and not stripped.strip(fence[0]):
                fence = ""
            continue
        opening = _FENCE.match(line)
        if opening and len(line) - len(line.lstrip()) < 4:
            fence = opening.group("fence")
            mask[index] = True
    return mask


def _label_text(line: str) -> str:
    return refs.plain_labels(_LIST_MARK.sub("", line, count=1)).strip()


def _fence_commands(lines: list[str], start: int) -> tuple[list[str], int] | None:
    """The commands of the shell block opening at `start`, and the line after it; None when the
    block is in another language."""
    opening = _FENCE.match(lines[start])
    if opening is None or opening.group("lang").lower() not in refs.SHELL_LANGUAGES:
        return None
    commands, read = refs.block_commands(lines[start + 1 :], opening.group("fence"))
    return commands, start + 1 + read


def _fence_end(lines: list[str], start: int) -> int:
    """The line after the fenced block opening at `start`."""
    opening = _FENCE.match(lines[start])
    assert opening is not None
    fence = opening.group("fence")
    for index in range(start + 1, len(lines)):
        stripped = lines[index].strip()
        if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
            return index + 1
    return len(lines)


def _next_content(lines: list[str], start: int, end: int) -> int | None:
    index = start
    while index < end and not lines[index].strip():
        index += 1
    return index if index < end else None


def _expected_after(lines: list[str], mask: list[bool], start: int, end: int) -> str:
    """The `Expected:` text after a command, before the next label, step or heading."""
    index = start
    while index < end:
        line = lines[index]
        if mask[index] or not line.strip():
            index += 1
            continue
        text = _label_text(line)
        found = _EXPECTED.match(text)
        if found:
            rest = text[found.end() :].strip()
            if rest:
                return rest
            items: list[str] = []
            for following in lines[index + 1 : end]:
                if not following.strip():
                    if items:
                        break
                    continue
                if _LABEL.match(_label_text(following)) or _STEP.match(following.strip()):
                    break
                items.append(_label_text(following))
            return "\n".join(items)
        # Another `Run:` line belongs to the same group ("Run: a", "Run: b", "Expected: both pass").
        if _STEP.match(line.strip()) or _HEADING.match(line):
            return ""
        index += 1
    return ""


def checks_in(lines: list[str], mask: list[bool] | None = None) -> list[FoundCheck]:
    """Every check written in `lines` (a unit's text), in order. `mask` marks code lines (computed
    when not given)."""
    if mask is None:
        mask = code_mask(lines)
    found: list[FoundCheck] = []
    end = len(lines)
    index = 0
    while index < end:
        line = lines[index]
        if mask[index]:
            if _FENCE.match(line) is None:
                index += 1
                continue
            closing = _fence_end(lines, index)
            block = _fence_commands(lines, index)
            after = _next_content(lines, closing, end) if block else None
            if block and after is not None and _EXPECTED.match(_label_text(lines[after])):
                expected = _expected_after(lines, mask, closing, end)
                found.extend(_found(block[0], index, expected))
            index = closing
            continue
        text = _label_text(line)
        label = _LABEL.match(text)
        if label is None:
            index += 1
            continue
        rest = text[label.end() :]
        commands: list[str]
        after_commands = index + 1
        if rest.strip():
            commands = refs.inline_commands(rest)
        else:
            opening = _next_content(lines, index + 1, end)
            block = _fence_commands(lines, opening) if opening is not None and mask[opening] else None
            commands, after_commands = block if block else ([], index + 1)
        if commands:
            expected = _expected_after(lines, mask, after_commands, end)
            found.extend(_found(commands, index, expected))
        index = max(after_commands, index + 1)
    return found


def _found(commands: list[str], line: int, expected: str) -> list[FoundCheck]:
    expect = expectation(expected)
    return [
        FoundCheck(command=command, line=line, expect=expect, expected=expected)
        for command in commands
        if not _GIT_WRITE.match(command)
    ]
