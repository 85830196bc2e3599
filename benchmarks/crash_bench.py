"""Crash harness: kill `orchestrate run` (SIGKILL) at random instants or at named step boundaries,
then `orchestrate resume`, and check that the run ended exactly as an uninterrupted one does.

    python benchmarks/crash_bench.py [--trials 100] [--seed N] [--keep DIR]

prints "N of T trials ended exactly right". "Exactly right" means: every task ticked, exactly one
commit per task (with its trailers, in the same order as an uninterrupted run), the plan file and
every committed file byte-identical to the uninterrupted run's, a clean work tree, no temp files,
the run journaled as complete, and every edit an interruption cut short kept in a named ref.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.domain.state import RunState, RunStatus
from orchestrator.persistence.checkpoints import RunStore

PLAN = """\
# Crash plan

## Phase 1: Setup

- [ ] T001 Create `calc.py` with `add(a, b)`
  - Verify: `grep -q "return a + b" calc.py`
- [ ] T002 Add `mul(a, b)` to `calc.py`
  - Verify: `grep -q "return a \\* b" calc.py` and `test -f calc.py`

## Phase 2: Notes

- [ ] T003 Write `notes/a.txt`
  - Verify: `grep -q alpha notes/a.txt`
- [ ] T004 Write `notes/b.txt`
  - Verify: `test -f notes/b.txt`
