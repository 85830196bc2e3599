"""The claude-code backend, driven against a fake `claude` executable first on PATH."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.agents.base import AgentConfigError, AgentRequest, AgentStatus
from orchestrator.agents.registry import create_agent
from orchestrator.config import Settings
from tests.conftest import make_repo
from tests.fakes.listener import Recorder

# What the fake CLI does is steered by files next to it: the lines to print, and where to log
# how it was called. It can also edit a file in its cwd, as the real one would.
FAKE_CLAUDE = """#!{python}
import json, os, subprocess, sys, time
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "calls.jsonl"), "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(),
                          "claudecode": os.environ.get("CLAUDECODE"),
                          "stdin": sys.stdin.read() if not sys.stdin.isatty() else ""}}) + "\\n")
script = json.load(open(os.path.join(here, "script.json")))
for path, content in script.get("edits", {{}}).items():
    with open(path, "w") as f:
        f.write(content)
if script.get("spawn"):  # as its Bash tool starts a command: in a session of its own
    subprocess.Popen(["sh", "-c", script["spawn"]], start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for line in script["lines"]:
    print(line if isinstance(line, str) else json.dumps(line), flush=True)
    time.sleep(script.get("pause", 0))
sys.stderr.write(script.get("stderr", ""))
sys.exit(script.get("exit", 0))
"""

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


def result(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "Created hello.py, which prints hello.",
        "num_turns": 3,
        "total_cost_usd": 0.0421,
        "duration_ms": 1200,
        "usage": {
            "input_tokens": 120,
            "output_tokens": 340,
            "cache_creation_input_tokens": 2000,
            "cache_read_input_tokens": 9000,
        },
    }
    return {**base, **overrides}


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    claude = bin_dir / "claude"
    claude.write_text(FAKE_CLAUDE.format(python=sys.executable))
    claude.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CLAUDECODE", "1")  # as inside a Claude Code session
    return bin_dir


def script(bin_dir: Path, lines: list[Any], **extra: Any) -> None:
    (bin_dir / "script.json").write_text(json.dumps({"lines": lines, **extra}))


def calls(bin_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (bin_dir / "calls.jsonl").read_text().splitlines()]


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
    assert argv[:2] == ["-p", "Create hello.py."]
    assert argv[argv.index("--output-format") + 1] == "stream-json"
    assert "--verbose" in argv
    assert argv[argv.index("--permission-mode") + 1] == "acceptEdits"
    assert argv[argv.index("--max-turns") + 1] == "7"
    assert argv[argv.index("--append-system-prompt") + 1].startswith("You are careful.")
    assert "--model" not in argv  # the CLI's own default unless the user chose one

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


def test_a_long_prompt_goes_through_stdin(fake_bin: Path, tmp_path: Path, recorder: Recorder) -> None:
    script(fake_bin, [result()])
    prompt = "x" * 150_000
    create_agent(Settings(agent="claude-code")).run(request(tmp_path, prompt=prompt), recorder)
    (call,) = calls(fake_bin)
    assert call["argv"][0] == "-p"
    assert call["argv"][1] == "--output-format"
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
