"""`orchestrate init`: find the project's own checks, try each once, write orchestrate.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.errors import OrchestrateError


def register(app: typer.Typer) -> None:
    @app.command(rich_help_panel="Set up")
    def init(
        repo: Annotated[
            Path | None, typer.Option("--repo", help="The git repository (default: the current one).")
        ] = None,
        force: Annotated[bool, typer.Option("--force", help="Replace an existing orchestrate.toml.")] = False,
        timeout: Annotated[float | None, typer.Option(help="Seconds each candidate check may run.")] = None,
        plan: Annotated[
            list[Path] | None,
            typer.Option(
                "--plan",
                help="A plan whose global standards ('TypeScript compiles without errors') are offered "
                "as checks too; repeatable.",
            ),
        ] = None,
    ) -> None:
        """Find the project's checks (pytest, npm scripts, go, cargo, make...), run each once, and
        write orchestrate.toml with those that pass."""
        from orchestrator.engine.project_checks import Candidate, Tried, init_project

        def starting(candidates: list[Candidate]) -> None:
            if candidates:
                typer.echo(
                    f"trying {len(candidates)} check(s) found in the project's build files and plans:",
                    err=True,
                )

        def tried(t: Tried) -> None:
            verdict = "ok" if t.passed else f"left out ({t.error()})"
            typer.echo(f"  {t.candidate.command}: {verdict}", err=True)

        overrides: dict[str, Any] = {"timeout": timeout}
        try:
            report = init_project(repo, force, overrides, on_tried=tried, on_start=starting, plans=plan or [])
        except OrchestrateError as exc:
            typer.echo(f"orchestrate: error: {exc.render()}", err=True)
            raise typer.Exit(exc.exit_code) from None
        for warning in report.warnings:
            typer.echo(f"warning: {warning}", err=True)
        passed, total = len(report.passed), len(report.tried)
        if not total:
            said = "no check found in the project's build files; add yours to `verify`"
        else:
            said = f"{passed} of {total} check(s) passed: they run after every task"
            if passed < total:
                said += "; the others are commented out with their error"
        typer.echo(f"wrote {report.path}: {said}")
        typer.echo("commit it before `orchestrate run`, which wants a clean work tree")
