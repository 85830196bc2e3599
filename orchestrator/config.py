"""Settings: defaults < orchestrate.toml or [tool.orchestrate] in pyproject.toml < ORCHESTRATE_* < flags.

Every value is validated before anything runs, and a bad one is reported as one line naming where it
came from: the flag, the environment variable, or the file and line. Floats must be finite, seconds
are bounded (the event loop and thread waits overflow past about 24 days), and the checkpoints
directory must be one a run can write in."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from orchestrator.errors import ConfigError

DEFAULT_MODEL = "claude-sonnet-4-6"
MAX_SECONDS = 7 * 24 * 3600.0
"""Upper bound of every duration setting: a week. Python's waits overflow a little past 24 days."""
CONFIG_FILE = "orchestrate.toml"
PYPROJECT = "pyproject.toml"


@dataclass(frozen=True)
class Origin:
    """Where a setting came from, as a user would look for it."""

    label: str
    """`flag --timeout`, `environment variable ORCHESTRATE_TIMEOUT`, `orchestrate.toml:3`, ..."""
    path: Path | None = None
    line: int | None = None

    def error(self, message: str) -> ConfigError:
        if self.path is not None:
            return ConfigError(message, path=self.path, line=self.line)
        return ConfigError(f"{self.label}: {message}")


DEFAULT_ORIGIN = Origin("the default")


