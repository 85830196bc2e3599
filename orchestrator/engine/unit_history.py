"""A unit without a box is done by its commit: one carrying its `Orchestrate-Task` trailer on the
branch. The plan file never says so (it stays byte-identical), so every command that asks what is
done reads the branch's history too: `status`, `next`, `graph`, `lint`, `run` and `resume`.

Trailers name task ids, not plans: two plans in one repository with a box-less unit of the same id
(`task-1`) share it. A box-less unit is only looked up when the plan has one still open, so plans of
boxes alone cost no git process."""

from __future__ import annotations

from pathlib import Path

from orchestrator.domain.plan import BoxState, Plan
from orchestrator.persistence.repo import GitRepo, find_repo_root
from orchestrator.planfile import parse_plan


def done_by_commits(plan: Plan, repo: GitRepo) -> Plan:
    """`plan` with each open box-less unit that a commit on the branch carries marked done."""
    waiting = {t.id for t in plan.tasks if t.boxless and not t.settled}
    if not waiting:
        return plan
    committed = {c.task_id for c in repo.trailer_commits()} & waiting
    if not committed:
        return plan
    tasks = [t.model_copy(update={"state": BoxState.DONE}) if t.id in committed else t for t in plan.tasks]
    return plan.model_copy(update={"tasks": tasks})


def read_plan(path: Path, repo: GitRepo | None) -> Plan:
    """The plan as every command that asks what is done reads it (a run's pre-flight, the dry-run,
    `status`...): its box-less units done where `repo`'s branch says so (as written without one)."""
    plan = parse_plan(path)
    return plan if repo is None else done_by_commits(plan, repo)


def parse_with_history(path: Path) -> Plan:
    """`read_plan` in the repository holding the plan, if any."""
    root = find_repo_root(path.expanduser().resolve())
    return read_plan(path, GitRepo(root) if root else None)
