"""Makespan of parallel runs against the lower bound, for fixed-latency scripted tasks.

    python benchmarks/makespan_bench.py [--task-seconds 0.5] [--parallel 1,2,4,8] [--shapes ...] [--repeats 3]

Each task of the plan writes one small file and sleeps (standing in for the model), and its
verification checks that file; so every task is a real commit, merged back from its worktree and,
when the branch moved meanwhile, verified again. Four shapes of DAG:

    chain     8 tasks, each waiting for the one before
    wide      16 independent tasks (a fan-out from the start of the plan)
    diamond   one task, 4 that wait for it, one that waits for those 4
    layered   4 layers of 8 tasks, each waiting for 1 or 2 random tasks of the layer above (seeded)

For each shape and N the makespan (the run's first event to its last; with --repeats R, the median
of R runs, their range shown) is compared with the lower bound max(critical path, total work / N),
both counting the sleeps alone. The worktree chores are
timed separately: what a starting task waits for its worktree (claiming a spare made ahead of
time, or making one), making spares in the background, committing a task's work on its branch,
merging it onto the run's branch, removing worktrees (batched: the time of a batch shared by its
worktrees); and landing (merge, re-verification, tick and commit).
Target: a ratio of at most 1.10 at N = 4 on the wide and layered DAGs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.domain.events import ListReporter, RunFinished, RunStarted
from orchestrator.engine.session import start_run
from orchestrator.persistence.checkpoints import RunStore

TARGET_RATIO = 1.10
SHAPES = ("chain", "wide", "diamond", "layered")
_IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


def dag_of(shape: str, seed: int = 7) -> dict[str, list[str]]:
    """task id -> the ids it waits for, in plan order."""
    if shape == "chain":
        ids = [f"T{n:02d}" for n in range(1, 9)]
        return {t: ids[n - 1 : n] for n, t in enumerate(ids)}
    if shape == "wide":
        return {f"T{n:02d}": [] for n in range(1, 17)}
    if shape == "diamond":
        middle = [f"T{n:02d}" for n in range(2, 6)]
        return {"T01": [], **{t: ["T01"] for t in middle}, "T06": middle}
    if shape == "layered":
        rng = random.Random(seed)
        graph: dict[str, list[str]] = {}
        above: list[str] = []
        for layer in range(4):
            current = [f"T{layer + 1}{n + 1:02d}" for n in range(8)]
            for task in current:
                graph[task] = sorted(rng.sample(above, rng.choice((1, 2)))) if above else []
            above = current
        return graph
    raise ValueError(f"unknown shape {shape}")


def critical_path(graph: dict[str, list[str]]) -> int:
    """Tasks on the longest chain."""
    depth: dict[str, int] = {}
    for task, deps in graph.items():  # plan order is a topological order
        depth[task] = 1 + max((depth[d] for d in deps), default=0)
    return max(depth.values())


def plan_text(shape: str, graph: dict[str, list[str]]) -> str:
    lines = [f"# Makespan benchmark: {shape}", ""]
    for task, deps in graph.items():
        # [P] with explicit dependencies: the plan's DAG is exactly `graph`.
        after = f" (depends on {', '.join(deps)})" if deps else ""
        lines += [f"- [ ] {task} [P] Write `out/{task}.txt`{after}", f"  - Verify: `test -f out/{task}.txt`"]
    return "\n".join(lines) + "\n"


def script_for(graph: dict[str, list[str]], seconds: float) -> dict[str, Any]:
    return {
        task: [{"write": f"out/{task}.txt", "content": f"{task}\n"}, {"sleep": seconds}] for task in graph
    }


@dataclass
class Measured:
    makespan: float
    chores: dict[str, list[float]]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env={**os.environ, **_IDENTITY})


def bench_repo(root: Path, shape: str, graph: dict[str, list[str]], seconds: float) -> tuple[Path, Path]:
    """The shape's plan committed in a new repository under `root`, and the scripted agent's script."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    (repo / "plan.md").write_text(plan_text(shape, graph))
    (repo / ".gitignore").write_text("checkpoints/\n")
    _git(repo, "init", "-q", "-b", "work")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "initial")
    script = root / "script.json"
    script.write_text(json.dumps(script_for(graph, seconds)))
    return repo, script


