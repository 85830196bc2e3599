"""The documents an orchestration prompt names, read from the repository (the seed's workflow).

An orchestration prompt (`#### Sub-Agent 2A: ...` units) drives another plan. Three things tie it to
that plan, and this module reads each of them after the prompt itself is parsed:

- its required documents: a path in a code span outside the units (`/Users/x/MJ/plans/plan.md`,
  `plan.md`; a `.md`/`.txt`/`.rst` name, or an absolute path with an extension). Each is looked for
  as written (an absolute path inside the repository), else relative to the prompt's folder and to
  the repository's root, else by its trailing components (a path from the author's machine:
  `.../MJ/plans/plan.md` -> `plans/plan.md`, then `plan.md`). One found nowhere is an info: it is
  reported, and only matters when a unit needs it (then a warning says so at the unit);
- a unit's `**Provide to sub-agent:**` list: `Complete "Phase 2: ..." → "2.1 Backend Setup" section`
  names a section of one of those documents; its text (that section, not the whole document) goes
  into the unit's prompt (`Task.sections`). Paths in code spans there are the unit's files;
- a unit's `**Update:** Mark "<criterion>" in Phase 2 Success Criteria`: the box of that list whose
  text is the criterion (trailing notes such as "(testing pending)" allowed); `Mark all Phase 5
  Success Criteria`: every box of that list; `Mark all remaining Success Criteria`: every box of the
  success-criteria lists that no other unit names; `Mark security checklist items in plan`: the boxes
  of the sections the unit is given. They are ticked in the unit's commit (`Task.linked`, ticked by
  `tick_linked`). A criterion no box of the list says, or one the document says in a line that is no
  box ("9. ✅ Prompt override works correctly"), is a warning: nothing is ticked for it.

Nothing is read outside the repository: a path that resolves (links followed) outside it is not
found.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from orchestrator.domain.plan import (
    BoxState,
    Diagnostic,
    DocumentReference,
    Excerpt,
    LinkedBox,
    Plan,
    Severity,
    Task,
    TaskKind,
)
from orchestrator.errors import PlanChangedError, PlanError
from orchestrator.planfile import checks as plan_checks
from orchestrator.planfile import refs
from orchestrator.planfile.outline import Outline, build_outline
from orchestrator.planfile.parser import decode, read_plan_bytes
from orchestrator.planfile.writer import atomic_write

UNRESOLVED = "unresolved-document"
UNRESOLVED_FILE = "unresolved-file"
UNLINKED = "unlinked-criterion"
MISSING_SECTION = "missing-section"

_CODE_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_DOCUMENT_NAME = re.compile(r"^[^\s`*?<>|]+\.(?:md|mdx|markdown|txt|rst)$", re.IGNORECASE)
_ABSOLUTE_FILE = re.compile(r"^(?:/|~/)[^\s`*?<>|]+/[^\s/`*?<>|]+\.\w{1,8}$")
_FILE_PATH = re.compile(r"^[^\s`*?<>|:]*[\w-]+(?:/[^\s`*?<>|:]+)*\.\w{1,8}$|^[\w.-]+(?:/[\w.-]+)+/?$")
_LABEL = re.compile(r"^\s*(?:[-*+]\s+)?(?P<label>[A-Za-z][\w \-]{0,40}?)\s*:\s*(?P<rest>.*)$")
_LIST_ITEM = re.compile(r"^(?P<indent>\s*)(?:[-*+]|\d{1,9}[.)])\s+(?P<text>.*)$")
_QUOTED = re.compile(r"[\"“”]([^\"“”\n]+)[\"“”]")
_ARROW = re.compile(r"→|->|⟶|=>|»")
_MARK_VERB = re.compile(r"^(?:mark|tick|check(?:\s+off)?|update)\s+(?P<rest>.+?)\s*$", re.IGNORECASE)
_LIST_AFTER = re.compile(
    r"^\s*(?:as\s+(?:done|complete[d]?|checked)\s+)?(?:in|under|of|from)\s+(?P<list>.+?)\s*$", re.IGNORECASE
)
_ALL = re.compile(
    r"^all\s+(?:of\s+(?:the\s+)?)?(?P<remaining>remaining\s+)?(?:(?:items|boxes|checkboxes|criteria)\s+(?:in|of|under)\s+)?(?P<list>.+)$",
    re.IGNORECASE,
)
_THE_PLAN = re.compile(r"^(?:the\s+)?(?:(?:implementation\s+)?plan(?:'s|’s)?\b\s*)?", re.IGNORECASE)
_PLAN_ONLY = re.compile(r"^(?:the\s+)?(?:implementation\s+)?(?:plan|document)$", re.IGNORECASE)
_NOTE_AFTER = re.compile(r"^\s*(?:[(\[—–:;,-]|$)")
_NEW_FILE = re.compile(r"\(\s*new\s*\)|\bto\s+create\b|\bcreate\s*:", re.IGNORECASE)
_SUCCESS_LIST = "success criteria"
_PHASE_LIST = re.compile(r"^(?P<phase>phase\s+[\w.]+)\s+(?P<what>.+)$", re.IGNORECASE)
_DRIVES = re.compile(
    r"^\s*(?:[-*+]\s+)?[*_]*(?:provide(?:\s+to\s+(?:the\s+)?sub-?agents?)?|update)[*_]*\s*:",
    re.IGNORECASE | re.MULTILINE,
)
"""A unit that is given something or marks something: the plan is an orchestration prompt."""
_UPDATE_LABELS = ("update", "updates", "on completion", "when done")
_PROVIDE_LABELS = re.compile(
    r"^provide(?:\s+to\s+(?:the\s+)?sub-?agents?)?$|^give\s+(?:the\s+)?sub-?agent$", re.I
)


def repository_root(path: Path) -> Path:
    """The nearest folder above `path` that holds a `.git` (a folder, or a worktree's file); the
    file's own folder when there is none."""
    start = path.resolve().parent
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start


def _normal(text: str) -> str:
    """Words only, lower case: emphasis, marks and punctuation at the ends dropped."""
    text = refs.plain_labels(text).replace("`", "")
    text = "".join(ch for ch in text if ch.isalnum() or ch.isspace() or ch in "<>%.:/&+#=-()[]—–,;")
    return " ".join(text.lower().split()).strip(" .:-")


def says(title: str, criterion: str) -> bool:
    """Whether a box's text is the criterion, allowing a note after it ("(testing pending)")."""
    have, want = _normal(title), _normal(criterion)
    if not want:
        return False
    if have == want:
        return True
    return have.startswith(want) and _NOTE_AFTER.match(have[len(want) :]) is not None


@dataclass
class _Document:
    """A document the prompt names, read once: the sections and boxes its units point at."""

    path: Path
    relative: str
    data: bytes
    outline: Outline

    @functools.cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def boxes_under(self, section: int) -> list[int]:
        """Indices (in outline.tasks) of the boxes inside a section, its sub-sections included."""
        found = []
        for task in self.outline.tasks:
            if task.box_offset is not None and section in self.outline.chain(task.section):
                found.append(task.index)
        return found

    def sections_named(self, name: str, within: int | None = None) -> list[int]:
        """Sections whose heading is `name` (or starts with it), inside `within` when given; exact
        matches first."""
        want = _normal(name)
        exact: list[int] = []
        prefix: list[int] = []
        for section in self.outline.sections:
            if within is not None and within not in self.outline.chain(section.index):
                continue
            have = _normal(section.title)
            if have == want:
                exact.append(section.index)
            elif (
                want
                and (have.startswith(want + " ") or have.startswith(want + ":"))
                or (have and want.startswith(have + " "))
            ):
                prefix.append(section.index)
        return exact or prefix

    def linked(self, index: int) -> LinkedBox:
        """The box at `index` of outline.tasks, as a unit's Task.linked holds it."""
        box = self.outline.tasks[index]
        assert box.box_offset is not None
        heading = self.outline.sections[box.section].title if box.section is not None else ""
        return LinkedBox(
            document=self.relative,
            heading=heading,
            title=box.title,
            line=box.line + 1,
            box_offset=box.box_offset,
            state=box.state,
            document_sha256=self.sha256,
        )


@dataclass
class _Statement:
    """One `Mark ...` of a unit."""

    task: Task
    line: int
    words: str
    criterion: str | None = None
    list_name: str | None = None
    every: bool = False
    remaining: bool = False
    given: bool = False


@dataclass
class _Linker:
    plan: Plan
    lines: list[str]
    root: Path
    folder: Path
    diagnostics: list[Diagnostic] = field(default_factory=list)
    documents: list[_Document] = field(default_factory=list)
    to_update: list[tuple[str, int, str]] = field(default_factory=list)
    """(unit, line, path) of each file a unit is given that it does not create."""
    created: set[str] = field(default_factory=set)
    """The files the prompt's units create ("(NEW)")."""

    def note(self, severity: Severity, line: int | None, message: str, code: str) -> None:
        self.diagnostics.append(Diagnostic(severity=severity, line=line, message=message, code=code))

    # ---- the documents ------------------------------------------------------------------------

    def find_documents(self) -> None:
        mask = plan_checks.code_mask(self.lines)
        in_unit = [False] * len(self.lines)
        for task in self.plan.tasks:
            if task.kind is TaskKind.HEADING:
                start = task.line - 1
                for n in range(start, min(len(self.lines), start + len(task.context.splitlines()))):
                    in_unit[n] = True
        seen: dict[str, DocumentReference] = {}
        for n, line in enumerate(self.lines):
            if mask[n] or in_unit[n]:
                continue
            for span in _CODE_SPAN.finditer(line):
                reference = span.group(1).strip()
                if reference in seen or not (
                    _DOCUMENT_NAME.match(reference) or _ABSOLUTE_FILE.match(reference)
                ):
                    continue
                found = self.resolve(reference)
                seen[reference] = DocumentReference(
                    reference=reference, line=n + 1, path=self._relative(found) if found else None
                )
        self.plan.documents = list(seen.values())
        own = self.plan.path.resolve()
        read: set[Path] = set()
        for document in self.plan.documents:
            if document.path is None:
                self.note(
                    Severity.INFO,
                    document.line,
                    f"the document `{document.reference}` is not in the repository (looked for as "
                    f"written, beside the plan, at the root, and by its last path components)",
                    UNRESOLVED,
                )
                continue
            path = (self.root / document.path).resolve()
            if path == own or path in read or path.suffix.lower() not in (".md", ".mdx", ".markdown"):
                continue
            read.add(path)
            try:
                data = read_plan_bytes(path)
                outline = build_outline(data, decode(data, path))
            except PlanError as exc:
                self.note(
                    Severity.WARNING, document.line, f"`{document.reference}`: {exc.message}", UNRESOLVED
                )
                continue
            self.documents.append(_Document(path, document.path, data, outline))

    def resolve(self, reference: str) -> Path | None:
        """Where `reference` is in the repository, or None (see the module docstring)."""
        written = PurePosixPath(reference)
        if written.is_absolute():
            found = self._inside(Path(reference))
            if found is not None:
                return found
        elif not reference.startswith("~"):
            for base in (self.folder, self.root):
                found = self._inside(base / reference)
                if found is not None:
                    return found
        parts = [p for p in written.parts if p not in ("/", ".", "..", "~")]
        for count in range(len(parts) - 1 if written.is_absolute() else len(parts) - 1, 0, -1):
            tail = parts[-count:]
            for base in (self.folder, self.root):
                found = self._inside(base.joinpath(*tail))
                if found is not None:
                    return found
        return None

    def _inside(self, path: Path) -> Path | None:
        try:
            resolved = path.resolve()
            resolved.relative_to(self.root)
        except (OSError, ValueError):
            return None
        return resolved if resolved.is_file() else None

    def _relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.root).as_posix()

    # ---- what each unit is given and completes --------------------------------------------------

    def link_units(self) -> None:
        statements: list[_Statement] = []
        for task in self.plan.tasks:
            if task.kind is not TaskKind.HEADING:
                continue
            provide, updates = self._unit_labels(task)
            for line, item in provide:
                self._provide(task, line, item)
            for line, words in updates:
                found = _statements(task, line, words)
                if not found:
                    self.note(
                        Severity.WARNING,
                        line,
                        f"{task.id}: cannot tell which box `{words}` names; nothing is ticked for it "
                        '(write Mark "<criterion>" in <list heading>)',
                        UNLINKED,
                    )
                statements.extend(found)
        for unit, line, path in self.to_update:
            if path not in self.created and self._inside(self.root / path) is None:
                self.note(
                    Severity.INFO,
                    line,
                    f"{unit}: `{path}`, given to it to read or update, is not in the repository "
                    "(and no unit of the plan creates it)",
                    UNRESOLVED_FILE,
                )
        claimed: set[tuple[str, int]] = set()
        quiet = _Linker(self.plan, self.lines, self.root, self.folder, [], self.documents)
        for statement in statements:
            if not statement.remaining:  # (said once, below)
                for box in quiet._boxes(statement):
                    claimed.add((box.document, box.box_offset))
        for statement in statements:
            boxes = self._boxes(statement, claimed if statement.remaining else None)
            known = {(b.document, b.box_offset) for b in statement.task.linked}
            statement.task.linked.extend(b for b in boxes if (b.document, b.box_offset) not in known)

    def _unit_labels(self, task: Task) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        """The unit's `Provide to sub-agent:` items (line, text, nested items joined in) and its
        `Update:` statements (line, words)."""
        unit_lines = task.context.splitlines()
        mask = plan_checks.code_mask(unit_lines)
        provide: list[tuple[int, str]] = []
        updates: list[tuple[int, str]] = []
        index = 1
        while index < len(unit_lines):
            line = unit_lines[index]
            label = _LABEL.match(refs.plain_labels(line)) if not mask[index] else None
            if label is None:
                index += 1
                continue
            name = label.group("label").strip().lower()
            rest = label.group("rest").strip()
            if name in _UPDATE_LABELS and rest:
                for words in re.split(r";\s*|\.\s+(?=mark\b)", rest, flags=re.IGNORECASE):
                    if words.strip(" ."):
                        updates.append((task.line + index, words.strip(" .")))
            if _PROVIDE_LABELS.match(name) and not _LIST_ITEM.match(line):
                if rest:
                    provide.append((task.line + index, rest))
                index += 1
                while index < len(unit_lines):
                    item = _LIST_ITEM.match(unit_lines[index])
                    if mask[index] or not unit_lines[index].strip():
                        following = index + 1 < len(unit_lines) and _LIST_ITEM.match(unit_lines[index + 1])
                        if not following:
                            break
                        index += 1
                        continue
                    if item is None:
                        break
                    provide.append((task.line + index, item.group("text")))
                    index += 1
                continue
            index += 1
        return provide, updates

    def _provide(self, task: Task, line: int, item: str) -> None:
        for span in _CODE_SPAN.finditer(item):
            path = span.group(1).strip()
            if not _FILE_PATH.match(path):
                continue
            if path.startswith(("/", "~")):  # from the author's machine: only where it is found here
                here = self.resolve(path)
                if here is None:
                    continue
                path = self._relative(here)
            if path not in task.files:
                task.files.append(path)
            if _NEW_FILE.search(item):
                self.created.add(path)
            else:
                self.to_update.append((task.id, line, path))
        names = _QUOTED.findall(item)
        if not names or not (_ARROW.search(item) or re.search(r"\bsections?\b", item, re.IGNORECASE)):
            return
        wanted = " → ".join(f'"{n}"' for n in names)
        for document in self.documents:
            found = _section(document, names)
            if found is not None:
                section = document.outline.sections[found]
                if not any(
                    e.document == document.relative and e.line == section.line + 1 for e in task.sections
                ):
                    task.sections.append(
                        Excerpt(
                            document=document.relative,
                            heading=section.title,
                            line=section.line + 1,
                            text=document.outline.section_text(found),
                        )
                    )
                return
        self.note(
            Severity.WARNING, line, f"{task.id}: the section {wanted} is {self._where()}", MISSING_SECTION
        )

    def _where(self) -> str:
        if self.documents:
            return "in none of the documents found (" + ", ".join(d.relative for d in self.documents) + ")"
        missing = [d.reference for d in self.plan.documents if d.path is None]
        if missing:
            return "in no document found: not in the repository: " + ", ".join(f"`{m}`" for m in missing)
        return "in no document: the plan names none (list it in a code span, `plans/plan.md`)"

    def _boxes(self, statement: _Statement, claimed: set[tuple[str, int]] | None = None) -> list[LinkedBox]:
        """The boxes a `Mark ...` statement names; a warning (and none) when it names none."""
        task = statement.task
        if statement.given:
            found = [
                document.linked(i)
                for excerpt in task.sections
                for document in self.documents
                if document.relative == excerpt.document
                for section in document.sections_named(excerpt.heading)[:1]
                for i in document.boxes_under(section)
            ]
            if not found:
                self._unlinked(statement, "the sections it is given hold no box")
            return found
        assert statement.list_name is not None or statement.criterion is not None
        lists = self._lists(statement.list_name) if statement.list_name else []
        if statement.list_name and not lists:
            self._unlinked(statement, f"no heading says '{statement.list_name}' {self._where_lists()}")
            return []
        if statement.every:
            found = [document.linked(i) for document, section in lists for i in document.boxes_under(section)]
            if claimed is not None:  # "all remaining": open, and named by no other unit
                found = [
                    b
                    for b in found
                    if (b.document, b.box_offset) not in claimed and b.state is not BoxState.DONE
                ]
            if not found and claimed is None:
                self._unlinked(statement, "that list holds no box")
            return found
        criterion = statement.criterion or ""
        scopes: list[tuple[_Document, int | None]] = [*lists] or [(d, None) for d in self.documents]
        for document, section in scopes:
            for box in document.outline.tasks:
                if box.box_offset is None or not says(box.title, criterion):
                    continue
                if section is None or section in document.outline.chain(box.section):
                    return [document.linked(box.index)]
        self._unlinked(statement, self._said_elsewhere(criterion, statement.list_name))
        return []

    def _lists(self, name: str) -> list[tuple[_Document, int]]:
        if _normal(name) in (_SUCCESS_LIST, "all success criteria"):
            return [
                (document, section.index)
                for document in self.documents
                for section in document.outline.sections
                if _SUCCESS_LIST in _normal(section.title)
            ]
        found: list[tuple[_Document, int]] = []
        phase = _PHASE_LIST.match(name)
        for document in self.documents:
            named = document.sections_named(name)[:1]
            if not named and phase is not None:
                # "Phase 2 Success Criteria" where the plan has "### Success Criteria" under
                # "## Phase 2: ...".
                outer = document.sections_named(phase.group("phase"))[:1]
                named = [
                    s.index
                    for s in document.outline.sections
                    if outer
                    and s.index != outer[0]
                    and outer[0] in document.outline.chain(s.index)
                    and _normal(phase.group("what")) in _normal(s.title)
                ][:1]
            found.extend((document, index) for index in named)
        return found

    def _where_lists(self) -> str:
        return "in " + ", ".join(d.relative for d in self.documents) if self.documents else self._where()

    def _said_elsewhere(self, criterion: str, list_name: str | None) -> str:
        """Why no box was found: where the document says the criterion otherwise."""
        where = (
            f"'{list_name}'" if list_name else ", ".join(d.relative for d in self.documents) or "no document"
        )
        for document in self.documents:
            for box in document.outline.tasks:
                if box.box_offset is not None and says(box.title, criterion):
                    at = f"{document.relative}:{box.line + 1}"
                    return f"no box of {where} says it; {at} does, under another heading"
            lines = document.outline.lines
            for n, text in enumerate(lines):
                if document.outline.in_code[n]:
                    continue
                item = _LIST_ITEM.match(text)
                words = item.group("text") if item else text
                if _normal(criterion) and _normal(criterion) in _normal(words):
                    return (
                        f"no box of {where} says it; {document.relative}:{n + 1} says "
                        f"'{text.strip()}', which is not a box"
                    )
        return f"no box of {where} says it"

    def _unlinked(self, statement: _Statement, why: str) -> None:
        self.note(
            Severity.WARNING,
            statement.line,
            f"{statement.task.id}: `{statement.words}`: {why}; nothing is ticked for it",
            UNLINKED,
        )


