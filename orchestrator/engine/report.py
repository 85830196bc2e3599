"""The run report (`orchestrate report`, and report.md / report.json in the run's directory when a
run ends, however it ends): what the run did, read back from its journal and its commits.

Its sections follow the seed orchestrator prompt's final report ("When Implementation Completes":
files created, files modified, build status, test and audit results, remaining manual steps), then
what remains and each task in detail: its files (from its commit), its checks with their results,
how it was judged (review verdicts, fail-first, a person's acceptance, when the run has them), its
attempts and what it cost. report.schema.json, next to this module, is the JSON's schema.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from orchestrator.domain import transitions as t
from orchestrator.domain.plan import Plan
from orchestrator.domain.review import CheckedCriterion, CheckedEvidence
from orchestrator.domain.state import RunState, TaskRecord, TaskStatus
from orchestrator.engine.evidence import EVIDENCE_TRAILER
from orchestrator.engine.unit_history import done_by_commits
from orchestrator.errors import OrchestrateError
from orchestrator.persistence.repo import GitRepo
from orchestrator.planfile import parse_plan

REPORT_SCHEMA = "report.schema.json"
"""The JSON Schema of RunReport, shipped next to this module."""
REPORT_VERSION = 1
MARKDOWN_NAME = "report.md"
JSON_NAME = "report.json"
_TAIL_LINES = 12


class FileChange(BaseModel):
    path: str
    change: Literal["created", "modified", "deleted"]
    tasks: list[str] = Field(default_factory=list)
    """The tasks whose commits made the change."""


class CheckResult(BaseModel):
    command: str
    exit_code: int
    ok: bool
    duration: float = 0.0
    preexisting: bool = False
    """It failed as it already did before the run's first task: not blamed on the task."""
    output_tail: str = ""
    """The last lines of its output, kept for a failure only."""
    task: str | None = None
    """Build status: the task after whose attempt it last ran."""


class AttemptSummary(BaseModel):
    number: int
    agent_status: str | None = None
    failure: str | None = None
    tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True
    checks: list[CheckResult] = Field(default_factory=list)


class FailFirst(BaseModel):
    """The tests the task's attempt added or changed, run at the base commit: they must fail there."""

    result: str
    """ok (they failed at base), passed-at-base (no evidence), none (no test changed), off."""
    tests: list[str] = Field(default_factory=list)
    weakened: list[str] = Field(default_factory=list)
    """Existing tests the diff deleted, skipped or loosened."""
    note: str = ""


class ReviewRound(BaseModel):
    """One round of the independent reviewer on an attempt: its verdict per criterion, with the
    evidence it gave and whether that held when orchestrate checked it."""

    attempt: int
    round: int
    model: str = ""
    outcome: str
    """met, not_met (the worker tried again with the reasons), needs_human, not_held (its evidence
    did not hold, or it gave no verdict)."""
    criteria: list[CheckedCriterion] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)


class TaskReport(BaseModel):
    id: str
    title: str = ""
    phase: str = ""
    line: int | None = None
    """1-based line of the task in the plan."""
    status: str
    """done, failed, skipped, needs_human, pending, running, ... (the journal's task status)."""
    unverified: bool = False
    """Done with no check to judge it: ticked on the agent's word."""
    commit: str | None = None
    files: list[FileChange] = Field(default_factory=list)
    """What its commit created, modified and deleted (the plan's ticks aside)."""
    checks: list[CheckResult] = Field(default_factory=list)
    """The checks of its last attempt, with their results."""
    judged: list[str] = Field(default_factory=list)
    """How it was judged, one line each: its checks, fail-first, each review verdict with its
    evidence, a person's acceptance; the commit's Orchestrate-Evidence trailer where there is one."""
    evidence_trailer: str | None = None
    fail_first: FailFirst | None = None
    reviews: list[ReviewRound] = Field(default_factory=list)
    """Every review round of every attempt, in order."""
    not_reviewed: str = ""
    """Why the last attempt's criteria went unreviewed (no reviewer could judge them), if so."""
    review_tokens: int = 0
    """Of `tokens`, the reviewer's."""
    review_cost_usd: float = 0.0
    attempts: list[AttemptSummary] = Field(default_factory=list)
    reason: str = ""
    """Why it failed, was skipped or waits for a person."""
    tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True
    """False when what some of its calls cost is unknown (cost_usd is then the known part)."""


