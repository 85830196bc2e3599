"""Crash harness: interrupt `orchestrate run` (SIGKILL, SIGTERM, SIGHUP, one or two SIGINTs) at
random instants, sometimes interrupt the `orchestrate resume`s that follow too, sometimes edit the
tree as a user would in between, then resume to the end and check that the run ended exactly as an
uninterrupted one does and that nothing was left behind or lost.

    python benchmarks/crash_bench.py [--trials 100] [--parallel 1,3] [--seed S] [--keep DIR]

runs T trials serial and T with `--parallel 3` (the default; `--parallel 3` alone runs only the
second) and prints one table: for each mode, the trials, how many ended exactly right, the same by
kind of interruption, and the wall time; then every failing trial's seed and reasons. Trial n uses
seed S+n for all its choices (which signals, when, whether the user edits): `--seed S+n --trials 1`
makes the same choices again (the instants land on a different step when the machine's speed
differs).

"Exactly right" means:
- every task ticked, exactly one commit per task (with its trailers; in a serial run in the same
  order as an uninterrupted run, in a parallel one after the tasks each depends on), the plan file
  and every committed file byte-identical to the uninterrupted run's, the run journaled complete;
- the user's edit (an untracked `user-notes.txt` and a change to the tracked `docs/guide.txt`, which
  no task touches), when one was made, is still in the work tree byte for byte, or kept in a ref
  that an output of orchestrate names; nothing else is uncommitted, no temp files;
- nothing left behind: no process running whose working directory, command line or environment is
  inside the trial's directory (the scripted agent starts `sleep` in a session of its own in two
  tasks, as Claude Code's Bash tool does), no worktree, no branch but the work branch, no ref that
  no output names, every ref the journal says it saved present.

Signals go where a user's would: SIGKILL, SIGHUP and SIGINT to orchestrate's process group (a
terminal's Ctrl-C and hang-up reach its foreground group), SIGTERM to orchestrate alone (`kill PID`).
A process still running 20 s after a graceful signal counts as hung (a failure) and is killed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `orchestrator` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.domain.state import RunState, RunStatus
from orchestrator.errors import OrchestrateError
from orchestrator.persistence.journal import JOURNAL_NAME, read_records

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

SCRIPT: dict[str, Any] = {
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

PARALLEL_SCRIPT: dict[str, Any] = {
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

# A command that leaves a process behind in a session of its own (as Claude Code's Bash tool starts
# commands), beyond the reach of a process-group kill; the step itself lasts a moment longer, so
# that kills land while it runs. The sleep outlasts any trial: if it is still there at the end,
# nothing killed it.
BACKGROUND_STEP = {"run": "setsid sh -c 'sleep 300' </dev/null >/dev/null 2>&1 & sleep 0.1"}
BACKGROUND_TASKS = ("T001", "T003")
"""Where the step goes: the first task (in place) and one of the side-by-side ones (a worktree)."""

GUIDE = "docs/guide.txt"
GUIDE_TEXT = "How to use calc: import it.\n"
USER_NOTES = "user-notes.txt"

KINDS = ("SIGKILL", "SIGTERM", "SIGHUP", "SIGINT", "SIGINT x2")
GRACEFUL = ("SIGTERM", "SIGHUP", "SIGINT", "SIGINT x2")
GRACE_SECONDS = 20.0
"""How long a process may take to stop after a graceful signal before it counts as hung."""

_CLI = "from orchestrator.cli.app import main; main()"


@dataclass
class Project:
    root: Path
    repo: Path
    plan: Path
    script: Path
    parallel: int = 1
    allow_dirty: bool = False
    """Set once orchestrate refused to go on because of the user's edit: a user then passes
    --allow-dirty, as its message says."""
    outputs: list[str] = field(default_factory=list)
    """Everything orchestrate printed in this trial: what it told the user."""
    state_root: Path | None = None
    """Where orchestrate keeps its runs' journals, once looked up."""
    looked_up: float = 0.0
    """When the journal was last looked for through orchestrate's history (it is slower)."""


