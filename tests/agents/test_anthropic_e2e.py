"""`orchestrate run --agent anthropic`, the real CLI in a subprocess, against the fake Messages API.

The fake plays a model that does each task with real tool calls (write the file, run the task's
check), then reports done; the engine verifies, ticks and commits.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git, make_repo, orchestrate
from tests.fakes.messages_server import (
    TEST_KEY,
    TEST_MODEL,
    FakeMessagesServer,
    RecordedRequest,
    Response,
    Status,
    finish,
    overloaded,
    simulated_usage,
    tool_call,
)

PLAN = """\
# Plan: greeting tool

## Phase 1: Basics

- [ ] T001 Create `greet.py` with a `greet(name)` function
  - Verify: `python3 -c "import greet; assert greet.greet('Ann') == 'Hello, Ann!'"`
- [ ] T002 Add `notes/one.txt`
  - Verify: `test -f notes/one.txt`
"""

WORK = {
    "T001": (
        "greet.py",
        "def greet(name):\n    return f'Hello, {name}!'\n",
        "python3 -c \"import greet; print(greet.greet('Ann'))\"",
    ),
    "T002": ("notes/one.txt", "one\n", "cat notes/one.txt"),
}


def model(request: RecordedRequest) -> Response:
    """Turn 1 writes the task's file, turn 2 runs a check, turn 3 reports done."""
    messages = request.body["messages"]
    task = re.search(r"## Your task: (\S+)", messages[0]["content"][0]["text"])
    assert task is not None, messages[0]
    path, content, check = WORK[task.group(1)]
    turn = (len(messages) + 1) // 2
    if turn == 1:
        return tool_call("write_file", {"path": path, "content": content}, say=f"Writing {path}.")
    if turn == 2:
        return tool_call("run_command", {"command": check})
    return finish("done", f"{path} written and checked")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "repo", {"README.md": "# greeting\n", ".gitignore": "__pycache__/\n", "plan.md": PLAN}
    )


def api_env(api: FakeMessagesServer) -> dict[str, str]:
    return {"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": TEST_KEY, "ORCHESTRATE_MAX_RETRIES": "0"}