class Waiting(BaseModel):
    task: str
    title: str = ""
    reason: str = ""
    how: str = ""
    """What to type."""


class Remaining(BaseModel):
    task: str
    title: str = ""
    line: int | None = None
    status: str
    reason: str = ""


class BuildStatus(BaseModel):
    status: Literal["passing", "failing", "not checked"]
    checks: list[CheckResult] = Field(default_factory=list)
    """Each of the project's default checks (`verify`) as it last ran in the run."""
    already_failing: dict[str, str] = Field(default_factory=dict)
    """Default checks that failed before the run's first task (command -> how)."""


class TestResults(BaseModel):
    ran: int = 0
    """Checks run on the tasks' last attempts."""
    passed: int = 0
    failed: list[CheckResult] = Field(default_factory=list)


class AuditResult(BaseModel):
    clean: bool
    boxes: int = 0
    findings: list[str] = Field(default_factory=list)
    """`file:line: message`, as `orchestrate audit` prints them."""
    error: str = ""
    """Why the audit could not run (the plan is gone, say)."""


class RunReport(BaseModel):
    version: int = REPORT_VERSION
    run_id: str
    plan: str
    """The plan's path relative to the repository root."""
    plan_title: str = ""
    branch: str = ""
    agent: str = ""
    status: str
    """complete, failed, stopped, waiting (for a person), or running (killed before it could say)."""
    message: str = ""
    resume_hint: str = ""
    started_at: float = 0.0
    ended_at: float = 0.0
    base: str | None = None
    head: str | None = None
    files_created: list[FileChange] = Field(default_factory=list)
    files_modified: list[FileChange] = Field(default_factory=list)
    files_deleted: list[FileChange] = Field(default_factory=list)
    build: BuildStatus
    tests: TestResults
    audit: AuditResult | None = None
    needs_human: list[Waiting] = Field(default_factory=list)
    """Remaining manual steps: tasks that wait for a person."""
    remaining: list[Remaining] = Field(default_factory=list)
    """Tasks of the run's selection not done (failed, skipped, waiting, not reached)."""
    manual_open: list[Remaining] = Field(default_factory=list)
    """Units the plan marks as a person's (manual, UAT, ...) still open and not waiting yet."""
    plan_open: int = 0
    """Tasks of the whole plan still open (a run of part of it leaves the rest)."""
    tasks: list[TaskReport] = Field(default_factory=list)
    tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True


def _check(record: Any, task: str | None = None) -> CheckResult:
    tail = "" if record.ok else "\n".join(record.output_tail.strip().splitlines()[-_TAIL_LINES:])
    return CheckResult(
        command=record.command,
        exit_code=record.exit_code,
        ok=record.ok,
        duration=round(record.duration, 3),
        preexisting=record.preexisting,
        output_tail=tail,
        task=task,
    )


def _judged(record: TaskRecord, checks: list[CheckResult], trailer: str | None) -> list[str]:
    lines: list[str] = []
    passed = [c for c in checks if c.ok]
    if passed:
        lines.append(f"checks: {len(passed)} passed ({', '.join(f'`{c.command}`' for c in passed)})")
    elif record.status is TaskStatus.DONE and record.unverified:
        lines.append("no check ran: ticked on the agent's word (unverified)")
    lines.extend(_later_evidence(record))
    if record.attested_by:
        note = f": {record.note}" if record.note else ""
        lines.append(f"accepted by {record.attested_by}{note}")
    if trailer:
        lines.append(f"commit trailer Orchestrate-Evidence: {trailer}")
    return lines


