"""The `claude-code` backend: the `claude` CLI in headless mode, run in the workspace.

    claude -p PROMPT --output-format stream-json --verbose --permission-mode MODE --max-turns N

Its stream-json lines are relayed as events while it works; the final `result` line carries the
report, total_cost_usd, usage and num_turns.

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
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

from orchestrator.agents.base import (
    Agent,
    AgentConfigError,
    AgentEvent,
    AgentListener,
    AgentOutcome,
    AgentRequest,
    AgentStatus,
)
from orchestrator.config import DEFAULT_MODEL, Settings
from orchestrator.domain.usage import Usage
from orchestrator.tools import processes
from orchestrator.tools.environment import child_env, redact

REPORT_INSTRUCTIONS = (
    "\n\nWhen you have finished, end with a short report of what you did. If you cannot do the task, "
    "start your final message with 'BLOCKED:' and the reason. Do not commit: orchestrate verifies "
    "and commits your work."
)
ARGV_PROMPT_LIMIT = 100_000
"""Longer prompts go through stdin: one argv string may not pass 128 KiB on Linux."""
TAIL_CHARS = 2000
CLAUDE_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "CLAUDE_CONFIG_DIR",
)
"""What the CLI needs to reach the API as the user set it up, passed to it by name."""


def _usage_of(result: dict[str, Any]) -> Usage:
    raw = result.get("usage") if isinstance(result.get("usage"), dict) else {}
    assert isinstance(raw, dict)

    def number(key: str) -> int:
        value = raw.get(key)
        return int(value) if isinstance(value, int | float) else 0

    cost = result.get("total_cost_usd")
    turns = result.get("num_turns")
    return Usage(
        input_tokens=number("input_tokens"),
        output_tokens=number("output_tokens"),
        cache_creation_input_tokens=number("cache_creation_input_tokens"),
        cache_read_input_tokens=number("cache_read_input_tokens"),
        cost_usd=float(cost) if isinstance(cost, int | float) else 0.0,
        calls=int(turns) if isinstance(turns, int) else 1,
    )


class ClaudeCodeAgent:
    name = "claude-code"

    def __init__(self, executable: str, settings: Settings):
        self.executable = executable
        self.permission_mode = settings.claude_permission_mode
        self.timeout = settings.agent_timeout
        # The claude CLI has its own default model; only a model the user chose is passed on.
        self.model = settings.model if settings.model != DEFAULT_MODEL else None
        self.agent_env = list(settings.agent_env)

    def argv(self, request: AgentRequest) -> list[str]:
        argv = [self.executable, "-p"]
        if len(request.prompt) <= ARGV_PROMPT_LIMIT:
            argv.append(request.prompt)
        argv += ["--output-format", "stream-json", "--verbose", "--permission-mode", self.permission_mode]
        argv += ["--max-turns", str(request.max_turns)]
        argv += ["--append-system-prompt", request.system_prompt + REPORT_INSTRUCTIONS]
        model = request.model or self.model
        if model:
            argv += ["--model", model]
        return argv

    def run(self, request: AgentRequest, listener: AgentListener) -> AgentOutcome:
        env = child_env(request.env, passed=[*CLAUDE_ENV, *self.agent_env])
        argv = self.argv(request)
        if request.sandbox is not None:
            home = Path.home()
            state = [home / ".claude", home / ".claude.json"]
            if env.get("CLAUDE_CONFIG_DIR"):
                state.append(Path(env["CLAUDE_CONFIG_DIR"]))
            argv = request.sandbox.with_network().writing(*state).wrap(argv, request.workspace)
        via_stdin = len(request.prompt) > ARGV_PROMPT_LIMIT
        with tempfile.TemporaryFile() as stderr:
            # Its Bash tool starts each command in a session of its own: only the whole tree, killed
            # by its marks, takes those with it.
            tree = processes.spawn(
                argv,
                cwd=request.workspace,
                env=env,
                stdin=subprocess.PIPE if via_stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
            proc = tree.popen
            timed_out = threading.Event()

            def expire() -> None:
                timed_out.set()
                processes.kill_tree(tree)

            timer = threading.Timer(self.timeout, expire)
            timer.start()
            try:
                if via_stdin and proc.stdin is not None:
                    proc.stdin.write(request.prompt.encode("utf-8"))
                    proc.stdin.close()
                assert proc.stdout is not None
                result = self._relay(proc.stdout, listener)
                code = proc.wait()
            finally:
                timer.cancel()
                # Also after a clean exit: what its commands left running in the background.
                processes.kill_tree(tree)
                proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()
            stderr.seek(0)
            err_tail = redact(stderr.read().decode("utf-8", errors="replace")[-TAIL_CHARS:].strip())
        return self._outcome(result, code, timed_out.is_set(), err_tail, listener)

    def _relay(self, stdout: IO[bytes], listener: AgentListener) -> dict[str, Any] | None:
        """Events for each stream-json line; the final `result` object, if one came."""
        result: dict[str, Any] | None = None
        for raw in stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue  # stray non-JSON output (a warning from a wrapper script): not ours to parse
            if not isinstance(event, dict):
                continue
            kind = event.get("type")
            if kind == "result":
                result = event
            elif kind == "system" and event.get("subtype") == "init":
                model = event.get("model", "?")
                listener(AgentEvent(kind="progress", detail=f"claude-code session started (model {model})"))
            elif kind == "assistant":
                message = event.get("message")
                content = message.get("content") if isinstance(message, dict) else None
                for block in content if isinstance(content, list) else []:
                    if not isinstance(block, dict):
                        continue
                    if block.get("type") == "text" and block.get("text"):
                        listener(AgentEvent(kind="message", detail=redact(str(block["text"]))[:500]))
                    elif block.get("type") == "tool_use":
                        shown = json.dumps(block.get("input"), ensure_ascii=False)[:160]
                        listener(AgentEvent(kind="tool_call", detail=redact(f"{block.get('name')} {shown}")))
        return result

    def _outcome(
        self,
        result: dict[str, Any] | None,
        code: int,
        timed_out: bool,
        err_tail: str,
        listener: AgentListener,
    ) -> AgentOutcome:
        if result is None:
            if timed_out:
                why = f"claude timed out after {self.timeout:g}s (agent_timeout) and was killed"
            else:
                why = f"claude exited with status {code} without a result"
            return AgentOutcome(status=AgentStatus.FAILED, summary=f"{why}\n{err_tail}".strip())
        usage = _usage_of(result)
        listener(
            AgentEvent(
                kind="model_call",
                usage=usage,
                detail=f"claude-code: {usage.calls} turns, {usage.input_tokens} in, {usage.output_tokens} "
                f"out, {usage.cache_read_input_tokens} cache read; ${usage.cost_usd:.4f}",
            )
        )
        text = redact(str(result.get("result") or "").strip())
        turns = usage.calls
        subtype = str(result.get("subtype") or "")
        if result.get("is_error") or (subtype and subtype != "success"):
            what = "reached --max-turns" if subtype == "error_max_turns" else (subtype or "error")
            summary = f"claude-code stopped with an error ({what})" + (f": {text}" if text else "")
            return AgentOutcome(status=AgentStatus.FAILED, summary=summary, usage=usage, turns=turns)
        blocked = text.lstrip("*# ").upper().startswith("BLOCKED")
        status = AgentStatus.BLOCKED if blocked else AgentStatus.DONE
        summary = text[:4000] or "claude-code finished"
        return AgentOutcome(status=status, summary=summary, usage=usage, turns=turns)


def create(settings: Settings) -> Agent:
    executable = shutil.which("claude")
    if executable is None:
        raise AgentConfigError(
            "the `claude` CLI is not on PATH; install Claude Code "
            "(npm install -g @anthropic-ai/claude-code) or choose another --agent"
        )
    return ClaudeCodeAgent(str(Path(executable)), settings)
