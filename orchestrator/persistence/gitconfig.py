"""What orchestrate's own git commands read: the configuration as the run found it, nothing that
runs a program the agent could have chosen.

An agent writes where it can write at all. Under bubblewrap that is its work tree (a
`.gitattributes`, a repository of its own inside the tree); without it, also the repository's
`.git/config`, a worktree's `config.worktree`, hooks, the user's `~/.gitconfig`, a file the
repository's config includes. A setting there that names a program (a filter, diff or merge driver,
`core.fsmonitor`, `gpg.program`...) would run it from orchestrate's git, outside any sandbox and
with orchestrate's environment. So:

- every command turns off what orchestrate never needs and runs programs: fsmonitor, hooks, the
  pager, submodule recursion (SAFETY);
- the repository's own config files (under its git directory) are watched: changed since the
  baseline, they are put back before the next command reads them;
- every command carries the settings with a fixed name that run a program (`gpg.program`,
  `commit.gpgSign`, `core.pager`...) at their baseline value, or off: a file written after the
  check below and before git reads it changes none of them;
- any other config file changed since the baseline makes the next command list the configuration
  again, and every setting that names a program is pinned to its value at the baseline (or turned
  off when it had none) through GIT_CONFIG_COUNT (which, unlike `-c`, takes any subsection name);
  a driver whose name the agent chose (`filter.<name>.clean`) is pinned from then on;
- the repository's hooks are compared with the baseline when an attempt ends (orchestrate runs
  none, but the user's next `git commit` would); what was added or changed is put back;
- what changed is kept for `changes()`, which the runner reports as tampering.

The baseline is the configuration when the first command runs (one `git config --list` process
per repository and run); watching costs a few stat calls per command. Without bubblewrap an agent
is a process of the same user: it can still race a check, or edit files that are no git's
(`~/.bashrc`), which is why the sandbox is the boundary and this is the second line.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAFETY = (
    "--no-pager",
    "-c", "core.fsmonitor=false",
    "-c", "core.hooksPath=/dev/null",
    "-c", "submodule.recurse=false",
)  # fmt: skip
"""Given to every git command orchestrate runs: after the settings from files, so they win."""

_PROGRAM_SETTINGS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.DOTALL), off)
    for pattern, off in (
        (r"filter\..+\.(?:clean|smudge|process)", ""),
        (r"filter\..+\.required", "false"),
        (r"diff\..+\.(?:textconv|command)", ""),
        (r"diff\.external", ""),
        (r"merge\..+\.driver", ""),  # no program at all: git refuses the merge, nothing runs
        (r"merge\.default", "text"),
        (r"core\.fsmonitor", "false"),
        (r"core\.hookspath", "/dev/null"),
        (r"core\.(?:editor|askpass|gitproxy)|sequence\.editor", ""),
        (r"core\.pager|pager\..+", "cat"),
        (r"core\.sshcommand", "ssh"),
        (r"credential\.(?:.+\.)?helper", ""),
        (r"gpg\.(?:openpgp\.)?program", "gpg"),
        (r"gpg\.x509\.program", "gpgsm"),
        (r"gpg\.ssh\.program", "ssh-keygen"),
        (r"gpg\.ssh\.defaultkeycommand", ""),
        (r"(?:commit|tag)\.gpgsign", "false"),
        (r"remote\..+\.uploadpack", "git-upload-pack"),
        (r"remote\..+\.receivepack", "git-receive-pack"),
        (r"protocol\.allow", "user"),
        (r"protocol\..+\.allow", "never"),
    )
)
"""Settings that name a program git may run (or let one run), and what turns each off."""

_MULTI_VALUED = re.compile(r"credential\.(?:.+\.)?helper", re.DOTALL)
"""An empty value resets the list: the baseline's values follow it."""

_INCLUDE = re.compile(r"include\.path|includeif\..+\.path", re.DOTALL)

Signature = tuple[int, int, int, int] | None
"""(device, inode, size, mtime in ns) of a file, None when there is none."""


