"""Units of work end to end, through the installed CLI with the scripted agent (issue 12 item 1):
a superpowers plan runs one agent call and one commit per `### Task`, ticking all of its step boxes
in that commit and verified by its PASS commands; a box-less heading plan completes with the plan
file byte-identical and `status` showing it done from the commits' trailers; a kill in the middle
of each, then `resume`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.planfile import parse_plan
from tests.conftest import git, make_repo, orchestrate

SUPERPOWERS = """\
# Greeter Implementation Plan

**Goal:** a greeter.

---

### Task 1: The greeting

**Files:**
- Create: `greet.py`
- Test: `check_greet.py`

- [ ] **Step 1: Write the failing check**

- [ ] **Step 2: Run it to verify it fails**

Run: `python3 -c "import greet"`
Expected: FAIL with ModuleNotFoundError

- [ ] **Step 3: Write the function**

- [ ] **Step 4: Run it to verify it passes**

Run: `python3 check_greet.py`
Expected: PASS

- [ ] **Step 5: Commit**

```bash
git add greet.py check_greet.py
git commit -m "feat: greet"
```

### Task 2: Shouting

- [ ] **Step 1: Add shout()**

- [ ] **Step 2: Verify**

Run: `cd /Users/nobody/Projects/greeter && python3 -c "import greet; assert greet.shout('a') == 'HELLO, A!'"`
Expected: PASS
"""

SUPERPOWERS_SCRIPT = {
    "task-1": [
        {"write": "check_greet.py", "content": "import greet\nassert greet.greet('Ann') == 'Hello, Ann!'\n"},
        {"write": "greet.py", "content": "def greet(name):\n    return f'Hello, {name}!'\n"},
    ],
    "task-2": [{"append": "greet.py", "content": "\n\ndef shout(name):\n    return greet(name).upper()\n"}],
}

HEADINGS = """\
# Storage Rework

Tasks 1-2 can be done in parallel (different files). Task 3 depends on 1+2.

### Task 1: Reader

Create `reader.txt`.

Run: `test -f reader.txt`

### Task 2: Writer

Create `writer.txt`.

### Task 3: Glue