def run_once(root: Path, shape: str, graph: dict[str, list[str]], seconds: float, parallel: int) -> Measured:
    repo, script = bench_repo(root, shape, graph, seconds)
    reporter = ListReporter()
    result = start_run(
        repo / "plan.md",
        {"agent": "scripted", "script": script, "parallel": parallel},
        reporter,
    )
    if result.exit_code != 0:
        raise SystemExit(f"the {shape} run at N={parallel} failed: {result.message}")
    began = next(e.at for e in reporter.events if isinstance(e, RunStarted))
    ended = next(e.at for e in reporter.events if isinstance(e, RunFinished))
    chores: dict[str, list[float]] = {}
    if (t := result.timings) is not None:
        chores = {"add": t.add, "spare": t.spare, "commit": t.commit, "merge": t.merge, "remove": t.remove}
    records = RunStore(repo / "checkpoints").records(result.run_id)
    committing = {r["task"]: float(r["at"]) for r in records if r["type"] == "task_committing"}
    chores["land"] = [float(r["at"]) - committing[r["task"]] for r in records if r["type"] == "task_done"]
    return Measured(ended - began, chores)


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task-seconds", type=float, default=0.5)
    parser.add_argument("--parallel", default="1,2,4,8", help="comma-separated values of N")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs of each shape and N; the median is reported (with the range)",
    )
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    for key, value in _IDENTITY.items():
        os.environ.setdefault(key, value)
    levels = [int(n) for n in args.parallel.split(",")]
    seconds = args.task_seconds
    base = Path(tempfile.mkdtemp(prefix="orchestrate-makespan-", dir=args.keep))
    rows: list[dict[str, object]] = []
    chores: dict[str, list[float]] = {}
    try:
        for shape in args.shapes.split(","):
            graph = dag_of(shape)
            path = critical_path(graph) * seconds
            work = len(graph) * seconds
            for n in levels:
                spans: list[float] = []
                for repeat in range(max(args.repeats, 1)):
                    where = base / f"{shape}-{n}-{repeat + 1}"
                    os.sync()  # the previous run's writes are flushed now, not during this one's fsyncs
                    measured = run_once(where, shape, graph, seconds, n)
                    spans.append(measured.makespan)
                    if n > 1:
                        for name, values in measured.chores.items():
                            chores.setdefault(name, []).extend(values)
                    if args.keep is None:
                        shutil.rmtree(where, ignore_errors=True)
                makespan = statistics.median(spans)
                bound = max(path, work / n)
                ratio = makespan / bound
                target = TARGET_RATIO if n == 4 and shape in ("wide", "layered") else None
                rows.append(
                    {
                        "shape": shape,
                        "tasks": len(graph),
                        "N": n,
                        "runs": len(spans),
                        "makespan_s": round(makespan, 3),
                        "bound_s": round(bound, 3),
                        "ratio": round(ratio, 3),
                        "ratio_range": [round(min(spans) / bound, 3), round(max(spans) / bound, 3)],
                        "target": target,
                        "ok": None if target is None else ratio <= target,
                    }
                )
                if not args.quiet:
                    flag = "" if target is None else f"  (target <= {target:.2f})"
                    spread = (
                        f" (runs {min(spans) / bound:.3f}-{max(spans) / bound:.3f}, median of {len(spans)})"
                        if len(spans) > 1
                        else ""
                    )
                    print(
                        f"{shape:<8} {len(graph):>3} tasks  N={n}  makespan {makespan:6.2f}s  "
                        f"bound {bound:5.2f}s  ratio {ratio:.3f}{spread}{flag}"
                    )
        labels = {
            "add": "worktree creation, as the task waits (a spare claimed, or a new one)",
            "spare": "spare worktree creation (in the background)",
            "commit": "commit on the task branch",
            "merge": "merge onto the run branch",
            "remove": "worktree removal",
            "land": "landing (merge, re-verify, tick, commit)",
        }
        for name, values in chores.items():
            if values:
                row: dict[str, object] = {
                    "chore": labels.get(name, name),
                    "median_ms": round(statistics.median(values) * 1000, 1),
                    "mean_ms": round(statistics.fmean(values) * 1000, 1),
                    "count": len(values),
                }
                rows.append(row)
                if not args.quiet:
                    print(f"per task, {row['chore']}: median {row['median_ms']} ms, mean {row['mean_ms']} ms")
        return rows
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
