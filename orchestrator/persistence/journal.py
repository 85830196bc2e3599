"""The run journal: an append-only JSONL file, each record flushed (and, when durable, fsync'd)
before the action it announces, plus the run's artifacts (rendered prompts, verification output)
beside it.

A kill can tear at most the last line; readers skip it and the next writer cuts it off, so the
journal always reads as the sequence of transitions that really completed.

orchestrate never follows a symbolic link when it writes here: the run's directory is opened once,
each component below its anchor (the repository, for a checkpoints directory inside it) refused if
it is a link, and everything is written relative to that open directory, by names that are never
followed. Where bubblewrap is missing an agent's commands can reach this directory; a link they
left is refused with a clear error, never written through.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orchestrator.domain import transitions
from orchestrator.domain.transitions import Transition
from orchestrator.errors import OutOfSpace, PreflightError, UsageError, out_of_space

FORMAT_VERSION = transitions.FORMAT_VERSION
JOURNAL_NAME = "journal.jsonl"
_TMP_PREFIX = ".tmp-"


_datasync = getattr(os, "fdatasync", os.fsync)
"""For the journal, an append-only file: fdatasync flushes its data and the size that reading it
back needs, without the timestamps fsync also writes (as databases do with their write-ahead logs)."""


_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NOT_FOLLOWED = {errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENXIO}
"""What an open or a rename that does not follow a link says when a link (or something that is not
what orchestrate left there) stands in the way."""


class JournalError(UsageError):
    """A journal line that is not a transition this orchestrate reads (a later format, an unknown
    type, a field that does not fit)."""


class UnsafeRunState(PreflightError):
    """A link, or something else orchestrate did not make, where it keeps a run's state."""


def refused_link(path: Path, remedy: str = "remove it") -> UnsafeRunState:
    return UnsafeRunState(
        f"{path} is a symbolic link (or not what orchestrate left there); orchestrate never writes "
        f"through a link where it keeps its own files, and an agent's unconfined commands may have put "
        f"it there: {remedy} and try again"
    )


def open_directory(anchor: Path, relative: Path, *, create: bool = True) -> int:
    """An open descriptor of `anchor/relative`: `anchor` is followed as it is (the user's), and no
    component of `relative` may be a link (missing ones are made when `create`)."""
    fd = os.open(anchor, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    shown = anchor
    for part in relative.parts:
        shown = shown / part
        fd = _subdirectory(fd, part, shown, create)  # closes the parent, even when it fails
    return fd


def _subdirectory(parent: int, name: str, shown: Path, create: bool) -> int:
    """Open directory `name` in `parent` without following a link; closes `parent`."""
    try:
        if name in ("", ".", "..") or "/" in name:
            raise ValueError(f"not a plain name: {name!r}")
        if create:
            try:
                os.mkdir(name, 0o777, dir_fd=parent)
            except FileExistsError:
                pass
        try:
            return os.open(name, _DIRECTORY, dir_fd=parent)
        except OSError as exc:
            if exc.errno in _NOT_FOLLOWED:
                raise refused_link(shown) from None
            raise
    finally:
        os.close(parent)


def write_new(directory: int, name: str, data: bytes, *, durable: bool) -> None:
    """Write `name` in the open `directory` atomically: a temp file made exclusively (a link left
    at its name is removed first, never followed), then renamed over `name` (which replaces a link
    there rather than writing through it)."""
    tmp = f"{_TMP_PREFIX}{name}.{os.getpid()}"
    try:
        os.unlink(tmp, dir_fd=directory)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, _NEW_FILE, 0o666, dir_fd=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=directory)
        except OSError:
            pass
        raise
    if durable:
        os.fsync(directory)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Temp file in the same directory, fsync, os.replace, fsync the directory.

    Readers see the old file or the new one, never half of one; `durable=False` skips the fsyncs
    for artifacts that nothing depends on after a crash. A link at the temp name or at `path`
    itself is replaced, never written through."""
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        write_new(directory, path.name, data, durable=durable)
    finally:
        os.close(directory)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record, as the JSON objects the file holds (see read_transitions for what
    they mean); a torn or garbled last line (a kill mid-append) is left out. A journal that is a
    link (or not a regular file) is refused."""
    return [record for record in _read(path) if isinstance(record, dict)]


def read_transitions(path: Path) -> list[Transition]:
    """Every complete record, validated: a line that is not a transition this orchestrate reads is
    a JournalError naming the file and the line. A torn last line is left out, as above."""
    found: list[Transition] = []
    for number, record in enumerate(_read(path), 1):
        try:
            found.append(transitions.parse(record))
        except transitions.RecordError as exc:
            raise JournalError(f"{exc}", path=path, line=number) from None
    return found


def _read(path: Path) -> list[object]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    except OSError as exc:
        if exc.errno in _NOT_FOLLOWED:
            raise refused_link(path) from None
        raise
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise refused_link(path)
        return [record for record, _ in _complete(f)]


def _complete(lines: Iterator[bytes]) -> Iterator[tuple[object, int]]:
    """Each complete line's JSON value and the bytes it took, up to a torn or garbled line."""
    for raw in lines:
        if not raw.endswith(b"\n"):
            return
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            return
        yield record, len(raw)


