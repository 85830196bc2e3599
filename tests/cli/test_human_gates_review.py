"""Human gates after a reviewer's needs_human (issue 13 items 1 and 3), through the installed CLI
with scripted verdicts: the task's verified work is kept in a ref while it waits (the work tree is
the branch's head for the next task), `accept` lands that work with its tick and the attester,
`reject --note` re-opens it and the note reaches the next attempt's prompt; the same in a parallel
run, and after a kill between the hold's record and the work moving to its ref."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git, make_repo, orchestrate

PLAN = """\
# Plan: greeter

Tasks 1-2 can be done in parallel (different files). Task 3 depends on 1.

### Task 1: Greeter

Create `greet.py` with a `greet(name)` function.

**Verification:**
- [ ] The greeting is polite

### Task 2: Farewell

Create `bye.py`.

### Task 3: Docs

Document `greet` in `GREET.md`.
"""

POLITE = "The greeting is polite"
KIND = "def greet(name):\n    return f'Hello, {name}! Welcome.'\n"
WARMER = "def greet(name):\n    return f'Hello, dear {name}! Welcome.'\n"
NEEDS_HUMAN_EXIT = 4
ATTESTER = "Test Author <author@example.invalid>"


def verdict(word: str, reason: str, evidence: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "criteria": [{"criterion": POLITE, "verdict": word, "reason": reason, "evidence": evidence or []}]
    }


ASK_A_PERSON = verdict("needs_human", "politeness is a matter of taste: a person should read it")
MET = verdict(
    "met",
    "it welcomes the reader",
    [{"path": "greet.py", "start_line": 2, "end_line": 2, "quote": "Welcome."}],
)

SCRIPT: dict[str, Any] = {
    "task-1": {
        "attempts": [[{"write": "greet.py", "content": KIND}], [{"write": "greet.py", "content": WARMER}]],
        "reviews": [ASK_A_PERSON, MET],
    },
    "task-2": [{"write": "bye.py", "content": "def bye():\n    return 'bye'\n"}],
    "task-3": [{"write": "GREET.md", "content": "# greet\n"}],
}


def project(tmp_path: Path) -> tuple[Path, Path]:
    repo = make_repo(
        tmp_path / "repo", {"README.md": "# r\n", ".gitignore": "__pycache__/\n", "plan.md": PLAN}
    )
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    return repo, script


def run(repo: Path, script: Path, *extra: str, env: dict[str, str] | None = None) -> Any:
    return orchestrate(
        repo, "run", "plan.md", "--agent", "scripted", "--script", str(script), *extra, env=env
    )


def journal(repo: Path) -> list[dict[str, Any]]:
    files = sorted((repo / "checkpoints").glob("*/journal.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]


def committed(repo: Path) -> list[str]:
    raw = git(repo, "log", "--reverse", "--format=%(trailers:key=Orchestrate-Task,valueonly)%x03")
    return [r.strip() for r in raw.split("\x03") if r.strip()]


def trailers(repo: Path, rev: str = "HEAD") -> dict[str, str]:
    raw = git(repo, "log", "-1", "--format=%(trailers:only,unfold)", rev)
    return dict(line.split(": ", 1) for line in raw.splitlines() if ": " in line)


def held(repo: Path) -> dict[str, Any]:
    [record] = [r for r in journal(repo) if r["type"] == "task_needs_human"]
    return record


def stopped_for_a_person(repo: Path, script: Path, *extra: str) -> None:
    done = run(repo, script, *extra)
    assert done.returncode == NEEDS_HUMAN_EXIT, done.stdout + done.stderr
    assert sorted(committed(repo)) == ["task-2"]  # its dependent waits, the other task went on
    record = held(repo)
    assert record["task"] == "task-1"
    assert "a person should read it" in record["reason"]
    # Its verified work is kept in the ref, out of the work tree (the next task started clean).
    assert git(repo, "show", f"{record['ref']}:greet.py") + "\n" == KIND
    assert not (repo / "greet.py").exists()
    assert git(repo, "status", "--porcelain") == ""
    assert "needs a human task-1" in done.stderr


@pytest.mark.parametrize("parallel", ["1", "2"])
def test_accept_lands_the_kept_work_with_its_ticks(tmp_path: Path, parallel: str) -> None:
    repo, script = project(tmp_path)
    stopped_for_a_person(repo, script, "--parallel", parallel)
    accepted = orchestrate(repo, "accept", "plan.md", "task-1", "--note", "polite enough")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert (repo / "greet.py").read_text() == KIND
    assert sorted(git(repo, "show", "--name-only", "--format=", "HEAD").split()) == ["greet.py", "plan.md"]
    assert "- [x] The greeting is polite" in (repo / "plan.md").read_text()
    said = trailers(repo)
    assert said["Orchestrate-Task"] == "task-1"
    assert said["Orchestrate-Attested-By"] == ATTESTER
    # How it was judged: its reviewer asked for a person, and a person accepted it.
    assert said["Orchestrate-Evidence"] == "checks=0 review=needs-human human=accepted"
    resumed = orchestrate(repo, "resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert committed(repo)[-1] == "task-3"
    assert sorted(committed(repo)) == ["task-1", "task-2", "task-3"]


def test_reject_note_reaches_the_next_attempts_prompt(tmp_path: Path) -> None:
    repo, script = project(tmp_path)
    stopped_for_a_person(repo, script)
    rejected = orchestrate(repo, "reject", "plan.md", "task-1", "--note", "say 'dear' to the reader")
    assert rejected.returncode == 0, rejected.stdout + rejected.stderr
    assert held(repo)["ref"] in rejected.stdout  # where the rejected work is kept
    resumed = orchestrate(repo, "resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    [prompt] = (repo / "checkpoints").glob("*/prompts/task-1.attempt-2.md")
    text = prompt.read_text()
    assert "say 'dear' to the reader" in text
    assert f"rejected it ({ATTESTER})" in text
    assert (repo / "greet.py").read_text() == WARMER
    landed = trailers(repo, "HEAD~1" if committed(repo)[-1] == "task-3" else "HEAD")
    assert landed["Orchestrate-Task"] == "task-1"
    assert "Orchestrate-Attested-By" not in landed  # the reviewer judged the new attempt
    assert landed["Orchestrate-Evidence"] == "checks=0 review=met"
    assert sorted(committed(repo)) == ["task-1", "task-2", "task-3"]


def test_a_kill_before_the_work_moves_to_its_ref_then_resume(tmp_path: Path) -> None:
    repo, script = project(tmp_path)
    killed = run(repo, script, env={"ORCHESTRATE_CRASH_AT": "after_needs_human:task-1"})
    assert killed.returncode == 137, killed.stdout + killed.stderr
    assert (repo / "greet.py").read_text() == KIND  # still in the work tree
    resumed = orchestrate(repo, "resume")
    assert resumed.returncode == NEEDS_HUMAN_EXIT, resumed.stdout + resumed.stderr
    assert git(repo, "show", f"{held(repo)['ref']}:greet.py") + "\n" == KIND
    assert sorted(committed(repo)) == ["task-2"]
    assert git(repo, "status", "--porcelain") == ""
    assert orchestrate(repo, "accept", "plan.md", "task-1").returncode == 0
    assert (repo / "greet.py").read_text() == KIND
