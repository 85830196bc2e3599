"""The git repository a run works in, through subprocess git (fast, and nothing to leak).

Everything the engine needs from git goes through GitRepo: where the repository is, whether its
tree is clean, which branch it is on, snapshots of the work tree as tree objects, refs that keep
interrupted edits, commits with trailers, and finding a task's commit again by its trailer.

Every git command names its git directory, work tree and common directory (GIT_DIR, GIT_WORK_TREE,
GIT_COMMON_DIR): a worktree's git directory is the one orchestrate made for it (or, on resume, the
one whose `gitdir` file git itself keeps under `worktrees/`), never what the worktree's `.git` file
says, which the agent can rewrite. What git runs on its own (fsmonitor, hooks, filters, drivers,
signing programs) is as persistence/gitconfig.py says; `undo_tampering` puts back, when an attempt
ends, what the agent changed in git's files.

Why not GitPython (the design card named it; it was dropped, measured with GitPython 3.2.1 and git
2.x on the project's 2-core machine):
- safety: `import git` runs `git version` twice before any of our code can give it SAFETY (see
  gitconfig.py), and `Repo(worktree)` follows the worktree's `.git` file, which the agent can point
  at a git directory of its own (tried: `Repo.git_dir` was then the agent's). Every git process
  orchestrate starts must carry the settings (tests/test_layers.py checks it by running them);
- processes: reading the trailers of N commits takes 1 + N processes (`rev-list`, then one
  `interpret-trailers --parse` per commit) where `git log --format=%(trailers...)` takes 1; `is_dirty`
  plus `untracked_files` take 4 (two diffs, two statuses) where one `git status -z` does it all;
- time: importing it adds 60-105 ms to a command that imports in about 500 ms.
What it would read better (identity, status, branches) is a few lines of argv here.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from orchestrator.errors import PreflightError
from orchestrator.persistence import gitfiles
from orchestrator.persistence.gitconfig import SAFETY, ConfigGuard, Entry, parse_listing, put_back

TASK_TRAILER = "Orchestrate-Task"
RUN_TRAILER = "Orchestrate-Run"


_WHERE = ("--git-dir", "--git-common-dir")
_NO_PROGRAMS = ("--no-ext-diff", "--no-textconv")
_SUBMODULE_PATH = re.compile(r"^\s*path\s*=\s*(.+?)\s*$", re.MULTILINE | re.IGNORECASE)


def _lstat_mode(path: Path) -> int:
    try:
        return path.lstat().st_mode
    except OSError:
        return 0


def _real_directory(root: Path, relative: str) -> bool:
    """Whether `root/relative` is a directory with no link on the way: git looks into nothing
    else for a nested repository (it takes a link for a link), and orchestrate follows none."""
    here = root
    for part in Path(relative).parts:
        here = here / part
        if not stat.S_ISDIR(_lstat_mode(here)):
            return False
    return True


def _marker(path: Path) -> bytes | None:
    """What a `.git` entry is, for comparison: a file's bytes, b"<dir>" or b"<link>..." else,
    None when there is none."""
    try:
        if path.is_symlink():
            return b"<link>" + os.fsencode(path.readlink())
        if path.is_dir():
            return b"<dir>"
        with open(path, "rb") as f:
            return f.read(4096)
    except OSError:
        return None


class GitError(PreflightError):
    """A git command failed where it should not have; the message carries git's own words."""


@dataclass(frozen=True)
class TrailerCommit:
    sha: str
    task_id: str
    run_id: str


@dataclass(frozen=True)
class CommitFacts:
    """A commit as the audit and the run report read it: its subject and every trailer."""

    sha: str
    subject: str
    trailers: dict[str, list[str]]
    """Trailer key -> its values, in the order the message gives them."""

    def trailer(self, key: str) -> str | None:
        """The first value of `key` (compared case-insensitively, as git does), or None."""
        for name, values in self.trailers.items():
            if name.lower() == key.lower() and values:
                return values[0]
        return None


_SHA = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")


@dataclass(frozen=True)
class Tampering:
    """What undo_tampering found and put back, in words."""

    here: list[str]
    """In the work tree's own git files: its agent's doing."""
    shared: list[str]
    """In the repository's config and hooks, or the user's config: any agent at work may have
    changed them (in a serial run, the one whose attempt just ended)."""

    def __bool__(self) -> bool:
        return bool(self.here or self.shared)


class GitlinkCache:
    """The gitlinks (mode 160000 entries) of the commits a repository and its worktrees have been
    at, shared by them: a commit's are found once, from the last commit known by the difference
    between the two (one small git process for each new commit), or from its whole tree the
    first time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_commit: dict[str, frozenset[str]] = {}
        self.last: str | None = None


@dataclass(frozen=True)
class WorktreeEntry:
    """One line of `git worktree list`: where it is, its branch (None when detached)."""

    path: Path
    branch: str | None
    head: str | None


class TreeChange(NamedTuple):
    """A path that differs between two trees (see GitRepo.changes_between)."""

    status: str
    """'A' added, 'D' deleted, 'M' modified."""
    path: str
    mode: str
    """On the new side: '100644', '100755', '120000' (a link), '000000' when deleted."""
    blob: str
    """On the new side (zeros when deleted)."""


@dataclass(frozen=True)
class MergedTree:
    """A three-way merge computed without touching any work tree: its tree, or the conflicted paths."""

    tree: str | None
    conflicts: list[str]


OWN_GROUP = 0
"""Every git process starts in a process group of its own (`process_group=0`): a terminal's Ctrl-C
or hang-up goes to its whole foreground group, and a git killed there failed the step it was in
(`git add -A failed: -2`) where orchestrate itself stops gracefully. An abort still ends it:
subprocess.run kills its child when interrupted."""


@functools.cache
def git_program() -> str:
    """git's full path, looked up once: a bare name makes every spawn try each PATH entry."""
    return shutil.which("git") or "git"


