"""Files shipped beside the code: prompts/ and plans/ in a source checkout, orchestrator/_prompts and
orchestrator/_plans in an installed wheel (pyproject force-includes them there)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]


def data_dir(name: str) -> Path:
    """The shipped `name` directory ('prompts' or 'plans'), installed or in a checkout."""
    for candidate in (_PACKAGE / f"_{name}", _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"orchestrate's {name}/ directory is missing from this installation")
