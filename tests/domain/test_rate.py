"""The token bucket on a fake clock: spacing, bursts, fair order, hold-offs (examples, then properties
over simulated callers that sleep their wait and ask again, as LocalRateGate does)."""

from __future__ import annotations

import heapq
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.domain.rate import TokenBucket

EPSILON = 1e-6


def test_without_a_rate_every_request_goes_at_once() -> None:
    bucket = TokenBucket(None)
    assert [bucket.reserve(5.0) for _ in range(10)] == [0.0] * 10


def test_slots_follow_each_other_at_the_rate_in_the_order_asked() -> None:
    bucket = TokenBucket(120)  # one every 0.5 s
    assert [bucket.reserve(0.0) for _ in range(4)] == [0.0, 0.5, 1.0, 1.5]
    # A later caller queues behind all of them, whatever its clock says.
    assert bucket.reserve(1.0) == pytest.approx(1.0)


def test_a_quiet_spell_does_not_bank_more_than_the_burst() -> None:
    bucket = TokenBucket(60, burst=3)  # one a second, three at once
    assert [bucket.reserve(0.0) for _ in range(5)] == [0.0, 0.0, 0.0, 1.0, 2.0]
    assert [bucket.reserve(100.0) for _ in range(4)] == [0.0, 0.0, 0.0, 1.0]


def test_a_hold_off_keeps_every_request_back_until_it_ends() -> None:
    bucket = TokenBucket(None)
    bucket.hold_off(10.0, 2.0)
    assert bucket.reserve(10.5) == pytest.approx(1.5)
    assert bucket.reserve(11.0) == pytest.approx(1.0)
    assert bucket.reserve(12.0) == 0.0


def test_a_later_shorter_hold_off_does_not_shorten_it() -> None:
    bucket = TokenBucket(None)
    bucket.hold_off(0.0, 30.0)
    bucket.hold_off(1.0, 1.0)
    assert bucket.reserve(2.0) == pytest.approx(28.0)
    bucket.hold_off(3.0, 40.0)  # a longer one does lengthen it
    assert bucket.reserve(4.0) == pytest.approx(39.0)


def test_a_hold_off_pushes_back_those_already_waiting_in_their_order_and_spacing() -> None:
    bucket = TokenBucket(60)  # one a second
    first, second, third = (bucket.take(0.0) for _ in range(3))  # at 0, 1, 2
    bucket.hold_off(0.5, 3.0)  # until 3.5: the first went at 0; the second and third wait
    assert bucket.remaining(first, 0.5) == pytest.approx(3.0)  # had it not gone, it would wait too
    assert bucket.remaining(second, 1.0) == pytest.approx(2.5)  # its slot moves from 1 to 3.5
    assert bucket.remaining(third, 1.0) == pytest.approx(3.5)  # and 2 to 4.5, a second behind it
    assert bucket.reserve(1.0) == pytest.approx(4.5)  # a newcomer queues behind them
    bucket.hold_off(1.0, 3.0)  # until 4: the queue moves half a second more, no further
    assert bucket.remaining(second, 1.0) == pytest.approx(3.0)
    assert bucket.remaining(third, 1.0) == pytest.approx(4.0)


def test_a_waiter_asking_again_learns_of_a_hold_off_that_came_while_it_slept() -> None:
    bucket = TokenBucket(60)
    bucket.reserve(0.0)
    mine = bucket.take(0.0)
    assert bucket.remaining(mine, 0.0) == pytest.approx(1.0)
    bucket.hold_off(0.2, 5.0)
    assert bucket.remaining(mine, 1.0) == pytest.approx(4.2)
    assert bucket.remaining(mine, 5.2) == 0.0


