"""Run a shell command in its own session, with a timeout; kill all it started when it ends; keep a
bounded head and tail of its output."""

from __future__ import annotations

import codecs
import os
import select
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.tools import processes
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


def truncate_middle(text: str, limit: int) -> tuple[str, bool]:
    """Keep the head and the tail, where errors and summaries are; say what was cut."""
    if len(text) <= limit:
        return text, False
    head = limit // 4
    tail = limit - head
    cut = len(text) - head - tail
    return _joined(text[:head], cut, text[-tail:] if tail else ""), True


def _joined(head: str, cut: int, tail: str) -> str:
    return f"{head}\n[... {cut} characters cut ...]\n{tail}"


# Every byte but UTF-8's continuation bytes (0b10xxxxxx): what is left after deleting them counts
# the continuation bytes, and the bytes less those count the characters.
_NOT_CONTINUATION = bytes(b for b in range(256) if b & 0xC0 != 0x80)


class _KeptOutput:
    """A command's output as it streams: the first and last bytes that the head and the tail of
    `truncate_middle` can need (4 bytes per character at most), and a count of the rest."""

    def __init__(self, limit: int):
        self.limit = limit
        self.head_chars = limit // 4
        self.tail_chars = limit - self.head_chars
        self.head = bytearray()
        self.tail = bytearray()
        self.head_room = 4 * self.head_chars + 4
        self.tail_room = 4 * self.tail_chars + 4
        self.size = 0
        self.continuations = 0
        self.dropped = False

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self.continuations += len(chunk.translate(None, _NOT_CONTINUATION))
        room = self.head_room - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        self.tail += chunk
        if len(self.tail) > self.tail_room:
            del self.tail[: len(self.tail) - self.tail_room]
            self.dropped = True

    def text(self) -> tuple[str, bool]:
        """Decoded once, here: invalid bytes become U+FFFD; a character split by a cut is dropped."""
        if not self.dropped:
            return truncate_middle(bytes(self.head + self.tail).decode("utf-8", "replace"), self.limit)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        head = decoder.decode(bytes(self.head), final=False)[: self.head_chars]
        start = 0
        while start < 3 and start < len(self.tail) and self.tail[start] & 0xC0 == 0x80:
            start += 1
        tail = bytes(self.tail[start:]).decode("utf-8", "replace")
        tail = tail[-self.tail_chars :] if self.tail_chars else ""
        chars = self.size - self.continuations  # exact for UTF-8, near enough for anything else
        return _joined(head, max(0, chars - len(head) - len(tail)), tail), True


def run_shell(
    command: str,
    cwd: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
    output_limit: int = 20_000,
    sandbox: Sandbox | None = None,
) -> ShellResult:
    """Run `command` with bash in a new session; when it ends, times out or is interrupted, kill
    everything it started (`processes.kill_tree`: setsid'd and orphaned descendants included).

    Its output is read as it comes and only a bounded head and tail are kept, so memory stays
    flat whatever it prints. The command has ended when bash has: a background process still
    holding its output does not keep us waiting. With a sandbox, bash runs inside it with `cwd`
    as the writable workspace."""
    start = time.monotonic()
    argv = ["bash", "-c", command]
    kept = _KeptOutput(output_limit)
    reader, writer = os.pipe()
    try:
        try:
            tree = processes.spawn(
                sandbox.wrap(argv, cwd) if sandbox is not None else argv,
                cwd=cwd,
                env=env,
                stdout=writer,
                stderr=writer,
            )
        finally:
            os.close(writer)
        try:
            ended = _read_until_exit(reader, tree.popen, kept, start + timeout)
        except BaseException:
            processes.kill_tree(tree, grace=_GRACE)
            tree.popen.wait()
            raise
        # On time: what it left running is killed at once; on timeout it gets a moment to stop.
        processes.kill_tree(tree, grace=0.0 if ended else _GRACE)
        code = tree.popen.wait()
        _drain(reader, kept, time.monotonic() + _DRAIN)
    finally:
        os.close(reader)
    text, truncated = kept.text()
    return ShellResult(command, code if ended else 124, text, not ended, time.monotonic() - start, truncated)


_GRACE = 2.0
"""Seconds a timed-out or interrupted command has between SIGTERM and SIGKILL."""
_DRAIN = 1.0
"""Seconds to read what is left in the pipe once the command's tree is dead (a writer that
escaped the kill could hold it open forever)."""
_CHUNK = 1 << 16


def _read_until_exit(fd: int, proc: subprocess.Popen[bytes], kept: _KeptOutput, deadline: float) -> bool:
    """Read `fd` into `kept` until `proc` exits (True) or the deadline passes (False)."""
    os.set_blocking(fd, False)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    exited = _exit_notice(proc.pid)
    if exited is not None:
        poller.register(exited, select.POLLIN)
    try:
        while proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            # Without a pidfd, wake now and then to notice the exit of a quiet command.
            wait = left if exited is not None else min(left, 0.05)
            for ready, _ in poller.poll(wait * 1000):
                if ready == fd and not _read_available(fd, kept):
                    poller.unregister(fd)  # every writer closed it; only the exit is left
        return True
    finally:
        if exited is not None:
            os.close(exited)


def _exit_notice(pid: int) -> int | None:
    """A pidfd that becomes readable when `pid` exits (Linux 5.3+), or None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _read_available(fd: int, kept: _KeptOutput) -> bool:
    """Read what the pipe holds now (a bounded number of chunks, so the caller sees its deadline);
    False at end of file."""
    for _ in range(64):
        try:
            chunk = os.read(fd, _CHUNK)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        kept.add(chunk)
    return True


def _drain(fd: int, kept: _KeptOutput, deadline: float) -> None:
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if ready and not _read_available(fd, kept):
            return
