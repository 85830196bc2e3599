"""accept and reject: a person settles a task that waits for one (a manual unit, a reviewer's
needs_human)."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli.plan_commands import PlanArgument, _reported
from orchestrator.cli.run_commands import RUN_PANEL, RepoOpt

TaskArgument = Annotated[str, typer.Argument(help="The task's id, as `orchestrate status` shows it.")]


def accept(
    plan_path: PlanArgument,
    task_id: TaskArgument,
    note: Annotated[str, typer.Option("--note", help="What you checked (kept in the run's journal).")] = "",
    repo: RepoOpt = None,
) -> None:
    """Accept a task that waits for a human: tick and commit it, attested by you.

    Its kept work (if any) is committed with its tick and an Orchestrate-Attested-By trailer naming
    your git identity. Then `orchestrate resume` goes on with the tasks that waited on it."""
    from orchestrator.engine.gates import accept as accept_task

    with _reported():
        settled = accept_task(plan_path, task_id, note, repo=repo)
    sha = (settled.commit or "")[:10]
    resume = f"orchestrate resume {settled.run_id}"
    typer.echo(f"{task_id} accepted by {settled.by}: commit {sha}; continue with `{resume}`")


def reject(
    plan_path: PlanArgument,
    task_id: TaskArgument,
    note: Annotated[
        str,
        typer.Option(
            "--note", help="Why: the task's next attempt gets it in its prompt.", show_default=False
        ),
    ],
    repo: RepoOpt = None,
) -> None:
    """Reject a task that waits for a human: open again, the note in its next prompt.

    Its work stays in its ref. Then `orchestrate resume` runs it again."""
    from orchestrator.engine.gates import reject as reject_task

    with _reported():
        settled = reject_task(plan_path, task_id, note, repo=repo)
    kept = f"; its work is kept in {settled.kept_in}" if settled.kept_in else ""
    typer.echo(f"{task_id} rejected{kept}; continue with `orchestrate resume {settled.run_id}`")


def register(app: typer.Typer) -> None:
    app.command("accept", rich_help_panel=RUN_PANEL)(accept)
    app.command("reject", rich_help_panel=RUN_PANEL)(reject)