Run: `test -f reader.txt && test -f writer.txt && test -f glue.txt`
"""

HEADINGS_SCRIPT = {
    "task-1": [{"write": "reader.txt", "content": "reader\n"}],
    "task-2": [{"write": "writer.txt", "content": "writer\n"}],
    "task-3": [{"write": "glue.txt", "content": "glue\n"}],
}


def project(tmp_path: Path, plan: str, script: dict[str, object]) -> tuple[Path, Path]:
    repo = make_repo(
        tmp_path / "repo", {"README.md": "# r\n", ".gitignore": "__pycache__/\n", "plan.md": plan}
    )
    script_path = tmp_path / "script.json"
    script_path.write_text(json.dumps(script))
    return repo, script_path


def run(repo: Path, script: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = orchestrate(
        repo, "run", "plan.md", "--agent", "scripted", "--script", str(script), *extra, env=env
    )
    return done.returncode, done.stdout + done.stderr


def resume(repo: Path) -> tuple[int, str]:
    done = orchestrate(repo, "resume")
    return done.returncode, done.stdout + done.stderr


def unit_commits(repo: Path) -> list[tuple[str, str]]:
    """(sha, Orchestrate-Task) of each commit that carries the trailer, oldest first."""
    raw = git(repo, "log", "--reverse", "--format=%H%x1f%(trailers:key=Orchestrate-Task,valueonly)%x1e")
    rows = [record.strip("\n ").split("\x1f") for record in raw.split("\x1e") if record.strip("\n ")]
    return [(sha, task.strip()) for sha, task in rows if task.strip()]


def changed_bytes(before: bytes, after: bytes) -> list[int]:
    assert len(before) == len(after)
    return [i for i in range(len(before)) if before[i] != after[i]]


def journal(repo: Path) -> list[dict[str, object]]:
    files = sorted((repo / "checkpoints").glob("*/journal.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]


def check_superpowers_outcome(repo: Path, original: bytes) -> None:
    commits = unit_commits(repo)
    assert [task for _, task in commits] == ["task-1", "task-2"]  # one commit per ### Task
    plan = parse_plan(repo / "plan.md")
    assert all(t.checked for t in plan.tasks)
    first, second = (parse_plan(repo / "plan.md").task(i) for i in ("task-1", "task-2"))
    assert first is not None
    assert second is not None
    # The unit's commit ticks all of its step boxes, one byte each, and nothing else of the plan.
    before_1 = git(repo, "show", f"{commits[0][0]}~1:plan.md").encode()
    after_1 = git(repo, "show", f"{commits[0][0]}:plan.md").encode()
    after_2 = git(repo, "show", f"{commits[1][0]}:plan.md").encode()
    assert before_1 + b"\n" == original or before_1 == original.rstrip(b"\n")
    assert changed_bytes(before_1, after_1) == first.box_offsets
    assert changed_bytes(after_1, after_2) == second.box_offsets
    assert sorted(git(repo, "show", "--name-only", "--format=", commits[0][0]).split()) == [
        "check_greet.py",
        "greet.py",
        "plan.md",
    ]
    assert git(repo, "status", "--porcelain") == ""


def test_superpowers_plan_one_agent_call_and_one_commit_per_task(tmp_path: Path) -> None:
    repo, script = project(tmp_path, SUPERPOWERS, SUPERPOWERS_SCRIPT)
    original = (repo / "plan.md").read_bytes()
    code, out = run(repo, script)
    assert code == 0, out
    check_superpowers_outcome(repo, original)
    records = journal(repo)
    # One agent call per unit.
    assert [r["task"] for r in records if r["type"] == "task_running"] == ["task-1", "task-2"]
    prompts = sorted(p.name for p in (repo / "checkpoints").glob("*/prompts/*.md"))
    assert prompts == ["task-1.attempt-1.md", "task-2.attempt-1.md"]
    # Verified by its PASS command; the red step's command is not a final check.
    ran = [(r["task"], r["command"], r["ok"]) for r in records if r["type"] == "verification"]
    assert ("task-1", "python3 check_greet.py", True) in ran
    assert not any(command == 'python3 -c "import greet"' for _, command, _ in ran)
    # The author's `cd /Users/...` ran from the repository root, with a note.
    shout = next(r for r in records if r["type"] == "verification" and r["task"] == "task-2")
    assert shout["ok"] is True
    assert "/Users/nobody/Projects/greeter does not exist here" in str(shout["output_tail"])


def test_box_less_heading_plan_completes_with_the_plan_byte_identical(tmp_path: Path) -> None:
    repo, script = project(tmp_path, HEADINGS, HEADINGS_SCRIPT)
    original = (repo / "plan.md").read_bytes()
    assert "3 tasks, 0 done" in orchestrate(repo, "parse", "plan.md").stdout
    code, out = run(repo, script)
    assert code == 0, out
    assert (repo / "plan.md").read_bytes() == original
    commits = unit_commits(repo)
    assert sorted(task for _, task in commits) == ["task-1", "task-2", "task-3"]
    assert commits[-1][1] == "task-3"  # it waits for both
    status = orchestrate(repo, "status", "plan.md")
    assert status.returncode == 0
    assert "3 of 3 tasks done" in status.stdout
    assert json.loads(orchestrate(repo, "next", "plan.md", "--json").stdout)["tasks"] == []
    graph = json.loads(orchestrate(repo, "graph", "plan.md", "--format", "json").stdout)
    assert all(node["checked"] for node in graph["nodes"])
    assert orchestrate(repo, "lint", "plan.md").returncode == 0
    # The dry-run reads the plan as a run's pre-flight does: the trailers make the units done.
    dry = json.loads(orchestrate(repo, "run", "plan.md", "--dry-run", "--json").stdout)
    assert dry["waves"] == []
    assert dry["already_done"] == ["task-1", "task-2", "task-3"]
    # A new run finds nothing to do: the trailers say so, not the file.
    again_code, again = run(repo, script)
    assert again_code == 0, again
    assert len(unit_commits(repo)) == 3
    assert (repo / "plan.md").read_bytes() == original


def test_box_less_unit_cannot_be_ticked_by_hand(tmp_path: Path) -> None:
    repo, _ = project(tmp_path, HEADINGS, HEADINGS_SCRIPT)
    done = orchestrate(repo, "tick", "plan.md", "task-2")
    assert done.returncode == 2
    assert "has no box to tick" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("point", ["after_agent", "after_tick", "after_commit"])
def test_superpowers_plan_killed_mid_unit_then_resumed(tmp_path: Path, point: str) -> None:
    repo, script = project(tmp_path, SUPERPOWERS, SUPERPOWERS_SCRIPT)
    original = (repo / "plan.md").read_bytes()
    code, out = run(repo, script, env={"ORCHESTRATE_CRASH_AT": f"{point}:task-2"})
    assert code == 137, out
    code, out = resume(repo)
    assert code == 0, out
    check_superpowers_outcome(repo, original)


@pytest.mark.parametrize("point", ["after_verified", "after_commit"])
def test_box_less_plan_killed_mid_unit_then_resumed(tmp_path: Path, point: str) -> None:
    repo, script = project(tmp_path, HEADINGS, HEADINGS_SCRIPT)
    original = (repo / "plan.md").read_bytes()
    code, out = run(repo, script, env={"ORCHESTRATE_CRASH_AT": f"{point}:task-2"})
    assert code == 137, out
    assert (repo / "plan.md").read_bytes() == original
    code, out = resume(repo)
    assert code == 0, out
    assert (repo / "plan.md").read_bytes() == original
    assert sorted(task for _, task in unit_commits(repo)) == ["task-1", "task-2", "task-3"]  # each once
    assert "3 of 3 tasks done" in orchestrate(repo, "status", "plan.md").stdout
    assert git(repo, "status", "--porcelain") == ""


CHECK_TASKS = """\
# Tasks

