"""A markdown plan -> `Plan`: phases, tasks, the DAG between them, and what is wrong with it.

Structure comes from markdown-it-py's CommonMark block tokens (plus front matter and GFM
tables), never from line regexes, so checkboxes inside fenced or indented code, HTML
blocks, tables and block quotes are not tasks. Line regexes only read *inside* one
block: the box at the start of a list item's first paragraph, a heading's words, a
task's own text.

What counts as a task
    A list item whose first paragraph starts with `[ ]`, `[x]` or `[X]` (then a space or
    the end of the line), `[ ]*` marking it optional (Kiro). `[/]` (in progress) and `[-]`
    (skipped) count only when the plan has a legend that mentions them (the text holds
    `[/]` or `[-]` somewhere other than at the start of a list item); otherwise such an
    item is reported (info) and left alone, as is every other bracket (`[x/  ]`). Items in
    block quotes and checkbox-looking lines inside HTML blocks are reported (info), not
    taken: a quote is somebody else's list, and CommonMark renders HTML-block content
    as raw HTML (add a blank line after `<details>` to make its list a list).

Task ids
    The plan's own where the item starts with one: `T001`, `T010a` (spec-kit), `TASK-12`,
    `2.` / `2.1` (Kiro: an integer needs its trailing dot, so "50 concurrent sessions" is
    not task 50), `45-01:` (GSD), GSD plan files `01-02-PLAN.md — text` / `12-PLAN-01.md`
    (id `01-02` / `12-01`), and `Phase 2.1:` (GSD phase items, id `phase-2.1`).
    Otherwise the id is derived from the task's own text: a slug of its first words,
    lower case, at most 40 characters, prefixed by the number of the nearest enclosing
    numbered heading ("Phase 2 ..." -> `2-`, "5.6 Security Audit" -> `5.6-`,
    "Sub-Agent 2A" -> `2a-`), e.g. `2-websocket-connections-stable-for-5`. Text with no
    ASCII word gets `t-` and a short hash of the text. A later task whose derived id is
    already taken gets `-2`, `-3`, ... so inserting a task never renames the tasks
    after it unless they share its words. Ids contain only letters, digits, `.`, `-`.
    A plan id used twice is an error; the repeat is renamed `<id>-dup2` so that the
    plan still loads.

Phases
    A heading whose words start with "Phase <n>" names phase n (emoji and emphasis before
    it are ignored). "Phase 2: Name" (a separator and a title) defines it; "Phase 2
    Success Criteria" only names it, wherever it stands, and its checkboxes join phase 2.
    A task belongs to the phase named by its innermost enclosing heading that names one.
    A task under no such heading belongs to the phase of its outermost heading below the
    document title (a single leading `#` heading), id = slug of the heading (Ralph's
    "High Priority"); under no heading at all, to the implicit phase `plan`. A GSD phase
    item ("- [ ] Phase 2: Name - text") belongs to phase 2, names it where no heading does,
    and comes after every other task of it; "Phase 2.1" is a phase of its own, not a part
    of phase 2. In a Kiro plan (some "- [ ] 2." task has sub-tasks) each numbered parent
    outside "Phase N" headings is a phase (id `2`, its title, its item as the phase text),
    and an unnumbered task after it joins it. Phases without tasks are dropped; the rest
    run in the order the plan first names them (a heading or a GSD phase item). Two headings
    defining the same number with different titles (GSD milestones) make two phases, the
    second `n~2`.

Dependencies (Task.depends_on holds every direct one, explicit or implied)
    Phases run in order: a phase's tasks wait for the previous phase's sinks, unless the
    phase's preamble says "Depends on: Phase 44" / "Wait for: Phase 2" (those phases
    instead; "Phases 14-16" is a range; an aside in parentheses is not read; a phase
    numbered below all of the plan's is an earlier, archived milestone: a warning, taken as
    done), "Depends on: Nothing" (nothing), or "can run in parallel with 2A" (it starts with
    the phase it runs beside, and what follows waits for both). A phase that can run in
    parallel with nothing named ("with any M2 phase", or a GSD phase item saying so) is
    waited for by nothing after it unless that says so. Within a phase, document order; a
    run of `[P]` tasks (or tasks saying "can run in parallel") all wait for what precedes the
    run, and what follows waits for the whole run; a heading ends a run. A sub-section
    whose preamble says "can run in parallel with 2A" starts where 2A started; one that
    says "(after 6A and 6B complete)" waits for those. A task's own dependency text
    ("depends on T001", "(depends on T012, T013)", "Dependencies: Task 1.1", a
    "Dependencies:" label over a bullet list, "Blocked by: T-1", ranges "T003–T010a",
    "Dependencies: None") replaces the implied order
    within its phase; the phase order still holds unless one of its explicit dependencies
    is in the same phase (then it is implied anyway). A phase reference means that
    phase's sinks. Statements elsewhere in the plan between task ids ("T008 blocks T009",
    "T001 → T002 → T003", "Tests (T004-T007) before implementation (T008-T014)"; a comma
    ends one "X depends on Y" and starts the next) add edges, and win over the list's
    order where they contradict it (a note says which implied edge gave way); bare numbers
    in such prose are counts, not ids. A parent checkbox depends on its children (nested
    items, or Kiro's flat "2.1" after "2."; an optional parent on its optional ones);
    nothing waits on an optional task unless it says so. Unknown ids, duplicate ids and
    cycles (a task's own "depends on" against its list's order included) are errors.

Verification commands
    Inline code right after `Run:`, `Verify:`, `Verification:`, `Test:` or `Check:`
    (case-insensitive, bold or not) in the task's own text or its sub-bullets; or, when such a
    label ends its line, the shell code block right under it (no language, bash, sh, shell,
    zsh, console): one command per non-empty line, `#` comments and `$ ` prompts dropped,
    backslash continuations joined. A block in another language is not a command.
"""

