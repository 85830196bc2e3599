"""run, resume, runs, show and demo: parse flags, build the reporter, call the engine, map exits."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.display import LiveReporter, budget, pick_reporter
from orchestrator.domain.state import AttemptRecord, RunState, RunStatus, TaskStatus
from orchestrator.engine.resources import data_dir
from orchestrator.errors import UsageError
from orchestrator.tools.environment import secret
from orchestrator.tools.processes import kill_all_started

if TYPE_CHECKING:
    from orchestrator.engine.dryrun import DryRun
    from orchestrator.engine.runner import RunResult
    from orchestrator.engine.stop import StopToken

# The engine is imported inside each command: `orchestrate --help` and the plan commands do not
# pay for loading it.

RepoOpt = Annotated[Path | None, typer.Option("--repo", help="The git repository (default: the plan's).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _ctrl_c() -> Iterator[StopToken]:
    """The run's stop token, asked by the signals: a first Ctrl-C, SIGTERM or SIGHUP stops it after
    the current step (before the run is under way, or on a second of any: abort now). Both leave
    a resumable run."""
    from orchestrator.engine.stop import StopToken

    stop = StopToken()
    presses = 0
    # After a hangup the terminal's fds fail every write (EIO) and no longer say they are ttys.
    terminal = [fd for fd in (1, 2) if os.isatty(fd)]

    def handler(signum: int, frame: FrameType | None) -> None:
        del frame
        nonlocal presses
        if signum == signal.SIGHUP:
            _away_from(terminal)
        presses += 1
        if presses == 1 and stop.request():
            return
        raise KeyboardInterrupt

    try:
        previous = {sig: signal.signal(sig, handler) for sig in _STOP_SIGNALS}
    except ValueError:  # not the main thread: leave the signals as they are
        yield stop
        return
    try:
        yield stop
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


def _away_from(terminal: list[int]) -> None:
    """The terminal hung up: what is still printed goes nowhere instead of failing the stop."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in terminal:
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _execute(json_output: bool, call: Callable[[Any, StopToken], RunResult]) -> None:
    reporter = pick_reporter(json_output)
    with ExitStack() as stack:
        # Run last (callbacks run in reverse): what an aborted run's threads were still running,
        # and orphans left to us.
        stack.callback(kill_all_started)
        if isinstance(reporter, LiveReporter):
            stack.enter_context(reporter)
        stop = stack.enter_context(_ctrl_c())
        result = call(reporter, stop)
    raise typer.Exit(exit_code(result))


STOPPED_EXIT = 3
"""A run that stopped before its end and that `orchestrate resume` continues: Ctrl-C or a signal,
the budget, an API outage, a full disk. 1 is kept for a run that ended with a failed task (also
resumable, but it needs a look first) and 2 for bad input."""


def exit_code(result: RunResult) -> int:
    """0 complete, 1 a task failed, 3 stopped resumably (see STOPPED_EXIT), 4 tasks wait for a
    person (see engine.runner.NEEDS_HUMAN_EXIT)."""
    return STOPPED_EXIT if result.status is RunStatus.STOPPED else result.exit_code


def _print_dry_run(report: DryRun, show_prompts: bool) -> None:
    typer.echo(f"Plan: {report.title} ({report.plan}); agent: {report.agent}")
    for d in report.diagnostics:
        line = f":{d['line']}" if d.get("line") else ""
        typer.echo(f"  {d['severity']}{line}: {d['message']}")
    if report.already_done:
        typer.echo(f"Already done: {', '.join(report.already_done)}")
    shown_system: str | None = None
    for n, wave in enumerate(report.waves, 1):
        typer.echo(f"Wave {n}:")
        for t in wave:
            tags = "".join(
                [
                    " (group: ticked when its children are done)" if t.group else "",
                    " (optional)" if t.optional else "",
                ]
            )
            typer.echo(f"  {t.id}  [phase {t.phase}] {t.title}{tags}")
            if t.judged_by_text:
                typer.echo(f"      judged by: {t.judged_by_text}")
            for command in t.verify:
                typer.echo(f"      verify: {command}")
            if show_prompts and t.prompt is not None:
                # The run's one system prompt, shown at its first task (again only if it differed).
                if t.system_prompt != shown_system:
                    typer.echo("      --- system prompt (the same for every task of the run) ---")
                    typer.echo("\n".join(f"      {line}" for line in (t.system_prompt or "").splitlines()))
                    shown_system = t.system_prompt
                typer.echo("      --- task prompt ---")
                typer.echo("\n".join(f"      {line}" for line in t.prompt.splitlines()))
    if report.blocked:
        typer.echo(f"Not reachable in this run: {', '.join(report.blocked)}")
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    total = sum(len(w) for w in report.waves)
    judged = [t.judged_by for w in report.waves for t in w if t.judged_by]
    if judged:
        typer.echo(
            f"{len(judged)} task(s) judged: {judged.count('own')} by their own checks, "
            f"{judged.count('defaults')} by the default checks only, {judged.count('nothing')} by nothing "
            "(ticked on the agent's word)"
        )
    typer.echo(f"{total} task(s) in {len(report.waves)} wave(s); nothing was run or changed (dry run)")