def _signature(path: Path) -> Signature:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def put_back(path: Path, data: bytes | None, mode: int = 0o644) -> None:
    """`path` holding `data` again (None: no file there), written aside and renamed over whatever
    is there now (a symlink is replaced, never followed; a directory is removed)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif data is None:
        path.unlink(missing_ok=True)
    if data is None:
        return
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".orchestrate", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        Path(temp).chmod(mode)
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Entry:
    """One line of `git config --list --show-scope --show-origin`."""

    scope: str
    origin: Path | None
    key: str
    value: str


def parse_listing(raw: str, root: Path) -> list[Entry]:
    """`git config --list --show-scope --show-origin -z`: scope, origin, then `key\\nvalue`."""
    fields = raw.split("\0")
    entries: list[Entry] = []
    for i in range(0, len(fields) - 2, 3):
        scope, origin, pair = fields[i], fields[i + 1], fields[i + 2]
        key, _, value = pair.partition("\n")
        path: Path | None = None
        if origin.startswith("file:"):
            path = Path(origin.removeprefix("file:"))
            path = path if path.is_absolute() else root / path
        entries.append(Entry(scope, path, key, value))
    return entries


def _digest(entry: Entry) -> str:
    return hashlib.sha256(f"{entry.key}\0{entry.value}".encode("utf-8", "surrogateescape")).hexdigest()


def _program_setting(key: str) -> str | None:
    """What turns `key` off, when it names a program; else None."""
    for pattern, off in _PROGRAM_SETTINGS:
        if pattern.fullmatch(key):
            return off
    return None


_ALWAYS_PINNED = (
    "core.fsmonitor", "core.hookspath", "core.editor", "core.askpass", "core.gitproxy",
    "sequence.editor", "core.pager", "core.sshcommand", "diff.external", "gpg.program",
    "gpg.openpgp.program", "gpg.x509.program", "gpg.ssh.program", "gpg.ssh.defaultkeycommand",
    "commit.gpgsign", "tag.gpgsign", "protocol.allow", "credential.helper",
)  # fmt: skip
"""Program settings with a fixed name: every command carries them at their baseline value (or
off), so that a config file written between the check before a command and git's read of it
(another task's agent, without bubblewrap, while this command lands a commit) cannot change them.
Settings whose name the agent chooses (`filter.<name>.clean`) can only be pinned once seen."""


def pins(baseline: list[Entry], now: list[Entry]) -> list[tuple[str, str]]:
    """(key, value) pairs that give every program setting with a fixed name its baseline value
    (the last one, as git reads it; off when it had none), and every other program setting whose
    values differ from the baseline its baseline value again, or turn it off."""

    def values(entries: list[Entry]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for entry in entries:
            if _program_setting(entry.key) is not None:
                found.setdefault(entry.key, []).append(entry.value)
        return found

    before, after = values(baseline), values(now)
    pinned: list[tuple[str, str]] = []
    for key in _ALWAYS_PINNED:
        was = before.get(key, [])
        if _MULTI_VALUED.fullmatch(key):
            pinned += [(key, ""), *((key, v) for v in was)]
        else:
            pinned.append((key, was[-1] if was else _program_setting(key) or ""))
    for key, current in after.items():
        was = before.get(key, [])
        if current == was or key in _ALWAYS_PINNED:
            continue
        if _MULTI_VALUED.fullmatch(key):
            pinned += [(key, ""), *((key, v) for v in was)]
        elif was:
            pinned.append((key, was[-1]))
        else:
            pinned.append((key, _program_setting(key) or ""))
    return pinned


def _included(entries: Iterable[Entry]) -> set[Path]:
    """The files `include.path` and `includeIf.*.path` name, whether or not they exist (yet)."""
    found: set[Path] = set()
    for entry in entries:
        if not _INCLUDE.fullmatch(entry.key) or not entry.value:
            continue
        path = Path(entry.value).expanduser()
        if not path.is_absolute() and entry.origin is not None:
            path = entry.origin.parent / path
        found.add(Path(os.path.normpath(path)))
    return found


def _user_config_files() -> set[Path]:
    """The global (and system) files git reads, whether they exist or not."""
    env = os.environ
    found: set[Path] = set()
    if env.get("GIT_CONFIG_GLOBAL"):
        found.add(Path(env["GIT_CONFIG_GLOBAL"]).expanduser())
    else:
        home = Path(env.get("HOME") or Path.home())
        xdg = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
        found |= {home / ".gitconfig", xdg / "git" / "config"}
    if not env.get("GIT_CONFIG_NOSYSTEM"):
        found.add(Path(env.get("GIT_CONFIG_SYSTEM") or "/etc/gitconfig"))
    return {Path(os.path.normpath(p)) for p in found}


@dataclass(frozen=True)
class _Hook:
    """A hook as the baseline found it: a file's bytes and mode, or a symlink's target."""

    data: bytes | None = None
    mode: int = 0o755
    link: str | None = None

    @staticmethod
    def of(path: Path) -> _Hook | None:
        try:
            if path.is_symlink():
                return _Hook(link=str(path.readlink()))
            with open(path, "rb") as f:
                return _Hook(data=f.read(), mode=path.stat().st_mode & 0o7777)
        except OSError:
            return None

    def digest(self) -> str:
        if self.link is not None:
            return f"link:{self.link}"
        return hashlib.sha256(self.data or b"").hexdigest()

    def restore(self, path: Path) -> None:
        if self.link is not None:
            put_back(path, None)
            path.symlink_to(self.link)
        else:
            put_back(path, self.data, self.mode)


class ConfigGuard:
    """The configuration baseline of one repository, shared by its worktrees (see the module)."""

    def __init__(self, root: Path, common_dir: Path, git_dir: Path, lister: Callable[[], list[Entry]]):
        self._root = root
        self._common = common_dir
        self._list = lister
        self._lock = threading.Lock()
        self._started = False
        self._baseline: list[Entry] = []
        self._pins: tuple[tuple[str, str], ...] = ()
        self._own: dict[Path, bytes | None] = dict.fromkeys(
            (common_dir / "config", common_dir / "config.worktree", git_dir / "config.worktree")
        )
        """Config files under the git directory, with their bytes at the baseline."""
        self._others: set[Path] = set()
        self._known: dict[Path, Signature] = {}
        """Every watched file as last seen."""
        self._dirs: dict[Path, Signature] = dict.fromkeys((common_dir, git_dir))
        self._hooks: dict[str, _Hook] = {}
        self._hooks_seen: dict[str, Signature] = {}
        """The hooks folder as last seen: a hook is read again only when this changed."""
        self._changes: list[tuple[Path, str]] = []
        """What was changed in which file (or folder), not yet taken by `changes`."""

    # -- the baseline ----------------------------------------------------------------------

    def _start(self) -> None:
        self._started = True
        for path in self._own:
            self._own[path] = _read(path)
        self._baseline = self._list()
        self._sort(self._baseline)
        self._pins = tuple(pins(self._baseline, self._baseline))
        self._known = {path: _signature(path) for path in [*self._own, *self._others]}
        self._dirs = {path: _signature(path) for path in self._dirs}
        self._hooks = {p.name: hook for p in _files(self._common / "hooks") if (hook := _Hook.of(p))}
        self._hooks_seen = _listing_of(self._common / "hooks")

    def _sort(self, entries: list[Entry]) -> None:
        """Files under the git directory are put back when changed; any other is listed again."""
        files = {e.origin for e in entries if e.origin is not None}
        files |= _included(entries) | _user_config_files()
        for path in files:
            if path.is_relative_to(self._common):
                self._own.setdefault(path, _read(path))
            else:
                self._others.add(path)

    def watch(self, path: Path, absent: bool = False) -> None:
        """Also keep `path` (a worktree's config.worktree) as it is now, or `absent`: then one
        there now is put back (removed) at the next command."""
        with self._lock:
            if not self._started:
                self._start()
            if path not in self._own:
                self._own[path] = None if absent else _read(path)
                self._known[path] = None if absent else _signature(path)

    def forget(self, path: Path) -> None:
        with self._lock:
            self._own.pop(path, None)
            self._known.pop(path, None)

    # -- before each command ---------------------------------------------------------------

    def check(self) -> tuple[tuple[str, str], ...]:
        """The pins the next command needs, after putting back what changed (see the module)."""
        with self._lock:
            if not self._started:
                self._start()
            if all(_signature(path) == seen for path, seen in self._known.items()):
                return self._pins
            for path, data in self._own.items():
                if _signature(path) != self._known.get(path) and _read(path) != data:
                    try:
                        put_back(path, data)
                        self._changes.append((path, f"{self._name(path)} was changed (put back)"))
                    except OSError as exc:
                        self._changes.append(
                            (path, f"{self._name(path)} was changed (cannot put it back: {exc})")
                        )
                self._known[path] = _signature(path)
            moved = sorted(p for p in self._others if _signature(p) != self._known.get(p))
            if moved:
                now = self._list()
                self._sort(now)
                self._pins = tuple(pins(self._baseline, now))
                self._changes += [
                    (p, f"{self._name(p)} was changed (what it says to run, orchestrate's git does not)")
                    for p in moved
                ]
                self._known.update({path: _signature(path) for path in [*self._own, *self._others]})
            return self._pins

    # -- across a resume -------------------------------------------------------------------

    def record(self) -> dict[str, Any]:
        """What a resume of this run holds git's files to, as this run found them: the settings
        that name programs, the names of the repository's own settings, the hooks. Digests and
        names only: a value may hold a secret (a token in a credential helper, in a remote's URL),
        and this goes to the journal."""
        with self._lock:
            if not self._started:
                self._start()
            return {
                "settings": sorted(
                    {_digest(e) for e in self._baseline if _program_setting(e.key) is not None}
                ),
                "keys": sorted({e.key for e in self._baseline if self._ours(e)}),
                "hooks": {name: hook.digest() for name, hook in self._hooks.items()},
            }

    def resume(self, recorded: Mapping[str, Any], unset: Callable[[Path, str, str], None]) -> list[str]:
        """Hold git's files to what the run found when it started (`recorded`, from `record`), not
        to how a kill left them: a setting that names a program and was not there then is removed
        from the repository's own config files (`unset(file, key, value)`), pinned off where it is
        in another; a hook added since is removed. Returns what was changed, in words."""
        with self._lock:
            if not self._started:
                self._start()
            then = set(recorded.get("settings", []))
            found: list[str] = []
            edited = False
            keys = set(recorded.get("keys", []))
            for entry in self._baseline:
                where = self._name(entry.origin) if entry.origin is not None else entry.scope
                if _program_setting(entry.key) is None:
                    # Said, not undone: it runs nothing, and may be the user's (a remote added).
                    if self._ours(entry) and entry.key not in keys:
                        found.append(f"{where}: {entry.key} was set since the run started (left as it is)")
                    continue
                if _digest(entry) in then:
                    continue
                if entry.origin is not None and self._ours(entry):
                    unset(entry.origin, entry.key, entry.value)
                    edited = True
                    found.append(f"{where}: {entry.key} was set since the run started (removed)")
                else:
                    found.append(f"{where}: {entry.key} was set since the run started (not run)")
            now = self._list() if edited else self._baseline
            # From now on, what the run found (what is still here of it) is the baseline: any other
            # value is pinned off.
            self._baseline = [e for e in now if _program_setting(e.key) is None or _digest(e) in then]
            self._pins = tuple(pins(self._baseline, now))
            self._sort(now)
            for path in self._own:
                self._own[path] = _read(path)
            self._known = {path: _signature(path) for path in [*self._own, *self._others]}
            hooks = self._common / "hooks"
            digests = recorded.get("hooks", {})
            added = sorted(name for name in self._hooks if name not in digests)
            changed = sorted(
                n for n, hook in self._hooks.items() if n in digests and hook.digest() != digests[n]
            )
            for name in added:
                put_back(hooks / name, None)
                del self._hooks[name]
            if added:
                found.append(
                    f"hooks added in {self._name(hooks)} since the run started (removed): {', '.join(added)}"
                )
            if changed:
                found.append(
                    f"hooks changed in {self._name(hooks)} since the run started: {', '.join(changed)}"
                )
            return found

    # -- when an attempt ends --------------------------------------------------------------

    def changes(self, which: Callable[[Path], bool]) -> list[str]:
        """What was changed in git's own files, each put back where it can be (the config files,
        checked now, the hooks and the git directories themselves), in the files `which` accepts;
        those are not said again."""
        self.check()
        with self._lock:
            for path, seen in self._dirs.items():
                now = _signature(path)
                if seen is not None and (now is None or now[:2] != seen[:2]):
                    self._changes.append((path, f"the git directory {path} was replaced"))
                    self._dirs[path] = now
            hooks = self._common / "hooks"
            listing = _listing_of(hooks)
            names = set(listing) | set(self._hooks) if listing != self._hooks_seen else set()
            touched: dict[str, list[str]] = {}
            for name in sorted(names):
                want = self._hooks.get(name)
                if _Hook.of(hooks / name) == want:
                    continue
                try:
                    if want is None:
                        put_back(hooks / name, None)
                    else:
                        want.restore(hooks / name)
                    how = "added (removed)" if want is None else "changed (put back)"
                except OSError as exc:
                    how = f"{'added' if want is None else 'changed'} (cannot undo it: {exc})"
                touched.setdefault(how, []).append(name)
            self._changes += [
                (hooks, f"hooks {how} in {self._name(hooks)}: {', '.join(names)}")
                for how, names in touched.items()
            ]
            self._hooks_seen = _listing_of(hooks)
            found = [text for path, text in self._changes if which(path)]
            self._changes = [(path, text) for path, text in self._changes if not which(path)]
            return found

    def _ours(self, entry: Entry) -> bool:
        """Whether `entry` is in one of the repository's own config files (under its git directory)."""
        return entry.origin is not None and entry.origin.is_relative_to(self._common)

    def _name(self, path: Path) -> str:
        """`path` as the user knows it: relative to the repository when inside it."""
        return str(path.relative_to(self._root)) if path.is_relative_to(self._root) else str(path)


def _listing_of(folder: Path) -> dict[str, Signature]:
    """Each file's (or symlink's own) signature in `folder`, by name."""
    found: dict[str, Signature] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                found[entry.name] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        pass
    return found


def _files(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_file() or p.is_symlink()]
    except OSError:
        return []
