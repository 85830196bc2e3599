"""parse / status / next / graph / lint / tick as a user runs them."""

from __future__ import annotations

import json
import os
import re
import resource
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.planfile import export

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


def test_parse_json_is_the_designed_object_extended_as_its_schema_says(shared_plans: Path) -> None:
    code, out, err = run("parse", "--json", shared_plans / REALTIME)
    assert code == 0, err
    data = json.loads(out)
    schema = json.loads((Path(export.__file__).parent / export.PARSE_SCHEMA).read_text(encoding="utf-8"))[
        "properties"
    ]
    assert set(data) == {"plan", "phases", "tasks", "diagnostics"} == set(schema)
    # The documented keys stay; the keys printed are the shipped schema's, its required ones included.
    assert {"path", "title"} <= set(data["plan"]) == set(schema["plan"]["properties"])
    assert data["plan"]["title"] == "Audio Sage Real-Time Implementation Plan"
    assert [p["id"] for p in data["phases"]] == ["2", "3", "4", "5"]
    assert all(set(p) == {"id", "title", "line"} for p in data["phases"])
    keys = {"id", "title", "checked", "optional", "phase", "line", "depends_on", "parallel", "verify"}
    task_schema = schema["tasks"]["items"]
    assert keys == set(task_schema["required"])
    assert all(keys <= set(t) == set(task_schema["properties"]) for t in data["tasks"])
    assert all(t["kind"] == "box" and t["steps"] == [] for t in data["tasks"])
    step_keys = set(task_schema["properties"]["steps"]["items"]["properties"])
    check_keys = set(task_schema["properties"]["checks"]["items"]["properties"])
    assert all(set(c) == check_keys for t in data["tasks"] for c in t["checks"])
    assert all(set(s) == step_keys for t in data["tasks"] for s in t["steps"])
    assert all(set(d) == set(schema["diagnostics"]["items"]["properties"]) for d in data["diagnostics"])
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
    # (Above it, how each open task would be judged: tests/cli/test_coverage.py.)
    assert (code, out.strip().splitlines()[-1]) == (0, "ok: 8 tasks in 3 phases, no errors")
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


@pytest.mark.parametrize("command", ["status", "next", "graph", "tick"])
def test_a_plan_without_any_task_is_bad_input_where_a_task_is_needed(tmp_path: Path, command: str) -> None:
    plan_file = tmp_path / "plan.md"
    plan_file.write_bytes(b"# Notes\n\nNo boxes here.\n")
    code, out, err = run(command, plan_file, *(["T1"] if command == "tick" else []))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert str(plan_file) in err
    assert "no task found" in err


def test_parse_shows_a_plan_without_any_task_and_lint_fails_it(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.md"
    plan_file.write_bytes(b"# Notes\n\nNo boxes here.\n")
    code, out, _ = run("parse", "--json", plan_file)
    assert code == 0
    data = json.loads(out)
    assert data["tasks"] == []
    assert [d["code"] for d in data["diagnostics"]] == ["no-tasks"]
    code, out, _ = run("lint", plan_file)
    assert code == 1
    assert "no task found" in out


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


# ---- files that are not regular files, or too big: refused at once, never read ----------------


def limited_orchestrate(*args: str | Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """The console script with 1 GB of address space and a timeout: a read that never ends fails
    the test instead of blocking it or eating the machine's memory."""

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run(
        [str(ORCHESTRATE), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit_memory,  # noqa: PLW1509 - no threads in the test process's child setup
    )


def special_plan(tmp_path: Path, kind: str) -> Path:
    plan_file = tmp_path / "plan.md"
    if kind == "fifo":
        os.mkfifo(plan_file)
    elif kind == "dev-zero":
        plan_file.symlink_to("/dev/zero")
    else:
        plan_file = Path("/dev/zero")
    return plan_file


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "/dev/zero"])
@pytest.mark.parametrize("command", [["parse"], ["status"], ["lint"], ["next"], ["graph"], ["tick", "T1"]])
def test_a_fifo_or_a_device_is_refused_without_reading_it(
    tmp_path: Path, kind: str, command: list[str]
) -> None:
    plan_file = special_plan(tmp_path, kind)
    done = limited_orchestrate(command[0], plan_file, *command[1:])
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("orchestrate: error: ")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert str(plan_file) in done.stderr
    kind_name = "a FIFO" if kind == "fifo" else "a character device"
    assert f"is not a regular file ({kind_name})" in done.stderr


@pytest.mark.parametrize("command", ["parse", "status", "lint"])
def test_a_plan_over_the_size_limit_is_refused_naming_its_size(tmp_path: Path, command: str) -> None:
    plan_file = tmp_path / "plan.md"
    with plan_file.open("wb") as f:  # sparse: no disk used
        f.write(b"- [ ] T1 a task\n")
        f.truncate(12_300_000)
    done = limited_orchestrate(command, plan_file)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"orchestrate: error: {plan_file}: 12.3 MB is over the 10 MB limit for a plan; split the plan"
    )