@pytest.mark.parametrize(("per_minute", "burst"), [(0, 1), (-3, 1), (float("nan"), 1), (10, 0)])
def test_nonsense_is_refused(per_minute: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        TokenBucket(per_minute, burst)


# -- properties over simulated callers -------------------------------------------------------------

Asks = list[tuple[float, str, float]]
"""(time, "take" | "hold", seconds held): what happens, in order of time."""


def simulate(bucket: TokenBucket, asks: Asks) -> list[float]:
    """When each request taken goes, if each caller sleeps what `remaining` says and asks again on
    waking (as LocalRateGate does). A caller waking at the instant of a hold-off went just before it."""
    order = itertools.count()
    events: list[tuple[float, int, int, str, object]] = []
    for when, kind, seconds in asks:
        heapq.heappush(events, (when, 1, next(order), kind, seconds))
    sent: dict[int, float] = {}
    takers = itertools.count()
    while events:
        now, _, _, kind, payload = heapq.heappop(events)
        if kind == "hold":
            assert isinstance(payload, float)
            bucket.hold_off(now, payload)
            continue
        if kind == "take":
            payload = (next(takers), bucket.take(now))
        number, reservation = payload  # type: ignore[misc]
        wait = bucket.remaining(reservation, now)
        if wait <= EPSILON:
            sent[number] = now
        else:
            heapq.heappush(events, (now + wait, 0, next(order), "wake", payload))
    return [sent[n] for n in sorted(sent)]


times = st.floats(min_value=0, max_value=100, allow_nan=False)
asks = st.lists(
    st.tuples(times, st.sampled_from(["take", "take", "hold"]), st.floats(min_value=0, max_value=20)),
    max_size=40,
).map(lambda items: sorted(items, key=lambda a: a[0]))
rates = st.one_of(st.none(), st.floats(min_value=1, max_value=600))


@settings(max_examples=200, deadline=None)
@given(asks=asks, per_minute=rates, burst=st.integers(min_value=1, max_value=4))
def test_requests_go_in_the_order_asked_never_early_never_faster_than_the_rate(
    asks: Asks, per_minute: float | None, burst: int
) -> None:
    sent = simulate(TokenBucket(per_minute, burst), asks)
    taken = [when for when, kind, _ in asks if kind == "take"]
    assert len(sent) == len(taken)
    assert all(went >= asked - EPSILON for went, asked in zip(sent, taken, strict=True))
    assert all(a <= b + EPSILON for a, b in itertools.pairwise(sent)), "a later caller overtook"
    if per_minute is not None:
        interval = 60.0 / per_minute
        # Any n + 1 consecutive requests span n intervals, less the burst's allowance.
        for i, j in itertools.combinations(range(len(sent)), 2):
            assert sent[j] - sent[i] >= (j - i) * interval - (burst - 1) * interval - EPSILON


@settings(max_examples=200, deadline=None)
@given(asks=asks, per_minute=rates)
def test_no_request_goes_while_a_hold_off_is_in_force(asks: Asks, per_minute: float | None) -> None:
    sent = simulate(TokenBucket(per_minute), asks)
    for when, kind, seconds in asks:
        if kind == "hold":
            inside = [went for went in sent if when + EPSILON < went < when + seconds - EPSILON]
            assert not inside, f"sent at {inside} inside the hold-off {when}..{when + seconds}"


@settings(max_examples=200, deadline=None)
@given(asks=asks, per_minute=st.floats(min_value=1, max_value=600))
def test_nothing_waits_longer_than_the_queue_ahead_and_the_hold_offs_ask(
    asks: Asks, per_minute: float
) -> None:
    """Liveness: a hold-off pushes the queue back no further than its end."""
    sent = simulate(TokenBucket(per_minute), asks)
    interval = 60.0 / per_minute
    holds = [when + seconds for when, kind, seconds in asks if kind == "hold"]
    taken = [when for when, kind, _ in asks if kind == "take"]
    for n, (went, asked) in enumerate(zip(sent, taken, strict=True)):
        latest = max([asked, *holds])
        assert went <= latest + n * interval + EPSILON
