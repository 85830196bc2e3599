"""The scripted agent: deterministic and offline, it replays file edits from a JSON script.

The script maps a task id to a list of steps, or to {"attempts": [[steps], [steps], ...]} for
per-attempt behaviour (an attempt past the last list replays the last one). Steps:

    {"write": PATH, "content": TEXT}    replace (or create) a file
    {"append": PATH, "content": TEXT}   append to a file (created if missing)
    {"run": SHELL}                      run a command in the workspace (in the run's sandbox, with the
                                        allow-listed environment); a non-zero exit fails the attempt
    {"sleep": SECONDS}                  wait (stands in for model latency)
    {"fail": MESSAGE}                   stop here; the attempt fails with MESSAGE
    {"usage": {"input_tokens": N, "output_tokens": N, "cost_usd": X, ...}}
                                        report one model call's usage (to exercise budgets)

An entry may also carry "reviews": a list of `submit_verdict` inputs (README, "The reviewer"), the
verdicts its reviewer gives, one per review round in order over all its attempts (a round past the
last replays the last); an entry's own "usage" key is reported as the reviewer's model call:

    {"T001": {"attempts": [[steps]], "reviews": [{"criteria": [...]}, {"criteria": [...]}]}}

A task with no reviews scripted is not reviewed by the scripted agent (an anthropic reviewer does it
if a key is set). A task absent from the script changes nothing and succeeds. Paths are relative to
the workspace and refused as the file tools refuse them: outside it, in the run's state (the sandbox's hidden
paths), or in .git.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from orchestrator.agents.base import (
    AgentConfigError,
    AgentEvent,
    AgentListener,
    AgentOutcome,
    AgentRequest,
    AgentStatus,
    ReviewReply,
    ReviewRequest,
)
from orchestrator.config import Settings
from orchestrator.domain.usage import Usage
from orchestrator.input_files import SCRIPT_LIMIT, NotReadable, read_regular_file
from orchestrator.tools.environment import child_env
from orchestrator.tools.files import ToolError, agent_path, write_regular
from orchestrator.tools.shell import run_shell, truncate_middle
from orchestrator.tools.workspace import OutsideWorkspace, Workspace

Step = dict[str, Any]

_STEP_KINDS = ("write", "append", "run", "sleep", "fail", "usage")
_USAGE_FIELDS = set(Usage.model_fields) - {"calls"}


class ScriptError(AgentConfigError):
    """The script file is unusable; the message names the file."""


def _check_step(step: Any, where: str, source: Path) -> Step:
    if not isinstance(step, dict):
        raise ScriptError(f"{source}: {where}: a step must be an object, got {type(step).__name__}")
    kinds = [k for k in _STEP_KINDS if k in step]
    if len(kinds) != 1:
        raise ScriptError(f"{source}: {where}: a step needs exactly one of {', '.join(_STEP_KINDS)}")
    kind = kinds[0]
    if kind in ("write", "append"):
        if not isinstance(step[kind], str) or not isinstance(step.get("content"), str):
            raise ScriptError(f"{source}: {where}: '{kind}' needs a path and a 'content' string")
    elif kind == "run" and not isinstance(step["run"], str):
        raise ScriptError(f"{source}: {where}: 'run' needs a shell command string")
    elif kind == "sleep" and (
        not isinstance(step["sleep"], int | float) or isinstance(step["sleep"], bool) or step["sleep"] < 0
    ):
        raise ScriptError(f"{source}: {where}: 'sleep' needs a number of seconds")
    elif kind == "fail" and not isinstance(step["fail"], str):
        raise ScriptError(f"{source}: {where}: 'fail' needs a message string")
    elif kind == "usage":
        usage = step["usage"]
        if not isinstance(usage, dict) or not set(usage) <= _USAGE_FIELDS:
            raise ScriptError(
                f"{source}: {where}: 'usage' takes an object with {', '.join(sorted(_USAGE_FIELDS))}"
            )
    return step


def _check_steps(steps: Any, where: str, source: Path) -> list[Step]:
    if not isinstance(steps, list):
        raise ScriptError(f"{source}: {where}: expected a list of steps")
    return [_check_step(s, f"{where} step {i + 1}", source) for i, s in enumerate(steps)]


Script = dict[str, list[list[Step]]]
Reviews = dict[str, list[dict[str, Any]]]


def load_script(path: Path) -> Script:
    """task id -> attempts -> steps, validated; ScriptError names the file and the bad entry."""
    return load_script_and_reviews(path)[0]


def _check_reviews(reviews: Any, task_id: str, source: Path) -> list[dict[str, Any]]:
    if not isinstance(reviews, list) or not reviews or not all(isinstance(r, dict) for r in reviews):
        raise ScriptError(
            f"{source}: task '{task_id}': 'reviews' takes a list of submit_verdict inputs "
            '({"criteria": [...]})'
        )
    for n, review in enumerate(reviews):
        usage = review.get("usage", {})
        if not isinstance(usage, dict) or not set(usage) <= _USAGE_FIELDS:
            raise ScriptError(
                f"{source}: task '{task_id}' review {n + 1}: 'usage' takes an object with "
                f"{', '.join(sorted(_USAGE_FIELDS))}"
            )
    return list(reviews)


def load_script_and_reviews(path: Path) -> tuple[Script, Reviews]:
    """The steps (task id -> attempts -> steps) and the scripted verdicts (task id -> rounds),
    validated; ScriptError names the file and the bad entry."""
    try:
        raw = json.loads(read_regular_file(path, what="script", limit=SCRIPT_LIMIT).decode("utf-8"))
    except NotReadable as exc:  # missing, a FIFO or a device (never read), too big
        raise ScriptError(exc.render()) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ScriptError(f"{path}: the script is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ScriptError(f"{path}: the script must be a JSON object from task id to steps")
    script: Script = {}
    reviews: Reviews = {}
    for task_id, entry in raw.items():
        if isinstance(entry, dict):
            attempts = entry.get("attempts", [[]] if "reviews" in entry else None)
            if not set(entry) <= {"attempts", "reviews"} or not isinstance(attempts, list) or not attempts:
                raise ScriptError(
                    f"{path}: task '{task_id}': use a list of steps or "
                    '{"attempts": [[...]], "reviews": [...]} (either key may be left out)'
                )
            script[task_id] = [
                _check_steps(steps, f"task '{task_id}' attempt {n + 1}", path)
                for n, steps in enumerate(attempts)
            ]
            if "reviews" in entry:
                reviews[task_id] = _check_reviews(entry["reviews"], task_id, path)
        else:
            script[task_id] = [_check_steps(entry, f"task '{task_id}'", path)]
    return script, reviews


class ScriptedAgent:
    name = "scripted"

    def __init__(self, script: Script, source: Path, reviews: Reviews | None = None):
        self.script = script
        self.source = source
        self.reviews = reviews or {}

    def check_tasks(self, task_ids: Iterable[str]) -> None:
        """Refuse a script that names tasks the plan does not have (a typo would silently no-op)."""
        known = set(task_ids)
        unknown = [t for t in self.script if t not in known]
        if unknown:
            raise ScriptError(
                f"{self.source}: the script names task(s) not in the plan: {', '.join(unknown)}"
            )

    def steps_for(self, task_id: str, attempt: int) -> list[Step]:
        attempts = self.script.get(task_id)
        if not attempts:
            return []
        return attempts[min(attempt, len(attempts)) - 1]

    def reviews_task(self, task_id: str) -> bool:
        """Whether the script gives verdicts for the task (else another reviewer, or none)."""
        return task_id in self.reviews

    def review(self, request: ReviewRequest, listener: AgentListener) -> ReviewReply:
        """The task's scripted verdict for this round (the engine checks it as any other)."""
        rounds = self.reviews.get(request.task_id)
        if not rounds:
            return ReviewReply(failure=f"the script has no verdict for task {request.task_id}")
        given = dict(rounds[min(request.sequence, len(rounds)) - 1])
        usage = Usage(calls=1, **given.pop("usage", {}))
        listener(AgentEvent(kind="model_call", detail="scripted review", usage=usage, model=self.name))
        return ReviewReply(verdict=given, usage=usage, turns=1)

    def run(self, request: AgentRequest, listener: AgentListener) -> AgentOutcome:
        hidden = request.sandbox.hidden if request.sandbox is not None else ()
        workspace = Workspace(request.workspace, hidden)
        usage = Usage()
        done: list[str] = []
        for step in self.steps_for(request.task_id, request.attempt):
            try:
                failure = self._step(step, workspace, request, listener, done)
            except (OutsideWorkspace, ToolError) as exc:
                failure = str(exc)
            if isinstance(failure, Usage):
                usage = usage + failure
                continue
            if failure is not None:
                return AgentOutcome(status=AgentStatus.FAILED, summary=failure, usage=usage, turns=len(done))
        summary = "; ".join(done) if done else "nothing to do"
        return AgentOutcome(status=AgentStatus.DONE, summary=summary, usage=usage, turns=len(done))

    def _step(
        self,
        step: Step,
        workspace: Workspace,
        request: AgentRequest,
        listener: AgentListener,
        done: list[str],
    ) -> str | Usage | None:
        if "write" in step or "append" in step:
            kind = "write" if "write" in step else "append"
            target = agent_path(workspace, step[kind])
            target.parent.mkdir(parents=True, exist_ok=True)
            write_regular(target, step[kind], step["content"], append=kind == "append")
            done.append(f"{'wrote' if kind == 'write' else 'appended to'} {step[kind]}")
            listener(AgentEvent(kind="tool_call", detail=f"{kind} {step[kind]}"))
        elif "run" in step:
            listener(AgentEvent(kind="tool_call", detail=f"run {step['run']}"))
            result = run_shell(
                step["run"],
                cwd=workspace.root,
                timeout=request.command_timeout,
                env=child_env(request.env),
                sandbox=request.sandbox,
            )
            if not result.ok:
                tail, _ = truncate_middle(result.output, 2000)
                return f"`{step['run']}` exited {result.exit_code}:\n{tail}"
            done.append(f"ran {step['run']}")
        elif "sleep" in step:
            listener(AgentEvent(kind="progress", detail=f"sleep {step['sleep']}"))
            time.sleep(float(step["sleep"]))
        elif "fail" in step:
            return str(step["fail"])
        elif "usage" in step:
            usage = Usage(calls=1, **step["usage"])
            listener(
                AgentEvent(kind="model_call", detail="scripted model call", usage=usage, model=self.name)
            )
            return usage
        return None


def create(settings: Settings) -> ScriptedAgent:
    if settings.script is None:
        raise ScriptError("the scripted agent needs a script: pass --script FILE (JSON: task id -> steps)")
    script, reviews = load_script_and_reviews(settings.script)
    return ScriptedAgent(script, settings.script, reviews)