def find_repo_root(start: Path) -> Path | None:
    """The top of the work tree holding `start` (a file or a directory), or None."""
    here = start if start.is_dir() else start.parent
    if not here.exists():
        return None
    done = subprocess.run(
        [git_program(), *SAFETY, "rev-parse", "--show-toplevel"],
        cwd=here,
        capture_output=True,
        encoding="utf-8",
        errors="surrogateescape",
        check=False,
        process_group=OWN_GROUP,
    )
    if done.returncode != 0:
        return None
    return Path(done.stdout.strip()).resolve()


class GitRepo:
    """A repository's work tree (the main one, or a linked worktree made by `linked`)."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self._git_dir: Path | None = None
        self._common_dir: Path | None = None
        self._guard: ConfigGuard | None = None
        self._plain: bool | None = None
        self._dot_git: str | None = None
        """A linked worktree's `.git` file as orchestrate wrote it (or git, for orchestrate)."""
        self._admins: dict[Path, Path] = {}
        """The git directories of the worktrees this repository made, by work tree."""
        self._linked: dict[Path, GitRepo] = {}
        self._submodules: dict[str, bytes | None] | None = None
        """Each submodule's `.git` as the baseline found it (see undo_tampering)."""
        self._gitlinks = GitlinkCache()

    # -- plumbing ---------------------------------------------------------------------------

    def _locate(self) -> ConfigGuard:
        """Where the git directories are: asked of git once, when the first command runs (the
        repository as the user left it), then given to every command."""
        if self._guard is None:
            done = subprocess.run(
                [git_program(), *SAFETY, "rev-parse", "--path-format=absolute", *_WHERE],
                cwd=self.root,
                capture_output=True,
                encoding="utf-8",
                errors="surrogateescape",
                check=False,
                process_group=OWN_GROUP,
            )
            lines = done.stdout.splitlines()
            if done.returncode != 0 or len(lines) != 2:
                detail = done.stderr.strip().splitlines()
                why = detail[-1] if detail else done.returncode
                raise GitError(f"{self.root} is not a git work tree: {why}")
            self._git_dir, self._common_dir = (Path(line).resolve() for line in lines)
            self._guard = ConfigGuard(self.root, self._common_dir, self._git_dir, self._listing)
        return self._guard

    def _listing(self) -> list[Entry]:
        done = self._run(["config", "--list", "--show-scope", "--show-origin", "-z"], guarded=False)
        return parse_listing(done.stdout, self.root) if done.returncode == 0 else []

    def _run(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        input_text: str | None = None,
        guarded: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [git_program(), *SAFETY, *args],
            cwd=self.root,
            capture_output=True,
            # Paths are bytes to git: decoded as os.fsdecode does (so that a file name that is not
            # UTF-8 survives), they go back to git unchanged as arguments (os.fsencode).
            encoding="utf-8",
            errors="surrogateescape",
            check=False,
            process_group=OWN_GROUP,
            env=self._env(env, guarded),
            input=input_text,
        )

    def _env(self, env: Mapping[str, str] | None, guarded: bool) -> dict[str, str]:
        """The environment of a git command: its directories named, and what the repository's
        config may no longer say pinned (see ConfigGuard)."""
        guard = self._locate()
        for folder in (self._git_dir, self._common_dir):
            # git would follow a `gitdir:` file or a symlink put in its place to the agent's own.
            assert folder is not None
            if not stat.S_ISDIR(_lstat_mode(folder)):
                raise GitError(f"the git directory {folder} is no longer a directory; it was replaced")
        full_env = dict(os.environ)
        full_env.update(
            GIT_DIR=str(self._git_dir), GIT_WORK_TREE=str(self.root), GIT_COMMON_DIR=str(self._common_dir)
        )
        pins = guard.check() if guarded else ()
        if pins:
            # Not `-c`: a key's subsection may hold '=', which `-c` would split at.
            first = int(full_env.get("GIT_CONFIG_COUNT", "0") or "0")
            for n, (key, value) in enumerate(pins, start=first):
                full_env[f"GIT_CONFIG_KEY_{n}"] = key
                full_env[f"GIT_CONFIG_VALUE_{n}"] = value
            full_env["GIT_CONFIG_COUNT"] = str(first + len(pins))
        if env is not None:
            full_env.update(env)
        return full_env

    def head_bytes(self, path: str) -> bytes | None:
        """The bytes the file at `path` (from the top of the tree) has in HEAD, exactly (no
        newline translation, no filter), or None when HEAD has no such file."""
        done = subprocess.run(
            [git_program(), *SAFETY, "cat-file", "blob", f"HEAD:{path}"],
            cwd=self.root,
            capture_output=True,
            check=False,
            process_group=OWN_GROUP,
            env=self._env(None, True),
        )
        return done.stdout if done.returncode == 0 else None

    def tree_diff(self, old: str | None, new: str, exclude: Sequence[str] = ()) -> str:
        """The patch from `old` to `new` (trees or commits; None: from nothing), `exclude` left out;
        no program a repository's settings name is run for it (external diff, textconv)."""
        if old is None:
            old = self.git("hash-object", "-t", "tree", "--stdin", input_text="").strip()
        specs = [f":(exclude,literal){path}" for path in exclude]
        return self.git("diff", "--no-color", "--no-renames", *_NO_PROGRAMS, old, new, "--", ".", *specs)

    def export_tree(self, tree: str, directory: Path) -> None:
        """Write the files of `tree` into `directory` (made if missing): a copy of the tree with
        no git in it, through an index of its own (the repository's index is not touched)."""
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="orchestrate-export-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self.git("read-tree", tree, env=env)
            self.git("checkout-index", "-a", "-f", f"--prefix={directory.resolve()}/", env=env)

    def git(
        self,
        *args: str,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        input_text: str | None = None,
    ) -> str:
        done = self._run(args, env=env, input_text=input_text)
        if check and done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise GitError(f"git {' '.join(args[:3])} failed: {detail[-1] if detail else done.returncode}")
        return done.stdout

    @property
    def git_dir(self) -> Path:
        self._locate()
        assert self._git_dir is not None
        return self._git_dir

    @property
    def common_dir(self) -> Path:
        """Shared by every worktree of the repository: where the run lock lives."""
        self._locate()
        assert self._common_dir is not None
        return self._common_dir

    def at(self, workspace: Path) -> GitRepo:
        """This repository when `workspace` is its work tree, else its worktree there (`linked`)."""
        return self if workspace.resolve() == self.root else self.linked(workspace)

    def linked(self, path: Path) -> GitRepo:
        """The worktree at `path`, its git directory the one this repository made for it, or the
        one whose `gitdir` file (under worktrees/, which git keeps) names `path`; never what the
        worktree's own `.git` file says. A GitError when there is none."""
        path = path.resolve()
        found = self._linked.get(path)
        if found is not None:
            return found
        made = self._admins.get(path)
        admin = made or self._find_admin(path)
        if admin is None:
            raise GitError(f"{path} is not a worktree of {self.root}")
        repo = GitRepo(path)
        repo._git_dir, repo._common_dir, repo._guard = admin, self.common_dir, self._locate()
        repo._dot_git = f"gitdir: {admin}"
        repo._gitlinks = self._gitlinks
        repo._submodules = repo._submodule_files(self._submodule_paths())
        # A worktree this process did not make (a resumed run's) has a config.worktree only when git
        # copied the main worktree's into it (`git worktree add` does, where there is one).
        copied = made is not None or (self.common_dir / "config.worktree").exists()
        repo._guard.watch(admin / "config.worktree", absent=not copied)
        self._admins[path] = admin
        self._linked[path] = repo
        return repo

    def _find_admin(self, path: Path) -> Path | None:
        return gitfiles.find_admin(self.common_dir, path)

    def _forget(self, path: Path) -> None:
        """A worktree gone: no git directory to remember, no config.worktree to watch."""
        path = path.resolve()
        self._linked.pop(path, None)
        admin = self._admins.pop(path, None)
        if admin is not None and self._guard is not None:
            self._guard.forget(admin / "config.worktree")

    # -- what the agent may not change ---------------------------------------------------

    def _submodule_paths(self) -> list[str]:
        """The submodules the repository declares (in `.gitmodules` as the run found it) and the
        gitlinks of HEAD, declared or not (`git submodule` is not the only way to make one): their
        directories are where a `.git` would make git run a nested repository's programs (and
        `git add -A` look inside)."""
        return list(self._submodule_baseline())

    def _submodule_baseline(self) -> dict[str, bytes | None]:
        if self._submodules is None:
            paths = dict.fromkeys([*self._declared_submodules(), *sorted(self.gitlinks())])
            self._submodules = self._submodule_files(paths)
        return self._submodules

    def gitlinks(self) -> frozenset[str]:
        """The paths of HEAD's gitlinks (see GitlinkCache): no git process while HEAD stays."""
        head = self.head_now()
        if head is None:
            return frozenset()
        cache = self._gitlinks
        with cache.lock:
            known = cache.by_commit.get(head)
            last = cache.last
        if known is not None:
            return known
        if last is None:
            raw = self.git("ls-tree", "-r", "-z", head)
            found = frozenset(
                path for meta, _, path in (e.partition("\t") for e in raw.split("\0")) if meta[:6] == "160000"
            )
        else:
            raw = self.git("diff-tree", "-r", "-z", "--no-renames", "--raw", last, head)
            links = set(cache.by_commit[last])
            fields = raw.split("\0")
            for meta, path in zip(fields[::2], fields[1::2], strict=False):
                modes = meta.lstrip(":").split(" ")
                if len(modes) < 2:
                    continue
                if modes[1] == "160000":
                    links.add(path)
                elif modes[0] == "160000":
                    links.discard(path)
            found = frozenset(links)
        with cache.lock:
            cache.by_commit[head] = found
            cache.last = head
        return found

    def _declared_submodules(self) -> list[str]:
        try:
            text = (self.root / ".gitmodules").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return [m.group(1).strip() for m in _SUBMODULE_PATH.finditer(text) if m.group(1).strip()]

    def _submodule_files(self, paths: Iterable[str]) -> dict[str, bytes | None]:
        found: dict[str, bytes | None] = {}
        for path in paths:
            dot_git = self.root / path / ".git"
            found[path] = _marker(dot_git)
        return found

    def git_baseline(self) -> dict[str, Any]:
        """What a resume holds git's own files to (see ConfigGuard.record), and where the git
        directories were: kept in the journal. Taken before any agent runs, it is also where the
        submodules' `.git` are looked at first (see undo_tampering)."""
        self._submodule_paths()
        return {**self._locate().record(), "git_dir": str(self.git_dir), "common_dir": str(self.common_dir)}

    def resume_git_baseline(self, recorded: Mapping[str, Any]) -> list[str]:
        """Put back, in words, what changed in git's own files since the run started (`recorded`,
        from git_baseline): what an agent a kill interrupted may have left (see ConfigGuard.resume),
        and in this work tree, what undo_tampering finds."""

        def unset(path: Path, key: str, value: str) -> None:
            args = ["config", "--file", str(path), "--fixed-value", "--unset-all", key, value]
            self._run(args, guarded=False)

        guard = self._locate()
        for key, now in (("git_dir", self.git_dir), ("common_dir", self.common_dir)):
            then = recorded.get(key)
            if isinstance(then, str) and Path(then) != now:
                # A `.git` the agent put in the directory's place sends git to a directory of its own.
                raise GitError(
                    f"the repository's git directory is {now}, but was {then} when the run started; "
                    "put it back, then resume"
                )
        found = guard.resume(recorded, unset)
        tampering = self.undo_tampering(self.changed_paths())
        return found + tampering.here + tampering.shared

    def undo_tampering(self, changed: Iterable[str]) -> Tampering:
        """What the agent changed in git's own files, each put back, in words for the user: this
        work tree's (a worktree's `.git` file and git directory, a `.git` in a submodule's
        directory, a repository inside the tree) and the repository's (its config and hooks, the
        user's config: see gitconfig), which any agent at work may have changed.

        A repository inside the tree (`changed` holds what `changed_paths` found: git shows one as
        `dir/`) loses its `.git`: there, orchestrate's `git add` would run its config's programs
        (looking for changes in it) and commit a gitlink to it."""
        guard = self._locate()
        worktrees = self.common_dir / "worktrees"
        linked = self._dot_git is not None
        here = guard.changes(lambda p: linked and p.is_relative_to(self.git_dir))
        shared = guard.changes(lambda p: not p.is_relative_to(worktrees))
        if self._dot_git is not None:
            dot_git = self.root / ".git"
            if _marker(dot_git) != (self._dot_git + "\n").encode():
                put_back(dot_git, (self._dot_git + "\n").encode())
                here.append("the worktree's .git file was changed (put back)")
        # A gitlink that HEAD gained after the baseline (a merge of a worktree's commit) had no `.git`.
        watched = dict.fromkeys(self.gitlinks(), None)
        watched.update(self._submodule_baseline())
        for path, want in watched.items():
            dot_git = self.root / path / ".git"
            if not _real_directory(self.root, path) or _marker(dot_git) == want:
                continue
            if want is None or not want.startswith(b"<"):  # none, or a file: put back as it was
                put_back(dot_git, want)
                here.append(f"{path}/.git was {'added' if want is None else 'changed'} (put back)")
            else:
                here.append(f"{path}/.git was changed (it cannot be put back)")
        for path in changed:
            dot_git = self.root / path / ".git"
            nested = dot_git.exists() or dot_git.is_symlink()
            if path.endswith("/") and nested and _real_directory(self.root, path):
                put_back(dot_git, None)
                here.append(f"{path}.git: a git repository inside the work tree (removed)")
        return Tampering(here, shared)

    # -- branches ---------------------------------------------------------------------------

    def current_branch(self) -> str | None:
        """The branch HEAD points at, or None when HEAD is detached."""
        done = self.git("symbolic-ref", "--quiet", "--short", "HEAD", check=False).strip()
        return done or None

    def head(self) -> str | None:
        """The sha HEAD points at, or None in a repository without commits."""
        out = self.git("rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False).strip()
        return out or None

    def head_now(self) -> str | None:
        """HEAD's commit like head(), read from the ref file itself when it is a plain one (git
        replaces ref files atomically): no git process on the hot path of a parallel run."""
        return gitfiles.read_head(self.git_dir, self.common_dir) or self.head()

    def branch_exists(self, name: str) -> bool:
        out = self.git("rev-parse", "--verify", "--quiet", f"refs/heads/{name}", check=False)
        return bool(out.strip())

    def switch(self, name: str, create: bool) -> None:
        if create:
            self.git("switch", "-q", "-c", name)
        else:
            self.git("switch", "-q", name)

    # -- the work tree ----------------------------------------------------------------------

    def status(self) -> list[tuple[str, str]]:
        """(two-letter status, path) for each changed, added, deleted or untracked path."""
        # Submodules ignored: looking inside one runs `git status` there, with that repository's
        # own config (a repository the agent made inside the tree shows as `dir/`, see
        # undo_tampering).
        raw = self.git("status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignore-submodules=all")
        entries: list[tuple[str, str]] = []
        parts = raw.split("\0")
        i = 0
        while i < len(parts):
            item = parts[i]
            i += 1
            if not item:
                continue
            code, path = item[:2], item[3:]
            if code[0] in "RC":
                i += 1  # the rename's source path follows; the destination is what changed
            entries.append((code, path))
        return entries

    def changed_paths(self) -> list[str]:
        return [path for _, path in self.status()]

    def is_clean(self) -> bool:
        return not self.status()

    def snapshot_tree(self) -> str:
        """The tree object of the whole work tree as it is now (tracked and untracked files,
        not ignored ones), written without touching the real index.

        The snapshot index is kept between calls (in the git directory) so that `git add -A` can
        trust its stat cache; `add -A` makes it match the work tree whatever it held before."""
        index = self.git_dir / "orchestrate-snapshot.index"
        env = {"GIT_INDEX_FILE": str(index)}
        if not index.exists():
            with tempfile.TemporaryDirectory(prefix="orchestrate-index-", dir=self.git_dir) as tmp:
                # Built aside and renamed in, so a kill never leaves a half-written index behind.
                # The real index is as good a start as any (`add -A` makes it match the work tree)
                # and saves a read-tree in a fresh worktree. Its mtime must come along: git trusts
                # an entry's stat data only if the file is older than the index (racy git).
                real = self.git_dir / "index"
                fresh = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
                if real.is_file():
                    shutil.copy2(real, Path(tmp) / "index")
                elif self.head() is not None:
                    self.git("read-tree", "HEAD", env=fresh)
                else:
                    self.git("read-tree", "--empty", env=fresh)
                (Path(tmp) / "index").replace(index)
        # Only this process uses the snapshot index (under the run lock): a lock file left by a
        # killed git is stale.
        index.with_name(index.name + ".lock").unlink(missing_ok=True)
        self.git("add", "-A", env=env)
        return self.git("write-tree", env=env).strip()

    def head_tree(self) -> str | None:
        out = self.git("rev-parse", "--verify", "--quiet", "HEAD^{tree}", check=False).strip()
        return out or None

    def save_snapshot(self, ref: str, message: str) -> str | None:
        """Keep the work tree's uncommitted state in `ref` (a commit whose parent is HEAD) so that
        nothing is lost when the tree is reset. None when there is nothing to keep."""
        tree = self.snapshot_tree()
        if tree == self.head_tree():
            return None
        sha = self.commit_tree(tree, self.head(), message)
        self.git("update-ref", ref, sha)
        return sha

    def commit_tree(self, tree: str, parent: str | None, message: str) -> str:
        """A commit of `tree` on `parent` (a root commit without one), on no branch: its sha."""
        parents = ["-p", parent] if parent else []
        return self.git("commit-tree", tree, *parents, "-m", message).strip()

    def files_at(self, commit: str, folder: str) -> list[tuple[str, str]]:
        """The regular files under `folder` ("" for the root) as `commit` has them: (path, blob
        sha) pairs; symlinks, gitlinks and a commit that does not exist give nothing."""
        listing = self.git("ls-tree", "-r", "-z", commit, "--", folder or ".", check=False)
        found: list[tuple[str, str]] = []
        for entry in listing.split("\0"):
            meta, _, path = entry.partition("\t")
            fields = meta.split()
            if len(fields) == 3 and fields[1] == "blob" and fields[0] in ("100644", "100755"):
                found.append((path, fields[2]))
        return found

    def blob(self, sha: str) -> bytes:
        """A blob's bytes, as stored."""
        return self.git("cat-file", "blob", sha).encode("utf-8", "surrogateescape")

    def reset_paths(self, paths: Iterable[str]) -> None:
        """Put `paths` back as HEAD has them: tracked ones restored, new ones removed."""
        tracked: list[str] = []
        for path in paths:
            if self.is_tracked(path):
                tracked.append(path)
            else:
                target = self.root / path
                if target.is_file() or target.is_symlink():
                    target.unlink()
                    self._prune_empty_dirs(target.parent)
        if tracked:
            self.git("checkout", "HEAD", "--", *tracked)

    def restore_head(self, paths: Iterable[str]) -> None:
        """Like reset_paths, also for paths a merge or `git add` staged (a new file staged and then
        deleted would otherwise stay in the index)."""
        paths = list(paths)
        if not paths:
            return
        if self.head() is not None:
            self.git("reset", "-q", "HEAD", "--", *paths)
        self.reset_paths(paths)

    def _prune_empty_dirs(self, directory: Path) -> None:
        while directory != self.root and directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
            directory = directory.parent

    def is_tracked(self, path: str) -> bool:
        if self.head() is None:
            return False
        out = self.git("ls-tree", "--name-only", "HEAD", "--", path, check=False)
        return bool(out.strip())

    def hash_file(self, path: str) -> str | None:
        """The blob id the file would have, or None when it does not exist."""
        target = self.root / path
        if not target.is_file():
            return None
        return self.git("hash-object", "--no-filters", "--", path).strip()

    def add_exclude(self, pattern: str) -> None:
        """Keep `pattern` out of git through .git/info/exclude, never the user's .gitignore."""
        exclude = self.common_dir / "info" / "exclude"
        existing = exclude.read_text() if exclude.exists() else ""
        if pattern in existing.splitlines():
            return
        exclude.parent.mkdir(parents=True, exist_ok=True)
        prefix = "" if not existing or existing.endswith("\n") else "\n"
        with exclude.open("a") as f:
            f.write(f"{prefix}# orchestrate run state\n{pattern}\n")

    # -- commits ----------------------------------------------------------------------------

    def identity_problem(self) -> str | None:
        """Why git could not commit here for want of an author or committer name and email (git's
        own last words), or None when it can: `git var` decides as `git commit` does."""
        for ident in ("GIT_AUTHOR_IDENT", "GIT_COMMITTER_IDENT"):
            try:
                self.git("var", ident)
            except GitError as exc:
                return exc.message
        return None

    def identity(self) -> str:
        """`Name <email>`: who commits here, as `git commit` would name the author."""
        ident = self.git("var", "GIT_AUTHOR_IDENT").strip()
        return ident[: ident.rfind(">") + 1] if ">" in ident else ident

    def commit_all(self, message: str, trailers: Mapping[str, str], exclude: Sequence[str] = ()) -> str:
        """Stage every change (but `exclude`) and commit it with `trailers`; returns the sha."""
        self.git("add", "-A")
        if exclude:
            self.git("reset", "-q", "--", *exclude)
        body = message.rstrip() + "\n\n" + "".join(f"{k}: {v}\n" for k, v in trailers.items())
        # No automatic maintenance after each commit (one git process more per task): the user's
        # next git command runs it.
        self.git(
            "-c", "maintenance.auto=false",
            "commit", "-q", "--no-verify", "--allow-empty", "-F", "-",
            input_text=body,
        )  # fmt: skip
        sha = self.head_now()
        assert sha is not None  # just committed
        return sha

    def trailer_commits(self, run_id: str | None = None, since: str | None = None) -> list[TrailerCommit]:
        """Commits reachable from HEAD that carry an Orchestrate-Task trailer, oldest first;
        only those of `run_id` when given; only those after `since` when given."""
        if self.head() is None:
            return []
        fmt = (
            f"%H%x1f%(trailers:key={TASK_TRAILER},valueonly,separator=%x1d)"
            f"%x1f%(trailers:key={RUN_TRAILER},valueonly,separator=%x1d)%x1e"
        )
        rev = f"{since}..HEAD" if since else "HEAD"
        raw = self.git("log", "--reverse", f"--format={fmt}", rev, "--")
        found: list[TrailerCommit] = []
        for record in raw.split("\x1e"):
            record = record.strip("\n")
            if not record:
                continue
            sha, task, run = (record.split("\x1f") + ["", ""])[:3]
            task = task.split("\x1d")[0].strip()
            run = run.split("\x1d")[0].strip()
            if not task or (run_id is not None and run != run_id):
                continue
            found.append(TrailerCommit(sha=sha.strip(), task_id=task, run_id=run))
        return found

    def blame(self, path: str) -> list[str | None]:
        """For each line of the work tree's `path` (a path from the top of the tree), the commit that
        last changed it (whitespace changes ignored), or None where the line is not committed; every
        line None when HEAD does not have the file."""
        done = self._run(["blame", "--porcelain", "-w", "--no-textconv", "--", path])
        if done.returncode != 0:
            try:
                count = len((self.root / path).read_bytes().splitlines())
            except OSError:
                count = 0
            return [None] * count
        commits: list[str | None] = []
        for row in done.stdout.split("\n"):
            head = row.split(" ", 3)
            if len(head) >= 3 and _SHA.match(head[0]) and head[1].isdigit() and head[2].isdigit():
                commits.append(None if not head[0].strip("0") else head[0])
        return commits

    def is_shallow(self) -> bool:
        """A clone with part of its history cut off (CI's default checkout)."""
        return self.git("rev-parse", "--is-shallow-repository", check=False).strip() == "true"

    def commit_facts(self, shas: Iterable[str]) -> dict[str, CommitFacts]:
        """Subject and trailers of each commit in `shas` (one git process)."""
        wanted = list(dict.fromkeys(shas))
        if not wanted:
            return {}
        raw = self.git(
            "log", "--no-walk=unsorted", "--format=%H%x1f%s%x1f%(trailers:only,unfold)%x1e", *wanted, "--"
        )
        facts: dict[str, CommitFacts] = {}
        for record in raw.split("\x1e"):
            parts = record.strip("\n").split("\x1f")
            if len(parts) != 3:
                continue
            sha, subject, block = parts
            trailers: dict[str, list[str]] = {}
            for line in block.splitlines():
                key, sep, value = line.partition(":")
                if sep and key.strip():
                    trailers.setdefault(key.strip(), []).append(value.strip())
            facts[sha.strip()] = CommitFacts(sha.strip(), subject, trailers)
        return facts

    def files_changed(self, shas: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
        """(status letter, path) of each file each commit in `shas` changed against its first parent
        (A added, M modified, D deleted, T type changed), in one git process."""
        wanted = list(dict.fromkeys(shas))
        if not wanted:
            return {}
        raw = self.git(
            "diff-tree", "--stdin", "-r", "-z", "--root", "--name-status", "--no-renames", *_NO_PROGRAMS,
            input_text="".join(f"{sha}\n" for sha in wanted),
        )  # fmt: skip
        changed: dict[str, list[tuple[str, str]]] = {sha: [] for sha in wanted}
        tokens = raw.split("\0")
        current: list[tuple[str, str]] | None = None
        index = 0
        while index < len(tokens):
            token = tokens[index].strip("\n")
            if _SHA.match(token):
                current = changed.setdefault(token, [])
                index += 1
            elif token and current is not None and index + 1 < len(tokens):
                current.append((token[:1], tokens[index + 1]))
                index += 2
            else:
                index += 1
        return changed

    def ref_exists(self, ref: str) -> bool:
        return bool(self.git("rev-parse", "--verify", "--quiet", ref, check=False).strip())

    def rev(self, rev: str) -> str | None:
        """The object `rev` names (`HEAD`, a branch, `<sha>^{tree}`), or None."""
        out = self.git("rev-parse", "--verify", "--quiet", rev, check=False).strip()
        return out or None

    def update_ref(self, ref: str, sha: str) -> None:
        self.git("update-ref", ref, sha)

    def changed_between(self, old: str, new: str) -> list[str]:
        """Paths that differ between two commits or trees."""
        raw = self.git("diff", "--name-only", "-z", "--no-renames", *_NO_PROGRAMS, old, new, "--")
        return [p for p in raw.split("\0") if p]

    def changes_between(self, old: str, new: str) -> list[TreeChange]:
        """Each path that differs between two commits or trees, with its mode and blob on the new
        side: 'A' added, 'D' deleted (mode 000000), 'M' modified (a type change counts as one)."""
        raw = self.git("diff", "--raw", "-z", "--no-renames", "--no-abbrev", *_NO_PROGRAMS, old, new, "--")
        fields = [f for f in raw.split("\0") if f]
        changes: list[TreeChange] = []
        for meta, path in zip(fields[::2], fields[1::2], strict=True):
            _, mode, _, blob, status = meta.lstrip(":").split(" ")[:5]
            changes.append(TreeChange(status[:1] if status[:1] in "AD" else "M", path, mode, blob))
        return changes

    def blob_at(self, tree: str, path: str) -> bytes | None:
        """The bytes of `path` in `tree` (a commit or a tree), exactly; None when it has none."""
        done = subprocess.run(
            [git_program(), *SAFETY, "cat-file", "blob", f"{tree}:{path}"],
            cwd=self.root,
            capture_output=True,
            check=False,
            process_group=OWN_GROUP,
            env=self._env(None, True),
        )
        return done.stdout if done.returncode == 0 else None

    def export_with(self, base: str, changes: Sequence[TreeChange], destination: Path, index: Path) -> None:
        """Write under `destination` (made if need be) the files of `base` with `changes` applied
        (as changes_between gives them): a plain directory, built through the scratch index file
        `index`. No work tree, index, ref, worktree or branch is touched or made."""
        env = {"GIT_INDEX_FILE": str(index)}
        self.git("read-tree", base, env=env)
        if changes:
            lines = [
                f"0 {'0' * 40}\t{c.path}" if c.status == "D" else f"{c.mode} {c.blob}\t{c.path}"
                for c in changes
            ]
            self.git("update-index", "-z", "--index-info", env=env, input_text="\0".join(lines) + "\0")
        destination.mkdir(parents=True, exist_ok=True)
        self.git("checkout-index", "-a", "-f", f"--prefix={destination}{os.sep}", env=env)

    def ignored_entries(self) -> list[str]:
        """Top-level names of the work tree that git ignores (a virtualenv, node_modules, a build
        folder): what the checks may need that no commit holds."""
        listing = ("--others", "--ignored", "--exclude-standard", "--directory", "--no-empty-directory")
        raw = self.git("ls-files", "-z", *listing)
        return sorted({p.rstrip("/").split("/", 1)[0] for p in raw.split("\0") if p.strip("/")})

    # -- worktrees (parallel tasks) ---------------------------------------------------------

    def worktree_add(self, path: Path, branch: str, base: str) -> None:
        """A new work tree at `path` on a new branch `branch` cut from `base`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.git("worktree", "add", "-q", "-b", branch, str(path), base)
        self._adopt_made(path)

    def worktree_add_detached(self, path: Path, base: str) -> None:
        """A new work tree at `path`, its HEAD detached at `base`, its files not checked out yet
        (see populate_worktree): what must not run beside another `git worktree` command is
        over sooner.

        In a plain repository the worktree's administrative files are written by hand
        (gitfiles.write_worktree): two git processes fewer for each task of a parallel run.
        Elsewhere git makes it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if self._plain_worktrees():
            try:
                admin = gitfiles.write_worktree(self.common_dir, path, base)
            except OSError as exc:
                raise GitError(f"cannot make a worktree at {path}: {exc.strerror or exc}") from exc
            self._forget(path)
            self._admins[path.resolve()] = admin
            return
        self.git("worktree", "add", "-q", "--detach", "--no-checkout", str(path), base)
        self._adopt_made(path)

    def _adopt_made(self, path: Path) -> None:
        """A worktree git just made for us: its git directory found by git's own back pointer
        (before any agent ran there) and remembered."""
        admin = self._find_admin(path.resolve())
        if admin is None:
            raise GitError(f"git made a worktree at {path} that is not in {self.common_dir / 'worktrees'}")
        self._forget(path)
        self._admins[path.resolve()] = admin

    def _plain_worktrees(self) -> bool:
        """Whether worktrees and refs are plain files here (see gitfiles.plain_layout)."""
        if self._plain is None:
            self._plain = gitfiles.plain_layout(self.common_dir)
        return self._plain

    def clear_worktree_staging(self) -> None:
        """What a kill in worktree_add_detached left aside."""
        gitfiles.clear_staging(self.common_dir)

    def populate_worktree(self, path: Path) -> None:
        """Check out the files (and write the index) of a work tree made with --no-checkout; like
        move_worktree_to, it reads no other worktree's files."""
        self.linked(path).git("read-tree", "-u", "--reset", "HEAD")

    def move_worktree_to(self, path: Path, base: str) -> None:
        """Move the detached work tree at `path` (its HEAD, index and files) to `base`.

        Unlike `checkout` and `switch`, `reset` reads no other worktree's administrative files,
        which a `git worktree add` or `remove` running beside it may have half written; so this
        needs no lock against them."""
        self.linked(path).git("reset", "-q", "--hard", base)

    def prune_worktrees(self) -> None:
        """Forget the work trees whose directories are gone."""
        self.git("worktree", "prune")

    def worktree_remove(self, path: Path) -> None:
        """Remove a work tree and its administrative files, whatever state it was left in."""
        # Twice forced: a kill during `git worktree add` leaves it locked ("initializing"),
        # perhaps with its directory missing.
        self._forget(path)
        done = self._run(["worktree", "remove", "--force", "--force", str(path)])
        if done.returncode != 0 or path.exists():
            shutil.rmtree(path, ignore_errors=True)
            self.git("worktree", "prune")

    def worktrees(self) -> list[WorktreeEntry]:
        raw = self.git("worktree", "list", "--porcelain", "-z")
        found: list[WorktreeEntry] = []
        path: Path | None = None
        branch: str | None = None
        head: str | None = None
        for field in [*raw.split("\0"), ""]:
            if not field:
                if path is not None:
                    found.append(WorktreeEntry(path, branch, head))
                path, branch, head = None, None, None
                continue
            key, _, value = field.partition(" ")
            if key == "worktree":
                path = Path(value)
            elif key == "branch":
                branch = value.removeprefix("refs/heads/")
            elif key == "HEAD":
                head = value
        return found

    def branches(self, prefix: str) -> list[str]:
        """Local branches whose names start with `prefix/`."""
        raw = self.git("for-each-ref", "--format=%(refname)", f"refs/heads/{prefix.rstrip('/')}/")
        return [line.removeprefix("refs/heads/") for line in raw.splitlines() if line]

    def delete_branch(self, branch: str) -> None:
        """Delete a branch if it exists."""
        self.git("branch", "-q", "-D", branch, check=False)

    def set_branch(self, branch: str, sha: str) -> None:
        """Point `branch` at `sha`, making it if need be. In a plain repository (see
        _plain_worktrees: the files ref backend) the loose ref is written as git writes one, under
        `<ref>.lock` taken exclusively and renamed over the ref, with no reflog (gitfiles): one git
        process fewer for each task of a parallel run. Elsewhere, or when that fails, `git
        update-ref`."""
        ref = f"refs/heads/{branch}"
        if self._plain_worktrees() and gitfiles.write_loose_ref(self.common_dir, ref, sha):
            return
        self.git("update-ref", ref, sha)

    def _delete_branches(self, branches: Sequence[str]) -> None:
        """Delete branches of ours: loose refs that are in no packed-refs file are unlinked
        (gitfiles), the rest go through `git branch -D`."""
        left = list(branches)
        if self._plain_worktrees():
            left = gitfiles.delete_loose_branches(self.common_dir, branches)
        if left:
            # `branch -D` goes on past a branch it cannot delete (or one that is gone): those
            # still there are deleted one by one, so that a failure says why.
            self.git("branch", "-q", "-D", *left, check=False)
            for branch in left:
                if (self.common_dir / "refs" / "heads" / branch).is_file():  # its loose ref: no git process
                    self.git("update-ref", "-d", f"refs/heads/{branch}")

    def remove_worktrees(self, paths: Sequence[Path], branches: Sequence[str]) -> None:
        """Remove several work trees and branches with few git processes, if any: the directories
        go first, then their administrative directories (or, when one cannot be told, `git
        worktree prune` drops every worktree whose directory is missing; nothing may be adding a
        worktree meanwhile, as prune would take it for a dead one), then the branches."""
        admins = self._admins_of(paths)
        for path in paths:
            self._forget(path)
            shutil.rmtree(path, ignore_errors=True)
        if None in admins:
            self.git("worktree", "prune")
        else:  # what prune would drop for these, without a git process or touching any other
            for admin in admins:
                assert admin is not None
                shutil.rmtree(admin, ignore_errors=True)
        if branches:
            self._delete_branches(branches)
        for path in paths:
            if path.exists():  # something in it could not be deleted: git's own way, forced
                self.worktree_remove(path)

    def _admins_of(self, paths: Sequence[Path]) -> list[Path | None]:
        """The administrative directories of these worktrees (see `linked`), None where there is
        none; the worktree's own `.git` file is not asked."""
        found: list[Path | None] = []
        for path in paths:
            path = path.resolve()
            found.append(self._admins.get(path) or self._find_admin(path))
        return found

    def merge_tree(self, ours: str, theirs: str) -> MergedTree:
        """Three-way merge of two commits (their merge base as the base), written as a tree
        without touching the index or any work tree; the conflicted paths when it does not merge."""
        done = self._run(["merge-tree", "--write-tree", "--no-messages", "--name-only", "-z", ours, theirs])
        if done.returncode not in (0, 1):
            detail = done.stderr.strip().splitlines()
            raise GitError(f"git merge-tree failed: {detail[-1] if detail else done.returncode}")
        fields = [f for f in done.stdout.split("\0") if f]
        if done.returncode == 0:
            return MergedTree(fields[0].strip(), [])
        return MergedTree(None, sorted(dict.fromkeys(f.strip() for f in fields[1:])))

    def checkout_tree(self, tree: str) -> None:
        """Move the index and the work tree from HEAD to `tree` (HEAD itself stays)."""
        self.git("read-tree", "-m", "-u", "HEAD", tree)