def _statements(task: Task, line: int, words: str) -> list[_Statement]:
    """What one `Update:` says to tick: `Mark "A" (and "B") in <list>`, `Mark all [remaining]
    <list>`, `Mark <words> in plan` (the boxes of the sections the unit is given); none when it
    says none of these."""
    plain = refs.plain_labels(words).strip()
    verb = _MARK_VERB.match(plain)
    if verb is None:
        return []
    rest = verb.group("rest")
    quoted = list(_QUOTED.finditer(rest))
    if quoted:
        after = _LIST_AFTER.match(rest[quoted[-1].end() :])
        name = _list_name(after.group("list")) if after else None
        return [_Statement(task, line, plain, criterion=q.group(1), list_name=name) for q in quoted]
    every = _ALL.match(rest)
    if every:
        name = _list_name(every.group("list"))
        if name is None:
            return []
        return [
            _Statement(
                task, line, plain, list_name=name, every=True, remaining=bool(every.group("remaining"))
            )
        ]
    head, found, where = rest.rpartition(" in ")
    if found and head and _PLAN_ONLY.match(where.strip()):
        return [_Statement(task, line, plain, given=True)]
    return []


def _list_name(words: str) -> str | None:
    """ "the plan's Phase 2 Success Criteria section" -> "Phase 2 Success Criteria" (so too "the
    Success Criteria of Phase 2", "Phase 2's Success Criteria"); None for "plan" alone."""
    words = re.sub(r"\s+(?:in|of)\s+(?:the\s+)?(?:implementation\s+)?plan$", "", words.strip(), flags=re.I)
    if _PLAN_ONLY.match(words):
        return None
    words = _THE_PLAN.sub("", words, count=1) if not words.lower().startswith("plans") else words
    words = re.sub(r"\s+(?:section|list|checklist|checkboxes|boxes)$", "", words, flags=re.IGNORECASE)
    turned = re.match(
        r"^(?:the\s+)?(?P<what>.+?)\s+(?:of|for)\s+(?P<phase>phase\s+\S+)$", words, re.IGNORECASE
    )
    if turned is None:
        turned = re.match(r"^(?P<phase>phase\s+\S+?)(?:'s|’s)\s+(?P<what>.+)$", words, re.IGNORECASE)
    if turned is not None:
        words = f"{turned.group('phase')} {turned.group('what')}"
    return words.strip() or None