@dataclass
class Outcome:
    plan_bytes: bytes
    files: dict[str, str]
    """Path -> blob id of every file at HEAD."""
    commit_tasks: list[str]
    left_running: list[str] = field(default_factory=list)
    """Processes an uninterrupted run left behind (they are killed when found)."""
    seconds: float = 0.0
    """How long the uninterrupted run took."""
    records: int = 0
    """How many journal records it wrote."""


@dataclass
class UserEdit:
    files: dict[str, bytes]
    """Path -> the bytes the user left there."""
    after: str
    """Which stop it followed."""


@dataclass
class Interruption:
    kind: str
    fraction: float
    """Where: this far through the journal records the process has still to write (the first slot
    is its start-up, before it writes any)."""
    jitter: float = 0.5
    """When: this fraction of the way from that record to the next (or through the start-up)."""
    second: float = 0.0
    """For "SIGINT x2": seconds between the two."""
    delay: float = 0.0
    """Seconds after the process started: when it came."""
    target: str = ""
    """"run" or "resume": what it interrupted."""
    landed: bool = False
    """The process was still running when the signal came."""
    exit_code: int | None = None
    hung: bool = False
    where: str = ""
    """The last journal record when it stopped."""
    last_line: str = ""
    """The last line it printed."""

    def describe(self) -> str:
        if not self.target:
            return f"{self.kind} at {self.delay:.2f}s (not reached)"
        if not self.landed:
            return f"{self.target} {self.kind} at {self.delay:.2f}s (it had exited {self.exit_code})"
        return f"{self.target} {self.kind} at {self.delay:.2f}s {self.where}, exit {self.exit_code}"


@dataclass
class TrialPlan:
    seed: int | None
    interruptions: list[Interruption]
    """The first stops the run; each of the others stops one resume after it."""
    edit_after: int | None = None
    """The user edits the tree after this interruption (None: no edit)."""


@dataclass
class Trial:
    plan: TrialPlan
    parallel: int
    problems: list[str]
    seconds: float
    edit: UserEdit | None = None

    @property
    def kinds(self) -> set[str]:
        """The kinds of the interruptions that landed, and "resume" when one stopped a resume."""
        landed = [i for i in self.plan.interruptions if i.landed]
        found = {i.kind for i in landed}
        if any(i.target == "resume" for i in landed):
            found.add("resume")
        if self.edit is not None:
            found.add("edit")
        return found


def plan_trial(seed: int) -> TrialPlan:
    """A trial's choices, from its seed alone: the run's stop, none to two stopped resumes, and
    (four trials in ten) a user edit after one of the stops."""
    rng = random.Random(seed)
    resumes = rng.choices((0, 1, 2), weights=(5, 3, 2))[0]
    interruptions = [
        Interruption(rng.choice(KINDS), rng.random(), rng.random(), rng.uniform(0.02, 0.4))
        for _ in range(1 + resumes)
    ]
    edit_after = rng.randrange(len(interruptions)) if rng.random() < 0.4 else None
    return TrialPlan(seed, interruptions, edit_after)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATE_", "ANTHROPIC_"))}
    env.setdefault("GIT_AUTHOR_NAME", "Crash Bench")
    env.setdefault("GIT_AUTHOR_EMAIL", "bench@example.invalid")
    env.setdefault("GIT_COMMITTER_NAME", "Crash Bench")
    env.setdefault("GIT_COMMITTER_EMAIL", "bench@example.invalid")
    return env


def with_background(script: dict[str, Any]) -> dict[str, Any]:
    """The script with BACKGROUND_STEP in BACKGROUND_TASKS (in every attempt)."""
    out = dict(script)
    for task in BACKGROUND_TASKS:
        entry = out[task]
        if isinstance(entry, dict):
            out[task] = {"attempts": [[BACKGROUND_STEP, *steps] for steps in entry["attempts"]]}
        else:
            out[task] = [entry[0], BACKGROUND_STEP, *entry[1:]]
    return out


