"""Confinement for the commands orchestrate runs but did not write: bubblewrap where it works.

Under bubblewrap a command sees the whole file system read-only, its workspace read-write (the
workspace's `.git`, a directory or a worktree's file, read-only: orchestrate alone commits), a
private /tmp, no network unless the sandbox says so, its own PID namespace (orchestrate's process
and its /proc/<pid>/environ are not there to read) and no capabilities, even when orchestrate runs
as root (root keeping CAP_SYS_ADMIN inside could remount / read-write). The run's own state and
the user's credential files (`hidden`) are masked. Where bubblewrap is missing or user namespaces
are disabled, commands run unconfined and `warning` says so in words the user must be shown.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SandboxMode = Literal["auto", "bubblewrap", "none"]


CREDENTIALS = (
    ".anthropic", ".claude.json", ".claude/.credentials.json", ".codex/auth.json", ".config/anthropic",
    ".netrc", ".git-credentials", ".ssh", ".gnupg", ".aws", ".azure", ".config/gcloud", ".config/gh", ".kube",
    ".docker/config.json", ".pypirc", ".npmrc", ".cargo/credentials.toml", ".cargo/credentials",
)  # fmt: skip
"""Where keys and tokens live in a home directory. The sandbox shows the whole disk read-only, and a
command that reads a key from one of these could still write it into the repository or tell the
model: they are masked (an agent CLI given its own state back, ~/.claude, sees its credentials)."""


def credential_paths(home: Path | None = None) -> list[Path]:
    """The files and folders of CREDENTIALS that exist in `home` (default: the user's)."""
    try:
        base = home if home is not None else Path.home()
    except RuntimeError:  # no home directory to be found
        return []
    return [base / name for name in CREDENTIALS if (base / name).exists()]


class SandboxUnavailable(RuntimeError):
    """bubblewrap was asked for explicitly and cannot run here."""


@dataclass(frozen=True)
class Sandbox:
    kind: Literal["bubblewrap", "none"]
    warning: str = ""
    """Non-empty when commands run unconfined: the words the user must be shown, loudly."""
    hidden: tuple[Path, ...] = ()
    """Paths the agent may neither read nor write, whatever the kind (the run's own state, credential
    files): the agent's file tools refuse them and, under bubblewrap, they are masked."""
    network: bool = False
    """Whether commands keep the network (an agent CLI must reach its model; checks may, by setting)."""
    readable: tuple[Path, ...] = ()
    """Paths shown read-only that the sandbox would not show otherwise (a prompt file in our /tmp)."""
    writable: tuple[Path, ...] = ()
    """Paths outside the workspace a command may write (an agent CLI's own state directory)."""
    read_only: bool = False
    """The workspace itself is shown read-only (a reviewer's copy of the tree): commands may read
    and run it, and write only their private /tmp."""

    def hiding(self, *paths: Path) -> Sandbox:
        """This sandbox, also hiding `paths`."""
        return dataclasses.replace(self, hidden=(*self.hidden, *(p.resolve() for p in paths)))

    def with_network(self, network: bool = True) -> Sandbox:
        """This sandbox, with the network on (or off)."""
        return dataclasses.replace(self, network=network)

    def reading_only(self) -> Sandbox:
        """This sandbox, with the workspace read-only."""
        return dataclasses.replace(self, read_only=True)

    def reading(self, *paths: Path) -> Sandbox:
        """This sandbox, also showing `paths` read-only."""
        return dataclasses.replace(self, readable=(*self.readable, *(p.resolve() for p in paths)))

    def writing(self, *paths: Path) -> Sandbox:
        """This sandbox, also letting commands write `paths` (those that exist)."""
        return dataclasses.replace(self, writable=(*self.writable, *(p.resolve() for p in paths)))

    def wrap(self, argv: list[str], workspace: Path) -> list[str]:
        """`argv` as run inside the sandbox with `workspace` as its writable root and cwd."""
        if self.kind == "none":
            return argv
        root = workspace.resolve()
        wrapped = [
            "bwrap",
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", "/tmp",
        ]  # fmt: skip
        for path in _toolchain_in_tmp():
            # The private /tmp would hide the interpreter and the tools a command is meant to find
            # (a checkout and its venv under /tmp, as CI makes them): shown again, read-only.
            wrapped += ["--ro-bind", str(path), str(path)]
        bind = "--ro-bind" if self.read_only else "--bind"
        wrapped += [bind, str(root), str(root)]
        # Mount order matters: each mount covers what came before it at and below its path. What
        # is hidden stays hidden inside what is shown; what a command is given to write (an agent
        # CLI's own state) it gets whole.
        for path in self.readable:
            if path.exists():
                wrapped += ["--ro-bind", str(path), str(path)]
        for path in self.hidden:
            if path.is_dir():
                wrapped += ["--tmpfs", str(path)]
            elif path.exists():
                wrapped += ["--ro-bind", "/dev/null", str(path)]
        for path in self.writable:
            if path.exists():
                wrapped += ["--bind", str(path), str(path)]
        if any(root.is_relative_to(h) for h in self.hidden):
            # A worktree of a parallel run lives under the run's state: bound back in (bwrap makes
            # its mount point inside the empty tmpfs), and nothing else of the state with it.
            wrapped += [bind, str(root), str(root)]
        dot_git = root / ".git"
        if dot_git.is_dir() or dot_git.is_file():
            # A worktree's `.git` is a file naming its git dir: rewritten, it would point orchestrate's
            # own git at a directory (and a config) the agent made.
            wrapped += ["--ro-bind", str(dot_git), str(dot_git)]
        if not self.network:
            wrapped.append("--unshare-net")
        wrapped += [
            "--unshare-pid",
            "--die-with-parent",
            "--new-session",
            "--cap-drop", "ALL",
            # The private /tmp is the one place besides the workspace a command can write.
            "--setenv", "TMPDIR", "/tmp",
            "--chdir", str(root),
            "--",
            *argv,
        ]  # fmt: skip
        return wrapped


def _toolchain_in_tmp() -> list[Path]:
    """The directories under /tmp that a child's PATH, our interpreter or our venv name: what the
    sandbox's private /tmp must not hide. Outermost only (a bind covers what is below it)."""
    names = [*os.environ.get("PATH", "").split(os.pathsep), sys.prefix, sys.base_prefix]
    names.append(os.environ.get("VIRTUAL_ENV", ""))
    found: set[Path] = set()
    for name in names:
        if not name or not Path(name).is_absolute():
            continue
        for path in {Path(name), Path(name).resolve()}:
            if path.is_relative_to("/tmp") and path != Path("/tmp") and path.is_dir():
                found.add(path)
    return sorted(p for p in found if not any(p != q and p.is_relative_to(q) for q in found))


@functools.cache
def _bubblewrap_works() -> str:
    """Empty when a trivial bwrap command succeeds, else why it does not."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    probe = Sandbox("bubblewrap").wrap(["true"], Path("/"))
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap failed to start: {exc}"
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
        return f"bubblewrap cannot run here ({reason}); user namespaces may be disabled"
    return ""


UNCONFINED = (
    "agent and verification commands run WITHOUT a sandbox: they can write anywhere you can, use the "
    "network, and read the run's state"
)


def detect_sandbox(mode: SandboxMode = "auto") -> Sandbox:
    """The sandbox for `mode`; SandboxUnavailable if bubblewrap was required and cannot run. An
    unconfined sandbox always carries its warning, chosen or not: the user must see it every run."""
    if mode == "none":
        return Sandbox("none", warning=f'{UNCONFINED} (sandbox = "none").')
    problem = _bubblewrap_works()
    if not problem:
        return Sandbox("bubblewrap")
    if mode == "bubblewrap":
        raise SandboxUnavailable(f'{problem}; install bubblewrap or set sandbox = "none"')
    return Sandbox(
        "none",
        warning=f"{UNCONFINED}: {problem}. Install bubblewrap (apt-get install bubblewrap) to confine them.",
    )
