"""The run's rate gate, with the real SDK against the fake Messages API: agents on threads that share
one LocalRateGate wait out each other's 429s and keep to the run's requests_per_minute together,
keep-alives included. Times are the server's: when each request arrived."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.agents.base import (
    AgentEvent,
    AgentOutcome,
    AgentRequest,
    AgentStatus,
    RateGate,
    ReviewRequest,
)
from orchestrator.agents.rate import LocalRateGate, retry_after_said
from orchestrator.agents.registry import create_agent, create_reviewer
from orchestrator.config import Settings
from tests.conftest import git, make_repo, orchestrate
from tests.fakes.listener import Recorder
from tests.fakes.messages_server import (
    TEST_KEY,
    TEST_MODEL,
    FakeMessagesServer,
    RecordedRequest,
    Response,
    finish,
    rate_limited,
    tool_call,
)

SLACK = 0.05
"""Seconds a request may arrive early against its slot: the gate times the send, the server the
arrival, and the two clocks are one (time.monotonic) but read a little apart."""


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "agent": "anthropic",
        "model": TEST_MODEL,
        "max_retries": 0,
        "request_timeout": 5.0,
        "sandbox": "none",
    }
    return Settings(**{**base, **overrides})


def agent_request(workspace: Path, who: str, gate: RateGate | None) -> AgentRequest:
    return AgentRequest(
        task_id=who,
        system_prompt="You are a careful engineer.",
        prompt=f"Task for agent {who}.",
        workspace=workspace,
        max_turns=10,
        command_timeout=10.0,
        rate_gate=gate,
    )


def of(api: FakeMessagesServer, who: str) -> list[RecordedRequest]:
    """The requests of agent `who`, keep-alives aside, in order of arrival."""
    return [
        r
        for r in api.message_requests
        if r.body["max_tokens"] != 1 and r.body["messages"][0]["content"][0]["text"].endswith(f"{who}.")
    ]


def in_thread(job: Callable[[], AgentOutcome]) -> tuple[threading.Thread, list[AgentOutcome]]:
    done: list[AgentOutcome] = []
    thread = threading.Thread(target=lambda: done.append(job()), daemon=True)
    thread.start()
    return thread, done


def read_then_finish(request: RecordedRequest) -> Response:
    """Each agent: one tool call, then done (two requests)."""
    if len(request.body["messages"]) == 1:
        return tool_call("read_file", {"path": "README.md"})
    return finish()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# demo\n"})


def test_a_429_one_agent_meets_holds_the_other_off_as_long(fake_api: FakeMessagesServer, repo: Path) -> None:
    gate = LocalRateGate(None)
    agent = create_agent(settings())
    fake_api.script(rate_limited(retry_after=1))
    fake_api.respond_with(lambda _: finish())
    refused = threading.Event()

    def listener_a(event: AgentEvent) -> None:
        if event.kind == "progress" and "rate limited" in event.detail:
            refused.set()  # said once A has held the gate off

    thread, done_a = in_thread(lambda: agent.run(agent_request(repo, "A", gate), listener_a))
    assert refused.wait(10)
    outcome_b = agent.run(agent_request(repo, "B", gate), Recorder())
    thread.join(10)

    assert outcome_b.status == AgentStatus.DONE
    assert [o.status for o in done_a] == [AgentStatus.DONE]
    first_a, retry_a = of(fake_api, "A")
    (first_b,) = of(fake_api, "B")
    # B never met the 429, yet waited it out: its request came a second after A's was refused.
    assert first_b.at - first_a.at >= 1.0
    assert retry_a.at - first_a.at >= 1.0


def test_two_agents_keep_to_the_runs_requests_per_minute_together(
    fake_api: FakeMessagesServer, repo: Path
) -> None:
    gate = LocalRateGate(120)  # a request every half second, whoever sends it
    agent = create_agent(settings())
    fake_api.respond_with(read_then_finish)

    threads = [
        in_thread(lambda who=who: agent.run(agent_request(repo, who, gate), Recorder())) for who in "AB"
    ]
    for thread, _ in threads:
        thread.join(20)

    assert [o.status for _, done in threads for o in done] == [AgentStatus.DONE] * 2
    arrivals = sorted(r.at for r in fake_api.message_requests)
    assert len(arrivals) == 4
    assert arrivals[-1] - arrivals[0] >= 1.5 - SLACK
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
    assert min(gaps) >= 0.5 - SLACK, gaps
    assert len(of(fake_api, "A")) == len(of(fake_api, "B")) == 2


def test_a_keep_alive_waits_its_turn_like_any_request(fake_api: FakeMessagesServer, repo: Path) -> None:
    gate = LocalRateGate(60)  # one a second
    agent = create_agent(settings(cache_keep_alive=0.4))
    fake_api.script(tool_call("run_command", {"command": "sleep 1.2"}), finish())

    outcome = agent.run(agent_request(repo, "A", gate), Recorder())

    assert outcome.status == AgentStatus.DONE
    first, last = of(fake_api, "A")
    (ping,) = fake_api.keep_alives  # due 0.4 s after the first request, sent when its turn came
    assert ping.at - first.at >= 1.0 - SLACK
    assert last.at - ping.at >= 1.0 - SLACK


def test_without_a_gate_each_agent_goes_at_once(fake_api: FakeMessagesServer, repo: Path) -> None:
    """None is today's behaviour: no pace, and a 429 is waited out by the one refused alone."""
    agent = create_agent(settings())
    fake_api.script(rate_limited(retry_after=1))
    fake_api.respond_with(lambda _: finish())
    refused = threading.Event()

    def listener_a(event: AgentEvent) -> None:
        if event.kind == "progress" and "rate limited" in event.detail:
            refused.set()

    thread, _ = in_thread(lambda: agent.run(agent_request(repo, "A", None), listener_a))
    assert refused.wait(10)
    agent.run(agent_request(repo, "B", None), Recorder())
    thread.join(10)
    first_a, retry_a = of(fake_api, "A")
    (first_b,) = of(fake_api, "B")
    assert first_b.at - first_a.at < 0.9
    assert retry_a.at - first_a.at >= 1.0