def make_project(root: Path, parallel: int = 1, background: bool = False) -> Project:
    """A repository with the plan and a tracked file no task touches; `background` puts the step
    that leaves a process behind into the script."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    (repo / "plan.md").write_text(PARALLEL_PLAN if parallel > 1 else PLAN)
    (repo / ".gitignore").write_text("__pycache__/\n")
    (repo / "docs").mkdir()
    (repo / GUIDE).write_text(GUIDE_TEXT)
    env = _env()
    for args in (["init", "-q", "-b", "work"], ["add", "-A"], ["commit", "-q", "-m", "initial"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env=env)
    script = root / "script.json"
    chosen = PARALLEL_SCRIPT if parallel > 1 else SCRIPT
    script.write_text(json.dumps(with_background(chosen) if background else chosen))
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
    extra = ["--allow-dirty"] if project.allow_dirty else []
    return [sys.executable, "-c", _CLI, "resume", "--repo", str(project.repo), *extra]


def orchestrate(
    args: list[str], cwd: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = _env()
    env.update(extra_env or {})
    try:
        return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as exc:
        said = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return subprocess.CompletedProcess(args, 124, "", f"{said}\nstill running after 120 s; killed")


def _heard(project: Project, done: subprocess.CompletedProcess[str]) -> None:
    """Keep what orchestrate said; a refusal because of the user's edit makes the user pass
    --allow-dirty from then on."""
    said = f"{done.stdout}\n{done.stderr}"
    log = project.root / f"output-{len(project.outputs)}.txt"
    if not log.exists():  # an interrupted command's output is there already
        log.write_text(f"$ {' '.join(done.args[3:])}\n{said}\nexit {done.returncode}\n")
    project.outputs.append(said)
    if done.returncode == 2 and "--allow-dirty" in said:
        project.allow_dirty = True


def outcome(project: Project) -> Outcome:
    listing = _git(project.repo, "ls-tree", "-r", "HEAD")
    files = {}
    for line in listing.splitlines():
        meta, path = line.split("\t", 1)
        files[path] = meta.split()[2]
    raw = _git(project.repo, "log", "--reverse", "--format=%(trailers:key=Orchestrate-Task,valueonly)%x1e")
    tasks = [r.strip() for r in raw.split("\x1e") if r.strip()]
    return Outcome(project.plan.read_bytes(), files, tasks)


def reference(root: Path, parallel: int = 1, background: bool = False) -> Outcome:
    project = make_project(root, parallel, background)
    started = time.monotonic()
    done = orchestrate(run_args(project), project.repo)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"the uninterrupted run failed: {done.stderr}")
    expected = outcome(project)
    expected.seconds = seconds
    latest = _latest_run(project.repo)
    expected.records = len(latest[1]) if latest else 0
    expected.left_running = left_running(root)
    return expected


# --- what a trial may leave behind ---------------------------------------------------------------


def _processes_in(inside: str) -> dict[int, str]:
    """pid -> description of each live process (not a zombie) whose working directory, command
    line or environment is inside the directory `inside`."""
    found: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cwd = str(Path(f"/proc/{pid}/cwd").readlink())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if cwd == inside or cwd.startswith(inside + "/") or inside in cmdline or inside.encode() in environ:
            where = cwd.removeprefix(inside + "/") if cwd.startswith(inside + "/") else cwd
            command = cmdline.strip()
            if len(command) > 90:  # a sandbox's long argv: its head and the command at its end
                command = f"{command[:30]} ... {command[-55:]}"
            found[pid] = f"pid {pid} `{command}` in {where}"
    return found


def left_running(root: Path, kill: bool = True) -> list[str]:
    """Processes still running inside `root` half a second after a first look (one that was only
    just exiting is not left behind); killed (SIGKILL) once listed unless `kill` is false, so that
    none outlives its trial."""
    inside = str(root.resolve())
    if not _processes_in(inside):
        return []
    time.sleep(0.5)
    found = _processes_in(inside)
    for pid in found if kill else ():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return list(found.values())


def _refs(repo: Path) -> list[str]:
    return _git(repo, "for-each-ref", "--format=%(refname)").split()


def _named(ref: str, said: str) -> bool:
    """The output names the ref, in full or by git's short name (refs/heads/x as x)."""
    short = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else ref.removeprefix("refs/")
    return any(re.search(rf"(?<![\w./-]){re.escape(name)}(?![\w/-])", said) for name in (ref, short))


def _blob(repo: Path, ref: str, path: str) -> bytes | None:
    """The bytes of `path` in the commit `ref` names, or in its third parent (where `git stash -u`
    keeps untracked files); None when neither has it."""
    for rev in (f"{ref}:{path}", f"{ref}^3:{path}"):
        got = subprocess.run(["git", "cat-file", "blob", rev], cwd=repo, capture_output=True)
        if got.returncode == 0:
            return got.stdout
    return None


