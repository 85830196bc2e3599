"""The run journal: an append-only JSONL file, each record flushed (and, when durable, fsync'd)
before the action it announces, plus the run's artifacts (rendered prompts, verification output)
beside it.

A kill can tear at most the last line; readers skip it and the next writer cuts it off, so the
journal always reads as the sequence of transitions that really completed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from orchestrator.errors import OutOfSpace, out_of_space

FORMAT_VERSION = 1
JOURNAL_NAME = "journal.jsonl"
_TMP_PREFIX = ".tmp-"


_datasync = getattr(os, "fdatasync", os.fsync)
"""For the journal, an append-only file: fdatasync flushes its data and the size that reading it
back needs, without the timestamps fsync also writes (as databases do with their write-ahead logs)."""


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Temp file in the same directory, fsync, os.replace, fsync the directory.

    Readers see the old file or the new one, never half of one; `durable=False` skips the fsyncs
    for artifacts that nothing depends on after a crash."""
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}.{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    tmp.replace(path)
    if durable:
        fsync_dir(path.parent)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record; a torn or garbled last line (a kill mid-append) is left out."""
    if not path.exists():
        return []
    records: list[dict[str, Any]] = []
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                break
            if isinstance(record, dict):
                records.append(record)
    return records


def _valid_length(path: Path) -> int:
    """Bytes of the file up to and including its last complete record."""
    length = 0
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                json.loads(raw)
            except json.JSONDecodeError:
                break
            length += len(raw)
    return length


class Journal:
    """One run's directory: journal.jsonl and artifacts."""

    def __init__(self, directory: Path, *, sync: bool = True):
        self.directory = directory
        self.path = directory / JOURNAL_NAME
        self.sync_enabled = sync
        self._file: Any = None

    def open(self) -> Journal:
        created = not self.directory.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.rglob(f"{_TMP_PREFIX}*"):
            stale.unlink(missing_ok=True)
        if self.path.exists():
            keep = _valid_length(self.path)
            if keep != self.path.stat().st_size:
                with open(self.path, "r+b") as f:
                    f.truncate(keep)
        self._file = open(self.path, "ab")
        if created and self.sync_enabled:
            fsync_dir(self.directory)
            fsync_dir(self.directory.parent)
        return self

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Journal:
        return self.open() if self._file is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, type_: str, *, durable: bool = True, **fields: Any) -> dict[str, Any]:
        """Write one record, fsync'd unless `durable=False` (for records no recovery depends on,
        such as an agent's tool calls); returns it."""
        record: dict[str, Any] = {"v": FORMAT_VERSION, "type": type_, "at": round(time.time(), 3), **fields}
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
        if self._file is None:
            self.open()
        # A lone surrogate (a file name that is not UTF-8, decoded as os.fsdecode does, or a
        # model's bad text) becomes its JSON escape, which reads back as the same string.
        self._write_whole(line.encode("utf-8", "backslashreplace"))
        if durable:
            self.sync()
        return record

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

    def write_artifact(self, relative: str, text: str) -> Path:
        """A file under the run's directory (a prompt, an output), written atomically."""
        target = self.directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, text.encode("utf-8", "backslashreplace"), durable=False)
        return target
