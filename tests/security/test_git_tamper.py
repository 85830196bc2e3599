"""Issue 10, item 1: orchestrate's own git never runs a program the agent wrote into git's files.

A hostile agent, in a `--parallel 2` run (each task in a worktree) and in a serial run (in place),
with bubblewrap and with `sandbox = "none"`, tries the worst with git's own files:

- a worktree's `.git` file rewritten to name a git dir the agent made, whose config sets
  `core.fsmonitor`, `core.hooksPath`, `core.pager`, `diff.external`, a filter, diff and merge
  drivers, `gpg.program` with `commit.gpgSign`...; the same settings in the worktree's own
  `config.worktree` (with `extensions.worktreeConfig` turned on), in the repository's `.git/config`
  and hooks in `.git/hooks` (where nothing stops it: without the sandbox);
- a `.gitattributes` sending every file through those drivers;
- a git repository inside the work tree, with the same program in its own config (its files then
  changed, so that git would look inside it).

The program writes a marker outside the workspace and dumps its environment (the API key, under
the anthropic backend). Checked through the CLI: the marker and the dump never appear, the attempt
is reported as tampering (output, `show`), the task fails (exit 1) while the other task lands,
and the repository is intact (`git fsck`, its log, its config and hooks as they were, no gitlink
committed, no worktree left).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SANDBOXES, git, make_repo, orchestrate
from tests.fakes.messages_server import (
    TEST_KEY,
    TEST_MODEL,
    FakeMessagesServer,
    RecordedRequest,
    Response,
    finish,
    tool_call,
)

MODES = ["parallel", "in-place"]

PLAN = """\
# Plan: two files

## Phase 1: Files

- [ ] T001 [P] Write `one.txt`
  - Verify: `test -f one.txt`
- [ ] T002 [P] Write `two.txt`
  - Verify: `test -f two.txt`
"""

HOSTILE = r"""
H="$PWD/.hostile"
mkdir -p "$H/hooks"
cat > "$H/prog" <<'EOF'
#!/bin/sh
echo "ran: $0 $* in $PWD" >> "@OUT@/marker"
env > "@OUT@/env-dump"
exec cat
EOF
chmod +x "$H/prog"
for hook in pre-commit prepare-commit-msg commit-msg post-commit post-checkout post-merge \
            post-index-change reference-transaction pre-auto-gc post-rewrite; do
    cp "$H/prog" "$H/hooks/$hook"
done
CONFIG="
[core]
	fsmonitor = $H/prog
	hooksPath = $H/hooks
	pager = $H/prog
	editor = $H/prog
	sshCommand = $H/prog
	askPass = $H/prog
[diff]
	external = $H/prog
