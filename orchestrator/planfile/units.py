"""Stage 1 of parsing, on the outline: the units of work. A unit is what the plan hands to one worker:

- a heading the plan marks as a task: `### Task 3: ...`, `### TASK 3`, `### Fix 2: ... (Optional)`,
  `#### Sub-Agent 2A: ...` (the innermost such heading, up to the next heading of its level), with
  a status mark read from it (`### ✅ Task 5`, `### ⏸️ Task 6`);
- a GSD `<task type="...">` block, with `<name> <files> <action> <verify> <done>`;
- in a plan with neither and no checkbox at all, a `### Phase 4: ...` heading whose text holds a
  `**Tasks:**` list (its items are the unit's steps, its `**Deliverable:**` a criterion);
- otherwise each checkbox, as before (spec-kit, Kiro, Ralph, success criteria).

The boxes inside a heading unit are its steps (superpowers' `- [ ] **Step 2: ...**`) or, under a
`**Verification:**`-like label, its criteria (the seed's Sub-Agent lists); without boxes, its
`**Step N: ...**` paragraphs are its steps. Where a plan's units are headings, a checklist under a
standards heading ("Verification Standards") speaks to every unit: it is a rules section, not tasks.
Checks come from `checks.checks_in` (the unit's `**Files:**` list excluded); a box whose own text is
a command ("Run `uv run pytest`") is a check task.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from orchestrator.domain.plan import BoxState, Check, Diagnostic, Expectation, Severity, Step, StepKind
from orchestrator.planfile import checks as plan_checks
from orchestrator.planfile import refs
from orchestrator.planfile.outline import Outline, RawTask, split_title

_MARKS_DONE = "✅✔☑✓"
_MARK_CHARACTERS = "✅✔☑✓⏸⏳🚧❌⛔🔄️\ufe0f"
_UNIT_HEADING = re.compile(
    rf"^(?P<lead>[\s{_MARK_CHARACTERS}]*)(?P<word>task|fix|sub-?agent)\s+"
    r"(?P<number>\d+(?:\.\d+)*[a-z]?|[a-z])(?![\w.])\s*[:.—–-]?\s*(?P<rest>.*)$",
    re.IGNORECASE,
)
_STATUS_WORD = re.compile(r"(?:done|complete|completed|finished)\b", re.IGNORECASE)
_DONE_WORD = re.compile(r"[\s(\[—–-]*\b(?-i:(?P<word>DONE|COMPLETED?|FINISHED))\b[)\]]?")
_OPTIONAL = re.compile(r"\s*[(\[]\s*optional\s*[)\]]", re.IGNORECASE)
_RULES_HEADING = re.compile(
    r"\b(?:rules?|standards?|conventions?|guidelines?|constraints?|learnings?|pitfalls?|principles?|"
    r"definition\s+of\s+done)\b",
    re.IGNORECASE,
)
_CRITERIA_LABEL = re.compile(
    r"verif|criteria|criterion|acceptance|done\s+when|definition\s+of\s+done|checklist|success", re.IGNORECASE
)
_LABEL_LINE = re.compile(
    r"^\s*(?:\*\*|__)?(?P<label>[^*_:\n]{1,40}?)(?:\*\*|__)?\s*:(?:\*\*|__)?\s*(?P<rest>.*)$"
)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])\s+(?P<text>.*)$")
_PARAGRAPH_STEP = re.compile(
    r"^\s*(?:#{1,6}\s+|[-*+]\s+)?(?:\*\*|__)(?P<title>step\s+\d+[^*]*?)(?:\*\*|__)\s*(?P<rest>[^\s`].*)?$"
    r"|^\s*#{1,6}\s+(?P<heading>step\s+\d+\b.*)$",
    re.IGNORECASE,
)
_STEP_TITLE = re.compile(r"^step\s+\d+", re.IGNORECASE)
_COMMAND_CRITERION = re.compile(
    r"^`(?P<command>[^`\n]+)`\s+(?:passes|succeeds|exits\s+(?:with\s+)?0|runs\s+clean(?:ly)?|is\s+clean)\b",
    re.IGNORECASE,
)
_CODE_IN_TEXT = re.compile(r"`([^`\n]+)`")
_CHECK_TASK = re.compile(r"^(?:run|execute)\s+`(?P<command>[^`\n]+)`", re.IGNORECASE)
_GSD_OPEN = re.compile(r"^\s*<task(?P<attributes>\s[^>]*)?>", re.IGNORECASE)
_GSD_CLOSE = re.compile(r"</task>", re.IGNORECASE)
_GSD_ELEMENT = re.compile(
    r"<(?P<tag>name|files|action|verify|done|what-built|decision)>(?P<body>.*?)</(?P=tag)>",
    re.DOTALL | re.IGNORECASE,
)
_GSD_TYPE = re.compile(r"""\btype\s*=\s*["']?(?P<type>[\w:-]+)""", re.IGNORECASE)
_GSD_NAME_NUMBER = re.compile(r"^task\s+(?P<number>\d+[a-z]?)\s*[:.—–-]?\s*", re.IGNORECASE)
_PROGRAMS = frozenset(
    "npm npx pnpm yarn bun node deno python python3 pytest uv poetry go cargo make curl ls test grep rg git "
    "docker bash sh tsc jest vitest ruff mypy cat bundle rake rspec mvn gradle dotnet php composer mix "
    "flutter dart swift xcodebuild ./gradlew pip pip3 tox nox just task".split()
)
_BARE_COMMAND_END = re.compile(
    r"\s+(?:succeeds|passes|returns|should|shows|outputs|prints|lists|works|exits|runs|completes)\b"
    r"|\s+(?:→|->|—|–)\s|[;,]\s",
    re.IGNORECASE,
)
_OUTPUT_WORDS = re.compile(
    r"\b(?:returns?|shows?|prints?|outputs?|lists?|displays?|contains?|responds?|includes?)\b", re.IGNORECASE
)
_FRONT_DEPENDS = re.compile(r"^depends_on\s*:\s*(?P<value>.*)$", re.MULTILINE)
_FRONT_LIST_ITEM = re.compile(r"^\s*-\s*['\"]?(?P<item>[^'\"\n]+?)['\"]?\s*$")


