"""The DAG of a parsed plan: every task's direct dependencies, explicit or implied.

Phases run in order, tasks within a phase in document order, `[P]` runs side by side, and
what the plan says in words ("depends on T001", "**Depends on**: Phase 44", "can run in
parallel with 2A", "T008 blocks T009") overrides the order; see the parser's docstring for
the whole rule set. Stage 4 of parsing: it reads the outline (tasks, sections, free text) with
the phases and ids the earlier stages found; besides its result it appends diagnostics and
fills in each phase's stated `depends_on` and `parallel_with`, which only its preamble reading knows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from orchestrator.domain import dag
from orchestrator.domain.plan import BoxState, Diagnostic, Severity
from orchestrator.planfile import refs
from orchestrator.planfile.outline import Outline, RawTask, Table
from orchestrator.planfile.phases import IMPLICIT_PHASE_ID, PhaseInfo, PhaseLayout

_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
_DEPENDS_HEADER = re.compile(
    r"^(?:depends\s*on|dependencies|dependency|depends|blocked\s*by|prerequisites?|prereqs?|after|needs|requires)$"
)
_UNIT_NUMBER = re.compile(r"^(?:task|t)-?(?=\d)")
_ID_HEADER = re.compile(r"^(?:task|tasks|#|id|no\.?|number|step|unit|fix|sub-?agent)$")


@dataclass
class _Block:
    """A sub-section of a phase, holding tasks and further sub-sections in document order."""

    section: int | None
    items: list[tuple[str, int | _Block]] = field(default_factory=list)
    by_section: dict[int, _Block] = field(default_factory=dict)


def build_dependencies(
    outline: Outline, layout: PhaseLayout, ids: list[str], diagnostics: list[Diagnostic]
) -> dict[int, list[str]]:
    """Every task's direct dependencies (task index -> ids), from what the phases and ids stages found."""
    return DependencyBuilder(outline, layout, ids, diagnostics).run()