def _later_evidence(record: TaskRecord) -> list[str]:
    """Fail-first's finding and the review verdicts, where the run's record of the task has them."""
    lines: list[str] = []
    if record.fail_first is not None:
        lines.append(f"fail-first: {record.fail_first}")
    last = record.current()
    if last is not None and last.reviews:
        final = last.reviews[-1]
        verdicts = ", ".join(f"{c.verdict} {c.criterion!r}" for c in final.criteria)
        lines.append(f"review: {final.outcome} (round {final.round}{': ' + verdicts if verdicts else ''})")
    elif last is not None and last.not_reviewed:
        lines.append(f"review: none ({last.not_reviewed})")
    return lines


def _fail_first(record: TaskRecord) -> FailFirst | None:
    found = record.fail_first
    if found is None:
        return None
    return FailFirst(result=found.result, tests=found.tests, weakened=found.weakened, note=found.note)


def build_report(
    state: RunState,
    transitions: Sequence[t.Transition],
    git: GitRepo,
    plan: Plan | None,
    *,
    audit: AuditResult | None = None,
) -> RunReport:
    """The report of the run `state` folds (from `transitions`, its journal), its commits read in
    `git`, its tasks' titles and lines from `plan` (None: the plan is gone)."""
    known = {task.id: task for task in plan.tasks} if plan is not None else {}
    done = [r for r in state.tasks.values() if r.status is TaskStatus.DONE and r.commit]
    commits = [r.commit for r in done if r.commit]
    changed = git.files_changed(commits)
    trailers = git.commit_facts(commits)
    files: dict[str, FileChange] = {}
    tasks: list[TaskReport] = []
    selection = [str(i) for i in state.selection.get("ids", [])] or list(state.order)
    ordered = [i for i in selection if i in state.tasks] + [i for i in state.order if i not in selection]
    for task_id in ordered:
        record = state.tasks[task_id]
        task = known.get(task_id)
        last = record.current()
        # Each check as it last ran (a re-check on the run's new head included), else as the last
        # attempt ran them.
        latest = list(record.checks.values()) or (last.verifications if last is not None else [])
        checks = [_check(v) for v in latest]
        own: list[FileChange] = []
        facts = trailers.get(record.commit or "")
        trailer = facts.trailer(EVIDENCE_TRAILER) if facts is not None else None
        for letter, path in changed.get(record.commit or "", []):
            if path == state.plan:
                continue  # every commit ticks the plan
            kind: Literal["created", "modified", "deleted"] = (
                "created" if letter == "A" else "deleted" if letter == "D" else "modified"
            )
            own.append(FileChange(path=path, change=kind))
            seen = files.get(path)
            if seen is None:
                files[path] = FileChange(path=path, change=kind, tasks=[task_id])
            else:
                seen.tasks.append(task_id)
                if kind == "deleted" or seen.change == "deleted":
                    seen.change = kind
        tasks.append(
            TaskReport(
                id=task_id,
                title=task.title if task is not None else "",
                phase=task.phase if task is not None else "",
                line=task.line if task is not None else None,
                status=record.status.value,
                unverified=record.status is TaskStatus.DONE and record.unverified,
                commit=record.commit,
                files=own,
                checks=checks,
                judged=_judged(record, checks, trailer),
                evidence_trailer=trailer,
                fail_first=_fail_first(record),
                reviews=[
                    ReviewRound(
                        attempt=a.number,
                        round=r.round,
                        model=r.model,
                        outcome=r.outcome,
                        criteria=r.criteria,
                        problems=r.problems,
                    )
                    for a in record.attempts
                    for r in a.reviews
                ],
                not_reviewed=last.not_reviewed if last is not None else "",
                review_tokens=record.review_usage.total_tokens,
                review_cost_usd=round(record.review_usage.cost_usd, 6),
                attempts=[
                    AttemptSummary(
                        number=a.number,
                        agent_status=a.agent_status,
                        failure=a.failure,
                        tokens=a.usage.total_tokens,
                        cost_usd=round(a.usage.cost_usd, 6),
                        cost_known=a.usage.cost_known,
                        checks=[_check(v) for v in a.verifications],
                    )
                    for a in record.attempts
                ],
                reason=record.reason,
                tokens=record.usage.total_tokens,
                cost_usd=round(record.usage.cost_usd, 6),
                cost_known=record.usage.cost_known,
            )
        )
    if plan is not None and state.plan:
        files.setdefault(state.plan, FileChange(path=state.plan, change="modified"))
        files[state.plan].tasks = [r.id for r in done]
        if not done:
            del files[state.plan]
    ran = [c for task in tasks for c in task.checks]
    waiting = [
        Waiting(
            task=task.id,
            title=task.title,
            reason=task.reason,
            how=(
                f"orchestrate accept {state.plan} {task.id} [--note TEXT], or "
                f"orchestrate reject {state.plan} {task.id} --note TEXT; "
                f"then orchestrate resume {state.run_id}"
            ),
        )
        for task in tasks
        if task.status == TaskStatus.NEEDS_HUMAN.value
    ]
    ended = next((x for x in reversed(transitions) if isinstance(x, t.RunEnded)), None)
    return RunReport(
        run_id=state.run_id,
        plan=state.plan,
        plan_title=plan.title if plan is not None else "",
        branch=state.branch,
        agent=state.agent,
        status=state.status.value,
        message=state.message,
        resume_hint=ended.resume_hint if ended is not None else "",
        started_at=state.started_at,
        ended_at=state.updated_at,
        base=state.base,
        head=git.head(),
        files_created=sorted((f for f in files.values() if f.change == "created"), key=lambda f: f.path),
        files_modified=sorted((f for f in files.values() if f.change == "modified"), key=lambda f: f.path),
        files_deleted=sorted((f for f in files.values() if f.change == "deleted"), key=lambda f: f.path),
        build=_build_status(state, transitions),
        tests=TestResults(
            ran=len(ran), passed=sum(1 for c in ran if c.ok), failed=[c for c in ran if not c.ok]
        ),
        audit=audit,
        needs_human=waiting,
        remaining=_remaining(tasks, selection, known),
        manual_open=[
            Remaining(task=task.id, title=task.title, line=task.line, status="open")
            for task in (plan.tasks if plan is not None else [])
            if task.manual and not task.settled and task.id not in {w.task for w in waiting}
        ],
        plan_open=sum(1 for task in plan.tasks if not task.settled) if plan is not None else 0,
        tasks=tasks,
        tokens=state.usage.total_tokens,
        cost_usd=round(state.usage.cost_usd, 6),
        cost_known=state.usage.cost_known,
    )


