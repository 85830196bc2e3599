"""Orchestration overhead per task: 200 tasks, a no-op agent, `true` as each task's verification.

    python benchmarks/overhead_bench.py [--tasks 200] [--keep DIR]

Overhead is the run's wall time minus the time spent inside verification commands, per task:
prompt rendering, journaling (fsync'd), snapshots of the work tree, the tick, the commit, the
re-read of the plan and the scheduling. Target: under 50 ms per task.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from orchestrator.domain.events import ListReporter, VerificationFinished
from orchestrator.engine.session import start_run

TARGET_MS = 50.0


def make_plan(tasks: int, phases: int = 4) -> str:
    lines = ["# Overhead benchmark", ""]
    per_phase = max(tasks // phases, 1)
    for n in range(tasks):
        if n % per_phase == 0 and n // per_phase < phases:
            lines += [f"## Phase {n // per_phase + 1}: Part {n // per_phase + 1}", ""]
        lines += [f"- [ ] T{n + 1:04d} Task number {n + 1}", "  - Verify: `true`"]
    return "\n".join(lines) + "\n"


def _setup(root: Path, tasks: int) -> tuple[Path, Path, Path]:
    repo = root / "repo"
    repo.mkdir(parents=True)
    (repo / "plan.md").write_text(make_plan(tasks))
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Bench",
        "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "Bench",
        "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    }
    for args in (["init", "-q", "-b", "work"], ["add", "-A"], ["commit", "-q", "-m", "initial"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env=env)
    script = root / "script.json"
    script.write_text(json.dumps({}))
    return repo, repo / "plan.md", script


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="orchestrate-overhead-", dir=args.keep))
    for key, value in {
        "GIT_AUTHOR_NAME": "Bench",
        "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "Bench",
        "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    }.items():
        os.environ.setdefault(key, value)
    try:
        repo, plan, script = _setup(root, args.tasks)
        reporter = ListReporter()
        started = time.perf_counter()
        result = start_run(plan, {"agent": "scripted", "script": script}, reporter)
        wall = time.perf_counter() - started
        if result.exit_code != 0:
            raise SystemExit(f"the benchmark run failed: {result.message}")
        verifying = sum(e.duration for e in reporter.events if isinstance(e, VerificationFinished))
        per_task_ms = (wall - verifying) / args.tasks * 1000
        rows: list[dict[str, object]] = [
            {"measure": "tasks", "value": args.tasks},
            {"measure": "wall time (s)", "value": round(wall, 3)},
            {"measure": "inside verification commands (s)", "value": round(verifying, 3)},
            {"measure": "overhead per task (ms)", "value": round(per_task_ms, 2)},
            {"measure": "target (ms)", "value": TARGET_MS},
        ]
        for row in rows:
            print(f"{row['measure']:<36} {row['value']}")
        verdict = "within" if per_task_ms < TARGET_MS else "OVER"
        print(f"overhead per task: {per_task_ms:.1f} ms ({verdict} the {TARGET_MS:.0f} ms target)")
        return rows
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
