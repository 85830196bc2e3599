"""The Orchestrate-Evidence trailer (issue 13 item 4): each task's commit says how it was judged,
built from the task's record in the state fold (the checks of the attempt that passed, a retry's
failed ones not counted; `checks=0 unverified` when nothing judged it), and `show` prints it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import git, make_repo, orchestrate

PLAN = """\
# Evidence

- [ ] T001 Write a.txt
  - Run: `test -f a.txt`
  - Run: `grep -q alpha a.txt`
- [ ] T002 Write b.txt
- [ ] T003 Write c.txt
  - Run: `test -f c.txt`
"""

SCRIPT = {
    "T001": [{"write": "a.txt", "content": "alpha\n"}],
    "T002": [{"write": "b.txt", "content": "beta\n"}],
    "T003": {
        "attempts": [[{"write": "not-c.txt", "content": "x\n"}], [{"write": "c.txt", "content": "c\n"}]]
    },
}


def trailers(repo: Path, key: str) -> dict[str, str]:
    """Orchestrate-Task -> the value of `key`, for every task commit."""
    raw = git(
        repo,
        "log",
        "--format=%(trailers:key=Orchestrate-Task,valueonly)%x02%(trailers:key=" + key + ",valueonly)%x03",
    )
    rows = [r.split("\x02") for r in raw.split("\x03") if "\x02" in r]
    return {task.strip("\n "): value.strip("\n ") for task, value in rows if task.strip("\n ")}


def test_each_commit_says_how_its_task_was_judged(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "plan.md": PLAN})
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    done = orchestrate(repo, "run", "plan.md", "--agent", "scripted", "--script", str(script))
    assert done.returncode == 0, done.stdout + done.stderr
    assert trailers(repo, "Orchestrate-Evidence") == {
        "T001": "checks=2",
        "T002": "checks=0 unverified",
        "T003": "checks=1",  # the attempt that passed; the first one's failed check is not counted
    }
    assert trailers(repo, "Orchestrate-Attested-By") == {"T001": "", "T002": "", "T003": ""}
    shown = orchestrate(repo, "show").stdout
    assert "judged: checks=2" in shown
    assert "judged: checks=0 unverified" in shown