def _build_status(state: RunState, transitions: Sequence[t.Transition]) -> BuildStatus:
    """The project's default checks (`verify`) as each last ran in the run."""
    defaults = [str(c) for c in state.settings.get("verify") or []]
    last: dict[str, CheckResult] = {}
    for transition in transitions:
        if isinstance(transition, t.CheckRan) and transition.command in defaults:
            last[transition.command] = _check(transition, transition.task)
    checks = [last[c] for c in defaults if c in last]
    if not defaults or not checks:
        status: Literal["passing", "failing", "not checked"] = "not checked"
    else:
        status = "passing" if all(c.ok for c in checks) and len(checks) == len(defaults) else "failing"
        if all(c.ok for c in checks) and len(checks) < len(defaults):
            status = "not checked"
    return BuildStatus(status=status, checks=checks, already_failing=dict(state.baseline or {}))


def _remaining(tasks: list[TaskReport], selection: list[str], known: dict[str, Any]) -> list[Remaining]:
    by_id = {task.id: task for task in tasks}
    remaining: list[Remaining] = []
    for task_id in selection:
        task = by_id.get(task_id)
        if task is not None and task.status == TaskStatus.DONE.value:
            continue
        planned = known.get(task_id)
        if planned is not None and planned.settled and task is None:
            continue  # done before this run
        remaining.append(
            Remaining(
                task=task_id,
                title=task.title if task is not None else (planned.title if planned is not None else ""),
                line=planned.line if planned is not None else None,
                status=task.status if task is not None else "not started",
                reason=task.reason.splitlines()[0] if task is not None and task.reason else "",
            )
        )
    return remaining


