"""What a run records of its settings, and what `resume` takes back from that record.

The record is the run's journal, a file in the checkpoints directory. Bubblewrap hides that
directory from the agent's commands; where bubblewrap is missing, an agent's commands (and any
process of the user's) can rewrite it between a stop and a resume. So `resume` never widens
anything from it: what decides what runs, or how confined, comes from the flags and configuration
the resume is given; limits on spending and time take the lower of the run's and the resume's
own; and a notice names every setting that differs from the record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from orchestrator.agents.pricing import price_for
from orchestrator.config import Settings, load_settings
from orchestrator.errors import UsageError

Rule = Literal["never", "lower", "either", "stricter", "cheaper", "kept", "script", "agent"]

REMEMBERED: dict[str, Rule] = {
    # What runs: a backend is never switched by the journal; a difference stops the resume until
    # --agent says which (a silent switch could also move the spending to another account).
    "agent": "agent",
    # The scripted agent's steps, commands among them: taken from the record only when the file
    # lies outside the repository and the checkpoints directory, where no agent under bubblewrap
    # can write (its workspace is inside one of them), so a flagless resume of a scripted run works.
    "script": "script",
    # A command line orchestrate runs.
    "agent_command": "never",
    # What claude-code may do without asking.
    "claude_permission_mode": "never",
    "claude_allowed_tools": "never",
    # Commands orchestrate runs to judge the work, outside the agent's control.
    "verify": "never",
    # How confined every command is, and what reaches it.
    "sandbox": "never",
    "verify_network": "never",
    "pass_env": "never",
    "agent_env": "never",
    # What the agent may not change.
    "protected_paths": "never",
    # The templates orchestrate renders.
    "prompts_dir": "never",
    # Whether the tree the run commits from may hold the user's uncommitted edits.
    "allow_dirty": "never",
    # The price of every call: the run's model is kept only when it costs no more than the one
    # the resume is given (an unknown model is priced as the dearest).
    "model": "cheaper",
    # Spending and time: never above what the resume is given. With no limit given there (the
    # run had it as a flag), the run's own is kept, and then only the journal holds it.
    "max_cost": "lower",
    "max_attempts": "lower",
    "max_turns": "lower",
    "timeout": "lower",
    "command_timeout": "lower",
    "agent_timeout": "lower",
    # Only ever stricter.
    "require_verify": "either",
    "fail_first": "stricter",
    # Whether a reviewer judges the units: the stricter of the run's and yours (never < auto <
    # always); its model is yours, and its rounds are spending.
    "review": "stricter",
    "review_model": "never",
    "max_review_rounds": "lower",
    # Where attempts run, and so where the key goes (the job's runtime environment of a cluster
    # named by a rewritten journal would be the attacker's).
    "executor": "never",
    "ray_address": "never",
    "task_resources": "never",
    # How many tasks at once: the same tasks run under the same limits. More at once can overshoot
    # --max-cost by one model call per extra task in flight.
    "parallel": "kept",
}

_STRICTNESS: dict[str, tuple[str, ...]] = {
    "fail_first": ("off", "warn", "require"),
    "review": ("never", "auto", "always"),
}
"""For "stricter" settings: their values, the loosest first."""

_WHY = {
    "never": "yours; a run's journal never decides it",
    "stricter": "the stricter of the run's and yours",
    "lower": "the lower of the run's and yours",
    "cheaper": "yours; the run's costs more",
    "script": "yours",
    "agent": "yours",
}


def remembered(settings: Settings) -> dict[str, Any]:
    """The settings a run records at its start (and a resume, where they changed)."""
    dumped = settings.model_dump(mode="json")
    return {k: dumped[k] for k in REMEMBERED if k in dumped}


@dataclass
class Resumed:
    """The settings a resume runs with, and how they differ from the run's record."""

    settings: Settings
    differences: list[str]
    """`name value (was value: why)`, one per setting that differs from the record."""
    from_flags: bool
    """Every difference was asked for by a flag (nothing to warn about)."""

    def notice(self) -> str:
        return (
            "resumed with settings that differ from the run's record: "
            + "; ".join(self.differences)
            + ". What runs and how confined comes from your flags and configuration, never from the "
            "run's journal; limits take the lower of the two"
        )


class _Skip:
    """The recorded value is not taken."""


_SKIP = _Skip()


