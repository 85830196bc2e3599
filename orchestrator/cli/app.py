"""The `orchestrate` command: thin commands that parse flags, call the library, map errors."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from orchestrator import __version__
from orchestrator.cli import evidence_commands, gate_commands, init_commands, plan_commands, run_commands
from orchestrator.errors import OrchestrateError
from orchestrator.tools.processes import become_subreaper
from orchestrator.tools.seal import seal_process


class _Commands(TyperGroup):
    """typer's group, with help that shows no type for a flag: `--dry-run` takes no value, so
    typer's `<bool>` beside it read as if it wanted one."""

    def get_params(self, ctx: Any) -> Any:
        return _untyped_flags(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _untyped_flags(command.get_params(ctx))  # the help option is made once and kept
        return command


def _untyped_flags(params: list[Any]) -> list[Any]:
    for param in params:
        if getattr(param, "is_flag", False) and getattr(param, "metavar", None) is None:
            param.metavar = ""
    return params


app = typer.Typer(
    cls=_Commands,
    name="orchestrate",
    help="Carry a markdown implementation plan to completion with coding sub-agents.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"orchestrate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Carry a markdown implementation plan to completion with coding sub-agents."""


plan_commands.register(app)
run_commands.register(app)
init_commands.register(app)
evidence_commands.register(app)
gate_commands.register(app)


def main() -> None:
    """Console entry point: a user sees one line for an error we expected, never a traceback.

    Before anything else the process is sealed: the key and every secret-looking variable leave
    the environment (children and git inherit none), and no command we start can read them back
    from /proc/<our pid>/environ or our memory (see tools/seal.py for what holds where)."""
    seal_process()
    # Orphans of what we start (a command that left its session and lost its parent) come to
    # us, not to init: found and killed when the run ends (tools/processes.py).
    become_subreaper()
    try:
        app()  # standalone: typer reports its own usage errors with exit 2
    except OrchestrateError as exc:
        print(f"orchestrate: error: {exc.render()}", file=sys.stderr)  # noqa: T201
        sys.exit(exc.exit_code)
