"""Tick and untick a task: one byte per box of the unit (its own, its steps'), written atomically.

The file is re-read and re-parsed before every write, and the task found again by id, so
an edit made by hand since the plan was loaded is kept as long as the task is still
there; if it is gone (or, with `expected`, its text changed) the write is refused with
PlanChangedError. Line endings, front matter, a missing final newline and every other byte
survive because nothing but the box character is touched.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from orchestrator.domain.plan import Plan, Task
from orchestrator.errors import OutOfSpace, PlanChangedError, PlanError, out_of_space
from orchestrator.planfile.parser import parse_bytes, read_plan_bytes, with_documents

_BOX_CHARACTERS = b" xX/-"


def with_box(data: bytes, task: Task, done: bool) -> bytes:
    """`data` with every box of `task` set (its own and its steps', one byte each); the same object
    when they all already say so, or when the unit has no box (it is done by its commit's trailer)."""
    updated = data
    for offset in task.box_offsets:
        updated = _with_one_box(updated, offset, task, done)
    return updated


def _with_one_box(data: bytes, offset: int, task: Task, done: bool) -> bytes:
    if (
        not (0 < offset < len(data) - 1)
        or data[offset - 1 : offset] != b"["
        or data[offset + 1 : offset + 2] != b"]"
    ):
        raise PlanChangedError(
            f"the checkbox of task {task.id} is no longer at byte {offset}; re-read the plan",
            line=task.line,
        )
    current = data[offset : offset + 1]
    if current not in [bytes([c]) for c in _BOX_CHARACTERS]:
        raise PlanChangedError(f"task {task.id} has no checkbox at byte {offset}", line=task.line)
    if done:
        wanted = current if current in (b"x", b"X") else b"x"
    else:
        wanted = b" "
    if wanted == current:
        return data
    return data[:offset] + wanted + data[offset + 1 :]


def set_box(path: Path, task_id: str, done: bool, *, expected: Task | None = None) -> Plan:
    """Tick (or untick) `task_id` in the plan file and return the plan as now written.

    Idempotent: a box that already says so is not rewritten. With `expected`, the task must
    still have that title, so a task whose text changed since it was read is not ticked.
    """
    target = path.resolve()
    data = read_plan_bytes(target)
    plan = with_documents(parse_bytes(data, path), data, path)
    task = plan.task(task_id)
    if task is None:
        raise PlanChangedError(
            f"task {task_id} is no longer in the plan (it was edited since it was read); "
            "check the plan and run again",
            path=path,
        )
    if expected is not None and task.title != expected.title:
        raise PlanChangedError(
            f"task {task_id} changed since it was read ({expected.title!r} is now {task.title!r}); "
            "check the plan and run again",
            path=path,
            line=task.line,
        )
    try:
        updated = with_box(data, task, done)
    except PlanChangedError as exc:
        raise PlanChangedError(exc.message, path=path, line=task.line) from exc
    if updated is data:
        return plan
    atomic_write(target, updated)
    return with_documents(parse_bytes(updated, path), updated, path)


def atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same directory, flush + fsync, os.replace, fsync the directory. A disk
    full (or a quota, or a file-size limit) is an OutOfSpace error, any other refusal (a read-only
    file system, permissions) a PlanError; the plan as it was."""
    try:
        _atomic_write(path, data)
    except OSError as exc:
        if not out_of_space(exc):
            raise PlanError(f"cannot write the plan: {exc.strerror or exc}", path=path) from exc
        why = f"cannot write the plan: {exc.strerror}; make room, then try again"
        raise OutOfSpace(why, path=path) from exc


def _atomic_write(path: Path, data: bytes) -> None:
    directory = path.parent
    try:
        found = path.lstat()
    except FileNotFoundError:
        found = None
    # The mode of the file replaced; not of what a link or a FIFO left in its place points at.
    mode = stat.S_IMODE(found.st_mode) if found is not None and stat.S_ISREG(found.st_mode) else None
    # The name's head only: a plan named as long as the file system allows leaves no room for more.
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=directory)
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        if mode is not None:
            temp.chmod(mode)
        temp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
