"""The `aider` backend: aider (pip install aider-chat) run headless on one task, leaving the commits
to orchestrate.

    aider --yes-always --no-auto-commits --no-dirty-commits --no-gitignore --message-file PROMPT ...

What the flags are for: aider answers its own questions (`--yes-always`; `--yes` is no aider
option), commits nothing (`--no-auto-commits --no-dirty-commits`: orchestrate verifies, ticks and
commits), leaves `.gitignore` alone (by default it adds `.aider*` there, and that edit landed in the
task's commit), keeps its chat and input history outside the workspace, checks for no update and
sends no analytics. No file is handed to it: it finds what to edit from its repository map, and the
plan is never one of its editable files. The tags cache it leaves in the workspace
(`.aider.tags.cache.v*`) is removed after the run when it was not there before, so it never lands in
a commit.

aider exits 0 whatever happened, so its output decides: a rejected key or an API it gave up on
(overloaded, rate limited, down) is `AgentUnavailable`, the resumable stop; usage and cost come from
its `Tokens: ... Cost: $X message, $Y session.` lines.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import tempfile
from pathlib import Path

from orchestrator.agents.base import (
    Agent,
    AgentConfigError,
    AgentEvent,
    AgentListener,
    AgentOutcome,
    AgentRequest,
    AgentStatus,
    AgentUnavailable,
)
from orchestrator.agents.claude_code import model_chosen
from orchestrator.agents.rate import retry_after_said
from orchestrator.config import Settings
from orchestrator.domain.usage import Usage
from orchestrator.tools.environment import child_env, redact
from orchestrator.tools.shell import run_shell

TAIL_CHARS = 3000
AIDER_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_API_BASE",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_API_BASE",
    "AIDER_MODEL",
)
"""What aider (through litellm) needs to reach the common providers, passed to it by name; others
(a provider's key) are named in `agent_env`."""
HEADLESS = [
    "--yes-always",
    "--no-auto-commits",
    "--no-dirty-commits",
    "--no-gitignore",
    "--no-check-update",
    "--no-show-release-notes",
    "--no-analytics",
    "--no-pretty",
    "--no-fancy-input",
    "--no-stream",
    "--no-restore-chat-history",
    "--no-show-model-warnings",
]
TAGS_CACHE = ".aider.tags.cache.v*"
_TOKENS = re.compile(
    r"Tokens: (?P<sent>[\d.]+[kM]?) sent(?:, (?P<write>[\d.]+[kM]?) cache write)?"
    r"(?:, (?P<hit>[\d.]+[kM]?) cache hit)?, (?P<received>[\d.]+[kM]?) received\."
    r"(?: Cost: \$(?P<message>[\d.]+) message, \$(?P<session>[\d.]+) session\.)?"
)
KEY_REJECTED = ("litellm.AuthenticationError", "The API provider is not able to authenticate you")
UNAVAILABLE = (
    "The API provider's servers are down or overloaded",
    "litellm.RateLimitError",
    "litellm.ServiceUnavailableError",
    "litellm.InternalServerError",
    "litellm.APIConnectionError",
    "The API provider has rate limited you",
)
RATE_LIMITED = ("litellm.RateLimitError", "The API provider has rate limited you")
RESUME = "resume later with `orchestrate resume`"


def _count(text: str | None) -> int:
    if not text:
        return 0
    scale = {"k": 1_000, "M": 1_000_000}.get(text[-1], 1)
    return round(float(text.rstrip("kM")) * scale)


def usage_of(output: str) -> tuple[Usage, bool]:
    """The tokens of every message aider reported (it rounds them: 2.9k), the session's cost, and
    whether a cost was reported at all (litellm knows no price for some models)."""
    usage = Usage()
    session: float | None = None
    for match in _TOKENS.finditer(output):
        hit, write = _count(match["hit"]), _count(match["write"])
        usage = usage + Usage(
            # aider counts cached tokens among those sent.
            input_tokens=max(0, _count(match["sent"]) - hit - write),
            cache_creation_input_tokens=write,
            cache_read_input_tokens=hit,
            output_tokens=_count(match["received"]),
            calls=1,
        )
        if match["session"] is not None:
            session = float(match["session"])
    if session is not None:
        usage = usage.model_copy(update={"cost_usd": session})
    return usage.model_copy(update={"cost_known": session is not None}), session is not None


class AiderAgent:
    name = "aider"

    def __init__(self, executable: str, settings: Settings):
        self.executable = executable
        self.timeout = settings.agent_timeout
        self.model = model_chosen(settings)
        self.agent_env = list(settings.agent_env)

    def argv(self, prompt_file: Path, history: Path, confined: bool = False) -> list[str]:
        argv = [self.executable, *HEADLESS]
        if confined:
            # `.git` is read-only in the sandbox and aider `git add`s each file it creates: the add
            # fails and the file is left empty. Without git it edits the same, with no repo map.
            argv.append("--no-git")
        argv += ["--chat-history-file", str(history / "chat.md")]
        argv += ["--input-history-file", str(history / "input")]
        argv += ["--message-file", str(prompt_file)]
        if self.model:
            argv += ["--model", self.model]
        return argv

    def run(self, request: AgentRequest, listener: AgentListener) -> AgentOutcome:
        caches_before = set(request.workspace.glob(TAGS_CACHE))
        # The prompt and aider's history live outside the workspace: never committed with the work.
        with tempfile.TemporaryDirectory(prefix="orchestrate-aider-") as tmp:
            prompt_file = Path(tmp) / "prompt.md"
            prompt_file.write_text(
                f"{request.system_prompt.strip()}\n\n{request.prompt.strip()}\n", encoding="utf-8"
            )
            confined = request.sandbox is not None and request.sandbox.kind != "none"
            command = shlex.join(self.argv(prompt_file, Path(tmp), confined))
            listener(AgentEvent(kind="progress", detail=redact(f"running aider: {command}")))
            # Its price list comes with it: no fetch from the internet at start.
            env = child_env(
                {**request.env, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}, [*AIDER_ENV, *self.agent_env]
            )
            env.update(_identity_config(env, Path(tmp)))
            sandbox = request.sandbox.with_network().writing(Path(tmp)) if request.sandbox else None
            if request.rate_gate is not None:
                request.rate_gate.wait_turn()  # its first request; it paces the rest itself
            result = run_shell(
                command,
                cwd=request.workspace,
                timeout=self.timeout,
                env=env,
                output_limit=200_000,
                sandbox=sandbox,
            )
        for cache in set(request.workspace.glob(TAGS_CACHE)) - caches_before:
            shutil.rmtree(cache, ignore_errors=True)
        output = redact(result.output)
        usage, costed = usage_of(output)
        if usage.calls:
            listener(
                AgentEvent(
                    kind="model_call",
                    usage=usage,
                    session_over=True,
                    detail=f"aider: {usage.calls} message(s), {usage.input_tokens} in, "
                    f"{usage.output_tokens} out; "
                    + (f"${usage.cost_usd:.4f}" if costed else "cost unknown (aider reported none)"),
                )
            )
        tail = output[-TAIL_CHARS:].strip()
        if any(sign in output for sign in KEY_REJECTED):
            raise AgentUnavailable(
                f"aider's key was rejected ({_line_with(output, KEY_REJECTED)}); set the provider's key "
                "(ANTHROPIC_API_KEY, or name it in agent_env), then `orchestrate resume`"
            )
        # It may recover from an error and go on: only one after its last reply means it gave up.
        last_reply = max((m.end() for m in _TOKENS.finditer(output)), default=-1)
        if any(output.rfind(sign) > last_reply for sign in UNAVAILABLE):
            said = _line_with(output, UNAVAILABLE)
            after = output[last_reply + 1 :]
            delay = retry_after_said(after) if any(sign in after for sign in RATE_LIMITED) else None
            if delay is not None and request.rate_gate is not None:
                request.rate_gate.hold_off(delay)
            raise AgentUnavailable(
                f"the API was unavailable for aider after its retries ({said}); {RESUME}", retry_after=delay
            )
        if result.timed_out:
            summary = f"aider timed out after {self.timeout:g}s (agent_timeout) and was killed"
            return AgentOutcome(status=AgentStatus.FAILED, summary=f"{summary}\n{tail}".strip(), usage=usage)
        if result.exit_code != 0:
            summary = f"aider exited with status {result.exit_code}"
            return AgentOutcome(status=AgentStatus.FAILED, summary=f"{summary}\n{tail}".strip(), usage=usage)
        return AgentOutcome(
            status=AgentStatus.DONE, summary=tail or "aider finished", usage=usage, turns=usage.calls
        )


def _identity_config(env: dict[str, str], tmp: Path) -> dict[str, str]:
    """Where git's identity is given only by environment variables (GIT_AUTHOR_NAME, as CI and our
    tests do), aider does not see it and writes a made-up `user.name` into the repository's
    `.git/config` (tampering, which fails the attempt; read-only under bubblewrap). The same identity
    in a config file of its own, found through XDG_CONFIG_HOME, keeps it from writing."""
    name = env.get("GIT_AUTHOR_NAME") or env.get("GIT_COMMITTER_NAME")
    email = env.get("GIT_AUTHOR_EMAIL") or env.get("GIT_COMMITTER_EMAIL")
    if not (name and email) or "XDG_CONFIG_HOME" in env or "\n" in name + email:
        return {}
    config = tmp / "xdg" / "git" / "config"
    config.parent.mkdir(parents=True)
    quoted = f"[user]\n\tname = {json.dumps(name)}\n\temail = {json.dumps(email)}\n"
    config.write_text(quoted, encoding="utf-8")
    return {"XDG_CONFIG_HOME": str(tmp / "xdg")}


def _line_with(output: str, signs: tuple[str, ...]) -> str:
    for line in reversed(output.splitlines()):
        if any(sign in line for sign in signs):
            return line.strip()[:200]
    return ""


def create(settings: Settings) -> Agent:
    executable = shutil.which("aider")
    if executable is None:
        raise AgentConfigError(
            "`aider` is not on PATH; install it (python -m pip install aider-chat, or pipx install "
            "aider-chat) or choose another --agent"
        )
    return AiderAgent(str(Path(executable)), settings)
