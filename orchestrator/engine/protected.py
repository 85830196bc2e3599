"""What no agent, and no check an agent wrote, may change in the tree, and how such a change is put
back (the runner's guard decides when; see runner.Runner._undo_forbidden).

- `protected_paths` (globs; config.always_protected adds what a later run reads and trusts).
- pyproject.toml's `[tool.orchestrate]` table, where the file as a whole is not protected: in a
  repository with no settings file, a table added there is what the next run or resume would read
  (`sandbox = "none"`, verification commands of the agent's choosing). A change of the table
  (added, changed, removed) is put back alone when that can be done byte for byte, else the whole
  file's change is; tasks edit the rest of the file for their own reasons.
- The plan, put back without following a link on its way: an agent can put a link in place of the
  plan's folder, and a write through it lands outside the workspace.
"""

from __future__ import annotations

import difflib
import errno
import os
import re
import shutil
import stat
import tomllib
from collections.abc import Iterable
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

from orchestrator.input_files import SETTINGS_LIMIT, NotReadable, read_regular_file
from orchestrator.persistence.journal import write_new

TABLE = ("tool", "orchestrate")
TABLE_NAME = "[tool.orchestrate]"


def matching(paths: Iterable[str], globs: Iterable[str]) -> list[str]:
    """The paths one of the protected globs matches."""
    globs = list(globs)
    return [p for p in paths if any(fnmatch(p, g) for g in globs)]


# -- pyproject.toml's [tool.orchestrate] ---------------------------------------------------


class _Unreadable:
    """A pyproject.toml the next run would refuse (not UTF-8, not TOML, over the size limit): it
    reads no settings from it, so no change of it widens anything."""


UNREADABLE = _Unreadable()
ABSENT = object()
"""No table: the next run takes no settings from pyproject.toml."""


def settings_table(data: bytes | None) -> object:
    """What config.read_config would take from a pyproject.toml holding `data` (None: no regular
    file there): the table's value, ABSENT, or UNREADABLE."""
    if data is None:
        return ABSENT
    parsed = _parsed(data)
    if parsed is None:
        return UNREADABLE
    tool = parsed.get(TABLE[0])
    if not isinstance(tool, dict) or TABLE[1] not in tool:
        return ABSENT
    return tool[TABLE[1]]


def table_changed(before: bytes | None, now: bytes | None) -> bool:
    """Whether the settings a later run would read from pyproject.toml differ between `before`
    (the commit the workspace started from) and `now` (the tree)."""
    old, new = settings_table(before), settings_table(now)
    if old is UNREADABLE or new is UNREADABLE:
        return False  # a file the next run refuses gives it no settings either way
    return old != new


def with_table_of(before: bytes | None, now: bytes) -> bytes | None:
    """`now` with its [tool.orchestrate] table as `before` has it (none when `before` has none),
    every other byte as it is; None when that cannot be done exactly (the table written as dotted
    keys or inline, an edit of the rest next to the table's, a header inside a multi-line string).

    First the tree's edits are taken hunk by hunk, but those that touch the table; else section by
    section. Either result must read back as `before`'s table and `now`'s everything else."""
    for candidate in (_by_hunks(before or b"", now), _by_sections(before or b"", now)):
        if _reads_as(candidate, before, now):
            return candidate
    return None


def _by_hunks(before: bytes, now: bytes) -> bytes:
    """`before` with every hunk of the diff to `now` applied but those touching the table."""
    old, new = before.splitlines(keepends=True), now.splitlines(keepends=True)
    old_table, new_table = _table_lines(old), _table_lines(new)
    out: list[bytes] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        touches = tag != "equal" and (
            any(i in old_table for i in range(i1, i2)) or any(j in new_table for j in range(j1, j2))
        )
        out += old[i1:i2] if touches else new[j1:j2]
    return b"".join(out)


def _table_lines(lines: list[bytes]) -> set[int]:
    """The indices of the lines in the table's sections, their headers included."""
    inside = False
    found: set[int] = set()
    for n, line in enumerate(lines):
        header = _HEADER.match(line)
        if header is not None:
            inside = _is_table(_key(header.group(1)))
        if inside:
            found.add(n)
    return found


def _by_sections(before: bytes, now: bytes) -> bytes:
    """`now`'s sections, its table's replaced by `before`'s (put where the first of them was, or
    where `before` had them)."""
    old = _sections(before)
    new = _sections(now)
    wanted = [s for s in old if _is_table(s[0])]
    kept: list[tuple[tuple[str, ...] | None, bytes]] = []
    placed = False
    for section in new:
        if not _is_table(section[0]):
            kept.append(section)
        elif not placed:
            kept.extend(wanted)
            placed = True
    if not placed and wanted:
        # Removed from the tree: back after the section it followed, or at the end.
        first = next(n for n, s in enumerate(old) if _is_table(s[0]))
        after = old[first - 1][0] if first > 0 else None
        at = next((n + 1 for n, s in enumerate(kept) if first > 0 and s[0] == after), len(kept))
        kept[at:at] = wanted
    pieces = [text for _, text in kept]
    for n in range(len(pieces) - 1):
        if pieces[n] and not pieces[n].endswith(b"\n"):
            pieces[n] += b"\n"  # a section that ended the file now has one after it
    return b"".join(pieces)