class ModelPrice(BaseModel):
    """US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    input: float = Field(ge=0)
    output: float = Field(ge=0)


DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-opus-4-8": ModelPrice(input=5.0, output=25.0),
    "claude-opus-4-7": ModelPrice(input=5.0, output=25.0),
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

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    agent: str = Field(default="anthropic", min_length=1)
    """Backend name: anthropic, claude-code, command, scripted, or one from a plugin. A script
    given without an agent means the scripted agent."""
    model: str = Field(default=DEFAULT_MODEL, min_length=1)
    """Model id for backends that take one."""
    script: Path | None = None
    """JSON script for the scripted agent."""
    agent_command: str | None = None
    """Command template for the command agent: {prompt_file}, {workspace}, {task_id}."""
    parallel: int = Field(default=1, ge=1, le=1024)
    """How many tasks may run at once, each in its own worktree (with executor = "ray": on the
    cluster; default there: as many as its CPUs hold)."""
    executor: Literal["local", "ray"] = "local"
    """Where task attempts run: `local` (the work tree, or worktrees with parallel > 1) or `ray`
    (a Ray cluster; the journal, the plan and every commit stay on this machine)."""
    ray_address: str | None = Field(default=None, min_length=1)
    """The Ray cluster to run attempts on (`ray://host:10001`, `host:6379`, `auto`); without one,
    executor = "ray" starts a Ray of its own on this machine."""
    task_resources: dict[Annotated[str, Field(min_length=1)], Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict
    )
    """What one task attempt asks of a Ray node: `num_cpus`, `num_gpus`, `memory` (bytes), or a
    custom resource naming a node pool (`{"num_cpus": 2, "big_box": 1}`). Default: 1 CPU."""
    max_attempts: int = Field(default=3, ge=1, le=1000)
    """Attempts per task before it is marked failed."""
    max_turns: int = Field(default=50, ge=1, le=100_000)
    """Model turns per attempt."""
    max_cost: float | None = Field(default=None, ge=0)
    """US dollars for the whole run; reaching it stops the run resumably."""
    timeout: float = Field(default=600.0, gt=0, le=MAX_SECONDS)
    """Seconds each verification command may run before it and all it started are killed."""
    command_timeout: float = Field(default=300.0, gt=0, le=MAX_SECONDS)
    """Seconds each agent shell command may run."""
    agent_timeout: float = Field(default=3600.0, gt=0, le=MAX_SECONDS)
    """Seconds a whole claude-code or command agent run may take before it and all it started are killed."""
    claude_permission_mode: str = "acceptEdits"
    """`claude --permission-mode` for the claude-code agent (acceptEdits, bypassPermissions, ...)."""
    claude_allowed_tools: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=lambda: ["Bash"])
    """`claude --allowedTools` for the claude-code agent: tools it uses without asking beyond what
    its permission mode allows (Bash: it runs its own checks; under bubblewrap they run confined)."""
    verify: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    """Verification commands run for every task after the task's own."""
    require_verify: bool = False
    """Fail a task that has no verification command at all instead of ticking it unverified."""
    fail_first: Literal["require", "warn", "off"] = "warn"
    """Tests a task adds or changes must fail against the commit it started from (with only those
    test changes applied): a new test that passes there proves nothing. warn: say so and go on;
    require: the attempt fails; off: do not run them at base (a diff that weakens existing tests is
    still reported)."""
    review: Literal["auto", "always", "never"] = "auto"
    """The reviewer stage, after a unit's checks pass: `auto` reviews units with a criterion no
    command covers (or an `Expected:` output no command judges), `always` every unit, `never` none."""
    review_model: str | None = Field(default=None, min_length=1)
    """The reviewer's model (anthropic backend); default: one cheaper than `model` (see
    review_model_for)."""
    max_review_rounds: int = Field(default=2, ge=1, le=20)
    """Review rounds per attempt: a verdict whose evidence does not hold is asked again, up to this."""
    protected_branches: list[str] = Field(default_factory=lambda: ["main", "master", "next"])
    """Branches a run refuses to commit on."""
    protected_paths: list[str] = Field(default_factory=list)
    """Paths (globs) an agent may not change; its changes there are undone and reported. What a
    later run would read and trust is always added (see `always_protected`): orchestrate.toml,
    the prompts folder, and pyproject.toml when its [tool.orchestrate] table is the settings."""
    checkpoints_dir: Path = Path("checkpoints")
    """Where run journals live, relative to the repository root unless absolute."""
    max_retries: int = Field(default=4, ge=0, le=100)
    """SDK-level retries for 429/5xx/529 and connection errors."""
    rate_limit_wait: float = Field(default=300.0, ge=0, le=MAX_SECONDS)
    """Seconds a rate-limited run may wait in total before it stops resumably."""
    requests_per_minute: float | None = Field(default=None, gt=0)
    """API requests the whole run may send a minute, shared by its parallel agents and reviewers
    (each waits its turn); None: no pace, but a 429's retry-after still holds every agent off."""
    request_timeout: float = Field(default=600.0, gt=0, le=MAX_SECONDS)
    """Seconds one Messages API request may take."""
    max_tokens: int = Field(default=8192, ge=1, le=1_000_000)
    """max_tokens per model call."""
    cache_keep_alive: float = Field(default=270.0, ge=0, le=MAX_SECONDS)
    """Seconds after a model request at which, while its reply and the tool calls it asked for are
    still running, a 1-token request with the same body renews the conversation's prompt cache
    (which lives 5 minutes from its last use); again at each such interval; 0: never
    (benchmarks/cache_ttl_bench.py: 3-8 % of a run's cost)."""
    compact_at: float = Field(default=0.7, gt=0, le=1)
    """Share of the model's context window at which old tool results are summarised (at most; see
    compact_at_tokens)."""
    compact_at_tokens: int = Field(default=60_000, ge=1000, le=100_000_000)
    """Input tokens of a request at which old tool results are summarised, whatever the window:
    compacting early rewrites small prefixes and reads less each turn (benchmarks/compaction_bench.py:
    a 150-turn task costs 21% less at 60k than at 100k, 37% less than at 140k, and still reads
    94% of its input from the cache)."""
    context_window: int = Field(default=200_000, ge=1000, le=100_000_000)
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
    built-in prompts (as committed when the run starts; rendered sandboxed)."""

    _origins: dict[str, Origin] = PrivateAttr(default_factory=dict)

    @field_validator("branch")
    @classmethod
    def _branch_name(cls, value: str | None) -> str | None:
        """What `git check-ref-format --branch` refuses, refused before anything changes."""
        if value is not None and not _valid_branch(value):
            raise ValueError(f"{value!r} is not a valid git branch name")
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """A NUL byte cannot reach a path or a command line (the OS refuses it mid-run)."""
        if _has_nul(value):
            raise ValueError("contains a NUL character")
        return value

    def origin(self, name: str) -> Origin:
        """Where a setting's value came from: `flag --timeout`, `environment variable
        ORCHESTRATE_TIMEOUT`, `orchestrate.toml:3`, or `the default`."""
        return self._origins.get(name, DEFAULT_ORIGIN)


CHEAPER_MODEL = {"opus": "claude-sonnet-4-6", "sonnet": "claude-haiku-4-5"}
"""The reviewer's default model by the worker's family: a cheaper one (haiku reviews haiku)."""


def review_model_for(settings: Settings) -> str:
    """The model the reviewer uses: `review_model` when set, else one cheaper than the worker's."""
    if settings.review_model:
        return settings.review_model
    for family, cheaper in CHEAPER_MODEL.items():
        if family in settings.model:
            return cheaper
    return settings.model


_ENV_PREFIX = "ORCHESTRATE_"
_MAX_CONFIG_BYTES = 1 << 20


def _has_nul(value: Any) -> bool:
    if isinstance(value, str | Path):
        return "\x00" in str(value)
    if isinstance(value, Mapping):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock(/|$)")


def _valid_branch(name: str) -> bool:
    """git-check-ref-format(1)'s rules for a branch name."""
    return not (
        not name
        or name == "@"
        or name.startswith(("-", "/", "."))
        or name.endswith(("/", "."))
        or _BAD_REF.search(name)
    )


# TOML keys, for finding a key's line (tomllib keeps no positions): bare, "basic" or 'literal'.
_KEY = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_HEADER = re.compile(rf"^\s*\[\[?\s*({_DOTTED})\s*\]\]?")
_ASSIGN = re.compile(rf"^\s*({_DOTTED})\s*=")
_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")


def _key_parts(dotted: str) -> tuple[str, ...]:
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in re.findall(_KEY, dotted))


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """The line where each key path (`("tool", "orchestrate", "timeout")`) is first defined, by
    its table header or its `key = value` line: a small scan, enough to point a user at a line."""
    found: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        if header := _HEADER.match(line):
            table = _key_parts(header.group(1))
            for end in range(1, len(table) + 1):
                found.setdefault(table[:end], number)
        elif assign := _ASSIGN.match(line):
            path = table + _key_parts(assign.group(1))
            for end in range(len(table) + 1, len(path) + 1):
                found.setdefault(path[:end], number)
    return found


@dataclass
class ConfigFile:
    """The settings table of orchestrate.toml or of pyproject.toml's [tool.orchestrate]."""

    path: Path
    values: dict[str, Any]
    table: tuple[str, ...]
    """Where the settings sit in the file: () or ("tool", "orchestrate")."""
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)

    def origin(self, *key: str | int) -> Origin:
        """The line of the deepest part of `key` the file names."""
        parts = tuple(str(k) for k in key)
        for end in range(len(parts), 0, -1):
            line = self.lines.get(self.table + parts[:end])
            if line is not None:
                return Origin(f"{self.path.name}:{line}", self.path, line)
        line = self.lines.get(self.table) if self.table else None
        return Origin(self.path.name if line is None else f"{self.path.name}:{line}", self.path, line)


def _read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """The file's tables and its text; a mistake is a ConfigError naming the file (and line)."""
    try:
        if path.stat().st_size > _MAX_CONFIG_BYTES:
            raise ConfigError(f"larger than {_MAX_CONFIG_BYTES} bytes; is it the right file?", path=path)
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=path) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError("not valid TOML: not UTF-8 text", path=path, line=line) from exc
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        at = _TOML_LINE.search(str(exc))
        raise ConfigError(f"not valid TOML: {exc}", path=path, line=int(at.group(1)) if at else None) from exc


def read_config(repo_root: Path) -> ConfigFile | None:
    """orchestrate.toml, else [tool.orchestrate] in pyproject.toml, else None."""
    own = repo_root / CONFIG_FILE
    if own.is_file():
        values, text = _read_toml(own)
        return ConfigFile(own, values, (), key_lines(text))
    pyproject = repo_root / PYPROJECT
    if pyproject.is_file():
        values, text = _read_toml(pyproject)
        tool = values.get("tool", {})
        if isinstance(tool, dict) and "orchestrate" in tool:
            config = ConfigFile(pyproject, {}, ("tool", "orchestrate"), key_lines(text))
            if not isinstance(tool["orchestrate"], dict):
                raise config.origin().error("[tool.orchestrate] must be a table of settings")
            config.values = tool["orchestrate"]
            return config
    return None


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
        if raw[:1] and raw[:1] in "[{":
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"environment variable {key} is not valid JSON: {exc}") from exc
        out[name] = value
    return out


def _env_origin(name: str) -> Origin:
    return Origin(f"environment variable {_ENV_PREFIX}{name.upper()}")


def _flag_origin(name: str) -> Origin:
    return Origin(f"flag --{name.replace('_', '-')}")


RECORDED_ORIGIN = Origin("the run's recorded settings (its journal)")


def prompts_folder(repo_root: Path | None, prompts_dir: Path) -> str | None:
    """The prompts folder as a path inside the repository (posix, "." for its root), or None when
    it lies outside (then an agent's tools cannot reach it and git does not track it)."""
    if prompts_dir.is_absolute():
        if repo_root is None:
            return None
        try:
            prompts_dir = prompts_dir.resolve().relative_to(repo_root.resolve())
        except ValueError:
            return None
    folder = os.path.normpath(prompts_dir.as_posix())
    if folder == ".." or folder.startswith("../"):
        return None
    return Path(folder).as_posix()


def always_protected(repo_root: Path | None, prompts_dir: Path, config: ConfigFile | None) -> list[str]:
    """What a later run reads and trusts, so no agent may change it: the settings file (creating
    orchestrate.toml would shadow pyproject's table; pyproject.toml only while it holds the
    settings, since tasks edit it for their own reasons) and the prompt templates."""
    paths = [CONFIG_FILE]
    if config is not None and config.path.name == PYPROJECT:
        paths.append(PYPROJECT)
    folder = prompts_folder(repo_root, prompts_dir)
    if folder is not None:
        paths.append("*.j2" if folder == "." else f"{folder}/*.j2")
    return paths


def load_settings(
    repo_root: Path | None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    recorded: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge the sources in precedence order (defaults < file < environment < `recorded`, the
    settings a resumed run was started with < flags); flags left at None do not override. A bad
    value is a ConfigError naming its source: the file and line, the variable, or the flag."""
    merged: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    config = read_config(repo_root) if repo_root is not None else None
    spelled: dict[str, str] = {}
    if config is not None:
        for key, value in config.values.items():
            name = key.replace("-", "_")
            merged[name], origins[name], spelled[name] = value, config.origin(key), key
    for name, value in env_settings(os.environ if environ is None else environ).items():
        merged[name], origins[name] = value, _env_origin(name)
    for name, value in (recorded or {}).items():
        merged[name], origins[name] = value, RECORDED_ORIGIN
    for name, value in (overrides or {}).items():
        if value is not None:
            merged[name], origins[name] = value, _flag_origin(name)
    if merged.get("script") is not None and "agent" not in merged:
        merged["agent"] = "scripted"
        origins["agent"] = origins["script"]
    if isinstance(merged.get("prices"), Mapping):
        merged["prices"] = {**DEFAULT_PRICES, **merged["prices"]}
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise _explain(exc, origins, config, spelled) from None
    settings._origins = origins
    protected = always_protected(repo_root, settings.prompts_dir, config)
    settings.protected_paths = list(dict.fromkeys([*settings.protected_paths, *protected]))
    return settings


def _explain(
    exc: ValidationError, origins: Mapping[str, Origin], config: ConfigFile | None, spelled: Mapping[str, str]
) -> ConfigError:
    first = exc.errors()[0]
    loc = [str(p) for p in first["loc"]]
    name = loc[0] if loc else ""
    field_name = ".".join(loc)
    origin = origins.get(name, DEFAULT_ORIGIN)
    if config is not None and origin.path == config.path:
        origin = config.origin(spelled.get(name, name), *loc[1:])
    if first["type"] == "extra_forbidden" and len(loc) > 1:
        inside = ".".join(loc[:-1])
        takes = " (a price takes input and output)" if name == "prices" else ""
        return origin.error(f"unknown key '{loc[-1]}' in setting '{inside}'{takes}")
    if first["type"] == "extra_forbidden":
        close = get_close_matches(name, Settings.model_fields, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "; the README's Settings lists them"
        return origin.error(f"unknown setting '{field_name}'{hint}")
    message = first["msg"]
    if first["type"] in ("less_than_equal", "less_than") and name in _SECONDS:
        message += " (seconds; a week at most)"
    return origin.error(f"setting '{field_name}': {message}")


_SECONDS = {
    "timeout", "command_timeout", "agent_timeout", "rate_limit_wait", "request_timeout", "cache_keep_alive",
}  # fmt: skip


def checkpoints_root(repo_root: Path, checkpoints_dir: Path) -> Path:
    """Where the run directories live: `checkpoints_dir`, relative to the repository root."""
    return checkpoints_dir if checkpoints_dir.is_absolute() else repo_root / checkpoints_dir


def check_checkpoints_dir(repo_root: Path, settings: Settings) -> Path:
    """Pre-flight: the checkpoints directory exists or can be made, and a file can be written in
    it. What the check made is removed again, so that a dry run changes nothing."""
    root = checkpoints_root(repo_root, settings.checkpoints_dir)
    origin = settings.origin("checkpoints_dir")

    def refuse(why: str) -> ConfigError:
        return origin.error(f"setting 'checkpoints_dir': cannot keep runs in {root}: {why}")

    if root.resolve() == repo_root.resolve():
        raise refuse("it is the repository root; choose a sub-directory")
    missing: list[Path] = []
    existing = root
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        raise refuse(f"{existing} is not a directory")
    made: list[Path] = []
    try:
        for directory in reversed(missing):
            directory.mkdir()
            made.append(directory)
        probe = root / f".orchestrate-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise refuse(exc.strerror or str(exc)) from None
    finally:
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                directory.rmdir()
    return root