class DependencyBuilder:
    """Implied and explicit dependencies, phase by phase (see the module docstring)."""

    def __init__(
        self,
        outline: Outline,
        layout: PhaseLayout,
        ids: list[str],
        diagnostics: list[Diagnostic],
    ) -> None:
        self.outline = outline
        self.ids = ids
        """Task index -> its id (the ids stage)."""
        self.phase_of = layout.key_of_task
        """Task index -> its phase's key (the phases stage)."""
        phases = layout.phases
        by_id = {ids[task.index]: task for task in outline.tasks}
        self.diagnostics = diagnostics
        self.phases = phases
        self.phase_by_id = {info.id.lower(): info for info in phases}
        self.by_id = by_id
        self.by_lower = {key.lower(): task for key, task in by_id.items()}
        self.depends: dict[int, list[str]] = {task.index: [] for task in outline.tasks}
        self.explicit: set[tuple[int, str]] = set()
        self.stated: set[tuple[int, str, int]] = set()
        """(task index, id, line) edges stated in prose elsewhere in the plan ("T008 blocks T009")."""
        """(task index, id) edges the plan states in words, as opposed to those its order implies."""
        self.phase_exit: dict[str, list[str]] = {}
        self.section_exit: dict[int, list[str]] = {}
        self.phase_entry: list[str] = []
        self.current: PhaseInfo | None = None
        self.unit_sections = {task.section for task in outline.tasks if task.kind == "heading"}
        """Sections that are heading units of their own."""
        self.unit_alias: dict[str, str] = {}
        """A unit's number -> its id ("4" -> "task-4"), for "Task 4 depends on 1+3"."""
        for task in outline.tasks:
            own = task.own_id or ""
            number = own.partition("-")[2] if task.kind != "box" and own.startswith(("task-", "fix-")) else ""
            if number and number not in self.unit_alias and number not in by_id:
                self.unit_alias[number] = ids[task.index]
        self.unit_explicit: dict[int, list[str]] = {}
        """Unit section -> what the plan says elsewhere it waits for (prose, a Depends On column)."""
        self.unit_parallel: dict[int, int] = {}
        """Unit section -> the group of units the plan says may run side by side."""
        self.table_explicit: dict[int, list[str]] = {}
        """Box task index -> its row's Depends On cell."""
        self.scopes: dict[str, list[int]] = {}
        for section in outline.sections:
            if section.scope:
                self.scopes.setdefault(section.scope, []).append(section.index)

    def _diag(self, severity: Severity, line: int, message: str, code: str = "") -> None:
        self.diagnostics.append(Diagnostic(severity=severity, line=line, message=message, code=code))

    # ---- resolution -----------------------------------------------------------------------

    def _task_ids(self, name: str, numbered: bool = False) -> list[str] | None:
        """`numbered`: the plan said "Task 4", so a unit's number names it."""
        task = self.by_id.get(name) or self.by_lower.get(name.lower())
        if task is not None:
            return [self.ids[task.index]]
        number = _UNIT_NUMBER.sub("", name.lower())  # "T1", "Task-1" in a table: unit 1
        if numbered and number in self.unit_alias:
            return [self.unit_alias[number]]
        if name.lower().startswith("phase-"):
            return None
        return _span(name, lambda first, last: self._range(first, last, numbered))

    def _range(self, first: str, last: str, numbered: bool = False) -> list[str] | None:
        if numbered:
            first = self.unit_alias.get(first.lower(), first)
            last = self.unit_alias.get(last.lower(), last)
        start = self.by_id.get(first) or self.by_lower.get(first.lower())
        end = self.by_id.get(last) or self.by_lower.get(last.lower())
        if start is None or end is None:
            return None
        low, high = sorted((start.index, end.index))
        return self.ids[low : high + 1]

    def _phase_ids(self, name: str) -> list[str] | None:
        info = self.phase_by_id.get(name.lower())
        if info is not None:
            return self._exit_of_phase(info)
        return _span(name, self._phase_range)

    def _phase_range(self, first: str, last: str) -> list[str] | None:
        """ "Phases 14-16": every phase from the first to the last, in plan order."""
        start = self.phase_by_id.get(first.lower())
        end = self.phase_by_id.get(last.lower())
        if start is None or end is None:
            return None
        low, high = sorted((self.phases.index(start), self.phases.index(end)))
        return dedupe(dep for info in self.phases[low : high + 1] for dep in self._exit_of_phase(info))

    def _earlier_than_every_phase(self, name: str) -> bool:
        """A phase number below every phase of this plan with open work (below all of them when
        all are done): a milestone archived elsewhere or collapsed to a summary (GSD), so done."""
        numbered = [info for info in self.phases if _NUMBER.match(info.id)]
        open_work = [
            info
            for info in numbered
            if any(self.outline.tasks[i].state is not BoxState.DONE for i in info.tasks)
        ]
        numbers = [float(info.id) for info in open_work or numbered]
        return bool(numbers) and _NUMBER.match(name) is not None and float(name) < min(numbers)

    def _exit_of_phase(self, info: PhaseInfo) -> list[str]:
        if info.key in self.phase_exit:
            return self.phase_exit[info.key]
        # A forward reference: the phase has not been laid out yet, so wait for all of it.
        return [self.ids[i] for i in info.tasks if not self.outline.tasks[i].optional]

    def _section_ids(self, name: str) -> list[str] | None:
        candidates = self.scopes.get(name.lower())
        if not candidates:
            return None
        current = self.current
        same_phase = [s for s in candidates if current is not None and s in self._phase_sections(current)]
        index = (same_phase or candidates)[-1]
        if index in self.section_exit:
            return self.section_exit[index]
        chain_tasks = [
            t for t in self.outline.tasks if index in self.outline.chain(t.section) and not t.optional
        ]
        return [self.ids[t.index] for t in chain_tasks]

    def _phase_sections(self, info: PhaseInfo) -> set[int]:
        return {
            s.index
            for s in self.outline.sections
            if any(a in self.outline.chain(s.index) for a in info.anchor_sections | set(info.sections))
        }

    def resolve(self, ref: refs.Reference, line: int, strict: bool, prefer_phase: bool = False) -> list[str]:
        found: list[str] | None = None
        if ref.range_end is not None:
            if ref.kind == "phase" or prefer_phase and ref.kind != "task":
                found = self._phase_range(ref.name, ref.range_end)
            if found is None:
                found = self._range(ref.name, ref.range_end, ref.kind == "task")
        elif ref.kind == "phase":
            found = self._phase_ids(ref.name)
        elif ref.kind == "task":
            found = self._task_ids(ref.name, numbered=True)
        elif ref.kind == "section":
            found = self._section_ids(ref.name)
        else:
            lookups = (
                (self._phase_ids, self._task_ids, self._section_ids)
                if prefer_phase
                else (self._task_ids, self._section_ids)
            )
            for lookup in lookups:
                found = lookup(ref.name)
                if found is not None:
                    break
        if found is None:
            is_phase = ref.kind == "phase" or prefer_phase and not ref.kind
            if strict and is_phase and not ref.range_end and self._earlier_than_every_phase(ref.name):
                self._diag(
                    Severity.WARNING,
                    line + 1,
                    f"phase {ref.name} is not in this plan (an earlier milestone?); taken as done",
                )
            elif strict and _looks_like_id(ref):
                shown = f"{ref.name}–{ref.range_end}" if ref.range_end else ref.name
                what = f"{ref.kind} " if ref.kind else ""
                self._diag(
                    Severity.ERROR,
                    line + 1,
                    f"unknown dependency {what}{shown}: no task, section or phase has that id",
                    dag.UNKNOWN_ID,
                )
            return []
        return found

    def clauses_deps(
        self,
        clauses: list[refs.DependencyClause],
        line: int,
        prefer_phase: bool = False,
        lenient: bool = False,
    ) -> list[str] | None:
        """None when the text states nothing; [] for "Dependencies: None". `lenient` (a heading unit's
        long text): a clause naming nothing that resolves states nothing ("waits for 5 s")."""
        if not clauses:
            return None
        result: list[str] = []
        stated = False
        for clause in clauses:
            if clause.explicit_none:
                stated = True
                continue
            # In a unit's prose a bare number is a count ("waits for 2 minutes"), as in free statements.
            named = [r for r in clause.references if not (lenient and not r.kind and r.name.isdigit())]
            resolved = [dep for ref in named for dep in self.resolve(ref, line, clause.strict, prefer_phase)]
            if resolved or clause.strict and not lenient:
                stated = True
            result.extend(resolved)
        return dedupe(result) if stated else None

    # ---- layout ---------------------------------------------------------------------------

    def _stated_elsewhere(self) -> None:
        """What the plan says about its units outside them, read before the layout needs it:
        "Tasks 1-3 can be done in parallel", "Task 4 depends on 1+3", a "Depends On" column."""
        section_of = {self.ids[t.index]: t.section for t in self.outline.tasks if t.kind == "heading"}
        for line, text in self.outline.free_text:
            for number, group in enumerate(refs.parallel_groups(text)):
                members = [d for ref in group for d in (self._free_ids(ref) or [])]
                for member in members:
                    section = section_of.get(member)
                    if section is not None:
                        self.unit_parallel[section] = line * 1000 + number
            for statement in refs.free_statements(text):
                later = [d for ref in statement.later for d in (self._free_ids(ref) or [])]
                earlier = [d for ref in statement.earlier for d in (self._free_ids(ref) or [])]
                for unit in later:
                    section = section_of.get(unit)
                    if section is not None and earlier:
                        stated = self.unit_explicit.get(section, []) + [d for d in earlier if d != unit]
                        self.unit_explicit[section] = dedupe(stated)
        for table in self.outline.tables:
            self._depends_column(table, section_of)

    def _depends_column(self, table: Table, section_of: dict[str, int | None]) -> None:
        """A table with a "Depends On" column: each row's unit waits for what its cell names."""
        header = [cell.strip().lower() for cell in table.header]
        depends = next((i for i, cell in enumerate(header) if _DEPENDS_HEADER.match(cell)), None)
        if depends is None:
            return
        subject = next((i for i, cell in enumerate(header) if _ID_HEADER.match(cell) and i != depends), 0)
        for row in table.rows:
            if max(subject, depends) >= len(row.cells):
                continue
            named = refs.references_in(row.cells[subject])
            if not named:
                continue
            targets = self._free_ids(refs.Reference(named[0].kind or "task", named[0].name)) or []
            if not targets:
                continue
            cell = row.cells[depends]
            deps: list[str] = []
            if cell.strip() and not refs.NONE_WORDS.match(cell):
                wanted = [
                    refs.Reference(r.kind or "task", r.name, r.range_end) for r in refs.references_in(cell)
                ]
                deps = [d for ref in wanted for d in self.resolve(ref, row.line, strict=True)]
            for target in targets:
                section = section_of.get(target)
                if section is not None:
                    self.unit_explicit[section] = [d for d in deps if d != target]
                else:
                    self.table_explicit[self.by_id[target].index] = [d for d in deps if d != target]

    def run(self) -> dict[int, list[str]]:
        self._stated_elsewhere()
        previous_exit: list[str] = []
        entries: dict[str, list[str]] = {}
        for info in self.phases:
            self.current = info
            entry = previous_exit
            preamble = "\n".join(
                self.outline.preamble(s) for s in sorted(info.anchor_sections | set(info.sections))
            )
            line = info.first_line
            explicit = self.clauses_deps(refs.dependency_clauses(preamble), line, prefer_phase=True)
            if explicit:
                # "Task 3 depends on 1" in a phase's preamble speaks of its own tasks (see
                # _stated_elsewhere), not of what the phase waits for.
                own = {self.ids[i] for i in info.tasks}
                outside = [d for d in explicit if d not in own]
                explicit = outside or None
            beside = [p for p in self._phases_named(refs.parallel_with(preamble)) if p.key in entries]
            parallel = bool(beside)
            if beside:
                info.parallel_with = [p.id for p in beside]
            if explicit is not None:
                entry = explicit
                info.depends_on = self._named_phases(refs.dependency_clauses(preamble))
            elif beside:
                entry = entries[beside[0].key]
            # "Can run in parallel with any M2 phase": nothing after it waits for it by default.
            aside = not parallel and (
                refs.says_parallel(preamble)
                or any(
                    self.outline.tasks[i].phase_item is not None and self.outline.tasks[i].parallel
                    for i in info.tasks
                )
            )
            entries[info.key] = entry
            self.phase_entry = entry
            root = self._blocks(info)
            self._run_block(root, entry)
            summaries = [i for i in info.tasks if self.outline.tasks[i].phase_item is not None]
            others = [i for i in info.tasks if i not in set(summaries)]
            sinks = self._sinks(others) or entry
            for index in summaries:
                self.depends[index] = list(sinks)
            exit_ids = self._sinks(info.tasks) or entry
            self.phase_exit[info.key] = exit_ids
            if parallel:
                previous_exit = dedupe(previous_exit + exit_ids)
            elif not aside:
                previous_exit = exit_ids
        self._free_statements()
        self._settle_contradictions()
        return {index: dedupe(deps) for index, deps in self.depends.items()}

    def _phases_named(self, references: list[refs.Reference]) -> list[PhaseInfo]:
        """The phases that "parallel with 2A", "parallel with Phases 14-16" name, in plan order."""
        found: list[PhaseInfo] = []
        for ref in references:
            first, last = ref.name, ref.range_end
            if last is None:
                for glue in ("-", "–"):
                    if glue in first and first.lower() not in self.phase_by_id:
                        first, _, last = first.partition(glue)
                        break
            start = self.phase_by_id.get(first.lower())
            end = self.phase_by_id.get(last.lower()) if last is not None else start
            if start is None or end is None:
                continue
            low, high = sorted((self.phases.index(start), self.phases.index(end)))
            found.extend(p for p in self.phases[low : high + 1] if p not in found)
        return found

    def _named_phases(self, clauses: list[refs.DependencyClause]) -> list[str]:
        names: list[str] = []
        for clause in clauses:
            for ref in clause.references:
                info = self.phase_by_id.get(ref.name.lower())
                if info is not None and ref.kind in ("phase", ""):
                    names.append(info.id)
        return dedupe(names)

    def _blocks(self, info: PhaseInfo) -> _Block:
        root = _Block(section=None)
        anchors = info.anchor_sections | set(info.sections)
        for index in info.tasks:
            task = self.outline.tasks[index]
            if task.phase_item is not None:
                continue
            if task.parent is not None and self.phase_of[task.parent] == self.phase_of[task.index]:
                continue
            chain = self.outline.chain(task.section)
            cut = max((k for k, s in enumerate(chain) if s in anchors), default=-1)
            if info.key == IMPLICIT_PHASE_ID or info.key.startswith(("section:", "kiro:")):
                outer = {self.outline.title_section(), info.container}
                cut = max((k for k, s in enumerate(chain) if s in anchors or s in outer), default=-1)
            block = root
            for section in chain[cut + 1 :]:
                child = block.by_section.get(section)
                if child is None:
                    child = _Block(section=section)
                    block.by_section[section] = child
                    block.items.append(("section", child))
                block = child
            block.items.append(("task", index))
        return root

    def _run_block(self, block: _Block, entry: list[str]) -> list[str]:
        frontier = entry
        group_base: list[str] | None = None
        group_exits: list[str] = []
        section_entries: dict[int, list[str]] = {}
        previous_section: int | None = None
        for kind, item in block.items:
            if kind == "task":
                assert isinstance(item, int)
                task = self.outline.tasks[item]
                if task.parallel:
                    if group_base is None:
                        group_base, group_exits = frontier, []
                    after = self._run_task(task, group_base)
                    if after != group_base:
                        group_exits = dedupe(group_exits + after)
                    frontier = group_exits or group_base
                else:
                    group_base = None
                    frontier = self._run_task(task, frontier)
                continue
            assert isinstance(item, _Block)
            assert item.section is not None
            group_base = None
            index = item.section
            preamble = self.outline.preamble(index)
            if index in self.unit_sections:  # "### Task 3: Wire it (depends on Task 1)"
                preamble = f"{self.outline.sections[index].title}\n{preamble}"
            line = self.outline.sections[index].line
            unit = index in self.unit_sections
            explicit = self.clauses_deps(refs.dependency_clauses(preamble), line, lenient=unit)
            if explicit is None and index in self.unit_explicit:
                explicit = self.unit_explicit[index]
            if explicit is not None and unit:
                explicit = [d for d in explicit if self.by_id[d].section != index]
            group = self.unit_parallel.get(index)
            section_entry = frontier
            parallel = False
            if explicit is not None:
                section_entry = explicit or self.phase_entry
            elif (
                group is not None
                and previous_section is not None
                and self.unit_parallel.get(previous_section) == group
            ):
                parallel = True
                section_entry = section_entries[previous_section]
            elif refs.says_parallel(preamble):
                parallel = True
                targets = [
                    s
                    for ref in refs.parallel_with(preamble)
                    for s in self.scopes.get(ref.name.lower(), [])
                    if s in section_entries
                ]
                if targets:
                    section_entry = section_entries[targets[0]]
                elif previous_section is not None:
                    section_entry = section_entries[previous_section]
            section_entries[index] = section_entry
            self._run_block(item, section_entry)
            inside = self._tasks_in(item)
            sinks = self._sinks(inside) or section_entry
            self.section_exit[index] = sinks
            frontier = dedupe(frontier + sinks) if parallel else sinks
            previous_section = index
        return frontier

    def _tasks_in(self, block: _Block) -> list[int]:
        found: list[int] = []
        stack = [block]
        while stack:
            current = stack.pop()
            for kind, item in current.items:
                if kind == "task":
                    assert isinstance(item, int)
                    found.append(item)
                    found.extend(self._descendants(item))
                else:
                    assert isinstance(item, _Block)
                    stack.append(item)
        return found

    def _descendants(self, index: int) -> list[int]:
        out: list[int] = []
        stack = list(self.outline.tasks[index].children)
        while stack:
            child = stack.pop()
            out.append(child)
            stack.extend(self.outline.tasks[child].children)
        return out

    def _run_task(self, task: RawTask, frontier: list[str]) -> list[str]:
        # A heading unit's words were read as its section's preamble; a GSD block states none.
        explicit = (
            self.clauses_deps(refs.dependency_clauses(task.context), task.line)
            if task.kind == "box"
            else None
        )
        if explicit is None and task.index in self.table_explicit:
            explicit = self.table_explicit[task.index]
        entry = frontier
        if explicit is not None:
            same_phase = any(
                self.phase_of[self.by_id[d].index] == self.phase_of[task.index]
                for d in explicit
                if d in self.by_id
            )
            entry = dedupe(explicit if same_phase else explicit + self.phase_entry)
            entry = [d for d in entry if d != self.ids[task.index]]
        if task.children:
            children = _Block(section=None, items=[("task", c) for c in task.children])
            after_children = self._run_block(children, entry)
            required = [self.ids[c] for c in task.children if not self.outline.tasks[c].optional]
            if task.optional and not required:  # an optional group is done when its parts are
                required = [self.ids[c] for c in task.children]
            self.depends[task.index] = required or entry
            if task.optional:
                return after_children
        else:
            self.depends[task.index] = list(entry)
            if explicit is not None:
                self.explicit.update((task.index, dep) for dep in explicit)
            if task.optional:
                return frontier
        return [self.ids[task.index]]

    def _sinks(self, indices: Iterable[int]) -> list[str]:
        members = [self.outline.tasks[i] for i in indices]
        ids = {self.ids[task.index] for task in members}
        # An optional task waiting on a task does not make that task less of an end.
        waited_on = {
            dep for task in members if not task.optional for dep in self.depends[task.index] if dep in ids
        }
        return [
            self.ids[task.index]
            for task in members
            if not task.optional and self.ids[task.index] not in waited_on
        ]

    def _free_statements(self) -> None:
        for line, text in self.outline.free_text:
            for statement in refs.free_statements(text):
                earlier = [d for ref in statement.earlier for d in (self._free_ids(ref) or [])]
                later = [d for ref in statement.later for d in (self._free_ids(ref) or [])]
                for task_id in later:
                    index = self.by_id[task_id].index
                    additions = [d for d in earlier if d != task_id]
                    self.depends[index] = dedupe(self.depends[index] + additions)
                    self.explicit.update((index, dep) for dep in additions)
                    self.stated.update((index, dep, line) for dep in additions)

    def _settle_contradictions(self) -> None:
        """A statement elsewhere in the plan wins over the order of its list. "Critical Path: ...
        → T005 → T004" or "Recommended order: ... → T010 → T006" where the list has them the
        other way round would close a loop with the order the list implies; the implied edge
        nearest the waiting task is bypassed instead (the task that waited for the skipped one
        waits for what that one waited for), and a note says so. A task's own "(depends on
        T103)" against its list's order is still a cycle: lint reports it."""
        for index, dep, line in sorted(self.stated):
            dep_task = self.by_id.get(dep)
            if dep_task is None or dep_task.index <= index:  # only a forward reference can contradict
                continue
            target = self.ids[index]
            for _ in range(len(self.outline.tasks)):
                path = self._path(dep, target)
                implied = [edge for edge in path or [] if edge not in self.explicit]
                if not implied:
                    break
                waiting, skipped = implied[-1]
                self._diag(
                    Severity.INFO,
                    line + 1,
                    f"{target} waits for {dep} as this line says, "
                    f"so {self.ids[waiting]} no longer "
                    f"waits for {skipped}, which the list puts before it",
                )
                skipped_index = self.by_id[skipped].index
                waiting_id = self.ids[waiting]
                instead = [
                    d
                    for d in self.depends[skipped_index]
                    if (skipped_index, d) not in self.explicit and d != waiting_id
                ]
                self.depends[waiting] = dedupe([d for d in self.depends[waiting] if d != skipped] + instead)

    def _path(self, start: str, target: str) -> list[tuple[int, str]] | None:
        """The dependency edges (waiting task index, id it waits for) leading from start to target."""
        came_from: dict[str, tuple[int, str] | None] = {start: None}
        frontier = [start]
        while frontier:
            following: list[str] = []
            for current in frontier:
                index = self.by_id[current].index
                for dep in self.depends[index]:
                    if dep in came_from or dep not in self.by_id:
                        continue
                    came_from[dep] = (index, dep)
                    if dep == target:
                        edges: list[tuple[int, str]] = []
                        step = came_from[dep]
                        while step is not None:
                            edges.append(step)
                            step = came_from[self.ids[step[0]]]
                        return edges[::-1]
                    following.append(dep)
            frontier = following
        return None

    def _free_ids(self, ref: refs.Reference) -> list[str] | None:
        if ref.kind not in ("", "task"):
            return None
        # In prose a bare number is a count ("1 region requires 3 approvals"), not Kiro task 3.
        if not ref.kind and ref.name.isdigit():
            return None
        if ref.range_end is not None:
            return self._range(ref.name, ref.range_end, ref.kind == "task")
        return self._task_ids(ref.name, numbered=ref.kind == "task")


def _looks_like_id(ref: refs.Reference) -> bool:
    if ref.kind or ref.range_end:
        return True
    return re.match(r"^(?:[A-Za-z]+-?\d+[a-z]?|\d+(?:\.\d+)+|\d+-\d+)$", ref.name) is not None


def dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _span(name: str, between: Callable[[str, str], list[str] | None]) -> list[str] | None:
    """ "T003-T010a" or "14–16": the ids `between` finds from the first end to the last, if any."""
    for glue in ("-", "–"):
        if glue in name:
            first, _, last = name.partition(glue)
            span = between(first, last)
            if span is not None:
                return span
    return None
