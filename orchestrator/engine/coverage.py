"""How each task will be judged: by its own checks, by the project's default checks only, or by
nothing (ticked on the agent's word). `lint`, `status` and `run --dry-run` say it before a run;
the end of a run counts what was verified and what was not."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from orchestrator.config import Settings, load_settings
from orchestrator.domain.plan import Plan, Task
from orchestrator.domain.state import RunState, TaskStatus
from orchestrator.engine.scheduler import is_group
from orchestrator.persistence.repo import find_repo_root


class Judge(StrEnum):
    OWN = "own"
    """The task's own checks (the plan's commands expected to pass, or the command a check task is),
    and the default checks after them."""
    DEFAULTS = "defaults"
    """Only the project's default checks (`verify` in orchestrate.toml)."""
    NOTHING = "nothing"
    """No command at all: ticked on the agent's word (or failed, with --require-verify)."""


@dataclass(frozen=True)
class Coverage:
    task: Task
    judge: Judge
    own: list[str] = field(default_factory=list)
    defaults: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """A few words: what will judge the task."""
        if self.judge is Judge.NOTHING:
            return "nothing: ticked on the agent's word"
        if self.judge is Judge.DEFAULTS:
            return f"the default checks only ({len(self.defaults)})"
        extra = f" and the default checks ({len(self.defaults)})" if self.defaults else ""
        return f"its own checks ({len(self.own)}){extra}"


def coverage(task: Task, defaults: list[str]) -> Coverage:
    own = list(dict.fromkeys([*([task.command] if task.command else []), *task.verify]))
    extra = [c for c in dict.fromkeys(defaults) if c not in own]
    if own:
        return Coverage(task, Judge.OWN, own, extra)
    if extra:
        return Coverage(task, Judge.DEFAULTS, [], extra)
    return Coverage(task, Judge.NOTHING)


def plan_coverage(plan: Plan, defaults: list[str]) -> list[Coverage]:
    """Each open task an agent would do (not a parent done by its children, nor a person's step:
    a person judges it), in plan order."""
    return [
        coverage(t, defaults) for t in plan.tasks if not t.settled and not is_group(plan, t) and not t.manual
    ]


def plan_settings(plan_path: Path) -> Settings:
    """The settings a run of this plan would use (its repository's orchestrate.toml, the
    environment), for the commands that only read the plan."""
    root = find_repo_root(plan_path.expanduser().resolve().parent)
    return load_settings(root)


def counts(items: list[Coverage]) -> dict[Judge, int]:
    return {judge: sum(1 for c in items if c.judge is judge) for judge in Judge}


def summary(items: list[Coverage]) -> str:
    """`5 open tasks judged: 2 by their own checks, 1 by the default checks only, 2 by nothing`."""
    n = counts(items)
    return (
        f"{len(items)} open task(s) judged: {n[Judge.OWN]} by their own checks, "
        f"{n[Judge.DEFAULTS]} by the default checks only, {n[Judge.NOTHING]} by nothing "
        "(ticked on the agent's word)"
    )


def verified_counts(state: RunState) -> tuple[int, int]:
    """(verified by checks, ticked on the agent's word) among the run's done tasks."""
    done = [t for t in state.tasks.values() if t.status is TaskStatus.DONE]
    unverified = sum(1 for t in done if t.unverified)
    return len(done) - unverified, unverified


def done_message(state: RunState) -> str:
    """How a run that did all it was given ends: never "every task done" when some were ticked
    on the agent's word."""
    verified, unverified = verified_counts(state)
    reviewed = sum(
        1
        for t in state.tasks.values()
        if t.status is TaskStatus.DONE
        and (a := t.current()) is not None
        and any(r.outcome == "met" for r in a.reviews)
    )
    by = f"by checks or a reviewer ({reviewed} reviewed)" if reviewed else "by checks"
    if not unverified:
        return f"every task done: {verified} verified {by}"
    ids = [t.id for t in state.tasks.values() if t.status is TaskStatus.DONE and t.unverified]
    named = ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else "")
    return (
        f"{verified + unverified} done: {verified} verified {by}, {unverified} unverified "
        f"(no check ran; ticked on the agent's word: {named})"
    )
