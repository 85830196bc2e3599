"""`orchestrate audit`: is every ticked box of a plan backed by a commit of orchestrate's and by
evidence? Read-side only: the plan, `git blame` of it, the commits' trailers and the runs' journals.

For each ticked box (whoever ticked it) the commit that last changed its line is found; it must
carry an `Orchestrate-Task` trailer naming the box's unit (or a unit of another document, which
ticks boxes here when it is done). Its evidence is the run's journal (the checks that passed on the
attempt that was committed), else the commit's `Orchestrate-Evidence` trailer (the journal is not in
the repository, so CI reads the trailer), or a human's `Orchestrate-Attested-By`. A box-less unit
is done by its commit and is audited the same way; one marked done (✅) with no commit is reported.

A ticked line edited by hand since orchestrate ticked it is reported too: the text ticked is no
longer the text that was verified. With `rerun`, the recorded checks are run again at HEAD, once
each, in the run's sandbox, as verification runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from orchestrator.config import Settings, load_settings
from orchestrator.domain.plan import BoxState, Plan, Task
from orchestrator.domain.state import RunState, TaskRecord, TaskStatus
from orchestrator.engine.evidence import ATTESTED_TRAILER, EVIDENCE_TRAILER
from orchestrator.engine.session import locate, run_sandbox
from orchestrator.engine.verification import commands_for, run_verification
from orchestrator.errors import OrchestrateError
from orchestrator.persistence.checkpoints import RunStore
from orchestrator.persistence.repo import RUN_TRAILER, TASK_TRAILER, CommitFacts, GitRepo
from orchestrator.planfile import parse_plan
from orchestrator.tools.environment import secret

AUDIT_SCHEMA = "audit.schema.json"
"""The JSON Schema of `orchestrate audit --json` (AuditReport), shipped next to this module."""

FindingKind = Literal["uncommitted", "no-trailer", "other-task", "unverified", "no-evidence", "fails-at-head"]


class Evidence(BaseModel):
    """How a done unit was judged, as far as the journal and its commit say."""

    source: Literal["journal", "trailer", "attested", "none"] = "none"
    checks: list[str] = Field(default_factory=list)
    """Commands that passed on the committed attempt (from the journal)."""
    unverified: bool = False
    """Done with nothing to judge it: ticked on the agent's word."""
    trailer: str | None = None
    """The commit's `Orchestrate-Evidence` value, as written."""
    attested_by: str | None = None
    """The commit's `Orchestrate-Attested-By` value: a human accepted it."""

    @property
    def backed(self) -> bool:
        """Something other than the worker's word judged it."""
        return self.source != "none" and not self.unverified


class AuditedBox(BaseModel):
    line: int
    """1-based line of the box (or of a box-less unit's heading) in the plan."""
    task: str
    """The unit the box belongs to."""
    kind: Literal["task", "step", "criterion", "unit"]
    """The unit's own box, one of its steps' or criteria's boxes, or a box-less unit."""
    title: str
    commit: str | None = None
    """The commit that ticked it (that last changed its line); None when not committed."""
    subject: str = ""
    ticked_by: str | None = None
    """The `Orchestrate-Task` trailer of that commit."""
    run: str | None = None
    """Its `Orchestrate-Run` trailer."""
    evidence: Evidence | None = None


class Finding(BaseModel):
    kind: FindingKind
    line: int
    task: str
    message: str
    severity: Literal["error"] = "error"


class Rerun(BaseModel):
    """A recorded check run again at HEAD."""

    command: str
    exit_code: int
    ok: bool
    output_tail: str = ""
    tasks: list[str] = Field(default_factory=list)
    """The units whose evidence it is."""


class AuditReport(BaseModel):
    plan: str
    """The plan's path relative to the repository root."""
    head: str | None = None
    boxes: list[AuditedBox] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    rerun: list[Rerun] | None = None
    """With --rerun: each recorded check's result at HEAD."""
    warnings: list[str] = Field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings


@dataclass
class _Runs:
    """The runs' journals, each folded once, by run id (None: no such journal here)."""

    store: RunStore

    def __post_init__(self) -> None:
        self.known = set(self.store.run_ids())
        self.states: dict[str, RunState | None] = {}

    def task(self, run_id: str | None, task_id: str) -> TaskRecord | None:
        if not run_id or run_id not in self.known:
            return None
        if run_id not in self.states:
            try:
                self.states[run_id] = RunState.from_records(self.store.transitions(run_id))
            except OrchestrateError:
                self.states[run_id] = None  # an unreadable journal is no evidence
        state = self.states[run_id]
        record = state.tasks.get(task_id) if state is not None else None
        if record is None or record.status is not TaskStatus.DONE:
            return None
        return record