def _reads_as(candidate: bytes, before: bytes | None, now: bytes) -> bool:
    """Whether `candidate` holds `before`'s table and `now`'s everything else."""
    parsed, parsed_now = _parsed(candidate), _parsed(now)
    if parsed is None or parsed_now is None or settings_table(candidate) != settings_table(before):
        return False
    return _without_table(parsed) == _without_table(parsed_now)


_HEADER = re.compile(rb"^[ \t]*\[\[?([^\[\]\r\n]*)\]\]?[ \t]*(#[^\r\n]*)?\r?\n?$")
_KEY_PART = re.compile(r"""\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*""")


def _sections(data: bytes) -> list[tuple[tuple[str, ...] | None, bytes]]:
    """The file as (header key, text) pieces: what comes before the first header (key None), then
    each table header with the lines up to the next header."""
    pieces: list[tuple[tuple[str, ...] | None, bytes]] = []
    key: tuple[str, ...] | None = None
    lines: list[bytes] = []
    for line in data.splitlines(keepends=True):
        header = _HEADER.match(line)
        if header is not None:
            if lines or pieces:
                pieces.append((key, b"".join(lines)))
            key, lines = _key(header.group(1)), []
        lines.append(line)
    if lines or not pieces:
        pieces.append((key, b"".join(lines)))
    return pieces


def _key(raw: bytes) -> tuple[str, ...]:
    text = raw.decode("utf-8", errors="replace")
    parts: list[str] = []
    for piece in text.split("."):
        matched = _KEY_PART.fullmatch(piece)
        parts.append(matched.group(1).strip("\"'") if matched else piece)
    return tuple(parts)


def _is_table(key: tuple[str, ...] | None) -> bool:
    return key is not None and key[:2] == TABLE


def _parsed(data: bytes) -> dict[str, Any] | None:
    if len(data) > SETTINGS_LIMIT:
        return None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None


def _without_table(parsed: dict[str, Any]) -> dict[str, Any]:
    tool = parsed.get(TABLE[0])
    if not isinstance(tool, dict) or TABLE[1] not in tool:
        return parsed
    rest = {k: v for k, v in tool.items() if k != TABLE[1]}
    return {k: v for k, v in parsed.items() if k != TABLE[0]} | ({TABLE[0]: rest} if rest else {})


def settings_bytes(root: Path, name: str) -> bytes | None:
    """The tree's settings file `name` as config.read_config would read it (a link followed),
    without ever blocking; None for no regular file within the settings limit."""
    try:
        return read_regular_file(root / name, what="settings", limit=SETTINGS_LIMIT)
    except NotReadable:
        return None


def is_regular_file(path: Path) -> bool:
    """A regular file at `path` itself (a link there is not)."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


# -- the plan ----------------------------------------------------------------------------------

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_REPLACED = {errno.ELOOP, errno.ENOTDIR}
"""What opening a folder without following a link says when a link or a file is in its place."""


def put_back(root: Path, relative: str, data: bytes | None, limit: int) -> tuple[bool, list[str]]:
    """Make `root/relative` hold `data` (None: no file there) if it does not, never following a
    link: a link or a file in the place of one of its folders is removed (and said, in words, in
    the list returned), and so is one at its own name. Returns whether anything was put back."""
    parts = PurePosixPath(relative).parts
    said: list[str] = []
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for n, part in enumerate(parts[:-1]):
            shown = "/".join(parts[: n + 1])
            try:
                inner = os.open(part, _DIRECTORY, dir_fd=fd)
            except FileNotFoundError:
                if data is None:
                    return False, said
                os.mkdir(part, 0o777, dir_fd=fd)
                inner = os.open(part, _DIRECTORY, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in _REPLACED:
                    raise
                os.unlink(part, dir_fd=fd)  # the link itself, never what it points to
                said.append(f"{shown} was replaced by a link or a file (removed)")
                if data is None:
                    return True, said
                os.mkdir(part, 0o777, dir_fd=fd)
                inner = os.open(part, _DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        name = parts[-1]
        current = _read_regular(fd, name, limit)  # None for anything but a regular file
        try:
            mode: int | None = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            mode = None
        if (data is None and mode is None) or (data is not None and current == data):
            return bool(said), said
        if mode is not None and stat.S_ISDIR(mode):
            shutil.rmtree(name, dir_fd=fd)
        elif mode is not None and data is None:
            os.unlink(name, dir_fd=fd)
        if data is not None:
            write_new(fd, name, data, durable=True)  # a file or a link at the name is replaced
        return True, said
    finally:
        os.close(fd)


def _read_regular(directory: int, name: str, limit: int) -> bytes | None:
    """The bytes of regular file `name` in `directory` within `limit`; None for anything else (no
    file, a link, a FIFO, a device, too big), found without blocking."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=directory)
    except OSError:
        return None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode) or status.st_size > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        return None
    except OSError:
        return None
    finally:
        os.close(fd)
