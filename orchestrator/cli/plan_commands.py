"""The read-only plan commands (parse, status, next, graph, lint) and `tick`.

Human output goes to stdout, errors to stderr as one line with exit 2; `lint` exits 1
when the plan has errors.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from orchestrator.domain import dag
from orchestrator.domain.plan import Plan, Task
from orchestrator.engine.unit_history import parse_with_history
from orchestrator.errors import OrchestrateError, PlanError, UsageError
from orchestrator.planfile import export, parse_plan, set_box
from orchestrator.planfile.parser import NO_TASKS_MESSAGE

PlanArgument = Annotated[Path, typer.Argument(help="The markdown plan file.", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


class GraphFormat(StrEnum):
    MERMAID = "mermaid"
    DOT = "dot"
    JSON = "json"


@contextmanager
def _reported() -> Iterator[None]:
    """An expected error becomes one line on stderr and its exit code, under CliRunner as well."""
    try:
        yield
    except OrchestrateError as exc:
        typer.echo(f"orchestrate: error: {exc.render()}", err=True)
        raise typer.Exit(exc.exit_code) from None


def load(path: Path, *, history: bool = True, allow_empty: bool = False) -> Plan:
    """Parse the plan (with `history`, its box-less units done where a commit on the branch carries
    their trailer); a plan without a task of any kind is bad input unless `allow_empty` (parse
    shows it, lint fails on it)."""
    plan = parse_with_history(path) if history else parse_plan(path)
    if not plan.tasks and not allow_empty:
        raise PlanError(NO_TASKS_MESSAGE, path=path)
    return plan


def _console() -> Console:
    # Created per call so that CliRunner's captured stdout is the one written to. Piped, nothing is
    # wrapped (one task a line, for grep); on a terminal, rich wraps at spaces (see _print_task).
    return Console(file=sys.stdout, highlight=False, soft_wrap=not sys.stdout.isatty())


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def parse(plan_path: PlanArgument, as_json: JsonOption = False) -> None:
    """Show the parsed plan: phases, tasks, dependencies, verification commands, diagnostics."""
    with _reported():
        plan = load(plan_path, history=False, allow_empty=True)
        if as_json:
            _print_json(export.plan_json(plan))
            return
        console = _console()
        done = sum(task.checked for task in plan.tasks)
        console.print(f"[bold]{escape(plan.title)}[/bold]  ({escape(str(plan.path))})")
        console.print(f"{len(plan.phases)} phases, {len(plan.tasks)} tasks, {done} done")
        for phase in plan.phases:
            console.print()
            where = f"line {phase.line}" if phase.line else "no heading"
            console.print(
                f"[bold]Phase {escape(phase.id)}[/bold]: {escape(phase.title)}  [dim]({where})[/dim]"
            )
            for task in plan.phase_tasks(phase.id):
                _print_task(console, task)
        _print_diagnostics(console, plan)


def _print_task(console: Console, task: Task) -> None:
    """A task as one line when piped (its id, title and dependencies whole, for grep); on a
    terminal, wrapped at spaces only (an id has none), the title on a line of its own when the
    first would not hold it."""
    head = f"{_box(task)} [bold]{escape(task.id)}[/bold]  [dim]line {task.line}[/dim]"
    notes = [n for n, on in (("optional", task.optional), ("parallel", task.parallel)) if on]
    title = escape(task.title) + (f"  ({', '.join(notes)})" if notes else "")
    after = f"after: {_deps(task)}" if task.depends_on else ""
    if not console.is_terminal:
        console.print("  ".join(part for part in (head, title, after) if part))
    else:
        one_line = Text.from_markup(f"{head}  {title}").cell_len <= console.width
        console.print(f"{head}  {title}" if one_line else head)
        for line in ([] if one_line else [title]) + ([after] if after else []):
            console.print(Padding(Text.from_markup(line), (0, 0, 0, 4)))
    for command in task.verify:
        console.print(
            Padding(Text(f"verify: {command}"), (0, 0, 0, 4))
            if console.is_terminal
            else (f"    verify: {escape(command)}")
        )


def status(plan_path: PlanArgument) -> None:
    """Progress per phase (done / total) and the tasks that are ready to run next."""
    with _reported():
        plan = load(plan_path)
        console = _console()
        console.print(f"[bold]{escape(plan.title)}[/bold]  ({escape(str(plan.path))})")
        table = Table(box=None, header_style="bold", pad_edge=False)
        table.add_column("phase", no_wrap=True)
        table.add_column("title", overflow="fold")
        table.add_column("done", justify="right", no_wrap=True)
        table.add_column("", no_wrap=True)
        for phase in plan.phases:
            tasks = plan.phase_tasks(phase.id)
            done = sum(task.settled for task in tasks)
            if not console.is_terminal:  # one phase a line, its title whole
                console.print(f"Phase {escape(phase.id)}: {escape(phase.title)}  {done}/{len(tasks)}")
            table.add_row(
                escape(phase.id), escape(phase.title), f"{done}/{len(tasks)}", _bar(done, len(tasks))
            )
        if console.is_terminal:
            console.print(table)
        done = sum(task.settled for task in plan.tasks)
        console.print(f"{done} of {len(plan.tasks)} tasks done")
        from orchestrator.engine.coverage import plan_coverage, plan_settings
        from orchestrator.engine.coverage import summary as coverage_summary

        judged = {c.task.id: c for c in plan_coverage(plan, plan_settings(plan.path).verify)}
        if judged:
            console.print(escape(coverage_summary(list(judged.values()))))
        waiting = _waiting_for_human(plan)
        if waiting:
            console.print("[bold]Waiting for a human:[/bold]")
            for task_id, reason in waiting.items():
                console.print(f"  {escape(task_id)}  {escape(reason)}")
            console.print(escape(_gate_commands(plan)))
        ready = [task for task in dag.ready(plan, set()) if task.id not in waiting]
        if ready:
            console.print("[bold]Next:[/bold]")
            for task in ready[:10]:
                judge = f"  [judged by {judged[task.id].describe()}]" if task.id in judged else ""
                console.print(f"  {escape(task.id)}  line {task.line}  {escape(task.title)}{escape(judge)}")
            if len(ready) > 10:
                console.print(f"  … and {len(ready) - 10} more ready")
        elif waiting:
            console.print("Nothing else is ready: the open tasks wait for a human's decision.")
        elif done < len(plan.tasks):
            console.print("Nothing is ready: every open task waits on another (see `orchestrate lint`).")
        else:
            console.print("All tasks are done.")
        errors = [d for d in plan.diagnostics if dag.fails_lint(d)]
        if errors:
            console.print(
                f"{len(errors)} problem(s) in the plan: run `orchestrate lint {escape(str(plan.path))}`"
            )


def next_tasks(plan_path: PlanArgument, as_json: JsonOption = False) -> None:
    """The ready tasks in execution order; the first is where `resume` would start."""
    with _reported():
        plan = load(plan_path)
        waiting = _waiting_for_human(plan)
        ready = [task for task in dag.ready(plan, set()) if task.id not in waiting]
        if as_json:
            _print_json(
                {
                    "plan": {"path": str(plan.path), "title": plan.title},
                    "tasks": [export.task_json(task) for task in ready],
                    "waiting_for_human": [{"id": i, "reason": why} for i, why in waiting.items()],
                }
            )
            return
        for task_id, reason in waiting.items():
            # On stderr: stdout stays the ready tasks, one a line, for `cut -f1`.
            typer.echo(f"{task_id} waits for a human: {reason}", err=True)
        if waiting:
            typer.echo(_gate_commands(plan), err=True)
        if not ready and waiting:
            typer.echo("Nothing else is ready: the open tasks wait for a human's decision.")
            return
        if not ready:
            open_tasks = [task for task in plan.tasks if not task.settled]
            typer.echo(
                "All tasks are done." if not open_tasks else "Nothing is ready (see `orchestrate lint`)."
            )
            return
        # Tab-separated so that `cut -f1` gives the ids.
        for task in ready:
            typer.echo(f"{task.id}\tline {task.line}\tPhase {task.phase}\t{task.title}")


def _waiting_for_human(plan: Plan) -> dict[str, str]:
    """Open tasks of the plan that its latest run stopped for a person (task -> why)."""
    from orchestrator.engine.gates import waiting_for_human

    waiting = waiting_for_human(plan.path)
    return {task.id: waiting[task.id] for task in plan.tasks if task.id in waiting and not task.settled}


def _gate_commands(plan: Plan) -> str:
    where = plan.path
    return (
        f"`orchestrate accept {where} TASK [--note TEXT]` commits one; "
        f"`orchestrate reject {where} TASK --note TEXT` re-opens it; then `orchestrate resume`"
    )


def graph(
    plan_path: PlanArgument,
    output_format: Annotated[
        GraphFormat, typer.Option("--format", "-f", help="mermaid, dot or json.", case_sensitive=False)
    ] = GraphFormat.MERMAID,
) -> None:
    """The task DAG as Mermaid, Graphviz DOT or JSON."""
    with _reported():
        plan = load(plan_path)
        if output_format is GraphFormat.JSON:
            _print_json(export.graph_json(plan))
        elif output_format is GraphFormat.DOT:
            typer.echo(export.graph_dot(plan), nl=False)
        else:
            typer.echo(export.graph_mermaid(plan), nl=False)


class LintFormat(StrEnum):
    TEXT = "text"
    GITHUB = "github"


FindingFormatOpt = Annotated[
    LintFormat,
    typer.Option(
        "--format",
        help="text, or github: annotations on the pull request at file and line.",
        case_sensitive=False,
    ),
]
"""--format of the commands that report findings at a plan's lines (lint, audit)."""


