"""Named crash points for the crash harness: ORCHESTRATE_CRASH_AT=point[:TASK_ID] makes the process
die (os._exit(137), as a SIGKILL would leave it) when it reaches that point (for that task)."""

from __future__ import annotations

import os

CRASH_ENV = "ORCHESTRATE_CRASH_AT"

# In the order a task passes them. Each sits between two durable steps.
CRASH_POINTS = (
    "after_start",  # task_running journaled, agent not called yet
    "after_agent",  # agent returned, agent_finished not journaled
    "after_agent_record",  # agent_finished journaled, verification not started
    "mid_verify",  # first verification command done and journaled
    "after_verify",  # verification passed, task_verified not journaled
    "after_verified",  # task_verified journaled, task_committing not
    "after_committing",  # task_committing journaled, box not ticked
    "after_linked_tick",  # boxes of other documents ticked (planfile.documents), the plan's not yet
    "after_tick",  # box ticked, no commit yet
    "after_commit",  # commit made, task_done not journaled
    "after_done",  # task_done journaled
    "after_failed_attempt",  # a failed attempt journaled, the retry not started
)

# Only a task a reviewer judges passes these (engine.review), between its checks and task_verified.
REVIEW_CRASH_POINTS = (
    "mid_review",  # the reviewer answered, its round not journaled
    "after_review",  # a review round journaled, its outcome not acted on
)

# Only a parallel run (tasks in worktrees) passes these.
PARALLEL_CRASH_POINTS = (
    "after_worktree",  # worktree added, not journaled
    "after_branch_commit",  # the task's work committed on its branch, not merged yet
    "after_merge",  # its work merged into the run's work tree, not re-verified, ticked or committed
)


def crash_point(point: str, task_id: str) -> None:
    target = os.environ.get(CRASH_ENV)
    if not target:
        return
    name, _, task = target.partition(":")
    if name == point and (not task or task == task_id):
        os._exit(137)
