"""The git wrapper against real repositories."""

from __future__ import annotations

from pathlib import Path

from orchestrator.persistence.repo import GitRepo, find_repo_root
from tests.conftest import git, make_repo


def test_find_repo_root_from_a_file_and_outside_any_repository(git_repo: Path, tmp_path: Path) -> None:
    (git_repo / "sub").mkdir()
    (git_repo / "sub" / "plan.md").write_text("x")
    assert find_repo_root(git_repo / "sub" / "plan.md") == git_repo.resolve()
    outside = tmp_path / "outside"
    outside.mkdir()
    assert find_repo_root(outside) is None


def test_snapshot_tree_sees_untracked_files_and_leaves_the_index_alone(git_repo: Path) -> None:
    repo = GitRepo(git_repo)
    clean = repo.snapshot_tree()
    assert clean == repo.head_tree()
    (git_repo / "new.txt").write_text("new")
    (git_repo / "README.md").write_text("changed")
    changed = repo.snapshot_tree()
    assert changed != clean
    assert git(git_repo, "diff", "--cached", "--name-only") == ""
    assert sorted(repo.changed_paths()) == ["README.md", "new.txt"]
    (git_repo / "new.txt").unlink()
    (git_repo / "README.md").write_text("# test repo\n")
    assert repo.snapshot_tree() == clean


def test_save_snapshot_keeps_edits_in_a_ref_and_reset_paths_restores_head(git_repo: Path) -> None:
    repo = GitRepo(git_repo)
    assert repo.save_snapshot("refs/orchestrate/r/T1/attempt-1", "nothing") is None
    (git_repo / "deep" / "dir").mkdir(parents=True)
    (git_repo / "deep" / "dir" / "new.txt").write_text("new")
    (git_repo / "README.md").write_text("changed")
    sha = repo.save_snapshot("refs/orchestrate/r/T1/attempt-1", "edits of T1")
    assert sha is not None
    repo.reset_paths(repo.changed_paths())
    assert repo.is_clean()
    assert not (git_repo / "deep").exists()
    kept = git(git_repo, "show", "refs/orchestrate/r/T1/attempt-1:deep/dir/new.txt")
    assert kept == "new"
    assert git(git_repo, "rev-parse", "refs/orchestrate/r/T1/attempt-1^") == repo.head()


def test_commit_all_with_trailers_and_finding_commits_by_trailer(git_repo: Path) -> None:
    repo = GitRepo(git_repo)
    (git_repo / "a.txt").write_text("a")
    first = repo.commit_all("Phase 1: A", {"Orchestrate-Task": "T1", "Orchestrate-Run": "r1"})
    (git_repo / "b.txt").write_text("b")
    (git_repo / "mine.txt").write_text("not the task's")
    second = repo.commit_all(
        "Phase 1: B", {"Orchestrate-Task": "T2", "Orchestrate-Run": "r2"}, exclude=["mine.txt"]
    )
    assert (
        git(git_repo, "log", "-1", "--format=%B")
        .strip()
        .endswith("Orchestrate-Task: T2\nOrchestrate-Run: r2")
    )
    assert repo.changed_paths() == ["mine.txt"]
    assert [(c.task_id, c.run_id, c.sha) for c in repo.trailer_commits()] == [
        ("T1", "r1", first),
        ("T2", "r2", second),
    ]
    assert [c.task_id for c in repo.trailer_commits(run_id="r2")] == ["T2"]


def test_add_exclude_is_idempotent_and_never_touches_gitignore(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {".gitignore": "*.log\n"})
    repo = GitRepo(root)
    repo.add_exclude("/checkpoints/")
    repo.add_exclude("/checkpoints/")
    exclude = (root / ".git" / "info" / "exclude").read_text()
    assert exclude.count("/checkpoints/") == 1
    assert (root / ".gitignore").read_text() == "*.log\n"
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "j.jsonl").write_text("{}")
    assert repo.is_clean()


def test_branches(git_repo: Path) -> None:
    repo = GitRepo(git_repo)
    assert repo.current_branch() == "work"
    repo.switch("feature", create=True)
    assert repo.current_branch() == "feature"
    assert repo.branch_exists("work")
    assert not repo.branch_exists("nope")
