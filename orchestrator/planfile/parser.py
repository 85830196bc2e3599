"""A markdown plan -> `Plan`: phases, tasks, the DAG between them, and what is wrong with it.

Structure comes from markdown-it-py's CommonMark block tokens (plus front matter and GFM
tables), never from line regexes, so checkboxes inside fenced or indented code, HTML
blocks, tables and block quotes are not tasks. Line regexes only read *inside* one
block: the box at the start of a list item's first paragraph, a heading's words, a
task's own text.

Stages, each reading what the ones before it found (imports flow one way):
    outline.py       the blocks, read once: sections, boxes with their offsets, tables, free text
    units.py         the units of work: heading and block units with their steps, criteria and
                     checks (checks.py), or each box; the plan's rules sections
    phases.py        which phase each task is in, the phases in run order
    ids.py           every task's id
    dependencies.py  every task's direct dependencies
    this module      reads the file, runs them, builds the Plan and its diagnostics

What counts as a task (a unit of work: one agent call, one commit)
    A heading the plan marks as a task (`### Task 3`, `### TASK 3`, `### Fix 2 (Optional)`,
    `#### Sub-Agent 2A`; the innermost of nested ones), a GSD `<task>` block, or in a plan with
    neither and no box a phase heading with a `**Tasks:**` list: see units.py. Boxes inside such a
    unit are its steps or criteria, not tasks. Otherwise each box is a task:
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
    (id `01-02` / `12-01`), and `Phase 2.1:` (GSD phase items, id `phase-2.1`). Heading units:
    `task-3`, `fix-2`, `2a` (Sub-Agent 2A), `phase-4`; a number used again in another phase gets
    that phase's first (`2-task-1`); a GSD block its `Task N:` (`task-1`) or a slug of its name.
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

Verification commands (a box's `verify`; heading units read checks.py's fuller rules)
    Inline code right after `Run:`, `Verify:`, `Verification:`, `Test:` or `Check:`
    (case-insensitive, bold or not) in the task's own text or its sub-bullets; or, when such a
    label ends its line, the shell code block right under it (no language, bash, sh, shell,
    zsh, console): one command per non-empty line, `#` comments and `$ ` prompts dropped,
    backslash continuations joined. A block in another language is not a command.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrator.domain import dag
from orchestrator.domain.plan import BoxState, Diagnostic, Phase, Plan, PlanSection, Severity, Task, TaskKind
from orchestrator.errors import PlanError
from orchestrator.input_files import PLAN_LIMIT, read_regular_file
from orchestrator.planfile.dependencies import build_dependencies
from orchestrator.planfile.ids import assign_ids
from orchestrator.planfile.manual import manual_words
from orchestrator.planfile.outline import MAX_NESTING, Outline, RawTask, build_outline
from orchestrator.planfile.phases import IMPLICIT_PHASE_ID, PhaseLayout, assign_phases
from orchestrator.planfile.rules import standards, template_rules
from orchestrator.planfile.units import find_units, first_task_lines

__all__ = ["MAX_NESTING", "decode", "parse_bytes", "parse_plan", "plan_bytes_as_left", "read_plan_bytes"]


def parse_plan(path: Path) -> Plan:
    """Read and parse a plan file, with the documents it names found in its repository (see
    planfile.documents); PlanError (one line, naming the file) if it cannot be read."""
    data = read_plan_bytes(path)
    return with_documents(parse_bytes(data, path), data, path)


def with_documents(plan: Plan, data: bytes, path: Path) -> Plan:
    """`plan` (parsed from `data`, read from `path`) with the documents it names read: the sections
    its units are given and the boxes of other documents they tick."""
    # Imported here: documents reads and writes files with this module's and the writer's helpers.
    from orchestrator.planfile.documents import link

    return link(plan, data.decode("utf-8", errors="replace"), path)


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
        return _plan(build_outline(data, text), path)


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


def _plan(outline: Outline, path: Path) -> Plan:
    """The stages over the outline, in order: phases, ids, dependencies; then the Plan and its lint."""
    diagnostics = list(outline.diagnostics)
    title = outline.title(path)
    units = find_units(outline, diagnostics)
    # The units stage decides what the tasks are: the stages after it read these.
    outline.tasks = units.tasks
    outline.first_task_line = first_task_lines(outline, units.tasks)
    layout = assign_phases(outline, title, diagnostics)
    ids = assign_ids(outline, diagnostics)
    depends = build_dependencies(outline, layout, ids, diagnostics)
    diagnostics.extend(_parent_disagreements(outline, layout, ids))
    phases = layout.phases
    tasks = outline.tasks
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
    plan_tasks = []
    for task in tasks:
        details = units.details[task.index]
        plan_tasks.append(
            Task(
                id=ids[task.index],
                title=task.title,
                state=task.state,
                optional=task.optional,
                phase=phase_id[layout.key_of_task[task.index]],
                line=task.line + 1,
                box_offset=task.box_offset,
                kind=TaskKind(task.kind),
                steps=details.steps,
                checks=details.checks,
                uncovered=details.uncovered,
                files=details.files,
                test_files=details.test_files,
                mark=details.mark,
                manual=details.manual or bool(manual_words(task.title)),
                command=details.command,
                section_path=outline.section_path(task.section),
                depends_on=depends[task.index],
                parallel=task.parallel,
                verify=list(dict.fromkeys(c.command for c in details.checks if c.final)),
                parent=ids[task.parent] if task.parent is not None else None,
                context=task.context,
            )
        )
    if not plan_tasks:
        diagnostics.append(
            Diagnostic(
                severity=Severity.ERROR,
                line=None,
                message=NO_TASKS_MESSAGE,
                code=dag.NO_TASKS,
            )
        )
    rules = [
        PlanSection(
            title=outline.sections[index].title,
            line=outline.sections[index].line + 1,
            text=_rules_text(outline, index),
        )
        for index in units.rules
    ]
    rules += template_rules(outline, [r.title for r in rules])
    plan = Plan(
        path=path,
        title=title,
        preamble=_preamble(outline),
        rules=rules,
        standards=standards(rules),
        requires=units.requires,
        phases=plan_phases,
        tasks=plan_tasks,
        diagnostics=[],
        sha256=hashlib.sha256(outline.data).hexdigest(),
    )
    known = {(d.line, d.message) for d in diagnostics}
    extra = [d for d in dag.validate(plan) if (d.line, d.message) not in known]
    plan.diagnostics = sorted(
        diagnostics + extra, key=lambda d: (d.line is not None, d.line or 0, d.severity)
    )
    return plan


NO_TASKS_MESSAGE = (
    "no task found: a task is a checkbox ('- [ ] Do the thing'), a heading such as '### Task 1: ...' "
    "or '#### Sub-Agent 2A: ...', or a GSD <task> block"
)


def _rules_text(outline: Outline, index: int) -> str:
    """A rules section's text, up to the first unit inside it ("## Conventions" over "### Task 1")."""
    section = outline.sections[index]
    starts = [t.start for t in outline.tasks if t.kind != "box" and section.line < t.start < section.end]
    end = min([section.end, *starts])
    return "\n".join(outline.lines[section.line : end]).strip("\n")