def edit_problems(project: Project, edit: UserEdit, refs: list[str], said: str) -> tuple[list[str], set[str]]:
    """Each edited file must still be in the tree byte for byte or be kept in a ref some output
    names; the problems, and the paths still in the tree."""
    found: list[str] = []
    in_tree: set[str] = set()
    for path, content in edit.files.items():
        on_disk = project.repo / path
        if on_disk.is_file() and on_disk.read_bytes() == content:
            in_tree.add(path)
            continue
        holders = [r for r in refs if _blob(project.repo, r, path) == content]
        if any(_named(r, said) for r in holders):
            continue
        if holders:
            found.append(f"the user's edit of {path} is kept only in {holders[0]}, which no output names")
        elif on_disk.exists():
            found.append(f"the user's edit of {path} was undone or overwritten, and is kept in no ref")
        else:
            found.append(f"the user's edit of {path} is gone: not in the tree, not in any ref")
    return found, in_tree


def _latest_run(repo: Path) -> tuple[RunState, list[dict[str, Any]]] | None:
    """The latest run's state and journal records, found where orchestrate keeps them."""
    from orchestrator.engine.history import load_run

    try:
        state, directory = load_run(None, repo)
    except OrchestrateError:
        return None
    return state, read_records(directory / JOURNAL_NAME)


def problems(project: Project, expected: Outcome, edit: UserEdit | None = None) -> list[str]:
    """What differs from an uninterrupted run, or was left behind or lost; empty when the trial
    ended exactly right."""
    found: list[str] = []
    running = left_running(project.root)
    if running:
        found.append(f"left running: {'; '.join(running[:3])}")
    got = outcome(project)
    if got.plan_bytes != expected.plan_bytes:
        found.append("the plan differs from the uninterrupted run's")
    if project.parallel > 1:
        found.extend(_parallel_problems(got, expected))
    elif got.commit_tasks != expected.commit_tasks:
        found.append(f"commits per task {got.commit_tasks} != {expected.commit_tasks}")
    if got.files != expected.files:
        differing = sorted({p for p, _ in set(got.files.items()) ^ set(expected.files.items())})
        found.append(f"committed files differ from the uninterrupted run's: {differing[:4]}")
    said = "\n".join(project.outputs)
    refs = _refs(project.repo)
    kept_in_tree: set[str] = set()
    if edit is not None:
        lost, kept_in_tree = edit_problems(project, edit, refs, said)
        found.extend(lost)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=project.repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    others = [line for line in status if line[3:] not in kept_in_tree]
    if others:
        found.append(f"work tree not clean: {others[:4]}")
    temps = [
        str(p.relative_to(project.repo))
        for p in project.repo.rglob("*")
        if ".git" not in p.relative_to(project.repo).parts
        and (p.name.endswith(".tmp") or p.name.startswith(".tmp-"))
    ]
    if temps:
        found.append(f"temp files left: {temps}")
    found.extend(_leftover_git_problems(project, refs, said))
    latest = _latest_run(project.repo)
    if latest is None:
        return [*found, "no run journal"]
    state, _ = latest
    if state.status is not RunStatus.COMPLETE:
        found.append(f"run status {state.status.value}")
    for task in state.tasks.values():
        for ref in task.saved_refs:
            if ref not in refs:
                found.append(f"saved ref {ref} is missing")
    return found


def _leftover_git_problems(project: Project, refs: list[str], said: str) -> list[str]:
    """Worktrees, branches and refs: none but the work branch and the refs an output named."""
    found: list[str] = []
    worktrees = _git(project.repo, "worktree", "list", "--porcelain").count("worktree ")
    if worktrees != 1:
        found.append(f"{worktrees - 1} worktree(s) left registered")
    checkouts = []
    for directory, subdirs, files in os.walk(project.root):
        if "objects" in subdirs:  # git's object store: large, and never a checkout
            subdirs.remove("objects")
        if ".git" in files:  # a `.git` file: a worktree's checkout
            checkouts.append(str(Path(directory).relative_to(project.root)))
    if checkouts:
        found.append(f"worktree directories left behind: {checkouts[:3]}")
    task_branches = [r for r in refs if r.startswith("refs/heads/orchestrate/")]
    if task_branches:
        found.append(f"task branches left behind: {task_branches[:4]}")
    others = [r for r in refs if r not in task_branches and r != "refs/heads/work"]
    unnamed = [r for r in others if not _named(r, said)]
    if unnamed:
        found.append(f"refs (or branches) that no output names: {unnamed[:4]}")
    return found


