"""git's own files written by hand (persistence/gitfiles.py), each checked against git itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.persistence import gitfiles
from tests.conftest import git


def test_a_plain_layout_is_one_without_extensions_includes_or_reftable(git_repo: Path) -> None:
    common = git_repo / ".git"
    assert gitfiles.plain_layout(common)
    git(git_repo, "config", "include.path", "other.config")
    assert not gitfiles.plain_layout(common)
    git(git_repo, "config", "--unset", "include.path")
    git(git_repo, "config", "extensions.worktreeConfig", "true")
    assert not gitfiles.plain_layout(common)
    assert not gitfiles.plain_layout(common.parent / "missing")


def test_head_is_read_from_a_loose_ref_and_left_to_git_otherwise(tmp_path: Path, git_repo: Path) -> None:
    common = git_repo / ".git"
    assert gitfiles.read_head(common, common) == git(git_repo, "rev-parse", "HEAD")
    git(git_repo, "pack-refs", "--all")
    assert gitfiles.read_head(common, common) is None  # packed: git answers
    git(git_repo, "switch", "-q", "--detach")
    assert gitfiles.read_head(common, common) == git(git_repo, "rev-parse", "HEAD")
    unborn = tmp_path / "unborn"
    git(tmp_path, "init", "-q", str(unborn))
    assert gitfiles.read_head(unborn / ".git", unborn / ".git") is None


def test_a_worktree_written_by_hand_is_listed_by_git_at_its_base(git_repo: Path, tmp_path: Path) -> None:
    common = git_repo / ".git"
    base = git(git_repo, "rev-parse", "HEAD")
    path = tmp_path / "wt"
    admin = gitfiles.write_worktree(common, path, base)
    assert gitfiles.find_admin(common, path.resolve()) == admin
    listing = git(git_repo, "worktree", "list", "--porcelain")
    assert f"worktree {path.resolve()}\nHEAD {base}\ndetached" in listing
    assert not (common / gitfiles.WORKTREE_STAGING).exists()
    # A second one by the same name gets an administrative directory of its own.
    other = tmp_path / "elsewhere" / "wt"
    other.parent.mkdir()
    assert gitfiles.write_worktree(common, other, base) == admin.with_name("wt2")


def test_a_worktree_that_cannot_be_made_leaves_nothing_behind(git_repo: Path, tmp_path: Path) -> None:
    common = git_repo / ".git"
    taken = tmp_path / "taken"
    taken.mkdir()  # the directory exists already: git's `worktree add` refuses too
    with pytest.raises(FileExistsError):
        gitfiles.write_worktree(common, taken, git(git_repo, "rev-parse", "HEAD"))
    assert list((common / "worktrees").iterdir()) == []
    assert not (common / gitfiles.WORKTREE_STAGING).exists()
    assert list(taken.iterdir()) == []


def test_a_loose_ref_written_by_hand_is_read_by_git_and_refused_when_it_cannot_be(git_repo: Path) -> None:
    common = git_repo / ".git"
    base = git(git_repo, "rev-parse", "HEAD")
    assert gitfiles.write_loose_ref(common, "refs/heads/orchestrate/r1/T1", base)
    assert git(git_repo, "rev-parse", "orchestrate/r1/T1") == base
    assert not gitfiles.write_loose_ref(common, "refs/heads/orchestrate/r1/T2", "HEAD")  # not a sha
    # A branch where a folder of branches is: git's update-ref says why, not this.
    assert not gitfiles.write_loose_ref(common, "refs/heads/orchestrate/r1", base)


def test_packed_branches_are_left_to_git_and_loose_ones_deleted_with_their_folders(git_repo: Path) -> None:
    common = git_repo / ".git"
    base = git(git_repo, "rev-parse", "HEAD")
    git(git_repo, "branch", "orchestrate/r1/packed", base)
    git(git_repo, "pack-refs", "--all")
    gitfiles.write_loose_ref(common, "refs/heads/orchestrate/r1/T1", base)
    git(git_repo, "branch", "orchestrate/r1/T2", base)  # with a reflog
    left = gitfiles.delete_loose_branches(
        common, ["orchestrate/r1/T1", "orchestrate/r1/T2", "orchestrate/r1/packed"]
    )
    assert left == ["orchestrate/r1/packed"]
    assert git(git_repo, "for-each-ref", "--format=%(refname)", "refs/heads/orchestrate/") == (
        "refs/heads/orchestrate/r1/packed"
    )
    assert not (common / "refs" / "heads" / "orchestrate").exists()
    assert not (common / "logs" / "refs" / "heads" / "orchestrate" / "r1" / "T2").exists()