@dataclass
class UnitDetails:
    """What the Task gets besides what the outline's RawTask holds."""

    steps: list[Step] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    uncovered: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    test_files: list[str] = field(default_factory=list)
    mark: str = ""
    manual: bool = False
    command: str | None = None


@dataclass
class Units:
    tasks: list[RawTask]
    """Every unit in document order, indexed afresh (boxes inside units are steps now)."""
    details: list[UnitDetails]
    """By task index."""
    rules: list[int]
    """Section indices of the plan's rules sections."""
    requires: list[str]
    """Plans named in the front matter's depends_on."""


def find_units(outline: Outline, diagnostics: list[Diagnostic]) -> Units:
    """The units of work of the plan, and its rules sections (see the module docstring)."""
    unit_sections = _unit_sections(outline)
    rules = [
        s.index
        for s in outline.sections
        if _RULES_HEADING.search(s.title)
        and s.index not in unit_sections
        and s.index != outline.title_section()
    ]
    blocks = _gsd_blocks(outline)
    units_exist = bool(unit_sections) or bool(blocks)
    if not units_exist and not outline.tasks:
        unit_sections = _phase_task_sections(outline)
        units_exist = bool(unit_sections)
    owner: dict[int, int] = {}  # box index -> its unit's section
    kept: list[RawTask] = []
    rule_boxes: dict[int, int] = {}
    for task in outline.tasks:
        chain = outline.chain(task.section)
        unit = next((s for s in reversed(chain) if s in unit_sections), None)
        if unit is not None:
            owner[task.index] = unit
            continue
        rule = next((s for s in reversed(chain) if s in rules), None) if units_exist else None
        if rule is not None:
            rule_boxes[rule] = rule_boxes.get(rule, 0) + 1
            continue
        kept.append(task)
    for section, count in rule_boxes.items():
        title = outline.sections[section].title
        diagnostics.append(
            Diagnostic(
                severity=Severity.INFO,
                line=outline.sections[section].line + 1,
                message=f"the {count} boxes under '{title}' speak to every unit: read as rules, not as tasks",
            )
        )
    entries: list[tuple[int, RawTask, UnitDetails]] = []
    for task in kept:
        entries.append((task.line, task, _box_details(task)))
    for section in sorted(unit_sections):
        raw, details = _heading_unit(
            outline, section, [t for t in outline.tasks if owner.get(t.index) == section]
        )
        entries.append((raw.line, raw, details))
    for start, end in blocks:
        raw, details = _block_unit(outline, start, end)
        entries.append((raw.line, raw, details))
    entries.sort(key=lambda entry: entry[0])
    new_index = {id(task): position for position, (_, task, _) in enumerate(entries)}
    old_to_new = {task.index: new_index[id(task)] for task in kept}
    tasks: list[RawTask] = []
    for position, (_, task, _) in enumerate(entries):
        if task.kind == "box":
            task.parent = old_to_new.get(task.parent) if task.parent is not None else None
            task.children = [old_to_new[c] for c in task.children if c in old_to_new]
        task.index = position
        tasks.append(task)
    _dedupe_unit_ids(outline, tasks)
    return Units(
        tasks=tasks,
        details=[details for _, _, details in entries],
        rules=rules,
        requires=_front_matter_requires(outline.front_matter),
    )


