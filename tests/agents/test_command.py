"""The command backend with small real scripts standing in for aider, codex and friends."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.agents.base import AgentConfigError, AgentRequest, AgentStatus
from orchestrator.agents.registry import create_agent
from orchestrator.config import Settings
from tests.conftest import git, make_repo
from tests.fakes.listener import Recorder

# Reads the prompt file, writes what the task asks for, reports where it ran.
AGENT = """import os, sys
prompt_file, workspace, task_id = sys.argv[1:4]
prompt = open(prompt_file).read()
with open(os.path.join(workspace, "done.txt"), "w") as f:
    f.write(f"task {task_id}\\n")
print("prompt file:", prompt_file)
print("prompt:", prompt.strip().replace("\\n", " | "))
print("cwd:", os.getcwd())
sys.exit(int(os.environ.get("AGENT_EXIT", "0")))
"""


@pytest.fixture
def agent_script(tmp_path: Path) -> Path:
    path = tmp_path / "tools" / "agent.py"
    path.parent.mkdir()
    path.write_text(AGENT)
    return path


def request(workspace: Path, **overrides: Any) -> AgentRequest:
    base: dict[str, Any] = {
        "task_id": "T 001; rm -rf /",
        "system_prompt": "Be careful.",
        "prompt": "Write done.txt.",
        "workspace": workspace,
    }
    return AgentRequest(**{**base, **overrides})


def command_settings(template: str, **overrides: Any) -> Settings:
    return Settings(agent="command", agent_command=template, **overrides)


def test_fields_are_substituted_quoted_and_exit_zero_is_done(
    agent_script: Path, tmp_path: Path, recorder: Recorder
) -> None:
    repo = make_repo(tmp_path / "my repo")
    template = f"{sys.executable} {agent_script} {{prompt_file}} {{workspace}} {{task_id}}"
    outcome = create_agent(command_settings(template)).run(request(repo), recorder)

    assert outcome.status == AgentStatus.DONE
    assert (repo / "done.txt").read_text() == "task T 001; rm -rf /\n"
    assert "prompt: Be careful. |  | Write done.txt." in outcome.summary
    assert f"cwd: {repo}" in outcome.summary
    prompt_file = Path(outcome.summary.split("prompt file: ")[1].splitlines()[0])
    assert repo not in prompt_file.parents  # never committed with the work
    assert not prompt_file.exists()  # and cleaned up
    assert git(repo, "status", "--porcelain") == "?? done.txt"
    assert recorder.of("progress")[-1].detail.startswith("agent command exited 0 after")


def test_a_nonzero_exit_fails_with_the_output_tail(
    agent_script: Path, tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_EXIT", "3")
    template = f"{sys.executable} {agent_script} {{prompt_file}} {{workspace}} {{task_id}}"
    settings = command_settings(template, agent_env=["AGENT_EXIT"])
    outcome = create_agent(settings).run(request(tmp_path), recorder)
    assert outcome.status == AgentStatus.FAILED
    assert outcome.summary.startswith("the agent command exited with status 3\nprompt file: ")
    assert "cwd: " in outcome.summary


def test_the_agent_gets_the_keys_named_in_agent_env_only_and_its_output_is_redacted(
    tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-secret-123456")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-not-for-this-agent")
    monkeypatch.setenv("CLAUDECODE", "1")
    settings = command_settings(
        'echo "key=$OPENAI_API_KEY other=[$ANTHROPIC_API_KEY] nested=[$CLAUDECODE]"',
        agent_env=["OPENAI_API_KEY"],
    )
    outcome = create_agent(settings).run(request(tmp_path), recorder)
    assert outcome.summary == "key=[redacted $OPENAI_API_KEY] other=[] nested=[]"


def test_a_command_past_the_timeout_is_killed_with_its_children(tmp_path: Path, recorder: Recorder) -> None:
    started = time.monotonic()
    template = "(sleep 30; touch late.txt) & echo started; sleep 30"
    outcome = create_agent(command_settings(template, agent_timeout=0.5)).run(request(tmp_path), recorder)
    assert time.monotonic() - started < 20  # not the command's 30 s
    assert outcome.status == AgentStatus.FAILED
    assert outcome.summary == "the agent command timed out after 0.5s (agent_timeout) and was killed\nstarted"
    time.sleep(0.2)
    assert not (tmp_path / "late.txt").exists()


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (None, "--agent command needs a command template"),
        ("aider {prompt}", r"names unknown field\(s\) prompt; the fields are"),
        ("aider {prompt_file", "does not parse"),
    ],
)
def test_a_bad_template_cannot_start(template: str | None, message: str) -> None:
    with pytest.raises(AgentConfigError, match=message):
        create_agent(command_settings(template))  # type: ignore[arg-type]


def test_literal_braces_are_written_doubled(tmp_path: Path, recorder: Recorder) -> None:
    outcome = create_agent(command_settings("echo '{{json}}' {task_id}")).run(
        request(tmp_path, task_id="T1"), recorder
    )
    assert outcome.summary == "{json} T1"
