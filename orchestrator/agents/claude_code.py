"""The `claude-code` backend: the `claude` CLI in headless mode, run in the workspace.

    claude -p --output-format stream-json --verbose --permission-mode MODE --allowedTools TOOLS
           --max-turns N --append-system-prompt ... [--max-budget-usd LEFT] [--model M]  < prompt

The prompt goes through stdin (a template starting with `-` is never read as a flag, and no argv
limit applies). Its stream-json lines are relayed as events while it works; the final `result` line
carries the report, the cost and `modelUsage`, the usage of every model the session called (its
sub-agents and title calls included, which `result.usage` leaves out).

How a session ends decides what the engine hears:
- an API fault (`api_error_status` 429/5xx/529, or a synthetic message marked `rate_limit` or
  `server_error`) or a key that stopped working is `AgentUnavailable`: the run stops resumably and
  the attempt does not count; `check_ready` finds a missing login or a rejected key before the first
  task (`claude auth status`, then a one-turn call without tools);
- the budget it was given (what is left of --max-cost) reached: its usage is reported as a live
  model call, and the engine's listener stops the run on its budget;
- a finished session's usage is reported as `session_over`: the work is done and is verified and
  committed even if that usage passed the budget (the next attempt does not start);
- a timeout kills the whole process tree and keeps the usage its messages showed so far.

`claude` gets the allow-listed environment, its own key (ANTHROPIC_API_KEY or a token, handed over
explicitly: the CLI took them out of our environment) and the variables named in `agent_env`; not
CLAUDECODE, since the CLI refuses to start nested inside another Claude Code session. The commands
its Bash tool runs inherit that key: Claude Code does not hide it from them. Under bubblewrap the
whole CLI runs in the run's sandbox with the network on (it must reach the API): it can write its
workspace and its own state (~/.claude, ~/.claude.json) and nothing else, and cannot see
orchestrate's process or the run's state.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
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
from orchestrator.agents.pricing import priced
from orchestrator.agents.rate import retry_after_said
from orchestrator.config import DEFAULT_MODEL, RECORDED_ORIGIN, ModelPrice, Settings
from orchestrator.domain.usage import Usage
from orchestrator.tools import processes
from orchestrator.tools.environment import child_env, redact
from orchestrator.tools.sandbox import Sandbox

REPORT_INSTRUCTIONS = (
    "\n\nWhen you have finished, end with a short report of what you did. If you cannot do the task, "
    "start your final message with 'BLOCKED:' and the reason. Do not commit: orchestrate verifies "
    "and commits your work."
)
TAIL_CHARS = 2000
CLAUDE_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_MODEL",
    "CLAUDE_CONFIG_DIR",
)
"""What the CLI needs to reach the API as the user set it up, passed to it by name."""
RESUME = "resume later with `orchestrate resume`"
LOGIN = (
    "export ANTHROPIC_API_KEY with a valid key, or log the CLI in (`claude auth login`, or "
    "`claude setup-token` and CLAUDE_CODE_OAUTH_TOKEN)"
)
PROBE_TIMEOUT = 120.0
"""Seconds each readiness check may take; one that takes longer decides nothing."""
PROBE_PROMPT = "Reply with the single word OK."
MIN_BUDGET = 0.0001
SYNTHETIC = "<synthetic>"
"""The model name Claude Code gives the messages it writes itself (an API error's text)."""
UNAVAILABLE_KINDS = {"rate_limit", "server_error", "overloaded", "overloaded_error", "api_error"}
AUTH_KINDS = {"authentication_failed", "authentication_error", "permission_error"}
AUTH_TEXTS = ("Not logged in", "Invalid API key")
"""How the CLI words a missing login (no status: no request was made) and a rejected key."""


def _int(raw: Mapping[str, Any], *keys: str) -> int:
    for key in keys:
        value = raw.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
    return 0


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def usage_of(result: Mapping[str, Any]) -> Usage:
    """The session's usage: `modelUsage` summed over its models (sub-agents and title calls are
    there, not in `usage`), else `usage`; the cost Claude Code reports."""
    turns = result.get("num_turns")
    calls = int(turns) if isinstance(turns, int) and not isinstance(turns, bool) else 1
    per_model = result.get("modelUsage")
    models = [m for m in per_model.values() if isinstance(m, dict)] if isinstance(per_model, dict) else []
    if models:
        usage = Usage(
            input_tokens=sum(_int(m, "inputTokens") for m in models),
            output_tokens=sum(_int(m, "outputTokens") for m in models),
            cache_creation_input_tokens=sum(_int(m, "cacheCreationInputTokens") for m in models),
            cache_read_input_tokens=sum(_int(m, "cacheReadInputTokens") for m in models),
            cost_usd=sum(_float(m.get("costUSD")) or 0.0 for m in models),
            calls=calls,
        )
    else:
        raw = result.get("usage")
        raw = raw if isinstance(raw, dict) else {}
        usage = Usage(
            input_tokens=_int(raw, "input_tokens"),
            output_tokens=_int(raw, "output_tokens"),
            cache_creation_input_tokens=_int(raw, "cache_creation_input_tokens"),
            cache_read_input_tokens=_int(raw, "cache_read_input_tokens"),
            calls=calls,
        )
    total = _float(result.get("total_cost_usd"))
    return usage.model_copy(update={"cost_usd": total}) if total is not None else usage


@dataclass
class _Stream:
    """What a session's stream-json lines said, as they came."""

    result: dict[str, Any] | None = None
    messages: dict[str, tuple[str, Usage]] = field(default_factory=dict)
    """Message id -> (model, usage as last shown): the calls served so far."""
    error_kind: str = ""
    """The `error` of the last message Claude Code wrote itself (`rate_limit`, `server_error`, ...)."""

    def seen(self, prices: Mapping[str, ModelPrice]) -> Usage:
        """The usage of the calls the stream showed, priced with our table: what a session that
        never reported its own (killed on its timeout) has spent at least."""
        total = Usage()
        for model, usage in self.messages.values():
            total = total + priced(usage, model, prices)
        return total


def _message_usage(raw: Mapping[str, Any]) -> Usage:
    return Usage(
        input_tokens=_int(raw, "input_tokens"),
        output_tokens=_int(raw, "output_tokens"),
        cache_creation_input_tokens=_int(raw, "cache_creation_input_tokens"),
        cache_read_input_tokens=_int(raw, "cache_read_input_tokens"),
        calls=1,
    )


def _error_of(result: Mapping[str, Any]) -> tuple[int | None, str, str]:
    """An errored result's API status, its text, and both as shown to the user."""
    status = result.get("api_error_status")
    code = status if isinstance(status, int) and not isinstance(status, bool) else None
    text = redact(str(result.get("result") or "").strip())[:300]
    return code, text, f"{code}: {text}" if code is not None else text


def auth_failure(result: Mapping[str, Any], error_kind: str = "") -> str | None:
    """The error shown, when an errored session failed for want of a usable key or login."""
    if not result.get("is_error"):
        return None
    code, text, shown = _error_of(result)
    if code in (401, 403) or error_kind in AUTH_KINDS or text.startswith(AUTH_TEXTS):
        return shown
    return None


def api_fault(result: Mapping[str, Any], error_kind: str = "") -> Exception | None:
    """What an errored session's result means when the fault is not the task's: the service down
    or busy, or the key refused (AgentUnavailable: the run stops resumably). None otherwise."""
    if not result.get("is_error"):
        return None
    code, text, shown = _error_of(result)
    refused = auth_failure(result, error_kind)
    if refused is not None:
        return AgentUnavailable(
            f"claude-code could not use its key ({refused}); {LOGIN}, then `orchestrate resume`"
        )
    if code == 402 or error_kind == "billing_error" or "credit balance" in text.lower():
        return AgentUnavailable(f"the API refused claude-code for billing ({shown}); {RESUME}")
    if code is not None and (code in (408, 409, 429) or code >= 500) or error_kind in UNAVAILABLE_KINDS:
        limited = code == 429 or error_kind == "rate_limit"
        return AgentUnavailable(
            f"the API was {'rate limited' if limited else 'unavailable'} for claude-code after its own "
            f"retries ({shown}); {RESUME}",
            retry_after=retry_after_said(text) if limited else None,
        )
    return None


def model_chosen(settings: Settings) -> str | None:
    """The model the user chose, or None: the CLI then uses its own default (or ANTHROPIC_MODEL).
    A resume that took the run's recorded default back has not chosen it."""
    if "model" not in settings.model_fields_set:
        return None
    if settings.origin("model") == RECORDED_ORIGIN and settings.model == DEFAULT_MODEL:
        return None
    return settings.model


class ClaudeCodeAgent:
    name = "claude-code"

    def __init__(self, executable: str, settings: Settings):
        self.executable = executable
        self.permission_mode = settings.claude_permission_mode
        self.allowed_tools = list(settings.claude_allowed_tools)
        self.timeout = settings.agent_timeout
        self.model = model_chosen(settings)
        # What the engine puts in every request when the user chose nothing.
        self.unchosen = settings.model
        self.agent_env = list(settings.agent_env)
        self.prices = dict(settings.prices)
        self._check_usage: Usage | None = None
        """What the readiness check spent, charged to the first attempt (the run has no journal yet)."""
        self._lock = threading.Lock()

    def _model(self, request: AgentRequest) -> str | None:
        if request.model and request.model != self.unchosen:
            return request.model  # a model the engine asks for on purpose (a reviewer's, say)
        return self.model

    def argv(self, request: AgentRequest) -> list[str]:
        argv = [self.executable, "-p", "--output-format", "stream-json", "--verbose"]
        argv += ["--permission-mode", self.permission_mode]
        if self.allowed_tools:
            argv += ["--allowedTools", ",".join(self.allowed_tools)]
        argv += ["--max-turns", str(request.max_turns)]
        argv += ["--append-system-prompt", request.system_prompt + REPORT_INSTRUCTIONS]
        if request.max_cost is not None:
            argv += ["--max-budget-usd", f"{max(request.max_cost, MIN_BUDGET):.4f}"]
        model = self._model(request)
        if model:
            argv += ["--model", model]
        return argv

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = child_env(extra, passed=[*CLAUDE_ENV, *self.agent_env])
        if self.permission_mode == "bypassPermissions" and os.geteuid() == 0:
            # As root the CLI refuses to skip permissions unless told it runs in a sandbox; the
            # user asked for this mode, and where bubblewrap works it does run in one.
            env["IS_SANDBOX"] = "1"
        return env

    def confined(
        self, argv: list[str], workspace: Path, env: Mapping[str, str], sandbox: Sandbox | None
    ) -> list[str]:
        """`argv` in the run's sandbox, with the network (it must reach the API) and its own state
        writable (~/.claude, ~/.claude.json, CLAUDE_CONFIG_DIR)."""
        if sandbox is None:
            return argv
        home = Path.home()
        state = [home / ".claude", home / ".claude.json"]
        if env.get("CLAUDE_CONFIG_DIR"):
            state.append(Path(env["CLAUDE_CONFIG_DIR"]))
        return sandbox.with_network().writing(*state).wrap(argv, workspace)

    # -- before the first task ------------------------------------------------------------

    def check_ready(self, sandbox: Sandbox | None) -> None:
        """Refuse to start when the CLI has no login or its key is rejected: `claude auth status`
        (free), then a one-turn call without tools (a few hundred tokens). An outage or a
        timeout here decides nothing: the first task meets it and the run stops resumably."""
        env = self.env({"CLAUDE_CODE_MAX_RETRIES": "0"})
        with tempfile.TemporaryDirectory(prefix="orchestrate-claude-probe-") as cwd:
            where = Path(cwd)
            status_argv = self.confined([self.executable, "auth", "status"], where, env, sandbox)
            out = _run(status_argv, where, env, "", PROBE_TIMEOUT)
            status = _json_object(out)
            if status is not None and status.get("loggedIn") is False:
                raise AgentConfigError(f"claude-code is not logged in (`claude auth status`); {LOGIN}")
            argv = [self.executable, "-p", "--output-format", "json", "--max-turns", "1", "--tools", ""]
            argv += ["--system-prompt", PROBE_PROMPT, "--no-session-persistence"]
            if self.model:
                argv += ["--model", self.model]
            out = _run(self.confined(argv, where, env, sandbox), where, env, PROBE_PROMPT, PROBE_TIMEOUT)
        result = _json_object(out.strip().splitlines()[-1] if out.strip() else "")
        if result is None:
            return
        spent = usage_of(result)
        if spent.cost_usd or spent.total_tokens:
            self._check_usage = spent
        refused = auth_failure(result)
        if refused is not None:
            raise AgentConfigError(f"claude-code cannot use its key ({refused}); {LOGIN}")

    # -- one attempt ----------------------------------------------------------------------

    def run(self, request: AgentRequest, listener: AgentListener) -> AgentOutcome:
        with self._lock:
            checked, self._check_usage = self._check_usage, None
        if checked is not None:
            detail = f"claude-code's readiness check before the first task: ${checked.cost_usd:.4f}"
            listener(AgentEvent(kind="model_call", usage=checked, session_over=True, detail=detail))
        env = self.env(request.env)
        argv = self.confined(self.argv(request), request.workspace, env, request.sandbox)
        stream = _Stream()
        gate = request.rate_gate
        if gate is not None:
            gate.wait_turn()  # its first request; the CLI paces the rest itself
        # Its Bash tool starts each command in a session of its own: the supervisor kills the tree.
        ended = processes.run_supervised(
            argv,
            cwd=request.workspace,
            env=env,
            stdin_text=request.prompt,
            timeout=self.timeout,
            on_line=lambda raw: self._relay_line(raw, listener, stream, gate),
            tail_chars=TAIL_CHARS,
        )
        return self._outcome(
            request, stream, ended.code, ended.timed_out, redact(ended.stderr_tail), listener
        )

    def _relay_line(
        self, raw: bytes, listener: AgentListener, stream: _Stream, gate: RateGate | None = None
    ) -> None:
        """Events for one stream-json line, and what the stream says kept in `stream`; a 429 it
        waits out (`api_retry`) holds the run's rate gate off as long."""
        try:
            event = json.loads(raw)
        except ValueError:
            return  # stray non-JSON output (a warning from a wrapper script): not ours to parse
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "result":
            stream.result = event
        elif kind == "system" and event.get("subtype") == "init":
            model = event.get("model", "?")
            listener(AgentEvent(kind="progress", detail=f"claude-code session started (model {model})"))
        elif kind == "system" and event.get("subtype") == "api_retry":
            listener(
                AgentEvent(
                    kind="progress",
                    detail=f"the API answered {event.get('error_status')} ({event.get('error')}); "
                    f"claude-code retries ({event.get('attempt')} of {event.get('max_retries')})",
                )
            )
            delay = _float(event.get("retry_delay_ms"))
            if gate is not None and event.get("error_status") == 429 and delay is not None:
                gate.hold_off(delay / 1000)
        elif kind == "assistant":
            self._assistant(event, listener, stream)

    def _assistant(self, event: dict[str, Any], listener: AgentListener, stream: _Stream) -> None:
        message = event.get("message")
        if not isinstance(message, dict):
            return
        model = str(message.get("model") or "")
        if model == SYNTHETIC:
            stream.error_kind = str(event.get("error") or "")
        elif isinstance(message.get("usage"), dict) and message.get("id"):
            stream.messages[str(message["id"])] = (model, _message_usage(message["usage"]))
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and block.get("text"):
                listener(AgentEvent(kind="message", detail=redact(str(block["text"]))[:500]))
            elif block.get("type") == "tool_use":
                shown = json.dumps(block.get("input"), ensure_ascii=False)[:160]
                listener(AgentEvent(kind="tool_call", detail=redact(f"{block.get('name')} {shown}")))

    def _outcome(
        self,
        request: AgentRequest,
        stream: _Stream,
        code: int,
        timed_out: bool,
        err_tail: str,
        listener: AgentListener,
    ) -> AgentOutcome:
        result = stream.result
        if result is None:
            usage = stream.seen(self.prices)
            if usage.calls:
                listener(
                    AgentEvent(
                        kind="model_call",
                        usage=usage,
                        session_over=True,
                        detail=f"claude-code before it ended: {usage.calls} call(s) seen, "
                        f"${usage.cost_usd:.4f} at our prices",
                    )
                )
            if timed_out:
                why = f"claude timed out after {self.timeout:g}s (agent_timeout) and was killed"
            else:
                why = f"claude exited with status {code} without a result"
            return AgentOutcome(status=AgentStatus.FAILED, summary=f"{why}\n{err_tail}".strip(), usage=usage)
        usage = usage_of(result)
        subtype = str(result.get("subtype") or "")
        over_budget = subtype == "error_max_budget_usd"
        # Spent on a session that is over: it never stops the work it paid for (a budget reached
        # mid-session is the exception: that one stops the run, through the engine's listener).
        listener(
            AgentEvent(
                kind="model_call",
                usage=usage,
                session_over=not over_budget,
                detail=f"claude-code: {usage.calls} turns, {usage.input_tokens} in, {usage.output_tokens} "
                f"out, {usage.cache_read_input_tokens} cache read; ${usage.cost_usd:.4f}",
            )
        )
        fault = api_fault(result, stream.error_kind)
        if fault is not None:
            if isinstance(fault, AgentUnavailable) and fault.retry_after and request.rate_gate:
                request.rate_gate.hold_off(fault.retry_after)
            raise fault
        text = redact(str(result.get("result") or "").strip())
        turns = usage.calls
        denied = self._denied(result, listener)
        if result.get("is_error") or (subtype and subtype != "success"):
            if over_budget:
                what = f"reached the budget it was given (${request.max_cost or 0:.4f} left of --max-cost)"
            elif subtype == "error_max_turns":
                what = "reached --max-turns"
            else:
                what = subtype or "error"
            errors = result.get("errors")
            detail = text or redact("; ".join(str(e) for e in errors) if isinstance(errors, list) else "")
            summary = f"claude-code stopped with an error ({what})" + (f": {detail}" if detail else "")
            return AgentOutcome(status=AgentStatus.FAILED, summary=summary + denied, usage=usage, turns=turns)
        blocked = text.lstrip("*# ").upper().startswith("BLOCKED")
        status = AgentStatus.BLOCKED if blocked else AgentStatus.DONE
        summary = (text[:4000] or "claude-code finished") + denied
        return AgentOutcome(status=status, summary=summary, usage=usage, turns=turns)

    def _denied(self, result: Mapping[str, Any], listener: AgentListener) -> str:
        """A note on the tool calls Claude Code refused for want of permission (the agent may then
        report success without having run its checks)."""
        denials = result.get("permission_denials")
        if not isinstance(denials, list) or not denials:
            return ""
        shown = []
        for denial in denials[:3]:
            if isinstance(denial, dict):
                tool_input = denial.get("tool_input")
                command = tool_input.get("command") if isinstance(tool_input, dict) else None
                shown.append(f"{denial.get('tool_name')}" + (f" `{str(command)[:80]}`" if command else ""))
        note = (
            f"claude-code refused {len(denials)} tool call(s) for want of permission ({', '.join(shown)}); "
            "allow them with claude_allowed_tools or claude_permission_mode"
        )
        listener(AgentEvent(kind="progress", detail=redact(note)))
        return f"\n[{redact(note)}]"


def _run(argv: list[str], cwd: Path, env: dict[str, str], stdin: str, timeout: float) -> str:
    """A short command's stdout ("" when it did not end within `timeout`: it is killed with all
    it started)."""
    with tempfile.TemporaryFile() as out:
        tree = processes.spawn(
            argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.DEVNULL
        )
        try:
            tree.popen.communicate(stdin.encode("utf-8"), timeout=timeout)
        except subprocess.TimeoutExpired:
            return ""
        finally:
            processes.kill_tree(tree)
            tree.popen.wait()
        out.seek(0)
        return out.read().decode("utf-8", "replace")


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def create(settings: Settings) -> Agent:
    executable = shutil.which("claude")
    if executable is None:
        raise AgentConfigError(
            "the `claude` CLI is not on PATH; install Claude Code "
            "(npm install -g @anthropic-ai/claude-code) or choose another --agent"
        )
    return ClaudeCodeAgent(str(Path(executable)), settings)
