"""Where runs live (`checkpoints/<run id>/` by default) and the lock that keeps two runs on one
repository from interleaving."""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from orchestrator.errors import PreflightError, UsageError
from orchestrator.persistence.journal import JOURNAL_NAME, Journal, read_records
from orchestrator.persistence.repo import GitRepo


def new_run_id(now: float | None = None) -> str:
    """Sortable by start time, unique enough for one repository: 20250131-142501-3fa2."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"{stamp}-{secrets.token_hex(2)}"


def _has_start(journal: Path) -> bool:
    try:
        with open(journal, "rb") as f:
            first = f.readline()
    except OSError:
        return False
    if not first.endswith(b"\n"):
        return False
    try:
        return bool(json.loads(first).get("type") == "run_started")
    except (json.JSONDecodeError, AttributeError):
        return False


class RunStore:
    """The checkpoints directory: one sub-directory per run."""

    def __init__(self, root: Path):
        self.root = root

    @classmethod
    def for_repo(cls, repo_root: Path, checkpoints_dir: Path) -> RunStore:
        root = checkpoints_dir if checkpoints_dir.is_absolute() else repo_root / checkpoints_dir
        return cls(root)

    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def journal(self, run_id: str, *, sync: bool = True) -> Journal:
        return Journal(self.run_dir(run_id), sync=sync)

    def run_ids(self) -> list[str]:
        """Every run whose journal recorded its start, oldest first (a run killed before that did
        nothing and is not listed)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if _has_start(p / JOURNAL_NAME))

    def latest(self) -> str | None:
        ids = self.run_ids()
        return ids[-1] if ids else None

    def resolve(self, run_id: str | None) -> str:
        """The named run (a unique prefix is enough) or the latest; UsageError if there is none."""
        ids = self.run_ids()
        if not ids:
            raise UsageError(f"no runs found in {self.root}; start one with `orchestrate run PLAN`")
        if run_id is None:
            return ids[-1]
        if run_id in ids:
            return run_id
        matches = [i for i in ids if i.startswith(run_id)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UsageError(f"no run '{run_id}' in {self.root}; `orchestrate runs` lists them")
        raise UsageError(f"run id '{run_id}' is ambiguous: {', '.join(matches)}")

    def records(self, run_id: str) -> list[dict[str, object]]:
        return read_records(self.run_dir(run_id) / JOURNAL_NAME)

    def ensure_excluded(self, repo: GitRepo) -> None:
        """When the checkpoints directory is inside the repository, keep it out of git through
        .git/info/exclude (never the user's .gitignore)."""
        try:
            relative = self.root.resolve().relative_to(repo.root)
        except ValueError:
            return
        if str(relative) in ("", "."):
            raise UsageError("checkpoints_dir cannot be the repository root; choose a sub-directory")
        repo.add_exclude(f"/{relative.as_posix()}/")


class RunLock:
    """An exclusive lock in the repository's git directory, held for a whole run or resume."""

    def __init__(self, repo: GitRepo):
        self.path = repo.common_dir / "orchestrate.lock"
        self._lock = FileLock(str(self.path), timeout=0)

    def acquire(self) -> None:
        try:
            self._lock.acquire()
        except Timeout:
            raise PreflightError(
                "another orchestrate run holds this repository "
                f"(lock {self.path}); wait for it to finish or stop it first"
            ) from None
        # The pid is for people reading the lock file; the OS lock is what excludes.
        try:
            with open(self.path.with_suffix(".pid"), "w") as f:
                f.write(f"{os.getpid()}\n")
        except OSError:
            pass

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
