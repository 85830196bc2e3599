"""The outline of a markdown plan, built once from markdown-it's block tokens: headings (sections
with their line spans and the phase or scope number their words name), checkbox list items (tasks
with their box's byte offset, own id as written, title, nesting and own text), the prose that may
state dependencies, front matter, and what the walk found wrong (quoted or HTML-block checkboxes,
undefined `[/]` / `[-]`, lists nested past the bound).

The stages after it (`phases`, `ids`, `dependencies`) read the outline; `parser` runs them in
order. See the parser's docstring for the whole set of rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.front_matter import front_matter_plugin

from orchestrator.domain.plan import BoxState, Diagnostic, Severity
from orchestrator.planfile import refs

MAX_NESTING = 100
"""markdown-it's bound on nested blocks (each list level takes two: the list and its item), so
lists 49 deep are read. The commonmark preset's 20 silently dropped boxes ten lists deep; past this
bound the parser reports where it stopped (a "nesting" error), since markdown-it then skips the
rest of the enclosing block. Each level costs every line inside it a pass, so the bound also keeps
pathological input cheap: a 10 MB plan of 48-deep lists parses in about twice a flat one's time."""

# Inline parsing is the costly half of markdown-it and we need none of it: task text is read
# from the raw source, and code spans are found by `refs`.
_MARKDOWN = (
    MarkdownIt("commonmark", {"maxNesting": MAX_NESTING})
    .enable("table")
    .use(front_matter_plugin)
    .disable("inline")
)
_CONTAINERS = {"bullet_list_open", "ordered_list_open", "list_item_open", "blockquote_open"}

_EOL = re.compile(r"\r\n|\r|\n")
_EOL_BYTES = re.compile(rb"\r\n|\r|\n")
_BOX = re.compile(r"^\[([ xX/\-])\](\*?)(?=[ \t]|$)")
_ITEM_START = re.compile(r"^(?:[ \t]*(?:>[ \t]?)*[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+)+")
_LEGEND_USE = re.compile(r"^[ \t>]*(?:[-*+]|\d{1,9}[.)])[ \t]+\[([/-])\]", re.MULTILINE)
_HTML_CHECKBOX = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+\[[ xX]\]", re.MULTILINE)

_ID_PATTERNS = (
    re.compile(r"^(?P<id>T\d+[a-z]?)(?=[\s:.)\]]|$)"),
    re.compile(r"^(?P<id>[A-Z][A-Z0-9]*-\d+[a-z]?)(?=[\s:.)\]]|$)"),
    re.compile(r"^(?P<id>\d+(?:\.\d+)*-\d+)\s*:"),
    re.compile(r"^(?P<id>\d+(?:\.\d+)+)\.?(?=\s|$)"),
    re.compile(r"^(?P<id>\d+)\.(?=\s|$)"),
)
# GSD plan files named as items: "01-02-PLAN.md — text", "12.1-03-PLAN.md: text", "12-PLAN-01.md -- text".
_GSD_PLAN_FILE = re.compile(
    r"^(?:(?P<phase>\d+(?:\.\d+)*)-(?P<plan>\d+)-PLAN|(?P<phase2>\d+(?:\.\d+)*)-PLAN-(?P<plan2>\d+))\.md"
    r"(?=[\s:—–-]|$)[\s:—–-]*",
    re.IGNORECASE,
)
_KIRO_CHILD_ID = re.compile(r"^\d+(?:\.\d+)+$")
_NAME_END = re.compile(r"\s+(?:-{1,2}|—|–)\s+")
_PHASE_ITEM = re.compile(r"^phase\s+(?P<id>\d+(?:\.\d+)*[a-z]?)\s*[:—–]\s*", re.IGNORECASE)
_PARALLEL_MARK = re.compile(r"\[P\]\s*")
# A GSD roadmap's milestone line ("v1.0 MVP - Phases 1-4 (shipped 2026-03-02)"): a summary of
# phases the plan lists on their own, not a unit of work.
_MILESTONE_ITEM = re.compile(
    r"^[\W_]*v?\d+(?:\.\d+)+\b.{0,80}?\bphases?\s+\d+(?:\.\d+)?(?:\s*(?:-|–|—|to)\s*\d+(?:\.\d+)?)?\b",
    re.IGNORECASE,
)
_PHASE_HEADING = re.compile(
    r"^[\W_]*phase\s+(?P<id>\d+(?:\.\d+)*[a-z]?|[A-Z])(?![\w.])\+?\s*(?P<rest>.*)$", re.IGNORECASE
)
_SCOPE_HEADING = re.compile(
    r"^[\W_]*(?:(?:phase|sub-?agent|agent|task|step|stage|part|milestone|story|epic|section|wave)\s+)?"
    r"(?P<id>\d+(?:\.\d+)*[a-z]?)(?![\w])",
    re.IGNORECASE,
)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_FREE_HINT = re.compile(r"blocks|before|→|->|=>|⟶|depends|requires|after|needs|parallel", re.IGNORECASE)
_FRONT_TITLE = re.compile(r"^title\s*:\s*['\"]?(.*?)['\"]?\s*$", re.MULTILINE)


