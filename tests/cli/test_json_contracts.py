"""Every `--json` output and the JSONL event stream against the JSON Schema shipped for it
(issue 15 item 8): a real demo run through the installed CLI, then each read-only command on its
scratch repository, each output validated with jsonschema. The schemas made from our models must
be exactly what is shipped, so a changed model cannot leave its contract behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import orchestrate
from tests.contracts import SHIPPED, generated


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SHIPPED[name].read_text(encoding="utf-8"))
    return loaded


def _registry() -> Registry:
    # next.schema.json refers to parse.schema.json by its file name, as a reader of the package would.
    return Registry().with_resources(
        (path.name, Resource.from_contents(_load(name), default_specification=DRAFT202012))
        for name, path in SHIPPED.items()
    )


def _check(name: str, value: Any) -> None:
    validator = Draft202012Validator(_load(name), registry=_registry())
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
    assert not errors, f"{name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


@pytest.mark.parametrize("name", sorted(generated()))
def test_the_shipped_schema_is_the_models(name: str) -> None:
    assert _load(name) == generated()[name], (
        f"{SHIPPED[name]} is stale: `python -m tests.contracts` writes it"
    )


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_each_shipped_schema_is_a_valid_schema_in_the_package(name: str) -> None:
    assert SHIPPED[name].is_file()
    Draft202012Validator.check_schema(_load(name))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    scratch = tmp_path_factory.mktemp("contracts") / "demo"
    done = orchestrate(Path.cwd(), "demo", "--agent", "scripted", "--dir", str(scratch), "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return scratch, events


def test_the_event_stream(demo: tuple[Path, list[dict[str, Any]]]) -> None:
    _, events = demo
    kinds = {event["event"] for event in events}
    assert {"run_started", "task_started", "verification_finished", "task_retrying", "run_finished"} <= kinds
    for event in events:
        _check("events", event)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("parse", ["parse", "plans/demo.md", "--json"]),
        ("next", ["next", "plans/demo.md", "--json"]),
        ("graph", ["graph", "plans/demo.md", "--format", "json"]),
        ("dry-run", ["run", "plans/demo.md", "--dry-run", "--json"]),
        ("runs", ["runs", "--json"]),
        ("show", ["show", "--json"]),
        ("audit", ["audit", "plans/demo.md", "--json"]),
        ("report", ["report", "--format", "json"]),
    ],
)
def test_each_json_output_after_a_run(
    demo: tuple[Path, list[dict[str, Any]]], name: str, args: list[str]
) -> None:
    scratch, _ = demo
    done = orchestrate(scratch, *args)
    assert done.returncode == 0, done.stderr
    _check(name, json.loads(done.stdout))


def test_outputs_of_an_open_plan(tmp_path: Path) -> None:
    # Before any run: tasks ready, dry-run waves with prompts.
    plan = (Path(__file__).resolve().parents[2] / "plans" / "demo.md").read_text()
    from tests.conftest import make_repo

    repo = make_repo(tmp_path / "repo", {"plans/demo.md": plan})
    ready = json.loads(orchestrate(repo, "next", "plans/demo.md", "--json").stdout)
    assert [t["id"] for t in ready["tasks"]] == ["T001"]
    _check("next", ready)
    dry = json.loads(
        orchestrate(repo, "run", "plans/demo.md", "--dry-run", "--show-prompts", "--json").stdout
    )
    assert len(dry["waves"]) == 3
    _check("dry-run", dry)
    _check("graph", json.loads(orchestrate(repo, "graph", "plans/demo.md", "--format", "json").stdout))
