"""Runs in real repositories with the scripted agent and real verification commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.agents.base import AgentListener, AgentOutcome, AgentRequest, AgentUnavailable
from orchestrator.domain import transitions
from orchestrator.domain.events import ListReporter, RunFinished, TaskFinished, TaskRetrying
from orchestrator.domain.state import RunStatus, TaskStatus
from orchestrator.engine.session import resume_run, start_run
from orchestrator.errors import PreflightError, UsageError
from orchestrator.persistence.checkpoints import RunStore
from orchestrator.planfile import parse_plan
from tests.conftest import git
from tests.engine.conftest import SCRIPT, write_project


def _commits(repo: Path) -> list[tuple[str, str, str]]:
    """(subject, task trailer, run trailer) per commit made by orchestrate, oldest first."""
    raw = git(
        repo,
        "log",
        "--reverse",
        "--format=%s%x1f%(trailers:key=Orchestrate-Task,valueonly)%x1f%(trailers:key=Orchestrate-Run,valueonly)%x1e",
    )
    rows = []
    for record in raw.split("\x1e"):
        parts = [p.strip() for p in record.strip().split("\x1f")]
        if len(parts) == 3 and parts[1]:
            rows.append((parts[0], parts[1], parts[2]))
    return rows


def _run(plan: Path, script: Path, **overrides: Any) -> tuple[Any, ListReporter]:
    reporter = ListReporter()
    result = start_run(plan, {"agent": "scripted", "script": script, **overrides}, reporter)
    return result, reporter


def test_plan_runs_to_completion_with_one_commit_per_task_in_dag_order(
    project: tuple[Path, Path, Path],
) -> None:
    repo, plan, script = project
    result, reporter = _run(plan, script)

    assert result.exit_code == 0
    assert result.status is RunStatus.COMPLETE
    assert all(t.checked for t in parse_plan(plan).tasks)
    commits = _commits(repo)
    assert [c[1] for c in commits] == ["T001", "T002", "T003", "T004", "T005"]
    assert {c[2] for c in commits} == {result.run_id}
    assert commits[0][0] == "Phase 1: Create `greet.py` with a `greet(name)` function"
    assert commits[2][0].startswith("Phase 2: ")
    assert git(repo, "status", "--porcelain") == ""
    # Each commit holds its task's work and its tick, nothing of the run's state.
    files = git(repo, "show", "--name-only", "--format=", "HEAD~4").splitlines()
    assert sorted(files) == ["greet.py", "plan.md"]
    assert "checkpoints" not in git(repo, "ls-files")
    assert "/checkpoints/" in (repo / ".git" / "info" / "exclude").read_text()
    assert (repo / ".gitignore").read_text() == "__pycache__/\n"
    finished = reporter.events[-1]
    assert isinstance(finished, RunFinished)
    assert (finished.status, finished.done) == ("complete", 5)


def test_journal_records_every_transition_fsynced_in_order(project: tuple[Path, Path, Path]) -> None:
    repo, plan, script = project
    result, _ = _run(plan, script)
    records = RunStore(repo / "checkpoints").records(result.run_id)
    kinds = [r["type"] for r in records if r.get("task") == "T001"]
    assert kinds[:1] == ["task_running"]
    assert kinds[-4:] == ["verification", "task_verified", "task_committing", "task_done"]
    assert "agent_finished" in kinds
    done = next(r for r in records if r["type"] == "task_done" and r["task"] == "T003")
    assert done["commit"] == git(repo, "rev-parse", "HEAD~2")
    prompt = repo / "checkpoints" / result.run_id / "prompts" / "T001.attempt-1.md"
    assert "Create `greet.py`" in prompt.read_text()


def test_failed_verification_is_retried_with_its_output_in_the_prompt(tmp_path: Path) -> None:
    script = dict(SCRIPT)
    script["T003"] = {
        "attempts": [
            [{"append": "greet.py", "content": "\n\ndef shout(name):\n    return 'nope'\n"}],
            [{"append": "greet.py", "content": "\n\ndef shout(name):\n    return greet(name).upper()\n"}],
        ]
    }
    repo, plan, script_path = write_project(tmp_path, script=script)
    result, reporter = _run(plan, script_path)

    assert result.exit_code == 0
    retries = [e for e in reporter.events if isinstance(e, TaskRetrying)]
    assert [(e.task_id, e.next_attempt) for e in retries] == [("T003", 2)]
    retry_prompt = (repo / "checkpoints" / result.run_id / "prompts" / "T003.attempt-2.md").read_text()
    assert "AssertionError" in retry_prompt
    assert "Attempt 2 of 3" in retry_prompt
    assert "Your previous changes are still in the work tree" in retry_prompt
    assert "NOT in the work tree" not in retry_prompt
    assert [c[1] for c in _commits(repo)].count("T003") == 1
    assert result.state.tasks["T003"].attempt == 2


PARALLEL_PLAN = """\
# Notes

## Phase 1: A