def _preamble(outline: Outline) -> str:
    """The text between the title (or the front matter) and the first heading after it."""
    title = outline.title_section()
    start = outline.sections[title].line + 1 if title is not None else outline.front_matter_end
    following = [s.line for s in outline.sections if s.line >= start]
    end = following[0] if following else len(outline.lines)
    return "\n".join(outline.lines[start:end]).strip("\n")


def _parent_disagreements(outline: Outline, layout: PhaseLayout, ids: list[str]) -> list[Diagnostic]:
    """Report, never fix, a parent (or GSD phase item) whose box disagrees with its tasks."""
    found: list[Diagnostic] = []
    tasks = outline.tasks
    for task in tasks:
        if task.children:
            message = _disagreement(task, [tasks[c] for c in task.children], ids)
        elif task.phase_item is not None:
            info = next(p for p in layout.phases if p.key == layout.key_of_task[task.index])
            members = [tasks[i] for i in info.tasks if tasks[i].phase_item is None]
            message = _disagreement(task, members, ids) if members else None
        else:
            continue
        if message:
            found.append(
                Diagnostic(
                    severity=Severity.WARNING,
                    line=task.line + 1,
                    message=message + "; tick or untick it by hand",
                    code=dag.PARENT_CHILD,
                )
            )
    return found


def _disagreement(parent: RawTask, children: list[RawTask], ids: list[str]) -> str | None:
    required = [c for c in children if not c.optional]
    if not required:
        return None
    open_children = [c for c in required if c.state not in (BoxState.DONE, BoxState.SKIPPED)]
    if parent.state is BoxState.DONE and open_children:
        listed = ", ".join(f"{ids[c.index]} (line {c.line + 1})" for c in open_children[:5])
        return f"task {ids[parent.index]} is ticked but these sub-tasks are not: {listed}"
    if parent.state is BoxState.OPEN and not open_children:
        return f"task {ids[parent.index]} is not ticked although all {len(required)} of its sub-tasks are"
    return None