@dataclass
class Section:
    """A heading and the lines up to the next heading of its level or above."""

    index: int
    level: int
    line: int
    """0-based line of the heading."""
    title: str
    parent: int | None
    end: int = 0
    phase_number: str | None = None
    defines_phase: bool = False
    phase_title: str = ""
    scope: str | None = None


@dataclass
class _OpenItem:
    start: int
    end: int
    task: int | None = None


@dataclass
class RawTask:
    """A checkbox list item as written; lines are 0-based, `start`/`end` its list item's span."""

    index: int
    line: int
    start: int
    end: int
    box_offset: int | None
    state: BoxState
    optional: bool
    own_id: str | None
    title: str
    parallel: bool
    section: int | None
    parent: int | None
    phase_item: str | None = None
    """For a GSD phase item ("Phase 2: Name"): the phase number it stands for."""
    phase_name: str = ""
    """For a GSD phase item: the phase's name ("Foundation" in "Phase 1: Foundation - scaffolding")."""
    children: list[int] = field(default_factory=list)
    child_ranges: list[tuple[int, int]] = field(default_factory=list)
    context: str = ""
    kind: str = "box"
    """"box", or for a unit the units stage found: "heading" (its own section is `section`) or "block"."""


@dataclass
class TableRow:
    line: int
    """0-based line of the row."""
    cells: list[str]


@dataclass
class Table:
    """A GFM table as written: its header cells and its rows' cells (plain text, code spans kept)."""

    line: int
    header: list[str]
    rows: list[TableRow] = field(default_factory=list)


