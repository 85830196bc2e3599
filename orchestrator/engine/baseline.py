"""The run's baseline: the project's default checks, run once before the first task.

A default check that already fails when the run starts (a lint error on main, a flaky suite) would
otherwise fail every task and be blamed on each. It is reported once, journaled (a resume knows it
without running it again), and a task's failure of it is recorded as pre-existing, not as the
task's; a task that names the same command among its own checks is still judged by it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.domain import transitions as t
from orchestrator.engine.verification import run_verification

if TYPE_CHECKING:
    from orchestrator.engine.runner import Runner


def take_baseline(runner: Runner) -> None:
    """Run each default check once in the run's tree, journal those that fail, and tell the user."""
    commands = list(dict.fromkeys(runner.settings.verify))
    if not commands or runner.state.baseline is not None:
        return
    failing: dict[str, str] = {}
    for command in commands:
        outcome = run_verification(
            [command],
            cwd=runner.repo.root,
            timeout=runner.settings.timeout,
            sandbox=runner.ctx.sandbox.with_network(runner.settings.verify_network),
            env=runner.ctx.passed_env(),
        )
        result = outcome.results[0]
        if not result.ok:
            failing[command] = (
                f"timed out after {result.duration:.0f}s"
                if result.timed_out
                else (f"exit {result.exit_code}")
            )
    runner.record(t.ChecksBaseline(commands=commands, failing=failing))
    for command, why in failing.items():
        runner.notice(
            f"default check `{command}` already fails before any task ran ({why}); its failures are "
            "reported as pre-existing, not blamed on a task",
            "warning",
        )