"""

SCRIPT = {
    "T001": [
        {"write": "calc.py", "content": "def add(a, b):\n    return a + b\n"},
        {"sleep": 0.05},
        {"append": "log.txt", "content": "T001\n"},
    ],
    "T002": {
        "attempts": [
            [{"append": "calc.py", "content": "\n\ndef mul(a, b):\n    return a + b\n"}, {"sleep": 0.05}],
            [
                {
                    "write": "calc.py",
                    "content": "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n",
                },
                {"sleep": 0.05},
                {"append": "log.txt", "content": "T002\n"},
            ],
        ]
    },
    "T003": [
        {"write": "notes/a.txt", "content": "alpha\n"},
        {"sleep": 0.05},
        {"append": "log.txt", "content": "T003\n"},
    ],
    "T004": [
        {"append": "notes/b.txt", "content": "beta\n"},
        {"sleep": 0.05},
        {"append": "log.txt", "content": "T004\n"},
    ],
}

TASKS = ["T001", "T002", "T003", "T004"]
_CLI = "from orchestrator.cli.app import main; main()"


@dataclass
class Project:
    root: Path
    repo: Path
    plan: Path
    script: Path


@dataclass
class Outcome:
    plan_bytes: bytes
    files: dict[str, str]
    """Path -> blob id of every file at HEAD."""
    commit_tasks: list[str]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATE_", "ANTHROPIC_"))}
    env.setdefault("GIT_AUTHOR_NAME", "Crash Bench")
    env.setdefault("GIT_AUTHOR_EMAIL", "bench@example.invalid")
    env.setdefault("GIT_COMMITTER_NAME", "Crash Bench")
    env.setdefault("GIT_COMMITTER_EMAIL", "bench@example.invalid")
    return env


def make_project(root: Path) -> Project:
    repo = root / "repo"
    repo.mkdir(parents=True)
    (repo / "plan.md").write_text(PLAN)
    (repo / ".gitignore").write_text("__pycache__/\n")
    env = _env()
    for args in (["init", "-q", "-b", "work"], ["add", "-A"], ["commit", "-q", "-m", "initial"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env=env)
    script = root / "script.json"
    script.write_text(json.dumps(SCRIPT))
    return Project(root, repo, repo / "plan.md", script)


def run_args(project: Project) -> list[str]:
    return [
        sys.executable,
        "-c",
        _CLI,
        "run",
        str(project.plan),
        "--script",
        str(project.script),
        "--agent",
        "scripted",
    ]


def resume_args(project: Project) -> list[str]:
    return [sys.executable, "-c", _CLI, "resume", "--repo", str(project.repo)]


def orchestrate(
    args: list[str], cwd: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = _env()
    env.update(extra_env or {})
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def outcome(project: Project) -> Outcome:
    listing = _git(project.repo, "ls-tree", "-r", "HEAD")
    files = {}
    for line in listing.splitlines():
        meta, path = line.split("\t", 1)
        files[path] = meta.split()[2]
    raw = _git(project.repo, "log", "--reverse", "--format=%(trailers:key=Orchestrate-Task,valueonly)%x1e")
    tasks = [r.strip() for r in raw.split("\x1e") if r.strip()]
    return Outcome(project.plan.read_bytes(), files, tasks)


def reference(root: Path) -> Outcome:
    project = make_project(root)
    done = orchestrate(run_args(project), project.repo)
    if done.returncode != 0:
        raise RuntimeError(f"the uninterrupted run failed: {done.stderr}")
    return outcome(project)


def problems(project: Project, expected: Outcome) -> list[str]:
    """What differs from an uninterrupted run; empty when the trial ended exactly right."""
    found: list[str] = []
    got = outcome(project)
    if got.plan_bytes != expected.plan_bytes:
        found.append("the plan differs from the uninterrupted run's")
    if got.commit_tasks != expected.commit_tasks:
        found.append(f"commits per task {got.commit_tasks} != {expected.commit_tasks}")
    if got.files != expected.files:
        differing = sorted(set(got.files.items()) ^ set(expected.files.items()))
        found.append(f"committed files differ: {differing[:4]}")
    status = _git(project.repo, "status", "--porcelain", "--untracked-files=all")
    if status:
        found.append(f"work tree not clean: {status.splitlines()[:4]}")
    temps = [
        str(p.relative_to(project.repo))
        for p in project.repo.rglob("*")
        if ".git" not in p.relative_to(project.repo).parts
        and (p.name.endswith(".tmp") or p.name.startswith(".tmp-"))
    ]
    if temps:
        found.append(f"temp files left: {temps}")
    runs = RunStore(project.repo / "checkpoints")
    ids = runs.run_ids()
    if not ids:
        return [*found, "no run journal"]
    state = RunState.from_records(runs.records(ids[-1]))
    if state.status is not RunStatus.COMPLETE:
        found.append(f"run status {state.status.value}")
    for task in state.tasks.values():
        for ref in task.saved_refs:
            if subprocess.run(["git", "rev-parse", "--verify", "-q", ref], cwd=project.repo,
                              capture_output=True).returncode != 0:  # fmt: skip
                found.append(f"saved ref {ref} is missing")
    return found


def resume_until_done(project: Project, attempts: int = 3) -> list[str]:
    """What a user does after a kill: resume; if the run had not even recorded its start, run again."""
    for _ in range(attempts):
        done = orchestrate(resume_args(project), project.repo)
        if "no runs found" in done.stderr:
            done = orchestrate(run_args(project), project.repo)
        if done.returncode == 0:
            return []
        if "is complete; nothing to resume" in done.stderr:
            return []
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
    return [f"resume did not finish: exit {done.returncode}: {last}"]


def crash_point_trial(root: Path, point: str, task: str, expected: Outcome) -> list[str]:
    """Die at a named step boundary, resume, compare."""
    project = make_project(root)
    crashed = orchestrate(run_args(project), project.repo, {"ORCHESTRATE_CRASH_AT": f"{point}:{task}"})
    if crashed.returncode != 137:
        got = f"{crashed.returncode}: {crashed.stderr[-300:]}"
        return [f"expected the crash (exit 137) at {point}:{task}, got {got}"]
    return resume_until_done(project) or problems(project, expected)


def kill_after(args: list[str], cwd: Path, delay: float) -> int | None:
    """Start a command in its own process group and SIGKILL the group after `delay` seconds;
    the exit code when it finished first, else None."""
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        return proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


def where_it_stopped(project: Project) -> str:
    """The last journal record before the kill: which step the kill interrupted."""
    runs = RunStore(project.repo / "checkpoints")
    ids = runs.run_ids()
    if not ids:
        return "before the run started"
    records = runs.records(ids[-1])
    last = records[-1] if records else {}
    if last.get("type") == "run_finished":
        return "after the run finished"
    return f"after {last.get('type', '?')}"


def startup_time() -> float:
    """Seconds a process needs to import the CLI and the engine: kills before that hit nothing."""
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", "import orchestrator.cli.app, orchestrator.engine.session"],
        check=True,
        env=_env(),
    )
    return time.monotonic() - started


def random_kill_trial(
    root: Path,
    rng: random.Random,
    span: float,
    expected: Outcome,
    landed: dict[str, int] | None = None,
    earliest: float = 0.0,
) -> list[str]:
    """SIGKILL the run at a random instant between `earliest` and `span` seconds after its start
    (and, one time in three, the resume too), then resume."""
    project = make_project(root)
    kill_after(run_args(project), project.repo, rng.uniform(earliest, span))
    if landed is not None:
        where = where_it_stopped(project)
        landed[where] = landed.get(where, 0) + 1
    if rng.random() < 1 / 3:
        kill_after(resume_args(project), project.repo, rng.uniform(0.0, span))
    return resume_until_done(project) or problems(project, expected)


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="keep trial repositories under DIR")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    base = Path(tempfile.mkdtemp(prefix="orchestrate-crash-", dir=args.keep))
    try:
        started = time.monotonic()
        expected = reference(base / "reference")
        span = time.monotonic() - started
        earliest = 0.9 * startup_time()
        rows: list[dict[str, object]] = []
        landed: dict[str, int] = {}
        right = 0
        for n in range(args.trials):
            found = random_kill_trial(base / f"trial-{n}", rng, span, expected, landed, earliest)
            rows.append({"trial": n, "ok": not found, "problems": found})
            if found:
                print(f"trial {n}: {'; '.join(found)}", file=sys.stderr)
            else:
                right += 1
                if args.keep is None:
                    shutil.rmtree(base / f"trial-{n}", ignore_errors=True)
        print("where the kills landed (last journal record before the kill):")
        for where, count in sorted(landed.items(), key=lambda item: -item[1]):
            print(f"  {count:4d}  {where}")
        print(f"{right} of {args.trials} trials ended exactly right (seed {seed}, run span {span:.2f}s)")
        return rows
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
