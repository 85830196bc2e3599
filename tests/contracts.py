"""The JSON contracts of orchestrate's outputs: where each schema is shipped, and the schemas made
from our pydantic models (the shipped file must be exactly that; `python -m tests.contracts`
writes them again after a model changed on purpose)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from orchestrator.domain.events import Event
from orchestrator.domain.state import RunState
from orchestrator.engine.dryrun import DryRun

PACKAGE = Path(__file__).resolve().parents[1] / "orchestrator"
SCHEMAS = PACKAGE / "schemas"

SHIPPED = {
    "parse": PACKAGE / "planfile" / "parse.schema.json",
    "next": SCHEMAS / "next.schema.json",
    "graph": SCHEMAS / "graph.schema.json",
    "dry-run": SCHEMAS / "dry-run.schema.json",
    "events": SCHEMAS / "events.schema.json",
    "runs": SCHEMAS / "runs.schema.json",
    "show": SCHEMAS / "show.schema.json",
    "audit": PACKAGE / "engine" / "audit.schema.json",
    "report": PACKAGE / "engine" / "report.schema.json",
}
"""Every JSON output, by what prints it (see the README's "JSON outputs")."""


def _titled(schema: dict[str, Any], title: str) -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": title}


def generated() -> dict[str, dict[str, Any]]:
    """The schemas our models make: one event per line of `run --json`, `show --json`'s run state,
    `run --dry-run --json`'s report."""
    return {
        "events": _titled(
            TypeAdapter(Event).json_schema(mode="serialization"),
            "orchestrate run/resume/demo --json: one line",
        ),
        "show": _titled(RunState.model_json_schema(mode="serialization"), "orchestrate show --json"),
        "dry-run": _titled(
            DryRun.model_json_schema(mode="serialization"), "orchestrate run --dry-run --json"
        ),
    }


def write() -> None:
    for name, schema in generated().items():
        SHIPPED[name].write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write()
