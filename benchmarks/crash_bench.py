"""Crash harness: kill `orchestrate run` (SIGKILL) at random instants or at named step boundaries,
then `orchestrate resume`, and check that the run ended exactly as an uninterrupted one does.

    python benchmarks/crash_bench.py [--trials 100] [--seed N] [--keep DIR] [--parallel N]

prints "N of T trials ended exactly right". "Exactly right" means: every task ticked, exactly one
commit per task (with its trailers, in the same order as an uninterrupted run), the plan file and
every committed file byte-identical to the uninterrupted run's, a clean work tree, no temp files,
the run journaled as complete, and every edit an interruption cut short kept in a named ref.

With --parallel N the plan has a phase of three tasks that run side by side, each in its own git
worktree; the order of their commits may then differ from run to run, so "exactly right" asks for
each commit to come after those of the tasks it depends on, and also for no worktree or task
branch left behind.
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

PARALLEL_PLAN = """\
# Parallel crash plan

## Phase 1: Setup

- [ ] T001 Create `calc.py` with `add(a, b)`
  - Verify: `grep -q "return a + b" calc.py`

## Phase 2: Parts

- [ ] T002 [P] Write `mul.py` with `mul(a, b)`
  - Verify: `grep -q "return a \\* b" mul.py`
- [ ] T003 [P] Write `notes/a.txt`
  - Verify: `grep -q alpha notes/a.txt`
- [ ] T004 [P] Write `notes/b.txt`
  - Verify: `test -f notes/b.txt`

## Phase 3: Wrap-up

- [ ] T005 Write `summary.txt`
  - Verify: `test -f summary.txt && test -f mul.py && test -f notes/a.txt`
"""

PARALLEL_SCRIPT = {
    "T001": [
        {"write": "calc.py", "content": "def add(a, b):\n    return a + b\n"},
        {"sleep": 0.05},
        {"write": "logs/T001.txt", "content": "T001\n"},
    ],
    "T002": {
        "attempts": [
            [{"write": "mul.py", "content": "def mul(a, b):\n    return a + b\n"}, {"sleep": 0.1}],
            [
                {"write": "mul.py", "content": "def mul(a, b):\n    return a * b\n"},
                {"sleep": 0.1},
                {"append": "logs/T002.txt", "content": "T002\n"},
            ],
        ]
    },
    "T003": [
        {"write": "notes/a.txt", "content": "alpha\n"},
        {"sleep": 0.15},
        {"append": "logs/T003.txt", "content": "T003\n"},
    ],
    "T004": [
        {"append": "notes/b.txt", "content": "beta\n"},
        {"sleep": 0.1},
        {"append": "logs/T004.txt", "content": "T004\n"},
    ],
    "T005": [{"write": "summary.txt", "content": "calc, mul, notes\n"}, {"sleep": 0.05}],
}

PARALLEL_DEPENDS = {"T002": ["T001"], "T003": ["T001"], "T004": ["T001"], "T005": ["T002", "T003", "T004"]}
_CLI = "from orchestrator.cli.app import main; main()"


@dataclass
class Project:
    root: Path
    repo: Path
    plan: Path
    script: Path
    parallel: int = 1


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


def make_project(root: Path, parallel: int = 1) -> Project:
    repo = root / "repo"
    repo.mkdir(parents=True)
    (repo / "plan.md").write_text(PARALLEL_PLAN if parallel > 1 else PLAN)
    (repo / ".gitignore").write_text("__pycache__/\n")
    env = _env()
    for args in (["init", "-q", "-b", "work"], ["add", "-A"], ["commit", "-q", "-m", "initial"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env=env)
    script = root / "script.json"
    script.write_text(json.dumps(PARALLEL_SCRIPT if parallel > 1 else SCRIPT))
    return Project(root, repo, repo / "plan.md", script, parallel)


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
        "--parallel",
        str(project.parallel),
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


def reference(root: Path, parallel: int = 1) -> Outcome:
    project = make_project(root, parallel)
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
    if project.parallel > 1:
        found.extend(_parallel_problems(project, got, expected))
    elif got.commit_tasks != expected.commit_tasks:
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


def _parallel_problems(project: Project, got: Outcome, expected: Outcome) -> list[str]:
    """Commit order may differ between parallel runs; the DAG's order may not. Nothing of the
    worktrees may stay behind."""
    found: list[str] = []
    if sorted(got.commit_tasks) != sorted(expected.commit_tasks):
        found.append(f"commits per task {got.commit_tasks} != {expected.commit_tasks} (in any order)")
    position = {task: n for n, task in enumerate(got.commit_tasks)}
    for task, deps in PARALLEL_DEPENDS.items():
        early = [d for d in deps if position.get(d, -1) > position.get(task, -1)]
        if early:
            found.append(f"{task} was committed before {', '.join(early)}, which it depends on")
    worktrees = _git(project.repo, "worktree", "list", "--porcelain").count("worktree ")
    if worktrees != 1:
        found.append(f"{worktrees - 1} worktree(s) left behind")
    branches = _git(project.repo, "for-each-ref", "--format=%(refname)", "refs/heads/orchestrate/")
    if branches:
        found.append(f"task branches left behind: {branches.split()}")
    leftovers = project.repo / "checkpoints" / ".worktrees"
    if leftovers.exists() and any(leftovers.rglob("*")):
        found.append(f"worktree directories left behind in {leftovers}")
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


def crash_point_trial(root: Path, point: str, task: str, expected: Outcome, parallel: int = 1) -> list[str]:
    """Die at a named step boundary, resume, compare."""
    project = make_project(root, parallel)
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
    parallel: int = 1,
) -> list[str]:
    """SIGKILL the run at a random instant between `earliest` and `span` seconds after its start
    (and, one time in three, the resume too), then resume."""
    project = make_project(root, parallel)
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
    parser.add_argument("--parallel", type=int, default=1, help="tasks at once (worktrees) in each run")
    parser.add_argument("--quiet", action="store_true", help="only the last line")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    base = Path(tempfile.mkdtemp(prefix="orchestrate-crash-", dir=args.keep))
    try:
        started = time.monotonic()
        expected = reference(base / "reference", args.parallel)
        span = time.monotonic() - started
        earliest = 0.9 * startup_time()
        rows: list[dict[str, object]] = []
        landed: dict[str, int] = {}
        right = 0
        for n in range(args.trials):
            found = random_kill_trial(
                base / f"trial-{n}", rng, span, expected, landed, earliest, args.parallel
            )
            rows.append({"trial": n, "ok": not found, "problems": found, "parallel": args.parallel})
            if found:
                print(f"trial {n}: {'; '.join(found)}", file=sys.stderr)
            else:
                right += 1
                if args.keep is None:
                    shutil.rmtree(base / f"trial-{n}", ignore_errors=True)
        if not args.quiet:
            print("where the kills landed (last journal record before the kill):")
            for where, count in sorted(landed.items(), key=lambda item: -item[1]):
                print(f"  {count:4d}  {where}")
        mode = f", --parallel {args.parallel}" if args.parallel > 1 else ""
        print(
            f"{right} of {args.trials} trials ended exactly right (seed {seed}, run span {span:.2f}s{mode})"
        )
        return rows
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