def _parallel_problems(got: Outcome, expected: Outcome) -> list[str]:
    """Commit order may differ between parallel runs; the DAG's order may not."""
    found: list[str] = []
    if sorted(got.commit_tasks) != sorted(expected.commit_tasks):
        found.append(f"commits per task {got.commit_tasks} != {expected.commit_tasks} (in any order)")
    position = {task: n for n, task in enumerate(got.commit_tasks)}
    for task, deps in PARALLEL_DEPENDS.items():
        early = [d for d in deps if position.get(d, -1) > position.get(task, -1)]
        if early:
            found.append(f"{task} was committed before {', '.join(early)}, which it depends on")
    return found


# --- interrupting ----------------------------------------------------------------------------------


def _recorded(project: Project) -> bool:
    return _latest_run(project.repo) is not None


def resume_until_done(project: Project, attempts: int = 3) -> list[str]:
    """What a user does after a stop: resume; if the run had not even recorded its start, run again."""
    last = "?"
    code = 0
    for _ in range(attempts + 1):
        done = orchestrate(resume_args(project), project.repo)
        if "no runs found" in done.stderr:
            done = orchestrate(run_args(project), project.repo)
        _heard(project, done)
        if done.returncode == 0 or "is complete; nothing to resume" in done.stderr:
            return []
        code = done.returncode
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
    return [f"resume did not finish: exit {code}: {last}"]


def crash_point_trial(root: Path, point: str, task: str, expected: Outcome, parallel: int = 1) -> list[str]:
    """Die at a named step boundary, resume, compare."""
    project = make_project(root, parallel)
    crashed = orchestrate(run_args(project), project.repo, {"ORCHESTRATE_CRASH_AT": f"{point}:{task}"})
    _heard(project, crashed)
    if crashed.returncode != 137:
        got = f"{crashed.returncode}: {crashed.stderr[-300:]}"
        return [f"expected the crash (exit 137) at {point}:{task}, got {got}"]
    return resume_until_done(project) or problems(project, expected)


def _signal(pid: int, kind: str) -> None:
    try:
        if kind == "SIGTERM":
            os.kill(pid, signal.SIGTERM)
        else:
            os.killpg(pid, {"SIGKILL": signal.SIGKILL, "SIGHUP": signal.SIGHUP}.get(kind, signal.SIGINT))
    except ProcessLookupError:
        pass


@dataclass(frozen=True)
class Pace:
    """How fast an uninterrupted run goes on this machine now: stops are placed by journal records
    rather than by seconds, so that they spread over the whole run however loaded the machine is."""

    startup: float
    """Seconds before a process can have done anything (importing the CLI)."""
    records: int
    """Journal records an uninterrupted run writes."""
    per_record: float
    """Seconds between two records, on average."""

    @classmethod
    def of(cls, expected: Outcome, startup: float) -> Pace:
        records = max(expected.records, 1)
        return cls(startup, records, max(expected.seconds - startup, 0.1) / records)


def _journal_records(project: Project) -> int:
    """Complete records in the trial's newest journal (0 before any): a glob of the checkpoints
    directory, or (should orchestrate keep its runs elsewhere) the directory `load_run` names."""
    if project.state_root is None:
        from orchestrator.config import load_settings
        from orchestrator.persistence.checkpoints import RunStore

        checkpoints = load_settings(project.repo, {}).checkpoints_dir
        project.state_root = RunStore.for_repo(project.repo, checkpoints).root
    try:
        journals = list(project.state_root.glob(f"*/{JOURNAL_NAME}"))
    except OSError:  # the pre-flight makes and removes the folder as it checks it can write there
        journals = []
    if not journals and time.monotonic() - project.looked_up > 0.25:
        project.looked_up = time.monotonic()
        from orchestrator.engine.history import load_run

        try:
            journals = [load_run(None, project.repo)[1] / JOURNAL_NAME]
        except OrchestrateError:
            pass
    try:
        newest = max(journals, key=lambda p: p.stat().st_mtime_ns) if journals else None
        return newest.read_bytes().count(b"\n") if newest else 0
    except OSError:
        return 0