def resume_settings(
    repo_root: Path, run_id: str, recorded: Mapping[str, Any], overrides: Mapping[str, Any], checkpoints: Path
) -> Resumed:
    """The settings for resuming run `run_id`, from the resume's flags (`overrides`), its
    configuration, and of the run's `recorded` settings only what REMEMBERED allows."""
    flags = {k: v for k, v in overrides.items() if v is not None and k != "branch"}
    own = load_settings(repo_root, flags)
    adopted: dict[str, Any] = {}
    for name, rule in REMEMBERED.items():
        if name in flags or name not in recorded or name not in Settings.model_fields:
            continue
        value = _take(rule, name, recorded[name], own, repo_root, checkpoints)
        if value is not _SKIP and _valid(own, name, value):
            adopted[name] = value
    settings = load_settings(repo_root, flags, recorded=adopted) if adopted else own
    _check_agent(run_id, recorded, flags, settings)
    return _compare(settings, recorded, flags)


def _take(rule: Rule, name: str, value: Any, own: Settings, repo_root: Path, checkpoints: Path) -> Any:
    mine = getattr(own, name)
    if rule == "kept":
        return value
    if rule == "lower":
        if value is None:  # the run had no limit: the resume's own
            return _SKIP
        if not _number(value):
            return _SKIP
        return value if mine is None or value < mine else _SKIP
    if rule == "either":
        return True if value is True else _SKIP
    if rule == "stricter":
        order = _STRICTNESS.get(name, ())
        stricter = value in order and mine in order and order.index(value) > order.index(mine)
        return value if stricter else _SKIP
    if rule == "cheaper":
        return value if isinstance(value, str) and _costs_no_more(value, own) else _SKIP
    if rule == "script":
        if own.script is not None or not isinstance(value, str) or not value:
            return _SKIP
        return value if _out_of_agents_reach(Path(value), repo_root, checkpoints) else _SKIP
    return _SKIP  # "never", "agent"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _valid(own: Settings, name: str, value: Any) -> bool:
    """Whether `value` passes the setting's own checks (a garbled record is ignored, not fatal)."""
    probe = own.model_copy()
    try:
        setattr(probe, name, value)
    except (ValidationError, ValueError, TypeError):
        return False
    return True


def _costs_no_more(model: str, own: Settings) -> bool:
    if model == own.model:
        return True
    price, known = price_for(model, own.prices)
    mine, _ = price_for(own.model, own.prices)
    return known and price.input <= mine.input and price.output <= mine.output


def _out_of_agents_reach(script: Path, repo_root: Path, checkpoints: Path) -> bool:
    """Whether the script (links followed) lies outside the repository and the checkpoints
    directory: under bubblewrap an agent can write only its workspace, which is one of them (or a
    worktree in the other); its /tmp is its own."""
    resolved = (script if script.is_absolute() else repo_root / script).resolve()
    for place in (repo_root.resolve(), checkpoints.resolve()):
        if resolved == place or place in resolved.parents:
            return False
    return True


def _check_agent(
    run_id: str, recorded: Mapping[str, Any], flags: Mapping[str, Any], settings: Settings
) -> None:
    """A resume without --agent goes on with the agent the run used, or not at all."""
    ran = recorded.get("agent")
    if "agent" in flags or not isinstance(ran, str) or ran == settings.agent:
        return
    why = "resume takes what runs from your flags and configuration, never from the run's journal"
    script = recorded.get("script")
    if ran == "scripted" and settings.script is None:
        where = (
            f"its script {script} lies inside the repository or the checkpoints directory, where an "
            "agent can write"
            if isinstance(script, str) and script
            else "its script is not recorded"
        )
        raise UsageError(f"run {run_id} ran the scripted agent, but {where}; {why}: pass --script FILE")
    raise UsageError(
        f"run {run_id} ran the agent '{ran}', but your flags and configuration say '{settings.agent}'; "
        f"{why}: pass --agent {ran} to go on as it ran, or --agent {settings.agent} to switch"
    )


def _compare(settings: Settings, recorded: Mapping[str, Any], flags: Mapping[str, Any]) -> Resumed:
    now = remembered(settings)
    differences: list[str] = []
    from_flags = True
    for name, value in now.items():
        if name not in recorded or recorded[name] == value:
            continue
        if name in flags:
            why = f"--{name.replace('_', '-')}"
        else:
            why = _WHY.get(REMEMBERED[name], "the run's")
            from_flags = False
        differences.append(f"{name} {_short(value)} (was {_short(recorded[name])}: {why})")
    return Resumed(settings, differences, from_flags)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
