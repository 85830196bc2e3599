"""The claude-code backend, driven against a fake `claude` executable first on PATH."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.agents.base import AgentConfigError, AgentRequest, AgentStatus, AgentUnavailable, ReadyCheck
from orchestrator.agents.registry import create_agent
from orchestrator.config import Settings, load_settings
from tests.conftest import make_repo
from tests.fakes.claude_cli import calls, fixture_result, replay, result, script
from tests.fakes.listener import Recorder

INIT = {
    "type": "system",
    "subtype": "init",
    "session_id": "s1",
    "model": "claude-sonnet-4-6",
    "tools": ["Edit"],
}
ASSISTANT = {
    "type": "assistant",
    "message": {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "I'll write hello.py."},
            {"type": "tool_use", "id": "t1", "name": "Write", "input": {"file_path": "hello.py"}},
        ],
        "usage": {"input_tokens": 10, "output_tokens": 5},
    },
}
TOOL_RESULT = {
    "type": "user",
    "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},
}


def request(workspace: Path, **overrides: Any) -> AgentRequest:
    base: dict[str, Any] = {
        "task_id": "T001",
        "system_prompt": "You are careful.",
        "prompt": "Create hello.py.",
        "workspace": workspace,
        "max_turns": 7,
    }
    return AgentRequest(**{**base, **overrides})


def test_a_successful_session(fake_bin: Path, tmp_path: Path, recorder: Recorder) -> None:
    repo = make_repo(tmp_path / "repo")
    script(
        fake_bin,
        [INIT, ASSISTANT, TOOL_RESULT, "not json: a stray line", result()],
        edits={"hello.py": "print('hello')\n"},
    )
    outcome = create_agent(Settings(agent="claude-code")).run(request(repo), recorder)

    assert outcome.status == AgentStatus.DONE
    assert outcome.summary == "Created hello.py, which prints hello."
    assert outcome.turns == 3
    assert outcome.usage.cost_usd == pytest.approx(0.0421)
    assert outcome.usage.cache_read_input_tokens == 9000
    assert (repo / "hello.py").read_text() == "print('hello')\n"

    (call,) = calls(fake_bin)
    assert call["cwd"] == str(repo)
    assert call["claudecode"] is None  # cleared: the CLI refuses to start nested
    argv = call["argv"]
    assert argv[0] == "-p"
    assert "Create hello.py." not in argv  # the prompt goes through stdin
    assert call["stdin"] == "Create hello.py."
    assert argv[argv.index("--output-format") + 1] == "stream-json"
    assert "--verbose" in argv
    assert argv[argv.index("--permission-mode") + 1] == "acceptEdits"
    assert argv[argv.index("--max-turns") + 1] == "7"
    assert argv[argv.index("--append-system-prompt") + 1].startswith("You are careful.")
    assert "--model" not in argv  # the CLI's own default unless the user chose one
    assert argv[argv.index("--allowedTools") + 1] == "Bash"  # it may run its own checks
    assert "--max-budget-usd" not in argv  # no --max-cost

    assert [e.kind for e in recorder.events] == ["progress", "message", "tool_call", "model_call"]
    assert recorder.of("tool_call")[0].detail == 'Write {"file_path": "hello.py"}'
    (model_call,) = recorder.of("model_call")
    assert model_call.usage == outcome.usage


def test_a_chosen_model_and_permission_mode_are_passed_on(
    fake_bin: Path, tmp_path: Path, recorder: Recorder
) -> None:
    script(fake_bin, [result()])
    settings = Settings(
        agent="claude-code", model="claude-opus-4-7", claude_permission_mode="bypassPermissions"
    )
    create_agent(settings).run(request(tmp_path), recorder)
    argv = calls(fake_bin)[0]["argv"]
    assert argv[argv.index("--model") + 1] == "claude-opus-4-7"
    assert argv[argv.index("--permission-mode") + 1] == "bypassPermissions"


@pytest.mark.parametrize("prompt", ["x" * 150_000, "--help: a template that starts with a dash"])
def test_the_prompt_goes_through_stdin(
    fake_bin: Path, tmp_path: Path, recorder: Recorder, prompt: str
) -> None:
    script(fake_bin, [result()])
    outcome = create_agent(Settings(agent="claude-code")).run(request(tmp_path, prompt=prompt), recorder)
    assert outcome.status == AgentStatus.DONE
    (call,) = calls(fake_bin)
    assert call["argv"][:2] == ["-p", "--output-format"]
    assert prompt not in call["argv"]
    assert call["stdin"] == prompt


def test_max_turns_reached_is_a_failure(fake_bin: Path, tmp_path: Path, recorder: Recorder) -> None:
    script(fake_bin, [INIT, result(subtype="error_max_turns", is_error=True, result="")], exit=1)
    outcome = create_agent(Settings(agent="claude-code")).run(request(tmp_path), recorder)
    assert outcome.status == AgentStatus.FAILED
    assert outcome.summary == "claude-code stopped with an error (reached --max-turns)"
    assert outcome.usage.cost_usd == pytest.approx(0.0421)


def test_blocked_report(fake_bin: Path, tmp_path: Path, recorder: Recorder) -> None:
    script(fake_bin, [result(result="BLOCKED: the API spec is missing")])
    outcome = create_agent(Settings(agent="claude-code")).run(request(tmp_path), recorder)
    assert outcome.status == AgentStatus.BLOCKED
    assert outcome.summary == "BLOCKED: the API spec is missing"


def test_a_crash_without_result_fails_with_its_stderr(
    fake_bin: Path, tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret-abcdef123")
    script(fake_bin, [INIT], stderr="Error: Invalid API key sk-ant-secret-abcdef123\n", exit=2)
    outcome = create_agent(Settings(agent="claude-code")).run(request(tmp_path), recorder)
    assert outcome.status == AgentStatus.FAILED
    assert outcome.summary.splitlines() == [
        "claude exited with status 2 without a result",
        "Error: Invalid API key [redacted $ANTHROPIC_API_KEY]",
    ]


@pytest.mark.slow  # a wall-clock bound: a loaded machine could fail it for the wrong reason
def test_a_session_past_the_timeout_is_killed(fake_bin: Path, tmp_path: Path, recorder: Recorder) -> None:
    script(fake_bin, [INIT, ASSISTANT, result()], pause=10)
    started = time.monotonic()
    outcome = create_agent(Settings(agent="claude-code", agent_timeout=0.5)).run(request(tmp_path), recorder)
    assert time.monotonic() - started < 5
    assert outcome.status == AgentStatus.FAILED
    assert outcome.summary.startswith("claude timed out after 0.5s (agent_timeout) and was killed")


@pytest.mark.slow  # a wall-clock bound: a loaded machine could fail it for the wrong reason
def test_a_listener_that_stops_the_run_kills_the_session(fake_bin: Path, tmp_path: Path) -> None:
    class Interrupted(Exception):
        pass

    def listener(event: Any) -> None:
        if event.kind == "progress":  # the session started; the CLI now "works" for 10 s
            raise Interrupted

    script(fake_bin, [INIT, ASSISTANT, result()], pause=10)
    started = time.monotonic()
    with pytest.raises(Interrupted):
        create_agent(Settings(agent="claude-code")).run(request(tmp_path), listener)
    assert time.monotonic() - started < 5


LEAK = "while true; do date >> leak.txt; sleep 0.05; done"


def _growing(path: Path) -> bool:
    time.sleep(0.2)  # a write under way when its writer was killed lands
    before = path.stat().st_size
    time.sleep(0.5)
    return path.stat().st_size != before


@pytest.mark.parametrize("timeout", [30, 1.5])
def test_what_its_bash_tool_left_running_dies_with_the_session(
    fake_bin: Path, tmp_path: Path, recorder: Recorder, timeout: float
) -> None:
    # The session ends on its own (30) or is killed on the agent timeout (1.5); either way the
    # command it started in a session of its own, still running, is killed with it.
    script(fake_bin, [INIT, ASSISTANT, result()], pause=1, spawn=LEAK)
    create_agent(Settings(agent="claude-code", agent_timeout=timeout)).run(request(tmp_path), recorder)
    assert (tmp_path / "leak.txt").exists()
    assert not _growing(tmp_path / "leak.txt")


def test_missing_claude_cannot_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AgentConfigError, match="the `claude` CLI is not on PATH"):
        create_agent(Settings(agent="claude-code"))


# -- what the real CLI prints when the API fails (fixtures captured from claude 2.1.197) -----------


@pytest.mark.parametrize(
    ("fixture", "said"),
    [
        (
            "overloaded",
            r"the API was unavailable for claude-code after its own retries \(529: API Error: 529",
        ),
        ("server_error", r"the API was unavailable for claude-code after its own retries \(500: API Error"),
        ("rate_limited", r"the API was rate limited for claude-code after its own retries \(429: API Error"),
    ],
)
def test_an_api_outage_is_a_resumable_stop_not_a_failed_task(
    fake_bin: Path, tmp_path: Path, recorder: Recorder, fixture: str, said: str
) -> None:
    # The real CLI ends such a session with subtype "success", is_error true, api_error_status 529.
    replay(fake_bin, fixture, exit=1)
    with pytest.raises(AgentUnavailable, match=said) as caught:
        create_agent(Settings(agent="claude-code")).run(request(tmp_path), recorder)
    assert str(caught.value).endswith("resume later with `orchestrate resume`")
    assert "claude-code retries (1 of 1)" in recorder.of("progress")[-1].detail
    (spent,) = recorder.of("model_call")  # what it spent before it gave up is still recorded
    assert spent.usage is not None
    assert spent.usage.cost_usd == 0


def test_a_key_rejected_mid_run_is_a_resumable_stop(
    fake_bin: Path, tmp_path: Path, recorder: Recorder
) -> None:
    replay(fake_bin, "bad_key", exit=1)
    with pytest.raises(AgentUnavailable, match=r"could not use its key \(401: Invalid API key") as caught:
        create_agent(Settings(agent="claude-code")).run(request(tmp_path), recorder)
    assert "ANTHROPIC_API_KEY" in str(caught.value)
    assert "orchestrate resume" in str(caught.value)


def test_usage_sums_every_model_of_the_session(fake_bin: Path, tmp_path: Path, recorder: Recorder) -> None:
    # A sub-agent on another model: result.usage leaves it (and the title call) out, modelUsage has it.
    replay(fake_bin, "subagent")
    outcome = create_agent(Settings(agent="claude-code")).run(request(tmp_path), recorder)
    final = fixture_result("subagent")
    models = final["modelUsage"].values()
    assert outcome.status == AgentStatus.DONE
    assert outcome.usage.input_tokens == sum(m["inputTokens"] for m in models) == 1987
    assert outcome.usage.output_tokens == 99 + 12
    assert outcome.usage.cache_creation_input_tokens == 21788 + 18269
    assert outcome.usage.cache_read_input_tokens == 20088
    assert outcome.usage.total_tokens > sum(v for v in final["usage"].values() if isinstance(v, int))
    assert outcome.usage.cost_usd == pytest.approx(final["total_cost_usd"])
    (spent,) = recorder.of("model_call")
    assert spent.session_over  # its work is done: a budget passed now does not throw it away


def test_the_budget_left_is_passed_and_its_stop_reported_live(
    fake_bin: Path, tmp_path: Path, recorder: Recorder
) -> None:
    replay(fake_bin, "budget", exit=1)
    outcome = create_agent(Settings(agent="claude-code")).run(request(tmp_path, max_cost=0.05), recorder)
    argv = calls(fake_bin)[0]["argv"]
    assert argv[argv.index("--max-budget-usd") + 1] == "0.0500"
    (spent,) = recorder.of("model_call")
    # Not session_over: the engine's listener stops the run on its budget (here it only records).
    assert not spent.session_over
    assert spent.usage == outcome.usage
    assert outcome.usage.cost_usd == pytest.approx(0.13759)
    assert outcome.usage.input_tokens == 1998  # result.usage says 0 here: modelUsage has the calls
    assert outcome.status == AgentStatus.FAILED
    assert outcome.summary.startswith("claude-code stopped with an error (reached the budget it was given")


def test_refused_tool_calls_are_reported(fake_bin: Path, tmp_path: Path, recorder: Recorder) -> None:
    # Under acceptEdits without Bash allowed the real CLI refused `python3 hello.py && ...` and still
    # ended with "success".
    replay(fake_bin, "denied")
    outcome = create_agent(Settings(agent="claude-code")).run(request(tmp_path), recorder)
    assert outcome.status == AgentStatus.DONE
    assert (
        "claude-code refused 1 tool call(s) for want of permission (Bash `python3 hello.py" in outcome.summary
    )
    assert "claude_allowed_tools" in recorder.of("progress")[-1].detail


def test_allowed_tools_are_a_setting(fake_bin: Path, tmp_path: Path, recorder: Recorder) -> None:
    script(fake_bin, [result()])
    settings = Settings(agent="claude-code", claude_allowed_tools=["Bash(pytest *)", "Edit"])
    create_agent(settings).run(request(tmp_path), recorder)
    argv = calls(fake_bin)[0]["argv"]
    assert argv[argv.index("--allowedTools") + 1] == "Bash(pytest *),Edit"
    script(fake_bin, [result()])
    create_agent(Settings(agent="claude-code", claude_allowed_tools=[])).run(request(tmp_path), recorder)
    assert "--allowedTools" not in calls(fake_bin)[1]["argv"]


def test_root_with_bypass_permissions_says_it_is_sandboxed(
    fake_bin: Path, tmp_path: Path, recorder: Recorder
) -> None:
    # As root the real CLI refuses: "--dangerously-skip-permissions cannot be used with root/sudo
    # privileges for security reasons", unless IS_SANDBOX=1.
    script(fake_bin, [result()])
    create_agent(Settings(agent="claude-code", claude_permission_mode="bypassPermissions")).run(
        request(tmp_path), recorder
    )
    script(fake_bin, [result()])
    create_agent(Settings(agent="claude-code")).run(request(tmp_path), recorder)
    bypass, accept = calls(fake_bin)
    assert bypass["env"]["IS_SANDBOX"] == ("1" if os.geteuid() == 0 else None)
    assert accept["env"]["IS_SANDBOX"] is None


def test_the_model_is_passed_only_when_the_user_chose_one(
    fake_bin: Path, tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_MODEL", "claude-haiku-4-5")
    settings = load_settings(tmp_path, {"agent": "claude-code"})
    script(fake_bin, [result()])
    # The engine puts its default model in every request; that is not the user's choice.
    create_agent(settings).run(request(tmp_path, model=settings.model), recorder)
    (call,) = calls(fake_bin)
    assert "--model" not in call["argv"]
    assert call["env"]["ANTHROPIC_MODEL"] == "claude-haiku-4-5"  # the user's own, reaching the CLI
    chosen = load_settings(tmp_path, {"agent": "claude-code", "model": "claude-sonnet-4-6"})
    script(fake_bin, [result()])
    create_agent(chosen).run(request(tmp_path, model=chosen.model), recorder)
    argv = calls(fake_bin)[1]["argv"]
    assert argv[argv.index("--model") + 1] == "claude-sonnet-4-6"


def test_a_timeout_keeps_the_usage_its_messages_showed(
    fake_bin: Path, tmp_path: Path, recorder: Recorder
) -> None:
    served = {
        "type": "assistant",
        "message": {
            "id": "msg_1",
            "model": "claude-sonnet-4-6",
            "role": "assistant",
            "content": [{"type": "text", "text": "Working."}],
            "usage": {"input_tokens": 1000, "output_tokens": 1, "cache_creation_input_tokens": 2000},
        },
    }
    same_message = {
        **served,
        "message": {**served["message"], "content": [ASSISTANT["message"]["content"][1]]},
    }
    script(fake_bin, [INIT, served, same_message, result()], pause=3)
    outcome = create_agent(Settings(agent="claude-code", agent_timeout=4)).run(request(tmp_path), recorder)
    assert outcome.status == AgentStatus.FAILED
    assert outcome.summary.startswith("claude timed out after 4s")
    assert outcome.usage.calls == 1  # one message, shown twice
    assert outcome.usage.input_tokens == 1000
    assert outcome.usage.cache_creation_input_tokens == 2000
    assert outcome.usage.cost_usd == pytest.approx((1000 * 3 + 2000 * 3 * 1.25 + 1 * 15) / 1e6)
    (spent,) = recorder.of("model_call")
    assert spent.usage == outcome.usage


# -- the readiness check before the first task ------------------------------------------------


def test_not_logged_in_is_found_before_the_first_task(fake_bin: Path) -> None:
    script(fake_bin, [], auth={"loggedIn": False, "authMethod": "none"})
    agent = create_agent(Settings(agent="claude-code"))
    assert isinstance(agent, ReadyCheck)
    with pytest.raises(AgentConfigError, match=r"claude-code is not logged in .*ANTHROPIC_API_KEY"):
        agent.check_ready(None)
    assert not calls(fake_bin, "probe")  # no model call was needed to tell


@pytest.mark.parametrize(
    ("fixture", "refused"), [("bad_key", True), ("not_logged_in", True), ("overloaded", False)]
)
def test_the_probe_refuses_a_rejected_key_only(fake_bin: Path, fixture: str, refused: bool) -> None:
    script(fake_bin, [], probe=fixture_result(fixture))
    agent = create_agent(Settings(agent="claude-code"))
    assert isinstance(agent, ReadyCheck)
    if refused:
        with pytest.raises(AgentConfigError, match=r"claude-code cannot use its key .*ANTHROPIC_API_KEY"):
            agent.check_ready(None)
    else:
        agent.check_ready(None)  # an outage decides nothing here: the first task stops resumably
    (probe,) = calls(fake_bin, "probe")
    argv = probe["argv"]
    assert argv[argv.index("--tools") + 1] == ""  # nothing the model says can do anything
    assert argv[argv.index("--max-turns") + 1] == "1"
    assert probe["env"]["CLAUDE_CODE_MAX_RETRIES"] == "0"  # a rejected key is not retried for minutes
    assert "--model" not in argv


def test_what_the_probe_spent_is_charged_to_the_first_attempt(fake_bin: Path, tmp_path: Path) -> None:
    probe = {**fixture_result("success"), "total_cost_usd": 0.0036}
    script(fake_bin, [result()], probe=probe)
    agent = create_agent(Settings(agent="claude-code"))
    assert isinstance(agent, ReadyCheck)
    agent.check_ready(None)
    first, second = Recorder(), Recorder()
    agent.run(request(tmp_path), first)
    script(fake_bin, [result()])
    agent.run(request(tmp_path), second)
    checked, session = first.of("model_call")
    assert checked.usage is not None
    assert checked.usage.cost_usd == pytest.approx(0.0036)
    assert "readiness check" in checked.detail
    assert checked.session_over
    assert len(second.of("model_call")) == 1
