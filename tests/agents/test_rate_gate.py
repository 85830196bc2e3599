"""The run's rate gate, with the real SDK against the fake Messages API: agents on threads that share
one LocalRateGate wait out each other's 429s and keep to the run's requests_per_minute together,
keep-alives and reviews included, up to a whole `orchestrate run --parallel 2`. Times are the
server's: when each request arrived. Then the agent CLIs (fakes printing what the real ones print):
each starts when its turn comes, and the waits it reports hold the gate off."""

from __future__ import annotations

import os
import re
import sys
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
    AgentUnavailable,
    RateGate,
    ReviewRequest,
)
from orchestrator.agents.rate import BucketGate, ClockedBucket, LocalRateGate, retry_after_said
from orchestrator.agents.registry import create_agent, create_reviewer
from orchestrator.config import Settings
from tests.agents.test_anthropic import settings
from tests.conftest import git, make_repo, orchestrate
from tests.fakes import claude_cli, codex_cli
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

SLACK = 0.2
"""Seconds two arrivals may come closer than their slots: the gate times when a request may go, the
server when it arrived, and building and sending it takes a few milliseconds that vary (more on a
loaded machine). Without the gate they come milliseconds apart."""


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


def test_a_hold_off_that_comes_while_a_thread_sleeps_its_turn_keeps_it_back() -> None:
    gate = LocalRateGate(60)  # one a second
    gate.wait_turn()  # the first goes at once; the next one's turn is a second away
    started = time.monotonic()
    went: list[float] = []
    thread = threading.Thread(target=lambda: (gate.wait_turn(), went.append(time.monotonic())))
    thread.start()
    time.sleep(0.2)
    gate.hold_off(2.0)  # a 429 while it sleeps: its turn moves to 2.2 s
    thread.join(10)
    assert went[0] - started >= 2.2


def test_gates_over_one_shared_bucket_are_one_gate() -> None:
    """As nodes each with a gate over one bucket's owner (a Ray actor holding a ClockedBucket): the
    turns and hold-offs are the owner's, on its clock."""
    owner = ClockedBucket(120)
    mine, theirs = BucketGate(owner), BucketGate(owner)
    started = time.monotonic()
    mine.wait_turn()
    theirs.wait_turn()
    assert time.monotonic() - started >= 0.5
    theirs.hold_off(1.0)
    held = time.monotonic()
    mine.wait_turn()
    assert time.monotonic() - held >= 1.0


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


# -- agent CLIs: a turn before they start, and the waits they report held off on the gate ----------

FAKE_AIDER = """#!{python}
import sys
sys.stdout.write(open({output!r}).read())
"""


def cli_request(where: Path, gate: RateGate) -> AgentRequest:
    workspace = where / "workspace"
    workspace.mkdir(exist_ok=True)
    return AgentRequest(
        task_id="T001", system_prompt="Be careful.", prompt="Write.", workspace=workspace, rate_gate=gate
    )


def fake_codex(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[dict[str, Any]]) -> None:
    bin_dir = codex_cli.install(tmp_path / "codex-bin")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "codex-home"))
    codex_cli.script(bin_dir, lines, exit=1 if lines[-1]["type"] == "turn.failed" else 0)


def fake_aider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str) -> None:
    bin_dir = tmp_path / "aider-bin"
    bin_dir.mkdir()
    (tmp_path / "aider-output.txt").write_text(output)
    aider = bin_dir / "aider"
    aider.write_text(FAKE_AIDER.format(python=sys.executable, output=str(tmp_path / "aider-output.txt")))
    aider.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def held_for(gate: RateGate) -> float:
    """Seconds the next request at `gate` waits."""
    started = time.monotonic()
    gate.wait_turn()
    return time.monotonic() - started


CODEX_LIMITED = codex_cli.session(
    *codex_cli.api_error(
        429, "Too Many Requests", "Rate limit reached for gpt-5 on tokens per min. Please try again in 1.5s."
    )
)
AIDER_LIMITED = (
    "Aider v0.86.2\n"
    "litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached for gpt-5 on tokens "
    "per min (TPM). Please try again in 1.5s.\n"
    "The API provider has rate limited you. Try again later or check your quotas.\n"
)


@pytest.mark.parametrize("backend", ["claude-code", "codex", "aider"])
def test_an_agent_cli_starts_only_when_its_turn_comes(
    backend: str, fake_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "claude-code":
        claude_cli.script(fake_bin, [claude_cli.result()])
    elif backend == "codex":
        fake_codex(tmp_path, monkeypatch, codex_cli.SUCCESS)
    else:
        fake_aider(tmp_path, monkeypatch, "Aider v0.86.2\nDone.\n")
    gate = LocalRateGate(None)
    gate.hold_off(1.0)
    held = time.monotonic()

    outcome = create_agent(Settings(agent=backend, sandbox="none")).run(
        cli_request(tmp_path, gate), Recorder()
    )

    assert outcome.status == AgentStatus.DONE, outcome.summary
    assert time.monotonic() - held >= 1.0


def test_claude_codes_429_retries_hold_the_gate_off_as_it_waits(fake_bin: Path, tmp_path: Path) -> None:
    retry = {
        "type": "system",
        "subtype": "api_retry",
        "attempt": 1,
        "max_retries": 10,
        "retry_delay_ms": 1500,
        "error_status": 429,
        "error": "rate_limit",
    }
    claude_cli.script(fake_bin, [retry, claude_cli.result()])
    gate = LocalRateGate(None)
    said: list[float] = []

    def listener(event: AgentEvent) -> None:
        if "claude-code retries" in event.detail:
            said.append(time.monotonic())

    outcome = create_agent(Settings(agent="claude-code")).run(cli_request(tmp_path, gate), listener)
    gate.wait_turn()

    assert outcome.status == AgentStatus.DONE
    assert time.monotonic() - said[0] >= 1.5


@pytest.mark.parametrize("backend", ["codex", "aider"])
def test_a_rate_limit_a_cli_gives_up_on_says_its_wait_and_holds_the_gate_off(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "codex":
        fake_codex(tmp_path, monkeypatch, CODEX_LIMITED)
    else:
        fake_aider(tmp_path, monkeypatch, AIDER_LIMITED)
    gate = LocalRateGate(None)

    with pytest.raises(AgentUnavailable, match="rate limited|unavailable") as caught:
        create_agent(Settings(agent=backend, sandbox="none")).run(cli_request(tmp_path, gate), Recorder())

    assert caught.value.retry_after == 1.5
    assert 1.0 <= held_for(gate) <= 1.5 + SLACK