def first_task_lines(outline: Outline, tasks: list[RawTask]) -> dict[int, int]:
    """Section index -> the line where its first unit starts (a heading unit's own section not
    counted: its text up to its first sub-heading is its preamble)."""
    found: dict[int, int] = {}
    for task in tasks:
        for section in outline.chain(task.section):
            if task.kind == "heading" and section == task.section:
                continue
            found.setdefault(section, task.start)
    return found


# ---- which headings are units -----------------------------------------------------------------


def _unit_sections(outline: Outline) -> set[int]:
    """Headings that mark a task; of nested ones, the innermost."""
    marked = {s.index for s in outline.sections if _UNIT_HEADING.match(s.title)}
    inner: set[int] = set()
    for index in marked:
        section = outline.sections[index]
        nested = any(
            other != index and section.line < outline.sections[other].line < section.end for other in marked
        )
        if not nested:
            inner.add(index)
    return inner


def _phase_task_sections(outline: Outline) -> set[int]:
    """In a plan without boxes or task headings: phase headings whose own text lists `**Tasks:**`."""
    found: set[int] = set()
    for section in outline.sections:
        if section.phase_number is None:
            continue
        for line in range(section.line + 1, section.end):
            if outline.in_code[line]:
                continue
            label = _LABEL_LINE.match(outline.lines[line])
            if label and label.group("label").strip().lower() in ("tasks", "task list"):
                found.add(section.index)
                break
    nested = {
        s
        for s in found
        for o in found
        if o != s and outline.sections[o].line < outline.sections[s].line < outline.sections[o].end
    }
    return found - {
        o
        for o in found
        for s in nested
        if outline.sections[o].line < outline.sections[s].line < outline.sections[o].end
    }


# ---- a heading unit ---------------------------------------------------------------------------


