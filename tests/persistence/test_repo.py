"""The git wrapper against real repositories."""

from __future__ import annotations

import shutil
import time
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


def test_worktrees_are_added_listed_and_removed_with_their_branches(git_repo: Path, tmp_path: Path) -> None:
    repo = GitRepo(git_repo)
    base = repo.head()
    assert base is not None
    path = tmp_path / "wt" / "T1"
    repo.worktree_add(path, "orchestrate/r1/T1", base)
    assert (path / "README.md").read_text() == "# test repo\n"
    listed = {e.path.resolve(): e for e in repo.worktrees()}
    assert listed[path.resolve()].branch == "orchestrate/r1/T1"
    assert listed[path.resolve()].head == base
    assert repo.branches("orchestrate/r1") == ["orchestrate/r1/T1"]
    repo.worktree_remove(path)
    repo.delete_branch("orchestrate/r1/T1")
    assert not path.exists()
    assert len(repo.worktrees()) == 1
    assert repo.branches("orchestrate/r1") == []
    repo.delete_branch("orchestrate/r1/T1")  # gone already: no error


def test_a_worktree_left_locked_without_its_directory_is_removed(git_repo: Path, tmp_path: Path) -> None:
    repo = GitRepo(git_repo)
    path = tmp_path / "wt" / "T2"
    repo.worktree_add(path, "b2", repo.head() or "")
    git(git_repo, "worktree", "lock", "--reason", "initializing", str(path))
    shutil.rmtree(path)
    repo.worktree_remove(path)
    assert len(repo.worktrees()) == 1
    repo.worktree_add(path, "b3", repo.head() or "")  # the path is free again
    assert path.is_dir()


def test_a_snapshot_sees_a_same_size_edit_made_right_after_the_worktree_was_cut(
    git_repo: Path, tmp_path: Path
) -> None:
    # The snapshot index starts from the worktree's index; git must still re-read a file whose
    # stat data could look unchanged (same size, same second).
    repo = GitRepo(git_repo)
    path = tmp_path / "wt" / "T3"
    repo.worktree_add(path, "b4", repo.head() or "")
    (path / "README.md").write_text("# TEST REPO\n")
    time.sleep(1.05)  # the snapshot index is made in a later second than the edit
    assert GitRepo(path).snapshot_tree() != repo.head_tree()


