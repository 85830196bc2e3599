"""The README's main command, `orchestrate demo`, with ANTHROPIC_API_KEY set: the real agent loop
and the real SDK carry the demo plan to completion against the fake Messages API.

The fake model plays the demo script's final attempt of each task as `write_file` tool calls, so
the run proves the anthropic path end to end (prompt -> tool calls -> verify -> tick -> commit)
without the network.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from orchestrator.config import DEFAULT_MODEL
from tests.conftest import ORCHESTRATE, REPO_ROOT, git
from tests.fakes.messages_server import (
    TEST_KEY,
    FakeMessagesServer,
    RecordedRequest,
    Response,
    finish,
    tool_calls,
)

SCRIPT: dict[str, Any] = json.loads((REPO_ROOT / "plans" / "demo.script.json").read_text())


def final_writes(task_id: str) -> list[tuple[str, dict[str, Any]]]:
    entry = SCRIPT[task_id]
    steps = entry["attempts"][-1] if isinstance(entry, dict) else entry
    calls = []
    for step in steps:
        if "sleep" in step:
            continue
        assert set(step) == {"write", "content"}, step
        calls.append(("write_file", {"path": step["write"], "content": step["content"]}))
    return calls


def model(request: RecordedRequest) -> Response:
    """First turn writes the task's files; the second reports done."""
    messages = request.body["messages"]
    first = messages[0]["content"]
    prompt = first if isinstance(first, str) else first[0]["text"]
    task = re.search(r"## Your task: (\S+)", prompt)
    assert task is not None, prompt[:500]
    if len(messages) == 1:
        return tool_calls(*final_writes(task.group(1)))
    return finish("done", f"{task.group(1)} written")


def test_demo_uses_the_anthropic_agent_when_a_key_is_set(tmp_path: Path) -> None:
    scratch = tmp_path / "demo"
    with FakeMessagesServer() as api:
        api.respond_with(model)
        env = {
            **os.environ,
            "ANTHROPIC_API_KEY": TEST_KEY,
            "ANTHROPIC_BASE_URL": api.url,
            "ORCHESTRATE_MAX_RETRIES": "0",
        }
        done = subprocess.run(
            [str(ORCHESTRATE), "demo", "--dir", str(scratch)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        requests = api.message_requests
    assert done.returncode == 0, done.stderr
    assert "agent anthropic" in done.stderr
    # Said before it starts, and stated again by the run: a key set means money spent.
    assert done.stderr.startswith("demo: the anthropic agent calls a paid API; budget $1.00")
    assert "budget $1.00" in next(line for line in done.stderr.splitlines() if "starting run" in line)
    assert len(requests) == 12  # two turns for each of the six tasks
    assert {r.body["model"] for r in requests} == {DEFAULT_MODEL}
    assert "- [ ]" not in (scratch / "plans" / "demo.md").read_text()
    subjects = git(scratch, "log", "--format=%s", "main..HEAD").splitlines()
    assert len(subjects) == 6
    assert TEST_KEY not in done.stdout + done.stderr
    report = json.loads(
        subprocess.run(
            [str(ORCHESTRATE), "show", "--json"], cwd=scratch, capture_output=True, text=True, check=True
        ).stdout
    )
    assert report["usage"]["calls"] == 12
    assert report["usage"]["cost_usd"] > 0
