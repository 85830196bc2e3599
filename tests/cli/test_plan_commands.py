"""parse / status / next / graph / lint / tick as a user runs them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli.app import app

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "plans"
ORCHESTRATE = REPO / ".venv" / "bin" / "orchestrate"
REALTIME = "MemberJunction__MJ__plans__audio-sage-realtime-implementation-plan.md"

runner = CliRunner()


def run(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def copy_fixture(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    target.write_bytes((FIXTURES / name).read_bytes())
    return target


def test_parse_json_is_exactly_the_designed_object(shared_plans: Path) -> None:
    code, out, err = run("parse", "--json", shared_plans / REALTIME)
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == {"plan", "phases", "tasks", "diagnostics"}
    assert set(data["plan"]) == {"path", "title"}
    assert data["plan"]["title"] == "Audio Sage Real-Time Implementation Plan"
    assert [p["id"] for p in data["phases"]] == ["2", "3", "4", "5"]
    assert all(set(p) == {"id", "title", "line"} for p in data["phases"])
    keys = {"id", "title", "checked", "optional", "phase", "line", "depends_on", "parallel", "verify"}
    assert all(set(t) == keys for t in data["tasks"])
    assert len(data["tasks"]) == 44
    assert sum(t["checked"] is True for t in data["tasks"]) == 15
    first = next(t for t in data["tasks"] if t["line"] == 1276)
    assert first["checked"] is False
    assert first["phase"] == "2"
    assert isinstance(first["verify"], list)
    assert data["diagnostics"] == []


def test_parse_human_output_lists_phases_and_tasks() -> None:
    code, out, _ = run("parse", FIXTURES / "gsd.md")
    assert code == 0
    assert "Phase 2: Features" in out
    assert "02-01" in out
    assert "verify: pytest tests/test_model.py" in out


def test_status_shows_progress_and_next(shared_plans: Path) -> None:
    code, out, _ = run("status", shared_plans / REALTIME)
    assert code == 0
    assert "3/6" in out
    assert "0/18" in out
    assert "15 of 44 tasks done" in out
    assert "line 1276" in out.split("Next:")[1].splitlines()[1]


def test_next_json_first_is_where_resume_starts(shared_plans: Path) -> None:
    code, out, _ = run("next", "--json", shared_plans / REALTIME)
    assert code == 0
    tasks = json.loads(out)["tasks"]
    assert tasks[0]["line"] == 1276
    code, out, _ = run("next", shared_plans / REALTIME)
    assert out.splitlines()[0].startswith("2-websocket-connections-stable-for-5\tline 1276")


@pytest.mark.parametrize(
    ("fmt", "marker"), [("mermaid", "flowchart TD"), ("dot", "digraph plan {"), ("json", '"edges"')]
)
def test_graph_formats(fmt: str, marker: str) -> None:
    code, out, _ = run("graph", "--format", fmt, FIXTURES / "speckit.md")
    assert code == 0
    assert marker in out
    if fmt == "json":
        edges = json.loads(out)["edges"]
        assert {"from": "T006", "to": "T008"} in edges
    if fmt == "mermaid":
        assert "-->" in out
        assert "#91;" not in out.split("\n")[0]


def test_lint_exit_codes(shared_plans: Path) -> None:
    code, out, _ = run("lint", FIXTURES / "gsd.md")
    assert (code, out.strip()) == (0, "ok: 8 tasks in 3 phases, no errors")
    code, out, _ = run("lint", FIXTURES / "cycle.md")
    assert code == 1
    assert "cycle.md:5: error: dependency cycle: T101 (line 5) -> T103 (line 7)" in out
    assert "duplicate task id T001" in out
    code, out, _ = run(
        "lint", shared_plans / "gregcastro23__WhatToEatNext__.kiro__specs__main-page-restoration__tasks.md"
    )
    assert code == 1
    assert ":35: error: task 3 is not ticked although all 8 of its sub-tasks are" in out


def test_tick_and_undo_change_one_byte(tmp_path: Path) -> None:
    plan_file = copy_fixture(tmp_path, "speckit.md")
    original = plan_file.read_bytes()
    code, out, _ = run("tick", plan_file, "t005")  # ids match case-insensitively
    assert code == 0
    assert out.startswith("ticked T005 (line 16)")
    ticked = plan_file.read_bytes()
    assert [i for i, (a, b) in enumerate(zip(original, ticked, strict=True)) if a != b] == [
        ticked.index(b"[x] T005") + 1
    ]
    code, out, _ = run("tick", plan_file, "T005")
    assert code == 0
    assert "already ticked" in out
    code, out, _ = run("tick", "--undo", plan_file, "T005")
    assert code == 0
    assert out.startswith("unticked T005")
    assert plan_file.read_bytes() == original


def test_tick_unknown_id_suggests(tmp_path: Path) -> None:
    plan_file = copy_fixture(tmp_path, "speckit.md")
    code, out, err = run("tick", plan_file, "T0005")
    assert code == 2
    assert out == ""
    assert err.startswith("orchestrate: error: ")
    assert "no task with id 'T0005'" in err
    assert "T005" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such plan file"),
        (b"", "is empty"),
        (b"\x00\x01binary", "binary file"),
        (b"\xff\xfe- [ ] x", "not UTF-8"),
        (b"# Notes\n\nNo boxes here.\n", "no checkbox tasks found"),
    ],
)
@pytest.mark.parametrize("command", ["parse", "status", "next", "graph", "lint"])
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, command: str, content: bytes | None, message: str
) -> None:
    plan_file = tmp_path / "plan.md"
    if content is not None:
        plan_file.write_bytes(content)
    code, out, err = run(command, plan_file)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert str(plan_file) in err
    assert message in err


def test_directory_is_bad_input(tmp_path: Path) -> None:
    code, _, err = run("status", tmp_path)
    assert code == 2
    assert "is a directory" in err


# ---- through the installed console script: no traceback reaches a user ----------------------


def orchestrate(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ORCHESTRATE), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_console_script_bad_inputs_never_show_a_traceback(tmp_path: Path) -> None:
    binary = tmp_path / "binary.md"
    binary.write_bytes(b"\x00\x01")
    for args in (
        ("parse", tmp_path / "missing.md"),
        ("status", tmp_path),
        ("next", binary),
        ("tick", binary, "T1"),
    ):
        done = orchestrate(*args)
        assert done.returncode == 2, done
        assert "Traceback" not in done.stderr
        assert done.stderr.startswith("orchestrate: error: ")
        assert done.stdout == ""


def test_console_script_tick_and_lint(tmp_path: Path) -> None:
    plan_file = copy_fixture(tmp_path, "cycle.md")
    done = orchestrate("lint", plan_file)
    assert done.returncode == 1
    assert "dependency cycle" in done.stdout
    plan_file = copy_fixture(tmp_path, "gsd.md")
    done = orchestrate("tick", plan_file, "02-01")
    assert done.returncode == 0, done.stderr
    assert b"- [x] 02-01: Widget model" in plan_file.read_bytes()
    done = orchestrate("next", "--json", plan_file)
    assert [t["id"] for t in json.loads(done.stdout)["tasks"]] == ["02-02", "03-01"]
