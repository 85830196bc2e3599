"""Stage 2 of parsing: which phase each task belongs to, and the phases in the order they run.

A phase comes from a "Phase <n>" heading, a GSD phase item ("- [ ] Phase 2: Name"), a Kiro
numbered parent with sub-tasks, the outermost heading below the title, or else the implicit
phase `plan`; see the parser's docstring for the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.domain.plan import Diagnostic, Severity
from orchestrator.planfile.ids import slug, unique
from orchestrator.planfile.outline import Outline

IMPLICIT_PHASE_ID = "plan"


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


@dataclass
class PhaseLayout:
    """What the phases stage found."""

    phases: list[PhaseInfo]
    """The phases that hold tasks, in the order they run."""
    key_of_task: list[str]
    """Task index -> the key of its phase."""


def assign_phases(outline: Outline, plan_title: str, diagnostics: list[Diagnostic]) -> PhaseLayout:
    """Every task's phase, and the phases in the order they run (`plan_title` names the implicit
    phase)."""
    phases: dict[str, PhaseInfo] = {}
    defined: dict[str, list[tuple[str, str]]] = {}  # number -> [(key, title)]
    used_ids: set[str] = set()
    key_of_task = [""] * len(outline.tasks)
    section_phase: dict[int, str] = {}  # section index -> key of the phase its heading names
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

    for section in outline.sections:
        if section.phase_number is not None:
            info = phase_for_number(
                section.phase_number, section.line, section.phase_title, section.defines_phase
            )
            section_phase[section.index] = info.key
    title_section = outline.title_section()
    kiro_parents = _uses_numbered_parents(outline)
    kiro_phase: dict[str, PhaseInfo] = {}  # base phase key -> its latest numbered-parent phase
    for task in outline.tasks:
        if task.phase_item is not None:
            info = phase_for_number(task.phase_item, task.line, "", False)
            if info.title == f"Phase {task.phase_item}" and task.phase_name:
                info.title = task.phase_name
            key_of_task[task.index] = info.key
            continue
        if task.parent is not None:
            key_of_task[task.index] = key_of_task[task.parent]
            continue
        chain = outline.chain(task.section)
        named = next((s for s in reversed(chain) if s in section_phase), None)
        if named is not None:
            key = section_phase[named]
            phases[key].anchor_sections.add(named)
            key_of_task[task.index] = key
            continue
        if task.kind != "box":
            # A unit under no phase heading is in the plan's phase: the heading that happens to
            # enclose it ("## File Structure" above "### Task 1") is no phase of its.
            if IMPLICIT_PHASE_ID not in phases:
                phases[IMPLICIT_PHASE_ID] = PhaseInfo(
                    key=IMPLICIT_PHASE_ID,
                    id=unique(IMPLICIT_PHASE_ID, used_ids),
                    title=plan_title,
                    first_line=task.line,
                )
            key_of_task[task.index] = IMPLICIT_PHASE_ID
            continue
        outer = [s for s in chain if s != title_section]
        container = outer[0] if outer else None
        base = f"section:{container}" if container is not None else IMPLICIT_PHASE_ID
        if kiro_parents and task.own_id is not None and task.own_id.isdigit():
            # Kiro's "- [ ] 2. Name" with its 2.x tasks is a phase of its own.
            info = PhaseInfo(
                key=f"kiro:{task.index}",
                id=unique(task.own_id, used_ids),
                title=task.title,
                first_line=task.line,
                container=container,
            )
            phases[info.key] = info
            kiro_phase[base] = info
            key_of_task[task.index] = info.key
            continue
        if base in kiro_phase:  # an unnumbered task after a numbered parent joins its phase
            key_of_task[task.index] = kiro_phase[base].key
            continue
        if container is not None:
            if base not in phases:
                section = outline.sections[container]
                phase_id = unique(slug(section.title) or "section", used_ids)
                phases[base] = PhaseInfo(key=base, id=phase_id, title=section.title, first_line=section.line)
            phases[base].anchor_sections.add(container)
            key_of_task[task.index] = base
            continue
        if IMPLICIT_PHASE_ID not in phases:
            phase_id = unique(IMPLICIT_PHASE_ID, used_ids)
            phases[IMPLICIT_PHASE_ID] = PhaseInfo(
                key=IMPLICIT_PHASE_ID, id=phase_id, title=plan_title, first_line=task.line
            )
        key_of_task[task.index] = IMPLICIT_PHASE_ID
    for task in outline.tasks:
        phases[key_of_task[task.index]].tasks.append(task.index)
    for section in outline.sections:
        if section.index in section_phase:
            phases[section_phase[section.index]].sections.append(section.index)
    # A phase runs where the plan first names it: GSD lists its phases (in the order it
    # means) before the "Phase Details" headings, which may be ordered otherwise.
    kept = sorted((info for info in phases.values() if info.tasks), key=lambda p: p.position)
    kept_keys = {info.key for info in kept}
    for key, line, note in repeats:
        if key in kept_keys:
            diagnostics.append(Diagnostic(severity=Severity.INFO, line=line + 1, message=note))
    for info in kept:
        info.text = _phase_text(outline, info)
    return PhaseLayout(kept, key_of_task)


def _uses_numbered_parents(outline: Outline) -> bool:
    """Whether the plan is Kiro-shaped: some "- [ ] 2." task has sub-tasks."""
    return any(
        task.own_id is not None and task.own_id.isdigit() and task.children and task.parent is None
        for task in outline.tasks
    )


def _phase_text(outline: Outline, info: PhaseInfo) -> str:
    if info.key.startswith("kiro:"):
        first = min(outline.tasks[i].start for i in info.tasks)
        last = max(outline.tasks[i].end for i in info.tasks)
        return "\n".join(outline.lines[first:last]).strip("\n")
    if info.key == IMPLICIT_PHASE_ID:
        first_heading = next((s.line for s in outline.sections if s.level > 1), len(outline.lines))
        return "\n".join(outline.lines[:first_heading]).strip("\n")
    own = sorted(set(info.sections) | info.anchor_sections)
    parts: list[str] = []
    covered_until = -1
    for index in own:
        section = outline.sections[index]
        if section.line < covered_until:
            continue
        parts.append(outline.section_text(index))
        covered_until = section.end
    return "\n\n".join(parts)
