"""File tools a sub-agent may use: read, write, edit, list, search. Every path goes through the Workspace.

Each function returns the text the model sees and raises ToolError (or OutsideWorkspace) with a
message the model can act on; the caller turns those into is_error tool results. None of them
reads, writes or walks into `.git` or the paths the workspace hides (the run's own state).

Only regular files are read or written (see orchestrator.input_files): a FIFO the agent made would
block the agent loop on open until someone came to its other end, and a device such as /dev/zero
never ends; reads stop at FILE_LIMIT. list and search go past anything else.
"""

from __future__ import annotations

import os
import re
import stat
from fnmatch import fnmatch
from pathlib import Path

from orchestrator.input_files import MB, NotReadable, megabytes, read_regular_file
from orchestrator.tools.workspace import HiddenPath, OutsideWorkspace, Workspace

READ_LIMIT = 60_000
"""Characters one read returns; the model asks for a line range to see more."""
FILE_LIMIT = 10 * MB
"""Bytes of a file read or searched (held whole in memory); a bigger one is refused, or skipped."""
LIST_LIMIT = 500
SEARCH_LIMIT = 200
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
"""Opening never blocks (a FIFO without a reader fails at once) nor follows a link put at the name."""
# Version-control internals are never the agent's to read or touch: orchestrate owns the commits,
# and what git runs is configured there.
_PRIVATE_NAMES = {".git"}
_SKIPPED_DIRS = {
    ".git",
    "node_modules",
    "__pycache__",
    ".venv",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
}


class ToolError(ValueError):
    """A tool could not do what was asked; the message goes back to the model."""


def _is_private(ws: Workspace, path: Path) -> bool:
    return path != ws.root and bool(_PRIVATE_NAMES & set(path.relative_to(ws.root).parts))


def agent_path(ws: Workspace, path: str) -> Path:
    """The resolved path the agent named, refused when outside the workspace, hidden, or in .git
    (OutsideWorkspace, HiddenPath, ToolError): every agent's file access goes through it, the
    scripted agent's steps included."""
    target = ws.resolve(path)
    if _is_private(ws, target):
        raise ToolError(f"{path} is inside .git, which only orchestrate reads and changes")
    return target


def _shown(ws: Workspace, entry: Path) -> bool:
    """Whether a walk may show `entry` (found below a shown directory, not followed): not a name
    in .git's place, not a link into .git or a hidden path, and not a FIFO, a socket or a device.
    A link pointing out of the workspace is shown by name, and refused when opened."""
    if entry.name in _PRIVATE_NAMES or ws.hides(entry):
        return False
    try:
        mode = entry.lstat().st_mode
    except OSError:
        return False  # gone meanwhile
    if not stat.S_ISLNK(mode):
        return stat.S_ISREG(mode) or stat.S_ISDIR(mode)
    try:
        return not _is_private(ws, ws.resolve(entry))
    except HiddenPath:
        return False
    except OutsideWorkspace:
        return True


def _bytes_of(path: Path, shown: str) -> bytes:
    """The file's bytes, read only when it is a regular file within FILE_LIMIT (opened without
    blocking); ToolError saying why not."""
    try:
        hint = "look at parts of it with run_command (head, sed -n, grep)"
        return read_regular_file(path, what="text", limit=FILE_LIMIT, hint=hint)
    except NotReadable as exc:
        raise ToolError(f"{shown}: {exc.message}") from None


def _text_of(path: Path, shown: str) -> str:
    if not path.exists():
        raise ToolError(f"no such file: {shown}")
    if path.is_dir():
        raise ToolError(f"{shown} is a directory; use list_dir")
    data = _bytes_of(path, shown)
    if b"\0" in data[:8192]:
        raise ToolError(f"{shown} looks like a binary file ({len(data)} bytes); not shown")
    # newline="" semantics: keep CRLF as it is so that edits write back what was there.
    return data.decode("utf-8", errors="replace")


def read_file(ws: Workspace, path: str, start_line: int | None = None, end_line: int | None = None) -> str:
    """The file's lines, numbered from 1 (the numbers and the tab after them are not part of the file)."""
    target = agent_path(ws, path)
    lines = _text_of(target, path).splitlines(keepends=True)
    if not lines:
        return f"{path} is empty"
    first = max(1, start_line or 1)
    last = min(len(lines), end_line or len(lines))
    if first > len(lines):
        raise ToolError(f"{path} has {len(lines)} lines; start_line {first} is past the end")
    if last < first:
        raise ToolError(f"end_line {last} is before start_line {first}")
    out: list[str] = []
    size = 0
    for number in range(first, last + 1):
        line = f"{number:6}\t{lines[number - 1].rstrip(chr(10)).rstrip(chr(13))}\n"
        if size + len(line) > READ_LIMIT:
            out.append(
                f"[... output stopped at line {number - 1} of {len(lines)}; "
                f"read on with start_line={number} ...]\n"
            )
            break
        out.append(line)
        size += len(line)
    else:
        if first > 1 or last < len(lines):
            out.append(f"[lines {first}-{last} of {len(lines)}]\n")
    return "".join(out)


