"""What a unit's prompt carries (issue 12 item 6): the plan's preamble and global rules in a system
prompt that is byte-identical for every task of a run (so the prompt cache carries it over), and
in the first message the unit with its steps and files, one line per sibling, and what finished
dependencies changed, with their worker's report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orchestrator.engine.prompts import PromptRenderer
from orchestrator.planfile import parse_plan
from tests.conftest import make_repo, orchestrate
from tests.fakes.messages_server import (
    TEST_KEY,
    TEST_MODEL,
    FakeMessagesServer,
    RecordedRequest,
    Response,
    finish,
    tool_call,
)

PLAN = """\
# Greeting Implementation Plan

**Goal:** A greeting module and its notes.

**Architecture:** One module, `greet.py`, and plain text notes.

## Global Constraints

- Never print to stdout from library code.
- Every file ends with a newline.

## Tasks

### Task 1: The greet module

**Files:**
- Create: `greet.py`

- [ ] **Step 1: Write greet**

Write `greet(name)` returning `Hello, name!`.

- [ ] **Step 2: Check it**

Run: `python3 -c "import greet; assert greet.greet('Ann') == 'Hello, Ann!'"`
Expected: PASS

### Task 2: The notes

**Files:**
- Create: `notes/one.txt`

- [ ] **Step 1: Write the notes**

Run: `test -f notes/one.txt`
Expected: PASS

### Task 3: More notes

**Files:**
- Create: `notes/two.txt`

- [ ] **Step 1: Write them**

Run: `test -f notes/two.txt`
Expected: PASS
"""

WORK = {
    "task-1": ("greet.py", "def greet(name):\n    return f'Hello, {name}!'\n"),
    "task-2": ("notes/one.txt", "one\n"),
    "task-3": ("notes/two.txt", "two\n"),
}


def _first_message(request: RecordedRequest) -> str:
    content = request.body["messages"][0]["content"]
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


def _task_of(request: RecordedRequest) -> str:
    found = re.search(r"## Your task: (\S+)", _first_message(request))
    assert found is not None
    return found.group(1)


def model(request: RecordedRequest) -> Response:
    """Turn 1 writes the unit's file, turn 2 reports done."""
    path, content = WORK[_task_of(request)]
    if len(request.body["messages"]) == 1:
        return tool_call("write_file", {"path": path, "content": content}, say=f"Writing {path}.")
    return finish("done", f"wrote {path} for the plan")


def _system_text(request: RecordedRequest) -> str:
    system = request.body["system"]
    return system if isinstance(system, str) else "".join(b["text"] for b in system)


@pytest.mark.parametrize("parallel", ["1", "2"])
def test_every_task_of_a_run_sends_the_same_system_prompt(tmp_path: Path, parallel: str) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# greeting\n", "plan.md": PLAN})
    with FakeMessagesServer() as api:
        api.respond_with(model)
        done = orchestrate(
            repo,
            *("run", "plan.md", "--agent", "anthropic", "--model", TEST_MODEL, "--parallel", parallel),
            env={
                "ANTHROPIC_BASE_URL": api.url,
                "ANTHROPIC_API_KEY": TEST_KEY,
                "ORCHESTRATE_MAX_RETRIES": "0",
            },
        )
        requests = api.message_requests
    assert done.returncode == 0, done.stderr
    assert sorted({_task_of(r) for r in requests}) == ["task-1", "task-2", "task-3"]

    # Byte for byte, cache markers included: what the prompt cache keys on.
    systems = {json.dumps(r.body["system"], sort_keys=True) for r in requests}
    assert len(systems) == 1
    system = _system_text(requests[0])
    assert "**Goal:** A greeting module and its notes." in system
    assert "Never print to stdout from library code." in system
    # Nothing of one task in it: its checks and its workspace are in its first message.
    assert "notes/one.txt" not in system
    assert str(repo) not in system

    first = {_task_of(r): _first_message(r) for r in requests if len(r.body["messages"]) == 1}
    assert "- `test -f notes/one.txt`" in first["task-2"]
    assert "Files named for this task:\n- notes/one.txt" in first["task-2"]
    assert "- task-1 The greet module" in first["task-2"]  # a sibling, one line
    assert "- task-3 More notes" in first["task-2"]
    assert "Write `greet(name)`" not in first["task-2"]  # a sibling's body is not this unit's
    # What the finished dependency changed, and what its worker said.
    assert "- task-1 The greet module: changed greet.py" in first["task-2"]
    assert "Its worker said: wrote greet.py for the plan" in first["task-2"]


def test_a_unit_prompt_has_its_steps_and_a_dependency_done_before_the_run(tmp_path: Path) -> None:
    plan_text = PLAN.replace("- [ ] **Step 1: Write greet**", "- [x] **Step 1: Write greet**").replace(
        "- [ ] **Step 2: Check it**", "- [x] **Step 2: Check it**"
    )
    repo = make_repo(tmp_path / "repo", {"plan.md": plan_text})
    plan = parse_plan(repo / "plan.md")
    task = plan.task("task-2")
    assert task is not None
    rendered = PromptRenderer(repo, repo / "plan.md").render(plan, task, task.verify)

    assert "- [ ] Step 1: Write the notes" in rendered.prompt
    assert "- task-1 The greet module (done before this run)" in rendered.prompt
    assert "- task-1 The greet module (done)" in rendered.prompt  # and as a sibling, done
    assert rendered.system == PromptRenderer(repo, repo / "plan.md").render(plan, plan.tasks[2], []).system


def test_the_seed_prompt_gives_each_sub_agent_its_criteria_and_the_global_standards(
    shared_plans: Path,
) -> None:
    path = shared_plans / "seed-orchestrator-prompt.md"
    plan = parse_plan(path)
    task = plan.task("3a")
    assert task is not None
    rendered = PromptRenderer(shared_plans, path).render(plan, task, task.verify)

    assert "## Verification Standards (from the plan; applies to every task)" in rendered.system
    assert "No `any` types used" in rendered.system
    assert "## Common Pitfalls (AVOID THESE)" in rendered.system
    assert "## Your task: 3a AudioSageAgent Real-Time Refactor" in rendered.prompt
    assert "- [ ] TypeScript compiles without errors (criterion; no command checks it)" in rendered.prompt
    assert "- 3b Configuration Management" in rendered.prompt
    assert "Sub-Agent 3B" not in rendered.prompt
    others = [t for t in plan.tasks if t.id != "3a"]
    assert all(
        PromptRenderer(shared_plans, path).render(plan, t, t.verify).system == rendered.system for t in others
    )


def test_a_dependency_an_earlier_run_finished_is_named_with_its_files(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# greeting\n", "plan.md": PLAN})
    with FakeMessagesServer() as api:
        api.respond_with(model)
        env = {"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": TEST_KEY, "ORCHESTRATE_MAX_RETRIES": "0"}
        args = ("run", "plan.md", "--agent", "anthropic", "--model", TEST_MODEL)
        first = orchestrate(repo, *args, "--task", "task-1", env=env)
        assert first.returncode == 0, first.stderr
        second = orchestrate(repo, *args, env=env)
        assert second.returncode == 0, second.stderr
        requests = api.message_requests
    prompt = next(_first_message(r) for r in requests if _task_of(r) == "task-2")
    assert "- task-1 The greet module: changed greet.py (done before this run)" in prompt
