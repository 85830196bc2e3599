"""The wide DAG's makespan on two simulated Ray nodes against one machine, and what a task pays for
running on a node (bundling, fetching, merging, landing), printed apart.

    python benchmarks/ray_bench.py [--task-seconds 2] [--repeats 1]

The plan and script are makespan_bench's `wide` shape: 16 independent tasks, each sleeping S seconds
(standing in for the model), writing one file, judged by one check. One machine: `--parallel 2`,
each task in its own worktree. Ray: `--executor ray` on a ray.cluster_utils.Cluster, a head with
no CPU and two worker nodes of one CPU each (their own raylets and temporary directories on this
machine, sharing its cores: "simulated"), so two attempts run at once either way. The lower bound
of both is 16 x S / 2. Per task on Ray: the head bundle (written and put in the object store, once
per head: every landing moves the head), the node's clone of it, the node's commit and bundle of
the work, fetching it here, merging it into the run's work tree, and landing (task_committing to
task_done: re-verification on the moved head, tick, commit), each the median over the run's tasks.
Needs `pip install 'orchestrate[ray]'`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.makespan_bench import _IDENTITY, bench_repo, dag_of
from orchestrator.domain.events import ListReporter, RunFinished, RunStarted
from orchestrator.engine.session import start_run
from orchestrator.persistence.checkpoints import RunStore

NODES = 2


def _run(root: Path, seconds: float, overrides: dict[str, Any]) -> tuple[float, dict[str, list[float]]]:
    repo, script = bench_repo(root, "wide", dag_of("wide"), seconds)
    reporter = ListReporter()
    result = start_run(
        repo / "plan.md", {"agent": "scripted", "script": script, "review": "never", **overrides}, reporter
    )
    if result.exit_code != 0:
        raise SystemExit(f"the wide run with {overrides} failed: {result.message}")
    began = next(e.at for e in reporter.events if isinstance(e, RunStarted))
    ended = next(e.at for e in reporter.events if isinstance(e, RunFinished))
    costs: dict[str, list[float]] = {}
    timings = result.timings
    for name in ("head_bundle", "clone", "result_bundle", "fetch", "merge"):
        if timings is not None and hasattr(timings, name):
            costs[name] = list(getattr(timings, name))
    records = RunStore(repo / "checkpoints").records(result.run_id)
    committing = {r["task"]: float(r["at"]) for r in records if r["type"] == "task_committing"}
    costs["land"] = [float(r["at"]) - committing[r["task"]] for r in records if r["type"] == "task_done"]
    return ended - began, costs


def _cluster(root: Path) -> Any:
    from ray.cluster_utils import Cluster

    os.environ["RAY_LOGGER_LEVEL"] = "warning"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for n in range(NODES):
        node_dir = root / f"node-{n}"
        node_dir.mkdir()
        cluster.add_node(num_cpus=1, env_vars={"TMPDIR": str(node_dir)})
    cluster.wait_for_nodes()
    return cluster


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task-seconds", type=float, default=2.0, help="each task's sleep (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each, median shown (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no table (run_all prints its own)")
    args = parser.parse_args(argv)
    try:
        import ray  # noqa: F401
    except ImportError:
        raise SystemExit("Ray is not installed: pip install 'orchestrate[ray]'") from None
    os.environ.update(_IDENTITY)
    seconds = args.task_seconds
    tasks = len(dag_of("wide"))
    bound = tasks * seconds / NODES
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="orchestrate-ray-bench-") as tmp:
        root = Path(tmp)
        local = [_run(root / f"local-{n}", seconds, {"parallel": NODES})[0] for n in range(args.repeats)]
        cluster = _cluster(root)
        try:
            runs = [
                _run(root / f"ray-{n}", seconds, {"executor": "ray", "ray_address": cluster.address})
                for n in range(args.repeats)
            ]
        finally:
            cluster.shutdown()
    for where, spans in (("one machine, --parallel 2", local), (f"Ray, {NODES} nodes", [s for s, _ in runs])):
        span = statistics.median(spans)
        rows.append(
            {
                "where": where,
                "tasks": tasks,
                "makespan_s": round(span, 2),
                "bound_s": bound,
                "ratio": span / bound,
            }
        )
    costs = runs[-1][1]
    for name, values in costs.items():
        if values:
            rows.append(
                {"per_task": name, "median_ms": round(statistics.median(values) * 1000, 1), "n": len(values)}
            )
    if not args.quiet:
        print(f"wide DAG, {tasks} tasks x {seconds:g} s, 2 at once; lower bound {bound:.1f} s")
        for row in rows:
            if "where" in row:
                print(f"  {row['where']:<28} {row['makespan_s']:>7.2f} s  = {row['ratio']:.3f} x bound")
        print("per task on Ray (median):")
        for row in rows:
            if "per_task" in row:
                print(f"  {row['per_task']:<14} {row['median_ms']:>8} ms  (n={row['n']})")
    return rows


if __name__ == "__main__":
    main()
