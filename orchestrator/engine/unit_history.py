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


def parse_with_history(path: Path) -> Plan:
    """The plan, its box-less units done where the branch of the repository holding it says so
    (as written when the plan is in no repository)."""
    plan = parse_plan(path)
    if not any(t.boxless and not t.settled for t in plan.tasks):
        return plan
    root = find_repo_root(path.expanduser().resolve())
    if root is None:
        return plan
    return done_by_commits(plan, GitRepo(root))
