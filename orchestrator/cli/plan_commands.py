"""Commands registered on the app (to be filled in)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    del app