def _heading_unit(outline: Outline, section_index: int, boxes: list[RawTask]) -> tuple[RawTask, UnitDetails]:
    section = outline.sections[section_index]
    title = section.title
    details = UnitDetails()
    optional = bool(_OPTIONAL.search(title))
    title = _OPTIONAL.sub("", title)
    own_id: str | None
    match = _UNIT_HEADING.match(title)
    # A status mark anywhere in the heading ("### ✅ Task 5", "### Task 5: ... ✅"), or a word in
    # capitals ("(DONE)", "— COMPLETE").
    marks = "".join(ch for ch in title if ch in _MARK_CHARACTERS)
    details.mark = marks if marks.strip("\ufe0f") else ""
    done_word = _DONE_WORD.search(title)
    if done_word and not details.mark:
        details.mark = done_word.group("word")
    if not details.mark:
        details.mark = _status_line(outline, section.line + 1, section.end)
    if match:
        word = match.group("word").lower().replace("-", "")
        number = match.group("number").lower()
        own_id = {"task": f"task-{number}", "fix": f"fix-{number}"}.get(word, number)
        rest = _DONE_WORD.sub("", match.group("rest"))
        words = _unmarked(rest) or _unmarked(_DONE_WORD.sub("", title))
    else:  # a phase heading with a **Tasks:** list
        own_id = f"phase-{(section.phase_number or '').lower()}"
        words = section.phase_title or title
    lines = outline.lines[section.line : section.end]
    while lines and not lines[-1].strip():
        lines.pop()
    start, end = section.line, section.line + len(lines)
    mask = list(outline.in_code[start:end])
    details.files, details.test_files = _files(lines, mask)
    if boxes:
        details.steps = _box_steps(outline, boxes, start)
    elif match:
        details.steps = _paragraph_steps(lines, mask, start)
    else:
        details.steps = _phase_steps(lines, mask, start)
    found = plan_checks.checks_in(lines, mask)
    step_lines = [step.line for step in details.steps]
    for check in found:
        line = start + check.line + 1
        step = max((i for i, step_line in enumerate(step_lines) if step_line <= line), default=None)
        # A check below a criterion is the unit's, not that criterion's own.
        if step is not None and details.steps[step].kind is StepKind.CRITERION and step_lines[step] != line:
            step = None
        details.checks.append(
            Check(command=check.command, expect=check.expect, expected=check.expected, line=line, step=step)
        )
    for index, criterion in enumerate(details.steps):
        said = _COMMAND_CRITERION.match(criterion.title) if criterion.kind is StepKind.CRITERION else None
        if said:  # "`npm test` passes": the criterion is a check
            details.checks.append(
                Check(
                    command=said.group("command"), expected=criterion.title, line=criterion.line, step=index
                )
            )
    checked_steps = {c.step for c in details.checks}
    details.uncovered = [
        step.title
        for index, step in enumerate(details.steps)
        if step.kind is StepKind.CRITERION and index not in checked_steps
    ]
    state = _unit_state(details)
    raw = RawTask(
        index=-1,
        line=section.line,
        start=start,
        end=max(end, start + 1),
        box_offset=None,
        state=state,
        optional=optional,
        own_id=own_id,
        title=" ".join(words.split()),
        parallel=False,
        section=section_index,
        parent=None,
        context="\n".join(lines),
        kind="heading",
    )
    return raw, details


def _status_line(outline: Outline, start: int, end: int) -> str:
    """A `**Status:** ✅ Complete` line in the unit's own text: its mark, or the word it says."""
    for line in range(start, end):
        if outline.in_code[line]:
            continue
        if outline.lines[line].lstrip().startswith("#"):  # a sub-heading: past the unit's own words
            return ""
        label = _LABEL_LINE.match(outline.lines[line])
        if label is None or label.group("label").strip().lower() != "status":
            continue
        value = label.group("rest")
        marks = "".join(ch for ch in value if ch in _MARK_CHARACTERS)
        if marks.strip("\ufe0f"):
            return marks
        word = _STATUS_WORD.match(value.strip(" *_`"))
        return word.group(0).upper() if word else ""
    return ""


def _unmarked(text: str) -> str:
    return " ".join("".join(ch for ch in text if ch not in _MARK_CHARACTERS).split()).strip(" :—–-")


def _unit_state(details: UnitDetails) -> BoxState:
    """Its boxes, when it has any (all done: done); else the plan's ✅."""
    boxed = [step for step in details.steps if step.box_offset is not None]
    if boxed:
        settled = (BoxState.DONE, BoxState.SKIPPED)
        required = [step for step in boxed if not step.optional] or boxed
        return BoxState.DONE if all(step.state in settled for step in required) else BoxState.OPEN
    if details.mark and (any(mark in details.mark for mark in _MARKS_DONE) or details.mark.isupper()):
        return BoxState.DONE
    return BoxState.OPEN