def format_finding(output: LintFormat, path: Path, line: int | None, severity: str, message: str) -> str:
    """One problem in the plan: `path:line: severity: message`, or with --format github a workflow
    command that annotates the pull request at the file and line."""
    if output is LintFormat.TEXT:
        where = f"{path}:{line}" if line else str(path)
        return f"{where}: {severity}: {message}"
    level = {"error": "error", "warning": "warning"}.get(severity, "notice")

    def escaped(text: str, properties: bool = False) -> str:
        # As GitHub's toolkit escapes them (actions/toolkit, command.ts).
        text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        return text.replace(":", "%3A").replace(",", "%2C") if properties else text

    where = f"file={escaped(str(path), True)}" + (f",line={line}" if line else "")
    return f"::{level} {where}::{escaped(message)}"


def lint(
    plan_path: PlanArgument,
    require_verify: Annotated[
        bool, typer.Option("--require-verify", help="Exit 1 when an open task would be judged by nothing.")
    ] = False,
    output: FindingFormatOpt = LintFormat.TEXT,
) -> None:
    """Check the plan for CI: exit 1 on cycles, unknown or duplicate ids, parent/child disagreement.

    With --require-verify, also on an open task no command would judge. Says how each task is judged."""
    with _reported():
        plan = load(plan_path, allow_empty=True)
        errors = 0
        for diagnostic in plan.diagnostics:
            failing = dag.fails_lint(diagnostic)
            errors += failing
            severity = "error" if failing else diagnostic.severity.value
            typer.echo(format_finding(output, plan.path, diagnostic.line, severity, diagnostic.message))
        from orchestrator.engine.coverage import Judge, plan_coverage, plan_settings
        from orchestrator.engine.coverage import summary as coverage_summary

        judged = plan_coverage(plan, plan_settings(plan.path).verify)
        unjudged = [c.task for c in judged if c.judge is Judge.NOTHING]
        if require_verify:
            for task in unjudged:
                message = (
                    f"{task.id} is judged by nothing (no check of its own, "
                    "no default check): add a `Run:`/`Verify:` command, or `verify = [...]` in "
                    "orchestrate.toml (`orchestrate init` finds the project's)"
                )
                typer.echo(format_finding(output, plan.path, task.line, "error", message))
        if judged:
            typer.echo(coverage_summary(judged))
        if unjudged and not require_verify:
            ids = ", ".join(t.id for t in unjudged[:10]) + (" ..." if len(unjudged) > 10 else "")
            typer.echo(f"judged by nothing: {ids} (--require-verify makes each an error)")
        if require_verify:
            errors += len(unjudged)
        if errors:
            typer.echo(f"{errors} error(s) in {len(plan.tasks)} tasks")
            raise typer.Exit(1)
        typer.echo(f"ok: {len(plan.tasks)} tasks in {len(plan.phases)} phases, no errors")


