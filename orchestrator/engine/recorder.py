"""The run's one writer: each transition journaled before the action it announces, folded into the
run's state, and reported for what it means.

The loop, the attempts, the landing and resume all write through one Recorder, under its one lock:
with --parallel N the attempts run on worker threads, and what they record must reach the journal,
the state and the reporter in one order.
"""

from __future__ import annotations

import threading
from typing import Literal

from orchestrator.domain import transitions as t
from orchestrator.domain.events import Event, Notice, Reporter, derive
from orchestrator.domain.state import RunState
from orchestrator.persistence.journal import Journal

Level = Literal["info", "warning", "error"]


class Recorder:
    def __init__(self, journal: Journal, state: RunState, reporter: Reporter):
        self.journal = journal
        self.state = state
        self.reporter = reporter
        self.lock = threading.RLock()
        self.reporting = False
        """Set when the loop starts: what resume records before it is not reported as progress."""

    def record(self, transition: t.Transition, *, durable: bool = True) -> None:
        """Journal `transition` (fsync'd unless `durable=False`: a record no recovery depends on, or
        one the next synced record covers), fold it into the run's state and, once the run is
        under way, report what it means (see domain.events.derive)."""
        with self.lock:
            self.journal.append(transition, durable=False)
            self.state.apply(transition)
            event = derive(transition, self.state) if self.reporting else None
        if durable:
            self.journal.sync()  # outside the lock: parallel tasks do not queue behind it
        if event is not None:
            self.emit(event)

    def emit(self, event: Event) -> None:
        with self.lock:
            self.reporter.emit(event)

    def notice(self, message: str, level: Level = "info", task_id: str | None = None) -> None:
        self.emit(Notice(message=message, level=level, task_id=task_id))
