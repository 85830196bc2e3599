"""The rate gate of a run, and what agent CLIs say about waiting.

LocalRateGate is the RateGate (agents.base) every attempt and review of a run on one machine
shares: with `--parallel N`, N agents would otherwise each send at their own pace and each wait out
its own 429s while the others, knowing nothing, hit the same limit.

A gate is two halves: the bucket's owner (ClockedBucket: the TokenBucket, on the owner's clock,
behind a lock) and the waiting (BucketGate: take a turn, sleep what is left of it, ask again). In
one process they sit together; across machines the owner can be one process every node asks (a
Ray actor holding a ClockedBucket, say), and the waits are still reckoned on its one clock.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Protocol

from orchestrator.domain.rate import Reservation, TokenBucket


class SharedBucket(Protocol):
    """What a BucketGate asks of the bucket's owner; its clock is the owner's."""

    def take(self) -> Reservation: ...

    def remaining(self, turn: Reservation) -> float: ...

    def hold_off(self, seconds: float) -> None: ...


class ClockedBucket:
    """A TokenBucket on this process's monotonic clock, behind a lock (a SharedBucket)."""

    def __init__(self, per_minute: float | None):
        self._bucket = TokenBucket(per_minute)
        self._lock = threading.Lock()

    def take(self) -> Reservation:
        with self._lock:
            return self._bucket.take(time.monotonic())

    def remaining(self, turn: Reservation) -> float:
        with self._lock:
            return self._bucket.remaining(turn, time.monotonic())

    def hold_off(self, seconds: float) -> None:
        with self._lock:
            self._bucket.hold_off(time.monotonic(), seconds)


class BucketGate:
    """A RateGate over a SharedBucket: a turn is taken, then slept out."""

    def __init__(self, bucket: SharedBucket):
        self.bucket = bucket

    def wait_turn(self) -> None:
        turn = self.bucket.take()
        # Asked again on waking: a hold-off may have come while this thread slept.
        while (wait := self.bucket.remaining(turn)) > 0:
            time.sleep(wait)

    def hold_off(self, seconds: float) -> None:
        self.bucket.hold_off(seconds)


class LocalRateGate(BucketGate):
    """The gate for the threads of one process: its own ClockedBucket."""

    def __init__(self, per_minute: float | None):
        super().__init__(ClockedBucket(per_minute))


_TRY_AGAIN = re.compile(
    r"(?:try again|retry) (?:in|after)\s*(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s\b|secs?\b|seconds?)", re.I
)
"""How the APIs behind agent CLIs word a wait in a rate limit's message ("Please try again in
1.5s" from OpenAI, as codex itself reads it; "retry after 30 seconds")."""


def retry_after_said(text: str) -> float | None:
    """The seconds a rate limit's message asks to wait, if it says (the last such phrase)."""
    found = _TRY_AGAIN.findall(text)
    if not found:
        return None
    amount, unit = found[-1]
    return float(amount) / 1000 if unit.lower().startswith("m") else float(amount)
