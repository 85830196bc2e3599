"""Shared fixtures: real git repositories in temp dirs, with an identity, never a chdir."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from orchestrator.tools.sandbox import detect_sandbox

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_PLANS = REPO_ROOT.parent / "shared" / "plans"

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.invalid",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.invalid",
}


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads the user's git config, API keys or ORCHESTRATE_* settings."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)
    for key in list(os.environ):
        if key.startswith(("ORCHESTRATE_", "ANTHROPIC_")) or key == "CLAUDECODE":
            monkeypatch.delenv(key, raising=False)


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` and return its stdout (stripped)."""
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def make_repo(path: Path, files: dict[str, str] | None = None, branch: str = "work") -> Path:
    """A git repository at `path` with `files` committed on `branch`."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    for name, content in (files or {"README.md": "# test repo\n"}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """An empty-but-committed git repository on branch 'work'."""
    return make_repo(tmp_path / "repo")


@pytest.fixture
def shared_plans() -> Path:
    if not SHARED_PLANS.is_dir():
        pytest.skip(f"real-world plans not found at {SHARED_PLANS}")
    return SHARED_PLANS


ORCHESTRATE = Path(sys.executable).with_name("orchestrate")
"""The installed console script, run as a user runs it (its process sealed before anything else)."""

needs_bwrap = pytest.mark.skipif(
    detect_sandbox("auto").kind != "bubblewrap", reason="bubblewrap cannot run here"
)
SANDBOXES = [pytest.param("bubblewrap", marks=needs_bwrap), "none"]
"""Parametrize a security test over both: what must hold with the sandbox and without it."""


def orchestrate(
    repo: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`orchestrate ARGS` in `repo`, as a subprocess; output decoded whatever bytes it holds."""
    return subprocess.run(
        [str(ORCHESTRATE), *args],
        cwd=repo,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=timeout,
        check=False,
    )