def interrupt(args: list[str], project: Project, stop: Interruption, pace: Pace) -> None:
    """Start a command in its own process group (as a shell starts a job) and stop it as `stop`
    says; what it printed is kept, and how it ended is written into `stop`."""
    before = _journal_records(project)
    # A resume writes a few records of its own (resumed, what it reconciled) besides the work left.
    left = pace.records if before == 0 else max(pace.records - before, 0) + 3
    slot = int(stop.fraction * (left + 1))
    log = project.root / f"output-{len(project.outputs)}.txt"
    with open(log, "wb") as out:
        out.write(f"$ {' '.join(args[3:])}  # to be stopped by {stop.kind}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            args,
            cwd=project.repo,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    started = time.monotonic()
    while proc.poll() is None and time.monotonic() - started < 120:
        if slot == 0 and time.monotonic() - started >= stop.jitter * pace.startup:
            break
        if slot > 0 and _journal_records(project) >= before + slot:
            time.sleep(stop.jitter * pace.per_record)
            break
        time.sleep(0.005)
    stop.delay = time.monotonic() - started
    if proc.poll() is not None:
        stop.exit_code = proc.returncode
    else:
        stop.landed = True
        _signal(proc.pid, stop.kind)
        if stop.kind == "SIGINT x2":
            try:
                proc.wait(timeout=stop.second)
            except subprocess.TimeoutExpired:
                _signal(proc.pid, "SIGINT")
        try:
            stop.exit_code = proc.wait(timeout=GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            stop.hung = True
            _signal(proc.pid, "SIGKILL")
            stop.exit_code = proc.wait()
    said = log.read_text(errors="replace").split("\n", 1)[1]
    stop.last_line = (said.strip().splitlines() or [""])[-1][:160]
    with open(log, "a") as out:
        landed = f"{stop.kind} came at {stop.delay:.2f}s" if stop.landed else f"no {stop.kind}: it had exited"
        out.write(f"exit {stop.exit_code} ({landed})\n")
    _heard(project, subprocess.CompletedProcess(args, stop.exit_code or 0, "", said))


def where_it_stopped(project: Project) -> str:
    """The last journal record: which step the stop interrupted."""
    latest = _latest_run(project.repo)
    if latest is None:
        return "before the run started"
    records = latest[1]
    last = records[-1] if records else {}
    if last.get("type") == "run_finished":
        return "after the run finished"
    return f"after {last.get('type', '?')}"


def user_edit(project: Project, seed: int | None, after: str) -> UserEdit:
    """A user's edit while orchestrate is stopped: notes of their own, a line in a tracked file."""
    files = {
        USER_NOTES: f"my notes, trial {seed}\n".encode(),
        GUIDE: f"{GUIDE_TEXT}A line of my own, trial {seed}.\n".encode(),
    }
    for path, content in files.items():
        (project.repo / path).write_bytes(content)
    return UserEdit(files, after)


def run_trial(
    root: Path,
    plan: TrialPlan,
    expected: Outcome,
    pace: Pace,
    parallel: int = 1,
    background: bool = True,
) -> Trial:
    """Run, stopped as the plan says; resume (stopped too) as the plan says, the user editing where
    it says; then resume to the end and compare."""
    started = time.monotonic()
    project = make_project(root, parallel, background)
    edit: UserEdit | None = None
    for n, stop in enumerate(plan.interruptions):
        # The first command runs; a later one resumes, or runs again if no run was recorded.
        first = n == 0 or not _recorded(project)
        stop.target = "run" if first else "resume"
        interrupt(run_args(project) if first else resume_args(project), project, stop, pace)
        stop.where = where_it_stopped(project)
        # A user edits only once a run is recorded: before that, they would just start it again.
        if plan.edit_after == n and stop.where != "before the run started":
            edit = user_edit(project, plan.seed, f"{stop.target} {stop.kind}")
    hung = [s for s in plan.interruptions if s.hung]
    found = [f"{s.target} did not stop within {GRACE_SECONDS:.0f}s of {s.kind}" for s in hung]
    found += resume_until_done(project)
    found += problems(project, expected, edit)
    return Trial(plan, parallel, found, time.monotonic() - started, edit)


def random_kill_trial(
    root: Path,
    rng: random.Random,
    span: float,
    expected: Outcome,
    landed: dict[str, int] | None = None,
    earliest: float = 0.0,
    parallel: int = 1,
) -> list[str]:
    """SIGKILL the run at a random instant after `earliest` seconds (and, one time in three, the
    resume too), then resume; no user edit, no background step. `span` is no longer used: stops are
    placed by the journal records of `expected`'s run."""
    del span
    stops = [Interruption("SIGKILL", rng.random(), rng.random())]
    if rng.random() < 1 / 3:
        stops.append(Interruption("SIGKILL", rng.random(), rng.random()))
    pace = Pace.of(expected, earliest or 0.9 * startup_time())
    trial = run_trial(root, TrialPlan(None, stops), expected, pace, parallel, background=False)
    if landed is not None:
        landed[stops[0].where] = landed.get(stops[0].where, 0) + 1
    return trial.problems


def startup_time() -> float:
    """Seconds a process needs to import the CLI and the engine: kills before that hit nothing."""
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", "import orchestrator.cli.app, orchestrator.engine.session"],
        check=True,
        env=_env(),
    )
    return time.monotonic() - started


# --- the table -------------------------------------------------------------------------------------

COLUMNS = (*KINDS, "resume", "edit")
HEADINGS = {"resume": "resume stopped", "edit": "user edit"}


@dataclass
class Mode:
    parallel: int
    trials: list[Trial]
    seconds: float
    reference: Outcome
    span: float

    @property
    def name(self) -> str:
        return "serial" if self.parallel == 1 else f"--parallel {self.parallel}"


def _cells(mode: Mode) -> list[str]:
    right = [t for t in mode.trials if not t.problems]
    cells = [mode.name, str(len(mode.trials)), str(len(right))]
    for column in COLUMNS:
        having = [t for t in mode.trials if column in t.kinds]
        cells.append(f"{sum(1 for t in having if not t.problems)}/{len(having)}")
    per_trial = mode.seconds / max(1, len(mode.trials))
    cells.append(f"{mode.seconds:.0f} s ({per_trial:.1f} s/trial)")
    return cells


def render(modes: list[Mode]) -> str:
    header = ["mode", "trials", "exactly right", *(HEADINGS.get(c, c) for c in COLUMNS), "wall time"]
    rows = [header, *(_cells(m) for m in modes)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows[1:])])