[filter \"hostile\"]
	clean = $H/prog
	smudge = $H/prog
[diff \"hostile\"]
	textconv = $H/prog
	command = $H/prog
[merge \"hostile\"]
	driver = $H/prog %O %A %B
[gpg]
	program = $H/prog
[commit]
	gpgSign = true
"
printf '* filter=hostile diff=hostile merge=hostile\n' > .gitattributes
if [ -f .git ]; then
    # A worktree: its .git file is made to name a git dir of the agent's, with the config above.
    real=$(sed -n 's/^gitdir: //p' .git)
    common=$(cd "$real" && cd "$(cat commondir)" && pwd)
    G="$H/gitdir"
    mkdir -p "$G/objects/info" "$G/refs/heads"
    echo "$common/objects" > "$G/objects/info/alternates"
    cp "$real/HEAD" "$G/HEAD"
    cp "$real/index" "$G/index" 2>/dev/null
    printf '[core]\n\trepositoryformatversion = 0\n\tbare = false\n%s' "$CONFIG" > "$G/config"
    cp -r "$H/hooks" "$G/hooks"
    echo "gitdir: $G" > .git 2>/dev/null
    # Orchestrate's own git dir for the worktree, and the repository's (read-only in bubblewrap).
    printf '%s' "$CONFIG" > "$real/config.worktree" 2>/dev/null
    printf '[extensions]\n\tworktreeConfig = true\n' >> "$common/config" 2>/dev/null
    cp "$H/hooks/"* "$common/hooks/" 2>/dev/null
else
    printf '%s' "$CONFIG" >> .git/config 2>/dev/null
    cp "$H/hooks/"* .git/hooks/ 2>/dev/null
fi
# A repository inside the work tree, whose own config runs the program too.
# (Its own git reads no config of the user's: a later attempt finds the program set there.)
export GIT_CONFIG_GLOBAL=/dev/null
mkdir -p nested && cd nested && git init -q . && echo n > n.txt && git add n.txt \
    && git -c user.name=a -c user.email=a@example.invalid commit -qm n
printf '%s' "$CONFIG" >> .git/config
printf '* filter=hostile\n' > .gitattributes
echo changed >> n.txt
# The user's own git config, too (read-only in bubblewrap); last, since the agent's own git would
# read it.
printf '%s' "$CONFIG" >> "@GLOBAL@" 2>/dev/null
true
"""


def hostile_script(outside: Path) -> str:
    return HOSTILE.replace("@OUT@", str(outside)).replace("@GLOBAL@", os.environ["GIT_CONFIG_GLOBAL"])


def untouched_global_config() -> None:
    """The user's git config (a test's own, see tests/conftest.py) back as it was, empty, before
    this test runs git itself: the agent may have written to it, and orchestrate leaves the user's
    files alone (its own git ignores what they say to run)."""
    Path(os.environ["GIT_CONFIG_GLOBAL"]).unlink(missing_ok=True)


def project(tmp_path: Path) -> tuple[Path, Path]:
    """(repo, outside): the repository and a folder outside it, where nothing may appear."""
    repo = make_repo(tmp_path / "repo", {"README.md": "# two files\n", "plan.md": PLAN})
    outside = tmp_path / "outside"
    outside.mkdir()
    return repo, outside


def hooks_of(repo: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((repo / ".git" / "hooks").iterdir())}


def settings_env(sandbox: str) -> dict[str, str]:
    return {"ORCHESTRATE_SANDBOX": sandbox, "ORCHESTRATE_MAX_ATTEMPTS": "2"}


def mode_args(mode: str) -> list[str]:
    return ["--parallel", "2"] if mode == "parallel" else []


def assert_unharmed(
    repo: Path, outside: Path, done: subprocess.CompletedProcess[str], config: bytes, hooks: dict[str, bytes]
) -> None:
    """Nothing of the agent's ran outside its sandbox, the hostile task failed as tampering, the
    other one landed, and the repository is as it should be."""
    # First, before any git command of this test could run what the agent left behind.
    ran = (outside / "marker").read_text() if (outside / "marker").exists() else ""
    assert not ran, f"the agent's program ran outside the sandbox:\n{ran}\n{done.stderr}"
    assert not (outside / "env-dump").exists()
    untouched_global_config()
    assert (repo / ".git" / "config").read_bytes() == config
    assert hooks_of(repo) == hooks
    assert done.returncode == 1, done.stdout + done.stderr
    assert "tamper" in done.stderr.lower(), done.stderr
    assert TEST_KEY not in done.stdout + done.stderr

    fsck = subprocess.run(
        ["git", "fsck", "--strict", "--no-dangling"], cwd=repo, capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    tasks = git(repo, "log", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split()
    assert tasks == ["T002"]
    assert "- [x] T002" in (repo / "plan.md").read_text()
    assert "- [ ] T001" in (repo / "plan.md").read_text()
    for sha in git(repo, "rev-list", "--all").split():
        assert "160000" not in git(repo, "ls-tree", "-r", sha), "a gitlink was committed"
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert git(repo, "for-each-ref", "refs/heads/orchestrate/") == ""

    shown = orchestrate(repo, "show", "--json")
    assert shown.returncode == 0, shown.stderr
    state: dict[str, Any] = json.loads(shown.stdout)
    failures = [a.get("failure") or "" for a in state["tasks"]["T001"]["attempts"]]
    assert failures
    assert all("tamper" in f.lower() for f in failures), failures
    assert state["tasks"]["T001"]["status"] == "failed"
    assert state["tasks"]["T002"]["status"] == "done"


@pytest.mark.parametrize("sandbox", SANDBOXES)
@pytest.mark.parametrize("mode", MODES)
def test_a_hostile_script_never_runs_its_program_through_orchestrates_git(
    tmp_path: Path, mode: str, sandbox: str
) -> None:
    repo, outside = project(tmp_path)
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {
                "T001": [{"write": "one.txt", "content": "1\n"}, {"run": hostile_script(outside)}],
                "T002": [{"write": "two.txt", "content": "2\n"}],
            }
        )
    )
    config, hooks = (repo / ".git" / "config").read_bytes(), hooks_of(repo)

    done = orchestrate(
        repo, "run", "plan.md", "--agent", "scripted", "--script", str(script), *mode_args(mode),
        env=settings_env(sandbox),
    )  # fmt: skip

    assert_unharmed(repo, outside, done, config, hooks)


def hostile_model(outside: Path) -> Any:
    """T001: run the hostile script, write its file, say done (every attempt); T002: its file, done."""

    def respond(request: RecordedRequest) -> Response:
        messages = request.body["messages"]
        task = re.search(r"## Your task: (\S+)", messages[0]["content"][0]["text"])
        assert task is not None, messages[0]
        turn = (len(messages) + 1) // 2
        if task.group(1) == "T002":
            if turn == 1:
                return tool_call("write_file", {"path": "two.txt", "content": "2\n"})
            return finish("done", "two.txt written")
        if turn == 1:
            return tool_call("run_command", {"command": hostile_script(outside)})
        if turn == 2:
            return tool_call("write_file", {"path": "one.txt", "content": "1\n"})
        return finish("done", "one.txt written")

    return respond


@pytest.mark.parametrize("sandbox", SANDBOXES)
@pytest.mark.parametrize("mode", MODES)
def test_a_hostile_model_never_runs_its_program_through_orchestrates_git(
    tmp_path: Path, mode: str, sandbox: str
) -> None:
    repo, outside = project(tmp_path)
    config, hooks = (repo / ".git" / "config").read_bytes(), hooks_of(repo)
    with FakeMessagesServer() as api:
        api.respond_with(hostile_model(outside))
        done = orchestrate(
            repo, "run", "plan.md", "--agent", "anthropic", "--model", TEST_MODEL, *mode_args(mode),
            env={
                **settings_env(sandbox),
                "ANTHROPIC_BASE_URL": api.url,
                "ANTHROPIC_API_KEY": TEST_KEY,
                "ORCHESTRATE_MAX_RETRIES": "0",
            },
        )  # fmt: skip

    assert_unharmed(repo, outside, done, config, hooks)


@pytest.mark.parametrize("mode", MODES)
def test_a_kill_after_the_agent_tampered_leaves_resume_nothing_of_it_to_run(
    tmp_path: Path, mode: str
) -> None:
    """Killed as the hostile agent's attempt ends (before orchestrate looks at what it did), then
    resumed: resume puts back what the agent changed in git's files since the run started (which it
    remembers: the settings that name programs, the hooks), runs none of it, and says so."""
    repo, outside = project(tmp_path)
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {
                "T001": [{"write": "one.txt", "content": "1\n"}, {"run": hostile_script(outside)}],
                "T002": [{"write": "two.txt", "content": "2\n"}],
            }
        )
    )
    config, hooks = (repo / ".git" / "config").read_bytes(), hooks_of(repo)
    args = ["--agent", "scripted", "--script", str(script), *mode_args(mode)]

    killed = orchestrate(
        repo,
        "run",
        "plan.md",
        *args,
        env={**settings_env("none"), "ORCHESTRATE_CRASH_AT": "after_agent:T001"},
    )
    assert killed.returncode == 137, killed.stderr
    if mode == "in-place":  # in a worktree, another task's git command has put it back already
        assert (repo / ".git" / "config").read_bytes() != config
    done = orchestrate(repo, "resume", env=settings_env("none"))

    ran = (outside / "marker").read_text() if (outside / "marker").exists() else ""
    assert not ran, f"the agent's program ran outside the sandbox:\n{ran}\n{done.stderr}"
    assert not (outside / "env-dump").exists()
    untouched_global_config()
    # What names a program is gone (a setting that runs nothing, such as the worktreeConfig
    # extension, is named in the output and left: it may be the user's).
    assert b".hostile" not in (repo / ".git" / "config").read_bytes()
    if mode == "in-place":
        assert (repo / ".git" / "config").read_bytes() == config
    assert hooks_of(repo) == hooks
    assert done.returncode == 1, done.stdout + done.stderr
    assert "since the run started" in done.stderr, done.stderr
    assert "tamper" in done.stderr.lower(), done.stderr
    fsck = subprocess.run(
        ["git", "fsck", "--strict", "--no-dangling"], cwd=repo, capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert git(repo, "log", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split() == ["T002"]
    for sha in git(repo, "rev-list", "--all").split():
        assert "160000" not in git(repo, "ls-tree", "-r", sha), "a gitlink was committed"
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_resume_refuses_a_git_directory_the_agent_put_in_place_of_the_repositorys(tmp_path: Path) -> None:
    """Without the sandbox, an agent moves `.git` away and leaves a `.git` file naming a copy with
    its own config; a kill follows. Resume finds git's directory is not the one the run started
    with, says so, and runs nothing."""
    repo, outside = project(tmp_path)
    prog = tmp_path / "prog"
    prog.write_text(f'#!/bin/sh\necho "ran: $0 $*" >> "{outside}/marker"\nexec cat\n')
    prog.chmod(0o755)
    swap = (
        "mv .git ../moved-git && cp -r ../moved-git ../copy-git"
        f" && printf '[core]\\n\\tfsmonitor = {prog}\\n' >> ../copy-git/config"
        ' && echo "gitdir: $(cd .. && pwd)/copy-git" > .git'
    )
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"T001": [{"write": "one.txt", "content": "1\n"}, {"run": swap}]}))
    env = {**settings_env("none"), "ORCHESTRATE_CRASH_AT": "after_agent:T001"}

    killed = orchestrate(repo, "run", "plan.md", "--agent", "scripted", "--script", str(script), env=env)
    assert killed.returncode == 137, killed.stderr
    done = orchestrate(repo, "resume", env=settings_env("none"))

    assert not (outside / "marker").exists(), (outside / "marker").read_text()
    assert done.returncode == 2, done.stdout + done.stderr
    assert "git directory" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


NESTED = r"""
export GIT_CONFIG_GLOBAL=/dev/null
mkdir -p vendor/lib && cd vendor/lib && git init -q . && echo n > n.txt && git add n.txt \
    && git -c user.name=a -c user.email=a@example.invalid commit -qm n
printf '[core]\n\tfsmonitor = @PROG@\n' >> .git/config
echo changed >> n.txt
true
"""


@pytest.mark.parametrize("declared", [False, True], ids=["undeclared", "in-gitmodules"])
@pytest.mark.parametrize("sandbox", SANDBOXES)
@pytest.mark.parametrize("mode", MODES)
def test_a_git_directory_put_in_a_gitlink_of_head_is_removed(
    tmp_path: Path, mode: str, sandbox: str, declared: bool
) -> None:
    """HEAD holds a gitlink at vendor/lib (in .gitmodules or not: `git submodule` is not the only
    way one gets there). The agent makes vendor/lib a repository whose config runs its program:
    the status orchestrate uses ignores submodules, but `git add -A` would look inside, and the
    user's own `git status` would run the program. It is removed, as tampering, every attempt."""
    repo, outside = project(tmp_path)
    if declared:
        (repo / ".gitmodules").write_text('[submodule "lib"]\n\tpath = vendor/lib\n\turl = ./lib\n')
        git(repo, "add", ".gitmodules")
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{head},vendor/lib")
    git(repo, "commit", "-qm", "a gitlink")
    (repo / "vendor" / "lib").mkdir(parents=True)
    gitlink = git(repo, "ls-tree", "HEAD", "vendor/lib")
    prog = tmp_path / "prog"
    prog.write_text(f'#!/bin/sh\necho "ran: $0 $* in $PWD" >> "{outside}/marker"\n')
    prog.chmod(0o755)
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {
                "T001": [
                    {"write": "one.txt", "content": "1\n"},
                    {"run": NESTED.replace("@PROG@", str(prog))},
                ],
                "T002": [{"write": "two.txt", "content": "2\n"}],
            }
        )
    )
    done = orchestrate(
        repo, "run", "plan.md", "--agent", "scripted", "--script", str(script), *mode_args(mode),
        env=settings_env(sandbox),
    )  # fmt: skip

    assert not (repo / "vendor" / "lib" / ".git").exists()
    subprocess.run(["git", "status"], cwd=repo, capture_output=True, check=True)  # the user's own
    assert not (outside / "marker").exists(), (outside / "marker").read_text()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "vendor/lib/.git" in done.stderr, done.stderr
    assert "tamper" in done.stderr.lower()
    assert git(repo, "log", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split() == ["T002"]
    assert git(repo, "ls-tree", "HEAD", "vendor/lib") == gitlink
