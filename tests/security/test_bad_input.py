"""Bad input from the tree and from the model: file names that are not UTF-8, lone surrogates.

A file name is bytes to git and to the kernel; orchestrate keeps it as such (decoded with
surrogateescape) through status, snapshots, saved refs, resets, commits and the journal. A lone
surrogate in a model's tool input is not text: the call gets an error result and the run goes on.
Everything runs the real CLI in a subprocess (with a timeout, so a hang fails) in a real repository.
"""

from __future__ import annotations

import json
import os
import re
import resource
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ORCHESTRATE, git, make_repo, orchestrate
from tests.fakes.messages_server import (
    TEST_KEY,
    TEST_MODEL,
    FakeMessagesServer,
    Message,
    RecordedRequest,
    Response,
    finish,
    tool_calls,
)

BAD_NAME = b"bad\xff.txt"
"""Not UTF-8: 0xff never appears in UTF-8."""
SHELL_BAD_NAME = "$'bad\\xff.txt'"

PLAN = """\
# Plan: bad names

## Phase 1: Files

- [ ] T001 Make the odd file
  - Verify: `test -f notes.txt`
- [ ] T002 Make another file
  - Verify: `test -f two.txt`
"""


def assert_clean_failure(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    assert "UnicodeDecodeError" not in done.stderr + done.stdout
    assert "UnicodeEncodeError" not in done.stderr + done.stdout


def tree_names(repo: Path, rev: str = "HEAD") -> set[bytes]:
    raw = subprocess.run(
        ["git", "ls-tree", "-r", "-z", "--name-only", rev], cwd=repo, capture_output=True, check=True
    ).stdout
    return {name for name in raw.split(b"\0") if name}


def untracked(repo: Path) -> list[bytes]:
    raw = subprocess.run(
        ["git", "status", "--porcelain=v1", "-z", "--untracked-files=all"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout
    return [entry for entry in raw.split(b"\0") if entry]


def task_commits(repo: Path) -> list[str]:
    return git(repo, "log", "--reverse", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# bad names\n", "plan.md": PLAN})


def write_script(path: Path, script: dict[str, Any]) -> Path:
    path.write_text(json.dumps(script))
    return path


MAKES_BAD_NAME = {
    "T001": [{"run": f"touch {SHELL_BAD_NAME} && echo one > notes.txt"}],
    "T002": [{"write": "two.txt", "content": "two\n"}],
}


# -- file names that are not UTF-8 -------------------------------------------------------------


def test_a_dirty_tree_with_a_non_utf8_name_is_refused_in_one_line(repo: Path, tmp_path: Path) -> None:
    (repo / os.fsdecode(BAD_NAME)).write_text("mine\n")
    script = write_script(tmp_path / "script.json", MAKES_BAD_NAME)
    done = orchestrate(repo, "run", "plan.md", "--agent", "scripted", "--script", str(script))
    assert done.returncode == 2, done.stderr
    assert_clean_failure(done)
    assert "uncommitted changes" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert (repo / os.fsdecode(BAD_NAME)).read_text() == "mine\n"


def test_allow_dirty_keeps_a_users_non_utf8_file_out_of_the_commits(repo: Path, tmp_path: Path) -> None:
    (repo / os.fsdecode(BAD_NAME)).write_text("mine\n")
    script = write_script(
        tmp_path / "script.json",
        {
            "T001": [{"write": "notes.txt", "content": "1\n"}],
            "T002": [{"write": "two.txt", "content": "2\n"}],
        },
    )
    done = orchestrate(
        repo, "run", "plan.md", "--agent", "scripted", "--script", str(script), "--allow-dirty"
    )
    assert done.returncode == 0, done.stderr
    assert_clean_failure(done)
    assert task_commits(repo) == ["T001", "T002"]
    assert BAD_NAME not in tree_names(repo)
    assert (repo / os.fsdecode(BAD_NAME)).read_text() == "mine\n"
    shown = orchestrate(repo, "show", "--json")
    assert shown.returncode == 0, shown.stderr
    json.loads(shown.stdout)


@pytest.mark.parametrize("sandbox", ["auto", "none"])
def test_a_task_whose_agent_made_a_non_utf8_name_commits_it(repo: Path, tmp_path: Path, sandbox: str) -> None:
    script = write_script(tmp_path / "script.json", MAKES_BAD_NAME)
    done = orchestrate(
        repo,
        "run",
        "plan.md",
        "--agent",
        "scripted",
        "--script",
        str(script),
        env={"ORCHESTRATE_SANDBOX": sandbox},
    )
    assert done.returncode == 0, done.stderr
    assert_clean_failure(done)
    assert task_commits(repo) == ["T001", "T002"]
    assert BAD_NAME in tree_names(repo, "HEAD~1")
    assert untracked(repo) == []
    for command in (["show"], ["show", "--json"], ["runs"]):
        shown = orchestrate(repo, *command)
        assert shown.returncode == 0, shown.stderr
        assert_clean_failure(shown)


def test_a_failed_attempt_with_a_non_utf8_name_is_saved_and_reset_then_resumed(
    repo: Path, tmp_path: Path
) -> None:
    failing = {"T001": [{"run": f"touch {SHELL_BAD_NAME}"}, {"fail": "could not do it"}]}
    script = write_script(tmp_path / "script.json", failing)
    done = orchestrate(repo, "run", "plan.md", "--agent", "scripted", "--script", str(script))
    assert done.returncode == 1, done.stderr
    assert_clean_failure(done)
    assert untracked(repo) == []  # the failed attempt's file was taken out of the tree ...
    saved = git(repo, "for-each-ref", "--format=%(refname)", "refs/orchestrate/")
    assert saved, "the failed attempt's edits were saved in a ref"
    assert any(BAD_NAME in tree_names(repo, ref) for ref in saved.split())  # ... and kept in a ref

    write_script(script, MAKES_BAD_NAME)
    resumed = orchestrate(repo, "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_clean_failure(resumed)
    assert task_commits(repo) == ["T001", "T002"]
    assert BAD_NAME in tree_names(repo)


@pytest.mark.parametrize("parallel", [[], ["--parallel", "2"]], ids=["serial", "parallel"])
@pytest.mark.parametrize("point", ["after_agent", "after_verified", "after_tick"])
def test_resume_after_a_kill_with_a_non_utf8_name_in_the_tree(
    repo: Path, tmp_path: Path, point: str, parallel: list[str]
) -> None:
    script = write_script(tmp_path / "script.json", MAKES_BAD_NAME)
    killed = orchestrate(
        repo,
        "run", "plan.md", "--agent", "scripted", "--script", str(script), *parallel,
        env={"ORCHESTRATE_CRASH_AT": f"{point}:T001"},
    )  # fmt: skip
    assert killed.returncode == 137, killed.stderr
    resumed = orchestrate(repo, "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_clean_failure(resumed)
    assert sorted(task_commits(repo)) == ["T001", "T002"]
    assert BAD_NAME in tree_names(repo)
    assert untracked(repo) == []
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


# -- lone surrogates from the model ------------------------------------------------------------

SURROGATE = "\ud800"


def surrogate_model(request: RecordedRequest) -> Response:
    """Turn 1 sends lone surrogates in every kind of tool input; turn 2 writes the file properly;
    turn 3 reports done with a surrogate in its words too."""
    messages = request.body["messages"]
    turn = (len(messages) + 1) // 2
    if turn == 1:
        return tool_calls(
            ("write_file", {"path": f"odd{SURROGATE}.txt", "content": "x\n"}),
            ("write_file", {"path": "notes.txt", "content": f"one{SURROGATE}\n"}),
            ("edit_file", {"path": "README.md", "old_string": "bad", "new_string": SURROGATE}),
            ("run_command", {"command": f"echo {SURROGATE} > shell.txt"}),
            ("search", {"pattern": SURROGATE}),
            ("list_dir", {"path": SURROGATE}),
        )
    if turn == 2:
        return Message(
            [
                {"type": "text", "text": f"Trying again {SURROGATE}."},
                {"type": "tool_use", "id": "toolu_fix", "name": "write_file",
                 "input": {"path": "notes.txt", "content": "one\n"}},
            ],
            "tool_use",
        )  # fmt: skip
    return finish("done", f"wrote notes.txt {SURROGATE}")


def test_lone_surrogates_in_tool_input_get_error_results_and_the_run_goes_on(repo: Path) -> None:
    single = PLAN.split("- [ ] T002")[0]
    (repo / "plan.md").write_text(single)
    git(repo, "commit", "-qam", "one task")
    with FakeMessagesServer() as api:
        api.respond_with(surrogate_model)
        env = {"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": TEST_KEY, "ORCHESTRATE_MAX_RETRIES": "0"}
        done = orchestrate(repo, "run", "plan.md", "--agent", "anthropic", "--model", TEST_MODEL, env=env)
        assert_clean_failure(done)
        assert done.returncode == 0, done.stderr
        requests = api.message_requests
    assert len(requests) == 3
    results = [b for b in requests[1].body["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert len(results) == 6
    for result in results:
        assert result.get("is_error") is True, result
        assert re.search(r"not valid Unicode", str(result["content"])), result
    # Nothing the refused calls asked for happened.
    assert (repo / "README.md").read_text() == "# bad names\n"
    assert not (repo / "shell.txt").exists()
    assert not [path for path in repo.iterdir() if path.name.startswith("odd")]
    assert (repo / "notes.txt").read_text() == "one\n"
    assert task_commits(repo) == ["T001"]
    # What the model said is kept (its surrogate made visible) and the journal reads back.
    shown = orchestrate(repo, "show", "--json")
    assert shown.returncode == 0, shown.stderr
    assert_clean_failure(shown)
    report = json.loads(shown.stdout)
    assert "wrote notes.txt" in json.dumps(report)


def naming_model(request: RecordedRequest) -> Response:
    """T001 makes a file whose name is not UTF-8 from the shell; T002 lists and searches the tree."""
    messages = request.body["messages"]
    task = re.search(r"## Your task: (\S+)", messages[0]["content"][0]["text"])
    assert task is not None
    turn = (len(messages) + 1) // 2
    if task.group(1) == "T001":
        if turn == 1:
            return tool_calls(
                ("run_command", {"command": f"echo odd > {SHELL_BAD_NAME} && ls && echo one > notes.txt"})
            )
        return finish("done", "made it")
    if turn == 1:
        return tool_calls(
            ("list_dir", {"path": ".", "recursive": True}),
            ("search", {"pattern": "odd"}),
            ("write_file", {"path": "two.txt", "content": "two\n"}),
        )
    return finish("done", "listed it")


def test_a_non_utf8_name_reaches_the_model_as_escaped_text(repo: Path) -> None:
    with FakeMessagesServer() as api:
        api.respond_with(naming_model)
        env = {"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": TEST_KEY, "ORCHESTRATE_MAX_RETRIES": "0"}
        done = orchestrate(repo, "run", "plan.md", "--agent", "anthropic", "--model", TEST_MODEL, env=env)
        assert_clean_failure(done)
        assert done.returncode == 0, done.stderr
        requests = api.message_requests
    assert task_commits(repo) == ["T001", "T002"]
    assert BAD_NAME in tree_names(repo)
    shell = str(requests[1].body["messages"][-1]["content"][0]["content"])
    assert re.search(r"bad(\ufffd|\\xff)\.txt", shell)  # a command's output: decoded, never raw
    listed = requests[3].body["messages"][-1]["content"]
    assert "bad\\xff.txt" in str(listed[0]["content"])
    assert "bad\\xff.txt" in str(listed[1]["content"])


# -- files that are not regular files, or too big ----------------------------------------------


def limited_orchestrate(
    repo: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """With 1 GB of address space and a short timeout: a read that never ends fails the test."""

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run(
        [str(ORCHESTRATE), *args],
        cwd=repo,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        preexec_fn=limit_memory,  # noqa: PLW1509 - the child only sets a limit before exec
    )


def one_line_refusal(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode == 2, done.stderr
    assert_clean_failure(done)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for text in expected:
        assert text in done.stderr


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_run_refuses_a_plan_that_is_not_a_regular_file(repo: Path, kind: str) -> None:
    (repo / "plan.md").unlink()
    if kind == "fifo":
        os.mkfifo(repo / "plan.md")
    else:
        (repo / "plan.md").symlink_to("/dev/zero")
    for args in (["run", "plan.md", "--agent", "scripted"], ["run", "plan.md", "--dry-run"]):
        one_line_refusal(limited_orchestrate(repo, *args), "plan.md", "not a regular file")


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "big"])
def test_run_refuses_a_script_that_is_not_a_regular_file_or_too_big(
    repo: Path, tmp_path: Path, kind: str
) -> None:
    script = tmp_path / "script.json"
    if kind == "fifo":
        os.mkfifo(script)
    elif kind == "dev-zero":
        script.symlink_to("/dev/zero")
    else:
        with script.open("wb") as f:
            f.truncate(10_500_000)
    done = limited_orchestrate(repo, "run", "plan.md", "--agent", "scripted", "--script", str(script))
    if kind == "big":
        one_line_refusal(done, str(script), "10.5 MB is over the 10 MB limit for a script")
    else:  # named as given, or as the settings resolved it
        one_line_refusal(done, "is not a regular file", "give the script file itself")


def test_a_settings_file_over_its_limit_is_refused(repo: Path, tmp_path: Path) -> None:
    """(The limit and its message are the settings' own: config.py.)"""
    with (repo / "orchestrate.toml").open("wb") as f:
        f.write(b"# settings\n")
        f.truncate(2_000_000)
    git(repo, "add", "orchestrate.toml")
    git(repo, "commit", "-qm", "settings")
    script = write_script(tmp_path / "script.json", MAKES_BAD_NAME)
    done = limited_orchestrate(repo, "run", "plan.md", "--agent", "scripted", "--script", str(script))
    one_line_refusal(done, "orchestrate.toml")


def test_an_agent_cannot_hang_resume_with_a_fifo_plan(repo: Path, tmp_path: Path) -> None:
    """A kill leaves the agent's FIFO where the plan was; resume must not block reading it."""
    script = write_script(
        tmp_path / "script.json", {"T001": [{"run": "rm plan.md && mkfifo plan.md && echo 1 > notes.txt"}]}
    )
    killed = orchestrate(
        repo, "run", "plan.md", "--agent", "scripted", "--script", str(script),
        env={"ORCHESTRATE_CRASH_AT": "after_agent:T001"},
    )  # fmt: skip
    assert killed.returncode == 137, killed.stderr
    done = limited_orchestrate(repo, "resume")
    assert_clean_failure(done)


@pytest.mark.parametrize("sandbox", ["auto", "none"])
@pytest.mark.parametrize("parallel", [[], ["--parallel", "2"]], ids=["serial", "parallel"])
@pytest.mark.parametrize("swap", ["mkfifo plan.md", "ln -s /dev/zero plan.md"], ids=["fifo", "dev-zero"])
def test_an_agent_that_swaps_the_plan_for_a_fifo_or_a_device_cannot_hang_the_run(
    repo: Path, tmp_path: Path, swap: str, parallel: list[str], sandbox: str
) -> None:
    """The plan is read without blocking and put back; changing it fails the attempt, as ever."""
    script = write_script(
        tmp_path / "script.json",
        {
            "T001": [{"run": f"rm plan.md && {swap} && echo 1 > notes.txt"}],
            "T002": [{"write": "two.txt", "content": "two\n"}],
        },
    )
    mode = stat.S_IMODE((repo / "plan.md").stat().st_mode)
    done = limited_orchestrate(
        repo, "run", "plan.md", "--agent", "scripted", "--script", str(script), *parallel,
        env={"ORCHESTRATE_SANDBOX": sandbox},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert_clean_failure(done)
    assert "the agent changed plan.md; undone" in done.stderr
    assert task_commits(repo) == []
    plan = repo / "plan.md"
    assert not plan.is_symlink()
    assert plan.read_text() == PLAN
    assert stat.S_IMODE(plan.stat().st_mode) == mode  # not /dev/zero's 0o666
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("kind", ["big", "fifo", "dev-zero"])
def test_project_rules_that_are_huge_or_not_files_never_fill_memory_or_block(repo: Path, kind: str) -> None:
    rules = repo / "CLAUDE.md"
    if kind == "big":
        with rules.open("wb") as f:  # sparse: 3 GB that use no disk
            f.write(b"# rules\n")
            f.truncate(3_000_000_000)
    elif kind == "fifo":
        os.mkfifo(rules)
    else:
        rules.symlink_to("/dev/zero")
    done = limited_orchestrate(repo, "run", "plan.md", "--dry-run")
    if kind == "big":
        one_line_refusal(done, "CLAUDE.md", "3000 MB is over the 1 MB limit for a project rules file")
    else:  # not a file: not read, as if absent
        assert done.returncode == 0, done.stderr
        assert_clean_failure(done)
