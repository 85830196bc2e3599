"""The engine's parts put together as the Runner puts them, without its loop: for the direct tests
of attempts (running -> verified) and landing (verified -> committed; the failure cascade)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.agents.registry import create_agent
from orchestrator.config import load_settings
from orchestrator.domain.events import ListReporter
from orchestrator.domain.plan import Task
from orchestrator.domain.state import RunState
from orchestrator.engine.attempts import Attempts
from orchestrator.engine.executor import InlineExecutor
from orchestrator.engine.fail_first import SCRATCH_DIR, FailFirst
from orchestrator.engine.guard import Guard
from orchestrator.engine.landing import Landing
from orchestrator.engine.prompts import PromptRenderer
from orchestrator.engine.recorder import Recorder
from orchestrator.engine.scheduler import Scheduler
from orchestrator.engine.stop import StopToken
from orchestrator.persistence.journal import Journal
from orchestrator.persistence.repo import GitRepo
from orchestrator.planfile import parse_plan
from orchestrator.tools.sandbox import Sandbox
from tests.engine.conftest import write_project

RUN_ID = "20260101-000000-abcd"


@dataclass
class Parts:
    repo: GitRepo
    plan_path: Path
    journal: Journal
    state: RunState
    reporter: ListReporter
    scheduler: Scheduler
    stop: StopToken
    attempts: Attempts
    landing: Landing

    def task(self, task_id: str) -> Task:
        found = self.scheduler.plan.task(task_id)
        assert found is not None
        return found

    def kinds(self, task_id: str) -> list[str]:
        """The types of the task's journal records, in order (its agent's tool calls left out)."""
        records = self.journal.records()
        return [r["type"] for r in records if r.get("task") == task_id and r["type"] != "agent_event"]


MakeParts = Callable[..., Parts]


@pytest.fixture
def make_parts(tmp_path: Path) -> Iterator[MakeParts]:
    """make_parts(script=None, **settings): the parts over a project in tmp_path; journals closed
    at the end."""
    made: list[Parts] = []

    def make(script: dict[str, Any] | None = None, **settings: Any) -> Parts:
        made.append(parts(tmp_path, script, **settings))
        return made[-1]

    yield make
    for each in made:
        each.journal.close()


def parts(root: Path, script: dict[str, Any] | None = None, **settings: Any) -> Parts:
    repo_path, plan_path, script_path = write_project(root, script=script)
    chosen = load_settings(
        repo_path, {"agent": "scripted", "script": script_path, "sandbox": "none", **settings}
    )
    repo = GitRepo(repo_path)
    journal = Journal(root / "state" / RUN_ID, anchor=root).open()
    state = RunState()
    reporter = ListReporter()
    recorder = Recorder(journal, state, reporter)
    recorder.reporting = True
    executor = InlineExecutor(repo)
    guard = Guard(repo, "plan.md", chosen, {}, recorder, parallel=False, at_work=list)
    plan = parse_plan(plan_path)
    scheduler = Scheduler(plan, [t.id for t in plan.tasks])
    stop = StopToken()
    attempts = Attempts(
        repo=repo,
        plan_rel="plan.md",
        settings=chosen,
        agent=create_agent(chosen),
        renderer=PromptRenderer.for_run(repo, plan_path, chosen),
        recorder=recorder,
        journal=journal,
        executor=executor,
        guard=guard,
        sandbox=Sandbox("none"),
        env=dict,
        plan=lambda: scheduler.plan,
        stop=stop,
        fail_first=FailFirst(
            settings=chosen,
            recorder=recorder,
            sandbox=Sandbox("none"),
            env=dict,
            scratch_root=root / "state" / SCRATCH_DIR,
            stop=stop,
        ),
    )
    landing = Landing(
        repo=repo,
        plan_path=plan_path,
        run_id=RUN_ID,
        verify_defaults=chosen.verify,
        recorder=recorder,
        executor=executor,
        guard=guard,
        scheduler=scheduler,
        verify=attempts.verify,
        ours=lambda paths: paths,
        untouched_preexisting=list,
    )
    return Parts(repo, plan_path, journal, state, reporter, scheduler, stop, attempts, landing)
