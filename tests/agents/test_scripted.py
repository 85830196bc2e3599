"""The scripted agent: real files in a real workspace, real shell commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.agents.base import AgentEvent, AgentRequest, AgentStatus
from orchestrator.agents.registry import create_agent
from orchestrator.agents.scripted import ScriptedAgent, ScriptError, load_script
from orchestrator.config import Settings
from orchestrator.tools.sandbox import Sandbox


def _agent(tmp_path: Path, script: object) -> ScriptedAgent:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(script))
    agent = create_agent(Settings(agent="scripted", script=path))
    assert isinstance(agent, ScriptedAgent)
    return agent


def _request(workspace: Path, task_id: str, attempt: int = 1) -> AgentRequest:
    return AgentRequest(task_id=task_id, attempt=attempt, system_prompt="s", prompt="p", workspace=workspace)


def test_steps_write_append_run_and_report_usage(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    agent = _agent(
        tmp_path,
        {
            "T1": [
                {"write": "pkg/a.txt", "content": "one\n"},
                {"append": "pkg/a.txt", "content": "two\n"},
                {"run": "wc -l < pkg/a.txt > count.txt"},
                {"sleep": 0},
                {"usage": {"input_tokens": 10, "output_tokens": 2, "cost_usd": 0.01}},
            ]
        },
    )
    heard: list[AgentEvent] = []
    outcome = agent.run(_request(ws, "T1"), heard.append)
    assert outcome.status is AgentStatus.DONE
    assert (ws / "pkg" / "a.txt").read_text() == "one\ntwo\n"
    assert (ws / "count.txt").read_text().strip() == "2"
    assert outcome.usage.input_tokens == 10
    assert outcome.usage.calls == 1
    assert [e.kind for e in heard].count("model_call") == 1
    assert "wrote pkg/a.txt" in outcome.summary


def test_per_attempt_steps_and_the_last_one_repeats(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    agent = _agent(tmp_path, {"T1": {"attempts": [[{"fail": "not yet"}], [{"write": "f", "content": "ok"}]]}})
    first = agent.run(_request(ws, "T1", 1), lambda e: None)
    assert first.status is AgentStatus.FAILED
    assert first.summary == "not yet"
    assert agent.run(_request(ws, "T1", 2), lambda e: None).status is AgentStatus.DONE
    assert agent.run(_request(ws, "T1", 5), lambda e: None).status is AgentStatus.DONE


def test_a_task_absent_from_the_script_changes_nothing_and_succeeds(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    outcome = _agent(tmp_path, {}).run(_request(ws, "T9"), lambda e: None)
    assert outcome.status is AgentStatus.DONE
    assert list(ws.iterdir()) == []


def test_paths_may_not_leave_the_workspace_and_failing_commands_fail(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    agent = _agent(tmp_path, {"T1": [{"write": "../escape.txt", "content": "x"}], "T2": [{"run": "exit 3"}]})
    escaped = agent.run(_request(ws, "T1"), lambda e: None)
    assert escaped.status is AgentStatus.FAILED
    assert "outside the workspace" in escaped.summary
    assert not (tmp_path / "escape.txt").exists()
    failed = agent.run(_request(ws, "T2"), lambda e: None)
    assert failed.status is AgentStatus.FAILED
    assert "exited 3" in failed.summary


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{nope", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"T1": [{"explode": 1}]}', "needs exactly one of"),
        ('{"T1": {"attempts": []}}', "attempts"),
        ('{"T1": [{"write": "a"}]}', "'content' string"),
        ('{"T1": [{"sleep": "long"}]}', "number of seconds"),
    ],
)
def test_bad_scripts_are_refused_naming_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises(ScriptError, match=message) as caught:
        load_script(path)
    assert str(path) in str(caught.value)


def test_missing_script_and_unknown_tasks(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match="--script FILE"):
        create_agent(Settings(agent="scripted"))
    with pytest.raises(ScriptError, match="no such script file"):
        load_script(tmp_path / "missing.json")
    agent = _agent(tmp_path, {"T1": [], "T404": []})
    with pytest.raises(ScriptError, match="T404"):
        agent.check_tasks(["T1", "T2"])


def test_write_and_append_refuse_the_runs_hidden_state(tmp_path: Path) -> None:
    """The run's state (Sandbox.hidden) is out of a scripted step's reach as it is out of the file
    tools': a write or append there fails the attempt and changes nothing; .git too."""
    ws = tmp_path / "ws"
    (ws / "checkpoints" / "run-1").mkdir(parents=True)
    journal = ws / "checkpoints" / "run-1" / "journal.jsonl"
    journal.write_text('{"type": "run_started"}\n')
    (ws / ".git").mkdir()
    (ws / "state").symlink_to(ws / "checkpoints")  # a link into the state
    agent = _agent(
        tmp_path,
        {
            "T1": [{"append": "checkpoints/run-1/journal.jsonl", "content": '{"type": "planted"}\n'}],
            "T2": [{"write": "checkpoints/run-1/prompts/T1.md", "content": "planted"}],
            "T3": [{"append": "state/run-1/journal.jsonl", "content": "planted\n"}],
            "T4": [{"write": ".git/config", "content": "[core]\n\tfsmonitor = /bin/false\n"}],
        },
    )
    sandbox = Sandbox("none").hiding(ws / "checkpoints")
    for task in ("T1", "T2", "T3"):
        request = _request(ws, task).model_copy(update={"sandbox": sandbox})
        outcome = agent.run(request, lambda e: None)
        assert outcome.status is AgentStatus.FAILED, task
        assert "run state" in outcome.summary, outcome.summary
    refused = agent.run(_request(ws, "T4").model_copy(update={"sandbox": sandbox}), lambda e: None)
    assert refused.status is AgentStatus.FAILED
    assert ".git" in refused.summary
    assert journal.read_text() == '{"type": "run_started"}\n'
    assert not (ws / "checkpoints" / "run-1" / "prompts").exists()
    assert not (ws / ".git" / "config").exists()


