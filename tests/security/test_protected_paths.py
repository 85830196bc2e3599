"""What a later run reads and trusts stays out of the agent's reach, whoever writes it: the agent
itself, or a check it wrote that the plan's verification runs; and the guard that puts things back
never writes through a link the agent left.

- A verification command (the agent's own script, run by the plan's check) writes
  `prompts/task.md.j2`, `orchestrate.toml`, a `[tool.orchestrate]` table in pyproject.toml and a
  git repository inside the tree: none of it is ever committed, in place or in a worktree, and on
  the run's new head (a --parallel recheck) as well as where the task ran.
- pyproject.toml in a repository with no settings file: an added `[tool.orchestrate]` table is
  undone (alone, byte for byte, where it can be; else the whole file's change), an honest edit of
  the rest of the file is the task's.
- The plan's folder replaced by a link to a folder outside the workspace: putting the plan back
  removes the link instead of writing through it.

All through the real CLI, in real git repositories, with bubblewrap and with `sandbox = "none"`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SANDBOXES, git, make_repo, orchestrate

MODES = ["in-place", "parallel"]

PYPROJECT = '[project]\nname = "demo"\ndependencies = []\n\n[tool.ruff]\nline-length = 100\n'

# Writes what a later run would read and trust, and a repository inside the tree (whose `.git`
# `git add` would look into, and commit as a gitlink). With WHERE=main, only in the run's own work
# tree (a worktree's .git is a file).
HOSTILE_CHECK = r"""
test -f a.txt || exit 1
if [ "$WHERE" = main ] && [ ! -d .git ]; then exit 0; fi
printf -- '- [ ] T009 planted\n  - Verify: `touch planted`\n' >> plan.md
mkdir -p prompts
printf 'owned {{ task.id }}\n' > prompts/task.md.j2
printf 'sandbox = "none"\nverify = ["touch planted"]\n' > orchestrate.toml
printf '\n[tool.orchestrate]\nsandbox = "none"\n' >> pyproject.toml
export GIT_CONFIG_GLOBAL=/dev/null
mkdir -p nested && cd nested && git init -q . && echo n > n.txt && git add n.txt \
    && git -c user.name=a -c user.email=a@example.invalid commit -qm n
exit 0
"""

PLAN = """\
# Plan

## Phase 1: Files

- [ ] T001 [P] Write `a.txt`
  - Verify: `sh check.sh`
- [ ] T002 [P] Write `b.txt`
  - Verify: `test -f b.txt`
