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


class Task(BaseModel):
    id: str
    """The plan's own id where it has one (T001, 2.1, 45-01), else derived from phase and text."""
    title: str
    state: BoxState
    optional: bool = False
    phase: str
    """Id of the phase the task belongs to."""
    line: int
    """1-based line of the task's checkbox."""
    box_offset: int
    """Byte offset, in the file as read, of the character between the brackets."""
    section_path: list[str] = Field(default_factory=list)
    """Headings enclosing the task, outermost first."""
    depends_on: list[str] = Field(default_factory=list)
    """Ids of every task this one waits for directly, explicit or implied by order."""
    parallel: bool = False
    """The plan marks this task as safe to run beside its siblings ([P], "can run in parallel")."""
    verify: list[str] = Field(default_factory=list)
    """Shell commands that must succeed before the task counts as done."""
    parent: str | None = None
    """Id of the enclosing checkbox task, for nested checkboxes."""
    context: str = ""
    """The plan text that explains this task: its own item with sub-bullets."""

    @property
    def checked(self) -> bool:
        return self.state is BoxState.DONE

    @property
    def settled(self) -> bool:
        """Done or deliberately skipped: nothing left to run."""
        return self.state in (BoxState.DONE, BoxState.SKIPPED)


class Plan(BaseModel):
    path: Path
    title: str
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
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]