def _section(document: _Document, names: list[str]) -> int | None:
    """The section the names lead to, outermost first ("Phase 2: ..." then "2.1 ..."); the last
    name alone when the outer ones are not headings of the document."""
    within: int | None = None
    for name in names:
        found = document.sections_named(name, within)
        if not found:
            if within is None:
                continue
            return None
        within = found[0]
    if within is None or (
        len(names) > 1 and _normal(document.outline.sections[within].title).find(_normal(names[-1])[:12]) < 0
    ):
        found = document.sections_named(names[-1])
        return found[0] if found else within
    return within


def link(plan: Plan, text: str, path: Path) -> Plan:
    """An orchestration prompt (a unit of it has a `Provide to sub-agent:` or `Update:` label) with
    the documents it names found, its units' sections and linked boxes filled in,
    and a diagnostic for each reference that leads nowhere. Reads files; returns `plan` itself."""
    if not any(t.kind is TaskKind.HEADING and _DRIVES.search(t.context) for t in plan.tasks):
        return plan  # not an orchestration prompt: its code spans are files, not documents to read
    root = repository_root(path)
    linker = _Linker(plan, text.split("\n"), root, path.resolve().parent)
    linker.find_documents()
    linker.link_units()
    if linker.diagnostics:
        plan.diagnostics = sorted(
            plan.diagnostics + linker.diagnostics, key=lambda d: (d.line is not None, d.line or 0, d.severity)
        )
    return plan