class Journal:
    """One run's directory: journal.jsonl and artifacts.

    `anchor` is the directory below which no component of the run's directory may be a link (the
    repository for a checkpoints directory inside it; by default the directory holding the
    checkpoints directory)."""

    def __init__(self, directory: Path, *, sync: bool = True, anchor: Path | None = None):
        self.directory = directory
        self.path = directory / JOURNAL_NAME
        self.sync_enabled = sync
        self.anchor = anchor if anchor is not None else directory.parent.parent
        self._file: Any = None
        self._dir_fd: int | None = None

    def open(self) -> Journal:
        created = not self.directory.exists()
        try:
            relative = self.directory.relative_to(self.anchor)
        except ValueError:
            raise ValueError(f"{self.directory} is not under {self.anchor}") from None
        self.anchor.mkdir(parents=True, exist_ok=True)
        run_dir = open_directory(self.anchor, relative)
        try:
            _clear_temps(run_dir)
            self._file = _open_journal(run_dir, self.path)
        except BaseException:
            os.close(run_dir)
            raise
        self._dir_fd = run_dir
        if created and self.sync_enabled:
            os.fsync(run_dir)
            fsync_dir(self.directory.parent)
        return self

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def __enter__(self) -> Journal:
        return self.open() if self._file is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, transition: Transition, *, durable: bool = True) -> None:
        """Write one transition, fsync'd unless `durable=False` (for records no recovery depends
        on, such as an agent's tool calls)."""
        record = transitions.to_record(transition)
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
        if self._file is None:
            self.open()
        # A lone surrogate (a file name that is not UTF-8, decoded as os.fsdecode does, or a
        # model's bad text) becomes its JSON escape, which reads back as the same string.
        self._write_whole(line.encode("utf-8", "backslashreplace"))
        if durable:
            self.sync()

    def _write_whole(self, data: bytes) -> None:
        """Append one record's bytes, straight to the file (nothing left in a buffer to come out
        later). A write refused part-way (a full disk) takes back what of the record got in, so
        that a record appended once there is room again is not glued to half of this one."""
        fd = self._file.fileno()
        start = os.fstat(fd).st_size
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            os.ftruncate(fd, start)
            if out_of_space(exc):
                resume = f"`orchestrate resume {self.directory.name}`"
                why = f"cannot write the run's journal: {exc.strerror}; make room, then {resume}"
                raise OutOfSpace(why, path=self.path) from exc
            raise

    def sync(self) -> None:
        """Make every record written so far durable. For writers that serialise their appends
        under a lock of their own: they append with durable=False inside it and sync outside, so
        that one thread's fsync does not hold up another's append (an fsync covers every write made
        before it, so each record is still durable before its action)."""
        file = self._file
        if not self.sync_enabled or file is None:
            return
        try:
            _datasync(file.fileno())
        except ValueError:  # closed meanwhile (an aborted run): nothing more is written
            pass
        except OSError as exc:  # a file system that finds out only now that it has no room
            if out_of_space(exc):
                resume = f"`orchestrate resume {self.directory.name}`"
                why = f"cannot sync the run's journal: {exc.strerror}; make room, then {resume}"
                raise OutOfSpace(why, path=self.path) from exc
            raise

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.path)

    def transitions(self) -> list[Transition]:
        return read_transitions(self.path)

    def write_artifact(self, relative: str, text: str) -> Path:
        """A file under the run's directory (a prompt, an output), written atomically; a link on
        its way is refused (UnsafeRunState), never followed."""
        if self._dir_fd is None:
            self.open()
        assert self._dir_fd is not None
        *folders, name = Path(relative).parts
        directory = os.dup(self._dir_fd)
        shown = self.directory
        for folder in folders:
            shown = shown / folder
            directory = _subdirectory(directory, folder, shown, create=True)
        try:
            write_new(directory, name, text.encode("utf-8", "backslashreplace"), durable=False)
        except OSError as exc:
            if exc.errno in _NOT_FOLLOWED:
                raise refused_link(self.directory / relative) from None
            raise
        finally:
            os.close(directory)
        return self.directory / relative


def _open_journal(run_dir: int, shown: Path) -> Any:
    """journal.jsonl in the open run directory, for appending, its torn tail (a kill mid-append)
    cut off; refused if it is a link or not a regular file."""
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(JOURNAL_NAME, flags, 0o666, dir_fd=run_dir)
    except OSError as exc:
        if exc.errno in _NOT_FOLLOWED:
            raise refused_link(shown) from None
        raise
    file = os.fdopen(fd, "a+b")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise refused_link(shown)
        file.seek(0)
        keep = sum(size for _, size in _complete(file))
        if keep != info.st_size:
            os.ftruncate(fd, keep)
        file.seek(0, os.SEEK_END)
    except BaseException:
        file.close()
        raise
    return file


def _clear_temps(directory: int) -> None:
    """Remove the temp files a kill left (under any sub-directory, no link followed)."""
    with os.scandir(directory) as entries:
        found = list(entries)
    for entry in found:
        if entry.is_dir(follow_symlinks=False):
            try:
                sub = os.open(entry.name, _DIRECTORY, dir_fd=directory)
            except OSError:
                continue
            try:
                _clear_temps(sub)
            finally:
                os.close(sub)
        elif entry.name.startswith(_TMP_PREFIX):
            try:
                os.unlink(entry.name, dir_fd=directory)
            except FileNotFoundError:
                pass
