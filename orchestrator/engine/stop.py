"""One stop token per run, passed down from whoever starts it to the loop, the attempts and the
landing: a first stop signal (Ctrl-C, SIGTERM, SIGHUP) asks the run to stop after its current step;
the run's own end (a budget reached, an error) halts the tasks still in flight the same way."""

from __future__ import annotations

import threading
from collections.abc import Callable


class StopToken:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listener: Callable[[], None] | None = None
        self.requested = False
        """A stop was asked for: no task starts, none starts another attempt; the run stops
        resumably once those in flight have finished their step."""
        self.halted = False
        """The run is ending (an error, a budget stop): tasks in flight stop after their step."""

    @property
    def stopping(self) -> bool:
        return self.requested or self.halted

    def arm(self, listener: Callable[[], None]) -> None:
        """The run is under way: a request from now on stops it after its step (and `listener`
        says so); before, there is no step to finish."""
        with self._lock:
            self._listener = listener

    def request(self) -> bool:
        """Ask the run to stop after its current step. False when no run is under way to stop
        that way (the caller aborts at once instead)."""
        with self._lock:
            listener = self._listener
            first = listener is not None and not self.requested
            if listener is not None:
                self.requested = True
        if first and listener is not None:
            listener()
        return listener is not None

    def halt(self) -> None:
        self.halted = True
