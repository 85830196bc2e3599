"""A task a person accepted, onto the run's branch: its kept work and its tick in one commit.

    needs_human -> accepted(tree) -> committing -> done      (orchestrate accept; resume after a kill)

`orchestrate accept` journals TaskAccepted with the tree to commit (the task's kept work on the
branch's head), then calls `land_accepted`; a resume that finds a task accepted and not committed
calls it again, so a kill at any step ends as one commit, as an uninterrupted accept does.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.domain import transitions as t
from orchestrator.domain.state import TaskRecord, TaskStatus
from orchestrator.engine.crash import crash_point
from orchestrator.engine.evidence import task_trailers
from orchestrator.engine.landing import commit_message
from orchestrator.engine.recorder import Recorder
from orchestrator.persistence.repo import GitRepo
from orchestrator.planfile import parse_plan
from orchestrator.planfile.writer import set_box

ACCEPT_CRASH_POINTS = (
    "after_accepted",  # task_accepted journaled, the work tree not moved to its tree
    "after_accept_checkout",  # the work tree holds the accepted work, not ticked
    "after_accept_commit",  # committed, task_done not journaled
)


def half_accepted(record: TaskRecord) -> bool:
    """A person accepted the task and its commit is not known to be made (a kill cut it short)."""
    return bool(record.attested_by) and record.status in (TaskStatus.VERIFIED, TaskStatus.COMMITTING)


def land_accepted(
    repo: GitRepo, plan_path: Path, plan_rel: str, run_id: str, record: TaskRecord, recorder: Recorder
) -> str:
    """Commit the accepted task (its recorded tree and its tick) with its trailers; the commit."""
    task_id = record.id
    made = [c.sha for c in repo.trailer_commits(run_id) if c.task_id == task_id]
    if made:  # a kill came between the commit and its record
        recorder.record(t.TaskDone(task=task_id, commit=made[-1], reason=f"accepted by {record.attested_by}"))
        return made[-1]
    recorder.record(t.TaskCommitting(task=task_id))
    head_tree = repo.head_tree()
    tree = record.tree or head_tree
    if tree is not None and head_tree is not None and tree != head_tree:
        # Its own paths back to the head first (a kill may have left them half-written), then the
        # tree: git moves only the paths that differ, the rest of the work tree is not touched.
        repo.restore_head([p for p in repo.changed_between(head_tree, tree) if p != plan_rel])
        repo.checkout_tree(tree)
    crash_point("after_accept_checkout", task_id)
    plan = parse_plan(plan_path)
    task = plan.task(task_id)
    if task is not None and not task.boxless:
        plan = set_box(plan_path, task_id, True)  # one byte per box; a box already ticked stays
        task = plan.task(task_id) or task
    title = commit_message(plan, task) if task is not None else task_id
    sha = repo.commit_all(title, task_trailers(record, run_id))
    crash_point("after_accept_commit", task_id)
    recorder.record(
        t.TaskDone(task=task_id, commit=sha, unverified=False, reason=f"accepted by {record.attested_by}")
    )
    return sha