def evidence_of(facts: CommitFacts, record: TaskRecord | None) -> Evidence:
    """What judged the unit `facts` committed: the journal's record of it when there is one, the
    commit's trailers otherwise."""
    trailer = facts.trailer(EVIDENCE_TRAILER)
    attested = facts.trailer(ATTESTED_TRAILER)
    if attested:
        return Evidence(source="attested", trailer=trailer, attested_by=attested)
    if record is not None:
        passed = [c.command for c in record.checks.values() if c.ok and not c.preexisting]
        unverified = record.unverified or not (passed or _positive(trailer))
        return Evidence(source="journal", checks=passed, unverified=unverified, trailer=trailer)
    if trailer is not None:
        return Evidence(source="trailer", trailer=trailer, unverified=not _positive(trailer))
    return Evidence(source="none")


def _positive(trailer: str | None) -> bool:
    """Whether an `Orchestrate-Evidence` value says something judged the unit: a check that ran, a
    reviewer's `met`, a human's acceptance (`checks=3 fail-first=ok review=met`)."""
    if not trailer:
        return False
    fields = dict(part.partition("=")[::2] for part in trailer.replace(",", " ").split())
    if "unverified" in fields:
        return False
    checks = fields.get("checks", "0").split("/")[0]
    if checks.isdigit() and int(checks) > 0:
        return True
    return fields.get("review") == "met" or fields.get("human", "") in ("accepted", "attested")


def _ticked_boxes(plan: Plan) -> list[tuple[int, Task, Literal["task", "step", "criterion"], str]]:
    boxes: list[tuple[int, Task, Literal["task", "step", "criterion"], str]] = []
    for task in plan.tasks:
        if task.box_offset is not None and task.state is BoxState.DONE:
            boxes.append((task.line, task, "task", task.title))
        for step in task.steps:
            if step.box_offset is not None and step.state is BoxState.DONE:
                kind: Literal["step", "criterion"] = "criterion" if step.kind.value == "criterion" else "step"
                boxes.append((step.line, task, kind, step.title))
    return sorted(boxes, key=lambda box: box[0])


def audit_plan(
    plan_path: Path,
    *,
    rerun: bool = False,
    repo: Path | None = None,
) -> AuditReport:
    """Audit every ticked box (and every box-less unit done) of the plan at `plan_path`."""
    located = locate(plan_path, repo)
    git = located.repo
    plan = parse_plan(located.plan_path)
    settings = load_settings(git.root, {})
    runs = _Runs(RunStore.for_repo(git.root, settings.checkpoints_dir))
    report = AuditReport(plan=located.plan_rel, head=git.head())
    ids = {task.id for task in plan.tasks}

    if git.is_shallow():
        report.warnings.append(
            "this clone is shallow: a box ticked before its first commit is blamed on that commit; "
            "fetch the whole history (actions/checkout with fetch-depth: 0)"
        )
    blamed = git.blame(located.plan_rel)
    by_task = {c.task_id: c.sha for c in git.trailer_commits()} if any(t.boxless for t in plan.tasks) else {}
    boxes = _ticked_boxes(plan)
    shas = [blamed[line - 1] for line, *_ in boxes if line <= len(blamed)]
    shas += [by_task[t.id] for t in plan.tasks if t.boxless and t.id in by_task]
    facts = git.commit_facts(sha for sha in shas if sha)

    judged: dict[str, tuple[int, AuditedBox]] = {}
    """Unit id -> the first of its boxes that a commit of its own (or another document's) ticked."""
    for line, task, kind, title in boxes:
        sha = blamed[line - 1] if line <= len(blamed) else None
        box = AuditedBox(line=line, task=task.id, kind=kind, title=title, commit=sha)
        report.boxes.append(box)
        if sha is None:
            report.findings.append(
                Finding(
                    kind="uncommitted",
                    line=line,
                    task=task.id,
                    message=f"{task.id}: ticked in the work tree, in no commit (by hand or another tool)",
                )
            )
            continue
        commit = facts.get(sha)
        box.subject = commit.subject if commit else ""
        ticked_by = commit.trailer(TASK_TRAILER) if commit else None
        box.ticked_by = ticked_by
        box.run = commit.trailer(RUN_TRAILER) if commit else None
        if commit is None or ticked_by is None:
            report.findings.append(
                Finding(
                    kind="no-trailer",
                    line=line,
                    task=task.id,
                    message=(
                        f"{task.id}: ticked with no commit of orchestrate's: its line was last changed by "
                        f"{sha[:10]} ({box.subject!r}), which carries no {TASK_TRAILER} trailer "
                        "(ticked, or edited since, by hand or another tool)"
                    ),
                )
            )
            continue
        if ticked_by != task.id and ticked_by in ids:
            report.findings.append(
                Finding(
                    kind="other-task",
                    line=line,
                    task=task.id,
                    message=(
                        f"{task.id}: ticked in {sha[:10]}, the commit of {ticked_by}, not by one of its own"
                    ),
                )
            )
            continue
        box.evidence = evidence_of(commit, runs.task(box.run, ticked_by))
        judged.setdefault(task.id, (line, box))

    for task in plan.tasks:
        if not task.boxless:
            continue
        sha = by_task.get(task.id)
        if sha is None:
            if task.state is BoxState.DONE:  # ✅ on its heading, no commit
                report.boxes.append(AuditedBox(line=task.line, task=task.id, kind="unit", title=task.title))
                report.findings.append(
                    Finding(
                        kind="no-trailer",
                        line=task.line,
                        task=task.id,
                        message=(
                            f"{task.id}: marked done ({task.mark or 'done'}) with no commit carrying "
                            f"'{TASK_TRAILER}: {task.id}' (by hand or another tool)"
                        ),
                    )
                )
            continue
        commit = facts[sha]
        box = AuditedBox(
            line=task.line,
            task=task.id,
            kind="unit",
            title=task.title,
            commit=sha,
            subject=commit.subject,
            ticked_by=task.id,
            run=commit.trailer(RUN_TRAILER),
        )
        box.evidence = evidence_of(commit, runs.task(box.run, task.id))
        report.boxes.append(box)
        judged.setdefault(task.id, (task.line, box))
    report.boxes.sort(key=lambda b: b.line)

    for task_id, (line, box) in judged.items():
        evidence = box.evidence
        assert evidence is not None
        by = f"{box.ticked_by}'s commit " if box.ticked_by not in (None, task_id) else ""
        where = f"{by}{box.commit[:10] if box.commit else '-'} (run {box.run or '?'})"
        if evidence.source == "none":
            message = (
                f"{task_id}: ticked by {where}, but neither the run's journal nor an "
                f"{EVIDENCE_TRAILER} trailer says how it was judged"
            )
            report.findings.append(Finding(kind="no-evidence", line=line, task=task_id, message=message))
        elif evidence.unverified:
            said = f" ({EVIDENCE_TRAILER}: {evidence.trailer})" if evidence.trailer else ""
            message = (
                f"{task_id}: ticked by {where} with no evidence: no check ran, no reviewer or human "
                f"judged it{said}"
            )
            report.findings.append(Finding(kind="unverified", line=line, task=task_id, message=message))

    if rerun:
        _rerun(report, plan, judged, git, settings, runs)
    report.findings.sort(key=lambda f: (f.line, f.kind))
    return report