## Phase 1: Work

- [ ] T001 Run `test -f ready.txt`
- [ ] T002 Run `test -f missing.txt`
"""


def test_a_check_task_is_run_by_orchestrate_and_given_to_an_agent_only_when_it_fails(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "ready.txt": "yes\n", "plan.md": CHECK_TASKS})
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"T002": [{"write": "missing.txt", "content": "now\n"}]}))
    code, out = run(repo, script)
    assert code == 0, out
    assert all(t.checked for t in parse_plan(repo / "plan.md").tasks)
    records = journal(repo)
    assert [r["task"] for r in records if r["type"] == "task_running"] == ["T002"]  # T001 passed as it was
    assert [task for _, task in unit_commits(repo)] == ["T001", "T002"]
    prompt = next((repo / "checkpoints").glob("*/prompts/T002.attempt-1.md")).read_text()
    assert "test -f missing.txt" in prompt


def test_a_plan_with_no_task_of_any_kind(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"plan.md": "# Notes\n\nIdeas only.\n\n## Later\n\n- a logo\n"})
    parsed = orchestrate(repo, "parse", "plan.md")
    assert parsed.returncode == 0
    assert "0 tasks" in parsed.stdout
    assert "no task found" in parsed.stdout
    assert orchestrate(repo, "parse", "--json", "plan.md").returncode == 0
    linted = orchestrate(repo, "lint", "plan.md")
    assert linted.returncode == 1
    assert "no task found" in linted.stdout
    code, out = run(repo, tmp_path / "unused.json")
    assert code == 2
    assert "no task found" in out
    assert "Traceback" not in out
