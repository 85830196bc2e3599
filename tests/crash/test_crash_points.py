"""SIGKILL-equivalent crashes at every step boundary, and at random instants, then resume: the run
must end exactly as an uninterrupted one does."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from benchmarks.crash_bench import Outcome, crash_point_trial, random_kill_trial, reference
from orchestrator.engine.crash import CRASH_POINTS


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    return reference(tmp_path_factory.mktemp("reference"))


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_at_each_step_boundary_of_a_retried_task(point: str, tmp_path: Path, expected: Outcome) -> None:
    assert crash_point_trial(tmp_path, point, "T002", expected) == []


@pytest.mark.slow
@pytest.mark.parametrize("point", [p for p in CRASH_POINTS if p != "after_failed_attempt"])
def test_crash_at_each_step_boundary_of_a_first_try_task(
    point: str, tmp_path: Path, expected: Outcome
) -> None:
    assert crash_point_trial(tmp_path, point, "T003", expected) == []


@pytest.mark.slow
def test_random_sigkills_then_resume(tmp_path: Path) -> None:
    started = time.monotonic()
    expected = reference(tmp_path / "reference")
    span = time.monotonic() - started
    rng = random.Random(1234)
    failures = {
        n: found for n in range(12) if (found := random_kill_trial(tmp_path / f"t{n}", rng, span, expected))
    }
    assert failures == {}
