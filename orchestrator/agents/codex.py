"""The `codex` backend: OpenAI's Codex CLI (npm install -g @openai/codex) run headless on one task,
leaving the commits to orchestrate.

    codex exec --json --sandbox workspace-write --skip-git-repo-check --ephemeral --color never
               -c shell_environment_policy... [--model M] -  < prompt

What the flags are for: `exec` runs one task without a terminal and never asks for approval; its
sandbox must be `workspace-write` (its default, read-only, rejects every patch and command that
writes, and codex still exits 0); `--skip-git-repo-check` lets it start in any directory it is
given; `--ephemeral` keeps no session files; the prompt comes through stdin (`-`), so a template
starting with `-` is never read as a flag. Under bubblewrap the whole CLI runs in the run's sandbox
with the network on, and its own sandbox, which cannot nest there, is turned off
(`danger-full-access`: ours confines it the same way, the workspace writable and nothing else).

Its home (CODEX_HOME, default ~/.codex: its login, config and logs) is the user's, outside the work
tree: one inside it is refused, since its files (its key) would land in a commit. Its key (CODEX_API_KEY
or OPENAI_API_KEY, or a provider's key named in `agent_env`) reaches its process and, by codex's
shell environment policy, not the commands it runs (variables named like keys are excluded).

`--json` prints one event a line: `turn.completed` carries the usage (input tokens counting the
cached ones), priced here (agents/pricing.py); the model is the one chosen, else the `model` of its
config.toml; a model no price list knows is "cost unknown", never $0. How a session ends decides
what the engine hears: an API fault after codex's own retries (429, 5xx, 529: it exits 1) is
`AgentUnavailable`, the resumable stop; a rejected key mid-run too; `check_ready` finds a missing or
rejected key before the first task with a one-turn call; a patch or write its sandbox refused fails
the attempt (it would exit 0 having changed nothing); a timeout kills the whole process tree.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import tempfile
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.agents.base import (
    Agent,
    AgentConfigError,
    AgentEvent,
    AgentListener,
    AgentOutcome,
    AgentRequest,
    AgentStatus,
    AgentUnavailable,
    RateGate,
)
from orchestrator.agents.claude_code import REPORT_INSTRUCTIONS, _run, model_chosen
from orchestrator.agents.pricing import price_for, priced
from orchestrator.agents.rate import retry_after_said
from orchestrator.config import ModelPrice, Settings
from orchestrator.domain.usage import Usage
from orchestrator.tools import processes
from orchestrator.tools.environment import child_env, redact, secret
from orchestrator.tools.sandbox import Sandbox

TAIL_CHARS = 2000
KEYS = ("CODEX_API_KEY", "OPENAI_API_KEY")
CODEX_ENV = (*KEYS, "OPENAI_BASE_URL", "CODEX_HOME")
"""What the CLI needs to reach its model as the user set it up, passed to it by name."""
HEADLESS = ["exec", "--json", "--skip-git-repo-check", "--ephemeral", "--color", "never"]
RESUME = "resume later with `orchestrate resume`"
LOGIN = (
    "export CODEX_API_KEY (or OPENAI_API_KEY) with a valid key, or log the CLI in (`codex login`); "
    "a provider's own key is named in agent_env"
)
PROBE_TIMEOUT = 120.0
PROBE_PROMPT = "Reply with the single word OK."
_STATUS = re.compile(r"\b(?:status|status code|last status)[: ]+(\d{3})\b", re.IGNORECASE)
UNREACHABLE = ("error sending request", "stream disconnected", "connection refused", "timed out")
"""How codex words an API it could not reach after its retries (no status to go by)."""
NO_KEY = ("Not logged in", "Missing environment variable")
"""How codex says it has no key at all (its provider's `env_key` unset): no request was made."""
DENIED = ("Read-only file system", "Operation not permitted", "Permission denied")
"""How a write its sandbox refused reads in a command's output."""


@dataclass
class _Session:
    """What a session's --json lines said, as they came."""

    usage: Usage = field(default_factory=Usage)
    last_message: str = ""
    errors: list[str] = field(default_factory=list)
    """Top-level `error` events and the `turn.failed` message, in order (the last is the final word)."""
    failed: bool = False
    rejected: list[str] = field(default_factory=list)
    """Patches and writes its sandbox refused."""
    gate: RateGate | None = None
    """The run's rate gate: a rate limit the session reports with a wait holds it off as long."""

    def rate_limited(self, message: str) -> float | None:
        """The wait a rate limit `message` asks for (None: not one, or no wait said), held off on the gate."""
        if status_of(message) != 429 and "rate limit" not in message.lower():
            return None
        delay = retry_after_said(message)
        if delay is not None and self.gate is not None:
            self.gate.hold_off(delay)
        return delay


def status_of(message: str) -> int | None:
    found = _STATUS.search(message)
    return int(found.group(1)) if found else None


def usage_of(raw: Mapping[str, Any]) -> Usage:
    """One `turn.completed` usage: codex counts cached tokens among the input tokens."""

    def count(key: str) -> int:
        value = raw.get(key)
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0

    cached = count("cached_input_tokens")
    written = count("cache_write_input_tokens")
    return Usage(
        input_tokens=max(0, count("input_tokens") - cached - written),
        cache_read_input_tokens=cached,
        cache_creation_input_tokens=written,
        output_tokens=count("output_tokens"),  # reasoning tokens are among them
        calls=1,
    )


class CodexAgent:
    name = "codex"

    def __init__(self, executable: str, settings: Settings):
        self.executable = executable
        self.timeout = settings.agent_timeout
        self.model = model_chosen(settings)
        self.agent_env = list(settings.agent_env)
        self.prices: dict[str, ModelPrice] = dict(settings.prices)
        self._check_usage: Usage | None = None
        """What the readiness check spent, charged to the first attempt (the run has no journal yet)."""
        self._lock = threading.Lock()

    # -- where it lives, what it gets ----------------------------------------------------------

    def home(self) -> Path:
        configured = secret("CODEX_HOME")
        return Path(configured).expanduser() if configured else Path.home() / ".codex"

    def priced_model(self) -> str | None:
        """The model its calls go to: the one chosen, else its config's (None: codex's default,
        which nothing here can name)."""
        if self.model:
            return self.model
        try:
            config = tomllib.loads((self.home() / "config.toml").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        model = config.get("model")
        return model if isinstance(model, str) and model else None

    def price(self, usage: Usage) -> Usage:
        model = self.priced_model()
        if model is None or not price_for(model, self.prices)[1]:
            return usage.model_copy(update={"cost_usd": 0.0, "cost_known": False})
        return priced(usage, model, self.prices)

    def argv(self, sandbox_mode: str) -> list[str]:
        argv = [self.executable, *HEADLESS, "--sandbox", sandbox_mode]
        # Its commands never see a key: codex's default excludes (names with KEY, SECRET, TOKEN)
        # held whatever the user's config says, plus the variables named for it.
        excluded = json.dumps([*KEYS, *self.agent_env])
        argv += ["-c", "shell_environment_policy.ignore_default_excludes=false"]
        argv += ["-c", f"shell_environment_policy.exclude={excluded}"]
        if self.model:
            argv += ["--model", self.model]
        return [*argv, "-"]

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return child_env(extra, passed=[*CODEX_ENV, *self.agent_env])

    def confined(self, argv: list[str], workspace: Path, sandbox: Sandbox | None) -> list[str]:
        if sandbox is None or sandbox.kind == "none":
            return argv
        home = self.home()
        home.mkdir(parents=True, exist_ok=True)
        return sandbox.with_network().writing(home).wrap(argv, workspace)

    def sandbox_mode(self, sandbox: Sandbox | None) -> str:
        confined = sandbox is not None and sandbox.kind != "none"
        return "danger-full-access" if confined else "workspace-write"

    # -- before the first task --------------------------------------------------------------------

    def check_ready(self, sandbox: Sandbox | None) -> None:
        """Refuse to start when codex has no usable key: a one-turn call (a tools prefix of some
        thousands of tokens, charged to the first task). An outage or a timeout here decides
        nothing: the first task meets it and the run stops resumably."""
        env = self.env()
        with tempfile.TemporaryDirectory(prefix="orchestrate-codex-probe-") as cwd:
            where = Path(cwd)
            argv = self.confined(self.argv("read-only"), where, sandbox)
            out = _run(argv, where, env, PROBE_PROMPT, PROBE_TIMEOUT)
        session = _Session()
        for line in out.splitlines():
            self._read(line, session, lambda _event: None)
        if session.usage.calls:
            self._check_usage = self.price(session.usage)
        refused = self._refused(session)
        if refused:
            raise AgentConfigError(f"codex cannot use its key ({refused}); {LOGIN}")

    def _refused(self, session: _Session) -> str:
        """The error shown, when the session failed for want of a usable key."""
        for message in reversed(session.errors):
            if status_of(message) in (401, 403) or any(sign in message for sign in NO_KEY):
                return redact(message)[:300]
        return ""

    # -- one attempt -------------------------------------------------------------------------------

    def run(self, request: AgentRequest, listener: AgentListener) -> AgentOutcome:
        home = self.home()
        if home.resolve().is_relative_to(request.workspace.resolve()):
            raise AgentConfigError(
                f"CODEX_HOME ({home}) is inside the work tree: codex's files (its key among them) "
                "would land in a commit; point CODEX_HOME outside the repository"
            )
        with self._lock:
            checked, self._check_usage = self._check_usage, None
        if checked is not None:
            detail = f"codex's readiness check before the first task: {checked.cost_text()}"
            listener(AgentEvent(kind="model_call", usage=checked, session_over=True, detail=detail))
        env = self.env(request.env)
        codex = self.argv(self.sandbox_mode(request.sandbox))
        listener(AgentEvent(kind="progress", detail=redact(f"running codex: {shlex.join(codex)}")))
        argv = self.confined(codex, request.workspace, request.sandbox)
        prompt = f"{request.system_prompt.strip()}{REPORT_INSTRUCTIONS}\n\n{request.prompt.strip()}\n"
        session = _Session(gate=request.rate_gate)
        if session.gate is not None:
            session.gate.wait_turn()  # its first request; the CLI paces the rest itself
        ended = processes.run_supervised(
            argv,
            cwd=request.workspace,
            env=env,
            stdin_text=prompt,
            timeout=self.timeout,
            on_line=lambda raw: self._read(raw.decode("utf-8", errors="replace"), session, listener),
            tail_chars=TAIL_CHARS,
        )
        return self._outcome(session, ended.code, ended.timed_out, redact(ended.stderr_tail), listener)

    def _read(self, line: str, session: _Session, listener: AgentListener) -> None:
        """What one --json line says, kept in `session` and relayed as events."""
        try:
            event = json.loads(line)
        except ValueError:
            return  # a stray line that is not an event: not ours to parse
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "thread.started":
            listener(AgentEvent(kind="progress", detail="codex session started"))
        elif kind == "turn.completed" and isinstance(event.get("usage"), dict):
            session.usage = session.usage + usage_of(event["usage"])
        elif kind == "turn.failed":
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            session.failed = True
            session.errors.append(str(message or "turn failed"))
        elif kind == "error":
            message = str(event.get("message") or "")
            session.errors.append(message)
            session.rate_limited(message)
            listener(AgentEvent(kind="progress", detail=redact(f"codex: {message}")[:300]))
        elif kind == "item.completed" and isinstance(event.get("item"), dict):
            self._item(event["item"], session, listener)

    def _item(self, item: Mapping[str, Any], session: _Session, listener: AgentListener) -> None:
        kind = item.get("type")
        if kind == "agent_message":
            session.last_message = str(item.get("text") or "")
            listener(AgentEvent(kind="message", detail=redact(session.last_message)[:500]))
        elif kind == "command_execution":
            command, output = str(item.get("command") or ""), str(item.get("aggregated_output") or "")
            listener(
                AgentEvent(kind="tool_call", detail=redact(f"{command} (exit {item.get('exit_code')})")[:300])
            )
            if item.get("status") == "failed" and any(sign in output for sign in DENIED):
                said = next(line for line in output.splitlines() if any(s in line for s in DENIED))
                session.rejected.append(redact(f"`{command[:120]}`: {said.strip()[:200]}"))
        elif kind == "file_change":
            changes = item.get("changes")
            paths = (
                [str(c.get("path")) for c in changes if isinstance(c, dict)]
                if isinstance(changes, list)
                else []
            )
            listener(
                AgentEvent(
                    kind="tool_call", detail=redact(f"patch {', '.join(paths)} ({item.get('status')})")
                )
            )
            if item.get("status") == "failed":
                session.rejected.append(redact(f"a patch of {', '.join(paths) or 'its files'}"))
        elif kind == "error":
            listener(AgentEvent(kind="progress", detail=redact(f"codex: {item.get('message')}")[:300]))

    def _outcome(
        self, session: _Session, code: int, timed_out: bool, err_tail: str, listener: AgentListener
    ) -> AgentOutcome:
        usage = self.price(session.usage) if session.usage.calls else Usage()
        if session.usage.calls:
            # Spent on a session that is over (or killed): never stops the work it paid for.
            listener(
                AgentEvent(
                    kind="model_call",
                    usage=usage,
                    session_over=True,
                    detail=f"codex: {usage.calls} turn(s), {usage.input_tokens} in, "
                    f"{usage.output_tokens} out, {usage.cache_read_input_tokens} cache read; "
                    f"{usage.cost_text()}",
                )
            )
        last_error = redact(session.errors[-1])[:300] if session.errors else ""
        if timed_out:
            why = f"codex timed out after {self.timeout:g}s (agent_timeout) and was killed"
            return AgentOutcome(status=AgentStatus.FAILED, summary=f"{why}\n{err_tail}".strip(), usage=usage)
        if code != 0 or session.failed:
            refused = self._refused(session)
            if refused:
                raise AgentUnavailable(
                    f"codex could not use its key ({refused}); {LOGIN}, then `orchestrate resume`"
                )
            status = status_of(last_error)
            if status is not None and (status in (408, 409, 429) or status >= 500):
                what = "rate limited" if status == 429 else "unavailable"
                raise AgentUnavailable(
                    f"the API was {what} for codex after its own retries ({last_error}); {RESUME}",
                    retry_after=session.rate_limited(session.errors[-1]),
                )
            if status is None and any(sign in last_error.lower() for sign in UNREACHABLE):
                raise AgentUnavailable(f"codex could not reach its API ({last_error}); {RESUME}")
            why = f"codex exited with status {code}" + (f": {last_error}" if last_error else "")
            return AgentOutcome(status=AgentStatus.FAILED, summary=f"{why}\n{err_tail}".strip(), usage=usage)
        text = redact(session.last_message.strip())
        if session.rejected:
            summary = (
                f"codex's sandbox refused its writes ({'; '.join(session.rejected[:3])}): it ran read-only; "
                "check sandbox_mode in its config.toml and that its sandbox works here"
            )
            return AgentOutcome(status=AgentStatus.FAILED, summary=summary, usage=usage, turns=usage.calls)
        blocked = text.lstrip("*# ").upper().startswith("BLOCKED")
        status_done = AgentStatus.BLOCKED if blocked else AgentStatus.DONE
        return AgentOutcome(
            status=status_done, summary=text[:4000] or "codex finished", usage=usage, turns=usage.calls
        )


def create(settings: Settings) -> Agent:
    executable = shutil.which("codex")
    if executable is None:
        raise AgentConfigError(
            "the `codex` CLI is not on PATH; install it (npm install -g @openai/codex) "
            "or choose another --agent"
        )
    return CodexAgent(str(Path(executable)), settings)