def write_file(ws: Workspace, path: str, content: str) -> str:
    """Create or overwrite a file (parent directories are created)."""
    target = agent_path(ws, path)
    if target.is_dir():
        raise ToolError(f"{path} is a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_regular(target, path, content)
    return f"wrote {len(content.encode('utf-8'))} bytes to {ws.relative(target)}"


def write_regular(target: Path, shown: str, text: str, *, append: bool = False) -> None:
    """Write (or append) `text` to `target` (resolved: no link in it), a regular file or none yet;
    ToolError for anything else (a FIFO, a device), found without blocking on it."""
    try:
        _refuse_unless_regular(os.lstat(target).st_mode, shown)  # a FIFO: open would say ENXIO
    except FileNotFoundError:
        pass
    flags = (_WRITE_FLAGS & ~os.O_TRUNC) | os.O_APPEND if append else _WRITE_FLAGS
    fd = os.open(target, flags, 0o666)
    try:
        _refuse_unless_regular(os.fstat(fd).st_mode, shown)  # what was there when it was opened
        stream = os.fdopen(fd, "w", encoding="utf-8", newline="")
    except BaseException:
        os.close(fd)
        raise
    with stream:
        stream.write(text)


def _refuse_unless_regular(mode: int, shown: str) -> None:
    if not stat.S_ISREG(mode):
        raise ToolError(f"{shown}: is not a regular file ({_kind(mode)}); write a regular file")


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file"


def edit_file(ws: Workspace, path: str, old_string: str, new_string: str, replace_all: bool = False) -> str:
    """Replace `old_string`, which must occur exactly once unless replace_all is set."""
    target = agent_path(ws, path)
    text = _text_of(target, path)
    if not old_string:
        raise ToolError("old_string is empty; use write_file to create a file")
    if old_string == new_string:
        raise ToolError("old_string and new_string are the same; nothing to change")
    count = text.count(old_string)
    if count == 0:
        hint = ""
        if "\r\n" in text and "\n" in old_string and "\r\n" not in old_string:
            hint = " (the file uses CRLF line endings)"
        raise ToolError(f"old_string not found in {path}{hint}; read the file and copy the text exactly")
    if count > 1 and not replace_all:
        raise ToolError(
            f"old_string occurs {count} times in {path}; include more context to make it unique, "
            "or set replace_all"
        )
    updated = text.replace(old_string, new_string) if replace_all else text.replace(old_string, new_string, 1)
    write_regular(target, path, updated)
    return f"replaced {count if replace_all else 1} occurrence(s) in {ws.relative(target)}"


def list_dir(ws: Workspace, path: str = ".", recursive: bool = False) -> str:
    """Entries of a directory, directories with a trailing slash; .git, caches and hidden paths left out."""
    target = agent_path(ws, path)
    if not target.is_dir():
        raise ToolError(f"{path} is not a directory" if target.exists() else f"no such directory: {path}")
    entries: list[str] = []
    for current, dirs, files in os.walk(target):
        base = Path(current)
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and _shown(ws, base / d))
        shown_files = sorted(f for f in files if _shown(ws, base / f))
        for name in [*(d + "/" for d in dirs), *shown_files]:
            # Lexically relative: a link pointing out is listed by name, and refused when opened.
            entries.append(
                (base / name).relative_to(ws.root).as_posix() + ("/" if name.endswith("/") else "")
            )
            if len(entries) >= LIST_LIMIT:
                entries.append(f"[... stopped at {LIST_LIMIT} entries; list a subdirectory ...]")
                return "\n".join(entries)
        if not recursive:
            break
    return "\n".join(entries) if entries else f"{path} is empty"


def _files_under(ws: Workspace, start: Path) -> list[Path]:
    """The files a search reads below `start` (or `start` itself): links resolved, and what the
    walk may not show (see _shown) left out."""
    if start.is_file():
        return [start]
    found: list[Path] = []
    for current, dirs, files in os.walk(start):
        base = Path(current)
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and _shown(ws, base / d))
        for name in sorted(files):
            if not _shown(ws, base / name):
                continue
            try:
                resolved = ws.resolve(base / name)
            except OutsideWorkspace:
                continue  # a symlink pointing out or into the run's state: not ours to show
            if not _is_private(ws, resolved):
                found.append(resolved)
    return found


def search(ws: Workspace, pattern: str, path: str = ".", glob: str | None = None) -> str:
    """Lines matching a regular expression, as `path:line: text`."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ToolError(f"invalid regular expression {pattern!r}: {exc}") from exc
    start = agent_path(ws, path)
    if not start.exists():
        raise ToolError(f"no such file or directory: {path}")
    hits: list[str] = []
    too_big = 0
    for file in _files_under(ws, start):
        relative = ws.relative(file)
        if glob and not (fnmatch(relative, glob) or fnmatch(file.name, glob)):
            continue
        try:
            data = read_regular_file(file, what="text", limit=FILE_LIMIT)
        except NotReadable:  # not a regular file (a link to a FIFO), gone, or too big
            too_big += _size(file) > FILE_LIMIT
            continue
        if b"\0" in data[:8192]:
            continue
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
            if regex.search(line):
                hits.append(f"{relative}:{number}: {line[:300]}")
                if len(hits) >= SEARCH_LIMIT:
                    hits.append(f"[... stopped at {SEARCH_LIMIT} matches; narrow the pattern or path ...]")
                    return "\n".join(hits)
    skipped = f"\n[{too_big} file(s) over {megabytes(FILE_LIMIT)} not searched]" if too_big else ""
    return ("\n".join(hits) if hits else f"no match for {pattern!r}") + skipped


def _size(path: Path) -> int:
    try:
        status = path.stat()
    except OSError:
        return 0
    return status.st_size if stat.S_ISREG(status.st_mode) else 0