class Outline:
    """The plan's blocks, read once; nothing changes them after `build_outline`. The stages
    after it return what they find (by task index) instead of writing it here."""

    def __init__(self, data: bytes, text: str) -> None:
        self.data = data
        self.bom = 0
        if text.startswith("\ufeff"):
            text = text[1:]
            self.bom = len("\ufeff".encode())
        self.text = text
        self.lines = _EOL.split(text)
        body = data[self.bom :]
        self.byte_starts = [0, *(m.end() for m in _EOL_BYTES.finditer(body))]
        self.sections: list[Section] = []
        self.tasks: list[RawTask] = []
        self.diagnostics: list[Diagnostic] = []
        self.free_text: list[tuple[int, str]] = []
        self.first_task_line: dict[int, int] = {}
        self.front_matter = ""
        self.front_matter_end = 0
        """0-based line after the front matter (0 without one)."""
        self.tables: list[Table] = []
        self.in_code = [False] * len(self.lines)
        """Per line: inside a fenced or indented code block (its fences included)."""
        self.legend_in_progress = self._legend("[/]")
        self.legend_skipped = self._legend("[-]")
        self._walk()

    def _legend(self, box: str) -> bool:
        """Whether the plan mentions `box` anywhere but at the start of a list item (a legend)."""
        if box not in self.text:
            return False
        for line in self.lines:
            count = line.count(box)
            if not count:
                continue
            use = _LEGEND_USE.match(line)
            at_item_start = 1 if use is not None and f"[{use.group(1)}]" == box else 0
            if count > at_item_start:
                return True
        return False

    def _diag(self, severity: Severity, line: int | None, message: str, code: str = "") -> None:
        self.diagnostics.append(Diagnostic(severity=severity, line=line, message=message, code=code))

    # ---- token walk ----------------------------------------------------------------------

    def _walk(self) -> None:
        tokens = _MARKDOWN.parse(self.text)
        heading_stack: list[int] = []
        items: list[_OpenItem] = []
        quote_depth = 0
        count = len(tokens)
        for i, token in enumerate(tokens):
            kind = token.type
            if kind == "list_item_open":
                assert token.map is not None
                items.append(_OpenItem(token.map[0], token.map[1]))
            elif kind == "list_item_close":
                item = items.pop()
                if item.task is not None:
                    self._close_task(item.task, item.start, item.end, items)
            elif kind == "paragraph_open":
                if i + 1 >= count or token.map is None:
                    continue
                inline = tokens[i + 1].content
                if items and tokens[i - 1].type == "list_item_open" and token.map[0] == items[-1].start:
                    if self._open_task(inline, token.map[0], items, quote_depth, heading_stack):
                        continue
                if not any(entry.task is not None for entry in items) and _FREE_HINT.search(inline):
                    self.free_text.append((token.map[0], inline))
            elif kind == "heading_open":
                assert token.map is not None
                self._heading(int(token.tag[1:]), token.map[0], tokens[i + 1].content, heading_stack)
            elif kind == "blockquote_open":
                quote_depth += 1
            elif kind == "blockquote_close":
                quote_depth -= 1
            elif kind == "html_block" and token.map is not None:
                for match in _HTML_CHECKBOX.finditer(token.content):
                    line = token.map[0] + token.content.count("\n", 0, match.start()) + 1
                    self._diag(
                        Severity.INFO,
                        line,
                        "checkbox inside an HTML block is not a task; "
                        "leave a blank line after the HTML tag to make it one",
                    )
            elif kind == "front_matter":
                self.front_matter = token.content
                if token.map is not None:
                    self.front_matter_end = token.map[1]
            elif kind in ("fence", "code_block") and token.map is not None:
                for line in range(token.map[0], min(token.map[1], len(self.in_code))):
                    self.in_code[line] = True
            elif kind == "table_open" and token.map is not None:
                self._table(tokens, i, token.map[0])
            if kind in _CONTAINERS and token.level >= MAX_NESTING - 1 and token.map is not None:
                self._too_deep(token.map)
        for index in heading_stack:
            self.sections[index].end = len(self.lines)
        self._adopt_flat_children()

    def _table(self, tokens: list[Token], start: int, line: int) -> None:
        table = Table(line=line, header=[])
        row: TableRow | None = None
        for token in tokens[start + 1 :]:
            if token.type == "table_close":
                break
            if token.type == "tr_open":
                row = TableRow(line=token.map[0] if token.map else line, cells=[])
            elif token.type == "inline" and row is not None:
                row.cells.append(" ".join(refs.plain_labels(token.content).split()))
            elif token.type == "tr_close" and row is not None:
                if not table.header:
                    table.header = row.cells
                else:
                    table.rows.append(row)
                row = None
        self.tables.append(table)

    def _too_deep(self, where: list[int]) -> None:
        """markdown-it reads nothing inside a block opened at its nesting bound, and skips what
        follows it to the end of the enclosing block: said once, where it starts."""
        if any(d.code == "nesting" for d in self.diagnostics):
            return
        first, end = where[0] + 1, max(where[1], where[0] + 1)
        span = f"line {first} is" if end == first else f"lines {first}-{end} are"
        self._diag(
            Severity.ERROR,
            first,
            f"lists or block quotes nested more than {MAX_NESTING // 2 - 1} deep: {span} not read "
            "(boxes there are not tasks); nest less deeply",
            code="nesting",
        )

    def _heading(self, level: int, line: int, content: str, stack: list[int]) -> None:
        while stack and self.sections[stack[-1]].level >= level:
            self.sections[stack.pop()].end = line
        title = _plain_heading(content)
        section = Section(len(self.sections), level, line, title, stack[-1] if stack else None)
        phase = _PHASE_HEADING.match(title)
        if phase:
            section.phase_number = phase.group("id")
            rest = phase.group("rest").strip()
            if not rest or rest[0] in ":—–-(":
                section.defines_phase = True
                section.phase_title = rest.lstrip(":—–- ").strip() or title
        scope = _SCOPE_HEADING.match(title)
        if scope:
            section.scope = scope.group("id").lower()
        self.sections.append(section)
        stack.append(section.index)

    def _open_task(
        self, inline: str, line: int, items: list[_OpenItem], quote_depth: int, headings: list[int]
    ) -> bool:
        box = _BOX.match(inline)
        if box is None:
            return False
        char = box.group(1)
        if quote_depth:
            self._diag(Severity.INFO, line + 1, "checkbox inside a block quote is not a task")
            return False
        if char == "/" and not self.legend_in_progress or char == "-" and not self.legend_skipped:
            self._diag(
                Severity.INFO,
                line + 1,
                f"'[{char}]' is not a checkbox here: no legend in the plan defines it",
            )
            return False
        raw = self.lines[line]
        first = inline.split("\n", 1)[0]
        column = len(raw.rstrip()) - len(first.rstrip())
        if not (0 <= column and raw[column : column + 3] == f"[{char}]"):
            prefix = _ITEM_START.match(raw)
            column = prefix.end() if prefix else -1
            if column < 0 or raw[column : column + 3] != f"[{char}]":
                self._diag(Severity.WARNING, line + 1, "could not locate the checkbox on this line; skipped")
                return False
        box_offset = self.bom + self.byte_starts[line] + len(raw[: column + 1].encode())
        state = {
            " ": BoxState.OPEN,
            "x": BoxState.DONE,
            "X": BoxState.DONE,
            "/": BoxState.IN_PROGRESS,
            "-": BoxState.SKIPPED,
        }[char]
        own_id, title, parallel, phase_item = split_title(_title_text(first[box.end() :], inline))
        if phase_item is None and _MILESTONE_ITEM.match(title):
            self._diag(Severity.INFO, line + 1, "a milestone's line (it names its phases): not a task")
            return False
        phase_name = _NAME_END.split(title, maxsplit=1)[0].strip() if phase_item is not None else ""
        parent = next((entry.task for entry in reversed(items) if entry.task is not None), None)
        start, end = items[-1].start, items[-1].end
        task = RawTask(
            index=len(self.tasks),
            line=line,
            start=start,
            end=end,
            box_offset=box_offset,
            state=state,
            optional=bool(box.group(2)),
            own_id=own_id,
            title=title,
            parallel=parallel,
            section=headings[-1] if headings else None,
            parent=parent,
            phase_item=phase_item,
            phase_name=phase_name,
        )
        self.tasks.append(task)
        for heading in headings:
            self.first_task_line.setdefault(heading, start)
        items[-1].task = task.index
        if parent is not None:
            self.tasks[parent].children.append(task.index)
        return True

    def _close_task(self, index: int, start: int, end: int, items: list[_OpenItem]) -> None:
        task = self.tasks[index]
        parent = next((entry.task for entry in reversed(items) if entry.task is not None), None)
        if parent is not None:
            self.tasks[parent].child_ranges.append((start, end))
        lines: list[str] = []
        cursor = start
        for child_start, child_end in task.child_ranges:
            lines.extend(self.lines[cursor:child_start])
            cursor = max(cursor, child_end)
        lines.extend(self.lines[cursor:end])
        while lines and not lines[-1].strip():
            lines.pop()
        if lines:
            first = lines[0]
            indent = len(first) - len(first.lstrip())
            task.context = "\n".join(_strip_indent(line, indent) for line in lines)
        if refs.says_parallel(task.context):
            task.parallel = True

    def _adopt_flat_children(self) -> None:
        """Kiro also writes children flat ("- [ ] 2. parent" then "- [ ] 2.1 child" at the same level):
        a dotted id whose prefix is an earlier task's id makes that task its parent."""
        by_own_id: dict[str, RawTask] = {}
        for task in self.tasks:
            # GSD's "Phase 2.1" is a phase inserted after phase 2, not a part of it.
            if task.own_id is None or task.phase_item is not None:
                continue
            prefix, dot, _ = task.own_id.rpartition(".")
            parent = by_own_id.get(prefix) if dot and _KIRO_CHILD_ID.match(task.own_id) else None
            if task.parent is None and parent is not None and parent.section == task.section:
                task.parent = parent.index
                parent.children.append(task.index)
            by_own_id.setdefault(task.own_id, task)

    def title(self, path: Path) -> str:
        for section in self.sections:
            if section.level == 1:
                return section.title
        match = _FRONT_TITLE.search(self.front_matter)
        if match and match.group(1):
            return match.group(1)
        return path.stem

    def section_path(self, index: int | None) -> list[str]:
        path: list[str] = []
        while index is not None:
            path.append(self.sections[index].title)
            index = self.sections[index].parent
        return path[::-1]

    def chain(self, index: int | None) -> list[int]:
        chain: list[int] = []
        while index is not None:
            chain.append(index)
            index = self.sections[index].parent
        return chain[::-1]

    def title_section(self) -> int | None:
        first_levels = [s for s in self.sections if s.level == 1]
        if len(first_levels) == 1 and self.sections and self.sections[0].level == 1:
            return 0
        return None

    def section_text(self, index: int) -> str:
        section = self.sections[index]
        return "\n".join(self.lines[section.line : section.end]).strip("\n")

    def preamble(self, index: int) -> str:
        """A section's own text before its first sub-heading or task, code blocks blanked: where
        phase-level words live."""
        section = self.sections[index]
        end = section.end
        if index + 1 < len(self.sections) and self.sections[index + 1].line < end:
            end = self.sections[index + 1].line
        first_task = self.first_task_line.get(index)
        if first_task is not None:
            end = min(end, first_task)
        # Code is not the plan speaking: "waits for 5 s" in a test is no dependency.
        return "\n".join(
            "" if self.in_code[line] else self.lines[line] for line in range(section.line + 1, end)
        )