def trailers(repo: Path) -> list[str]:
    return git(repo, "log", "--reverse", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split()


def test_run_ticks_commits_and_records_usage_and_cost(repo: Path) -> None:
    with FakeMessagesServer() as api:
        api.respond_with(model)
        done = orchestrate(
            repo, "run", "plan.md", "--agent", "anthropic", "--model", TEST_MODEL, env=api_env(api)
        )
        assert done.returncode == 0, done.stderr
        assert len(api.message_requests) == 6  # three turns per task

    assert "- [x] T001" in (repo / "plan.md").read_text()
    assert "- [x] T002" in (repo / "plan.md").read_text()
    assert trailers(repo) == ["T001", "T002"]
    assert (repo / "greet.py").read_text().startswith("def greet(name):")
    assert git(repo, "status", "--porcelain") == ""
    first = api.message_requests[0].body
    assert first["model"] == TEST_MODEL
    assert "cache_control" in first["system"][-1]
    assert TEST_KEY not in done.stdout + done.stderr
    # The second task's first call reads what the first task cached: tools and system prompt are
    # the same for every task of a run, under one breakpoint.
    seen: set[str] = set()
    usages = [simulated_usage(r.body, seen) for r in api.message_requests]
    prefix = json.dumps([*first["tools"], *first["system"]])
    assert usages[3]["cache_read_input_tokens"] * 4 >= len(prefix) * 0.9

    shown = orchestrate(repo, "show", "--json")
    assert shown.returncode == 0, shown.stderr
    report: dict[str, Any] = json.loads(shown.stdout)
    text = json.dumps(report)
    assert TEST_KEY not in text
    tasks = report["tasks"]
    for task_id in ("T001", "T002"):
        usage = tasks[task_id]["usage"]
        assert usage["calls"] == 3
        assert (
            usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
            > 0
        )
        assert usage["cost_usd"] > 0
    assert report["usage"]["cost_usd"] == pytest.approx(sum(t["usage"]["cost_usd"] for t in tasks.values()))
    human = orchestrate(repo, "show")
    assert human.returncode == 0
    cost = tasks["T001"]["usage"]["cost_usd"]
    assert f"T001: done commit {git(repo, 'rev-parse', '--short=10', 'HEAD~1')}" in human.stdout
    assert f"${cost:.4f}" in human.stdout


def test_an_overloaded_api_stops_the_run_resumably_and_resume_finishes_it(repo: Path) -> None:
    with FakeMessagesServer() as api:
        api.respond_with(lambda request: overloaded())
        stopped = orchestrate(
            repo, "run", "plan.md", "--agent", "anthropic", "--model", TEST_MODEL, env=api_env(api)
        )
        assert stopped.returncode == 3, stopped.stderr  # stopped, resumable
        assert "overloaded" in stopped.stderr
        assert "orchestrate resume" in stopped.stderr
        assert "Traceback" not in stopped.stderr
        assert len(api.message_requests) == 1  # it stopped instead of failing every task
        assert "- [ ] T001" in (repo / "plan.md").read_text()

        api.respond_with(model)
        resumed = orchestrate(repo, "resume", env=api_env(api))
        assert resumed.returncode == 0, resumed.stderr
    assert trailers(repo) == ["T001", "T002"]


def test_without_a_key_run_refuses_at_once_but_dry_run_needs_none(repo: Path) -> None:
    refused = orchestrate(repo, "run", "plan.md", "--agent", "anthropic")
    assert refused.returncode == 2
    assert "ANTHROPIC_API_KEY is not set" in refused.stderr
    assert "Traceback" not in refused.stderr
    dry = orchestrate(repo, "run", "plan.md", "--agent", "anthropic", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert git(repo, "status", "--porcelain") == ""


def test_a_rejected_key_is_refused_before_the_first_task(repo: Path) -> None:
    # count_tokens is free: the key is checked without a model call.
    with FakeMessagesServer() as api:
        api.count_tokens = lambda _: Status(401, "authentication_error", "invalid x-api-key")
        refused = orchestrate(repo, "run", "plan.md", env=api_env(api))
        assert api.message_requests == []
    assert refused.returncode == 2, refused.stderr
    assert "the API rejected the key (401: invalid x-api-key); set ANTHROPIC_API_KEY" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert trailers(repo) == []


def test_a_key_rejected_mid_run_stops_it_resumably(repo: Path) -> None:
    # A gateway without count_tokens (404) decides nothing before the run; the 401 comes later.
    with FakeMessagesServer() as api:
        api.respond_with(lambda _: Status(401, "authentication_error", "invalid x-api-key"))
        stopped = orchestrate(repo, "run", "plan.md", "--max-attempts", "1", env=api_env(api))
    assert stopped.returncode == 3, stopped.stderr  # stopped, resumable
    assert "Traceback" not in stopped.stderr
    assert "the API rejected the key (401: invalid x-api-key)" in stopped.stderr
    assert "orchestrate resume" in stopped.stderr
    assert "0 failed" in stopped.stderr


def test_work_finished_on_the_call_that_passes_the_budget_is_committed(repo: Path) -> None:
    # The report that ends a task costs more than the budget left: the task's work is done, so it is
    # verified and committed; the next task does not start.
    def dear_report(request: RecordedRequest) -> Response:
        reply = model(request)
        if reply.content[-1].get("name") == "finish":
            reply.usage = {"input_tokens": 100_000, "output_tokens": 10}  # $0.30
        return reply

    with FakeMessagesServer() as api:
        api.respond_with(dear_report)
        stopped = orchestrate(repo, "run", "plan.md", "--max-cost", "0.05", env=api_env(api))
    assert stopped.returncode == 3, stopped.stderr
    assert "budget reached" in stopped.stderr
    assert trailers(repo) == ["T001"]
