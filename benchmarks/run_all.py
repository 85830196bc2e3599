"""Every benchmark, one table: parse times, orchestration overhead per task, what fail-first adds to
a task that adds a test, crash trials (serial and parallel), makespan against the lower bound on
four DAG shapes, the worktree chores, the tokens a reviewer adds to a task, and the wide DAG on two
simulated Ray nodes against one machine (with what bundling and landing cost a task).

    .venv/bin/python benchmarks/run_all.py [--quick] [--crash-trials N] [--task-seconds S] [--repeats R]

Each makespan figure is the median of R full runs (default 3), with their range: a 2-core virtual
machine has moments when a run stalls on the disk or the host. The default run takes about five
minutes on a 2-core machine; --quick about one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import (
    cache_ttl_bench,
    crash_bench,
    fail_first_bench,
    makespan_bench,
    overhead_bench,
    parse_bench,
    ray_bench,
    review_bench,
)

Row = tuple[str, str, str, str, str]
"""section, measure, value, target, verdict"""


def _quietly(call: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A benchmark's rows, without its own printout."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return call()


def _verdict(ok: object) -> str:
    return "" if ok is None else ("ok" if ok else "MISSED")


def parse_rows(repeat: int) -> list[Row]:
    rows: list[Row] = []
    for r in _quietly(lambda: parse_bench.main(repeat)):
        name = str(r["benchmark"]).removeprefix("parse ")
        value = f"{r['ms']} ms"
        if "us_per_line" in r:
            value += f" ({r['us_per_line']} us/line)"
        target = f"< {r['target_ms']} ms" if "target_ms" in r else ""
        rows.append(("parse", f"{name} ({r.get('tasks', '?')} tasks)", value, target, _verdict(r.get("ok"))))
    return rows


def overhead_rows(tasks: int) -> list[Row]:
    found = {
        str(r["measure"]): r["value"] for r in _quietly(lambda: overhead_bench.main(["--tasks", str(tasks)]))
    }
    per_task = float(found["overhead per task (ms)"])
    target = float(found["target (ms)"])
    return [
        (
            "overhead",
            f"per task, serial, {tasks} tasks (no-op agent, `true` check)",
            f"{per_task:.1f} ms",
            f"< {target:.0f} ms",
            _verdict(per_task < target),
        )
    ]


def fail_first_rows(tasks: int) -> list[Row]:
    found = {
        str(r["measure"]): r["value"]
        for r in _quietly(lambda: fail_first_bench.main(["--tasks", str(tasks)]))
    }
    own = float(found["of which fail-first's own work (ms)"])
    at_base = float(found["of which checks at base (ms)"])
    target = float(found["target (ms)"])
    return [
        (
            "fail-first",
            f"per task adding a test, {tasks} tasks, {found['files in the repository']} files: "
            f"scratch tree and diff (+ {at_base:.0f} ms of checks at base)",
            f"{own:.1f} ms",
            f"< {target:.0f} ms",
            _verdict(own < target),
        )
    ]


def crash_rows(trials: int, parallel: int) -> list[Row]:
    argv = ["--trials", str(trials), "--parallel", f"1,{parallel}", "--quiet"]
    got = _quietly(partial(crash_bench.main, argv))
    rows: list[Row] = []
    for n in (1, parallel):
        mine = [r for r in got if r["parallel"] == n]
        right = sum(1 for r in mine if r["ok"])
        mode = "serial" if n == 1 else f"--parallel {n}"
        rows.append(
            (
                "crash",
                f"SIGKILL/TERM/HUP/INT of run and resume, user edits, then resume, {mode}",
                f"{right} of {len(mine)} exactly right",
                f"{len(mine)} of {len(mine)}",
                _verdict(right == len(mine)),
            )
        )
    return rows


def cache_rows() -> list[Row]:
    found = {str(r["strategy"]): r for r in _quietly(lambda: cache_ttl_bench.main([]))}
    ours = found["1h prefix, keep-alive"]
    return [
        (
            "prompt cache",
            "a run of 8 tasks: 1h shared prefix + keep-alive, vs 5 minutes everywhere",
            f"{ours['vs_5m']} (${ours['run_usd']}); later tasks reading the prefix "
            f"{ours['later_tasks_reading_the_prefix']}",
            "cheaper, every later task",
            _verdict(
                float(ours["run_usd"]) < float(found["5m"]["run_usd"])
                and str(ours["later_tasks_reading_the_prefix"]).split("/")[0]
                == str(ours["later_tasks_reading_the_prefix"]).split("/")[1]
            ),
        )
    ]


def makespan_rows(levels: str, seconds: float, repeats: int) -> list[Row]:
    rows: list[Row] = []
    argv = ["--parallel", levels, "--task-seconds", str(seconds), "--repeats", str(repeats), "--quiet"]
    for r in _quietly(lambda: makespan_bench.main(argv)):
        if "shape" in r:
            target = f"<= {r['target']:.2f}" if r["target"] is not None else ""
            low, high = r["ratio_range"]
            spread = f" (runs {low:.3f}-{high:.3f})" if r["runs"] > 1 else ""
            rows.append(
                (
                    "makespan",
                    f"{r['shape']} ({r['tasks']} tasks x {seconds:g} s), N={r['N']}",
                    f"{r['makespan_s']:.2f} s / bound {r['bound_s']:.2f} s = {r['ratio']:.3f}{spread}",
                    target,
                    _verdict(r["ok"]),
                )
            )
        else:
            rows.append(
                (
                    "worktrees",
                    f"per task: {r['chore']}",
                    f"median {r['median_ms']} ms, mean {r['mean_ms']} ms",
                    "",
                    "",
                )
            )
    return rows


def ray_rows(seconds: float) -> list[Row]:
    try:
        import ray  # noqa: F401
    except ImportError:
        return [("ray", "wide DAG on two simulated nodes", "not run: Ray is not installed", "", "")]
    rows: list[Row] = []
    for r in _quietly(lambda: ray_bench.main(["--task-seconds", str(seconds), "--quiet"])):
        if "where" in r:
            rows.append(
                (
                    "ray",
                    f"wide ({r['tasks']} tasks x {seconds:g} s), 2 at once: {r['where']}",
                    f"{r['makespan_s']:.2f} s / bound {r['bound_s']:.2f} s = {r['ratio']:.3f}",
                    "",
                    "",
                )
            )
        else:
            rows.append(
                ("ray", f"per task on a node: {r['per_task']}", f"median {r['median_ms']} ms", "", "")
            )
    return rows


def review_rows(units: int) -> list[Row]:
    return [
        (
            "review",
            f"tokens the reviewer adds to a task: {r['reviewer']}, {units} units",
            f"{r['review_tokens_per_task']} / {r['worker_tokens_per_task']} = {r['token_share']:.1%} "
            f"(cost {r['cost_share']:.1%})",
            f"< {r['target']:.0%}",
            _verdict(r["ok"]),
        )
        for r in _quietly(lambda: review_bench.main(["--units", str(units), "--quiet"]))
    ]


def render(rows: list[Row]) -> str:
    header: Row = ("section", "measure", "value", "target", "")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(header)).rstrip()]
    lines.append("  ".join("-" * w for w in widths).rstrip())
    previous = ""
    for row in rows:
        if previous and row[0] != previous:
            lines.append("")
        previous = row[0]
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, trials and levels of N")
    parser.add_argument(
        "--crash-trials", type=int, default=None, help="trials per crash mode (default 10; quick 3)"
    )
    parser.add_argument("--crash-parallel", type=int, default=3, help="N of the parallel crash trials")
    parser.add_argument(
        "--task-seconds", type=float, default=None, help="each makespan task's sleep (default 0.5)"
    )
    parser.add_argument("--parallel", default=None, help="levels of N for the makespan (default 1,2,4,8)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="runs of each makespan shape and N, median shown (default 3; quick 1)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    trials = args.crash_trials if args.crash_trials is not None else (3 if quick else 10)
    seconds = args.task_seconds if args.task_seconds is not None else (0.3 if quick else 0.5)
    levels = args.parallel or ("1,4" if quick else "1,2,4,8")
    repeats = args.repeats if args.repeats is not None else (1 if quick else 3)
    started = time.monotonic()
    rows: list[Row] = []
    steps: list[tuple[str, Callable[[], list[Row]]]] = [
        ("parse", lambda: parse_rows(3 if quick else 15)),
        ("overhead", lambda: overhead_rows(50 if quick else 200)),
        ("fail-first", lambda: fail_first_rows(10 if quick else 30)),
        ("crash", lambda: crash_rows(trials, args.crash_parallel)),
        ("makespan", lambda: makespan_rows(levels, seconds, repeats)),
        ("prompt cache", cache_rows),
        ("review", lambda: review_rows(2 if quick else 3)),
        ("ray", lambda: ray_rows(1.0 if quick else 2.0)),
    ]
    for name, step in steps:
        print(f"running the {name} benchmark...", file=sys.stderr, flush=True)
        os.sync()  # the previous benchmark's writes are flushed now, not in the middle of this one
        rows.extend(step())
    print(render(rows))
    print(f"\n({time.monotonic() - started:.0f} s on {_cores()} core(s))")
    return rows


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