def test_a_plan_just_under_the_limit_is_read(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.md"
    filler = b"Some prose that is not a task.\n" * (9_990_000 // 31)
    plan_file.write_bytes(b"# Big\n\n- [ ] T1 first\n\n" + filler + b"\n- [ ] T2 last\n")
    assert plan_file.stat().st_size < 10_000_000
    done = limited_orchestrate("lint", plan_file, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ok: 2 tasks" in done.stdout


# ---- nesting: deep boxes are tasks, deeper than the bound is an error naming the line ---------


def nested_plan(depth: int, after: str = "") -> str:
    items = "".join("  " * level + f"- [ ] T{level + 1:03d} level {level + 1}\n" for level in range(depth))
    return f"# Deep\n\n{items}{after}"


def test_boxes_nested_deeper_than_nine_levels_are_tasks(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.md"
    plan_file.write_text(nested_plan(40))
    code, out, err = run("lint", plan_file)
    assert code == 0, out + err
    assert "ok: 40 tasks" in out
    code, out, _ = run("next", "--json", plan_file)
    assert code == 0
    assert [t["id"] for t in json.loads(out)["tasks"]] == ["T040"]


def test_nesting_past_the_bound_is_a_lint_error_naming_the_line(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.md"
    plan_file.write_text(nested_plan(60, after="\n- [ ] T999 a task after the deep list\n"))
    code, out, _ = run("lint", plan_file)
    assert code == 1, out
    assert f"{plan_file}:52: error: " in out  # the first box past the bound: line 3 + 49
    assert "nested" in out
    code, _, err = run("parse", plan_file)
    assert code == 0  # parse shows what it read, with the error among its diagnostics
    done = limited_orchestrate("status", plan_file)
    assert "problem(s) in the plan" in done.stdout


def test_pathological_nesting_is_read_quickly_and_reported(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.md"
    plan_file.write_text(
        "- [ ] T1 first\n\n" + ">" * 50_000 + " - [ ] deep\n\n" + "- " * 20_000 + "[ ] T2 x\n"
    )
    done = limited_orchestrate("lint", plan_file)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "nested" in done.stdout


# ---- writing a tick where the file system says no -----------------------------------------------


def test_tick_of_a_plan_with_a_name_as_long_as_the_file_system_allows(tmp_path: Path) -> None:
    plan_file = tmp_path / ("p" * 250 + ".md")
    plan_file.write_bytes(b"# Plan\n\n- [ ] T1 a task\n")
    done = orchestrate("tick", plan_file, "T1")
    assert done.returncode == 0, done.stderr
    assert plan_file.read_bytes() == b"# Plan\n\n- [x] T1 a task\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [plan_file.name]


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap for a read-only file system")
def test_tick_on_a_read_only_file_system_is_one_line_and_exit_2(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.md"
    plan_file.write_bytes(b"# Plan\n\n- [ ] T1 a task\n")
    done = subprocess.run(
        [
            "bwrap",
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            str(ORCHESTRATE),
            "tick",
            str(plan_file),
            "T1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "bwrap:" in done.stderr:
        pytest.skip(f"bubblewrap cannot run here: {done.stderr.strip()}")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        f"orchestrate: error: {plan_file}: cannot write the plan: Read-only file system"
    )
    assert len(done.stderr.strip().splitlines()) == 1
    assert plan_file.read_bytes() == b"# Plan\n\n- [ ] T1 a task\n"


def test_shell_completion_completes_commands_through_the_console_script(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "_ORCHESTRATE_COMPLETE": "complete_bash",
        "COMP_WORDS": "orchestrate ru",
        "COMP_CWORD": "1",
    }
    done = subprocess.run(
        [str(ORCHESTRATE)], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["run", "runs"]
    # typer finds the shell among the process's ancestors (shellingham): run it from bash, as a
    # user would, not from whatever started the tests (a detached job has no shell above it).
    script = subprocess.run(
        ["bash", "-c", f"{shlex.quote(str(ORCHESTRATE))} --show-completion; true"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "_orchestrate_completion" in script.stdout


def test_help_groups_the_commands() -> None:
    shown = runner.invoke(app, ["--help"], env={"COLUMNS": "100"})
    assert shown.exit_code == 0
    plan_panel = shown.output.index("Read and edit a plan")
    run_panel = shown.output.index("Run a plan")
    assert plan_panel < shown.output.index(" lint ") < run_panel < shown.output.index(" resume ")


@pytest.mark.parametrize("command", [[], ["run"], ["lint"], ["demo"], ["resume"]])
def test_help_shows_no_type_beside_a_flag(command: list[str]) -> None:
    # `--dry-run <bool>` read as if the flag took a value; options that take one keep their type.
    shown = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert shown.exit_code == 0
    assert "<bool>" not in shown.output
    if command == ["run"]:
        assert re.search(r"--max-cost\s+<float>", shown.output)
        assert re.search(r"--dry-run\s+Show the schedule", shown.output)