def tick(
    plan_path: PlanArgument,
    task_id: Annotated[str, typer.Argument(help="The task's id, as `orchestrate parse` shows it.")],
    undo: Annotated[bool, typer.Option("--undo", help="Untick instead.")] = False,
) -> None:
    """Tick (or with --undo untick) one task: exactly its box character changes."""
    with _reported():
        plan = load(plan_path, history=False)
        task = find_task(plan, task_id)
        if task.boxless:
            raise UsageError(
                f"task {task.id} has no box to tick: it is done when a commit carrying "
                f"'Orchestrate-Task: {task.id}' is on the branch",
                path=plan.path,
                line=task.line,
            )
        before = task.checked
        after = set_box(plan_path, task.id, not undo).task(task.id)
        verb = "unticked" if undo else "ticked"
        if after is not None and before == after.checked:
            typer.echo(f"{task.id} was already {verb} (line {task.line}); nothing changed")
        else:
            typer.echo(f"{verb} {task.id} (line {task.line}): {task.title}")


def find_task(plan: Plan, task_id: str) -> Task:
    """The task with this id; ids match case-insensitively and with spaces for dashes."""
    task = plan.task(task_id)
    if task is not None:
        return task
    wanted = _normal(task_id)
    matches = [t for t in plan.tasks if _normal(t.id) == wanted]
    if len(matches) == 1:
        return matches[0]
    close = difflib.get_close_matches(task_id, [t.id for t in plan.tasks], n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `orchestrate parse` lists the ids"
    raise UsageError(f"no task with id {task_id!r}{hint}", path=plan.path)


def _normal(task_id: str) -> str:
    return "-".join(task_id.lower().split())


def _box(task: Task) -> str:
    return {"done": "[x]", "open": "[ ]", "in_progress": "[/]", "skipped": "[-]"}[task.state.value].replace(
        "[", "\\["
    )


def _describe(task: Task) -> str:
    notes = []
    if task.optional:
        notes.append("optional")
    if task.parallel:
        notes.append("parallel")
    if task.steps:
        criteria = sum(step.kind.value == "criterion" for step in task.steps)
        steps = len(task.steps) - criteria
        notes.extend(f"{n} {word}" for n, word in ((steps, "steps"), (criteria, "criteria")) if n)
    if task.command is not None:
        notes.append("check task")
    suffix = f"  ({', '.join(notes)})" if notes else ""
    verify = "".join(f"\n  verify: {command}" for command in task.verify)
    return f"{task.title}{suffix}{verify}"


def _deps(task: Task) -> str:
    return escape(", ".join(task.depends_on)) if task.depends_on else "-"


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = round(width * done / total) if total else width
    return "█" * filled + "░" * (width - filled)


def _print_diagnostics(console: Console, plan: Plan) -> None:
    if not plan.diagnostics:
        return
    console.print()
    for diagnostic in plan.diagnostics:
        where = f"line {diagnostic.line}" if diagnostic.line else "plan"
        console.print(f"{diagnostic.severity.value}: {where}: {escape(diagnostic.message)}")


PLAN_PANEL = "Read and edit a plan"
"""Where `orchestrate --help` lists these commands (the run commands have a panel of their own)."""


def register(app: typer.Typer) -> None:
    app.command("parse", rich_help_panel=PLAN_PANEL)(parse)
    app.command("status", rich_help_panel=PLAN_PANEL)(status)
    app.command("next", rich_help_panel=PLAN_PANEL)(next_tasks)
    app.command("graph", rich_help_panel=PLAN_PANEL)(graph)
    app.command("lint", rich_help_panel=PLAN_PANEL)(lint)
    app.command("tick", rich_help_panel=PLAN_PANEL)(tick)