def plan_of(git: GitRepo, state: RunState) -> Plan | None:
    """The run's plan as the work tree has it now (None when it is gone or unreadable)."""
    if not state.plan:
        return None
    try:
        return done_by_commits(parse_plan(git.root / state.plan), git)
    except (OrchestrateError, OSError):
        return None


# -- markdown ------------------------------------------------------------------------------------


def _cost(value: float, known: bool = True) -> str:
    shown = f"${value:.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"
    if known:
        return shown
    return f"{shown} + unknown" if value else "cost unknown"


def _files(changes: list[FileChange]) -> list[str]:
    if not changes:
        return ["- none"]
    return [f"- `{f.path}`" + (f" ({', '.join(f.tasks)})" if f.tasks else "") for f in changes]


def _check_line(check: CheckResult) -> str:
    result = "passed" if check.ok else f"FAILED (exit {check.exit_code})"
    before = "; failed before the run began too, not blamed on the task" if check.preexisting else ""
    return f"`{check.command}`: {result}{before}"


def _evidence_line(evidence: CheckedEvidence) -> str:
    """One evidence item of a verdict, and whether it held when orchestrate checked it."""
    if evidence.command is not None:
        what = f"ran `{evidence.command}`: exit {evidence.exit_code}"
    else:
        where = f"{evidence.path}:{evidence.start_line}-{evidence.end_line}"
        quoted = " ".join((evidence.quote or "").split())
        what = f"quoted `{where}`: {quoted[:120]!r}"
    held = "held" if evidence.held else "did NOT hold"
    return f"{what} ({held}{': ' + evidence.why if evidence.why and not evidence.held else ''})"


