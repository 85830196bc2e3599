"""Agent backends by name: the built-in ones, and plugins from the `orchestrate.agents` entry points.

A plugin package declares, in its pyproject.toml:

    [project.entry-points."orchestrate.agents"]
    mybackend = "mypackage.module:create"

where `create(settings: Settings) -> Agent`. Built-ins register the same way (by import string) so
that a backend's heavy imports happen only when it is chosen.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import cast

from orchestrator.agents.base import Agent, Reviewer
from orchestrator.config import Settings
from orchestrator.errors import UsageError

AgentFactory = Callable[[Settings], Agent]

ENTRY_POINT_GROUP = "orchestrate.agents"

BUILTIN: dict[str, str] = {
    "scripted": "orchestrator.agents.scripted:create",
    "anthropic": "orchestrator.agents.anthropic:create",
    "claude-code": "orchestrator.agents.claude_code:create",
    "command": "orchestrator.agents.command:create",
    "aider": "orchestrator.agents.aider:create",
    "codex": "orchestrator.agents.codex:create",
}


def _load(target: str) -> AgentFactory:
    module_name, _, attr = target.partition(":")
    return cast(AgentFactory, getattr(importlib.import_module(module_name), attr))


def available() -> dict[str, str]:
    """Every backend name with where it comes from (built-ins win over plugins of the same name)."""
    names = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    names.update(BUILTIN)
    return dict(sorted(names.items()))


def create_agent(settings: Settings) -> Agent:
    """The backend named by settings.agent, built from the settings."""
    name = settings.agent
    if name in BUILTIN:
        return _load(BUILTIN[name])(settings)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return cast(AgentFactory, ep.load())(settings)
    known = ", ".join(available())
    raise UsageError(f"unknown agent '{name}'; choose one of: {known}")


def create_reviewer(settings: Settings) -> Reviewer:
    """The reviewer of units whose worker cannot review (every backend but a scripted one with
    verdicts): our loop on the Messages API, with read-only tools. AgentConfigError without a key."""
    from orchestrator.agents.anthropic import create_reviewer as anthropic_reviewer

    return anthropic_reviewer(settings)