from __future__ import annotations

import gc
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt
from mdit_py_plugins.front_matter import front_matter_plugin

from orchestrator.domain import dag
from orchestrator.domain.plan import BoxState, Diagnostic, Phase, Plan, Severity, Task
from orchestrator.errors import PlanError
from orchestrator.input_files import PLAN_LIMIT, read_regular_file
from orchestrator.planfile import refs
from orchestrator.planfile.dependencies import IMPLICIT_PHASE_ID, DependencyBuilder

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
_PHASE_HEADING = re.compile(
    r"^[\W_]*phase\s+(?P<id>\d+(?:\.\d+)*[a-z]?|[A-Z])(?![\w.])\+?\s*(?P<rest>.*)$", re.IGNORECASE
)
_SCOPE_HEADING = re.compile(
    r"^[\W_]*(?:(?:phase|sub-?agent|agent|task|step|stage|part|milestone|story|epic|section|wave)\s+)?"
    r"(?P<id>\d+(?:\.\d+)*[a-z]?)(?![\w])",
    re.IGNORECASE,
)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_SLUG_WORD = re.compile(r"[a-z0-9]+")
_FREE_HINT = re.compile(r"blocks|before|→|->|=>|⟶|depends|requires|after|needs", re.IGNORECASE)
_FRONT_TITLE = re.compile(r"^title\s*:\s*['\"]?(.*?)['\"]?\s*$", re.MULTILINE)


def parse_plan(path: Path) -> Plan:
    """Read and parse a plan file; PlanError (one line, naming the file) if it cannot be read."""
    return parse_bytes(read_plan_bytes(path), path)


def read_plan_bytes(path: Path) -> bytes:
    """The plan file's bytes; PlanError for a missing file, a directory, anything but a regular
    file (a FIFO would block the read, a device never end), a plan over PLAN_LIMIT or a read error."""
    return read_regular_file(path, what="plan", limit=PLAN_LIMIT, error=PlanError, hint="split the plan")


def plan_bytes_as_left(path: Path) -> bytes | None:
    """The plan's bytes as an agent left them, or None when it is gone or anything but a regular
    file within the limit (a FIFO it made, a link to /dev/zero): read without ever blocking."""
    try:
        return read_plan_bytes(path)
    except PlanError:
        return None


