"""Verification runs in the run's sandbox: a check the agent wrote is as confined as the agent.

Through the CLI with the scripted agent writing a hostile check into the repository: it tries to
write outside the workspace, into `.git` and into the run's journal, to reach a server on
127.0.0.1 (the network is off unless `verify_network = true`), and to see orchestrate's process.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from orchestrator.tools.sandbox import detect_sandbox
from tests.conftest import git, make_repo, orchestrate

pytestmark = pytest.mark.skipif(
    detect_sandbox("auto").kind != "bubblewrap", reason="bubblewrap cannot run here"
)

PLAN = """\
# Plan

## Phase 1: One

- [ ] T001 Add the check
  - Verify: `python3 check.py`
"""

CHECK = """\
import glob, json, os, socket, sys
report = {{}}
def attempt(name, action):
    try:
        action()
        report[name] = "done"
    except OSError as exc:
        report[name] = type(exc).__name__
attempt("outside", lambda: open({outside!r}, "w").write("escaped"))
attempt("git", lambda: open(".git/hooks/post-commit", "w").write("#!/bin/sh\\necho owned"))
journals = glob.glob("checkpoints/*/journal.jsonl")
report["journals_seen"] = len(journals)
attempt("network", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=5).close())
report["orchestrate_visible"] = any(
    b"orchestrate" in open(f"/proc/{{p}}/cmdline", "rb").read()
    for p in os.listdir("/proc") if p.isdigit() and os.path.exists(f"/proc/{{p}}/cmdline")
)
with open("check_report.json", "w") as f:
    json.dump(report, f)
"""


@pytest.mark.parametrize("network", [False, True])
def test_a_hostile_check_is_confined_and_offline_unless_the_setting_says(
    tmp_path: Path, network: bool
) -> None:
    outside = tmp_path / "outside.txt"
    repo = make_repo(tmp_path / "repo", {"plan.md": PLAN, ".gitignore": "check_report.json\n"})
    with socket.create_server(("127.0.0.1", 0)) as server:
        check = CHECK.format(outside=str(outside), port=server.getsockname()[1])
        script = tmp_path / "script.json"
        script.write_text(json.dumps({"T001": [{"write": "check.py", "content": check}]}))
        env = {"ORCHESTRATE_SANDBOX": "auto", "ORCHESTRATE_VERIFY_NETWORK": "true" if network else "false"}
        done = orchestrate(repo, "run", "plan.md", "--agent", "scripted", "--script", str(script), env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads((repo / "check_report.json").read_text())
    assert not outside.exists()  # (the write may succeed, into the sandbox's private /tmp)
    assert report["git"] != "done"
    assert not (repo / ".git" / "hooks" / "post-commit").exists()
    assert report["journals_seen"] == 0
    assert list((repo / "checkpoints").glob("*/journal.jsonl"))  # it is there, just not to the check
    assert report["orchestrate_visible"] is False
    assert (report["network"] == "done") is network
    assert git(repo, "log", "-1", "--format=%(trailers:key=Orchestrate-Task,valueonly)") == "T001"