@pytest.mark.parametrize(
    ("said", "seconds"),
    [
        ("Rate limit reached for gpt-5 on tokens per min. Please try again in 1.5s.", 1.5),
        ("429 Too Many Requests: please try again in 250ms", 0.25),
        ("rate_limit_error: retry after 30 seconds", 30.0),
        ("exceeded retry limit, last status: 429 Too Many Requests", None),
        ("Retrying in 0.2 seconds...", None),
    ],
)
def test_the_wait_a_cli_reports_is_read_from_its_words(said: str, seconds: float | None) -> None:
    assert retry_after_said(said) == seconds


def test_the_reviewer_waits_its_turn_at_the_gate_too(fake_api: FakeMessagesServer, repo: Path) -> None:
    gate = LocalRateGate(None)
    verdict = {
        "criteria": [
            {
                "criterion": "README.md says demo",
                "verdict": "met",
                "reason": "it does",
                "evidence": [{"path": "README.md", "start_line": 1, "end_line": 1, "quote": "# demo"}],
            }
        ]
    }
    fake_api.script(tool_call("submit_verdict", verdict))
    review = ReviewRequest(
        task_id="T001",
        system_prompt="You review.",
        prompt="Review the README.",
        workspace=repo,
        model=TEST_MODEL,
        rate_gate=gate,
    )
    reviewer = create_reviewer(settings())
    held = time.monotonic()
    gate.hold_off(1.0)  # as a worker's 429 would

    reply = reviewer.review(review, Recorder())

    assert reply.verdict == verdict, reply.failure
    (asked,) = fake_api.message_requests
    assert asked.at - held >= 1.0


PARALLEL_PLAN = """\
# Plan: two files

## Phase 1: Files

- [ ] T001 [P] Write `one.txt`
  - Verify: `test -f one.txt`
- [ ] T002 [P] Write `two.txt`
  - Verify: `test -f two.txt`
"""


def write_then_finish(request: RecordedRequest) -> Response:
    """Turn 1 writes the task's file, turn 2 reports done."""
    messages = request.body["messages"]
    task = re.search(r"## Your task: (\S+)", messages[0]["content"][0]["text"])
    assert task is not None, messages[0]
    name = {"T001": "one.txt", "T002": "two.txt"}[task.group(1)]
    if len(messages) == 1:
        return tool_call("write_file", {"path": name, "content": f"{name}\n"})
    return finish("done", f"wrote {name}")


def test_a_parallel_run_keeps_to_requests_per_minute_across_its_tasks(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {
            "plan.md": PARALLEL_PLAN,
            ".gitignore": "checkpoints/\n",
            "orchestrate.toml": "requests_per_minute = 120\n",
        },
    )
    with FakeMessagesServer() as api:
        api.respond_with(write_then_finish)
        env = {"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": TEST_KEY, "ORCHESTRATE_MAX_RETRIES": "0"}
        done = orchestrate(
            repo, "run", "plan.md", "--agent", "anthropic", "--model", TEST_MODEL, "--parallel", "2", env=env
        )
        assert done.returncode == 0, done.stderr
        arrivals = sorted(r.at for r in api.message_requests)

    trailers = git(repo, "log", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split()
    assert sorted(trailers) == ["T001", "T002"]
    assert len(arrivals) == 4  # two turns a task
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
    assert min(gaps) >= 0.5 - SLACK, gaps
    assert arrivals[-1] - arrivals[0] >= 1.5 - SLACK
