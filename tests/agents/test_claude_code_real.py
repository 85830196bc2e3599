"""The real `claude` CLI (npm @anthropic-ai/claude-code), where installed, against the fake Messages
API on 127.0.0.1: what the fake-CLI tests replay must hold for the real one. Skipped without it."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.agents.base import AgentConfigError, AgentRequest, AgentStatus, AgentUnavailable
from orchestrator.agents.claude_code import ClaudeCodeAgent
from orchestrator.config import Settings
from orchestrator.tools.sandbox import detect_sandbox
from tests.conftest import git, make_repo, needs_bwrap, orchestrate
from tests.fakes.listener import Recorder
from tests.fakes.messages_server import (
    FakeMessagesServer,
    RecordedRequest,
    Response,
    Slow,
    Status,
    overloaded,
    text,
    tool_call,
)

REAL_CLAUDE = shutil.which("claude")
pytestmark = pytest.mark.skipif(
    REAL_CLAUDE is None,
    reason="the real claude CLI is not installed (npm install -g @anthropic-ai/claude-code)",
)
# One retry, not ten: an outage or a bad key is seen in seconds.
# No traffic but to the fake API (no update checks, no telemetry: this machine has no internet).
SETTINGS: dict[str, Any] = {
    "agent": "claude-code",
    "agent_env": ["CLAUDE_CODE_MAX_RETRIES", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"],
}


def agent(**overrides: Any) -> ClaudeCodeAgent:
    assert REAL_CLAUDE is not None
    return ClaudeCodeAgent(REAL_CLAUDE, Settings(**{**SETTINGS, **overrides}))


def tool_results(request: RecordedRequest) -> int:
    return sum(
        1
        for m in request.body.get("messages", [])
        if m["role"] == "user"
        and isinstance(m["content"], list)
        and any(b.get("type") == "tool_result" for b in m["content"])
    )


def worker(request: RecordedRequest) -> Response:
    """Writes hello.py, runs it with Bash, reports; any call without tools (a title) gets a title."""
    if not request.body.get("tools"):
        return text('{"title": "Create hello"}')
    done = tool_results(request)
    if done == 0:
        return tool_call("Write", {"file_path": "hello.py", "content": "print('hello')\n"}, say="Writing.")
    if done == 1:
        return tool_call("Bash", {"command": "python3 hello.py > ran.txt && echo ok", "description": "run"})
    return text("Created hello.py and ran it.")


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Any:
    with FakeMessagesServer() as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0123456789abcdef")
        monkeypatch.setenv("CLAUDE_CODE_MAX_RETRIES", "1")
        monkeypatch.setenv("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        yield server


def request(workspace: Path, **overrides: Any) -> AgentRequest:
    base: dict[str, Any] = {
        "task_id": "T001",
        "system_prompt": "You are careful.",
        "prompt": "-- Create hello.py and run it.",  # a leading dash is no flag: it goes through stdin
        "workspace": workspace,
        "max_turns": 10,
    }
    return AgentRequest(**{**base, **overrides})


def test_a_real_session_does_the_work_and_runs_its_checks(
    api: Any, tmp_path: Path, recorder: Recorder
) -> None:
    api.respond_with(worker)
    outcome = agent().run(request(tmp_path), recorder)
    assert outcome.status == AgentStatus.DONE, outcome.summary
    assert (tmp_path / "hello.py").read_text() == "print('hello')\n"
    assert (tmp_path / "ran.txt").read_text() == "hello\n"  # Bash was allowed: its check ran
    assert "refused" not in outcome.summary
    assert outcome.usage.cost_usd > 0
    assert outcome.usage.input_tokens + outcome.usage.cache_creation_input_tokens > 0
    (spent,) = recorder.of("model_call")
    assert spent.session_over
    first = api.message_requests[0].body
    assert "-- Create hello.py and run it." in json.dumps(first["messages"])


@needs_bwrap
def test_a_real_session_under_bubblewrap(api: Any, tmp_path: Path, recorder: Recorder) -> None:
    api.respond_with(worker)
    sandbox = detect_sandbox("bubblewrap")
    outcome = agent().run(request(tmp_path, sandbox=sandbox), recorder)
    assert outcome.status == AgentStatus.DONE, outcome.summary
    assert (tmp_path / "ran.txt").read_text() == "hello\n"


def test_a_real_outage_is_a_resumable_stop(api: Any, tmp_path: Path, recorder: Recorder) -> None:
    api.respond_with(lambda _: overloaded())
    with pytest.raises(AgentUnavailable, match=r"the API was unavailable for claude-code .*\(529"):
        agent().run(request(tmp_path), recorder)


def test_a_real_bad_key_is_found_by_the_probe(api: Any) -> None:
    api.respond_with(lambda _: Status(401, "authentication_error", "invalid x-api-key"))
    started = time.monotonic()
    with pytest.raises(AgentConfigError, match=r"cannot use its key \(401: Invalid API key"):
        agent().check_ready(None)
    assert time.monotonic() - started < 60  # not ten retries over minutes


def test_a_real_cli_without_a_key_is_not_logged_in(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(AgentConfigError, match="claude-code is not logged in"):
        agent().check_ready(None)
    assert api.message_requests == []


@pytest.mark.parametrize("sandbox", ["none", pytest.param("bubblewrap", marks=needs_bwrap)])
def test_a_real_probe_passes_with_a_good_key(api: Any, sandbox: str) -> None:
    api.respond_with(lambda _: text("OK"))
    agent().check_ready(detect_sandbox(sandbox))  # type: ignore[arg-type]
    assert api.message_requests
    for sent in api.message_requests:
        assert not sent.body.get("tools")  # nothing the model says can act


def test_the_real_budget_stop_is_reported_live(api: Any, tmp_path: Path, recorder: Recorder) -> None:
    api.respond_with(worker)
    outcome = agent().run(request(tmp_path, max_cost=0.01), recorder)
    assert outcome.status == AgentStatus.FAILED
    assert "reached the budget it was given" in outcome.summary
    (spent,) = recorder.of("model_call")
    assert not spent.session_over
    assert spent.usage is not None
    assert spent.usage.cost_usd > 0.01


def test_a_real_timeout_keeps_what_was_spent(api: Any, tmp_path: Path, recorder: Recorder) -> None:
    def slow_second_turn(request: RecordedRequest) -> Response:
        if request.body.get("tools") and tool_results(request) >= 1:
            return Slow(60, text("too late"))
        return worker(request)

    api.respond_with(slow_second_turn)
    outcome = agent(agent_timeout=20).run(request(tmp_path), recorder)  # its first call served by then
    assert outcome.status == AgentStatus.FAILED
    assert outcome.summary.startswith("claude timed out after 20s")
    assert outcome.usage.calls >= 1
    assert outcome.usage.cost_usd > 0


def test_real_root_bypass_permissions(api: Any, tmp_path: Path, recorder: Recorder) -> None:
    if os.geteuid() != 0:
        pytest.skip("the CLI refuses bypassPermissions only as root")
    api.respond_with(worker)
    outcome = agent(claude_permission_mode="bypassPermissions").run(request(tmp_path), recorder)
    assert outcome.status == AgentStatus.DONE, outcome.summary
    assert (tmp_path / "ran.txt").exists()


PLAN = """\
# Plan

