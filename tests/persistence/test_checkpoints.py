"""The run store and the run lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.domain import transitions as t
from orchestrator.errors import UsageError
from orchestrator.persistence.checkpoints import RunLock, RunStore, new_run_id
from orchestrator.persistence.repo import GitRepo


def test_run_ids_sort_by_start_and_resolve_by_prefix(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "checkpoints")
    with pytest.raises(UsageError, match="no runs found"):
        store.resolve(None)
    for run_id in ("20250101-000000-aaaa", "20250102-000000-bbbb"):
        with store.journal(run_id) as journal:
            journal.append(t.RunStarted(run_id=run_id))
    store.journal("20250103-000000-cccc").open().close()  # killed before it recorded its start
    assert store.run_ids() == ["20250101-000000-aaaa", "20250102-000000-bbbb"]
    assert store.resolve(None) == "20250102-000000-bbbb"
    assert store.resolve("20250101") == "20250101-000000-aaaa"
    with pytest.raises(UsageError, match="ambiguous"):
        store.resolve("2025")
    with pytest.raises(UsageError, match="no run 'zzz'"):
        store.resolve("zzz")
    assert len(new_run_id()) == len("20250101-000000-aaaa")


def test_a_second_run_on_the_same_repository_is_refused(git_repo: Path) -> None:
    with RunLock(GitRepo(git_repo)):
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path\n"
                "from orchestrator.persistence.checkpoints import RunLock\n"
                "from orchestrator.persistence.repo import GitRepo\n"
                "try:\n    RunLock(GitRepo(Path(sys.argv[1]))).acquire()\n"
                "except Exception as e:\n    print(e); sys.exit(3)",
                str(git_repo),
            ],
            capture_output=True,
            text=True,
        )
        assert other.returncode == 3
        assert "another orchestrate run holds this repository" in other.stdout
    RunLock(GitRepo(git_repo)).acquire()  # free again once released


def test_checkpoints_inside_the_repository_are_excluded(git_repo: Path) -> None:
    store = RunStore.for_repo(git_repo, Path("checkpoints"))
    store.ensure_excluded(GitRepo(git_repo))
    assert "/checkpoints/" in (git_repo / ".git" / "info" / "exclude").read_text()
    with pytest.raises(UsageError, match="cannot be the repository root"):
        RunStore.for_repo(git_repo, Path()).ensure_excluded(GitRepo(git_repo))
