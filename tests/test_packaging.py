"""What pyproject.toml asks pip to install is what the package uses: a dependency nothing imports
is a download (and a supply-chain risk) for nothing."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

IMPORT_NAMES = {"markdown-it-py": "markdown_it", "mdit-py-plugins": "mdit_py_plugins"}
"""Distributions whose module is named otherwise."""


def test_every_runtime_dependency_is_imported_by_the_package() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=!~ \[;]", spec, maxsplit=1)[0].lower() for spec in project["dependencies"]]
    sources = "\n".join(p.read_text() for p in (REPO_ROOT / "orchestrator").rglob("*.py"))
    unused = [
        name
        for name in names
        if not re.search(
            rf"^\s*(import|from)\s+{re.escape(IMPORT_NAMES.get(name, name.replace('-', '_')))}\b",
            sources,
            re.MULTILINE,
        )
    ]
    assert unused == []
