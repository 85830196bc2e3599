"""Errors a user can act on. Each message names the file (and line) and says what to do."""

from __future__ import annotations

import errno
from pathlib import Path


class OrchestrateError(Exception):
    """Base of every error the CLI turns into a one-line message and an exit code."""

    exit_code = 2

    def __init__(self, message: str, *, path: Path | str | None = None, line: int | None = None):
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        super().__init__(self.render())

    def render(self) -> str:
        if self.path is None:
            return self.message
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.message}"


class UsageError(OrchestrateError):
    """Bad flags, bad input files, unknown ids: exit 2."""


class PlanError(UsageError):
    """The plan file cannot be read or parsed into anything usable."""


class PlanChangedError(UsageError):
    """The plan file changed since it was read in a way that moved or removed a task."""


class ConfigError(UsageError):
    """orchestrate.toml / [tool.orchestrate] / ORCHESTRATE_* is invalid."""


class PreflightError(UsageError):
    """The repository is not in a state we may run in (dirty tree, protected branch, ...)."""


class RunStopped(OrchestrateError):
    """The run stopped cleanly and can be resumed (budget, interrupt, API unavailable): exit 3, as
    a run that stops (cli/run_commands.py, STOPPED_EXIT)."""

    exit_code = 3


OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""A disk full, a quota reached, a file-size limit (RLIMIT_FSIZE) hit."""
_OUT_OF_SPACE_WORDS = ("No space left on device", "Out of diskspace", "Disk quota exceeded", "File too large")


class OutOfSpace(RunStopped):
    """A write the run needs failed for want of space: the run stops, resumably once there is room
    (exit 3). Nothing is lost: every durable step before it was journaled."""


def out_of_space(exc: BaseException) -> bool:
    """Whether `exc` is a write refused for want of space: an OSError with that errno, or an error
    whose words say so (git reports its own in its message)."""
    if isinstance(exc, OSError):
        return exc.errno in OUT_OF_SPACE_ERRNOS
    return isinstance(exc, OrchestrateError) and any(w in exc.message for w in _OUT_OF_SPACE_WORDS)
