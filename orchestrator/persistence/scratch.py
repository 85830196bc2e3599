"""A scratch repository for `orchestrate demo`: made, given a first commit, and its log read back.

Here, not in the CLI, because persistence/ is the only package that starts git; with the same
SAFETY settings as every other git command (the user's global hooks or fsmonitor do not run for the
demo's commit)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from orchestrator.persistence.gitconfig import SAFETY
from orchestrator.persistence.repo import OWN_GROUP, git_program


def _git(directory: Path, *args: str, check: bool = True) -> str:
    return subprocess.run(
        [git_program(), *SAFETY, *args],
        cwd=directory,
        check=check,
        capture_output=True,
        text=True,
        process_group=OWN_GROUP,
    ).stdout


def init_scratch_repo(directory: Path, message: str) -> None:
    """A new repository on `main` in `directory`, everything in it committed as `message`. Where
    git knows no identity (no user.email and no GIT_AUTHOR_EMAIL), the repository gets its own."""
    _git(directory, "init", "-q", "-b", "main")
    has_identity = _git(directory, "config", "user.email", check=False).strip()
    if not has_identity and not os.environ.get("GIT_AUTHOR_EMAIL"):
        _git(directory, "config", "user.name", "orchestrate demo")
        _git(directory, "config", "user.email", "demo@orchestrate.invalid")
    _git(directory, "add", "-A")
    _git(directory, "commit", "-q", "-m", message)


def decorated_log(directory: Path) -> str:
    """`git log --oneline --decorate` of the repository in `directory` ('' if git fails)."""
    return _git(directory, "log", "--oneline", "--decorate", check=False)
