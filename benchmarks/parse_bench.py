"""Parse times: the 1,413-line realtime plan (warm, median of N) and synthetic 10k / 100k-line plans.

Run: .venv/bin/python benchmarks/parse_bench.py [--repeat N]
`main()` returns the rows so that a "run all benchmarks" command can print them in one table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from orchestrator.domain import dag
from orchestrator.domain.plan import Plan
from orchestrator.planfile import parse_bytes

REPO = Path(__file__).resolve().parents[1]
REALTIME = (
    REPO.parent / "shared" / "plans" / "MemberJunction__MJ__plans__audio-sage-realtime-implementation-plan.md"
)
TARGET_MS = 20.0


def synthetic_plan(lines: int) -> bytes:
    """A plan of about `lines` lines: phases of spec-kit tasks with sub-bullets, prose and code fences."""
    out: list[str] = ["# Synthetic plan", ""]
    task = 0
    phase = 0
    while len(out) < lines:
        phase += 1
        out += [f"## Phase {phase}: Part {phase}", "", f"**Purpose**: phase {phase} of the benchmark.", ""]
        out += ["```python", "def example():", "    return '- [ ] not a task'", "```", ""]
        for _ in range(20):
            task += 1
            marker = "[P] " if task % 4 else ""
            depends = f" (depends on T{task - 2:05d})" if task % 7 == 0 and task > 2 else ""
            box = "x" if task % 3 == 0 else " "
            out += [
                f"- [{box}] T{task:05d} {marker}Implement part {task} of the thing{depends}",
                f"  - Detail for task {task}: touch `src/module_{task}.py`",
                f"  - Verify: `pytest tests/test_{task}.py`",
            ]
        out += ["", "Some prose that closes the phase and mentions nothing in particular.", ""]
    return ("\n".join(out[:lines]) + "\n").encode()


def time_parse(data: bytes, path: Path, repeat: int, warm: bool = True) -> tuple[float, Plan]:
    """(median milliseconds of `repeat` parses, the plan)."""
    plan = parse_bytes(data, path) if warm else None  # imports, regexes, markdown-it rule chains
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        plan = parse_bytes(data, path)
        samples.append((time.perf_counter() - started) * 1000)
    assert plan is not None
    return statistics.median(samples), plan


def main(repeat: int = 15) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    if REALTIME.is_file():
        data = REALTIME.read_bytes()
        median, plan = time_parse(data, REALTIME, repeat)
        rows.append(
            {
                "benchmark": "parse realtime plan (warm, median)",
                "lines": data.count(b"\n"),
                "tasks": len(plan.tasks),
                "ms": round(median, 2),
                "target_ms": TARGET_MS,
                "ok": median < TARGET_MS,
            }
        )
    largest: Plan | None = None
    for lines, runs in ((10_000, 3), (100_000, 1)):
        data = synthetic_plan(lines)
        median, largest = time_parse(data, Path(f"synthetic-{lines}.md"), runs, warm=lines == 10_000)
        rows.append(
            {
                "benchmark": f"parse synthetic {lines:,}-line plan",
                "lines": lines,
                "tasks": len(largest.tasks),
                "ms": round(median, 1),
                "us_per_line": round(median * 1000 / lines, 1),
            }
        )
    assert largest is not None
    started = time.perf_counter()
    order = dag.execution_order(largest)
    ready = dag.ready(largest, set())
    rows.append(
        {
            "benchmark": "execution_order + ready, 100k-line plan",
            "lines": 100_000,
            "tasks": len(order),
            "ms": round((time.perf_counter() - started) * 1000, 1),
            "ready": len(ready),
        }
    )
    return rows


def _print(rows: list[dict[str, object]]) -> None:
    for row in rows:
        extras = "  ".join(f"{k}={v}" for k, v in row.items() if k not in ("benchmark", "ms"))
        print(f"{row['benchmark']:<44} {row['ms']:>9} ms  {extras}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    arguments = parser.parse_args()
    results = main(arguments.repeat)
    _print(results)
    realtime = next((r for r in results if "realtime" in str(r["benchmark"])), None)
    sys.exit(0 if realtime is None or realtime["ok"] else 1)
