"""What orchestrate's own git reads: real repositories, real git, a program that leaves a marker.

The CLI-level attacks are in tests/security/test_git_tamper.py; these pin down the pieces: the
user's own filters keep working (an LFS-like clean filter), one the agent adds anywhere is not run,
a worktree's rewritten `.git` file is never followed, a repository inside the tree is found.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.persistence.repo import GitError, GitRepo
from tests.conftest import git, make_repo


def marking_program(tmp_path: Path) -> tuple[Path, Path]:
    """(program, marker): the program, used as a filter, upper-cases its input and leaves a mark."""
    marker = tmp_path / "marker"
    program = tmp_path / "prog"
    program.write_text(f'#!/bin/sh\necho ran >> "{marker}"\ntr a-z A-Z\n')
    program.chmod(0o755)
    return program, marker


def test_the_users_own_filter_is_honoured(tmp_path: Path) -> None:
    program, marker = marking_program(tmp_path)
    Path(os.environ["GIT_CONFIG_GLOBAL"]).write_text(f'[filter "upper"]\n\tclean = {program}\n')
    repo_path = make_repo(tmp_path / "repo", {".gitattributes": "*.txt filter=upper\n"})
    (repo_path / "a.txt").write_text("hello\n")
    repo = GitRepo(repo_path)

    tree = repo.snapshot_tree()

    assert git(repo_path, "cat-file", "blob", f"{tree}:a.txt") == "HELLO"
    assert marker.exists()


def test_a_filter_set_after_the_baseline_is_not_run_wherever_it_is_set(tmp_path: Path) -> None:
    program, marker = marking_program(tmp_path)
    repo_path = make_repo(tmp_path / "repo", {".gitattributes": "*.txt filter=upper diff=upper\n"})
    repo = GitRepo(repo_path)
    assert repo.head() is not None  # the baseline is taken
    config = (repo_path / ".git" / "config").read_bytes()
    Path(os.environ["GIT_CONFIG_GLOBAL"]).write_text(f'[filter "upper"]\n\tclean = {program}\n')
    with (repo_path / ".git" / "config").open("a") as f:
        f.write(f'[filter "upper"]\n\tsmudge = {program}\n[core]\n\tfsmonitor = {program}\n')
    (repo_path / "a.txt").write_text("hello\n")

    tree = repo.snapshot_tree()

    assert not marker.exists()
    assert git(repo_path, "-c", "filter.upper.clean=cat", "cat-file", "blob", f"{tree}:a.txt") == "hello"
    assert (repo_path / ".git" / "config").read_bytes() == config  # put back before git read it
    changes = repo.undo_tampering([])
    assert any(".git/config was changed" in c for c in changes.shared), changes
    assert any(".gitconfig was changed" in c for c in changes.shared), changes


def test_a_worktrees_git_dir_is_the_one_orchestrate_made_not_what_its_git_file_says(tmp_path: Path) -> None:
    program, marker = marking_program(tmp_path)
    repo_path = make_repo(tmp_path / "repo")
    repo = GitRepo(repo_path)
    path = tmp_path / "wt"
    repo.worktree_add_detached(path, repo.head() or "")
    repo.populate_worktree(path)
    admin = repo.linked(path).git_dir
    # The agent's own git dir, with fsmonitor set, named by the worktree's .git file.
    own = tmp_path / "own"
    git(tmp_path, "init", "-q", str(own))
    with (own / ".git" / "config").open("a") as f:
        f.write(f"[core]\n\tfsmonitor = {program}\n")
    (path / ".git").write_text(f"gitdir: {own / '.git'}\n")
    (path / "new.txt").write_text("new\n")

    worktree = repo.linked(path)
    assert worktree.git_dir == admin
    assert worktree.changed_paths() == ["new.txt"]
    tree = worktree.snapshot_tree()

    assert not marker.exists()
    assert git(repo_path, "cat-file", "blob", f"{tree}:new.txt") == "new"
    assert worktree.undo_tampering([]).here == ["the worktree's .git file was changed (put back)"]
    assert (path / ".git").read_text() == f"gitdir: {admin}\n"


def test_a_repository_inside_the_tree_loses_its_git_dir(tmp_path: Path) -> None:
    repo_path = make_repo(tmp_path / "repo")
    inner = make_repo(repo_path / "inner", {"x.txt": "x\n"})
    repo = GitRepo(repo_path)

    changed = repo.changed_paths()
    assert changed == ["inner/"]
    found = repo.undo_tampering(changed)

    assert found.here == ["inner/.git: a git repository inside the work tree (removed)"]
    assert not (inner / ".git").exists()
    assert repo.changed_paths() == ["inner/x.txt"]
    assert "160000" not in git(repo_path, "ls-tree", "-r", repo.snapshot_tree())


def test_a_git_dir_replaced_by_a_git_file_is_not_followed(tmp_path: Path) -> None:
    program, marker = marking_program(tmp_path)
    repo_path = make_repo(tmp_path / "repo")
    repo = GitRepo(repo_path)
    assert repo.head() is not None
    own = tmp_path / "own"
    git(tmp_path, "init", "-q", str(own))
    with (own / ".git" / "config").open("a") as f:
        f.write(f"[core]\n\tfsmonitor = {program}\n")
    (repo_path / ".git").rename(tmp_path / "moved")
    (repo_path / ".git").write_text(f"gitdir: {own / '.git'}\n")

    with pytest.raises(GitError, match="no longer a directory"):
        repo.status()
    assert not marker.exists()


def test_a_signing_program_written_between_the_check_and_gits_read_is_not_run(tmp_path: Path) -> None:
    """Without bubblewrap another task's agent writes the user's git config while orchestrate lands
    a commit: the check before the command may miss it (here: the same size and time, as a write
    just after the check would be). Settings with a fixed name are pinned on every command anyway."""
    program, marker = marking_program(tmp_path)
    config = Path(os.environ["GIT_CONFIG_GLOBAL"])
    hostile = f"[gpg]\n\tprogram = {program}\n[commit]\n\tgpgSign = true\n[core]\n\tpager = {program}\n"
    config.write_text("#" * (len(hostile) - 1) + "\n")
    repo_path = make_repo(tmp_path / "repo")
    repo = GitRepo(repo_path)
    assert repo.head() is not None  # the baseline is taken
    seen = config.stat()
    config.write_text(hostile)
    os.utime(config, ns=(seen.st_atime_ns, seen.st_mtime_ns))
    (repo_path / "a.txt").write_text("a\n")

    repo.commit_all("T001: a", {})

    assert not marker.exists()
    assert git(repo_path, "log", "-1", "--format=%s") == "T001: a"