def _box_steps(outline: Outline, boxes: list[RawTask], unit_start: int) -> list[Step]:
    kinds: dict[int, StepKind] = {}
    steps: list[Step] = []
    for box in boxes:
        if box.parent is not None and box.parent in kinds:
            kind = kinds[box.parent]
        else:
            criterion = not _STEP_TITLE.match(box.title) and _criteria_label_before(
                outline, box.start, unit_start
            )
            kind = StepKind.CRITERION if criterion else StepKind.STEP
        kinds[box.index] = kind
        steps.append(
            Step(
                title=box.title,
                kind=kind,
                line=box.line + 1,
                box_offset=box.box_offset,
                state=box.state,
                optional=box.optional,
            )
        )
    return steps


def _criteria_label_before(outline: Outline, line: int, unit_start: int) -> bool:
    """Whether the list holding the box at `line` stands under a "**Verification:**"-like label."""
    index = line - 1
    while index > unit_start:
        text = outline.lines[index]
        if (
            not text.strip()
            or outline.in_code[index]
            or _LIST_ITEM.match(text)
            or text.startswith((" ", "\t"))
        ):
            index -= 1
            continue
        # A label ending its line ("**Verification:**", "Acceptance criteria:") or a sub-heading;
        # prose that mentions verifying is neither.
        label = _LABEL_LINE.match(text)
        if text.lstrip().startswith("#"):
            words = text
        elif label is not None and not label.group("rest").strip():
            words = label.group("label")
        else:
            return False
        return bool(_CRITERIA_LABEL.search(words))
    return False


def _paragraph_steps(lines: list[str], mask: list[bool], start: int) -> list[Step]:
    """A heading unit without boxes: its `**Step N: ...**` paragraphs are its steps; the items under
    an `**Acceptance Criteria:**`-like label (or sub-heading), and a `**Deliverable:**`, its criteria."""
    steps: list[Step] = []
    in_criteria = False
    for offset, line in enumerate(lines[1:], start=1):
        if mask[offset] or not line.strip():
            continue
        match = _PARAGRAPH_STEP.match(line)
        if match:
            in_criteria = False
            words = match.group("title") or match.group("heading") or ""
            if match.group("rest"):  # "**Step 1:** Write the failing test"
                words = f"{words} {match.group('rest')}"
            steps.append(Step(title=" ".join(refs.plain_labels(words).split()), line=start + offset + 1))
            continue
        item = _LIST_ITEM.match(line)
        if item is not None:
            if in_criteria and not line.startswith((" ", "\t")):
                title = " ".join(refs.plain_labels(item.group("text")).split())
                steps.append(Step(title=title, kind=StepKind.CRITERION, line=start + offset + 1))
            continue
        heading = line.lstrip().startswith("#")
        label = _LABEL_LINE.match(line.lstrip("# ")) if not heading else None
        name = line.lstrip("# ").strip(" *_:") if heading else label.group("label") if label else ""
        rest = label.group("rest").strip() if label else ""
        if name.strip().lower().startswith("deliverable") and rest:
            steps.append(
                Step(title=refs.plain_labels(rest), kind=StepKind.CRITERION, line=start + offset + 1)
            )
        in_criteria = bool(name) and not rest and bool(_CRITERIA_LABEL.search(name))
    return steps


def _phase_steps(lines: list[str], mask: list[bool], start: int) -> list[Step]:
    """A box-less phase unit: its `**Tasks:**` items are steps, its `**Deliverable:**` a criterion."""
    steps: list[Step] = []
    in_tasks = False
    for offset, line in enumerate(lines[1:], start=1):
        if mask[offset]:
            continue
        label = _LABEL_LINE.match(line) if not _LIST_ITEM.match(line) else None
        if label is not None:
            name = label.group("label").strip().lower()
            in_tasks = name in ("tasks", "task list")
            rest = label.group("rest").strip()
            if name.startswith("deliverable") and rest:
                steps.append(
                    Step(title=refs.plain_labels(rest), kind=StepKind.CRITERION, line=start + offset + 1)
                )
            continue
        item = _LIST_ITEM.match(line)
        if in_tasks and item and not line.startswith((" ", "\t")):
            steps.append(
                Step(title=" ".join(refs.plain_labels(item.group("text")).split()), line=start + offset + 1)
            )
        elif in_tasks and line.strip() and not item and not line.startswith((" ", "\t")):
            in_tasks = False
    return steps


