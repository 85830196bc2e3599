"""Errors a user can act on. Each message names the file (and line) and says what to do."""

from __future__ import annotations

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


class TaskFailed(OrchestrateError):
    """A task or check failed: exit 1."""

    exit_code = 1


class RunStopped(OrchestrateError):
    """The run stopped cleanly and can be resumed (budget, interrupt, API unavailable): exit 1."""

    exit_code = 1
