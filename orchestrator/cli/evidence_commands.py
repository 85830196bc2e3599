"""audit and report: what stands behind each tick, and what a run did (read-side: plan, git log,
journals)."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.plan_commands import (
    FindingFormatOpt,
    LintFormat,
    PlanArgument,
    _reported,
    format_finding,
)
from orchestrator.cli.run_commands import RUN_PANEL, JsonOpt, RepoOpt

if TYPE_CHECKING:
    from orchestrator.engine.audit import AuditReport


def audit(
    plan_path: PlanArgument,
    rerun: Annotated[
        bool, typer.Option("--rerun", help="Run each recorded check again at HEAD (in the sandbox).")
    ] = False,
    output: FindingFormatOpt = LintFormat.TEXT,
    json_output: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """For CI: every ticked box must come from a commit of orchestrate's with evidence behind it.
    Exit 1 on a box ticked by hand or another tool, a tick without evidence, or (--rerun) a
    recorded check that fails at HEAD. Runs no model."""
    from orchestrator.engine.audit import audit_plan

    with _reported():
        report = audit_plan(plan_path, rerun=rerun, repo=repo)
    if json_output:
        typer.echo(report.model_dump_json(indent=2))
    else:
        for warning in report.warnings:
            typer.echo(f"warning: {warning}", err=True)
        for finding in report.findings:
            typer.echo(format_finding(output, plan_path, finding.line, finding.severity, finding.message))
        for check in report.rerun or []:
            verdict = "ok" if check.ok else f"FAILS (exit {check.exit_code})"
            typer.echo(f"rerun `{check.command}` at HEAD: {verdict}  [{', '.join(check.tasks)}]")
        typer.echo(_audit_summary(report))
    raise typer.Exit(0 if report.clean else 1)


def _audit_summary(report: AuditReport) -> str:
    boxes = len(report.boxes)
    backed = sum(1 for b in report.boxes if b.evidence is not None and b.evidence.backed)
    kinds: dict[str, int] = {}
    for finding in report.findings:
        kinds[finding.kind] = kinds.get(finding.kind, 0) + 1
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    head = f"{boxes} ticked box(es) in {report.plan}; {backed} ticked by orchestrate with evidence"
    if not report.findings:
        return f"{head}; clean"
    return f"{head}; {len(report.findings)} finding(s): {counts}"


class ReportFormat(StrEnum):
    MD = "md"
    JSON = "json"


def report(
    run_id: Annotated[str | None, typer.Argument(help="Run id or unique prefix (default: latest).")] = None,
    output: Annotated[
        ReportFormat, typer.Option("--format", help="md (markdown) or json.", case_sensitive=False)
    ] = ReportFormat.MD,
    repo: RepoOpt = None,
) -> None:
    """What a run did: files created and modified, build status, test and audit results, what waits
    for a person, what remains, and each task's checks, evidence, attempts and cost. The same report
    is written to the run's directory (report.md, report.json) whenever a run ends."""
    from orchestrator.engine.report import load_report, render_markdown

    with _reported():
        built, _ = load_report(run_id, repo)
    if output is ReportFormat.JSON:
        typer.echo(built.model_dump_json(indent=2))
    else:
        typer.echo(render_markdown(built), nl=False)


def register(app: typer.Typer) -> None:
    app.command("audit", rich_help_panel=RUN_PANEL)(audit)
    app.command("report", rich_help_panel=RUN_PANEL)(report)
