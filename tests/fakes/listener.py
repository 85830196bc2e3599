"""A listener for agent backends that keeps every event, for assertions."""

from __future__ import annotations

from orchestrator.agents.base import AgentEvent


class Recorder:
    def __init__(self) -> None:
        self.events: list[AgentEvent] = []

    def __call__(self, event: AgentEvent) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[AgentEvent]:
        return [e for e in self.events if e.kind == kind]

    def text(self) -> str:
        """Everything the events say, for checking that no secret leaked into them."""
        return "\n".join(f"{e.kind}: {e.detail} {e.usage}" for e in self.events)