def test_a_scripted_write_into_the_runs_state_fails_the_attempt(tmp_path: Path) -> None:
    """Through the CLI: a script that writes into checkpoints/ (the run's state, inside the
    repository by default) gets its attempt failed, the file never appears, and the run goes on."""
    from tests.conftest import make_repo

    plan = "# P\n\n- [ ] T001 Write `a.txt`\n  - Verify: `test -f a.txt`\n"
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "plan.md": plan})
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {
                "T001": {
                    "attempts": [
                        [{"write": "checkpoints/planted.txt", "content": "x"}],
                        [{"write": "a.txt", "content": "a\n"}],
                    ]
                }
            }
        )
    )
    done = subprocess.run(
        [str(Path(sys.executable).with_name("orchestrate")), "run", "plan.md", "--script", str(script)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not (repo / "checkpoints" / "planted.txt").exists()
    assert "run state" in done.stderr, done.stderr


def test_write_and_append_to_a_fifo_fail_at_once(tmp_path: Path) -> None:
    """A step's own FIFO (made by a `run` step) would block a plain open for writing until a reader
    came: the step fails at once instead."""
    import threading

    ws = tmp_path / "ws"
    ws.mkdir()
    agent = _agent(
        tmp_path,
        {
            "T1": [{"run": "mkfifo pipe"}, {"write": "pipe", "content": "x"}],
            "T2": [{"append": "pipe", "content": "x"}],
        },
    )
    outcomes: list[AgentStatus] = []
    summaries: list[str] = []

    def both() -> None:
        for task in ("T1", "T2"):
            outcome = agent.run(_request(ws, task), lambda e: None)
            outcomes.append(outcome.status)
            summaries.append(outcome.summary)

    worker = threading.Thread(target=both, daemon=True)
    worker.start()
    worker.join(timeout=20)
    if worker.is_alive():  # unblock it so the test process can end, then fail
        with open(ws / "pipe", "rb") as reader:
            reader.read()
        pytest.fail("a write step blocked on a FIFO")
    assert outcomes == [AgentStatus.FAILED, AgentStatus.FAILED]
    assert all("FIFO" in s for s in summaries), summaries