## Phase 1: Files

- [ ] T001 Create `a.txt`
  - Verify: `test -f a.txt`
- [ ] T002 Create `b.txt`
  - Verify: `test -f b.txt`
"""


def two_tasks(request: RecordedRequest) -> Response:
    """Each task: write its file, look at it with Bash, report."""
    if not request.body.get("tools"):
        return text('{"title": "Create a file"}')
    task = re.search(r"task: (T00\d)", json.dumps(request.body["messages"][0]))
    name = "a.txt" if task and task.group(1) == "T001" else "b.txt"
    done = tool_results(request)
    if done == 0:
        return tool_call("Write", {"file_path": name, "content": "x\n"})
    if done == 1:
        return tool_call("Bash", {"command": f"cat {name}", "description": "check"})
    return text(f"Created {name}.")


def test_a_real_run_commits_each_task_and_records_what_it_cost(api: Any, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"plan.md": PLAN, ".gitignore": "checkpoints/\n"})
    api.respond_with(two_tasks)
    env = {"ORCHESTRATE_AGENT_ENV": json.dumps(SETTINGS["agent_env"])}  # bubblewrap where it works
    done = orchestrate(repo, "run", "plan.md", "--agent", "claude-code", "--max-cost", "5", env=env)
    assert done.returncode == 0, done.stderr
    trailers = git(repo, "log", "--reverse", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split()
    assert trailers == ["T001", "T002"]
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["b.txt", "plan.md"]
    shown = json.loads(orchestrate(repo, "show", "--json").stdout)
    assert shown["usage"]["cost_usd"] > 0
    assert shown["tasks"]["T001"]["usage"]["cache_creation_input_tokens"] > 0
