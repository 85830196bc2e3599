"""The anthropic backend: the real SDK against our fake Messages API on 127.0.0.1."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.agents.anthropic import cache_marked
from orchestrator.agents.base import (
    AgentConfigError,
    AgentOutcome,
    AgentRequest,
    AgentStatus,
    AgentUnavailable,
)
from orchestrator.agents.registry import create_agent
from orchestrator.config import Settings
from tests.conftest import make_repo
from tests.fakes.listener import Recorder
from tests.fakes.messages_server import (
    TEST_KEY,
    TEST_MODEL,
    Drop,
    FakeMessagesServer,
    Malformed,
    Message,
    RecordedRequest,
    Slow,
    Status,
    StreamError,
    finish,
    rate_limited,
    text,
    tool_call,
    tool_calls,
)


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "agent": "anthropic",
        "model": TEST_MODEL,
        "max_retries": 0,
        "request_timeout": 5.0,
        "sandbox": "none",
    }
    return Settings(**{**base, **overrides})


def request(workspace: Path, **overrides: Any) -> AgentRequest:
    base: dict[str, Any] = {
        "task_id": "T001",
        "system_prompt": "You are a careful engineer.",
        "prompt": "Create hello.py that prints hello.",
        "workspace": workspace,
        "max_turns": 10,
        "command_timeout": 10.0,
    }
    return AgentRequest(**{**base, **overrides})


def run(workspace: Path, recorder: Recorder, **overrides: Any) -> AgentOutcome:
    req_fields = {k: overrides.pop(k) for k in ("max_turns", "prompt") if k in overrides}
    return create_agent(settings(**overrides)).run(request(workspace, **req_fields), recorder)


def tool_results(req: RecordedRequest) -> list[dict[str, Any]]:
    """The tool_result blocks of the last message of a recorded request."""
    content = req.body["messages"][-1]["content"]
    return [b for b in content if b.get("type") == "tool_result"]


def breakpoints(body: dict[str, Any]) -> list[str]:
    """Where cache_control sits in a request body, by location."""
    found = [f"tool:{t['name']}" for t in body["tools"] if "cache_control" in t]
    found += ["system" for b in body["system"] if "cache_control" in b]
    for index, message in enumerate(body["messages"]):
        content = message["content"]
        for position, block in enumerate(content if isinstance(content, list) else []):
            if "cache_control" in block:
                found.append(f"message:{index}:{position}")
    return found


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# demo\n", "src/app.py": "print('old')\n"})


def test_tool_turns_edit_the_repository_then_finish(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    fake_api.script(
        tool_call("write_file", {"path": "hello.py", "content": "print('hello')\n"}, say="Writing it."),
        tool_call("edit_file", {"path": "src/app.py", "old_string": "old", "new_string": "new"}),
        tool_calls(("run_command", {"command": "python3 hello.py"}), ("read_file", {"path": "src/app.py"})),
        finish("done", "hello.py prints hello; app.py says new"),
    )
    outcome = run(repo, recorder)

    assert outcome.status == AgentStatus.DONE
    assert outcome.summary == "hello.py prints hello; app.py says new"
    assert outcome.turns == 4
    assert (repo / "hello.py").read_text() == "print('hello')\n"
    assert (repo / "src/app.py").read_text() == "print('new')\n"
    # What the tools answered reached the model.
    third = fake_api.message_requests[3]
    command_result, read_result = tool_results(third)
    assert command_result["content"].startswith("exit code: 0\nhello")
    assert "print('new')" in read_result["content"]
    # One model_call event per call, with that call's usage and cost; one tool_call per tool.
    calls = recorder.of("model_call")
    assert len(calls) == 4
    assert all(e.usage is not None and e.usage.calls == 1 and e.usage.cost_usd > 0 for e in calls)
    assert outcome.usage.calls == 4
    assert outcome.usage.cost_usd == pytest.approx(sum(e.usage.cost_usd for e in calls if e.usage))
    assert [e.detail for e in recorder.of("tool_call")] == [
        "write_file hello.py",
        "edit_file src/app.py",
        "run_command 'python3 hello.py' -> exit 0",
        "read_file src/app.py",
    ]


def test_requests_carry_model_tools_and_four_cache_breakpoints_at_most(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    fake_api.script(
        tool_call("list_dir", {}),
        tool_call("read_file", {"path": "README.md"}),
        finish(),
    )
    run(repo, recorder, max_tokens=1234)
    first, second, third = (r.body for r in fake_api.message_requests)
    assert first["model"] == TEST_MODEL
    assert first["max_tokens"] == 1234
    assert "stream" not in first
    assert [t["name"] for t in first["tools"]] == [
        "read_file",
        "write_file",
        "edit_file",
        "list_dir",
        "search",
        "run_command",
        "finish",
    ]
    assert first["system"][0]["text"].startswith("You are a careful engineer.")
    assert first["messages"][0]["content"][0]["text"] == "Create hello.py that prints hello."
    # Stable prefix: tools and system (one breakpoint), the task prompt. Moving end: the previous
    # request's end and the newest message.
    assert breakpoints(first) == ["system", "message:0:0"]
    assert breakpoints(second) == ["system", "message:0:0", "message:2:0"]
    assert breakpoints(third) == ["system", "message:0:0", "message:2:0", "message:4:0"]
    # Old breakpoints do not pile up: the ends of two requests back are unmarked.
    fourth_like = cache_marked("s", [{"role": "user", "content": "x"}] * 7, [])
    marked = [i for i, m in enumerate(fourth_like["messages"]) if "cache_control" in m["content"][-1]]
    assert marked == [0, 4, 6]
    # The key went in its header, and the SDK reached us through ANTHROPIC_BASE_URL.
    headers = fake_api.message_requests[0].headers
    assert TEST_KEY in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))


def test_the_cached_prefix_is_read_back_on_the_next_call(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    fake_api.script(tool_call("list_dir", {}), tool_call("list_dir", {"path": "src"}), finish())
    outcome = run(repo, recorder)
    usages = [e.usage for e in recorder.of("model_call") if e.usage]
    assert usages[0].cache_creation_input_tokens > 0
    assert usages[0].cache_read_input_tokens == 0
    assert usages[1].cache_read_input_tokens >= usages[0].cache_creation_input_tokens
    assert usages[2].cache_read_input_tokens > usages[1].cache_read_input_tokens
    assert outcome.usage.cache_read_input_tokens == sum(u.cache_read_input_tokens for u in usages)


def test_cost_uses_the_price_table_with_cache_multipliers(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    usage = {
        "input_tokens": 1_000_000,
        "output_tokens": 100_000,
        "cache_creation_input_tokens": 200_000,
        "cache_read_input_tokens": 2_000_000,
    }
    fake_api.script(Message([{"type": "text", "text": "All done."}], "end_turn", usage))
    outcome = run(repo, recorder, prices={"claude-sonnet-4": {"input": 3.0, "output": 15.0}})
    # 1M x $3 + 0.2M x $3 x 1.25 + 2M x $3 x 0.1 + 0.1M x $15
    assert outcome.usage.cost_usd == pytest.approx(3.0 + 0.75 + 0.6 + 1.5)
    assert outcome.usage.input_tokens == 1_000_000


def test_a_final_message_without_finish_is_the_report(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    fake_api.script(
        tool_call("write_file", {"path": "hello.py", "content": "print('hello')\n"}),
        text("I created hello.py; it prints hello."),
    )
    outcome = run(repo, recorder)
    assert outcome.status == AgentStatus.DONE
    assert outcome.summary == "I created hello.py; it prints hello."
    assert recorder.of("message")[-1].detail == "I created hello.py; it prints hello."


@pytest.mark.parametrize(
    "reply",
    [finish("blocked", "the spec contradicts itself"), text("BLOCKED: the spec contradicts itself")],
    ids=["finish-tool", "final-message"],
)
def test_blocked_is_reported_as_blocked(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder, reply: Message
) -> None:
    fake_api.script(reply)
    outcome = run(repo, recorder)
    assert outcome.status == AgentStatus.BLOCKED
    assert "the spec contradicts itself" in outcome.summary


def test_tool_errors_go_back_to_the_model(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    fake_api.script(
        tool_calls(
            ("read_file", {"path": "../../etc/passwd"}),
            ("edit_file", {"path": "README.md", "old_string": "absent", "new_string": "x"}),
            ("no_such_tool", {}),
            ("write_file", {"path": "x.txt"}),
            ("finish", {"status": "maybe"}),
        ),
        finish(),
    )
    outcome = run(repo, recorder)
    assert outcome.status == AgentStatus.DONE
    results = tool_results(fake_api.message_requests[1])
    assert [r.get("is_error") for r in results] == [True] * 5
    assert "outside the workspace" in results[0]["content"]
    assert "old_string not found" in results[1]["content"]
    assert "unknown tool 'no_such_tool'" in results[2]["content"]
    assert "missing required argument 'content'" in results[3]["content"]
    assert "status 'done' or 'blocked'" in results[4]["content"]
    assert not (repo / "x.txt").exists()


def test_max_turns_fails_the_attempt(fake_api: FakeMessagesServer, repo: Path, recorder: Recorder) -> None:
    fake_api.script(*(tool_call("list_dir", {}) for _ in range(3)))
    outcome = run(repo, recorder, max_turns=3)
    assert outcome.status == AgentStatus.FAILED
    assert "stopped after 3 turns (max_turns)" in outcome.summary
    assert len(fake_api.message_requests) == 3


def test_a_refusal_fails_without_running_its_tools(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    refusal = Message(
        [
            {"type": "text", "text": "I can't help with that."},
            tool_call("write_file", {"path": "x", "content": "y"}).content[0],
        ],
        "refusal",
    )
    fake_api.script(refusal)
    outcome = run(repo, recorder)
    assert outcome.status == AgentStatus.FAILED
    assert outcome.summary == "the model refused: I can't help with that."
    assert not (repo / "x").exists()


def test_a_cut_off_reply_is_not_run_and_the_model_goes_on(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    cut = tool_call("write_file", {"path": "big.txt", "content": "half of it"})
    cut.stop_reason = "max_tokens"
    fake_api.script(cut, tool_call("write_file", {"path": "big.txt", "content": "all of it"}), finish())
    outcome = run(repo, recorder)
    assert outcome.status == AgentStatus.DONE
    assert (repo / "big.txt").read_text() == "all of it"
    second = fake_api.message_requests[1].body["messages"][-1]["content"]
    assert second[0]["is_error"] is True
    assert "cut off" in second[0]["content"]
    assert "cut off at the output limit" in second[1]["text"]


def test_repeated_cut_offs_fail_the_attempt(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    fake_api.script(*(text("Let me write a very long", stop_reason="max_tokens") for _ in range(3)))
    outcome = run(repo, recorder, max_tokens=50)
    assert outcome.status == AgentStatus.FAILED
    assert "cut off (max_tokens) 3 times in a row" in outcome.summary
    assert "raise max_tokens (now 50)" in outcome.summary


def test_a_paused_turn_is_handed_back_as_it_is(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    fake_api.script(text("Still thinking", stop_reason="pause_turn"), finish())
    assert run(repo, recorder).status == AgentStatus.DONE
    last = fake_api.message_requests[1].body["messages"][-1]
    assert last == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Still thinking", "cache_control": {"type": "ephemeral"}}],
    }


def test_empty_turns_are_nudged_then_fail(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    fake_api.script(Message([]), Message([{"type": "text", "text": ""}]))
    outcome = run(repo, recorder)
    assert outcome.status == AgentStatus.FAILED
    assert outcome.summary == "the model ended its turn twice without a word or a tool call"
    history = fake_api.message_requests[1].body["messages"]
    # Never an empty assistant turn or an empty text block: the API refuses both.
    assert history[1]["content"] == [{"type": "text", "text": "(no reply)"}]
    assert "without a report" in history[2]["content"][0]["text"]


def test_a_full_context_window_compacts_and_goes_on(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    (repo / "big.txt").write_text("x" * 5000 + "\n")
    full = text("", stop_reason="model_context_window_exceeded")
    fake_api.script(*(tool_call("read_file", {"path": "big.txt"}) for _ in range(3)), full, finish())
    outcome = run(repo, recorder)
    assert outcome.status == AgentStatus.DONE
    assert any("context window full" in e.detail for e in recorder.of("progress"))
    after = json.dumps(fake_api.message_requests[-1].body["messages"])
    assert after.count("x" * 5000) == 0


def test_a_large_max_tokens_streams(fake_api: FakeMessagesServer, repo: Path, recorder: Recorder) -> None:
    fake_api.script(tool_call("write_file", {"path": "s.txt", "content": "streamed " * 20}), finish())
    outcome = run(repo, recorder, max_tokens=32_000)
    assert outcome.status == AgentStatus.DONE
    assert (repo / "s.txt").read_text() == "streamed " * 20
    assert all(r.body["stream"] is True for r in fake_api.message_requests)
    assert outcome.usage.output_tokens > 0


def test_an_error_in_the_middle_of_a_stream_stops_the_run_resumably(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    fake_api.script(StreamError("overloaded_error", "Overloaded"))
    with pytest.raises(AgentUnavailable, match=r"the API is overloaded .*resume later"):
        run(repo, recorder, max_tokens=32_000)


def test_the_listener_can_stop_the_agent(fake_api: FakeMessagesServer, repo: Path) -> None:
    class BudgetReached(Exception):
        pass

    def listener(event: Any) -> None:
        if event.kind == "model_call":
            raise BudgetReached

    fake_api.script(tool_call("write_file", {"path": "x", "content": "y"}), finish())
    with pytest.raises(BudgetReached):
        create_agent(settings()).run(request(repo), listener)
    assert len(fake_api.message_requests) == 1
    assert not (repo / "x").exists()


def test_secrets_never_reach_the_model_or_the_events(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOY_TOKEN", "tok-very-secret-value")
    (repo / "leak.txt").write_text(f"key={TEST_KEY}\ntoken=tok-very-secret-value\n")
    fake_api.script(
        tool_calls(
            ("read_file", {"path": "leak.txt"}),
            ("run_command", {"command": "echo [$ANTHROPIC_API_KEY] [$DEPLOY_TOKEN]; cat leak.txt"}),
        ),
        finish("done", f"the key is {TEST_KEY}"),
    )
    outcome = run(repo, recorder)
    sent = fake_api.message_requests[1].body["messages"][-1]
    dumped = json.dumps(sent)
    assert TEST_KEY not in dumped
    assert "tok-very-secret-value" not in dumped
    assert "[redacted $ANTHROPIC_API_KEY]" in dumped
    assert "[] []" in dumped  # the command's environment had neither variable
    assert TEST_KEY not in outcome.summary
    assert TEST_KEY not in recorder.text()


def test_compaction_replaces_old_tool_output_and_keeps_the_task(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    (repo / "big.txt").write_text("".join(f"line {n} of a long file\n" for n in range(200)))
    big = {"input_tokens": 900, "output_tokens": 10}
    fake_api.script(
        tool_call("read_file", {"path": "big.txt"}, usage={"input_tokens": 100, "output_tokens": 10}),
        tool_call("read_file", {"path": "big.txt"}, usage=big),
        tool_call("read_file", {"path": "big.txt"}, usage=big),
        tool_call("read_file", {"path": "README.md"}, usage=big),
        finish(),
    )
    # A threshold of 500 tokens in a window the requests fit (a smaller window: they are compacted
    # before they are sent, see below).
    outcome = run(repo, recorder, context_window=100_000, compact_at=0.005)
    assert outcome.status == AgentStatus.DONE
    compacted = [e.detail for e in recorder.of("progress") if e.detail.startswith("compacted")]
    assert compacted, recorder.text()
    assert "over the 500 threshold" in compacted[0]
    last = fake_api.message_requests[-1].body["messages"]
    assert last[0]["content"][0]["text"] == "Create hello.py that prints hello."
    assert last[2]["content"][0]["content"].startswith("[compacted: the ")
    assert "read_file big.txt" in last[2]["content"][0]["content"]
    # The most recent tool output is intact.
    assert "# demo" in last[-1]["content"][0]["content"]


# --- faults -------------------------------------------------------------------------------------


def test_a_rate_limit_waits_as_told_and_goes_on(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    fake_api.script(rate_limited(retry_after=0.2), finish())
    started = time.monotonic()
    outcome = run(repo, recorder)
    assert outcome.status == AgentStatus.DONE
    assert time.monotonic() - started >= 0.2
    assert any("rate limited" in e.detail and "0.2s" in e.detail for e in recorder.of("progress"))


def test_rate_limits_are_waited_out_by_us_not_by_the_sdk(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    """The SDK would sleep any retry-after, however long, on each of its retries; we bound the
    total by rate_limit_wait, so a 429 never goes through the SDK's retry loop."""
    fake_api.script(rate_limited(retry_after=0.01), rate_limited(retry_after=0.01), finish())
    outcome = run(repo, recorder, max_retries=2)
    assert outcome.status == AgentStatus.DONE
    assert len(fake_api.message_requests) == 3
    assert [r.headers["x-stainless-retry-count"] for r in fake_api.message_requests] == ["0", "0", "0"]
    assert len([e for e in recorder.of("progress") if "rate limited" in e.detail]) == 2