def decode(data: bytes, path: Path) -> str:
    """The plan's text; PlanError for binary, non-UTF-8 or empty content."""
    if b"\x00" in data:
        raise PlanError("is a binary file, not a markdown plan", path=path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PlanError(
            f"is not UTF-8 text (byte 0x{data[exc.start]:02x}); save the plan as UTF-8", path=path, line=line
        ) from exc
    if not text.strip().lstrip("\ufeff").strip():
        raise PlanError("is empty; a plan needs at least one '- [ ]' task", path=path)
    return text


def parse_bytes(data: bytes, path: Path) -> Plan:
    """Parse plan bytes (no I/O); `path` is only recorded and used in messages."""
    text = decode(data, path)
    with _gc_paused():
        return Parser(data, text, path).parse()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Parsing allocates many short-lived acyclic objects; cyclic GC passes over them made a
    100k-line plan grow superlinearly (30% slower per line than a 10k one)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --------------------------------------------------------------------------------------------
# First pass: blocks


@dataclass
class _Section:
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
    phase_key: str | None = None
    preamble_end: int = 0


@dataclass
class _OpenItem:
    start: int
    end: int
    task: int | None = None


@dataclass
class RawTask:
    index: int
    line: int
    start: int
    end: int
    box_offset: int
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
    id: str = ""
    phase_key: str = ""


@dataclass
class PhaseInfo:
    key: str
    id: str
    title: str
    first_line: int
    sections: list[int] = field(default_factory=list)
    anchor_sections: set[int] = field(default_factory=set)
    tasks: list[int] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    parallel_with: list[str] = field(default_factory=list)
    text: str = ""
    position: int = -1
    """Line where the plan first names the phase (heading or GSD phase item): its place in the order."""
    container: int | None = None
    """For a Kiro numbered-parent phase: the section holding it, if any."""

    def __post_init__(self) -> None:
        if self.position < 0:
            self.position = self.first_line


class Parser:
    def __init__(self, data: bytes, text: str, path: Path) -> None:
        self.data = data
        self.path = path
        self.bom = 0
        if text.startswith("\ufeff"):
            text = text[1:]
            self.bom = len("\ufeff".encode())
        self.text = text
        self.lines = _EOL.split(text)
        body = data[self.bom :]
        self.byte_starts = [0, *(m.end() for m in _EOL_BYTES.finditer(body))]
        self.sections: list[_Section] = []
        self.tasks: list[RawTask] = []
        self.diagnostics: list[Diagnostic] = []
        self.free_text: list[tuple[int, str]] = []
        self.first_task_line: dict[int, int] = {}
        self.front_matter = ""
        self.legend_in_progress = self._legend("[/]")
        self.legend_skipped = self._legend("[-]")

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

    def diag(self, severity: Severity, line: int | None, message: str, code: str = "") -> None:
        self.diagnostics.append(Diagnostic(severity=severity, line=line, message=message, code=code))

    # ---- token walk ----------------------------------------------------------------------

    def parse(self) -> Plan:
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
                    self.diag(
                        Severity.INFO,
                        line,
                        "checkbox inside an HTML block is not a task; "
                        "leave a blank line after the HTML tag to make it one",
                    )
            elif kind == "front_matter":
                self.front_matter = token.content
            if kind in _CONTAINERS and token.level >= MAX_NESTING - 1 and token.map is not None:
                self._too_deep(token.map)
        for index in heading_stack:
            self.sections[index].end = len(self.lines)
        return self._build()

    def _too_deep(self, where: list[int]) -> None:
        """markdown-it reads nothing inside a block opened at its nesting bound, and skips what
        follows it to the end of the enclosing block: said once, where it starts."""
        if any(d.code == "nesting" for d in self.diagnostics):
            return
        first, end = where[0] + 1, max(where[1], where[0] + 1)
        span = f"line {first} is" if end == first else f"lines {first}-{end} are"
        self.diag(
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
        section = _Section(len(self.sections), level, line, title, stack[-1] if stack else None)
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
            self.diag(Severity.INFO, line + 1, "checkbox inside a block quote is not a task")
            return False
        if char == "/" and not self.legend_in_progress or char == "-" and not self.legend_skipped:
            self.diag(
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
                self.diag(Severity.WARNING, line + 1, "could not locate the checkbox on this line; skipped")
                return False
        box_offset = self.bom + self.byte_starts[line] + len(raw[: column + 1].encode())
        state = {
            " ": BoxState.OPEN,
            "x": BoxState.DONE,
            "X": BoxState.DONE,
            "/": BoxState.IN_PROGRESS,
            "-": BoxState.SKIPPED,
        }[char]
        own_id, title, parallel, phase_item = _split_title(_title_text(first[box.end() :], inline))
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

    # ---- second pass: phases, ids, dependencies -----------------------------------------

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

    def _build(self) -> Plan:
        self._adopt_flat_children()
        phases = self._assign_phases()
        self._assign_ids(phases)
        by_id = {task.id: task for task in self.tasks}
        builder = DependencyBuilder(self, phases, by_id)
        depends = builder.run()
        self._check_parents(phases)
        plan_phases = [
            Phase(
                id=info.id,
                title=info.title,
                order=order,
                line=info.first_line + 1 if info.key != IMPLICIT_PHASE_ID else None,
                depends_on=info.depends_on,
                parallel_with=info.parallel_with,
                text=info.text,
            )
            for order, info in enumerate(phases)
        ]
        phase_id = {info.key: info.id for info in phases}
        plan_tasks = [
            Task(
                id=task.id,
                title=task.title,
                state=task.state,
                optional=task.optional,
                phase=phase_id[task.phase_key],
                line=task.line + 1,
                box_offset=task.box_offset,
                section_path=self._section_path(task.section),
                depends_on=depends[task.index],
                parallel=task.parallel,
                verify=refs.verify_commands(task.context),
                parent=self.tasks[task.parent].id if task.parent is not None else None,
                context=task.context,
            )
            for task in self.tasks
        ]
        if not plan_tasks:
            self.diag(
                Severity.ERROR,
                None,
                "no checkbox tasks found: a task is a list item starting with '[ ]' or '[x]'",
                dag.NO_TASKS,
            )
        plan = Plan(
            path=self.path,
            title=self._title(),
            phases=plan_phases,
            tasks=plan_tasks,
            diagnostics=[],
            sha256=hashlib.sha256(self.data).hexdigest(),
        )
        known = {(d.line, d.message) for d in self.diagnostics}
        extra = [d for d in dag.validate(plan) if (d.line, d.message) not in known]
        plan.diagnostics = sorted(
            self.diagnostics + extra, key=lambda d: (d.line is not None, d.line or 0, d.severity)
        )
        return plan

    def _check_parents(self, phases: list[PhaseInfo]) -> None:
        """Report, never fix, a parent (or GSD phase item) whose box disagrees with its tasks."""
        for task in self.tasks:
            if task.children:
                message = _disagreement(task, [self.tasks[c] for c in task.children])
            elif task.phase_item is not None:
                info = next(p for p in phases if p.key == task.phase_key)
                members = [self.tasks[i] for i in info.tasks if self.tasks[i].phase_item is None]
                message = _disagreement(task, members) if members else None
            else:
                continue
            if message:
                self.diagnostics.append(
                    Diagnostic(
                        severity=Severity.WARNING,
                        line=task.line + 1,
                        message=message + "; tick or untick it by hand",
                        code=dag.PARENT_CHILD,
                    )
                )

    def _title(self) -> str:
        for section in self.sections:
            if section.level == 1:
                return section.title
        match = _FRONT_TITLE.search(self.front_matter)
        if match and match.group(1):
            return match.group(1)
        return self.path.stem

    def _section_path(self, index: int | None) -> list[str]:
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

    def _assign_phases(self) -> list[PhaseInfo]:
        phases: dict[str, PhaseInfo] = {}
        defined: dict[str, list[tuple[str, str]]] = {}  # number -> [(key, title)]
        used_ids: set[str] = set()
        repeats: list[tuple[str, int, str]] = []  # (key, line, note): said only of phases with tasks

        def phase_for_number(number: str, line: int, title: str, defines: bool) -> PhaseInfo:
            number_key = number.lower()
            known = defined.setdefault(number_key, [])
            if defines and known and title and all(t and t != title for _, t in known):
                key = f"{number}~{len(known) + 1}"
                note = f"phase {number} is defined again with another title; this one is phase {key}"
                repeats.append((key, line, note))
                known.append((key, title))
            elif known:
                key = known[-1][0]
                if defines and title and not known[-1][1]:
                    known[-1] = (key, title)
            else:
                key = number
                known.append((key, title if defines else ""))
            info = phases.get(key)
            if info is None:
                info = PhaseInfo(key=key, id=key, title=title or f"Phase {number}", first_line=line)
                used_ids.add(key.lower())
                phases[key] = info
            elif defines and title and info.title == f"Phase {number}":
                info.title = title
            info.position = min(info.position, line)
            return info

        for section in self.sections:
            if section.phase_number is not None:
                info = phase_for_number(
                    section.phase_number, section.line, section.phase_title, section.defines_phase
                )
                section.phase_key = info.key
        title_section = self.title_section()
        kiro_parents = self._uses_numbered_parents()
        kiro_phase: dict[str, PhaseInfo] = {}  # base phase key -> its latest numbered-parent phase
        for task in self.tasks:
            if task.phase_item is not None:
                info = phase_for_number(task.phase_item, task.line, "", False)
                if info.title == f"Phase {task.phase_item}" and task.phase_name:
                    info.title = task.phase_name
                task.phase_key = info.key
                continue
            if task.parent is not None:
                task.phase_key = self.tasks[task.parent].phase_key
                continue
            chain = self.chain(task.section)
            named = next((s for s in reversed(chain) if self.sections[s].phase_key is not None), None)
            if named is not None:
                key = self.sections[named].phase_key
                assert key is not None
                phases[key].anchor_sections.add(named)
                task.phase_key = key
                continue
            outer = [s for s in chain if s != title_section]
            container = outer[0] if outer else None
            base = f"section:{container}" if container is not None else IMPLICIT_PHASE_ID
            if kiro_parents and task.own_id is not None and task.own_id.isdigit():
                # Kiro's "- [ ] 2. Name" with its 2.x tasks is a phase of its own.
                info = PhaseInfo(
                    key=f"kiro:{task.index}",
                    id=_unique(task.own_id, used_ids),
                    title=task.title,
                    first_line=task.line,
                    container=container,
                )
                phases[info.key] = info
                kiro_phase[base] = info
                task.phase_key = info.key
                continue
            if base in kiro_phase:  # an unnumbered task after a numbered parent joins its phase
                task.phase_key = kiro_phase[base].key
                continue
            if container is not None:
                if base not in phases:
                    section = self.sections[container]
                    slug = _unique(_slug(section.title) or "section", used_ids)
                    phases[base] = PhaseInfo(key=base, id=slug, title=section.title, first_line=section.line)
                phases[base].anchor_sections.add(container)
                task.phase_key = base
                continue
            if IMPLICIT_PHASE_ID not in phases:
                phase_id = _unique(IMPLICIT_PHASE_ID, used_ids)
                phases[IMPLICIT_PHASE_ID] = PhaseInfo(
                    key=IMPLICIT_PHASE_ID, id=phase_id, title=self._title(), first_line=task.line
                )
            task.phase_key = IMPLICIT_PHASE_ID
        for task in self.tasks:
            phases[task.phase_key].tasks.append(task.index)
        for section in self.sections:
            if section.phase_key is not None:
                phases[section.phase_key].sections.append(section.index)
        # A phase runs where the plan first names it: GSD lists its phases (in the order it
        # means) before the "Phase Details" headings, which may be ordered otherwise.
        kept = sorted((info for info in phases.values() if info.tasks), key=lambda p: p.position)
        kept_keys = {info.key for info in kept}
        for key, line, note in repeats:
            if key in kept_keys:
                self.diag(Severity.INFO, line + 1, note)
        for info in kept:
            info.text = self._phase_text(info)
        return kept

    def _uses_numbered_parents(self) -> bool:
        """Whether the plan is Kiro-shaped: some "- [ ] 2." task has sub-tasks."""
        return any(
            task.own_id is not None and task.own_id.isdigit() and task.children and task.parent is None
            for task in self.tasks
        )

    def _section_text(self, index: int) -> str:
        section = self.sections[index]
        return "\n".join(self.lines[section.line : section.end]).strip("\n")

    def _phase_text(self, info: PhaseInfo) -> str:
        if info.key.startswith("kiro:"):
            first = min(self.tasks[i].start for i in info.tasks)
            last = max(self.tasks[i].end for i in info.tasks)
            return "\n".join(self.lines[first:last]).strip("\n")
        if info.key == IMPLICIT_PHASE_ID:
            first_heading = next((s.line for s in self.sections if s.level > 1), len(self.lines))
            return "\n".join(self.lines[:first_heading]).strip("\n")
        own = sorted(set(info.sections) | info.anchor_sections)
        parts: list[str] = []
        covered_until = -1
        for index in own:
            section = self.sections[index]
            if section.line < covered_until:
                continue
            parts.append(self._section_text(index))
            covered_until = section.end
        return "\n\n".join(parts)

    def preamble(self, index: int) -> str:
        """A section's own text before its first sub-heading or task: where phase-level words live."""
        section = self.sections[index]
        end = section.end
        if index + 1 < len(self.sections) and self.sections[index + 1].line < end:
            end = self.sections[index + 1].line
        first_task = self.first_task_line.get(index)
        if first_task is not None:
            end = min(end, first_task)
        return "\n".join(self.lines[section.line + 1 : end])

    def _assign_ids(self, phases: list[PhaseInfo]) -> None:
        first_line: dict[str, int] = {}
        taken: set[str] = set()
        for task in self.tasks:
            if task.own_id is None:
                continue
            wanted = task.own_id
            if wanted in first_line:
                renamed = _unique(f"{wanted}-dup", taken, start=2, joiner="")
                self.diagnostics.append(
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
            task.id = wanted
            taken.add(wanted.lower())
        del phases
        for task in self.tasks:
            if task.own_id is not None:
                continue
            slug = _slug(task.title) or "t-" + hashlib.sha1(task.title.encode()).hexdigest()[:6]
            scope = next(
                (
                    self.sections[s].scope
                    for s in reversed(self.chain(task.section))
                    if self.sections[s].scope
                ),
                None,
            )
            task.id = _unique(f"{scope}-{slug}" if scope else slug, taken)


def _strip_indent(line: str, indent: int) -> str:
    """The line without up to `indent` leading whitespace characters (the item's own indent)."""
    stripped = len(line) - len(line.lstrip())
    return line[min(indent, stripped) :]


def _unique(wanted: str, taken: set[str], start: int = 2, joiner: str = "-") -> str:
    candidate = wanted
    number = start
    while candidate.lower() in taken:
        candidate = f"{wanted}{joiner}{number}"
        number += 1
    taken.add(candidate.lower())
    return candidate


def _slug(text: str, max_length: int = 40) -> str:
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


def _plain_heading(content: str) -> str:
    text = _LINK.sub(r"\1", content)
    text = refs.plain(text).replace("`", "")
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


def _split_title(rest: str) -> tuple[str | None, str, bool, str | None]:
    """(own id, title, parallel, GSD phase number) from the text after the box."""
    text = refs.plain(rest).strip()
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


def _disagreement(parent: RawTask, children: list[RawTask]) -> str | None:
    required = [c for c in children if not c.optional]
    if not required:
        return None
    open_children = [c for c in required if c.state not in (BoxState.DONE, BoxState.SKIPPED)]
    if parent.state is BoxState.DONE and open_children:
        listed = ", ".join(f"{c.id} (line {c.line + 1})" for c in open_children[:5])
        return f"task {parent.id} is ticked but these sub-tasks are not: {listed}"
    if parent.state is BoxState.OPEN and not open_children:
        return f"task {parent.id} is not ticked although all {len(required)} of its sub-tasks are"
    return None