DEMO_BUDGET = 1.0
"""USD: what `demo` may spend with a paid agent unless told otherwise (six small tasks cost cents)."""


def _duration(seconds: float | None) -> str:
    """From the run's start to its last journal record: 42s, 3m05s, 2h07m."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _fmt_cost(value: float, known: bool = True) -> str:
    shown = f"${value:.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"
    if known:
        return shown
    return f"{shown} + unknown" if value else "cost unknown"


def _run_summary(state: RunState) -> dict[str, Any]:
    return {
        "id": state.run_id,
        "plan": state.plan,
        "branch": state.branch,
        "agent": state.agent,
        "status": state.status.value,
        "done": state.count(TaskStatus.DONE),
        "unverified": sum(1 for t in state.tasks.values() if t.status is TaskStatus.DONE and t.unverified),
        "failed": state.count(TaskStatus.FAILED),
        "skipped": state.count(TaskStatus.SKIPPED),
        "tasks": len(state.selection.get("ids", [])) or len(state.tasks),
        "cost_usd": round(state.usage.cost_usd, 6),
        "cost_known": state.usage.cost_known,
        "tokens": state.usage.total_tokens,
        "started_at": state.started_at,
        "duration_s": round(max(state.updated_at - state.started_at, 0.0), 3) if state.started_at else None,
        "message": state.message,
    }


def _show_reviews(attempt: AttemptRecord) -> None:
    """Each review round of the attempt: the verdict per criterion, with its evidence and whether
    it held when orchestrate checked it."""
    if attempt.not_reviewed:
        typer.echo(f"    NOT REVIEWED: {attempt.not_reviewed}")
    for review in attempt.reviews:
        typer.echo(f"    review round {review.round} ({review.model or 'reviewer'}): {review.outcome}")
        for criterion in review.criteria:
            typer.echo(f"      {criterion.verdict:<11} {criterion.criterion}")
            if criterion.reason:
                typer.echo(f"                  reason: {criterion.reason.splitlines()[0][:200]}")
            for item in criterion.evidence:
                held = "held" if item.held else "DID NOT HOLD"
                if item.command is not None:
                    said = f"`{item.command}` -> exit {item.exit_code}"
                else:
                    quote = " ".join((item.quote or "").split())
                    said = f'{item.path}:{item.start_line}-{item.end_line} "{quote[:100]}"'
                typer.echo(f"                  {held}: {said}" + (f" ({item.why})" if not item.held else ""))
        for problem in review.problems:
            typer.echo(f"      not accepted: {problem}")


AgentCommandOpt = Annotated[
    str | None,
    typer.Option(help="For --agent command: the command to run, with {prompt_file}, {workspace}, {task_id}."),
]
MaxTurnsOpt = Annotated[int | None, typer.Option(help="Model turns per task attempt (default 50).", min=1)]
ExecutorOpt = Annotated[
    str | None,
    typer.Option(
        "--executor",
        help="Where task attempts run: local (default; worktrees with --parallel) or ray (a Ray "
        "cluster; needs orchestrate[ray]).",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="With --executor ray: the cluster (ray://host:10001, host:6379, auto); default: a Ray "
        "started on this machine.",
    ),
]
FailFirstOpt = Annotated[
    str | None,
    typer.Option(
        "--fail-first",
        help="Tests a task adds must fail without its change: require (else the attempt fails), warn "
        "(default), off.",
    ),
]


class ReviewMode(StrEnum):
    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


ReviewOpt = Annotated[
    ReviewMode | None,
    typer.Option(help="Reviewer stage: auto (units with a criterion no command checks), always, never."),
]
ReviewModelOpt = Annotated[
    str | None, typer.Option(help="The reviewer's model (default: one cheaper than --model).")
]
MaxReviewRoundsOpt = Annotated[int | None, typer.Option(help="Review rounds per attempt (default 2).", min=1)]


RUN_PANEL = "Run a plan"
"""Where `orchestrate --help` lists run, resume, runs, show and demo."""


def register(app: typer.Typer) -> None:
    @app.command(rich_help_panel=RUN_PANEL)
    def run(
        plan: Annotated[Path, typer.Argument(help="The markdown plan to carry out.")],
        agent: Annotated[
            str | None,
            typer.Option(
                help="Agent backend: anthropic (default), scripted, claude-code, command, a plugin."
            ),
        ] = None,
        model: Annotated[str | None, typer.Option(help="Model id for backends that take one.")] = None,
        script: Annotated[Path | None, typer.Option(help="JSON script for the scripted agent.")] = None,
        agent_command: AgentCommandOpt = None,
        max_turns: MaxTurnsOpt = None,
        repo: RepoOpt = None,
        branch: Annotated[
            str | None, typer.Option(help="Create or switch to this work branch first.")
        ] = None,
        allow_dirty: Annotated[bool, typer.Option("--allow-dirty", help="Run on a dirty work tree.")] = False,
        max_attempts: Annotated[int | None, typer.Option(help="Attempts per task (default 3).")] = None,
        max_cost: Annotated[float | None, typer.Option(help="Stop (resumably) at this spend, USD.")] = None,
        timeout: Annotated[float | None, typer.Option(help="Seconds per verification command.")] = None,
        require_verify: Annotated[
            bool, typer.Option("--require-verify", help="Fail tasks that have no verification.")
        ] = False,
        parallel: Annotated[int | None, typer.Option(help="Tasks at once (worktrees).", min=1)] = None,
        executor: ExecutorOpt = None,
        ray_address: RayAddressOpt = None,
        fail_first: FailFirstOpt = None,
        review: ReviewOpt = None,
        review_model: ReviewModelOpt = None,
        max_review_rounds: MaxReviewRoundsOpt = None,
        phase: Annotated[str | None, typer.Option(help="Only this phase (and what it waits for).")] = None,
        task: Annotated[str | None, typer.Option(help="Only this task (and what it waits for).")] = None,
        dry_run_flag: Annotated[
            bool, typer.Option("--dry-run", help="Show the schedule; run and change nothing.")
        ] = False,
        show_prompts: Annotated[
            bool, typer.Option("--show-prompts", help="With --dry-run: the prompts.")
        ] = False,
        json_output: JsonOpt = False,
    ) -> None:
        """Carry out PLAN: one agent attempt after another, verified, ticked and committed."""
        overrides: dict[str, Any] = {
            "agent": agent,
            "model": model,
            "script": script.resolve() if script else None,
            "agent_command": agent_command,
            "max_turns": max_turns,
            "branch": branch,
            "allow_dirty": allow_dirty or None,
            "max_attempts": max_attempts,
            "max_cost": max_cost,
            "timeout": timeout,
            "require_verify": require_verify or None,
            "parallel": parallel,
            "executor": executor,
            "ray_address": ray_address,
            "fail_first": fail_first,
            "review": review.value if review else None,
            "review_model": review_model,
            "max_review_rounds": max_review_rounds,
        }
        if show_prompts and not dry_run_flag:
            # Without --dry-run this would be a real, paid run that merely printed more.
            raise UsageError(
                "--show-prompts shows what a dry run would send: add --dry-run (nothing was run)"
            )
        if dry_run_flag:
            from orchestrator.engine.dryrun import dry_run

            report = dry_run(plan, overrides, repo=repo, phase=phase, task=task, show_prompts=show_prompts)
            if json_output:
                typer.echo(report.model_dump_json())
            else:
                _print_dry_run(report, show_prompts)
            raise typer.Exit(1 if report.has_errors else 0)
        from orchestrator.engine.session import start_run

        _execute(
            json_output,
            lambda reporter, stop: start_run(
                plan, overrides, reporter, repo=repo, phase=phase, task=task, stop=stop
            ),
        )

    @app.command(rich_help_panel=RUN_PANEL)
    def resume(
        run_id: Annotated[
            str | None, typer.Argument(help="The run to continue (default: the latest).")
        ] = None,
        repo: RepoOpt = None,
        max_cost: Annotated[float | None, typer.Option(help="New spending limit for the run, USD.")] = None,
        max_attempts: Annotated[int | None, typer.Option(help="Attempts per task.")] = None,
        agent: Annotated[str | None, typer.Option(help="Switch the agent backend.")] = None,
        model: Annotated[str | None, typer.Option(help="Switch the model.")] = None,
        script: Annotated[Path | None, typer.Option(help="JSON script for the scripted agent.")] = None,
        agent_command: AgentCommandOpt = None,
        max_turns: MaxTurnsOpt = None,
        timeout: Annotated[float | None, typer.Option(help="Seconds per verification command.")] = None,
        allow_dirty: Annotated[bool, typer.Option("--allow-dirty", help="Accept other changes.")] = False,
        executor: ExecutorOpt = None,
        ray_address: RayAddressOpt = None,
        fail_first: FailFirstOpt = None,
        review: ReviewOpt = None,
        review_model: ReviewModelOpt = None,
        max_review_rounds: MaxReviewRoundsOpt = None,
        json_output: JsonOpt = False,
    ) -> None:
        """Continue an interrupted or failed run where it stopped, without repeating finished work."""
        overrides: dict[str, Any] = {
            "max_cost": max_cost,
            "max_attempts": max_attempts,
            "agent": agent,
            "model": model,
            "script": str(script.resolve()) if script else None,
            "agent_command": agent_command,
            "max_turns": max_turns,
            "timeout": timeout,
            "allow_dirty": allow_dirty or None,
            "executor": executor,
            "ray_address": ray_address,
            "fail_first": fail_first,
            "review": review.value if review else None,
            "review_model": review_model,
            "max_review_rounds": max_review_rounds,
        }
        from orchestrator.engine.session import resume_run

        _execute(
            json_output,
            lambda reporter, stop: resume_run(run_id, overrides, reporter, repo=repo, stop=stop),
        )

    @app.command(rich_help_panel=RUN_PANEL)
    def runs(repo: RepoOpt = None, json_output: JsonOpt = False) -> None:
        """List the repository's runs: id, start, duration, status, tasks done/failed, cost, plan."""
        from orchestrator.engine.history import list_runs

        states = list_runs(repo)
        rows = [_run_summary(s) for s in states]
        if json_output:
            typer.echo(json.dumps(rows))
            return
        if not rows:
            typer.echo("no runs yet")
            return
        head = f"{'RUN':<22} {'STARTED':<16} {'TOOK':>8} {'STATUS':<9} {'DONE':>9} {'FAILED':>6} {'COST':>9}"
        typer.echo(f"{head}  PLAN")
        for r in rows:
            done = f"{r['done']}/{r['tasks']}"
            cost = _fmt_cost(r["cost_usd"], r["cost_known"])
            started = (
                time.strftime("%Y-%m-%d %H:%M", time.localtime(r["started_at"])) if r["started_at"] else "-"
            )
            took = _duration(r["duration_s"])
            typer.echo(
                f"{r['id']:<22} {started:<16} {took:>8} {r['status']:<9} {done:>9} {r['failed']:>6} {cost:>9}"
                f"  {r['plan']}"
            )

    @app.command(rich_help_panel=RUN_PANEL)
    def show(
        run_id: Annotated[
            str | None, typer.Argument(help="Run id or unique prefix (default: latest).")
        ] = None,
        repo: RepoOpt = None,
        json_output: JsonOpt = False,
    ) -> None:
        """One run in detail: each task's attempts, tokens, cost, verification, commit, saved edits."""
        from orchestrator.engine.evidence import evidence
        from orchestrator.engine.history import load_run

        state, directory = load_run(run_id, repo)
        if json_output:
            typer.echo(state.model_dump_json())
            return
        summary = _run_summary(state)
        typer.echo(f"run {state.run_id}: {state.status.value}  plan {state.plan}  branch {state.branch}")
        typer.echo(
            f"agent {state.agent}; {summary['done']} done ({summary['unverified']} unverified), "
            f"{summary['failed']} failed, "
            f"{summary['skipped']} skipped; "
            f"{state.usage.total_tokens} tokens, {_fmt_cost(state.usage.cost_usd, state.usage.cost_known)}; "
            f"journal {directory}"
        )
        if state.review_usage.calls or len(state.models) > 1:
            # A run with a reviewer uses two models: what each cost, and the reviewers' share.
            ledger = "; ".join(
                f"{model or 'unnamed model'} {usage.total_tokens} tokens "
                f"{_fmt_cost(usage.cost_usd, usage.cost_known)}"
                for model, usage in sorted(state.models.items())
            )
            review = state.review_usage
            typer.echo(
                f"models: {ledger}; of the run, reviewers {review.total_tokens} tokens "
                f"{_fmt_cost(review.cost_usd, review.cost_known)}"
            )
        if state.message:
            typer.echo(f"last word: {state.message}")
        for warning in state.warnings:
            typer.echo(f"WARNING: {warning}")
        for command, why in (state.baseline or {}).items():
            typer.echo(f"default check `{command}` already failed before the first task ({why})")
        if state.preexisting:
            # Uncommitted changes of the user's (at the start with --allow-dirty, or made while the
            # run was stopped): left in the tree, never in a task's commit.
            paths = sorted(state.preexisting)
            more = f" (and {len(paths) - 10} more)" if len(paths) > 10 else ""
            typer.echo(f"kept out of the run's commits as yours: {', '.join(paths[:10])}{more}")
        for task_id in state.order:
            t = state.tasks[task_id]
            flag = " (unverified)" if t.unverified else ""
            commit = f" commit {t.commit[:10]}" if t.commit else ""
            reviewed = (
                f" (review {t.review_usage.total_tokens} tokens, {_fmt_cost(t.review_usage.cost_usd)})"
                if t.review_usage.calls
                else ""
            )
            typer.echo(
                f"\n{task_id}: {t.status.value}{flag}{commit}; {len(t.attempts)} attempt(s), "
                f"{t.usage.total_tokens} tokens, {_fmt_cost(t.usage.cost_usd, t.usage.cost_known)}{reviewed}"
            )
            if t.reason:
                typer.echo(f"  reason: {t.reason.splitlines()[0]}")
            if t.status is TaskStatus.DONE:
                # What its commit's Orchestrate-Evidence trailer says: how it was judged.
                typer.echo(f"  judged: {evidence(t)}")
            if t.status is TaskStatus.NEEDS_HUMAN:
                typer.echo(
                    f"  waits for a human: `orchestrate accept {state.plan} {task_id} [--note TEXT]` "
                    f"or `orchestrate reject {state.plan} {task_id} --note TEXT`"
                )
            if t.attested_by:
                note = f": {t.note}" if t.note else ""
                typer.echo(f"  accepted by {t.attested_by}{note}")
            if t.merged_from:
                node = t.attempts[-1].node if t.attempts else ""
                whose = f"Ray node {node}" if node else "worktree"
                typer.echo(f"  merged from {t.merged_from[:10]}, the commit of its {whose}'s branch")
            elif t.worktree:
                typer.echo(f"  worktree {t.worktree} (branch {t.branch})")
            if t.merge_failures:
                typer.echo(f"  did not fit on the run's branch {t.merge_failures} time(s)")
            for a in t.attempts:
                agent_word = f"agent {a.agent_status}" if a.agent_status else "agent did not finish"
                where = f" on Ray node {a.node}" if a.node else ""
                typer.echo(f"  attempt {a.number}{where}: {agent_word}; {a.usage.total_tokens} tokens")
                if a.summary:
                    typer.echo(f"    summary: {a.summary.splitlines()[0][:160]}")
                if a.protected_restored:
                    typer.echo(f"    undone changes to: {', '.join(a.protected_restored)}")
                for v in a.verifications:
                    before = (
                        " (failed before the run began too: not blamed on the task)" if v.preexisting else ""
                    )
                    typer.echo(f"    verify `{v.command}` -> exit {v.exit_code} ({v.duration:.2f}s){before}")
                    if not v.ok and v.output_tail.strip():
                        for line in v.output_tail.strip().splitlines()[-8:]:
                            typer.echo(f"      | {line}")
                if a.fail_first is not None:
                    typer.echo(f"    fail-first {a.fail_first}")
                    for c in a.fail_first.checks:
                        typer.echo(f"      at base `{c.command}` -> exit {c.exit_code} ({c.duration:.2f}s)")
                _show_reviews(a)
                if a.failure and a.failure != "interrupted":
                    typer.echo(f"    failed: {a.failure.splitlines()[0]}")
                elif a.failure == "interrupted":
                    typer.echo("    interrupted")
            for ref in t.saved_refs:
                typer.echo(f"  saved edits: {ref}")

    @app.command(rich_help_panel=RUN_PANEL)
    def demo(
        agent: Annotated[
            str | None,
            typer.Option(help="Agent backend (default: scripted; anthropic when ANTHROPIC_API_KEY is set)."),
        ] = None,
        directory: Annotated[
            Path | None,
            typer.Option("--dir", help="Where to create the scratch repository (default: a temp dir)."),
        ] = None,
        parallel: Annotated[
            int | None, typer.Option(help="Tasks at once, each in its own git worktree.", min=1)
        ] = None,
        max_cost: Annotated[
            float | None,
            typer.Option(
                help=f"Stop (resumably) at this spend, USD (default {DEMO_BUDGET:.2f} for a paid agent).",
                min=0,
            ),
        ] = None,
        json_output: JsonOpt = False,
    ) -> None:
        """Run the built-in demo plan in a scratch git repository and show the commits it made."""
        from orchestrator.engine.session import start_run

        chosen = agent or ("anthropic" if secret("ANTHROPIC_API_KEY") else "scripted")
        if chosen != "scripted" and max_cost is None:
            max_cost = DEMO_BUDGET
        if chosen == "scripted":
            typer.echo("demo: the scripted agent runs offline; nothing is spent", err=True)
        else:
            typer.echo(
                f"demo: the {chosen} agent calls a paid API; budget {budget(max_cost)} "
                "(--max-cost to change; the run stops resumably there)",
                err=True,
            )
        scratch = _make_demo_repo(directory)
        overrides: dict[str, Any] = {"agent": chosen, "branch": "orchestrate-demo", "max_cost": max_cost}
        if parallel is not None:
            overrides["parallel"] = parallel
        if chosen == "scripted":
            overrides["script"] = data_dir("plans") / "demo.script.json"
        reporter_box: list[int] = []

        def call(reporter: Any, stop: StopToken) -> RunResult:
            result = start_run(scratch / "plans" / "demo.md", overrides, reporter, stop=stop)
            reporter_box.append(exit_code(result))
            return result

        try:
            _execute(json_output, call)
        except typer.Exit:
            pass
        from orchestrator.persistence.scratch import decorated_log

        log = decorated_log(scratch)

        def out(text: str) -> None:
            typer.echo(text, err=json_output)

        out("\ngit log --oneline:")
        out(log.rstrip())
        out(f"\nscratch repository: {scratch}")
        raise typer.Exit(reporter_box[0] if reporter_box else 1)


def _make_demo_repo(directory: Path | None) -> Path:
    if directory is None:
        scratch = Path(tempfile.mkdtemp(prefix="orchestrate-demo-"))
    else:
        scratch = directory.expanduser().resolve()
        if scratch.exists() and any(scratch.iterdir()):
            raise typer.BadParameter(
                f"{scratch} is not empty; name a new or empty directory", param_hint="--dir"
            )
        scratch.mkdir(parents=True, exist_ok=True)
    source = data_dir("plans")
    (scratch / "plans").mkdir()
    shutil.copyfile(source / "demo.md", scratch / "plans" / "demo.md")
    (scratch / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    (scratch / "README.md").write_text("# wordcount\n\nA scratch project that `orchestrate demo` builds.\n")
    from orchestrator.persistence.scratch import init_scratch_repo

    init_scratch_repo(scratch, "Scratch project with the demo plan")
    return scratch