def test_a_long_retry_after_stops_at_once_when_it_exceeds_the_wait_limit(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    fake_api.script(rate_limited(retry_after=3600))
    started = time.monotonic()
    with pytest.raises(AgentUnavailable, match="rate limited") as caught:
        run(repo, recorder, max_retries=4, rate_limit_wait=60)
    assert time.monotonic() - started < 30  # not the hour, nor the 60 s wait limit's worth
    assert caught.value.retry_after == 3600
    assert len(fake_api.message_requests) == 1


def test_a_rate_limit_past_the_wait_limit_stops_the_run_resumably(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    fake_api.script(*(rate_limited(retry_after=0.2) for _ in range(10)))
    with pytest.raises(
        AgentUnavailable, match=r"rate limited by the API .*resume later with `orchestrate resume`"
    ) as caught:
        run(repo, recorder, rate_limit_wait=0.5)
    assert caught.value.retry_after == pytest.approx(0.2)
    assert 2 <= len(fake_api.message_requests) <= 4


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (
            Status(529, "overloaded_error", "Overloaded", {"retry-after-ms": "10"}),
            r"the API is overloaded \(529: Overloaded\) after 1 retries",
        ),
        (
            Status(500, "api_error", "Internal server error", {"retry-after-ms": "10"}),
            r"the API failed \(500: Internal server error\)",
        ),
        (Drop(), r"cannot reach the API at http://127\.0\.0\.1:\d+"),
    ],
    ids=["overloaded-529", "server-error-500", "dropped-connection"],
)
def test_service_faults_after_retries_stop_the_run_resumably(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder, fault: Any, message: str
) -> None:
    fake_api.script(fault, fault)
    with pytest.raises(AgentUnavailable, match=message) as caught:
        run(repo, recorder, max_retries=1)
    assert "resume later with `orchestrate resume`" in str(caught.value)
    assert len(fake_api.message_requests) == 2  # the first try and the SDK's one retry


