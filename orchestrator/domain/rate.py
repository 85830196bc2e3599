"""A token bucket for API requests, shared by every agent of a run: pure, the clock is passed in.

A request takes a slot and learns how long to wait before it goes. Slots follow each other
`60 / per_minute` seconds apart, `burst` of them may go at once after a quiet spell (the generic
cell rate algorithm: `_due` is when the schedule is next free), and they are handed out in the
order asked for, so a caller never overtakes one that asked before it.

The API can also say "wait" (a 429's retry-after): `hold_off` then keeps every request back until
that moment, those already waiting their turn included. Their order and spacing are kept: the
queue still waiting is pushed back as a whole, just far enough that its first one goes when the
hold-off ends. A caller that sleeps its wait asks `remaining` once it wakes, to learn of a
hold-off that came meanwhile (LocalRateGate does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Reservation:
    """One request's slot, as handed out (`TokenBucket.take`)."""

    at: float
    """When it may go, as scheduled when it was taken."""
    pushed: float
    """The bucket's `pushed` then: the hold-offs since are what moved it."""


class TokenBucket:
    def __init__(self, per_minute: float | None, burst: int = 1):
        if per_minute is not None and not per_minute > 0:
            raise ValueError(f"per_minute must be above 0 (or None for no rate), not {per_minute}")
        if burst < 1:
            raise ValueError(f"burst must be 1 or more, not {burst}")
        self.interval = 0.0 if per_minute is None else 60.0 / per_minute
        """Seconds between two slots; 0: no rate, only hold-offs."""
        self._tolerance = (burst - 1) * self.interval
        self._due: float | None = None
        """When the schedule is next free (None: never used)."""
        self._waiting: list[float] = []
        """Slots handed out that had not come yet, when last looked at (each is a request waiting)."""
        self.held_until = float("-inf")
        """No request goes before this (the latest hold-off's end)."""
        self.pushed = 0.0
        """Seconds hold-offs have pushed the waiting queue back, in total."""

    def take(self, now: float) -> Reservation:
        """A slot for one request, after every slot taken before it and no earlier than a hold-off allows."""
        self._forget(now)
        due = now if self._due is None else self._due
        at = max(now, self.held_until, due - self._tolerance)
        self._due = max(due, at) + self.interval
        if at > now:
            self._waiting.append(at)
        return Reservation(at, self.pushed)

    def remaining(self, reservation: Reservation, now: float) -> float:
        """Seconds its holder must still wait (0.0: it may go now), hold-offs since it was taken counted."""
        return max(0.0, reservation.at + (self.pushed - reservation.pushed) - now, self.held_until - now)

    def reserve(self, now: float) -> float:
        """Take a slot; the seconds to wait before the request goes (0.0: now)."""
        return self.remaining(self.take(now), now)

    def hold_off(self, now: float, seconds: float) -> None:
        """The API said to wait `seconds`: no request goes before now + seconds. A hold-off that ends
        sooner than one already in force changes nothing."""
        if not math.isfinite(seconds):
            return  # "forever" (or nonsense) is no wait anyone can keep
        until = now + max(0.0, seconds)
        if until <= self.held_until:
            return
        self.held_until = until
        self._forget(now)
        if not self._waiting:
            return
        # The queue moves back as a whole: its first slot to the hold-off's end, the others as spaced.
        shift = max(0.0, until - min(self._waiting))
        if shift:
            self._waiting = [at + shift for at in self._waiting]
            self.pushed += shift
            if self._due is not None:
                self._due += shift

    def _forget(self, now: float) -> None:
        """Drop the slots that have come: their requests are sent (or about to be)."""
        self._waiting = [at for at in self._waiting if at > now]