_TEST_ITEM = re.compile(r"^\W*tests?\W*:", re.IGNORECASE)
"""A `Test: \\`tests/x.py\\`` item of a `**Files:**` list (bold or not)."""
_LINES_SUFFIX = re.compile(r":\d+(?:-\d+)?$")
"""`path:123-145`: the lines of the file a plan points at."""


def _files(lines: list[str], mask: list[bool]) -> tuple[list[str], list[str]]:
    """Paths under a `**Files:**` label (`Create:` / `Modify:` / `Test:` items), and of them those
    of its `Test:` items; the label's list lines are masked, so that `- Test: \\`tests/x.py\\`` is
    not taken for a check."""
    files: list[str] = []
    tests: list[str] = []
    index = 0
    while index < len(lines):
        label = _LABEL_LINE.match(lines[index]) if not mask[index] else None
        if label is None or label.group("label").strip().lower() not in (
            "files",
            "files touched",
            "files to change",
        ):
            index += 1
            continue
        files.extend(_paths(label.group("rest")))
        mask[index] = True
        index += 1
        while index < len(lines) and (not lines[index].strip() or _LIST_ITEM.match(lines[index])):
            if lines[index].strip():
                item = _LIST_ITEM.match(lines[index])
                if item is not None:
                    paths = _paths(item.group("text"))
                    files.extend(paths)
                    if _TEST_ITEM.match(item.group("text")):
                        tests.extend(_LINES_SUFFIX.sub("", path) for path in paths)
                mask[index] = True
            elif index + 1 < len(lines) and not _LIST_ITEM.match(lines[index + 1]):
                break
            index += 1
    return list(dict.fromkeys(files)), list(dict.fromkeys(tests))


def _paths(text: str) -> list[str]:
    return [span.strip() for span in _CODE_IN_TEXT.findall(text) if span.strip()]


# ---- a box unit -------------------------------------------------------------------------------


def _box_details(task: RawTask) -> UnitDetails:
    details = UnitDetails()
    commands = refs.verify_commands(task.context)
    check_task = _CHECK_TASK.match(task.title)
    if check_task:
        details.command = check_task.group("command").strip()
        if details.command not in commands:
            commands.insert(0, details.command)
    details.checks = [Check(command=c, line=task.line + 1) for c in commands]
    return details


# ---- a GSD block ------------------------------------------------------------------------------


def _gsd_blocks(outline: Outline) -> list[tuple[int, int]]:
    """(first line, line after) of every `<task ...>` ... `</task>` outside code."""
    blocks: list[tuple[int, int]] = []
    index = 0
    lines = outline.lines
    while index < len(lines):
        if outline.in_code[index] or not _GSD_OPEN.match(lines[index]):
            index += 1
            continue
        end = index
        while end < len(lines) and not _GSD_CLOSE.search(lines[end]):
            end += 1
        if end == len(lines):
            break
        blocks.append((index, end + 1))
        index = end + 1
    return blocks


