"""Where runs live (`checkpoints/<run id>/` by default) and the lock that keeps two runs on one
repository from interleaving.

None of orchestrate's own files here is written through a symbolic link: the run directory (see
persistence.journal), the lock, its holder file and .git/info/exclude. A link where one of them
belongs is refused with an error that names it (an agent's unconfined commands may have put it
there)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import time
from pathlib import Path
from types import TracebackType

from orchestrator.domain.transitions import Transition
from orchestrator.errors import PreflightError, UsageError
from orchestrator.persistence.journal import (
    JOURNAL_NAME,
    Journal,
    read_records,
    read_transitions,
    refused_link,
)
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

    def __init__(self, root: Path, anchor: Path | None = None):
        self.root = root
        self.anchor = anchor if anchor is not None else root.parent
        """Below it, no component of a run's directory may be a link: the repository, for a
        checkpoints directory inside it (an agent could replace any folder there)."""

    @classmethod
    def for_repo(cls, repo_root: Path, checkpoints_dir: Path) -> RunStore:
        root = Path(os.path.normpath(repo_root / checkpoints_dir))
        inside = root != repo_root and root.is_relative_to(repo_root)
        return cls(root, repo_root if inside else None)

    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def journal(self, run_id: str, *, sync: bool = True) -> Journal:
        return Journal(self.run_dir(run_id), sync=sync, anchor=self.anchor)

    def refuse_links(self) -> None:
        """UnsafeRunState if a folder on the way from the anchor to the checkpoints directory is a
        link (before anything is written in it)."""
        try:
            parts = self.root.relative_to(self.anchor).parts
        except ValueError:
            return
        place = self.anchor
        for part in parts:
            place = place / part
            if place.is_symlink():
                raise refused_link(place, "remove it (or set checkpoints_dir to the folder it points to)")

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
        """The run's journal as the JSON objects it holds."""
        return read_records(self.run_dir(run_id) / JOURNAL_NAME)

    def transitions(self, run_id: str) -> list[Transition]:
        """The run's journal, validated (JournalError names a line that is not a transition)."""
        return read_transitions(self.run_dir(run_id) / JOURNAL_NAME)

    def ensure_excluded(self, repo: GitRepo) -> None:
        """When the checkpoints directory is inside the repository, keep it out of git through
        .git/info/exclude (never the user's .gitignore)."""
        self.refuse_links()
        try:
            relative = self.root.resolve().relative_to(repo.root)
        except ValueError:
            return
        if str(relative) in ("", "."):
            raise UsageError("checkpoints_dir cannot be the repository root; choose a sub-directory")
        # Appended to in place, so neither it nor its folder may be a link (to a file of the user's).
        for place in (repo.common_dir / "info", repo.common_dir / "info" / "exclude"):
            if place.is_symlink():
                raise refused_link(place)
        repo.add_exclude(f"/{relative.as_posix()}/")


class RunLock:
    """An exclusive lock in the repository's git directory, held for a whole run or resume, taken
    before anything is read: the plan, the journal and the tree are read by one run at a time.

    Beside it, `orchestrate.pid` says who holds it (pid, command, run id), so that a run refused
    can name the one that holds the repository; the OS lock is what excludes."""

    def __init__(self, repo: GitRepo, command: str = "run", run_id: str | None = None):
        self.path = repo.common_dir / "orchestrate.lock"
        self.holder_file = repo.common_dir / "orchestrate.pid"
        self.command = command
        self.run_id = run_id
        self._fd: int | None = None

    def acquire(self) -> None:
        # flock(2) on a file opened without following a link (filelock's open would truncate the
        # file a link there points to); flock is what filelock uses, so older versions exclude too.
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO):
                raise refused_link(self.path) from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PreflightError(self._refusal()) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._write_holder()

    def release(self) -> None:
        holder = _read_holder(self.holder_file)
        if holder is not None and holder.get("pid") == os.getpid():
            self.holder_file.unlink(missing_ok=True)
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def _write_holder(self) -> None:
        """Written aside and renamed over the file (a symlink there is replaced, never followed)."""
        info = {"pid": os.getpid(), "command": self.command, "run_id": self.run_id, "since": time.time()}
        temp = self.holder_file.with_name(f".{self.holder_file.name}.{os.getpid()}.tmp")
        try:
            temp.unlink(missing_ok=True)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(info) + "\n")
            temp.replace(self.holder_file)
        except OSError:
            temp.unlink(missing_ok=True)  # only a refused run's message is poorer for it

    def _refusal(self) -> str:
        """Who holds the repository, as its pid file says. The holder writes the file just after it
        takes the lock, and a holder killed outright leaves its file behind: a file missing, or
        naming a process that is gone, is read again for a moment."""
        holder = _read_holder(self.holder_file)
        deadline = time.monotonic() + 1.0
        while (holder is None or not _alive(holder.get("pid"))) and time.monotonic() < deadline:
            time.sleep(0.05)
            holder = _read_holder(self.holder_file)
        pid = holder.get("pid") if holder is not None else None
        if not isinstance(pid, int) or not _alive(pid):
            return (
                f"another orchestrate run holds this repository (lock {self.path}); "
                "wait for it to finish or stop it first"
            )
        assert holder is not None
        command = holder.get("command") or "run"
        run_id = holder.get("run_id")
        since = holder.get("since")
        what = f"run {run_id}" if isinstance(run_id, str) and run_id else "a run"
        when = (
            f", since {time.strftime('%H:%M:%S', time.localtime(since))}"
            if isinstance(since, int | float)
            else ""
        )
        return (
            f"another orchestrate run holds this repository: {what} (pid {pid}, "
            f"`orchestrate {command}`{when}); wait for it to finish, or stop it with `kill -INT {pid}` "
            "(it stops resumably) and try again"
        )

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


def _read_holder(path: Path) -> dict[str, object] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.loads(f.read(4096))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True
