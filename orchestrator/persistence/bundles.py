"""Git bundles: how a Ray node gets the run's head and sends an attempt's work back (--executor ray).

No filesystem is shared with a node: the driver writes its head as one bundle (put once in Ray's
object store for every task started from that head), the node clones it into a directory of its
own, and returns its work as a bundle of one commit on top of the head, which the driver fetches
onto a branch and lands as it lands a worktree's. Every git process here carries the SAFETY
settings, as everywhere in persistence/.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from orchestrator.persistence.gitconfig import SAFETY
from orchestrator.persistence.repo import OWN_GROUP, GitError, GitRepo, git_program

_BUNDLE_REFS = "refs/orchestrate-bundle"


def _bundle_ref(tip: str) -> str:
    return f"{_BUNDLE_REFS}/{tip}"


def write_bundle(repo: GitRepo, path: Path, tip: str, base: str | None = None) -> None:
    """`tip` with its history as a bundle file at `path`; with `base`, only what `base` lacks (the
    receiver has `base`). The bundle's one ref is named after `tip` (see fetch_bundle)."""
    ref = _bundle_ref(tip)
    repo.git("update-ref", ref, tip)
    try:
        repo.git("bundle", "create", "--quiet", str(path), ref, *([f"^{base}"] if base else []))
    finally:
        repo.git("update-ref", "-d", ref, check=False)


def fetch_bundle(repo: GitRepo, path: Path, tip: str, into: str) -> None:
    """Fetch commit `tip` from the bundle at `path` (made by write_bundle) onto the ref `into`.
    git checks the bundle (its prerequisites, every object); a bundle that carries another commit
    than the one its sender named is refused."""
    repo.git(
        "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", str(path), f"+{_bundle_ref(tip)}:{into}"
    )
    if repo.rev(into) != tip:
        raise GitError(f"the bundle {path} does not hold commit {tip}")


def clone_from_bundle(bundle: Path, directory: Path, tip: str) -> GitRepo:
    """A repository of its own in `directory` (made), checked out at `tip` (detached) from the
    bundle: a node's copy of the run's head. Its commits are made as "orchestrate node" (they never
    land as they are: the driver commits the work again on the run's branch, as the user)."""
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [git_program(), *SAFETY, "init", "--quiet", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        process_group=OWN_GROUP,
    )
    if done.returncode != 0:
        raise GitError(f"git init {directory} failed: {done.stderr.strip()}")
    repo = GitRepo(directory)
    repo.git("config", "user.name", "orchestrate node")
    repo.git("config", "user.email", "node@orchestrate.invalid")
    fetch_bundle(repo, bundle, tip, "refs/orchestrate/base")
    repo.git("checkout", "--quiet", "--detach", tip)
    return repo