def notes(modes: list[Mode]) -> list[str]:
    """What the cells do not show: how the graceful signals ended (not part of "exactly right",
    which is about the end state), the stops that came too late, and what an uninterrupted run
    itself left running."""
    out = [
        "(a kind's cell: trials exactly right / trials in which such a stop came while orchestrate "
        "ran; a trial can have several)"
    ]
    for mode in modes:
        stops = [s for t in mode.trials for s in t.plan.interruptions]
        graceful = [s for s in stops if s.landed and s.kind in GRACEFUL]
        # 128+n is how a program says it ended on signal n (130 for a Ctrl-C), as a death by it does.
        died = {-1, -2, -15, 129, 130, 143}
        ended = {
            "stopped (exit 0, 1 or 3)": [s for s in graceful if not s.hung and s.exit_code in (0, 1, 3)],
            "ended by the signal (128+n or killed)": [
                s for s in graceful if not s.hung and s.exit_code in died
            ],
            "errored": [s for s in graceful if not s.hung and s.exit_code not in died | {0, 1, 3}],
            "hung": [s for s in graceful if s.hung],
        }
        how = ", ".join(f"{name} {len(which)}" for name, which in ended.items())
        missed = sum(1 for s in stops if not s.landed)
        dirty = sum(1 for t in mode.trials if t.edit is not None)
        out.append(
            f"{mode.name}: uninterrupted run {mode.span:.2f} s, {mode.reference.records} journal "
            f"records; {len(graceful)} graceful signals (SIGTERM, SIGHUP, SIGINT) came while "
            f"orchestrate ran: {how}; {missed} stop(s) came after the process had exited; "
            f"{dirty} trial(s) with a user edit"
        )
        errors = sorted(
            {f"exit {s.exit_code}: {s.last_line or '(nothing printed)'}" for s in ended["errored"]}
        )
        if errors:
            out.append(f"{mode.name}: errors after a graceful signal: {'; '.join(errors[:3])}")
        if mode.reference.left_running:
            out.append(
                f"{mode.name}: the uninterrupted run itself left running: "
                f"{'; '.join(mode.reference.left_running[:2])}"
            )
    return out