- [ ] T001 one
  - Verify: `test -f one`
- [ ] T002 [P] two
  - Verify: `test -f two`
- [ ] T003 [P] three
  - Verify: `test -f three`

## Phase 2: B

- [ ] T004 four
  - Verify: `test -f four`
"""


def test_a_task_that_never_passes_skips_its_dependents_and_independent_tasks_go_on(tmp_path: Path) -> None:
    script: dict[str, Any] = {t: [{"write": t.lower(), "content": t}] for t in ("T001", "T003", "T004")}
    script["T001"] = [{"write": "one", "content": "1"}]
    script["T003"] = [{"write": "three", "content": "3"}]
    script["T004"] = [{"write": "four", "content": "4"}]
    script["T002"] = {"attempts": [[{"write": "wrong.txt", "content": "x\n"}]]}
    repo, plan, script_path = write_project(tmp_path, plan=PARALLEL_PLAN, script=script)
    result, reporter = _run(plan, script_path, max_attempts=2)

    assert result.exit_code == 1
    assert result.status is RunStatus.FAILED
    statuses = {e.task_id: e.status for e in reporter.events if isinstance(e, TaskFinished)}
    assert statuses == {"T001": "done", "T002": "failed", "T003": "done", "T004": "skipped"}
    ticked = {t.id: t.checked for t in parse_plan(plan).tasks}
    assert ticked == {"T001": True, "T002": False, "T003": True, "T004": False}
    assert [c[1] for c in _commits(repo)] == ["T001", "T003"]
    # The failed attempt's edits are kept in a ref, not left in the tree.
    assert not (repo / "wrong.txt").exists()
    ref = result.state.tasks["T002"].saved_refs[0]
    assert "wrong.txt" in git(repo, "show", "--name-only", "--format=", ref)
    assert git(repo, "status", "--porcelain") == ""
    assert len(result.state.tasks["T002"].attempts) == 2
    assert "test -f two" in result.state.tasks["T002"].reason


def test_the_agent_may_not_edit_the_plan_or_protected_paths(tmp_path: Path) -> None:
    script = dict(SCRIPT)
    script["T001"] = {
        "attempts": [
            [
                {"write": "greet.py", "content": "x = 1\n"},
                {"append": "plan.md", "content": "\n- [x] T999 sneaky\n"},
            ],
            [{"write": "greet.py", "content": "def greet(name):\n    return f'Hello, {name}!'\n"}],
        ]
    }
    repo, plan, script_path = write_project(tmp_path, script=script)
    original = plan.read_bytes()
    result, reporter = _run(plan, script_path)
    assert result.exit_code == 0
    assert "T999" not in plan.read_text()
    first = result.state.tasks["T001"].attempts[0]
    assert first.protected_restored == ["plan.md"]
    assert "may not change" in (first.failure or "")
    assert len(plan.read_bytes()) == len(original)


def test_protected_paths_from_config(tmp_path: Path) -> None:
    script = dict(SCRIPT)
    script["T002"] = [
        {"write": "notes/one.txt", "content": "one\n"},
        {"write": "README.md", "content": "hacked\n"},
    ]
    repo, plan, script_path = write_project(tmp_path, script=script)
    result, _ = _run(plan, script_path, max_attempts=1, protected_paths=["README.md"])
    assert (repo / "README.md").read_text() == "# greeting\n"
    assert result.state.tasks["T002"].status is TaskStatus.FAILED
    assert result.exit_code == 1


def test_a_task_without_verification_is_ticked_unverified_or_failed_when_required(tmp_path: Path) -> None:
    plan_text = "# Tiny\n\n- [ ] T001 Write a file\n"
    repo, plan, script_path = write_project(
        tmp_path, plan=plan_text, script={"T001": [{"write": "f", "content": ""}]}
    )
    result, reporter = _run(plan, script_path)
    finished = [e for e in reporter.events if isinstance(e, TaskFinished)]
    assert [(e.task_id, e.status) for e in finished] == [("T001", "unverified")]
    assert result.exit_code == 0

    repo2, plan2, script2 = write_project(tmp_path / "b", plan=plan_text, script={})
    result2, _ = _run(plan2, script2, require_verify=True)
    assert result2.exit_code == 1
    assert "require-verify" in result2.state.tasks["T001"].reason
    assert git(repo2, "rev-list", "--count", "HEAD") == "1"


def test_a_group_parent_is_ticked_in_its_own_commit_after_its_children(tmp_path: Path) -> None:
    plan_text = """\
# Kiro-style

- [ ] 1. Set up notes
  - [ ] 1.1 First note
    - Verify: `test -f n1`
  - [ ] 1.2 Second note
    - Verify: `test -f n2`
  - Verify: `test -f n1 && test -f n2`
