"""The console entry point: the process is sealed before the CLI (typer, rich, the engine) is even
imported, so the environment block that /proc/<pid>/environ shows holds the key for as short a
time as we can make it (see tools/seal.py)."""

from __future__ import annotations

from orchestrator.tools.seal import seal_process


def main() -> None:
    seal_process()
    from orchestrator.cli.app import main as run

    run()