def test_merge_tree_merges_or_names_the_conflicted_paths_without_touching_the_tree(git_repo: Path) -> None:
    repo = GitRepo(git_repo)
    (git_repo / "a.txt").write_text("1\n2\n3\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "a")
    base = repo.head() or ""
    git(git_repo, "switch", "-q", "-c", "side")
    (git_repo / "a.txt").write_text("1\n2\nthree\n")
    (git_repo / "b.txt").write_text("b\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "side")
    side = repo.head() or ""
    git(git_repo, "switch", "-q", "work")
    (git_repo / "a.txt").write_text("one\n2\n3\n")
    git(git_repo, "commit", "-q", "-am", "main")
    merged = repo.merge_tree("HEAD", side)
    assert merged.conflicts == []
    assert merged.tree is not None
    assert repo.is_clean()
    repo.checkout_tree(merged.tree)
    assert (git_repo / "a.txt").read_text() == "one\n2\nthree\n"
    assert (git_repo / "b.txt").read_text() == "b\n"
    assert sorted(repo.changed_between(base, side)) == ["a.txt", "b.txt"]
    # Put the tree back as HEAD has it, the staged new file included.
    repo.restore_head(repo.changed_paths())
    assert repo.is_clean()
    assert not (git_repo / "b.txt").exists()

    (git_repo / "a.txt").write_text("one\n2\nTHREE\n")
    git(git_repo, "commit", "-q", "-am", "clash")
    clash = repo.merge_tree("HEAD", side)
    assert clash.tree is None
    assert clash.conflicts == ["a.txt"]
    assert repo.is_clean()


def test_a_spare_worktree_is_made_detached_then_filled_then_moved_to_a_new_head(
    git_repo: Path, tmp_path: Path
) -> None:
    repo = GitRepo(git_repo)
    base = repo.head()
    assert base is not None
    path = tmp_path / "wt" / "spare"
    repo.worktree_add_detached(path, base)
    assert not (path / "README.md").exists()  # not checked out yet
    repo.populate_worktree(path)
    assert (path / "README.md").read_text() == "# test repo\n"
    listed = {e.path.resolve(): e for e in repo.worktrees()}
    assert listed[path.resolve()].branch is None
    assert listed[path.resolve()].head == base
    assert GitRepo(path).snapshot_tree() == repo.head_tree()
    assert GitRepo(path).git_dir == Path(git(path, "rev-parse", "--absolute-git-dir").strip()).resolve()

    (git_repo / "README.md").write_text("# moved on\n")
    git(git_repo, "commit", "-q", "-am", "move on")
    head = repo.head()
    assert head is not None
    repo.move_worktree_to(path, head)
    assert (path / "README.md").read_text() == "# moved on\n"
    assert git(path, "rev-parse", "HEAD").strip() == head
    assert git(path, "status", "--porcelain") == ""


def test_a_worktree_written_by_hand_is_one_git_itself_works_with(git_repo: Path, tmp_path: Path) -> None:
    repo = GitRepo(git_repo)
    base = repo.head() or ""
    path = tmp_path / "wt" / "hand"
    repo.worktree_add_detached(path, base)
    repo.populate_worktree(path)
    admin = Path(git(path, "rev-parse", "--absolute-git-dir").strip())
    assert admin.parent == (repo.common_dir / "worktrees")
    assert not (admin / "logs").exists()  # written here, not by `git worktree add` (it keeps a reflog)
    assert git(path, "status", "--porcelain") == ""
    assert git(path, "rev-parse", "HEAD").strip() == base
    git(git_repo, "worktree", "prune")  # a sound worktree: prune keeps it
    assert path.resolve() in {e.path.resolve() for e in repo.worktrees()}
    (path / "new.txt").write_text("x\n")
    git(path, "add", "new.txt")
    git(path, "commit", "-q", "-m", "in the worktree")
    made = git(path, "rev-parse", "HEAD").strip()
    assert git(git_repo, "log", "-1", "--format=%s", made).strip() == "in the worktree"
    git(git_repo, "worktree", "remove", "--force", str(path))
    assert not path.exists()
    assert not admin.exists()


def test_a_repository_with_extensions_gets_its_worktrees_from_git(git_repo: Path, tmp_path: Path) -> None:
    git(git_repo, "config", "extensions.worktreeConfig", "true")
    repo = GitRepo(git_repo)
    path = tmp_path / "wt" / "by-git"
    repo.worktree_add_detached(path, repo.head() or "")
    repo.populate_worktree(path)
    admin = Path(git(path, "rev-parse", "--absolute-git-dir").strip())
    assert (admin / "logs" / "HEAD").is_file()  # git's own `worktree add` keeps a reflog
    assert git(path, "status", "--porcelain") == ""


def test_removing_our_worktrees_leaves_a_users_missing_worktree_to_git(
    git_repo: Path, tmp_path: Path
) -> None:
    repo = GitRepo(git_repo)
    theirs = tmp_path / "theirs"
    git(git_repo, "worktree", "add", "-q", "--detach", str(theirs))
    shutil.rmtree(theirs)  # the user deleted it by hand; git would prune it, we do not
    ours = tmp_path / "wt" / "ours"
    repo.worktree_add_detached(ours, repo.head() or "")
    repo.remove_worktrees([ours], [])
    listed = {e.path.resolve() for e in repo.worktrees()}
    assert theirs.resolve() in listed
    assert ours.resolve() not in listed


def test_a_same_size_edit_in_a_filled_spare_is_seen(git_repo: Path, tmp_path: Path) -> None:
    repo = GitRepo(git_repo)
    path = tmp_path / "wt" / "spare"
    repo.worktree_add_detached(path, repo.head() or "")
    repo.populate_worktree(path)
    (path / "README.md").write_text("# TEST REPO\n")
    time.sleep(1.05)  # the snapshot index is made in a later second than the edit
    assert GitRepo(path).snapshot_tree() != repo.head_tree()


def test_head_now_agrees_with_git_for_loose_and_packed_refs_and_a_detached_head(git_repo: Path) -> None:
    repo = GitRepo(git_repo)
    assert repo.head_now() == repo.head()
    (git_repo / "README.md").write_text("next\n")
    git(git_repo, "commit", "-q", "-am", "next")
    assert repo.head_now() == repo.head() == git(git_repo, "rev-parse", "HEAD").strip()
    git(git_repo, "pack-refs", "--all")  # no loose ref file any more: git answers
    assert repo.head_now() == repo.head()
    git(git_repo, "switch", "-q", "--detach", "HEAD~1")
    assert repo.head_now() == repo.head() == git(git_repo, "rev-parse", "HEAD").strip()


def test_several_worktrees_and_their_branches_are_removed_at_once(git_repo: Path, tmp_path: Path) -> None:
    repo = GitRepo(git_repo)
    base = repo.head() or ""
    paths = [tmp_path / "wt" / f"T{n}" for n in range(3)]
    for n, path in enumerate(paths[:2]):
        repo.worktree_add(path, f"orchestrate/r1/T{n}", base)
    repo.worktree_add_detached(paths[2], base)
    repo.remove_worktrees(paths, ["orchestrate/r1/T0", "orchestrate/r1/T1", "orchestrate/r1/gone"])
    assert not any(path.exists() for path in paths)
    assert len(repo.worktrees()) == 1
    assert repo.branches("orchestrate/r1") == []
    assert not (repo.common_dir / "worktrees").exists() or not any((repo.common_dir / "worktrees").iterdir())


def test_task_branches_written_and_deleted_by_hand_are_what_git_sees(git_repo: Path) -> None:
    repo = GitRepo(git_repo)
    base = repo.head() or ""
    repo.set_branch("orchestrate/r1/T1", base)
    assert git(git_repo, "rev-parse", "orchestrate/r1/T1").strip() == base
    listed = git(git_repo, "for-each-ref", "--format=%(refname)", "refs/heads/orchestrate/")
    assert listed.split() == ["refs/heads/orchestrate/r1/T1"]
    (git_repo / "README.md").write_text("next\n")
    git(git_repo, "commit", "-q", "-am", "next")
    head = repo.head() or ""
    repo.set_branch("orchestrate/r1/T1", head)  # moved
    assert git(git_repo, "rev-parse", "orchestrate/r1/T1").strip() == head
    git(git_repo, "branch", "-q", "orchestrate/r1/T2", base)  # made by git, with a reflog
    git(git_repo, "branch", "-q", "orchestrate/r1/T3", base)
    git(git_repo, "pack-refs", "--all")  # packed: git must delete it
    repo.set_branch("orchestrate/r1/T4", base)
    git(git_repo, "update-ref", "refs/heads/orchestrate/r1/T4", head)  # git takes it over
    repo.remove_worktrees(
        [], ["orchestrate/r1/T1", "orchestrate/r1/T2", "orchestrate/r1/T3", "orchestrate/r1/T4"]
    )
    assert repo.branches("orchestrate") == []
    assert git(git_repo, "for-each-ref", "refs/heads/orchestrate/") == ""
    assert not (repo.common_dir / "refs" / "heads" / "orchestrate").exists()
    assert not (repo.common_dir / "logs" / "refs" / "heads" / "orchestrate").exists()
    assert git(git_repo, "fsck", "--no-progress").strip() == ""


def test_a_lock_a_kill_left_on_a_task_branch_does_not_stop_the_next_write(git_repo: Path) -> None:
    repo = GitRepo(git_repo)
    base = repo.head() or ""
    lock = repo.common_dir / "refs" / "heads" / "orchestrate" / "r1" / "T1.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("half")
    repo.set_branch("orchestrate/r1/T1", base)
    assert git(git_repo, "rev-parse", "orchestrate/r1/T1").strip() == base
    assert not lock.exists()
