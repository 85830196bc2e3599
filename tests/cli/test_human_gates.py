"""Human gates (issue 13 item 3), through the installed CLI with the scripted agent: a unit the plan
marks as manual never goes to an agent; it stops as needs-human, tasks that do not depend on it go
on, its dependents wait (neither failed nor skipped), the run ends with exit 4 saying what waits and
what to type; a resume (also after a kill) keeps it waiting."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import git, make_repo, orchestrate

PLAN = """\
# Gates

## Phase 1: Work

- [ ] T001 Write the greeting in greet.txt
- [ ] T002 Manually verify the greeting reads well (depends on T001)
- [ ] T003 Write the farewell in bye.txt (depends on T001)
- [ ] T004 Publish the greeting (depends on T002)
"""

SCRIPT = {
    "T001": [{"write": "greet.txt", "content": "hello\n"}],
    "T002": [{"fail": "an agent was given a person's step"}],
    "T003": [{"write": "bye.txt", "content": "bye\n"}],
    "T004": [{"write": "published.txt", "content": "hello\n"}],
}

NEEDS_HUMAN_EXIT = 4


def project(tmp_path: Path, plan: str = PLAN, script: dict[str, object] | None = None) -> tuple[Path, Path]:
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "plan.md": plan})
    script_path = tmp_path / "script.json"
    script_path.write_text(json.dumps(script if script is not None else SCRIPT))
    return repo, script_path


def run(repo: Path, script: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = orchestrate(
        repo, "run", "plan.md", "--agent", "scripted", "--script", str(script), *extra, env=env
    )
    return done.returncode, done.stdout + done.stderr


def task_commits(repo: Path) -> list[str]:
    raw = git(repo, "log", "--reverse", "--format=%(trailers:key=Orchestrate-Task,valueonly)%x1e")
    return [r.strip() for r in raw.split("\x1e") if r.strip()]


def journal(repo: Path) -> list[dict[str, object]]:
    files = sorted((repo / "checkpoints").glob("*/journal.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]


def run_id(repo: Path) -> str:
    return next(str(r["run_id"]) for r in journal(repo) if r["type"] == "run_started")


def test_a_manual_unit_waits_for_a_human_and_the_rest_goes_on(tmp_path: Path) -> None:
    repo, script = project(tmp_path)
    code, out = run(repo, script)
    assert code == NEEDS_HUMAN_EXIT, out
    # The independent task ran; the manual one and its dependent did not.
    assert task_commits(repo) == ["T001", "T003"]
    assert "- [ ] T002" in (repo / "plan.md").read_text()
    records = journal(repo)
    assert not [r for r in records if r["type"] == "task_running" and r["task"] in ("T002", "T004")]
    held = [r for r in records if r["type"] == "task_needs_human"]
    assert [r["task"] for r in held] == ["T002"]
    assert '"Manually verify"' in str(held[0]["reason"])
    assert not [r for r in records if r["type"] in ("task_failed", "task_skipped")]
    ended = records[-1]
    assert ended["type"] == "run_finished"
    assert ended["status"] == "waiting"
    # The summary says what waits, on what, and the command to type.
    assert "1 task(s) wait for a human: T002 (1 more task(s) wait on them)" in out
    assert "needs a human T002" in out
    assert "continue with: orchestrate accept plan.md T002" in out
    assert git(repo, "status", "--porcelain") == ""


def test_a_resume_keeps_it_waiting_also_after_a_kill(tmp_path: Path) -> None:
    repo, script = project(tmp_path)
    code, out = run(repo, script, env={"ORCHESTRATE_CRASH_AT": "after_needs_human:T002"})
    assert code == 137, out
    assert task_commits(repo) == ["T001"]
    resumed = orchestrate(repo, "resume")
    assert resumed.returncode == NEEDS_HUMAN_EXIT, resumed.stdout + resumed.stderr
    assert task_commits(repo) == ["T001", "T003"]
    again = orchestrate(repo, "resume")
    assert again.returncode == NEEDS_HUMAN_EXIT, again.stdout + again.stderr
    assert task_commits(repo) == ["T001", "T003"]
    records = journal(repo)
    assert [r["task"] for r in records if r["type"] == "task_needs_human"] == ["T002"]
    assert not [r for r in records if r["type"] == "task_running" and r["task"] in ("T002", "T004")]
    assert "T002" in again.stdout + again.stderr
