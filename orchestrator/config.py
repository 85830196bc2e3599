"""Settings: defaults < orchestrate.toml or [tool.orchestrate] in pyproject.toml < ORCHESTRATE_* < flags."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.errors import ConfigError

DEFAULT_MODEL = "claude-sonnet-4-6"


class ModelPrice(BaseModel):
    """US dollars per million tokens."""

    input: float
    output: float


DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-opus-4-6": ModelPrice(input=5.0, output=25.0),
    "claude-opus-4-5": ModelPrice(input=5.0, output=25.0),
    "claude-opus-4-1": ModelPrice(input=15.0, output=75.0),
    "claude-opus-4": ModelPrice(input=15.0, output=75.0),
    "claude-sonnet-4-6": ModelPrice(input=3.0, output=15.0),
    "claude-sonnet-4-5": ModelPrice(input=3.0, output=15.0),
    "claude-sonnet-4": ModelPrice(input=3.0, output=15.0),
    "claude-3-7-sonnet": ModelPrice(input=3.0, output=15.0),
    "claude-haiku-4-5": ModelPrice(input=1.0, output=5.0),
    "claude-3-5-haiku": ModelPrice(input=0.8, output=4.0),
}


class Settings(BaseModel):
    """Everything a run can be told. Built once, passed in."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    agent: str = "anthropic"
    """Backend name: anthropic, claude-code, command, scripted, or one from a plugin. A script
    given without an agent means the scripted agent."""
    model: str = DEFAULT_MODEL
    """Model id for backends that take one."""
    script: Path | None = None
    """JSON script for the scripted agent."""
    agent_command: str | None = None
    """Command template for the command agent: {prompt_file}, {workspace}, {task_id}."""
    parallel: int = Field(default=1, ge=1)
    """How many tasks may run at once, each in its own worktree."""
    max_attempts: int = Field(default=3, ge=1)
    """Attempts per task before it is marked failed."""
    max_turns: int = Field(default=50, ge=1)
    """Model turns per attempt."""
    max_cost: float | None = Field(default=None, ge=0)
    """US dollars for the whole run; reaching it stops the run resumably."""
    timeout: float = Field(default=600.0, gt=0)
    """Seconds each verification command may run before its process group is killed."""
    command_timeout: float = Field(default=300.0, gt=0)
    """Seconds each agent shell command may run."""
    agent_timeout: float = Field(default=3600.0, gt=0)
    """Seconds a whole claude-code or command agent run may take before its process group is killed."""
    claude_permission_mode: str = "acceptEdits"
    """`claude --permission-mode` for the claude-code agent (acceptEdits, bypassPermissions, ...)."""
    verify: list[str] = Field(default_factory=list)
    """Verification commands run for every task after the task's own."""
    require_verify: bool = False
    """Fail a task that has no verification command at all instead of ticking it unverified."""
    protected_branches: list[str] = Field(default_factory=lambda: ["main", "master", "next"])
    """Branches a run refuses to commit on."""
    protected_paths: list[str] = Field(default_factory=list)
    """Paths (globs) an agent may not change; its changes there are undone and reported."""
    checkpoints_dir: Path = Path("checkpoints")
    """Where run journals live, relative to the repository root unless absolute."""
    max_retries: int = Field(default=4, ge=0)
    """SDK-level retries for 429/5xx/529 and connection errors."""
    rate_limit_wait: float = Field(default=300.0, ge=0)
    """Seconds a rate-limited run may wait in total before it stops resumably."""
    request_timeout: float = Field(default=600.0, gt=0)
    """Seconds one Messages API request may take."""
    max_tokens: int = Field(default=8192, ge=1)
    """max_tokens per model call."""
    compact_at: float = Field(default=0.7, gt=0, le=1)
    """Share of the model's context window at which old tool results are summarised."""
    context_window: int = Field(default=200_000, ge=1000)
    """Tokens the model accepts; compaction works against this."""
    prices: dict[str, ModelPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    """Price table per model id (prefix match), US dollars per million tokens."""
    sandbox: Literal["auto", "bubblewrap", "none"] = "auto"
    """Confinement of agent and verification commands: bubblewrap where it works (auto), required,
    or none (every run then warns that they run unconfined)."""
    verify_network: bool = False
    """Whether verification commands keep the network when they run in the sandbox (off: a check
    the agent wrote cannot send anything anywhere; loopback still works)."""
    pass_env: list[str] = Field(default_factory=list)
    """Names of further environment variables that agent and verification commands get, beyond the
    allow-list (PATH, HOME, LANG, VIRTUAL_ENV, ...). The agent can read them: never name a secret."""
    agent_env: list[str] = Field(default_factory=list)
    """Names of environment variables (its API key, say) that a command or claude-code agent's own
    process gets, beyond the allow-list; the commands that agent runs can read them too."""
    allow_dirty: bool = False
    """Run even if the work tree has uncommitted changes."""
    branch: str | None = None
    """Create or switch to this branch before running."""
    prompts_dir: Path = Path("prompts")
    """Folder in the plan's repository whose system.md.j2 / task.md.j2 / retry.md.j2 override the
    built-in prompts."""


_ENV_PREFIX = "ORCHESTRATE_"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=path) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=path) from exc


def file_settings(repo_root: Path) -> tuple[dict[str, Any], Path | None]:
    """Settings from orchestrate.toml, else [tool.orchestrate] in pyproject.toml."""
    own = repo_root / "orchestrate.toml"
    if own.is_file():
        return _read_toml(own), own
    pyproject = repo_root / "pyproject.toml"
    if pyproject.is_file():
        table = _read_toml(pyproject).get("tool", {}).get("orchestrate")
        if isinstance(table, dict):
            return table, pyproject
    return {}, None


def env_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """ORCHESTRATE_MAX_COST=2.5 -> {"max_cost": "2.5"}; lists and tables as JSON."""
    out: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(_ENV_PREFIX):
            continue
        name = key[len(_ENV_PREFIX) :].lower()
        if name not in Settings.model_fields:
            continue
        value: Any = raw
        if raw[:1] in "[{":
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"environment variable {key} is not valid JSON: {exc}") from exc
        out[name] = value
    return out


def load_settings(
    repo_root: Path | None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the sources in precedence order; flags left at None do not override."""
    merged: dict[str, Any] = {}
    source: Path | None = None
    if repo_root is not None:
        from_file, source = file_settings(repo_root)
        merged.update({k.replace("-", "_"): v for k, v in from_file.items()})
    merged.update(env_settings(os.environ if environ is None else environ))
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if merged.get("script") is not None and "agent" not in merged:
        merged["agent"] = "scripted"
    if "prices" in merged:
        merged["prices"] = {**DEFAULT_PRICES, **merged["prices"]}
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        where = f" (from {source})" if source else ""
        raise ConfigError(f"setting '{field}': {first['msg']}{where}") from exc