def build_outline(data: bytes, text: str) -> Outline:
    """The outline of a plan: `data` its bytes (for box offsets), `text` their decoded text."""
    return Outline(data, text)


def _strip_indent(line: str, indent: int) -> str:
    """The line without up to `indent` leading whitespace characters (the item's own indent)."""
    stripped = len(line) - len(line.lstrip())
    return line[min(indent, stripped) :]


def _plain_heading(content: str) -> str:
    text = _LINK.sub(r"\1", content)
    text = refs.plain_labels(text).replace("`", "")
    return " ".join(text.split()).rstrip("#").strip()


def _title_text(first_line_rest: str, paragraph: str) -> str:
    """The task's words: its first line and the lines its paragraph wraps onto, up to a
    verification label ("Verify: `cmd`" on a continuation line is not part of the title)."""
    words = [first_line_rest]
    for line in paragraph.split("\n")[1:]:
        if refs.starts_with_verify_label(line):
            break
        words.append(line.strip())
    return " ".join(w for w in words if w)


def split_title(rest: str) -> tuple[str | None, str, bool, str | None]:
    """(own id, title, parallel, GSD phase number) from the text after the box; code spans are kept
    as written (`__init__.py` is not emphasis)."""
    text = refs.plain_labels(rest).strip()
    own_id: str | None = None
    phase_item: str | None = None
    phase = _PHASE_ITEM.match(text)
    if phase:
        phase_item = phase.group("id")
        own_id = f"phase-{phase_item.lower()}"
        text = text[phase.end() :]
    elif plan_file := _GSD_PLAN_FILE.match(text):
        phase_number = plan_file.group("phase") or plan_file.group("phase2")
        own_id = f"{phase_number}-{plan_file.group('plan') or plan_file.group('plan2')}"
        text = text[plan_file.end() :]
    else:
        for pattern in _ID_PATTERNS:
            match = pattern.match(text)
            if match:
                own_id = match.group("id")
                text = text[match.end() :].lstrip(":.) \t")
                break
    parallel = False
    if text.startswith("[P]") or " [P]" in text[:40]:
        parallel = True
        text = _PARALLEL_MARK.sub("", text, count=1)
    title = " ".join(text.split())
    return own_id, title, parallel, phase_item