def listing(modes: list[Mode], every: bool = False) -> list[str]:
    """The failing trials (with `every`, all of them): seed, stops, reasons."""
    out: list[str] = []
    for mode in modes:
        for t in mode.trials:
            if not t.problems and not every:
                continue
            stops = ", ".join(s.describe() for s in t.plan.interruptions)
            edit = f"; user edit after the {t.edit.after}" if t.edit else ""
            verdict = "; ".join(t.problems) or "exactly right"
            out.append(f"{mode.name} seed {t.plan.seed} [{stops}{edit}]: {verdict}")
    return out


def run_mode(base: Path, parallel: int, seeds: range, earliest: float, keep: bool, quiet: bool) -> Mode:
    expected = reference(base / f"reference-{parallel}", parallel, background=True)
    mode = Mode(parallel, [], 0.0, expected, expected.seconds)
    started = time.monotonic()
    for seed in seeds:
        root = base / f"p{parallel}-seed-{seed}"
        trial = run_trial(root, plan_trial(seed), expected, Pace.of(expected, earliest), parallel)
        mode.trials.append(trial)
        if trial.problems and not quiet:
            print(f"{mode.name} seed {seed}: {'; '.join(trial.problems)}", file=sys.stderr, flush=True)
        if not (keep and trial.problems):
            shutil.rmtree(root, ignore_errors=True)
    mode.seconds = time.monotonic() - started
    return mode


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=100, help="trials in each mode")
    parser.add_argument(
        "--parallel", default="1,3", help="comma-separated modes: 1 serial, N tasks at once in worktrees"
    )
    parser.add_argument("--seed", type=int, default=None, help="trial n uses seed S+n (default: the time)")
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the failing trials' directories under DIR"
    )
    parser.add_argument("--quiet", action="store_true", help="no line per failing trial while running")
    parser.add_argument("--verbose", action="store_true", help="list every trial, not only the failing")
    args = parser.parse_args(argv)
    try:
        levels = list(dict.fromkeys(int(n) for n in args.parallel.split(",")))
    except ValueError:
        parser.error(f"--parallel: expected numbers separated by commas, got {args.parallel!r}")
    if any(n < 1 for n in levels) or args.trials < 0:
        parser.error("--parallel and --trials must be positive")
    seed = args.seed if args.seed is not None else int(time.time()) % 1_000_000
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="orchestrate-crash-", dir=args.keep))
    try:
        earliest = 0.9 * startup_time()
        seeds = range(seed, seed + args.trials)
        modes = [run_mode(base, n, seeds, earliest, args.keep is not None, args.quiet) for n in levels]
        print(render(modes))
        print()
        for line in notes(modes):
            print(line)
        if args.verbose:
            print("\nevery trial:")
            for line in listing(modes, every=True):
                print(f"  {line}")
        failed = listing(modes)
        if failed:
            again = "crash_bench.py --parallel N --trials 1 --seed S"
            print(f"\nfailing trials ({len(failed)}); one of them again: {again}")
            for line in failed:
                print(f"  {line}")
        kept = f"; failing trials kept in {base}" if args.keep is not None else ""
        print(f"\nseeds {seed}..{seed + args.trials - 1}{kept}")
        return [
            {
                "parallel": m.parallel,
                "seed": t.plan.seed,
                "ok": not t.problems,
                "problems": t.problems,
                "kinds": sorted(t.kinds),
                "seconds": round(t.seconds, 2),
            }
            for m in modes
            for t in m.trials
        ]
    finally:
        left_running(base)
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
