"""The parsed plan: phases, tasks and what the parser had to say about them."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class BoxState(StrEnum):
    """What the character between the brackets says."""

    OPEN = "open"  # [ ]
    DONE = "done"  # [x] or [X]
    IN_PROGRESS = "in_progress"  # [/] where the plan's legend defines it
    SKIPPED = "skipped"  # [-] where the plan's legend defines it


class TaskKind(StrEnum):
    """What in the plan makes the unit of work."""

    BOX = "box"
    """A checkbox item: the plan's boxes are its tasks (spec-kit, Kiro, Ralph, success criteria)."""
    HEADING = "heading"
    """A heading the plan marks as a task (`### Task 3`, `#### Sub-Agent 2A`, `### Fix 2`, a box-less
    plan's `### Phase 4` with a `**Tasks:**` list): everything up to the next heading of its level."""
    BLOCK = "block"
    """A block the plan marks as a task: GSD's `<task type="auto">` element."""


class StepKind(StrEnum):
    STEP = "step"
    """A piece of the unit's work (superpowers' `**Step 3: ...**`, a `**Tasks:**` bullet)."""
    CRITERION = "criterion"
    """Something that must hold when the unit is done (the seed's `**Verification:**` boxes, GSD
    `<done>`, a `**Deliverable:**`)."""


class Expectation(StrEnum):
    """What the plan says a check's command should do."""

    PASS = "pass"
    """Succeed ("Expected: PASS", "clean", "退出码 0"; a command with no expectation written)."""
    FAIL = "fail"
    """Fail: the TDD red step before the implementation ("Expected: FAIL with ..."). Not a final check."""
    OUTPUT = "output"
    """Print something the plan describes ("No output", "Shows list of skills"): kept for a reviewer,
    never guessed at from the exit status."""


class Check(BaseModel):
    """A command the plan carries for a unit, with what it should do."""

    command: str
    """The command as orchestrate runs it (a `cd /abs/path/not/here && ` prefix dropped, see `note`)."""
    expect: Expectation = Expectation.PASS
    expected: str = ""
    """The plan's own words after `Expected:` (or GSD `<verify>`'s text around the command)."""
    line: int | None = None
    """1-based line of the command in the plan."""
    step: int | None = None
    """Index in the unit's `steps` of the step the check belongs to; None for the unit as a whole."""
    written: str = ""
    """The command exactly as the plan wrote it, when `command` differs from it."""
    note: str = ""
    """Why `command` differs from what the plan wrote (a path from the author's machine)."""

    @property
    def final(self) -> bool:
        """Whether the unit's final state must pass it (a check expected to fail first is not)."""
        return self.expect is Expectation.PASS


class Step(BaseModel):
    """A box (or a numbered paragraph) inside a unit: one of its steps or criteria."""

    title: str
    kind: StepKind = StepKind.STEP
    line: int
    """1-based line of the step."""
    box_offset: int | None = None
    """Byte offset of the character between its brackets; None for a step written without a box."""
    state: BoxState = BoxState.OPEN
    optional: bool = False


class Diagnostic(BaseModel):
    severity: Severity
    line: int | None = None
    """1-based line in the plan file, or None for a finding about the whole plan."""
    message: str
    code: str = ""
    """Stable kind of finding for tools ("cycle", "unknown-id", "duplicate-id", "parent-child",
    "no-tasks"); empty for notes that need no code."""


class Phase(BaseModel):
    id: str
    """The plan's own phase number where it has one ("2", "2.1", "44"), else a derived id."""
    title: str
    order: int
    """Position among the plan's phases, 0-based; the default execution order."""
    line: int | None = None
    """1-based line of the phase heading; None for the implicit phase of a plan without any."""
    depends_on: list[str] = Field(default_factory=list)
    """Phase ids this phase explicitly waits for ("**Depends on**: Phase 44", "Wait for: Phase 2")."""
    parallel_with: list[str] = Field(default_factory=list)
    """Phase ids the plan says this phase may run beside ("can run in parallel with 2A")."""
    text: str = ""
    """The markdown of the phase's own section: the context a task of this phase is given."""


class Excerpt(BaseModel):
    """A section of another document a unit is given ("Complete "Phase 2: ..." → "2.1 ..." section")."""

    document: str
    """The document's path, relative to the repository root."""
    heading: str
    line: int
    """1-based line of the section's heading in that document."""
    text: str
    """The section's markdown, its heading included, up to the next heading of its level."""


class LinkedBox(BaseModel):
    """A box of another document that a unit completes (`**Update:** Mark "..." in Phase 2 Success
    Criteria`): ticked in the unit's commit, beside its own boxes."""

    document: str
    """The document's path, relative to the repository root."""
    heading: str
    """The heading the box stands under (with `title`, how it is found again after an edit)."""
    title: str
    """The box's text as the document has it ("... (testing pending)" included)."""
    line: int
    """1-based line of the box in that document."""
    box_offset: int
    """Byte offset of the character between its brackets, in the document as read."""
    state: BoxState = BoxState.OPEN
    document_sha256: str = ""
    """Digest of the document's bytes as read: a landing that finds other bytes finds the box again."""


class DocumentReference(BaseModel):
    """A document the plan names (its required reading, the plan an orchestration prompt drives)."""

    reference: str
    """As the plan wrote it (`/Users/x/MJ/plans/plan.md`, `plan.md`)."""
    line: int
    """1-based line of its first mention."""
    path: str | None = None
    """Where it was found, relative to the repository root; None when it was not."""


