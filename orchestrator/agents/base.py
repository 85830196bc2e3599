"""The Agent protocol every backend implements, and what goes in and comes out of it."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.domain.usage import Usage
from orchestrator.tools.sandbox import Sandbox


@runtime_checkable
class RateGate(Protocol):
    """The run's pace of API requests, shared by every agent and reviewer of the run (on one machine
    LocalRateGate, orchestrator.agents.rate): each request waits its turn, and a 429's retry-after
    holds every holder of the gate off, not only the one refused."""

    def wait_turn(self) -> None:
        """Block until this request may go (the rate, and any hold-off in force)."""

    def hold_off(self, seconds: float) -> None:
        """The API said to wait `seconds` (a 429's retry-after): no one's request goes before then."""


class AgentRequest(BaseModel):
    """One attempt at one task."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    task_id: str
    attempt: int = 1
    system_prompt: str
    prompt: str
    workspace: Path
    """The agent's file tools and shell are confined to this directory."""
    model: str | None = None
    max_turns: int = 50
    command_timeout: float = 300.0
    """Seconds any one shell command of the agent may run before it and all it started are killed."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment for the agent's commands beyond the allow-list (the user's `pass_env`)."""
    sandbox: Sandbox | None = None
    """The run's confinement, for every command the agent runs (and for an agent CLI itself); None
    only outside a run, in tests: unconfined."""
    max_cost: float | None = None
    """US dollars left of the run's --max-cost when the attempt starts (None: no limit), for a
    backend that can stop itself on a budget (claude-code's --max-budget-usd)."""
    rate_gate: RateGate | None = Field(default=None, exclude=True)
    """The run's rate gate: every API request the backend makes (or the CLI it starts) waits its
    turn there, and a rate limit it meets holds the others off. None: no gate, each on its own."""


class AgentStatus(StrEnum):
    DONE = "done"
    """The agent says the task is done; verification decides whether it is."""
    BLOCKED = "blocked"
    """The agent says it cannot do the task, and why."""
    FAILED = "failed"
    """The backend failed (crashed, max turns, refusal, max_tokens): the attempt counts as failed."""


class AgentOutcome(BaseModel):
    status: AgentStatus
    summary: str = ""
    """The agent's final report, or what went wrong."""
    usage: Usage = Field(default_factory=Usage)
    turns: int = 0


class AgentEvent(BaseModel):
    """Something an agent did, relayed to the engine while it runs."""

    kind: str
    """'model_call' (usage filled in), 'tool_call', 'message', 'progress'."""
    detail: str = ""
    usage: Usage | None = None
    model: str = ""
    """For model calls: the model that answered, where the backend knows it."""
    session_over: bool = False
    """The usage of a session that has already ended (an agent CLI reports it at its end): it is
    recorded, but never stops the agent, whose work is done (and is then verified and committed)."""


AgentListener = Callable[[AgentEvent], None]
"""Called by the backend after each model call and tool call. The engine's listener may raise
BudgetExceeded or Interrupted to stop the agent; backends let those propagate."""


class Agent(Protocol):
    name: str

    def run(self, request: AgentRequest, listener: AgentListener) -> AgentOutcome: ...


class ReviewRequest(BaseModel):
    """One review round of one attempt: the reviewer sees the criteria, the rules and the
    attempt's diff (in `prompt`), and a read-only copy of the attempt's tree (`workspace`); never
    the worker's own report."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    task_id: str
    attempt: int = 1
    round: int = 1
    """The round within the attempt (a verdict whose evidence did not hold is asked again)."""
    sequence: int = 1
    """The task's review rounds so far, this one included, over all its attempts."""
    system_prompt: str
    prompt: str
    workspace: Path
    """A copy of the attempt's tree; its commands run with it read-only (under bubblewrap)."""
    model: str
    max_turns: int = 30
    command_timeout: float = 300.0
    env: dict[str, str] = Field(default_factory=dict)
    sandbox: Sandbox | None = None
    rate_gate: RateGate | None = Field(default=None, exclude=True)
    """As AgentRequest's: the reviewer's requests count against the run's rate too."""


class ReviewReply(BaseModel):
    """What a reviewer answered: the `submit_verdict` input as given (orchestrate reads and
    checks it), or None with the reason it gave none."""

    verdict: object | None = None
    failure: str = ""
    usage: Usage = Field(default_factory=Usage)
    turns: int = 0


class Reviewer(Protocol):
    """Judges an attempt's work against its unit's criteria, through the `submit_verdict` tool
    (orchestrator.domain.review). Model calls are reported to the listener as an Agent's are."""

    name: str

    def review(self, request: ReviewRequest, listener: AgentListener) -> ReviewReply: ...


@runtime_checkable
class ReadyCheck(Protocol):
    """A backend that can tell, cheaply and before the first task, that it cannot work at all."""

    def check_ready(self, sandbox: Sandbox | None) -> None:
        """Raise AgentConfigError saying what to do (a missing login, a rejected key). What it
        runs, it runs in the run's `sandbox`, as its attempts would."""


class AgentUnavailable(Exception):  # noqa: N818 - reads as a state, like StopIteration
    """The model service cannot be used now (down, overloaded, rate limited past the wait limit).

    Not the task's fault: the engine stops the run resumably instead of failing the task."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class AgentConfigError(Exception):
    """The backend cannot start at all (no API key, CLI not installed, bad script)."""
