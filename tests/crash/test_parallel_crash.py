"""Kills in the middle of a parallel run (three tasks side by side in worktrees), then resume: the
run must end as an uninterrupted one does, with no worktree or task branch left behind."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from benchmarks.crash_bench import Outcome, crash_point_trial, random_kill_trial, reference
from orchestrator.engine.crash import CRASH_POINTS, PARALLEL_CRASH_POINTS

PARALLEL = 3
# Every point a parallel task passes; the quick run takes those that differ most from a serial
# run, the slow run all of them.
QUICK = ("after_worktree", "after_agent_record", "after_branch_commit", "after_merge", "after_tick")
EVERY = [*PARALLEL_CRASH_POINTS, *CRASH_POINTS]


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    return reference(tmp_path_factory.mktemp("reference"), PARALLEL)


@pytest.mark.parametrize("point", QUICK)
def test_crash_of_a_parallel_task_then_resume(point: str, tmp_path: Path, expected: Outcome) -> None:
    # T003 runs beside T002 (mid-retry) and T004 when the kill comes.
    assert crash_point_trial(tmp_path, point, "T003", expected, PARALLEL) == []


def test_crash_between_the_attempts_of_a_parallel_task(tmp_path: Path, expected: Outcome) -> None:
    assert crash_point_trial(tmp_path, "after_failed_attempt", "T002", expected, PARALLEL) == []


@pytest.mark.slow
@pytest.mark.parametrize("point", [p for p in EVERY if p not in QUICK and p != "after_failed_attempt"])
def test_crash_at_every_other_point_of_a_parallel_task(point: str, tmp_path: Path, expected: Outcome) -> None:
    assert crash_point_trial(tmp_path, point, "T004", expected, PARALLEL) == []


@pytest.mark.slow
def test_random_sigkills_of_a_parallel_run_then_resume(tmp_path: Path) -> None:
    started = time.monotonic()
    expected = reference(tmp_path / "reference", PARALLEL)
    span = time.monotonic() - started
    rng = random.Random(4321)
    failures = {
        n: found
        for n in range(8)
        if (found := random_kill_trial(tmp_path / f"t{n}", rng, span, expected, parallel=PARALLEL))
    }
    assert failures == {}