# ---- ticking linked boxes --------------------------------------------------------------------


def tick_linked(root: Path, boxes: list[LinkedBox], done: bool) -> list[str]:
    """Set each linked box (one byte, each document written once, atomically). A document that is
    still the one read has its boxes at the offsets known; one that changed since is read again and
    each box found by its heading and text (PlanChangedError when it is gone). Returns the
    documents written."""
    written: list[str] = []
    by_document: dict[str, list[LinkedBox]] = {}
    for box in boxes:
        by_document.setdefault(box.document, []).append(box)
    for relative, group in by_document.items():
        path = root / relative
        data = read_plan_bytes(path)
        offsets = _offsets(data, path, group)
        updated = data
        for offset, box in zip(offsets, group, strict=True):
            updated = _set(updated, offset, done, path, box)
        if updated != data:
            atomic_write(path, updated)
            written.append(relative)
    return written


def boxes_now(root: Path, boxes: list[LinkedBox], data: bytes | None = None) -> list[BoxState | None]:
    """The state of each linked box in its document as it is now (or as `data` has it, for boxes
    of one document): None for a box not found."""
    states: list[BoxState | None] = []
    for box in boxes:
        content = data if data is not None else read_plan_bytes(root / box.document)
        try:
            offset = _offsets(content, root / box.document, [box])[0]
        except PlanChangedError:
            states.append(None)
            continue
        character = content[offset : offset + 1]
        states.append(BoxState.DONE if character in (b"x", b"X") else BoxState.OPEN)
    return states


