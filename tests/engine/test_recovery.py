"""engine.resume directly: the recovery reads the journal and git and returns what a Runner goes on
from, without a Runner. The run is the fixture of test_old_journal: killed right after T002 was
verified (T001 committed)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.config import load_settings
from orchestrator.domain.events import ListReporter
from orchestrator.domain.state import RunState, TaskStatus
from orchestrator.engine.recorder import Recorder
from orchestrator.engine.resume import Recovery, reconcile, resumed_selection
from orchestrator.engine.runner import RunContext
from orchestrator.persistence.checkpoints import RunStore
from orchestrator.persistence.repo import GitRepo
from orchestrator.planfile import parse_plan
from orchestrator.tools.sandbox import Sandbox
from tests.conftest import git
from tests.engine.test_old_journal import unpack


def test_recovery_returns_where_each_task_goes_on_without_a_runner(tmp_path: Path) -> None:
    project = unpack(tmp_path)
    repo = GitRepo(project.repo)
    store = RunStore.for_repo(repo.root, Path("checkpoints"))
    (run_id,) = store.run_ids()
    state = RunState.from_records(store.transitions(run_id))
    assert state.tasks["T002"].status is TaskStatus.VERIFIED
    journal = store.journal(run_id).open()
    reporter = ListReporter()
    plan = parse_plan(project.plan)
    ctx = RunContext(
        repo=repo,
        plan_path=project.plan,
        plan_rel=state.plan,
        settings=load_settings(repo.root, {}),
        run_id=run_id,
        branch=state.branch,
        journal=journal,
        state=state,
        selection=resumed_selection(plan, state.selection),
        preexisting={},
        sandbox=Sandbox("none"),
    )
    before = len(journal.records())
    head = git(repo.root, "rev-parse", "HEAD")
    try:
        recovered = reconcile(Recovery(ctx, Recorder(journal, state, reporter), parallel=False), plan)
    finally:
        journal.close()
    assert recovered.points == {"T002": "commit"}  # its verified tree is intact: commit it
    assert recovered.in_place == ["T002"]
    assert recovered.owned == {"calc.py", "log.txt"}
    assert recovered.adopted == {}
    assert recovered.selection == ["T001", "T002", "T003", "T004"]
    assert [task.id for task in recovered.plan.tasks if task.checked] == ["T001"]
    # T001's commit was found on the branch (the journal had it already): nothing to record.
    assert [type(r) for r in store.transitions(run_id)[before:]] == []
    assert state.tasks["T001"].status is TaskStatus.DONE
    # Nothing committed or reset: the Runner built from it commits T002.
    assert git(repo.root, "rev-parse", "HEAD") == head
    assert git(repo.root, "status", "--porcelain").split() == ["M", "calc.py", "M", "log.txt"]
    assert not [e for e in reporter.events if e.event != "notice"]
