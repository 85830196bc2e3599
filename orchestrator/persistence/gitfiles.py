"""git's own files, read and written by hand: the fast path of a parallel run.

Each task of a parallel run gets a worktree, a branch and, at the end, both removed; HEAD is read
before and after each landing. Through git that is several processes per task (measured in
benchmarks/overhead_bench.py); in a plain repository the same files are written here exactly as git
writes them (git-worktree(1) DETAILS, gitrepository-layout(5)), with no process at all.

Plain means what git-worktree(1) describes and nothing more: the files ref backend (no reftable),
no repository extension (worktree-specific config, relative worktree paths, ...) and no included
config file that could set one. Anywhere else `plain_layout` says no and GitRepo asks git.

Nothing here runs git; persistence/repo.py decides when to use these and falls back to git when
one fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
WORKTREE_STAGING = "orchestrate-worktrees"
"""Under the common git directory: worktree administrative directories being written."""
_SECTION = re.compile(r"^\s*\[\s*([A-Za-z0-9.-]+)", re.MULTILINE)


def plain_layout(common_dir: Path) -> bool:
    """Whether worktrees and refs here are the plain files this module writes (see above)."""
    try:
        config = (common_dir / "config").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False  # unknown: let git decide
    sections = {m.group(1).lower() for m in _SECTION.finditer(config)}
    # An included file could set an extension too: then git decides as well.
    unknown = sections & {"extensions", "include", "includeif"}
    return not unknown and not (common_dir / "reftable").exists()


def read_head(git_dir: Path, common_dir: Path) -> str | None:
    """The commit HEAD names, read from the files (git replaces ref files atomically), or None
    when that is not a plain sha in a loose ref (a packed ref, an unborn branch, reftable): the
    caller asks git then."""
    try:
        text = (git_dir / "HEAD").read_text(encoding="ascii").strip()
        if text.startswith("ref: refs/"):
            text = (common_dir / text.removeprefix("ref: ")).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if SHA.fullmatch(text) else None


def find_admin(common_dir: Path, path: Path) -> Path | None:
    """The administrative directory git keeps for the worktree at `path`, by its back pointer
    (`worktrees/<name>/gitdir`); never what the worktree's own `.git` file says."""
    try:
        admins = list((common_dir / "worktrees").iterdir())
    except OSError:
        return None
    for admin in admins:
        try:
            pointer = (admin / "gitdir").read_text(encoding="utf-8", errors="surrogateescape").strip()
        except OSError:
            continue
        if pointer and Path(os.path.normpath(pointer)) == path / ".git":
            return admin.resolve()
    return None


def write_worktree(common_dir: Path, path: Path, base: str) -> Path:
    """A worktree at `path` (a new directory), HEAD detached at `base`, files not checked out,
    as `git worktree add --detach --no-checkout` makes one; returns its administrative directory.

    That directory is written aside and renamed into worktrees/ whole, after the worktree's .git
    file: git never sees a half-written one, and a kill leaves either a staging directory (see
    clear_staging) or a directory git does not know (which the caller removes as any stray), never
    a worktree git lists but cannot remove. OSError when it cannot be made (nothing left behind)."""
    admin_root = common_dir / "worktrees"
    admin_root.mkdir(exist_ok=True)
    target = path.resolve()
    name = target.name
    n = 1
    while (admin_root / name).exists():
        n += 1
        name = f"{target.name}{n}"
    admin = admin_root / name
    staging = common_dir / WORKTREE_STAGING / name
    made = False
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        (staging / "gitdir").write_text(f"{target / '.git'}\n", encoding="utf-8")
        (staging / "commondir").write_text("../..\n", encoding="utf-8")
        (staging / "HEAD").write_text(f"{base}\n", encoding="ascii")
        target.mkdir()
        made = True
        (target / ".git").write_text(f"gitdir: {admin}\n", encoding="utf-8")
        staging.rename(admin)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if made:
            shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        with contextlib.suppress(OSError):
            staging.parent.rmdir()  # empty unless a kill left something there: no litter in .git
    return admin.resolve()


def clear_staging(common_dir: Path) -> None:
    """What a kill in write_worktree left aside (only a run holding the repository's run lock
    writes there)."""
    shutil.rmtree(common_dir / WORKTREE_STAGING, ignore_errors=True)


def write_loose_ref(common_dir: Path, ref: str, sha: str) -> bool:
    """Point `ref` at `sha` as git writes a loose ref: under `<ref>.lock` taken exclusively and
    renamed over the ref, with no reflog. False when it could not (the caller asks git, which
    says why)."""
    if not SHA.fullmatch(sha):
        return False
    loose = common_dir / ref
    lock = loose.with_name(loose.name + ".lock")
    # Only this run writes its branches (it holds the run lock), one thread each: a lock file
    # here was left by a kill.
    lock.unlink(missing_ok=True)
    try:
        loose.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError:
        return False  # a branch named like a folder on the way
    try:
        try:
            os.write(fd, f"{sha}\n".encode("ascii"))
        finally:
            os.close(fd)
        lock.replace(loose)
    except OSError:  # a full disk, say
        lock.unlink(missing_ok=True)
        return False
    return True


def delete_loose_branches(common_dir: Path, branches: Sequence[str]) -> list[str]:
    """Delete branches whose loose refs are in no packed-refs file (with any reflog git kept, and
    the folders left empty); returns those left to git (packed, or not deletable here)."""
    packed_file = common_dir / "packed-refs"
    packed = packed_file.read_text(encoding="utf-8", errors="replace") if packed_file.is_file() else ""
    left: list[str] = []
    for branch in branches:
        ref = f"refs/heads/{branch}"
        loose = common_dir / ref
        loose.with_name(loose.name + ".lock").unlink(missing_ok=True)  # a kill's (see write_loose_ref)
        if f" {ref}\n" in packed:
            left.append(branch)
            continue
        try:
            loose.unlink(missing_ok=True)
            (common_dir / "logs" / ref).unlink(missing_ok=True)
        except OSError:
            left.append(branch)
            continue
        for top, folder in (
            (common_dir / "refs" / "heads", loose.parent),
            (common_dir / "logs" / "refs" / "heads", (common_dir / "logs" / ref).parent),
        ):
            while folder != top and folder.is_relative_to(top):
                try:
                    folder.rmdir()
                except OSError:
                    break
                folder = folder.parent
    return left
