"""Files a user or an agent can name, read whole: regular files only, up to a size limit.

A FIFO blocks its reader until someone writes, and /dev/zero never ends: what is not a regular
file is refused before a byte is read (it is opened non-blocking, so that even opening a FIFO
cannot hang, and checked with fstat on that same descriptor, so nothing can be swapped in
between). The size is checked before reading and while reading (a file may grow meanwhile).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from orchestrator.errors import OrchestrateError, UsageError

MB = 1_000_000
PLAN_LIMIT = 10 * MB
SCRIPT_LIMIT = 10 * MB
SETTINGS_LIMIT = 1 * MB
PROMPT_FILE_LIMIT = 1 * MB
"""CLAUDE.md, AGENTS.md, prompt templates: text that goes into every prompt."""

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
_CHUNK = 1 << 20


class NotReadable(UsageError):
    """The file is missing, not a regular file, too big, or the read failed; the message says which."""


def megabytes(size: int) -> str:
    """12_300_000 -> '12.3 MB', 10_000_000 -> '10 MB'."""
    return f"{size / MB:.1f}".removesuffix(".0") + " MB"


def read_regular_file(
    path: Path, *, what: str, limit: int, error: type[OrchestrateError] = NotReadable, hint: str = ""
) -> bytes:
    """The bytes of `path`, which must be a regular file of at most `limit` bytes; else `error`
    (one line naming the file) saying why. `what` names the file's role ("plan", "script");
    `hint` is appended to the too-big message ("split the plan")."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"no such {what} file; check the path", path=path) from None
    except OSError as exc:
        raise error(f"cannot read the {what}: {exc.strerror or exc}", path=path) from None
    try:
        status = os.fstat(fd)
        _refuse_unless_regular(status, path, what, limit, error, hint)
        chunks: list[bytes] = []
        read = 0
        want = status.st_size + 1  # the whole file in one read as a rule; then the end of it
        while read <= limit:
            chunk = os.read(fd, min(want, limit + 1 - read))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            read += len(chunk)
            want = _CHUNK
        raise error(_too_big(max(os.fstat(fd).st_size, read), what, limit, hint), path=path)  # it grew
    except OSError as exc:
        raise error(f"cannot read the {what}: {exc.strerror or exc}", path=path) from None
    finally:
        os.close(fd)


def check_regular_file(
    path: Path, *, what: str, limit: int, error: type[OrchestrateError] = NotReadable, hint: str = ""
) -> None:
    """Refuse early, as read_regular_file would, without opening the file (which reads it again)."""
    try:
        status = path.stat()
    except FileNotFoundError:
        raise error(f"no such {what} file; check the path", path=path) from None
    except OSError as exc:
        raise error(f"cannot read the {what}: {exc.strerror or exc}", path=path) from None
    _refuse_unless_regular(status, path, what, limit, error, hint)


def _refuse_unless_regular(
    status: os.stat_result, path: Path, what: str, limit: int, error: type[OrchestrateError], hint: str
) -> None:
    if stat.S_ISDIR(status.st_mode):
        raise error(f"is a directory; give the {what} file inside it", path=path)
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in _KINDS if test(status.st_mode)), "not a file")
        raise error(f"is not a regular file ({kind}); give the {what} file itself", path=path)
    if status.st_size > limit:
        raise error(_too_big(status.st_size, what, limit, hint), path=path)


def _too_big(size: int, what: str, limit: int, hint: str) -> str:
    more = f"; {hint}" if hint else ""
    return f"{megabytes(size)} is over the {megabytes(limit)} limit for a {what}{more}"
