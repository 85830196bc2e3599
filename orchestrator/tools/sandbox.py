"""Confinement for commands an agent runs: bubblewrap with the network off where it works.

The agent's shell sees the whole file system read-only, its workspace read-write (the workspace's
`.git` read-only, since orchestrate alone commits), a private /tmp, no network and its own PID
namespace. Where bubblewrap is missing or user namespaces are disabled, commands run unconfined
and the caller is told so in words it must show the user.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SandboxMode = Literal["auto", "bubblewrap", "none"]


class SandboxUnavailable(RuntimeError):
    """bubblewrap was asked for explicitly and cannot run here."""


@dataclass(frozen=True)
class Sandbox:
    kind: Literal["bubblewrap", "none"]
    warning: str = ""
    """Non-empty when commands will run unconfined although confinement was wanted."""
    hidden: tuple[Path, ...] = ()
    """Paths the agent may neither read nor write, whatever the kind (the run's own state): the
    agent's file tools refuse them and, under bubblewrap, they are masked."""

    def hiding(self, *paths: Path) -> Sandbox:
        """This sandbox, also hiding `paths`."""
        return dataclasses.replace(self, hidden=(*self.hidden, *(p.resolve() for p in paths)))

    def wrap(self, argv: list[str], workspace: Path) -> list[str]:
        if self.kind == "none":
            return argv
        root = str(workspace.resolve())
        wrapped = [
            "bwrap",
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", "/tmp",
            "--bind", root, root,
        ]  # fmt: skip
        git_dir = workspace / ".git"
        if git_dir.is_dir():
            wrapped += ["--ro-bind", str(git_dir.resolve()), str(git_dir.resolve())]
        wrapped += ["--unshare-net", "--unshare-pid", "--die-with-parent", "--chdir", root, *argv]
        return wrapped


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


def detect_sandbox(mode: SandboxMode = "auto") -> Sandbox:
    if mode == "none":
        return Sandbox("none")
    problem = _bubblewrap_works()
    if not problem:
        return Sandbox("bubblewrap")
    if mode == "bubblewrap":
        raise SandboxUnavailable(f'{problem}; install bubblewrap or set sandbox = "none"')
    return Sandbox(
        "none",
        warning=f"agent commands run WITHOUT a sandbox (network on, whole disk writable): {problem}. "
        "Install bubblewrap (apt-get install bubblewrap) to confine them.",
    )