def test_a_fault_then_success_is_retried_by_the_sdk(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    fake_api.script(Status(529, "overloaded_error", "Overloaded", {"retry-after-ms": "10"}), Drop(), finish())
    assert run(repo, recorder, max_retries=2).status == AgentStatus.DONE


@pytest.mark.slow  # a wall-clock bound: a loaded machine could fail it for the wrong reason
def test_a_slow_response_past_the_timeout_stops_the_run_resumably(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    fake_api.script(Slow(20, finish()))
    started = time.monotonic()
    with pytest.raises(AgentUnavailable, match=r"did not answer within 0\.5s \(request_timeout\)"):
        run(repo, recorder, request_timeout=0.5)
    assert time.monotonic() - started < 10  # far from the 20 s answer (5.5 s was seen at load 8)


@pytest.mark.parametrize(
    "bad",
    [Malformed(), Malformed(b"<html>502 Bad Gateway</html>", "text/html"), Malformed(b'{"type": "message"}')],
    ids=["truncated-json", "html-page", "json-without-fields"],
)
def test_malformed_responses_are_retried_then_stop_the_run(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder, bad: Malformed
) -> None:
    fake_api.script(bad, finish())
    assert run(repo, recorder, max_retries=1).status == AgentStatus.DONE
    fake_api.script(bad, bad)
    with pytest.raises(AgentUnavailable, match="malformed response"):
        run(repo, recorder, max_retries=1)


def test_a_bad_key_cannot_start(fake_api: FakeMessagesServer, repo: Path, recorder: Recorder) -> None:
    fake_api.script(Status(401, "authentication_error", "invalid x-api-key"))
    with pytest.raises(
        AgentConfigError, match=r"rejected the key \(401: invalid x-api-key\); set ANTHROPIC_API_KEY"
    ):
        run(repo, recorder)


def test_a_bad_request_fails_the_attempt_with_the_api_message(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    fake_api.script(
        Status(400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum")
    )
    outcome = run(repo, recorder)
    assert outcome.status == AgentStatus.FAILED
    assert (
        outcome.summary
        == "the API rejected the request (400: prompt is too long: 210000 tokens > 200000 maximum)"
    )


def test_an_empty_credit_balance_stops_the_run_resumably(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    fake_api.script(
        Status(400, "invalid_request_error", "Your credit balance is too low to access the Anthropic API.")
    )
    with pytest.raises(AgentUnavailable, match="billing"):
        run(repo, recorder)


def test_no_api_key_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(AgentConfigError) as caught:
        create_agent(settings())
    assert str(caught.value) == (
        "ANTHROPIC_API_KEY is not set; export it, or run the offline demo with `orchestrate demo` / use "
        "`--agent scripted --script FILE`"
    )


def test_an_unscripted_request_is_a_loud_failure(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    """The fake answers 500 with x-should-retry: false when its script runs out."""
    with pytest.raises(AgentUnavailable, match="no scripted response left"):
        run(repo, recorder, max_retries=3)
    assert len(fake_api.message_requests) == 1


# -- requests that would not fit the context window (issue 14: a 210,619-token request, 400) --------


def _request_tokens(req: RecordedRequest) -> int:
    """The fake API's own count: 4 characters a token."""
    return len(req.raw) // 4


def test_one_turns_tool_output_is_capped(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    for index in range(6):
        (repo / f"big{index}.txt").write_text(f"{index}" * 20_000 + "\n")
    reads = [("read_file", {"path": f"big{index}.txt"}) for index in range(6)]
    fake_api.script(tool_calls(*reads), finish())
    outcome = run(repo, recorder, context_window=40_000, max_tokens=1000)
    assert outcome.status == AgentStatus.DONE
    results = tool_results(fake_api.message_requests[1])
    assert len(results) == 6  # every call answered
    shown = sum(len(r["content"]) for r in results)
    assert shown < 40_000  # not 120,000 characters
    assert "0" * 20_000 in results[0]["content"]  # the first in full
    assert "this turn's tool output passed" in results[-1]["content"]
    assert _request_tokens(fake_api.message_requests[1]) < 40_000


def test_a_request_that_would_not_fit_is_compacted_before_it_is_sent(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    for index in range(8):
        (repo / f"part{index}.txt").write_text(f"{index}" * 16_000 + "\n")
    fake_api.script(*(tool_call("read_file", {"path": f"part{index}.txt"}) for index in range(8)), finish())
    # compact_at 1: only the check before sending can keep the requests inside the window.
    outcome = run(repo, recorder, context_window=30_000, max_tokens=1000, compact_at=1.0)
    assert outcome.status == AgentStatus.DONE
    assert all(_request_tokens(req) < 30_000 for req in fake_api.message_requests)
    assert any("would not fit" in e.detail for e in recorder.of("progress"))


def test_prompt_is_too_long_compacts_and_asks_again(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    (repo / "big.txt").write_text("x" * 5000 + "\n")
    too_long = Status(400, "invalid_request_error", "prompt is too long: 210619 tokens > 200000 maximum")
    fake_api.script(*(tool_call("read_file", {"path": "big.txt"}) for _ in range(3)), too_long, finish())
    outcome = run(repo, recorder)
    assert outcome.status == AgentStatus.DONE
    assert any("prompt is too long" in e.detail for e in recorder.of("progress"))
    after = json.dumps(fake_api.message_requests[-1].body["messages"])
    assert after.count("x" * 5000) < 3


def test_a_turn_of_many_parallel_tool_calls_still_reads_the_cache(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    # 12 tool_use blocks and 12 tool_result blocks: from the new end, the API's lookup reaches back
    # 20 blocks only, short of the previous request's end; a breakpoint there is read instead.
    for index in range(12):
        (repo / f"f{index}.txt").write_text(f"file {index}\n" * 200)
    reads = [("read_file", {"path": f"f{index}.txt"}) for index in range(12)]
    fake_api.script(tool_call("list_dir", {}), tool_calls(*reads), tool_call("list_dir", {}), finish())
    run(repo, recorder)
    usages = [e.usage for e in recorder.of("model_call") if e.usage]
    before, after = usages[1], usages[2]
    # The request carrying the 12 results reads everything the one before it wrote or read.
    seen_before = before.cache_read_input_tokens + before.cache_creation_input_tokens
    assert after.cache_read_input_tokens >= seen_before
    third = fake_api.message_requests[2].body
    assert breakpoints(third) == ["system", "message:0:0", "message:2:0", "message:4:11"]


def test_the_runs_shared_prefix_is_cached_for_an_hour_and_priced_so(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    # Tools + system are the same for every task of a run; the gap between two tasks (checks,
    # landing) often passes the default 5 minutes, so that breakpoint asks for an hour.
    fake_api.script(tool_call("list_dir", {}), finish())
    run(repo, recorder)
    first = fake_api.message_requests[0].body
    assert first["system"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    # The conversation's own breakpoints keep the 5-minute default.
    assert all("ttl" not in b.get("cache_control", {}) for b in first["messages"][0]["content"])
    usage = next(e.usage for e in recorder.of("model_call") if e.usage)
    assert 0 < usage.cache_creation_1h_input_tokens <= usage.cache_creation_input_tokens
    five = usage.cache_creation_input_tokens - usage.cache_creation_1h_input_tokens
    per_token = 3.0 / 1_000_000  # claude-sonnet-4-6
    expected = (
        usage.input_tokens * per_token
        + five * per_token * 1.25
        + usage.cache_creation_1h_input_tokens * per_token * 2.0
        + usage.cache_read_input_tokens * per_token * 0.1
        + usage.output_tokens * 15.0 / 1_000_000
    )
    assert usage.cost_usd == pytest.approx(expected, rel=1e-6)


def test_a_long_tool_call_keeps_the_conversations_cache_alive_and_pays_for_it(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    # A command that outlasts the keep-alive interval (0.4 s here, 270 s by default): the same body
    # goes out again with max_tokens 1, which renews the cache where the next request would write
    # the whole conversation anew; its usage is added to the next reply's.
    fake_api.script(tool_call("run_command", {"command": "sleep 1.1"}), finish())
    run(repo, recorder, cache_keep_alive=0.4)
    pings = fake_api.keep_alives
    assert len(pings) >= 2
    asked = fake_api.message_requests[0].body
    for ping in pings:
        assert {**ping.body, "max_tokens": asked["max_tokens"]} == asked
    usages = [e.usage for e in recorder.of("model_call") if e.usage]
    assert usages[1].calls == 1 + len(pings)  # the reply after the command carries them
    assert usages[1].cache_read_input_tokens > 0


def test_no_keep_alive_when_turned_off_or_when_turns_are_quick(
    fake_api: FakeMessagesServer, repo: Path, recorder: Recorder
) -> None:
    fake_api.script(tool_call("run_command", {"command": "sleep 0.6"}), finish())
    run(repo, recorder, cache_keep_alive=0)
    fake_api.script(tool_call("list_dir", {}), finish())
    run(repo, recorder, cache_keep_alive=5)
    assert fake_api.keep_alives == []