"""
    script = {"1.1": [{"write": "n1", "content": "1"}], "1.2": [{"write": "n2", "content": "2"}]}
    repo, plan, script_path = write_project(tmp_path, plan=plan_text, script=script)
    result, _ = _run(plan, script_path)
    assert result.exit_code == 0
    assert [c[1] for c in _commits(repo)] == ["1.1", "1.2", "1"]
    assert all(t.checked for t in parse_plan(plan).tasks)


def test_budget_stop_is_resumable_with_a_higher_limit(tmp_path: Path) -> None:
    script = {tid: [{"usage": {"input_tokens": 1000, "output_tokens": 100, "cost_usd": 0.4}}, *steps]
              for tid, steps in SCRIPT.items()}  # fmt: skip
    repo, plan, script_path = write_project(tmp_path, script=script)
    result, reporter = _run(plan, script_path, max_cost=1.0)
    assert result.status is RunStatus.STOPPED
    assert result.exit_code == 1
    assert "spent $1.20 of --max-cost $1.00" in result.message
    assert result.resume_hint.startswith(f"orchestrate resume {result.run_id} --max-cost ")
    done_before = [c[1] for c in _commits(repo)]
    assert done_before == ["T001", "T002"]

    resumed = resume_run(None, {"max_cost": 10.0}, ListReporter(), repo=repo)
    assert resumed.exit_code == 0
    assert [c[1] for c in _commits(repo)] == ["T001", "T002", "T003", "T004", "T005"]
    # The run's spend carries over across the resume: five tasks, one call each, the third twice.
    assert resumed.state.usage.cost_usd == pytest.approx(0.4 * 6)
    records = RunStore(repo / "checkpoints").records(result.run_id)
    call = next(r for r in records if r["type"] == "model_call")
    assert (call["gen_ai.usage.input_tokens"], call["gen_ai.usage.output_tokens"]) == (1000, 100)


class _Unavailable:
    name = "unavailable"

    def run(self, request: AgentRequest, listener: AgentListener) -> AgentOutcome:
        raise AgentUnavailable("overloaded (529)")


def test_agent_unavailable_stops_the_run_resumably(project: tuple[Path, Path, Path]) -> None:
    from orchestrator.config import Settings
    from orchestrator.domain.state import RunState
    from orchestrator.engine.runner import RunContext, Runner
    from orchestrator.persistence.repo import GitRepo
    from orchestrator.tools.sandbox import Sandbox

    repo, plan, _ = project
    journal = RunStore(repo / "checkpoints").journal("r1").open()
    ctx = RunContext(
        repo=GitRepo(repo),
        plan_path=plan,
        plan_rel="plan.md",
        settings=Settings(),
        run_id="r1",
        branch="work",
        journal=journal,
        state=RunState(),
        selection=[t.id for t in parse_plan(plan).tasks],
        preexisting={},
        sandbox=Sandbox("none"),
    )
    runner = Runner(ctx, _Unavailable(), ListReporter(), parse_plan(plan))
    runner.record(transitions.RunStarted(run_id="r1", plan="plan.md", branch="work", agent="unavailable"))
    result = runner.run()
    journal.close()
    assert result.status is RunStatus.STOPPED
    assert "unavailable" in result.message
    assert "overloaded" in result.message
    assert result.state.tasks["T001"].status is TaskStatus.RUNNING


def test_refusals_change_nothing(tmp_path: Path) -> None:
    repo, plan, script = write_project(tmp_path)
    head = git(repo, "rev-parse", "HEAD")
    (repo / "dirty.txt").write_text("x")
    with pytest.raises(PreflightError, match="--allow-dirty"):
        _run(plan, script)
    (repo / "dirty.txt").unlink()
    git(repo, "switch", "-q", "-c", "main")
    with pytest.raises(PreflightError, match="--branch NAME"):
        _run(plan, script)
    with pytest.raises(UsageError, match="unknown agent 'nope'"):
        _run(plan, script, agent="nope")
    assert git(repo, "rev-parse", "HEAD") == head
    assert not (repo / "checkpoints").exists()

    result, _ = _run(plan, script, branch="feature")
    assert result.exit_code == 0
    assert git(repo, "branch", "--show-current") == "feature"
    assert git(repo, "rev-parse", "main") == head


def test_commit_subjects_name_the_phase_as_the_plan_does(tmp_path: Path) -> None:
    plan = (
        "# Fix plan\n\n## High Priority\n\n- [ ] Fix the login\n  - Verify: `true`\n\n"
        "## Phase 2: Build\n\n- [ ] T010 Build it\n  - Verify: `true`\n"
    )
    repo, plan_path, script = write_project(tmp_path / "named", plan=plan, script={})
    result, _ = _run(plan_path, script)
    assert result.exit_code == 0
    assert [c[0] for c in _commits(repo)] == ["High Priority: Fix the login", "Phase 2: Build it"]

    plain = "# Todo\n\n- [ ] One thing\n  - Verify: `true`\n"
    repo, plan_path, script = write_project(tmp_path / "plain", plan=plain, script={})
    result, _ = _run(plan_path, script)
    assert result.exit_code == 0
    assert [c[0] for c in _commits(repo)] == ["One thing"]  # no phase to name
