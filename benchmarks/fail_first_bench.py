"""What fail-first costs in time: tasks that each add a module and its test, run with the test run
again at base (fail_first = "warn") and without (fail_first = "off").

    python benchmarks/fail_first_bench.py [--tasks 20] [--files 300] [--keep DIR]

Each task's check is `python3 test_fNN.py`; the repository holds `--files` other files, which every
scratch tree is written from. The extra time per task splits into the checks run at base (what the
project's tests cost, paid once more) and fail-first's own work: the diff read, the scratch tree
written from git objects and removed. That work is mostly writing the repository's files
(`git checkout-index`: 100-200 ms for 300 files on a loaded 2-core machine), so it grows with the
repository. Target: under 500 ms per task at 300 files, against the minutes a real agent's attempt
takes.
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
from typing import Any

from orchestrator.domain.events import ListReporter
from orchestrator.engine.session import start_run
from orchestrator.persistence.checkpoints import RunStore

TARGET_MS = 500.0
_IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


def _project(root: Path, tasks: int, files: int, mode: str) -> tuple[Path, Path]:
    repo = root / mode / "repo"
    (repo / "lib").mkdir(parents=True)
    lines = ["# Fail-first benchmark", "", "## Phase 1: Modules", ""]
    script: dict[str, Any] = {}
    for n in range(1, tasks + 1):
        lines += [
            f"- [ ] T{n:03d} Add `f{n:03d}.py` with its test",
            f"  - Verify: `python3 test_f{n:03d}.py`",
        ]
        script[f"T{n:03d}"] = [
            {"write": f"f{n:03d}.py", "content": f"def value():\n    return {n}\n"},
            {"write": f"test_f{n:03d}.py", "content": f"import f{n:03d}\n\nassert f{n:03d}.value() == {n}\n"},
        ]
    (repo / "plan.md").write_text("\n".join(lines) + "\n")
    (repo / "orchestrate.toml").write_text(f'sandbox = "none"\nfail_first = "{mode}"\n')
    (repo / ".gitignore").write_text("__pycache__/\n")
    for n in range(files):
        (repo / "lib" / f"part{n:04d}.py").write_text(f"PART = {n}\n" * 20)
    for args in (["init", "-q", "-b", "work"], ["add", "-A"], ["commit", "-q", "-m", "initial"]):
        subprocess.run(
            ["git", *args], cwd=repo, check=True, capture_output=True, env={**os.environ, **_IDENTITY}
        )
    script_path = root / mode / "script.json"
    script_path.write_text(json.dumps(script))
    return repo, script_path


def _run(root: Path, tasks: int, files: int, mode: str) -> tuple[float, float, list[str]]:
    """Wall time, seconds inside the checks run at base, and the fail-first results."""
    repo, script = _project(root, tasks, files, mode)
    started = time.perf_counter()
    result = start_run(repo / "plan.md", {"agent": "scripted", "script": script}, ListReporter())
    wall = time.perf_counter() - started
    if result.exit_code != 0:
        raise SystemExit(f"the benchmark run failed: {result.message}")
    store = RunStore.for_repo(repo, Path("checkpoints"))
    found = [r for r in store.records(result.run_id) if r["type"] == "fail_first"]
    at_base = sum(float(c["duration"]) for r in found for c in r["checks"])  # type: ignore[attr-defined]
    return wall, at_base, [str(r["result"]) for r in found]


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args(argv)
    for key, value in _IDENTITY.items():
        os.environ.setdefault(key, value)
    root = Path(tempfile.mkdtemp(prefix="orchestrate-fail-first-", dir=args.keep))
    try:
        off, _, _ = _run(root, args.tasks, args.files, "off")
        warn, at_base, results = _run(root, args.tasks, args.files, "warn")
        if results != ["ok"] * args.tasks:
            raise SystemExit(f"expected every task's test to fail at base, got {results}")
        extra_ms = (warn - off) / args.tasks * 1000
        at_base_ms = at_base / args.tasks * 1000
        own_ms = extra_ms - at_base_ms
        rows: list[dict[str, object]] = [
            {"measure": "tasks", "value": args.tasks},
            {"measure": "files in the repository", "value": args.files + 3},
            {"measure": "wall time, fail_first off (s)", "value": round(off, 3)},
            {"measure": "wall time, fail_first warn (s)", "value": round(warn, 3)},
            {"measure": "extra per task (ms)", "value": round(extra_ms, 1)},
            {"measure": "of which checks at base (ms)", "value": round(at_base_ms, 1)},
            {"measure": "of which fail-first's own work (ms)", "value": round(own_ms, 1)},
            {"measure": "target (ms)", "value": TARGET_MS},
        ]
        for row in rows:
            print(f"{row['measure']:<38} {row['value']}")
        verdict = "within" if own_ms < TARGET_MS else "OVER"
        print(f"fail-first's own work per task: {own_ms:.1f} ms ({verdict} the {TARGET_MS:.0f} ms target)")
        return rows
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
