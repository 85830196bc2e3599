"""Keep orchestrate's own process out of its children's reach (Linux; elsewhere a no-op).

Without bubblewrap's PID namespace, a command orchestrate runs can open /proc/<orchestrate>/environ
(the environment orchestrate was started with, API key included, whatever os.environ says now) and
/proc/<orchestrate>/mem. `seal_process`, called once where the CLI starts:

1. takes the secret-looking variables out of os.environ into tools.environment (`hold_secrets`);
2. moves every variable still set off the original environment block, then zeroes that block: it
   is what /proc/<pid>/environ shows, for ever, unless overwritten;
3. makes the process non-dumpable (PR_SET_DUMPABLE 0): a process of the same user without
   CAP_SYS_PTRACE can no longer open our /proc/<pid>/environ or mem, nor ptrace us;
4. drops CAP_SYS_PTRACE from the capability bounding set when it can (running as root): a child run
   as root then starts without it, so (3) holds against root children too.

What it cannot do, and bubblewrap can: keep an unconfined root child from everything else root may
do (load a kernel module, read /proc/kcore, rewrite orchestrate's installed code); and keep any
same-user child from reading the key where another process holds it (the shell that exported it).
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass, field

from orchestrator.tools.environment import hold_secrets

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
CAP_SYS_PTRACE = 19


@dataclass
class Sealed:
    """What seal_process did, and what it could not do (each with why)."""

    held: list[str] = field(default_factory=list)
    """Names of the variables taken out of the environment."""
    environ_wiped: bool = False
    dumpable_off: bool = False
    ptrace_dropped: bool = False
    """CAP_SYS_PTRACE is not in the bounding set (dropped now, or never there)."""
    problems: list[str] = field(default_factory=list)


def _libc() -> ctypes.CDLL | None:
    """The C library's symbols as the program sees them: looked up globally, since an executable
    linked with a copy of `environ` (copy relocation) holds the live one, not libc's own."""
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _environ_block() -> tuple[int, int] | None:
    """[env_start, env_end) of this process: the bytes /proc/self/environ reads (fields 50 and 51
    of /proc/self/stat, counted after the command name, which may hold spaces)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(b")", 1)[1].split()
    try:
        start, end = int(fields[47]), int(fields[48])
    except (IndexError, ValueError):
        return None
    return (start, end) if 0 < start < end else None


def _environ_pointers(libc: ctypes.CDLL) -> list[int]:
    environ = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
    if not environ:
        raise ValueError("environ is NULL")
    pointers: list[int] = []
    index = 0
    while environ[index]:
        pointers.append(int(environ[index] or 0))
        index += 1
    return pointers


def _wipe_environ_block(libc: ctypes.CDLL) -> str:
    """Zero the original environment block; '' on success, else why not."""
    block = _environ_block()
    if block is None:
        return "cannot find the environment block in /proc/self/stat"
    start, end = block
    # setenv copies name=value to the heap: afterwards no variable of ours lives in the block.
    for name, value in list(os.environ.items()):
        os.environ[name] = value
    try:
        pointers = _environ_pointers(libc)
    except (ValueError, AttributeError) as exc:
        return f"cannot read the C environment ({exc}); the environment block is left as it is"
    if not pointers and os.environ:
        return "the C environment looks empty; the environment block is left as it is"
    if any(start <= p < end for p in pointers):
        return "a variable still lives in the environment block; left as it is"
    ctypes.memset(start, 0, end - start)
    return ""


_sealed: Sealed | None = None


def seal_process() -> Sealed:
    """Steps 1-4 above, once per process (later calls return the first one's result); each step
    that cannot be done here is named in `problems`."""
    global _sealed
    if _sealed is None:
        _sealed = _seal()
    return _sealed


def _seal() -> Sealed:
    sealed = Sealed(held=hold_secrets())
    if not sys.platform.startswith("linux"):
        sealed.problems.append("not Linux: /proc and prctl protections do not apply")
        return sealed
    libc = _libc()
    if libc is None:
        sealed.problems.append("libc not found: cannot protect /proc/<pid>/environ and mem")
        return sealed
    prctl = libc.prctl
    prctl.restype = ctypes.c_int
    problem = _wipe_environ_block(libc)
    sealed.environ_wiped = not problem
    if problem:
        sealed.problems.append(problem)
    if prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 and prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0:
        sealed.dumpable_off = True
    else:
        sealed.problems.append(f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(ctypes.get_errno())}")
    if prctl(PR_CAPBSET_READ, CAP_SYS_PTRACE, 0, 0, 0) == 1:
        prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE, 0, 0, 0)
    sealed.ptrace_dropped = prctl(PR_CAPBSET_READ, CAP_SYS_PTRACE, 0, 0, 0) == 0
    if not sealed.ptrace_dropped:
        sealed.problems.append("CAP_SYS_PTRACE stays in the bounding set (no CAP_SETPCAP)")
    return sealed
