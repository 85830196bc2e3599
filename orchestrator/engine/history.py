"""Past runs, read back from their journals for `orchestrate runs` and `orchestrate show`."""

from __future__ import annotations

from pathlib import Path

from orchestrator.config import load_settings
from orchestrator.domain.state import RunState
from orchestrator.engine.session import repo_for_resume
from orchestrator.persistence.checkpoints import RunStore
from orchestrator.persistence.repo import GitRepo


def run_store(repo: Path | None) -> tuple[GitRepo, RunStore]:
    """The repository (`repo`, or the one the current directory is in) and its runs."""
    git = repo_for_resume(repo)
    settings = load_settings(git.root, {})
    return git, RunStore.for_repo(git.root, settings.checkpoints_dir)


def _store(repo: Path | None) -> RunStore:
    return run_store(repo)[1]


def list_runs(repo: Path | None = None) -> list[RunState]:
    """Every run of the repository, oldest first."""
    store = _store(repo)
    return [RunState.from_records(store.transitions(run_id)) for run_id in store.run_ids()]


def load_run(run_id: str | None, repo: Path | None = None) -> tuple[RunState, Path]:
    """The named (or latest) run's state and its directory."""
    store = _store(repo)
    resolved = store.resolve(run_id)
    return RunState.from_records(store.transitions(resolved)), store.run_dir(resolved)
