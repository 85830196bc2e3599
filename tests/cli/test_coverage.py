"""Honest coverage (issue 12 item 5): lint, status and run --dry-run say how each task will be
judged (its own checks, the default checks only, or nothing); lint --require-verify fails on a task
judged by nothing; the end of a run counts verified and unverified tasks instead of saying "every
task done" for work ticked on the agent's word."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import make_repo, orchestrate

PLAN = """\
# Plan

## Phase 1: Work

- [ ] T001 Add `hello.txt`
  - Verify: `test -f hello.txt`
- [ ] T002 Write the release notes
- [x] T003 Already done
"""

SCRIPT = {
    "T001": [{"write": "hello.txt", "content": "hi\n"}],
    "T002": [{"write": "NOTES.md", "content": "n\n"}],
}


def _repo(tmp_path: Path, config: str | None = None) -> Path:
    files = {"plan.md": PLAN}
    if config is not None:
        files["orchestrate.toml"] = config
    return make_repo(tmp_path / "repo", files)


def test_lint_says_how_tasks_are_judged_and_require_verify_fails_on_nothing(tmp_path: Path) -> None:
    repo = _repo(tmp_path)

    plain = orchestrate(repo, "lint", "plan.md")

    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert (
        "2 open task(s) judged: 1 by their own checks, 0 by the default checks only, 1 by nothing "
        "(ticked on the agent's word)"
    ) in plain.stdout
    assert "judged by nothing: T002 (--require-verify makes each an error)" in plain.stdout

    strict = orchestrate(repo, "lint", "plan.md", "--require-verify")

    assert strict.returncode == 1
    assert "plan.md:7: error: T002 is judged by nothing" in strict.stdout
    assert "T001 is judged" not in strict.stdout
    assert "T003" not in strict.stdout  # done: nothing left to judge


def test_default_checks_cover_a_task_without_its_own(tmp_path: Path) -> None:
    repo = _repo(tmp_path, 'verify = ["true"]\n')

    strict = orchestrate(repo, "lint", "plan.md", "--require-verify")

    assert strict.returncode == 0, strict.stdout
    assert "1 by their own checks, 1 by the default checks only, 0 by nothing" in strict.stdout


def test_status_and_dry_run_say_how_each_task_is_judged(tmp_path: Path) -> None:
    repo = _repo(tmp_path)

    status = orchestrate(repo, "status", "plan.md")

    assert status.returncode == 0, status.stderr
    assert "2 open task(s) judged: 1 by their own checks" in status.stdout
    assert "[judged by its own checks (1)]" in status.stdout

    dry = orchestrate(repo, "run", "plan.md", "--dry-run", "--agent", "scripted")

    assert dry.returncode == 0, dry.stderr
    assert "judged by: its own checks (1)" in dry.stdout
    assert "judged by: nothing: ticked on the agent's word" in dry.stdout
    assert "2 task(s) judged: 1 by their own checks, 0 by the default checks only, 1 by nothing" in dry.stdout

    prompts = orchestrate(repo, "run", "plan.md", "--dry-run", "--show-prompts", "--agent", "scripted")

    # The run's one system prompt is shown once; each task's own prompt under it.
    assert prompts.stdout.count("--- system prompt (the same for every task of the run) ---") == 1
    assert prompts.stdout.count("--- task prompt ---") == 2

    as_json = orchestrate(repo, "run", "plan.md", "--dry-run", "--json", "--agent", "scripted")

    judged = {t["id"]: t["judged_by"] for wave in json.loads(as_json.stdout)["waves"] for t in wave}
    assert judged == {"T001": "own", "T002": "nothing"}


def test_the_end_of_a_run_counts_unverified_tasks(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))

    done = orchestrate(repo, "run", "plan.md", "--script", str(script), "--json")

    assert done.returncode == 0, done.stderr
    assert "every task done" not in done.stdout + done.stderr
    end = [json.loads(line) for line in done.stdout.splitlines() if '"run_finished"' in line][-1]
    assert end["done"] == 2
    assert end["unverified"] == 1
    assert end["message"] == (
        "2 done: 1 verified by checks, 1 unverified (no check ran; ticked on the agent's word: T002)"
    )


def test_a_fully_verified_run_says_so(tmp_path: Path) -> None:
    repo = _repo(tmp_path, 'verify = ["true"]\n')
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))

    done = orchestrate(repo, "run", "plan.md", "--script", str(script))

    assert done.returncode == 0, done.stderr
    assert "every task done: 2 verified by checks" in done.stderr
