"""Start the processes orchestrate runs for others so that every descendant can be found and killed.

A process group is not enough: a command can leave its group with setsid (Claude Code's Bash tool
starts every command that way), and a descendant whose parent died is no longer below anything
we know. So every child started here carries two marks in its environment, which its descendants
inherit whatever session or parent they end up with:

    ORCHESTRATE_TREE=<token>   one token per start: `kill_tree` finds that start's whole tree
    ORCHESTRATE_RUN=<run id>   the run it works for: `kill_leftovers` finds what a killed
                               orchestrate left running (`resume` calls it before anything else)

Both accumulate the enclosing orchestrate's marks (space-separated), so an orchestrate run by
another one's command stays inside the outer run's tree. Processes are found by reading
/proc/<pid>/environ (same user) and /proc/<pid>/stat (their parent): a process that wiped its
environment is still found while some marked ancestor of it lives. The CLI also makes orchestrate
a child subreaper, so that what escapes both is reparented to orchestrate, not to init, and is
killed when orchestrate ends (`kill_all_started`). Under bubblewrap, the sandbox's PID namespace
and --die-with-parent end everything inside when bwrap dies, whatever marks it carries.
Without /proc (not Linux), the process group is all there is.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

RUN_VARIABLE = "ORCHESTRATE_RUN"
TREE_VARIABLE = "ORCHESTRATE_TREE"

_PROC = "/proc"
_PR_SET_CHILD_SUBREAPER = 36
_KILL_ROUNDS = 200
"""Rounds of stopping or killing before giving up on a tree that keeps forking (a few ms each)."""

_lock = threading.Lock()

# A child between fork and setsid is still in our process group, so a terminal's Ctrl-C or hang-up
# (sent to the whole group) reaches it too. Forked, it still has our Python handlers there and the
# signal is only noted (exec then drops them); vfork'd, CPython resets every handler to the default
# and unblocks signals *before* its setsid, so the child dies of the stop meant for us, and a check
# or an agent step caught starting is taken for a failure (the crash harness saw the retry do the
# task's work twice). Forking costs a page-table copy per command: a millisecond or two.
subprocess._USE_VFORK = False  # type: ignore[misc]  # final in typeshed; CPython documents it as the switch
_run_id: str | None = None
"""The run whose processes are started now; set by `tag_children`."""
_subreaper = False
"""Whether this process adopts its descendants' orphans (then every child left at the end is one
of ours: `kill_all_started` takes them all)."""
_live: dict[str, subprocess.Popen[bytes]] = {}
"""Token -> leader of every tree started and not yet killed."""


@dataclass(frozen=True)
class Leftover:
    """A process killed because it outlived what started it."""

    pid: int
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command})"


@dataclass
class Tree:
    """A started child and the token its whole tree carries."""

    popen: subprocess.Popen[bytes]
    token: str

    @property
    def pid(self) -> int:
        return self.popen.pid


def become_subreaper() -> bool:
    """Orphans of our descendants are reparented to us, not to init (Linux only). For the CLI's
    process, which alone knows that every child it has is its own."""
    global _subreaper
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        _subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        _subreaper = False
    return _subreaper


def tag_children(run_id: str | None) -> None:
    """Mark every child started from now on as working for `run_id` (for `kill_leftovers`).
    Process-wide, as the subreaper is: one orchestrate process runs one run at a time."""
    global _run_id
    _run_id = run_id


def _marked(inherited: str | None, *tags: str) -> str:
    return " ".join([*(inherited or "").split(), *tags])


def spawn(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
) -> Tree:
    """Popen in a new session, its environment marked so that `kill_tree` finds all it starts."""
    token = secrets.token_hex(8)
    child_env = dict(os.environ if env is None else env)
    # Our own marks come first: an orchestrate started by another one's command stays its child.
    child_env[TREE_VARIABLE] = _marked(os.environ.get(TREE_VARIABLE), token)
    runs = _marked(os.environ.get(RUN_VARIABLE), *([_run_id] if _run_id else []))
    if runs:
        child_env[RUN_VARIABLE] = runs
    popen = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=child_env,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )
    with _lock:
        _live[token] = popen
    return Tree(popen, token)


@dataclass
class Supervised:
    """How a supervised program ended."""

    code: int
    timed_out: bool
    stderr_tail: str
    """The last characters of what it wrote on stderr, as text (not redacted)."""


def run_supervised(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdin_text: str,
    timeout: float,
    on_line: Callable[[bytes], None],
    tail_chars: int = 2000,
) -> Supervised:
    """Run an agent CLI to its end: `stdin_text` through its stdin (from a thread: a long prompt
    fills the pipe before the program reads it, and its output must be read meanwhile), each line
    of its stdout to `on_line`, its whole tree killed after `timeout` seconds and, after a clean
    exit too, whatever it left running (the commands it ran may start sessions of their own: only
    the tree, killed by its marks, takes those with it)."""
    with tempfile.TemporaryFile() as stderr:
        tree = spawn(argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        proc = tree.popen
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            kill_tree(tree)

        timer = threading.Timer(timeout, expire)
        timer.start()
        feeder = threading.Thread(target=_feed, args=(proc.stdin, stdin_text), daemon=True)
        feeder.start()
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                on_line(raw)
            code = proc.wait()
        finally:
            timer.cancel()
            kill_tree(tree)
            proc.wait()
            feeder.join(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()
        stderr.seek(0)
        tail = stderr.read().decode("utf-8", errors="replace")[-tail_chars:].strip()
    return Supervised(code, timed_out.is_set(), tail)


def _feed(stdin: IO[bytes] | None, text: str) -> None:
    if stdin is None:
        return
    try:
        stdin.write(text.encode("utf-8"))
    except (BrokenPipeError, OSError):
        pass  # it died first: its exit status says why
    finally:
        try:
            stdin.close()
        except OSError:
            pass


def kill_tree(tree: Tree, grace: float = 0.0) -> list[Leftover]:
    """Kill the child and everything it started, wherever it went (setsid, orphaned). With a
    grace, SIGTERM first and SIGKILL what is left after `grace` seconds. Safe to call twice and
    from another thread."""
    leader = tree.pid

    def roots(marks: dict[int, _Marks]) -> set[int]:
        return {p for p, m in marks.items() if tree.token in m.trees} | _unreaped([tree.popen])

    select = _Selector(roots)
    killed = _kill(select, grace, own={leader})
    with contextlib.suppress(ProcessLookupError, PermissionError):
        # Last, the group's members that wiped their marks and lost their parent. Not first: a
        # dead leader's children are orphans, no longer found by their parent link.
        os.killpg(leader, signal.SIGKILL)
    with _lock:
        _live.pop(tree.token, None)
    return killed


def kill_leftovers(run_id: str) -> list[Leftover]:
    """Kill every process that still carries `run_id`, and its descendants: what an earlier
    orchestrate of this run left running when it was killed."""
    return _kill(_working_for(run_id), 0.0, own=set())


def working_for(run_id: str) -> list[Leftover]:
    """The processes alive that carry `run_id`, and their descendants (nothing is killed)."""
    return [Leftover(p, _command(p)) for p in sorted(_working_for(run_id)())]


def _working_for(run_id: str) -> _Selector:
    return _Selector(lambda marks: {p for p, m in marks.items() if run_id in m.runs})


def kill_all_started() -> list[Leftover]:
    """At the end of a run: every tree still alive (a thread's command when the run was aborted)
    and, in a subreaper, every child left (orphans that wiped their marks, reparented to us)."""
    with _lock:
        tokens = set(_live)
        leaders = list(_live.values())
        _live.clear()

    def roots(marks: dict[int, _Marks]) -> set[int]:
        return {p for p, m in marks.items() if m.trees & tokens} | _unreaped(leaders)

    return _kill(_Selector(roots, adopted=_subreaper), 0.0, own={p.pid for p in leaders})


# -- finding and killing -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Marks:
    trees: frozenset[str]
    runs: frozenset[str]


def _unreaped(popens: list[subprocess.Popen[bytes]]) -> set[int]:
    """The pids of those not reaped yet: a reaped one's pid may already be someone else's."""
    return {p.pid for p in popens if p.returncode is None}


def _read(path: str) -> bytes:
    """The whole file, or nothing (gone, another user's, a kernel thread). os.read, not open():
    a scan reads a file of every process, and the file objects cost more than the reads."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b""
    try:
        parts = []
        while chunk := os.read(fd, 1 << 16):
            parts.append(chunk)
        return b"".join(parts)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _pids() -> list[str]:
    try:
        return [e.name for e in os.scandir(_PROC) if e.name.isdigit()]
    except OSError:  # no /proc: the process group is all there is
        return []


def _marks() -> dict[int, _Marks]:
    """Every process we can see that carries one of our marks in its environment."""
    marks: dict[int, _Marks] = {}
    tree_key = TREE_VARIABLE.encode() + b"="
    run_key = RUN_VARIABLE.encode() + b"="
    for pid in _pids():
        environ = _read(f"{_PROC}/{pid}/environ")
        if b"ORCHESTRATE_" not in environ:
            continue
        trees: frozenset[str] = frozenset()
        runs: frozenset[str] = frozenset()
        for item in environ.split(b"\0"):
            if item.startswith(tree_key):
                trees = frozenset(item[len(tree_key) :].decode(errors="replace").split())
            elif item.startswith(run_key):
                runs = frozenset(item[len(run_key) :].decode(errors="replace").split())
        if trees or runs:
            marks[int(pid)] = _Marks(trees, runs)
    return marks


def _family() -> dict[int, tuple[int, bool]]:
    """pid -> (parent pid, whether a zombie) of every process. /proc/<pid>/stat costs more than
    the environment to read, so it is read only when some process was found to start from."""
    family: dict[int, tuple[int, bool]] = {}
    for pid in _pids():
        stat = _read(f"{_PROC}/{pid}/stat")
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after it.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) >= 2:
            family[int(pid)] = (int(fields[1]), fields[0] == b"Z")
    return family


@dataclass(frozen=True)
class _Selector:
    """Picks processes to kill: the roots its function finds among the marked processes (and,
    when `adopted`, our own children), with all their descendants."""

    roots: Callable[[dict[int, _Marks]], set[int]]
    adopted: bool = False

    def __call__(self) -> set[int]:
        roots = self.roots(_marks())
        if not roots and not self.adopted:
            return set()  # the common end of a command: one cheap scan
        family = _family()
        me = os.getpid()
        if self.adopted:
            roots |= {p for p, (parent, _) in family.items() if parent == me}
        children: dict[int, list[int]] = {}
        for pid, (parent, _) in family.items():
            children.setdefault(parent, []).append(pid)
        found: set[int] = set()
        todo = [p for p in roots if p in family]
        while todo:
            pid = todo.pop()
            if pid not in found:
                found.add(pid)
                todo.extend(children.get(pid, ()))
        # Never ourselves or our ancestors; never a zombie (dead already: its parent reaps it).
        while me in family and me not in (0, 1):
            found.discard(me)
            me = family[me][0]
        return {p for p in found if not family[p][1]}


def _command(pid: int) -> str:
    words = _read(f"{_PROC}/{pid}/cmdline").rstrip(b"\0").split(b"\0")
    text = " ".join(w.decode(errors="replace") for w in words if w) or "?"
    return text if len(text) <= 120 else text[:117] + "..."


def _kill(select: _Selector, grace: float, own: set[int]) -> list[Leftover]:
    """Kill what `select` picks. `own` are children that a Popen reaps."""
    found = _stop(select, {})
    if not found:  # the common end of a command: one scan, nothing left
        return []
    if grace > 0:
        for pid in found:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
                os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + grace
        while any(_alive(p) for p in found) and time.monotonic() < deadline:
            time.sleep(0.02)
            _reap(set(found) - own)
    for _ in range(_KILL_ROUNDS):
        found = _stop(select, found)  # anything started meanwhile (in the grace)
        alive = {p for p in found if _alive(p)}
        if not alive:
            break
        for pid in alive:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.005)
        _reap(alive - own)
    return [found[p] for p in sorted(found)]


def _stop(select: _Selector, found: dict[int, Leftover]) -> dict[int, Leftover]:
    """SIGSTOP what `select` picks, again until it picks nothing new: a stopped process can neither
    fork nor die, so the parent links that find a process without marks hold while we look."""
    found = dict(found)
    for _ in range(_KILL_ROUNDS):
        new = select() - found.keys()
        if not new:
            break
        for pid in new:
            found[pid] = Leftover(pid, _command(pid))
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGSTOP)
    return found


def _alive(pid: int) -> bool:
    stat = _read(f"{_PROC}/{pid}/stat")
    return bool(stat) and stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"


def _reap(pids: set[int]) -> None:
    """Collect those of `pids` that became our children (orphans adopted by us as subreaper), so
    that no zombie stays behind. Never a Popen's own child: its Popen must see its status."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
