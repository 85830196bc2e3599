"""The rate gate of a run on one machine, and what agent CLIs say about waiting.

LocalRateGate is the RateGate (agents.base) every attempt and review of a run shares: with
`--parallel N`, N agents would otherwise each send at their own pace and each wait out its own 429s
while the others, knowing nothing, hit the same limit.
"""

from __future__ import annotations

import re
import threading
import time

from orchestrator.domain.rate import TokenBucket


class LocalRateGate:
    """A RateGate for the threads of one process: a TokenBucket on the monotonic clock, behind a lock."""

    def __init__(self, per_minute: float | None):
        self._bucket = TokenBucket(per_minute)
        self._lock = threading.Lock()

    def wait_turn(self) -> None:
        with self._lock:
            turn = self._bucket.take(time.monotonic())
        while True:
            # Asked again on waking: a hold-off may have come while this thread slept.
            with self._lock:
                wait = self._bucket.remaining(turn, time.monotonic())
            if wait <= 0:
                return
            time.sleep(wait)

    def hold_off(self, seconds: float) -> None:
        with self._lock:
            self._bucket.hold_off(time.monotonic(), seconds)


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