def _block_unit(outline: Outline, start: int, end: int) -> tuple[RawTask, UnitDetails]:
    text = "\n".join(outline.lines[start:end])
    opening = _GSD_OPEN.match(outline.lines[start])
    attributes = opening.group("attributes") or "" if opening else ""
    kind = _GSD_TYPE.search(attributes)
    elements: dict[str, tuple[str, int]] = {}
    for element in _GSD_ELEMENT.finditer(text):
        tag = element.group("tag").lower()
        if tag not in elements:
            elements[tag] = (element.group("body").strip(), start + text.count("\n", 0, element.start()))
    details = UnitDetails()
    details.manual = bool(kind and kind.group("type").lower().startswith("checkpoint"))
    # A checkpoint has no <name>: what it asks a human to look at names it.
    name = " ".join(
        (elements.get("name") or elements.get("what-built") or elements.get("decision") or ("", start))[
            0
        ].split()
    )[:120]
    numbered = _GSD_NAME_NUMBER.match(name)
    own_id = f"task-{numbered.group('number').lower()}" if numbered else None
    _, title, _, _ = split_title(name[numbered.end() :] if numbered else name)
    files = elements.get("files", ("", start))[0]
    details.files = [f.strip(" `") for f in re.split(r"[,\n]", files) if f.strip(" `")]
    if "verify" in elements:
        body, line = elements["verify"]
        details.checks = _gsd_checks(body, line + 1)
    if "done" in elements:
        body, line = elements["done"]
        done = " ".join(body.split())
        details.steps = [Step(title=done, kind=StepKind.CRITERION, line=line + 1)]
        if not any(c.final for c in details.checks):
            details.uncovered = [done]
    section = _section_at(outline, start)
    raw = RawTask(
        index=-1,
        line=start,
        start=start,
        end=end,
        box_offset=None,
        state=BoxState.OPEN,
        optional=False,
        own_id=own_id,
        title=title or f"{kind.group('type') if kind else 'task'} at line {start + 1}",
        parallel=False,
        section=section,
        parent=None,
        context=text,
        kind="block",
    )
    return raw, details


def _gsd_checks(body: str, line: int) -> list[Check]:
    """`<verify>`: its code spans, or a line that starts with a known program, are commands; words
    about output ("returns 200") are for a reviewer, anything else must succeed."""
    found: list[Check] = []
    clauses = [
        (offset, clause.strip().lstrip("-*+ ").strip())
        for offset, text in enumerate(body.split("\n"))
        for clause in text.split(";")
    ]
    for offset, text in clauses:
        if not text:
            continue
        commands = _CODE_IN_TEXT.findall(text)
        rest = _CODE_IN_TEXT.sub("", text)
        if not commands:
            first = text.split()[0]
            if first not in _PROGRAMS:
                continue
            cut = _BARE_COMMAND_END.search(text)
            commands = [text[: cut.start()] if cut else text]
            rest = text[cut.start() :] if cut else ""
        expect = Expectation.OUTPUT if _OUTPUT_WORDS.search(rest) else plan_checks.expectation(rest)
        if expect is Expectation.FAIL:  # "fails" after a GSD command is rare; read it as a reviewer's note
            expect = Expectation.OUTPUT
        for command in commands:
            found.append(Check(command=command.strip(), expect=expect, expected=text, line=line + offset))
    return found


def _section_at(outline: Outline, line: int) -> int | None:
    found: int | None = None
    for section in outline.sections:
        if section.line <= line < section.end:
            found = section.index
    return found


def _front_matter_requires(front_matter: str) -> list[str]:
    """GSD's `depends_on: ["01-01"]` (or a YAML list below it): plans this one waits for."""
    match = _FRONT_DEPENDS.search(front_matter)
    if match is None:
        return []
    value = match.group("value").strip()
    if value:
        return [v.strip(" '\"") for v in value.strip("[]").split(",") if v.strip(" '\"")]
    items: list[str] = []
    for line in front_matter[match.end() :].split("\n")[1:]:
        item = _FRONT_LIST_ITEM.match(line)
        if item is None:
            break
        items.append(item.group("item"))
    return items


def _dedupe_unit_ids(outline: Outline, tasks: list[RawTask]) -> None:
    """Numbering that restarts in each phase ("Phase 2 / Task 1"): the phase's number goes first."""
    seen: dict[str, int] = {}
    for task in tasks:
        if task.kind != "box" and task.own_id is not None:
            seen[task.own_id] = seen.get(task.own_id, 0) + 1
    for task in tasks:
        if task.kind == "box" or task.own_id is None or seen[task.own_id] < 2:
            continue
        phase = next(
            (
                outline.sections[s].phase_number
                for s in reversed(outline.chain(task.section))
                if outline.sections[s].phase_number
            ),
            None,
        )
        if phase is not None:
            task.own_id = f"{phase.lower()}-{task.own_id}"
