"""The run's baseline: a default check that already fails when the run starts is reported as
pre-existing, journaled, and not blamed on a task; one that a task breaks still fails it."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.persistence.checkpoints import RunStore
from orchestrator.planfile import parse_plan
from tests.conftest import git, make_repo, orchestrate

PLAN = """\
# Plan

## Phase 1: Work

- [ ] T001 Add `hello.txt`
  - Verify: `test -f hello.txt`
- [ ] T002 Add `world.txt`
  - Verify: `test -f world.txt`
"""

CONFIG = 'verify = ["test ! -e lint.bad", "test ! -e broken.txt"]\nsandbox = "none"\n'


def _project(tmp_path: Path, plan: str = PLAN, script: dict[str, object] | None = None) -> tuple[Path, Path]:
    repo = make_repo(
        tmp_path / "repo",
        {"plan.md": plan, "orchestrate.toml": CONFIG, "lint.bad": "a lint error the user left\n"},
    )
    script_path = tmp_path / "script.json"
    script_path.write_text(
        json.dumps(
            script
            or {
                "T001": [{"write": "hello.txt", "content": "hi\n"}],
                "T002": [{"write": "world.txt", "content": "world\n"}],
            }
        )
    )
    return repo, script_path


def _records(repo: Path) -> list[dict[str, object]]:
    store = RunStore.for_repo(repo, Path("checkpoints"))
    latest = store.latest()
    assert latest is not None
    return store.records(latest)


def test_a_default_check_failing_before_the_run_is_not_blamed_on_any_task(tmp_path: Path) -> None:
    repo, script = _project(tmp_path)

    done = orchestrate(repo, "run", "plan.md", "--script", str(script), "--branch", "feature")

    assert done.returncode == 0, done.stderr
    assert "default check `test ! -e lint.bad` already fails before any task ran (exit 1)" in done.stderr
    assert all(t.checked for t in parse_plan(repo / "plan.md").tasks)
    records = _records(repo)
    baseline = [r for r in records if r["type"] == "checks_baseline"]
    assert len(baseline) == 1
    assert baseline[0]["failing"] == {"test ! -e lint.bad": "exit 1"}
    # Before the first task: taken at the run's start, not on some task's tree.
    first_task = next(i for i, r in enumerate(records) if r["type"] == "task_running")
    assert records.index(baseline[0]) < first_task
    lint_runs = [r for r in records if r["type"] == "verification" and r["command"] == "test ! -e lint.bad"]
    assert len(lint_runs) == 2
    assert all(r["preexisting"] is True and r["ok"] is False for r in lint_runs)
    shown = orchestrate(repo, "show")
    assert "default check `test ! -e lint.bad` already failed before the first task (exit 1)" in shown.stdout
    assert "(failed before the run began too: not blamed on the task)" in shown.stdout


def test_a_default_check_a_task_breaks_still_fails_it(tmp_path: Path) -> None:
    repo, script = _project(
        tmp_path,
        script={"T001": [{"write": "hello.txt", "content": "hi\n"}, {"write": "broken.txt", "content": "x"}]},
    )

    done = orchestrate(
        repo, "run", "plan.md", "--script", str(script), "--branch", "feature", "--max-attempts", "1"
    )

    assert done.returncode == 1
    failed = [r for r in _records(repo) if r["type"] == "task_failed"]
    assert [r["task"] for r in failed] == ["T001"]
    assert "test ! -e broken.txt" in str(failed[0]["reason"])
    assert git(repo, "log", "--format=%s", "feature") == "initial"


def test_a_task_that_names_the_failing_check_itself_is_judged_by_it(tmp_path: Path) -> None:
    plan = PLAN.replace("  - Verify: `test -f hello.txt`", "  - Verify: `test ! -e lint.bad`")
    repo, script = _project(tmp_path, plan=plan)

    done = orchestrate(
        repo, "run", "plan.md", "--script", str(script), "--branch", "feature", "--max-attempts", "1"
    )

    assert done.returncode == 1
    failed = [r for r in _records(repo) if r["type"] == "task_failed"]
    assert [r["task"] for r in failed] == ["T001"]


def test_resume_keeps_the_baseline_without_taking_it_again(tmp_path: Path) -> None:
    repo, script = _project(tmp_path, script={"T001": [{"fail": "not today"}]})

    first = orchestrate(
        repo, "run", "plan.md", "--script", str(script), "--branch", "feature", "--max-attempts", "1"
    )
    assert first.returncode == 1
    # The user clears the lint error meanwhile: the baseline stays what the run started from.
    script.write_text(
        json.dumps(
            {
                "T001": [{"write": "hello.txt", "content": "hi\n"}],
                "T002": [{"write": "world.txt", "content": "world\n"}],
            }
        )
    )

    resumed = orchestrate(repo, "resume", "--script", str(script))

    assert resumed.returncode == 0, resumed.stderr
    records = _records(repo)
    assert len([r for r in records if r["type"] == "checks_baseline"]) == 1
    assert "already fails before any task ran" not in resumed.stderr
    assert all(
        r.get("preexisting") is True
        for r in records
        if r["type"] == "verification" and r["command"] == "test ! -e lint.bad"
    )
