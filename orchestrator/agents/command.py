"""The `command` backend: any external agent (a script, a CLI with no backend of its own), from a template.

    --agent command --agent-command "mytool --no-commit --prompt-file {prompt_file}"

{prompt_file}, {workspace} and {task_id} are substituted shell-quoted; the command runs with bash in
the workspace, in a session of its own, killed with all it started after agent_timeout seconds.
Exit status 0 means the agent finished (verification then decides whether the task is done).
What the command spent is not known to orchestrate: each attempt is recorded as "cost unknown",
never as $0, and a --max-cost cannot be enforced for it (the run says so once).

The agent is a tool the user chose, but what it runs is steered by the model and by the repository:
it gets the allow-listed environment plus the variables named in `agent_env` (its own API key, say,
which the commands it runs can then read too), never the rest of ours. Under bubblewrap the whole
agent runs in the run's sandbox with the network on (it must reach its model): it can write only its
workspace (not `.git`, not the run's state, not your home directory) and cannot see orchestrate's
process. Its output is redacted before it is reported.
"""

from __future__ import annotations

import shlex
import string
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
)
from orchestrator.config import Settings
from orchestrator.domain.usage import Usage
from orchestrator.tools.environment import child_env, redact
from orchestrator.tools.shell import run_shell

FIELDS = ("prompt_file", "workspace", "task_id")
TAIL_CHARS = 3000
UNKNOWN = Usage(cost_known=False)


def check_template(template: str) -> None:
    """Refuse a template that names a field we do not fill, or does not parse."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise AgentConfigError(
            f"--agent-command template does not parse: {exc} (write {{{{ for a brace)"
        ) from exc
    unknown = sorted(n for n in names if n not in FIELDS)
    if unknown:
        raise AgentConfigError(
            f"--agent-command template names unknown field(s) {', '.join(unknown)}; "
            f"the fields are {{prompt_file}}, {{workspace}}, {{task_id}}"
        )


def render(template: str, prompt_file: Path, workspace: Path, task_id: str) -> str:
    values = {"prompt_file": str(prompt_file), "workspace": str(workspace), "task_id": task_id}
    return template.format(**{k: shlex.quote(v) for k, v in values.items()})


class CommandAgent:
    name = "command"

    def __init__(self, template: str, timeout: float, agent_env: list[str] | None = None):
        self.template = template
        self.timeout = timeout
        self.agent_env = list(agent_env or [])

    def run(self, request: AgentRequest, listener: AgentListener) -> AgentOutcome:
        # The prompt lives outside the workspace so that it is never committed with the work.
        with tempfile.TemporaryDirectory(prefix="orchestrate-prompt-") as tmp:
            prompt_file = Path(tmp) / f"task-{_safe(request.task_id)}-attempt-{request.attempt}.md"
            prompt_file.write_text(
                f"{request.system_prompt.strip()}\n\n{request.prompt.strip()}\n", encoding="utf-8"
            )
            command = render(self.template, prompt_file, request.workspace, request.task_id)
            listener(AgentEvent(kind="progress", detail=redact(f"running agent command: {command}")))
            env = child_env(request.env, passed=self.agent_env)
            # The prompt file is in our own /tmp, which the sandbox's private /tmp hides.
            sandbox = request.sandbox.with_network().reading(Path(tmp)) if request.sandbox else None
            result = run_shell(
                command,
                cwd=request.workspace,
                timeout=self.timeout,
                env=env,
                output_limit=50_000,
                sandbox=sandbox,
            )
        tail = redact(result.output[-TAIL_CHARS:].strip())
        listener(
            AgentEvent(
                kind="progress",
                detail=f"agent command exited {result.exit_code} after {result.duration:.1f}s",
            )
        )
        # It ran, and may have called a model: what that cost, nothing here can tell.
        listener(
            AgentEvent(
                kind="model_call",
                usage=UNKNOWN,
                session_over=True,
                detail="the agent command reports no usage: cost unknown",
            )
        )
        if result.timed_out:
            summary = f"the agent command timed out after {self.timeout:g}s (agent_timeout) and was killed"
            return AgentOutcome(
                status=AgentStatus.FAILED, summary=f"{summary}\n{tail}".strip(), usage=UNKNOWN, turns=1
            )
        if result.exit_code != 0:
            summary = f"the agent command exited with status {result.exit_code}"
            return AgentOutcome(
                status=AgentStatus.FAILED, summary=f"{summary}\n{tail}".strip(), usage=UNKNOWN, turns=1
            )
        return AgentOutcome(
            status=AgentStatus.DONE, summary=tail or "the agent command exited 0", usage=UNKNOWN, turns=1
        )


def _safe(task_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in task_id)[:60] or "task"


def create(settings: Settings) -> Agent:
    if not settings.agent_command:
        raise AgentConfigError(
            "--agent command needs a command template: --agent-command 'TOOL ... {prompt_file}' "
            "(fields: {prompt_file}, {workspace}, {task_id}), or agent_command in orchestrate.toml"
        )
    check_template(settings.agent_command)
    return CommandAgent(settings.agent_command, settings.agent_timeout, settings.agent_env)
