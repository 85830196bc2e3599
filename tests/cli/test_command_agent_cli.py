"""`orchestrate run --agent command --agent-command ...` as typed, with a real script as the agent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ORCHESTRATE, git, make_repo, orchestrate

PLAN = """\
# Plan

## Phase 1: Notes

- [ ] T001 Write `notes/T001.txt`
  - Verify: `grep -q T001 notes/T001.txt`
- [ ] T002 Write `notes/T002.txt`
  - Verify: `grep -q T002 notes/T002.txt`
"""

# An "agent" that proves it got the prompt file and the workspace: it writes the task id it was
# given into notes/<id>.txt, but only if the prompt file mentions that task.
AGENT = """\
import pathlib, sys
prompt_file, workspace, task_id = sys.argv[1:4]
assert task_id in pathlib.Path(prompt_file).read_text(), "task id not in the prompt"
notes = pathlib.Path(workspace) / "notes"
notes.mkdir(exist_ok=True)
(notes / f"{task_id}.txt").write_text(task_id + "\\n")
print(f"wrote notes/{task_id}.txt")
"""


def test_a_command_agent_carries_a_plan_to_completion(tmp_path: Path) -> None:
    # The agent lives in the repository: under bubblewrap it runs with a private /tmp.
    repo = make_repo(tmp_path / "repo", {"plan.md": PLAN, "tools/agent.py": AGENT})
    agent = repo / "tools" / "agent.py"
    template = f"{sys.executable} {agent} {{prompt_file}} {{workspace}} {{task_id}}"
    done = subprocess.run(
        [str(ORCHESTRATE), "run", "plan.md", "--agent", "command", "--agent-command", template],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (repo / "notes" / "T002.txt").read_text() == "T002\n"
    assert "- [ ]" not in (repo / "plan.md").read_text()
    trailers = git(repo, "log", "--reverse", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split()
    assert trailers == ["T001", "T002"]


def test_command_agent_without_a_command_is_a_usage_error(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"plan.md": PLAN})
    done = subprocess.run(
        [str(ORCHESTRATE), "run", "plan.md", "--agent", "command"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "agent-command" in done.stderr or "agent_command" in done.stderr
    assert git(repo, "log", "--oneline").count("\n") == 0


def test_what_a_command_agent_spent_is_cost_unknown_not_zero_and_a_budget_says_it_cannot_hold(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", {"plan.md": PLAN, "tools/agent.py": AGENT})
    template = f"{sys.executable} {repo / 'tools' / 'agent.py'} {{prompt_file}} {{workspace}} {{task_id}}"
    done = orchestrate(
        repo, "run", "plan.md", "--agent", "command", "--agent-command", template, "--max-cost", "0.5"
    )
    assert done.returncode == 0, done.stderr
    # The budget cannot stop what it cannot count: said once, and the run goes on to the end.
    assert done.stderr.count("cannot be enforced for this backend") == 1, done.stderr
    assert "--max-cost $0.50" in done.stderr
    summary = done.stderr.strip().splitlines()
    assert any(": complete. 2 done" in line and line.endswith("0 tokens, cost unknown") for line in summary)
    assert "$0.0000" not in done.stderr

    shown = orchestrate(repo, "show").stdout
    assert "0 tokens, cost unknown; journal" in shown
    assert shown.count("0 tokens, cost unknown\n") == 2  # T001 and T002
    assert "$0.00" not in shown

    listed = orchestrate(repo, "runs")
    assert "cost unknown" in listed.stdout.splitlines()[1]
    rows = json.loads(orchestrate(repo, "runs", "--json").stdout)
    assert rows[0]["cost_known"] is False
    assert rows[0]["cost_usd"] == 0
    state = json.loads(orchestrate(repo, "show", "--json").stdout)
    assert state["usage"]["cost_known"] is False
    assert all(task["usage"]["cost_known"] is False for task in state["tasks"].values())
    report = orchestrate(repo, "report")
    assert "0 tokens, cost unknown" in report.stdout
    assert "$0.00" not in report.stdout
    assert json.loads(orchestrate(repo, "report", "--format", "json").stdout)["cost_known"] is False