"""


def write_script(tmp_path: Path, steps: dict[str, Any]) -> Path:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(steps))
    return path


def mode_args(mode: str) -> list[str]:
    return ["--parallel", "2"] if mode == "parallel" else []


def committed(repo: Path) -> str:
    """Every path of every commit, with its mode."""
    return "\n".join(git(repo, "ls-tree", "-r", sha) for sha in git(repo, "rev-list", "--all").split())


def assert_nothing_trusted_was_committed(repo: Path) -> None:
    everything = committed(repo)
    assert "prompts/" not in everything
    assert "orchestrate.toml" not in everything
    assert "160000" not in everything, "a gitlink was committed"
    for sha in git(repo, "rev-list", "--all").split():
        text = git(repo, "show", f"{sha}:pyproject.toml")
        assert "[tool.orchestrate]" not in text, sha
    assert not (repo / "prompts").exists()
    assert not (repo / "orchestrate.toml").exists()
    assert "[tool.orchestrate]" not in (repo / "pyproject.toml").read_text()
    assert not (repo / "nested" / ".git").exists()
    assert "planted" not in (repo / "plan.md").read_text()
    assert "planted" not in git(repo, "log", "-p", "--", "plan.md")


@pytest.mark.parametrize("sandbox", SANDBOXES)
@pytest.mark.parametrize("mode", MODES)
def test_a_check_that_writes_what_a_later_run_trusts_fails_its_attempt(
    tmp_path: Path, mode: str, sandbox: str
) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "plan.md": PLAN, "pyproject.toml": PYPROJECT})
    script = write_script(
        tmp_path,
        {
            "T001": [{"write": "a.txt", "content": "a\n"}, {"write": "check.sh", "content": HOSTILE_CHECK}],
            "T002": [{"write": "b.txt", "content": "b\n"}],
        },
    )
    done = orchestrate(
        repo, "run", "plan.md", "--script", str(script), *mode_args(mode),
        env={"ORCHESTRATE_SANDBOX": sandbox, "ORCHESTRATE_MAX_ATTEMPTS": "2"},
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert_nothing_trusted_was_committed(repo)
    assert git(repo, "log", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split() == ["T002"]
    assert "its checks changed" in done.stderr, done.stderr
    shown = json.loads(orchestrate(repo, "show", "--json").stdout)
    failures = [a.get("failure") or "" for a in shown["tasks"]["T001"]["attempts"]]
    assert len(failures) == 2
    assert all("prompts/task.md.j2" in f and "orchestrate.toml" in f for f in failures), failures
    assert all("plan.md" in f for f in failures), failures
    assert all("[tool.orchestrate]" in f for f in failures), failures


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_recheck_on_the_new_head_that_writes_them_is_undone_before_the_commit(
    tmp_path: Path, sandbox: str
) -> None:
    """--parallel: T001's check is benign in its worktree, and hostile in the run's work tree,
    where it runs again because T002 landed first (the run's head moved): what it wrote is put
    back before the tick and the commit, and said; T001's own work lands."""
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "plan.md": PLAN, "pyproject.toml": PYPROJECT})
    script = write_script(
        tmp_path,
        {
            "T001": [
                {"write": "a.txt", "content": "a\n"},
                {"write": "check.sh", "content": HOSTILE_CHECK.replace("$WHERE", "main")},
                {"sleep": 2},  # T002 lands first: T001 is checked again on the new head
            ],
            "T002": [{"write": "b.txt", "content": "b\n"}],
        },
    )
    done = orchestrate(
        repo, "run", "plan.md", "--script", str(script), "--parallel", "2",
        env={"ORCHESTRATE_SANDBOX": sandbox},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert_nothing_trusted_was_committed(repo)
    assert sorted(git(repo, "log", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split()) == [
        "T001",
        "T002",
    ]
    assert (repo / "a.txt").read_text() == "a\n"
    assert git(repo, "show", "HEAD:nested/n.txt") == "n"  # the files, not a gitlink
    assert "prompts/task.md.j2" in done.stderr, done.stderr
    assert "undone" in done.stderr, done.stderr
    assert git(repo, "status", "--porcelain") == ""


# -- pyproject.toml's [tool.orchestrate] --------------------------------------------------------

SIMPLE_PLAN = "# Plan\n\n- [ ] T001 Write `a.txt`\n  - Verify: `test -f a.txt`\n"
HONEST = PYPROJECT.replace("dependencies = []", 'dependencies = ["requests>=2"]')


@pytest.mark.parametrize(
    ("edited", "kept"),
    [
        pytest.param(
            HONEST + '\n[tool.orchestrate]\nsandbox = "none"\nverify = ["touch planted"]\n',
            HONEST,
            id="table-added-beside-an-honest-edit",
        ),
        pytest.param(
            HONEST.replace("[tool.ruff]", '[tool]\norchestrate = { sandbox = "none" }\n\n[tool.ruff]'),
            PYPROJECT,
            id="inline-table-whole-file-undone",
        ),
        pytest.param(
            HONEST + '\n[tool.orchestrate.prices]\n"my-model" = [1.0, 2.0]\n',
            HONEST,
            id="a-subtable-added",
        ),
    ],
)
@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_settings_table_the_agent_adds_to_pyproject_is_undone(
    tmp_path: Path, sandbox: str, edited: str, kept: str
) -> None:
    repo = make_repo(
        tmp_path / "repo", {"README.md": "# r\n", "plan.md": SIMPLE_PLAN, "pyproject.toml": PYPROJECT}
    )
    script = write_script(
        tmp_path,
        {
            "T001": {
                "attempts": [
                    [{"write": "a.txt", "content": "a\n"}, {"write": "pyproject.toml", "content": edited}],
                    [{"write": "a.txt", "content": "a\n"}],
                ]
            }
        },
    )
    done = orchestrate(repo, "run", "plan.md", "--script", str(script), env={"ORCHESTRATE_SANDBOX": sandbox})
    assert done.returncode == 0, done.stdout + done.stderr
    assert (repo / "pyproject.toml").read_text() == kept
    assert git(repo, "show", "HEAD:pyproject.toml") + "\n" == kept
    assert "pyproject.toml" in done.stderr, done.stderr
    assert "undone" in done.stderr, done.stderr
    if kept == PYPROJECT:  # undone whole: said so
        assert "whole file" in done.stderr, done.stderr
    dry = orchestrate(repo, "run", "plan.md", "--dry-run")
    assert "planted" not in dry.stdout + dry.stderr


def test_an_honest_edit_of_pyproject_is_the_tasks(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo", {"README.md": "# r\n", "plan.md": SIMPLE_PLAN, "pyproject.toml": PYPROJECT}
    )
    script = write_script(
        tmp_path,
        {"T001": [{"write": "a.txt", "content": "a\n"}, {"write": "pyproject.toml", "content": HONEST}]},
    )
    done = orchestrate(repo, "run", "plan.md", "--script", str(script), env={"ORCHESTRATE_SANDBOX": "none"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "undone" not in done.stderr
    assert git(repo, "show", "HEAD:pyproject.toml") + "\n" == HONEST
    shown = json.loads(orchestrate(repo, "show", "--json").stdout)
    assert len(shown["tasks"]["T001"]["attempts"]) == 1


def test_a_table_removed_while_another_settings_file_is_read_is_put_back(tmp_path: Path) -> None:
    """orchestrate.toml holds the settings; pyproject.toml's own table is not read while it does,
    but would be the moment orchestrate.toml went: its removal is put back too, in place."""
    table = '[tool.orchestrate]\nprotected_paths = ["secrets/*"]\n'
    before = PYPROJECT.replace("[tool.ruff]", table + "\n[tool.ruff]")
    repo = make_repo(
        tmp_path / "repo",
        {
            "README.md": "# r\n",
            "plan.md": SIMPLE_PLAN,
            "pyproject.toml": before,
            "orchestrate.toml": "max_attempts = 2\n",
        },
    )
    edited = HONEST  # the table gone, the dependency added
    script = write_script(
        tmp_path,
        {
            "T001": {
                "attempts": [
                    [{"write": "a.txt", "content": "a\n"}, {"write": "pyproject.toml", "content": edited}],
                    [{"write": "a.txt", "content": "a\n"}],
                ]
            }
        },
    )
    done = orchestrate(repo, "run", "plan.md", "--script", str(script), env={"ORCHESTRATE_SANDBOX": "none"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert (repo / "pyproject.toml").read_text() == before.replace(
        "dependencies = []", 'dependencies = ["requests>=2"]'
    )


# -- the plan's folder --------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["agent", "check"])
@pytest.mark.parametrize("sandbox", SANDBOXES)
@pytest.mark.parametrize("mode", MODES)
def test_putting_the_plan_back_never_writes_through_a_link_at_its_folder(
    tmp_path: Path, mode: str, sandbox: str, by: str
) -> None:
    """The agent (or, in its first attempt, the check it wrote) replaces the plan's folder with a
    link to a folder outside holding a plan of its own: the link is removed, the plan put back in
    a folder of its own, the attempt failed as tampering; nothing outside is written."""
    plan = "# Plan\n\n- [ ] T001 [P] Write `a.txt`\n  - Verify: `sh check.sh`\n"
    plan += "- [ ] T002 [P] Write `b.txt`\n  - Verify: `test -f b.txt`\n"
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "docs/plan.md": plan})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "plan.md").write_text("decoy\n")
    swap = f"rm -rf docs && ln -s {outside} docs"
    benign = {"write": "check.sh", "content": "test -f a.txt\n"}
    first = (
        [{"write": "a.txt", "content": "a\n"}, benign, {"run": swap}]
        if by == "agent"
        else [
            {"write": "a.txt", "content": "a\n"},
            {"write": "check.sh", "content": f"test -f a.txt && {swap}\n"},
        ]
    )
    script = write_script(
        tmp_path,
        {
            "T001": {"attempts": [first, [{"write": "a.txt", "content": "a\n"}, benign]]},
            "T002": [{"write": "b.txt", "content": "b\n"}],
        },
    )
    done = orchestrate(
        repo, "run", "docs/plan.md", "--script", str(script), *mode_args(mode),
        env={"ORCHESTRATE_SANDBOX": sandbox},
    )  # fmt: skip
    assert sorted(p.name for p in outside.iterdir()) == ["plan.md"]
    assert (outside / "plan.md").read_text() == "decoy\n"
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (repo / "docs").is_symlink()
    assert "- [x] T001" in (repo / "docs" / "plan.md").read_text()
    assert "120000" not in committed(repo), "a link was committed"
    assert "docs was replaced by a link" in done.stderr, done.stderr
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("name", ["orchestrate.toml", "pyproject.toml"])
def test_a_settings_file_git_ignores_is_still_undone(tmp_path: Path, name: str) -> None:
    """The agent ignores the settings file in .gitignore, then writes it: no status shows it and
    no commit holds it, yet the next run would read it from the work tree. Undone all the same."""
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "plan.md": SIMPLE_PLAN})
    settings = 'sandbox = "none"\nverify = ["touch planted"]\n'
    content = settings if name == "orchestrate.toml" else "[tool.orchestrate]\n" + settings
    script = write_script(
        tmp_path,
        {
            "T001": {
                "attempts": [
                    [
                        {"write": ".gitignore", "content": f"{name}\n"},
                        {"write": name, "content": content},
                        {"write": "a.txt", "content": "a\n"},
                    ],
                    [{"write": "a.txt", "content": "a\n"}],
                ]
            }
        },
    )
    done = orchestrate(repo, "run", "plan.md", "--script", str(script), env={"ORCHESTRATE_SANDBOX": "none"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (repo / name).exists()
    assert name in done.stderr, done.stderr
    dry = orchestrate(repo, "run", "plan.md", "--dry-run")
    assert "planted" not in dry.stdout + dry.stderr
