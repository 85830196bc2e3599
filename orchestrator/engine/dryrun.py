"""--dry-run: what a run would do, computed without calling a model, running a command, or
changing a file, a branch or a commit (not even the checkpoints directory).

It refuses what a run's pre-flight would refuse (a bad setting, a checkpoints directory that cannot
be made, a template that does not compile or renders something unsafe), with the same one-line
error: "nothing was run or changed" is printed only for a schedule a run would start on. Templates
render in Jinja2's sandbox, from the commit a run would start from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from orchestrator.config import check_checkpoints_dir, load_settings
from orchestrator.domain import dag
from orchestrator.domain.plan import Plan
from orchestrator.engine.coverage import coverage
from orchestrator.engine.prompts import TRIAL_FAILURE, PromptRenderer, run_templates
from orchestrator.engine.scheduler import Scheduler, is_group, select_tasks
from orchestrator.engine.unit_history import read_plan
from orchestrator.engine.verification import commands_for, missing_programs
from orchestrator.errors import PlanError, UsageError
from orchestrator.input_files import PLAN_LIMIT, check_regular_file
from orchestrator.persistence.repo import GitRepo, find_repo_root
from orchestrator.tools.sandbox import SandboxUnavailable, detect_sandbox


class DryTask(BaseModel):
    id: str
    phase: str
    title: str
    depends_on: list[str]
    verify: list[str]
    judged_by: str = ""
    """own (its checks, then the defaults), defaults (the default checks only) or nothing (it would
    be ticked on the agent's word); empty for a parent done by its children."""
    judged_by_text: str = ""
    group: bool = False
    optional: bool = False
    system_prompt: str | None = None
    prompt: str | None = None


class DryRun(BaseModel):
    plan: str
    title: str
    repo: str | None
    agent: str
    waves: list[list[DryTask]] = Field(default_factory=list)
    already_done: list[str] = Field(default_factory=list)
    blocked: list[str] = Field(default_factory=list)
    """Selected tasks no wave reaches (they wait on unselected or failing tasks)."""
    diagnostics: list[dict[str, Any]] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        return any(d["severity"] == "error" for d in self.diagnostics)


def waves(plan: Plan, selection: list[str]) -> tuple[list[list[str]], list[str]]:
    """Selected unsettled tasks in waves, as the run's own Scheduler hands them out when every task
    passes: each wave is what is ready once the earlier waves are done (so a box ticked out of
    order opens nothing until what it waits for has run, as `next` says). The tasks no wave
    reaches come second."""
    scheduler = Scheduler(plan, selection)
    out: list[list[str]] = []
    while ready := scheduler.ready():
        out.append([t.id for t in ready])
        scheduler.done.update(t.id for t in ready)
    return out, scheduler.remaining()


def dry_run(
    plan_path: Path,
    overrides: dict[str, Any],
    *,
    repo: Path | None = None,
    phase: str | None = None,
    task: str | None = None,
    show_prompts: bool = False,
) -> DryRun:
    check_regular_file(plan_path, what="plan", limit=PLAN_LIMIT, error=PlanError, hint="split the plan")
    plan_abs = plan_path.resolve()
    root = find_repo_root(repo.resolve() if repo else plan_abs)
    settings = load_settings(root or plan_abs.parent, overrides)
    if root is not None:
        check_checkpoints_dir(root, settings)  # as a run's pre-flight would; it leaves nothing made
    plan = read_plan(plan_abs, GitRepo(root) if root else None)  # as a run's pre-flight reads it
    if phase is not None and plan.phase(phase) is None:
        raise UsageError(f"no phase '{phase}' in the plan")
    if task is not None and plan.task(task) is None:
        raise UsageError(f"no task '{task}' in the plan")
    selection = select_tasks(plan, phase=phase, task=task)
    report = DryRun(
        plan=str(plan_path),
        title=plan.title,
        repo=str(root) if root else None,
        agent=settings.agent,
        # Severities as `lint` gives them: what it fails on is an error here too (exit 1).
        diagnostics=[
            {**d.model_dump(mode="json"), **({"severity": "error"} if dag.fails_lint(d) else {})}
            for d in plan.diagnostics
        ],
        already_done=[t.id for t in plan.tasks if t.id in set(selection) and t.settled],
    )
    if root is None:
        report.warnings.append(
            f"{plan_abs.parent} is not inside a git repository: `orchestrate run` would refuse"
        )
    if not plan.tasks:
        report.warnings.append("the plan has no task of any kind")
    try:
        if warning := detect_sandbox(settings.sandbox).warning:
            report.warnings.append(warning)
    except SandboxUnavailable as exc:
        report.warnings.append(f"`orchestrate run` would refuse: {exc}")
    if plan.errors:
        return report
    # The templates a run would use (read from the commit it would start from) render here too,
    # sandboxed, even without --show-prompts: a template a run would refuse is refused now.
    if root is not None:
        renderer = PromptRenderer.for_run(GitRepo(root), plan_abs, settings)
    else:
        templates = run_templates(plan_abs.parent, settings.prompts_dir, None, None)
        renderer = PromptRenderer(plan_abs.parent, plan_abs, templates, settings.protected_paths).load()
    report.warnings.extend(renderer.notes)
    ordered, blocked = waves(plan, selection)
    report.blocked = blocked
    all_commands: list[str] = []
    checked_retry = False
    for wave in ordered:
        row: list[DryTask] = []
        for task_id in wave:
            t = plan.task(task_id)
            assert t is not None
            commands = commands_for(t.verify, settings.verify)
            all_commands.extend(commands)
            item = DryTask(
                id=t.id,
                phase=t.phase,
                title=t.title,
                depends_on=t.depends_on,
                verify=commands,
                group=is_group(plan, t),
                optional=t.optional,
            )
            if not item.group:
                judged = coverage(t, settings.verify)
                item.judged_by, item.judged_by_text = judged.judge.value, judged.describe()
            if not item.group:
                rendered = renderer.render(plan, t, commands, attempt=1, max_attempts=settings.max_attempts)
                if show_prompts:
                    item.system_prompt, item.prompt = rendered.system, rendered.prompt
                if not checked_retry:  # a retry's prompt too, as a run's pre-flight renders it
                    renderer.render(
                        plan,
                        t,
                        commands,
                        attempt=2,
                        max_attempts=max(settings.max_attempts, 2),
                        failure=TRIAL_FAILURE,
                    )
                    checked_retry = True
            row.append(item)
        report.waves.append(row)
    for command, program in missing_programs(dict.fromkeys(all_commands)):
        report.warnings.append(f"verification command `{command}` needs `{program}`, which is not on PATH")
    return report