def render_markdown(report: RunReport) -> str:
    """The report as markdown, in the seed prompt's order, then what remains and every task."""
    took = max(report.ended_at - report.started_at, 0.0)
    out = [
        f"# Run report {report.run_id}",
        "",
        f"Plan `{report.plan}`"
        + (f" ({report.plan_title})" if report.plan_title else "")
        + f", branch `{report.branch}`, agent {report.agent}.",
        f"Status: **{report.status}**" + (f": {report.message}" if report.message else ""),
        f"{len([x for x in report.tasks if x.status == 'done'])} task(s) done of {len(report.tasks)} "
        f"touched; {report.tokens} tokens, {_cost(report.cost_usd, report.cost_known)}; {took:.0f}s.",
    ]
    if report.resume_hint and report.status != "complete":
        out.append(f"Continue with `{report.resume_hint}`.")
    out += ["", "## Files created", *_files(report.files_created)]
    out += ["", "## Files modified", *_files(report.files_modified)]
    if report.files_deleted:
        out += ["", "## Files deleted", *_files(report.files_deleted)]
    out += ["", "## Build status", f"**{report.build.status}**"]
    out += [f"- {_check_line(c)}" + (f" (after {c.task})" if c.task else "") for c in report.build.checks]
    already = report.build.already_failing.items()
    out += [f"- `{command}` already failed before the first task ({how})" for command, how in already]
    if report.build.status == "not checked" and not report.build.checks:
        out.append("- no default checks (`verify` in orchestrate.toml; `orchestrate init` finds them)")
    out += ["", "## Test and audit results"]
    tests = report.tests
    out.append(f"- checks on the tasks' last attempts: {tests.passed} of {tests.ran} passed")
    out += [f"  - {c.command!r} FAILED (exit {c.exit_code})" for c in tests.failed if not c.preexisting]
    audit = report.audit
    if audit is not None:
        if audit.error:
            out.append(f"- audit: not run ({audit.error})")
        elif audit.clean:
            out.append(f"- audit: clean ({audit.boxes} ticked box(es), each from a commit with evidence)")
        else:
            out.append(f"- audit: {len(audit.findings)} finding(s) (`orchestrate audit {report.plan}`)")
            out += [f"  - {finding}" for finding in audit.findings[:20]]
    out += ["", "## Remaining manual steps"]
    if report.needs_human:
        for waiting in report.needs_human:
            out.append(f"- {waiting.task} {waiting.title}: waits for a person: {waiting.reason or 'manual'}")
            out.append(f"  - {waiting.how}")
    for manual in report.manual_open:
        out.append(f"- {manual.task} (line {manual.line}) {manual.title}: a person's step, not reached yet")
    if not report.needs_human and not report.manual_open:
        out.append("- none: no task waits for a person")
    out += ["", "## What remains"]
    if report.remaining:
        for item in report.remaining:
            where = f" (line {item.line})" if item.line else ""
            why = f": {item.reason}" if item.reason else ""
            out.append(f"- {item.task}{where} {item.title}: {item.status}{why}")
    else:
        out.append("- nothing: every task of the run is done")
    if report.plan_open:
        out.append(
            f"- the plan has {report.plan_open} open task(s) in all (`orchestrate next {report.plan}`)"
        )
    else:
        out.append("- the plan has no open task")
    out += ["", "## Tasks"]
    for task in report.tasks:
        commit = f", commit {task.commit[:10]}" if task.commit else ""
        flag = " (unverified)" if task.unverified else ""
        out += [
            "",
            f"### {task.id} {task.title}".rstrip(),
            f"{task.status}{flag}{commit}; {len(task.attempts)} attempt(s), {task.tokens} tokens"
            + (f" ({task.review_tokens} the reviewer's)" if task.review_tokens else "")
            + ", "
            f"{_cost(task.cost_usd, task.cost_known)}",
        ]
        if task.reason:
            out.append(f"- reason: {task.reason.splitlines()[0]}")
        if task.files:
            out.append("- files: " + ", ".join(f"{f.change} `{f.path}`" for f in task.files))
        out += [f"- check {_check_line(c)}" for c in task.checks]
        out += [f"- judged: {line}" for line in task.judged]
        for review in task.reviews:
            model = f", {review.model}" if review.model else ""
            out.append(f"- review of attempt {review.attempt}, round {review.round}{model}: {review.outcome}")
            for criterion in review.criteria:
                why = f": {criterion.reason}" if criterion.reason else ""
                out.append(f"  - {criterion.verdict} {criterion.criterion!r}{why}")
                out += [f"    - {_evidence_line(e)}" for e in criterion.evidence]
            out += [f"  - problem: {problem}" for problem in review.problems]
        for attempt in task.attempts:
            failure = f"; failed: {attempt.failure.splitlines()[0]}" if attempt.failure else ""
            out.append(
                f"- attempt {attempt.number}: agent {attempt.agent_status or 'did not finish'}, "
                f"{attempt.tokens} tokens, {_cost(attempt.cost_usd, attempt.cost_known)}{failure}"
            )
    return "\n".join(out) + "\n"


def report_files(report: RunReport) -> dict[str, str]:
    """What the run's directory holds of its report: file name -> text."""
    as_json = json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    return {MARKDOWN_NAME: render_markdown(report), JSON_NAME: as_json}


def audit_result(git: GitRepo, plan_rel: str) -> AuditResult:
    """`orchestrate audit` of the run's plan, without running checks again."""
    from orchestrator.engine.audit import audit_plan

    try:
        audited = audit_plan(git.root / plan_rel, repo=git.root)
    except OrchestrateError as exc:
        return AuditResult(clean=False, error=exc.render())
    return AuditResult(
        clean=audited.clean,
        boxes=len(audited.boxes),
        findings=[f"{plan_rel}:{f.line}: {f.message}" for f in audited.findings],
    )


def run_report(state: RunState, transitions: Sequence[t.Transition], git: GitRepo) -> RunReport:
    """The report of a run, with the audit of its plan as the work tree has it now."""
    plan = plan_of(git, state)
    audit = audit_result(git, state.plan) if plan is not None else None
    return build_report(state, transitions, git, plan, audit=audit)


def load_report(run_id: str | None, repo: Path | None = None) -> tuple[RunReport, Path]:
    """The named (or latest) run's report, built now from its journal, and the run's directory."""
    from orchestrator.engine.history import run_store

    git, store = run_store(repo)
    resolved = store.resolve(run_id)
    transitions = store.transitions(resolved)
    return run_report(RunState.from_records(transitions), transitions, git), store.run_dir(resolved)