def _recorded_checks(plan: Plan, task_id: str, box: AuditedBox, settings: Settings) -> list[str]:
    """The checks that judged the unit: those that passed as the journal recorded them, else (no
    journal here, as in CI) the plan's own and the project's default checks."""
    evidence = box.evidence
    if evidence is not None and evidence.source == "journal":
        return evidence.checks
    task = plan.task(task_id)
    if task is None:
        return []
    return commands_for(task.verify, settings.verify)


def _rerun(
    report: AuditReport,
    plan: Plan,
    judged: dict[str, tuple[int, AuditedBox]],
    git: GitRepo,
    settings: Settings,
    runs: _Runs,
) -> None:
    wanted: dict[str, list[tuple[str, int]]] = {}
    for task_id, (line, box) in judged.items():
        for command in _recorded_checks(plan, task_id, box, settings):
            wanted.setdefault(command, []).append((task_id, line))
    dirty = git.status()
    if dirty:
        report.warnings.append(
            f"the work tree has uncommitted changes ({len(dirty)} path(s), e.g. {dirty[0][1]}): "
            "the checks ran on them, not on HEAD alone"
        )
    sandbox = run_sandbox(settings, runs.store.root)
    if sandbox.warning:
        report.warnings.append(sandbox.warning)
    env = {name: value for name in settings.pass_env if (value := secret(name)) is not None}
    report.rerun = []
    for command, owners in wanted.items():
        result = run_verification(
            [command],
            cwd=git.root,
            timeout=settings.timeout,
            sandbox=sandbox.with_network(settings.verify_network),
            env=env,
        ).results[0]
        report.rerun.append(
            Rerun(
                command=command,
                exit_code=result.exit_code,
                ok=result.ok,
                output_tail=result.output_tail,
                tasks=[task_id for task_id, _ in owners],
            )
        )
        if result.ok:
            continue
        for task_id, line in owners:
            report.findings.append(
                Finding(
                    kind="fails-at-head",
                    line=line,
                    task=task_id,
                    message=f"{task_id}: its recorded check fails at HEAD: {result.explain()}",
                )
            )
