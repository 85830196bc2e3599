"""The agent's own file tools on what is not a regular file: a FIFO it made (which blocks whoever
opens it to read or write until someone is at the other end), a character device such as a copy of
/dev/zero (which never ends), a link to /dev/zero, a file too big to hold. Each read, edit or write
of one is an error result the model can act on, at once; search and list go past them. Before the
fix, the first read of the FIFO blocked the agent loop forever.

A hostile model against the fake Messages API, through the real CLI, with bubblewrap and without;
the run has a deadline, so a hang fails the test instead of blocking it.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ORCHESTRATE, git, make_repo, needs_bwrap
from tests.fakes.messages_server import (
    TEST_KEY,
    TEST_MODEL,
    FakeMessagesServer,
    RecordedRequest,
    Response,
    finish,
    tool_call,
)

PLAN = """\
# Plan

- [ ] T001 Write `done.txt`
  - Verify: `test -f done.txt`
"""

# A FIFO at the top and one below; a regular file beside them for search to find; a link to
# /dev/zero; unconfined as root, a character device of /dev/zero's numbers (bubblewrap drops the
# capability: there it is not made, and the read says there is no such file).
SETUP = (
    "mkfifo pipe && mkdir -p d && mkfifo d/pipe && echo needle > d/hay.txt && ln -s /dev/zero zero-link"
    " && (mknod zero c 1 5 2>/dev/null || true)"
    " && truncate -s 50M big.txt"
)

STEPS: list[tuple[str, dict[str, Any]]] = [
    ("run_command", {"command": SETUP}),
    ("read_file", {"path": "pipe"}),
    ("read_file", {"path": "d/pipe"}),
    ("edit_file", {"path": "pipe", "old_string": "a", "new_string": "b"}),
    ("write_file", {"path": "pipe", "content": "x"}),
    ("read_file", {"path": "zero-link"}),
    ("read_file", {"path": "zero"}),
    ("read_file", {"path": "big.txt"}),
    ("search", {"pattern": "needle"}),
    ("search", {"pattern": "needle", "path": "d"}),
    ("search", {"pattern": "needle", "path": "pipe"}),
    ("list_dir", {"path": ".", "recursive": True}),
    ("write_file", {"path": "done.txt", "content": "done\n"}),
]


def hostile_model(results: list[dict[str, Any]]) -> Any:
    """Calls STEPS one a turn, keeping each tool result it gets back, then says done."""

    def respond(request: RecordedRequest) -> Response:
        messages = request.body["messages"]
        assert re.search(r"## Your task: T001", messages[0]["content"][0]["text"])
        turn = (len(messages) + 1) // 2
        if turn > 1:
            results.append(
                next(b for b in messages[-1]["content"] if isinstance(b, dict) and b["type"] == "tool_result")
            )
        if turn <= len(STEPS):
            name, args = STEPS[turn - 1]
            return tool_call(name, args)
        return finish("done", "done.txt written")

    return respond


def text_of(result: dict[str, Any]) -> str:
    content = result.get("content")
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return str(content)


@pytest.mark.parametrize("sandbox", [pytest.param("bubblewrap", marks=needs_bwrap), "none"])
def test_the_agents_file_tools_never_block_on_or_drain_a_special_file(tmp_path: Path, sandbox: str) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "plan.md": PLAN})
    with open(repo / ".git" / "info" / "exclude", "a") as f:
        f.write("pipe\nd/\nzero\nzero-link\nbig.txt\n")  # the model's litter is no task's change
    results: list[dict[str, Any]] = []
    with FakeMessagesServer() as api:
        api.respond_with(hostile_model(results))
        done = subprocess.run(
            [str(ORCHESTRATE), "run", "plan.md", "--agent", "anthropic", "--model", TEST_MODEL],
            cwd=repo,
            env={
                **os.environ,
                "ANTHROPIC_BASE_URL": api.url,
                "ANTHROPIC_API_KEY": TEST_KEY,
                "ORCHESTRATE_MAX_RETRIES": "0",
                "ORCHESTRATE_SANDBOX": sandbox,
            },
            capture_output=True,
            text=True,
            timeout=90,  # the FIFO blocked the loop forever; a hang fails here
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert len(results) == len(STEPS), [text_of(r) for r in results]
    by_step = dict(zip(range(len(STEPS)), results, strict=True))
    assert not by_step[0].get("is_error"), text_of(by_step[0])
    for n in (1, 2, 3, 4):  # the FIFO: read, read below, edit, write
        assert by_step[n].get("is_error"), (STEPS[n], text_of(by_step[n]))
        assert "FIFO" in text_of(by_step[n]), text_of(by_step[n])
    assert by_step[5].get("is_error")
    assert "outside the workspace" in text_of(by_step[5])
    assert by_step[6].get("is_error"), text_of(by_step[6])  # a device, or none where it was not made
    assert re.search(r"character device|no such file", text_of(by_step[6])), text_of(by_step[6])
    assert by_step[7].get("is_error"), text_of(by_step[7])
    assert "limit" in text_of(by_step[7]), text_of(by_step[7])
    # big.txt is not searched, and the model is told so.
    assert text_of(by_step[8]).splitlines() == ["d/hay.txt:1: needle", "[1 file(s) over 10 MB not searched]"]
    assert text_of(by_step[9]).splitlines() == ["d/hay.txt:1: needle"], text_of(by_step[9])
    assert by_step[10].get("is_error") or "no match" in text_of(by_step[10]), text_of(by_step[10])
    listed = text_of(by_step[11]).splitlines()
    assert "d/hay.txt" in listed
    assert not {"pipe", "d/pipe", "zero"} & set(listed), listed
    assert git(repo, "log", "-1", "--format=%(trailers:key=Orchestrate-Task,valueonly)") == "T001"
