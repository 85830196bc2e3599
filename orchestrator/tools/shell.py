"""Run a shell command in its own process group, with a timeout that kills the whole group."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.tools.environment import is_secret_name, redact

if TYPE_CHECKING:
    from orchestrator.tools.sandbox import Sandbox

# Kept importable from here for code written before tools/environment.py took them over.
__all__ = ["ShellResult", "is_secret_name", "redact", "run_shell", "truncate_middle"]


@dataclass(frozen=True)
class ShellResult:
    command: str
    exit_code: int
    """The command's exit status; -signal if killed by a signal; 124 on timeout (as timeout(1))."""
    output: str
    """stdout and stderr interleaved, possibly truncated (see `truncated`)."""
    timed_out: bool
    duration: float
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=2)
            return
        except subprocess.TimeoutExpired:
            continue


def truncate_middle(text: str, limit: int) -> tuple[str, bool]:
    """Keep the head and the tail, where errors and summaries are; say what was cut."""
    if len(text) <= limit:
        return text, False
    head = limit // 4
    tail = limit - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n[... {cut} characters cut ...]\n{text[-tail:]}", True


def run_shell(
    command: str,
    cwd: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
    output_limit: int = 20_000,
    sandbox: Sandbox | None = None,
) -> ShellResult:
    """Run `command` with bash in a new session; on timeout kill its whole process group.

    With a sandbox, bash runs inside it with `cwd` as the writable workspace."""
    start = time.monotonic()
    argv = ["bash", "-c", command]
    proc = subprocess.Popen(
        sandbox.wrap(argv, cwd) if sandbox is not None else argv,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    timed_out = False
    try:
        raw, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        raw, _ = proc.communicate()
    except BaseException:
        _kill_group(proc)
        raise
    else:
        # The command exited; anything it left running in its group would outlive the timeout.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    text, truncated = truncate_middle(raw.decode("utf-8", errors="replace"), output_limit)
    code = 124 if timed_out else proc.returncode
    return ShellResult(command, code, text, timed_out, time.monotonic() - start, truncated)