def _offsets(data: bytes, path: Path, boxes: list[LinkedBox]) -> list[int]:
    if all(box.document_sha256 == hashlib.sha256(data).hexdigest() for box in boxes):
        return [box.box_offset for box in boxes]
    outline = build_outline(data, decode(data, path))
    found: list[int] = []
    for box in boxes:
        matches = [
            raw.box_offset
            for raw in outline.tasks
            if raw.box_offset is not None
            and _normal(raw.title) == _normal(box.title)
            and (
                raw.section is not None
                and _normal(outline.sections[raw.section].title) == _normal(box.heading)
            )
        ]
        if not matches:
            raise PlanChangedError(
                f"the box '{box.title}' under '{box.heading}' is no longer in {box.document}; "
                "check it and run again",
                path=path,
            )
        found.append(matches[0])
    return found


def _set(data: bytes, offset: int, done: bool, path: Path, box: LinkedBox) -> bytes:
    if (
        not (0 < offset < len(data) - 1)
        or data[offset - 1 : offset] != b"["
        or data[offset + 1 : offset + 2] != b"]"
    ):
        raise PlanChangedError(
            f"the box '{box.title}' is no longer at byte {offset}", path=path, line=box.line
        )
    current = data[offset : offset + 1]
    wanted = (current if current in (b"x", b"X") else b"x") if done else b" "
    return data if wanted == current else data[:offset] + wanted + data[offset + 1 :]