class Task(BaseModel):
    """A unit of work: what the plan hands to one worker in one agent call, ticked (all of its
    boxes) in one commit."""

    id: str
    """The plan's own id where it has one (T001, 2.1, 45-01, task-3, 2a), else derived from phase and text."""
    title: str
    state: BoxState
    """For a box: its box. For a heading or block unit: done when all of its boxes are (or, without
    boxes, when the plan marks it ✅); a box-less unit is otherwise done by its commit's trailer,
    which only the engine can see."""
    optional: bool = False
    phase: str
    """Id of the phase the task belongs to."""
    line: int
    """1-based line of the task's checkbox, heading or `<task>` tag."""
    box_offset: int | None = None
    """Byte offset, in the file as read, of the character between the brackets of the task's own box;
    None for a heading or block unit (its steps' boxes are in `steps`)."""
    kind: TaskKind = TaskKind.BOX
    steps: list[Step] = Field(default_factory=list)
    """The unit's steps and criteria, in plan order; their boxes are ticked with the unit's."""
    checks: list[Check] = Field(default_factory=list)
    """Every command the plan carries for the unit, with its expected outcome, in plan order."""
    uncovered: list[str] = Field(default_factory=list)
    """Criteria of the unit (and a box's own text when it states one) that no command checks: for a
    reviewer or a human."""
    files: list[str] = Field(default_factory=list)
    """Paths the unit names as its files (`**Files:**` Create/Modify/Test, GSD `<files>`)."""
    test_files: list[str] = Field(default_factory=list)
    """Of `files`, those the unit names as its tests (`**Files:**` `Test:` items): fail-first takes
    them for tests whatever their names."""
    mark: str = ""
    """The plan's own status mark on the unit's heading (✅, ⏸️), as written."""
    manual: bool = False
    """A human's step (GSD `checkpoint:*` tasks): no agent can do it."""
    command: str | None = None
    """For a check task ("Run `uv run pytest`"): the command that is the task. Orchestrate runs it;
    only if it fails does an agent get the task."""
    section_path: list[str] = Field(default_factory=list)
    """Headings enclosing the task, outermost first."""
    depends_on: list[str] = Field(default_factory=list)
    """Ids of every task this one waits for directly, explicit or implied by order."""
    parallel: bool = False
    """The plan marks this task as safe to run beside its siblings ([P], "can run in parallel")."""
    verify: list[str] = Field(default_factory=list)
    """Shell commands that must succeed before the task counts as done: the commands of its final
    checks (those expected to pass), as run."""
    parent: str | None = None
    """Id of the enclosing checkbox task, for nested checkboxes."""
    context: str = ""
    """The plan text that explains this task: its own item with sub-bullets."""
    sections: list[Excerpt] = Field(default_factory=list)
    """Sections of other documents the unit is given ("Provide to sub-agent: Complete "Phase 2: ..."
    → "2.1 ..." section"): their text goes into its prompt."""
    linked: list[LinkedBox] = Field(default_factory=list)
    """Boxes of other documents the unit completes: ticked in its commit (planfile.documents)."""

    @property
    def checked(self) -> bool:
        return self.state is BoxState.DONE

    @property
    def box_offsets(self) -> list[int]:
        """Every box the unit's commit ticks: its own and its steps'."""
        own = [self.box_offset] if self.box_offset is not None else []
        return own + [s.box_offset for s in self.steps if s.box_offset is not None]

    @property
    def boxless(self) -> bool:
        """No box at all: done only by a commit carrying its trailer (or the plan's ✅)."""
        return not self.box_offsets

    @property
    def final_checks(self) -> list[Check]:
        return [c for c in self.checks if c.final]

    @property
    def settled(self) -> bool:
        """Done or deliberately skipped: nothing left to run."""
        return self.state in (BoxState.DONE, BoxState.SKIPPED)


class PlanSection(BaseModel):
    """A section of the plan that speaks to every unit (its rules, conventions, standards)."""

    title: str
    line: int
    text: str


class Plan(BaseModel):
    path: Path
    title: str
    preamble: str = ""
    """The plan's text before its first section below the title (goal, architecture, stack)."""
    rules: list[PlanSection] = Field(default_factory=list)
    """Sections with rules for every unit ("Critical Rules", "Verification Standards", "Global
    Constraints", conventions, key learnings), in plan order."""
    requires: list[str] = Field(default_factory=list)
    """Other plans this one waits for, named in its front matter (GSD `depends_on: [01-01]`)."""
    documents: list[DocumentReference] = Field(default_factory=list)
    """Documents the plan names, found in the repository or not (planfile.documents)."""
    standards: list[str] = Field(default_factory=list)
    """What every unit must meet, one item each: the checklist items and bullets of its rules
    sections ("Verification Standards", "Critical Rules"), for every worker prompt and every review."""
    phases: list[Phase] = Field(default_factory=list)
    tasks: list[Task] = Field(default_factory=list)
    diagnostics: list[Diagnostic] = Field(default_factory=list)
    sha256: str = ""
    """Digest of the bytes the plan was parsed from, to detect a file changed under us."""

    def task(self, task_id: str) -> Task | None:
        return next((t for t in self.tasks if t.id == task_id), None)

    def phase(self, phase_id: str) -> Phase | None:
        return next((p for p in self.phases if p.id == phase_id), None)

    def phase_tasks(self, phase_id: str) -> list[Task]:
        return [t for t in self.tasks if t.phase == phase_id]

    def children(self, task_id: str) -> list[Task]:
        return [t for t in self.tasks if t.parent == task_id]

    @property
    def linked_documents(self) -> list[str]:
        """The other documents whose boxes its units tick: orchestrate's to write during a run."""
        return sorted({box.document for task in self.tasks for box in task.linked})

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]
