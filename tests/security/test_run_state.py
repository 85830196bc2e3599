"""The run's state (`checkpoints/<run>/`) against a hostile agent: it can neither read nor write it
through its tools, what it writes there by other means never widens what `resume` runs or how
confined, and orchestrate never follows a link it planted when it writes its own files.

The attackers: the real anthropic SDK against a fake Messages API playing a hostile model, a
hostile `--script`, and a same-user process that edits the journal between a stop and a resume
(what an agent's commands can do where bubblewrap is missing).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator.domain.state import RunState
from orchestrator.persistence.journal import read_records, read_transitions
from orchestrator.tools.sandbox import Sandbox, detect_sandbox
from orchestrator.tools.toolset import Toolset
from tests.conftest import git, make_repo, orchestrate
from tests.fakes.messages_server import (
    TEST_KEY,
    TEST_MODEL,
    FakeMessagesServer,
    RecordedRequest,
    Response,
    finish,
    tool_call,
)

BUBBLEWRAP = detect_sandbox("auto").kind == "bubblewrap"
needs_bubblewrap = pytest.mark.skipif(not BUBBLEWRAP, reason="bubblewrap cannot run here")
SANDBOXES = ["none", pytest.param("bubblewrap", marks=needs_bubblewrap)]

PLAN = """\
# Plan: state

## Phase 1: Work

- [ ] T001 Write `one.txt`
  - Verify: `test -f one.txt`
- [ ] T002 Write `two.txt`
  - Verify: `test -f two.txt`
"""


# -- helpers -----------------------------------------------------------------------------------


def assert_no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stdout + done.stderr, done.stderr


def run_dir(repo: Path) -> Path:
    """The one run's directory under checkpoints/ (worktrees live beside it, under a dot name)."""
    runs = [p for p in (repo / "checkpoints").iterdir() if not p.name.startswith(".")]
    assert len(runs) == 1, runs
    return runs[0]


def records(repo: Path) -> list[dict[str, Any]]:
    return read_records(run_dir(repo) / "journal.jsonl")


def folded(repo: Path) -> RunState:
    return RunState.from_records(read_transitions(run_dir(repo) / "journal.jsonl"))


def effective_settings(repo: Path) -> dict[str, Any]:
    """The settings the run last ran with: as started, updated by each resume's differences."""
    return folded(repo).settings


def tamper(repo: Path, **settings: Any) -> None:
    """What a same-user process can do to the journal: rewrite the start record's settings and
    append a resume record that 'changes' them again."""
    journal = run_dir(repo) / "journal.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    first = json.loads(lines[0])
    assert first["type"] == "run_started"
    first["settings"].update(settings)
    lines[0] = json.dumps(first) + "\n"
    lines.append(json.dumps({"v": 1, "type": "run_resumed", "at": 0, "overrides": settings}) + "\n")
    journal.write_text("".join(lines))


def task_commits(repo: Path) -> list[str]:
    return git(repo, "log", "--reverse", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split()


def files_under(place: Path) -> list[str]:
    return sorted(str(p.relative_to(place)) for p in place.rglob("*"))


def write_script(path: Path, script: dict[str, Any]) -> Path:
    path.write_text(json.dumps(script))
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "repo", {"README.md": "# state\n", ".gitignore": "__pycache__/\n", "plan.md": PLAN}
    )


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the repository that nothing may write into."""
    place = tmp_path / "outside"
    place.mkdir()
    return place


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """A file an injected command would create; it must never exist."""
    return tmp_path / "INJECTED-COMMAND-RAN"


# -- the tools, on a workspace that holds run state --------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path, outside: Path) -> Path:
    root = make_repo(tmp_path / "ws", {"src/app.py": "print('app')\n", "notes.txt": "run_started here too\n"})
    state = root / "checkpoints" / "20260101-000000-abcd"
    (state / "prompts").mkdir(parents=True)
    (state / "journal.jsonl").write_text('{"v":1,"type":"run_started","settings":{"verify":[]}}\n')
    (state / "prompts" / "T001.attempt-1.md").write_text("## Your task: T001 run_started\n")
    (root / "checkpoints" / "older-run").mkdir()
    (root / "checkpoints" / "older-run" / "journal.jsonl").write_text('{"type":"run_started"}\n')
    (root / "state").symlink_to(root / "checkpoints")  # a link the agent made, into the state
    (root / "gitdir").symlink_to(root / ".git")
    (outside / "secret.txt").write_text("outside\n")
    return root


@pytest.fixture
def hiding_tools(workspace: Path) -> Toolset:
    return Toolset(workspace, command_timeout=10.0, sandbox=Sandbox("none").hiding(workspace / "checkpoints"))


JOURNAL = "checkpoints/20260101-000000-abcd/journal.jsonl"


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("read_file", {"path": JOURNAL}),
        ("read_file", {"path": "checkpoints/older-run/journal.jsonl"}),
        ("read_file", {"path": "src/../" + JOURNAL}),
        ("read_file", {"path": "state/20260101-000000-abcd/journal.jsonl"}),
        ("read_file", {"path": ".git/config"}),
        ("read_file", {"path": "gitdir/HEAD"}),
        ("write_file", {"path": JOURNAL, "content": "{}\n"}),
        ("write_file", {"path": "checkpoints/20260101-000000-abcd/prompts/x.md", "content": "x"}),
        ("write_file", {"path": "state/new.jsonl", "content": "x"}),
        ("write_file", {"path": "checkpoints", "content": "x"}),
        ("write_file", {"path": ".git/hooks/pre-commit", "content": "#!/bin/sh\n"}),
        ("edit_file", {"path": JOURNAL, "old_string": "verify", "new_string": "v"}),
        ("edit_file", {"path": ".git/HEAD", "old_string": "ref", "new_string": "x"}),
        ("list_dir", {"path": "checkpoints"}),
        ("list_dir", {"path": "state"}),
        ("list_dir", {"path": ".git"}),
        ("search", {"pattern": "run_started", "path": "checkpoints"}),
        ("search", {"pattern": "HEAD", "path": ".git"}),
    ],
)
def test_the_file_tools_refuse_the_run_state_and_git(
    hiding_tools: Toolset, workspace: Path, tool: str, args: dict[str, Any]
) -> None:
    before = {p: p.read_bytes() for p in workspace.rglob("*") if p.is_file() and not p.is_symlink()}
    result = hiding_tools.call(tool, args)
    assert result.is_error, result.text
    assert "run_started" not in result.text
    after = {p: p.read_bytes() for p in workspace.rglob("*") if p.is_file() and not p.is_symlink()}
    assert after == before


def test_the_file_tools_refuse_the_run_state_through_an_absolute_path(
    hiding_tools: Toolset, workspace: Path
) -> None:
    result = hiding_tools.call("read_file", {"path": str(workspace / JOURNAL)})
    assert result.is_error
    assert "run_started" not in result.text


def test_list_and_search_never_walk_into_the_run_state_or_git(hiding_tools: Toolset) -> None:
    listed = hiding_tools.call("list_dir", {"path": ".", "recursive": True})
    assert not listed.is_error
    entries = listed.text.splitlines()
    assert "src/app.py" in entries
    assert not [e for e in entries if e.startswith(("checkpoints", ".git/", "state/", "gitdir/"))], entries
    found = hiding_tools.call("search", {"pattern": "run_started|HEAD|ref:"})
    assert not found.is_error
    assert found.text.splitlines() == ["notes.txt:1: run_started here too"]
    assert hiding_tools.call("search", {"pattern": "run_started", "glob": "*.jsonl"}).text.startswith(
        "no match"
    )


def test_git_is_refused_even_without_hidden_paths(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "plain")
    tools = Toolset(root, command_timeout=10.0)
    assert tools.call("read_file", {"path": ".git/HEAD"}).is_error
    assert ".git/" not in tools.call("list_dir", {"path": ".", "recursive": True}).text


def test_a_hidden_directory_that_holds_the_workspace_hides_nothing_inside_it(tmp_path: Path) -> None:
    """A parallel task's workspace is a worktree under the checkpoints directory: hiding that
    directory must not hide the worktree from its own agent (what is outside it stays out)."""
    checkpoints = tmp_path / "repo" / "checkpoints"
    worktree = checkpoints / ".worktrees" / "run" / "T001"
    (worktree / "src").mkdir(parents=True)
    (worktree / "src" / "a.py").write_text("a = 1\n")
    (checkpoints / "run").mkdir()
    (checkpoints / "run" / "journal.jsonl").write_text("{}\n")
    tools = Toolset(worktree, command_timeout=10.0, sandbox=Sandbox("none").hiding(checkpoints))
    assert tools.call("read_file", {"path": "src/a.py"}).text.startswith("     1\ta = 1")
    assert not tools.call("write_file", {"path": "src/b.py", "content": "b = 2\n"}).is_error
    assert "src/b.py" in tools.call("list_dir", {"path": ".", "recursive": True}).text
    assert tools.call("read_file", {"path": "../../../run/journal.jsonl"}).is_error


# -- a hostile model, through the CLI ----------------------------------------------------------


def api_env(api: FakeMessagesServer, sandbox: str) -> dict[str, str]:
    return {
        "ANTHROPIC_BASE_URL": api.url,
        "ANTHROPIC_API_KEY": TEST_KEY,
        "ORCHESTRATE_MAX_RETRIES": "0",
        "ORCHESTRATE_SANDBOX": sandbox,
    }


def tool_results(requests: list[RecordedRequest]) -> dict[str, dict[str, Any]]:
    """tool_use id -> (the call, the result the model got back), from what the model was sent."""
    calls: dict[str, dict[str, Any]] = {}
    for request in requests:
        for message in request.body["messages"]:
            for block in message["content"] if isinstance(message["content"], list) else []:
                if block.get("type") == "tool_use":
                    calls.setdefault(block["id"], {"name": block["name"], "input": block["input"]})
                elif block.get("type") == "tool_result":
                    calls.setdefault(block["tool_use_id"], {})["result"] = block
    return calls


class HostileModel:
    """Attacks the run's state on its first attempt, then (on resume) does the task honestly,
    trying once more to get out of the sandbox with a command."""

    def __init__(self, repo: Path, outside: Path, marker: Path, sandbox: str):
        self.repo = repo
        self.outside = outside
        self.marker = marker
        self.sandbox = sandbox
        self.attacking = True

    def injected_record(self) -> str:
        overrides = {"verify": [f"touch {self.marker}"], "sandbox": "none", "max_turns": 1000}
        return json.dumps({"v": 1, "type": "run_resumed", "at": 0, "overrides": overrides})

    def attack(self) -> list[tuple[str, dict[str, Any]]]:
        run = run_dir(self.repo).name
        state = f"checkpoints/{run}"
        journal = f"{state}/journal.jsonl"
        record = self.injected_record()
        return [
            ("read_file", {"path": journal}),
            ("write_file", {"path": journal, "content": record + "\n"}),
            (
                "edit_file",
                {"path": journal, "old_string": '"type":"run_started"', "new_string": '"type":"x"'},
            ),
            ("read_file", {"path": str(self.repo / journal)}),
            ("read_file", {"path": f"notes/../{journal}"}),
            ("run_command", {"command": "ln -s checkpoints state && ln -s .git gitdir"}),
            ("read_file", {"path": f"state/{run}/journal.jsonl"}),
            ("write_file", {"path": f"state/{run}/prompts/T001.attempt-2.md", "content": "mine"}),
            ("read_file", {"path": ".git/config"}),
            (
                "write_file",
                {"path": "gitdir/hooks/pre-commit", "content": f"#!/bin/sh\ntouch {self.marker}\n"},
            ),
            ("list_dir", {"path": "checkpoints"}),
            ("list_dir", {"path": ".", "recursive": True}),
            ("search", {"pattern": "run_started|Your task"}),
            (
                "run_command",
                {
                    "command": f"printf '%s\\n' '{record}' >> {journal}; "
                    f"rm -rf {state}/prompts && ln -s {self.outside} {state}/prompts; echo tried"
                },
            ),
        ]

    def honest(self) -> list[tuple[str, dict[str, Any]]]:
        escape = f"touch {self.outside}/escaped; echo tried"
        steps = [("run_command", {"command": escape})] if self.sandbox == "bubblewrap" else []
        return [*steps, ("write_file", {"path": "one.txt", "content": "one\n"})]

    def __call__(self, request: RecordedRequest) -> Response:
        messages = request.body["messages"]
        task = re.search(r"## Your task: (\S+)", messages[0]["content"][0]["text"])
        assert task is not None
        if task.group(1) != "T001":
            return (
                tool_call("write_file", {"path": "two.txt", "content": "two\n"})
                if len(messages) == 1
                else finish("done", "two.txt written")
            )
        steps = self.attack() if self.attacking else self.honest()
        turn = (len(messages) + 1) // 2
        if turn <= len(steps):
            return tool_call(*steps[turn - 1])
        if self.attacking:
            return finish("blocked", "could not get at the run's state")
        return finish("done", "one.txt written")


REFUSED = {
    "read_file", "write_file", "edit_file"
}  # fmt: skip


def resume_until_the_link_is_gone(
    repo: Path, outside: Path, env: dict[str, str]
) -> list[subprocess.CompletedProcess[str]]:
    """Resume; if orchestrate refused to write through a link the agent left in its state (its
    commands could reach the state), nothing went outside, and the user removes the link and
    resumes again. Every resume's output, the last one last."""
    resumed = orchestrate(repo, "resume", env=env)
    assert_no_traceback(resumed)
    outputs = [resumed]
    prompts = run_dir(repo) / "prompts"
    if prompts.is_symlink():
        assert resumed.returncode != 0, resumed.stderr
        assert "symbolic link" in resumed.stderr, resumed.stderr
        assert str(prompts) in resumed.stderr
        assert files_under(outside) == []
        prompts.unlink()
        outputs.append(orchestrate(repo, "resume", env=env))
        assert_no_traceback(outputs[-1])
    return outputs


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_hostile_model_cannot_reach_the_run_state_and_resume_runs_nothing_it_injected(
    repo: Path, outside: Path, marker: Path, sandbox: str
) -> None:
    hostile = HostileModel(repo, outside, marker, sandbox)
    with FakeMessagesServer() as api:
        api.respond_with(hostile)
        env = api_env(api, sandbox)
        done = orchestrate(
            repo,
            "run",
            "plan.md",
            "--agent",
            "anthropic",
            "--model",
            TEST_MODEL,
            "--max-attempts",
            "1",
            env=env,
        )
        assert done.returncode == 1, done.stderr
        assert_no_traceback(done)

        calls = tool_results(api.message_requests)
        by_kind = [(c["name"], c["input"], c["result"]) for c in calls.values() if "result" in c]
        for name, args, result in by_kind:
            path = str(args.get("path", ""))
            if name in REFUSED and ("checkpoints" in path or "state/" in path or "git" in path):
                assert result.get("is_error") is True, (name, args, result)
                assert "run_started" not in result["content"]
            if name in ("list_dir", "search") and args.get("path", ".") == ".":
                assert result.get("is_error") is not True, result
                lines = result["content"].splitlines()
                assert not [e for e in lines if e.startswith(("checkpoints", ".git/"))], lines
            if name == "list_dir" and args.get("path") == "checkpoints":
                assert result.get("is_error") is True, result
        journal = records(repo)
        assert journal[0]["type"] == "run_started"  # the write_file and edit_file were refused
        assert (repo / ".git" / "hooks" / "pre-commit").exists() is False

        hostile.attacking = False
        resumed = resume_until_the_link_is_gone(repo, outside, env)
        assert resumed[-1].returncode == 0, resumed[-1].stderr

    assert not marker.exists(), "a verification command injected into the journal ran"
    assert files_under(outside) == []  # not the prompt, and (under bubblewrap) not the escape
    assert task_commits(repo) == ["T001", "T002"]
    settings = effective_settings(repo)
    assert settings["verify"] == []
    assert settings["sandbox"] == sandbox
    assert settings["max_turns"] == 50


@needs_bubblewrap
def test_under_bubblewrap_the_agents_commands_cannot_touch_the_run_state(
    repo: Path, outside: Path, marker: Path
) -> None:
    hostile = HostileModel(repo, outside, marker, "bubblewrap")
    with FakeMessagesServer() as api:
        api.respond_with(hostile)
        done = orchestrate(
            repo,
            "run", "plan.md", "--agent", "anthropic", "--model", TEST_MODEL, "--max-attempts", "1",
            env=api_env(api, "bubblewrap"),
        )  # fmt: skip
        assert done.returncode == 1, done.stderr
    state = run_dir(repo)
    assert not (state / "prompts").is_symlink()
    assert hostile.injected_record() not in (state / "journal.jsonl").read_text()


# -- a hostile script, through the CLI ---------------------------------------------------------


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_hostile_script_tampers_with_the_state_and_resume_runs_nothing_it_injected(
    repo: Path, tmp_path: Path, outside: Path, marker: Path, sandbox: str
) -> None:
    record = json.dumps(
        {
            "v": 1,
            "type": "run_resumed",
            "at": 0,
            "overrides": {"verify": [f"touch {marker}"], "sandbox": "none"},
        }
    )
    attack = (
        "for d in checkpoints/*/; do "
        f"printf '%s\\n' '{record}' >> \"$d/journal.jsonl\"; "
        f'rm -rf "$d/prompts"; ln -s {outside} "$d/prompts"; done; ln -s checkpoints state'
    )
    script = write_script(
        tmp_path / "script.json",
        {
            "T001": {
                "attempts": [
                    [
                        {"run": attack},
                        {"fail": "giving up"},
                    ],
                    [{"write": "one.txt", "content": "one\n"}],
                ]
            },
            "T002": [{"write": "two.txt", "content": "two\n"}],
        },
    )
    env = {"ORCHESTRATE_SANDBOX": sandbox}
    done = orchestrate(repo, "run", "plan.md", "--script", str(script), "--max-attempts", "1", env=env)
    assert done.returncode == 1, done.stderr
    assert_no_traceback(done)
    # Unconfined, its command got at the state; under bubblewrap the state is hidden from it.
    assert (run_dir(repo) / "prompts").is_symlink() is (sandbox == "none")

    resumed = resume_until_the_link_is_gone(repo, outside, env)
    assert resumed[-1].returncode == 0, resumed[-1].stderr
    assert not marker.exists()
    assert files_under(outside) == []
    assert task_commits(repo) == ["T001", "T002"]
    if sandbox == "none":
        # The first resume's notice names the setting the journal disagrees on.
        assert "verify" in resumed[0].stderr


# -- resume takes what runs from the user, not from the journal --------------------------------


def stopped_scripted_run(repo: Path, tmp_path: Path, *extra: str) -> Path:
    """A scripted run stopped by a failed attempt (max-attempts 1); its script does the work on the
    next attempt. Returns the script."""
    script = write_script(
        tmp_path / "script.json",
        {
            "T001": {
                "attempts": [[{"fail": "not yet"}], [{"write": "one.txt", "content": "one\n"}]],
            },
            "T002": [{"write": "two.txt", "content": "two\n"}],
        },
    )
    done = orchestrate(repo, "run", "plan.md", "--script", str(script), "--max-attempts", "1", *extra)
    assert done.returncode == 1, done.stderr
    return script


def test_resume_never_runs_verification_commands_from_the_journal(
    repo: Path, tmp_path: Path, marker: Path
) -> None:
    stopped_scripted_run(repo, tmp_path)
    tamper(repo, verify=[f"touch {marker}"], require_verify=False)
    resumed = orchestrate(repo, "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert not marker.exists()
    assert "verify" in resumed.stderr
    assert effective_settings(repo)["verify"] == []


def test_resume_never_switches_to_an_agent_named_in_the_journal(
    repo: Path, tmp_path: Path, marker: Path
) -> None:
    script = stopped_scripted_run(repo, tmp_path)
    tamper(repo, agent="command", agent_command=f"touch {marker}")
    refused = orchestrate(repo, "resume")
    assert refused.returncode == 2, refused.stderr
    assert_no_traceback(refused)
    assert "--agent" in refused.stderr
    assert not marker.exists()
    resumed = orchestrate(repo, "resume", "--agent", "scripted", "--script", str(script))
    assert resumed.returncode == 0, resumed.stderr
    assert not marker.exists()


def test_resume_never_runs_a_script_from_inside_the_repository(
    repo: Path, tmp_path: Path, marker: Path
) -> None:
    script = stopped_scripted_run(repo, tmp_path)
    evil = {"T001": [{"run": f"touch {marker}"}], "T002": [{"run": f"touch {marker}"}]}
    (repo / "tools").mkdir()
    write_script(repo / "tools" / "evil.json", evil)
    git(repo, "add", "tools/evil.json")
    git(repo, "commit", "-q", "-m", "a file an agent committed")
    for place in (repo / "tools" / "evil.json", repo / "checkpoints" / ".evil.json"):
        write_script(place, evil)
        tamper(repo, script=str(place))
        refused = orchestrate(repo, "resume")
        assert refused.returncode == 2, refused.stderr
        assert_no_traceback(refused)
        assert "--script" in refused.stderr
        assert not marker.exists()
    # A link outside that points in is the file it points at.
    link = tmp_path / "link.json"
    link.symlink_to(repo / "tools" / "evil.json")
    tamper(repo, script=str(link))
    assert orchestrate(repo, "resume").returncode == 2
    assert not marker.exists()
    resumed = orchestrate(repo, "resume", "--script", str(script))
    assert resumed.returncode == 0, resumed.stderr
    assert not marker.exists()


def test_resume_takes_templates_protection_and_permissions_from_the_configuration(
    repo: Path, tmp_path: Path
) -> None:
    (repo / "orchestrate.toml").write_text('protected_paths = ["guarded/**"]\n')
    (repo / "evil_prompts").mkdir()
    (repo / "evil_prompts" / "task.md.j2").write_text("EVIL PROMPT {{ task.id }}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "config")
    script = write_script(
        tmp_path / "script.json",
        {
            "T001": {
                "attempts": [
                    [{"fail": "not yet"}],
                    [
                        {"write": "guarded/x.txt", "content": "changed\n"},
                        {"write": "one.txt", "content": "one\n"},
                    ],
                ]
            }
        },
    )
    done = orchestrate(repo, "run", "plan.md", "--script", str(script), "--max-attempts", "1")
    assert done.returncode == 1, done.stderr
    tamper(
        repo,
        protected_paths=[],
        prompts_dir="evil_prompts",
        claude_permission_mode="bypassPermissions",
        sandbox="none",
        allow_dirty=True,
    )
    resumed = orchestrate(repo, "resume")
    assert_no_traceback(resumed)
    assert "guarded/x.txt" in resumed.stderr  # the change to a protected path was undone
    assert "guarded/x.txt" not in git(repo, "ls-files")
    prompt = (run_dir(repo) / "prompts" / "T001.attempt-2.md").read_text()
    assert "EVIL PROMPT" not in prompt
    settings = effective_settings(repo)
    assert "guarded/**" in settings["protected_paths"]
    assert settings["prompts_dir"] == "prompts"
    assert settings["claude_permission_mode"] == "acceptEdits"
    assert settings["sandbox"] == "auto"
    assert settings["allow_dirty"] is False


# -- spending --------------------------------------------------------------------------------


def usage(cost: float) -> dict[str, Any]:
    return {"usage": {"input_tokens": 100, "output_tokens": 10, "cost_usd": cost}}


SPENDING_PLAN = PLAN + "- [ ] T003 Write `three.txt`\n  - Verify: `test -f three.txt`\n"


@pytest.mark.parametrize("limit_from", ["flag", "config"])
def test_a_journal_edit_never_raises_what_resume_may_spend(
    repo: Path, tmp_path: Path, limit_from: str
) -> None:
    (repo / "plan.md").write_text(SPENDING_PLAN)
    if limit_from == "config":
        (repo / "orchestrate.toml").write_text("max_cost = 1.0\nmax_turns = 20\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "plan")
    script = write_script(
        tmp_path / "script.json",
        {
            t: [usage(0.6), {"write": f"{name}.txt", "content": f"{name}\n"}]
            for t, name in (("T001", "one"), ("T002", "two"), ("T003", "three"))
        },
    )
    flags = ["--max-cost", "1.0", "--max-turns", "20"] if limit_from == "flag" else []
    stopped = orchestrate(
        repo, "run", "plan.md", "--script", str(script), "--model", "claude-haiku-4-5", *flags
    )
    assert stopped.returncode == 3, stopped.stderr  # stopped, resumable
    assert "budget" in stopped.stderr
    spent = folded(repo).usage.cost_usd

    raised: dict[str, Any] = {"max_turns": 1_000_000, "max_attempts": 100, "timeout": 1e9}
    if limit_from == "config":
        # A limit given only as a flag to `run` lives only in the journal: a same-user process
        # that rewrites it there raises it (without bubblewrap, nothing of the user's is out of
        # its reach). One the configuration holds is the resume's own.
        raised["max_cost"] = 1000.0
    tamper(repo, model="claude-opus-4-1", **raised)
    resumed = orchestrate(repo, "resume")
    assert resumed.returncode == 3, resumed.stderr  # stopped again, resumable
    assert "budget" in resumed.stderr
    assert folded(repo).usage.cost_usd == pytest.approx(spent)
    assert task_commits(repo) == ["T001"]
    settings = effective_settings(repo)
    assert settings["max_turns"] == (20 if limit_from == "config" else 50)
    assert settings["max_attempts"] == 3
    assert settings["timeout"] == 600
    assert settings["model"] == "claude-sonnet-4-6"  # the configured one: the journal's costs more
    if limit_from == "config":
        assert settings["max_cost"] == 1.0


def test_an_intact_journal_resumes_as_the_run_started_without_flags(repo: Path, tmp_path: Path) -> None:
    """The common case: limits, model and parallelism given as flags to `run` carry over."""
    stopped_scripted_run(
        repo,
        tmp_path,
        "--model",
        "claude-haiku-4-5",
        "--max-turns",
        "7",
        "--timeout",
        "30",
        "--parallel",
        "2",
    )
    resumed = orchestrate(repo, "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "differ" not in resumed.stderr
    settings = effective_settings(repo)
    assert settings["model"] == "claude-haiku-4-5"
    assert settings["max_turns"] == 7
    assert settings["max_attempts"] == 1
    assert settings["timeout"] == 30
    assert settings["parallel"] == 2
    assert task_commits(repo) == ["T001", "T002"]


@needs_bubblewrap
def test_resume_under_bubblewrap_ignores_a_recorded_sandbox_none(
    repo: Path, outside: Path, marker: Path
) -> None:
    """A same-user process edits the journal (sandbox: none) between a stop and a resume: the
    resumed agent's commands are still confined."""
    hostile = HostileModel(repo, outside, marker, "bubblewrap")
    hostile.attacking = False
    with FakeMessagesServer() as api:
        api.respond_with(lambda request: finish("blocked", "not yet"))
        env = api_env(api, "auto")
        done = orchestrate(
            repo,
            "run",
            "plan.md",
            "--agent",
            "anthropic",
            "--model",
            TEST_MODEL,
            "--max-attempts",
            "1",
            env=env,
        )
        assert done.returncode == 1, done.stderr
        tamper(repo, sandbox="none")
        api.respond_with(hostile)
        resumed = orchestrate(repo, "resume", env=env)
        assert resumed.returncode == 0, resumed.stderr
    assert files_under(outside) == []
    assert "sandbox" in resumed.stderr


# -- orchestrate's own writes never follow a link ----------------------------------------------


def test_a_run_directory_replaced_by_a_link_is_refused(repo: Path, tmp_path: Path) -> None:
    stopped_scripted_run(repo, tmp_path)
    state = run_dir(repo)
    moved = tmp_path / "moved"
    state.rename(moved)
    state.symlink_to(moved)  # points at the real state, moved: still not followed
    before = (moved / "journal.jsonl").read_bytes()
    refused = orchestrate(repo, "resume", state.name)
    assert refused.returncode == 2, refused.stderr
    assert_no_traceback(refused)
    assert "symbolic link" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert (moved / "journal.jsonl").read_bytes() == before
    assert not (moved / "prompts" / "T001.attempt-2.md").exists()


def test_a_journal_replaced_by_a_link_is_refused(repo: Path, tmp_path: Path, outside: Path) -> None:
    stopped_scripted_run(repo, tmp_path)
    journal = run_dir(repo) / "journal.jsonl"
    copy = outside / "journal.jsonl"
    copy.write_bytes(journal.read_bytes())
    journal.unlink()
    journal.symlink_to(copy)
    before = copy.read_bytes()
    refused = orchestrate(repo, "resume")
    assert refused.returncode == 2, refused.stderr
    assert_no_traceback(refused)
    assert "symbolic link" in refused.stderr
    assert copy.read_bytes() == before


@pytest.mark.parametrize("link", ["checkpoints", ".git/orchestrate.lock", ".git/info/exclude"])
def test_a_link_where_orchestrate_keeps_its_files_is_refused(
    repo: Path, tmp_path: Path, outside: Path, link: str
) -> None:
    victim = outside / "victim.txt"
    victim.write_text("precious\n")
    place = repo / link
    place.unlink(missing_ok=True)
    place.symlink_to(outside if link == "checkpoints" else victim)
    script = write_script(tmp_path / "script.json", {})
    # A link is not a folder to git: /checkpoints/ in .git/info/exclude does not hide it.
    dirty = ["--allow-dirty"] if link == "checkpoints" else []
    refused = orchestrate(repo, "run", "plan.md", "--script", str(script), *dirty)
    assert refused.returncode == 2, refused.stderr
    assert_no_traceback(refused)
    assert "symbolic link" in refused.stderr
    assert link in refused.stderr
    assert files_under(outside) == ["victim.txt"]
    assert victim.read_text() == "precious\n"


def test_links_planted_at_the_pid_file_and_at_temp_names_are_not_followed(
    repo: Path, tmp_path: Path, outside: Path
) -> None:
    """An agent with unconfined commands links the lock's pid file, and the temp name of the next
    prompt orchestrate writes (it can read orchestrate's pid), to a file of the user's: orchestrate
    writes its own files in place of the links, never through them."""
    victim = outside / "victim.txt"
    victim.write_text("precious\n")
    (repo / ".git" / "orchestrate.pid").symlink_to(victim)
    plant = (
        "pid=$(cat .git/orchestrate.pid); for d in checkpoints/*/; do "
        f'ln -s {victim} "$d/prompts/.tmp-T001.attempt-2.md.$pid"; '
        f'ln -s {victim} "$d/.tmp-T001.attempt-2.md.$pid"; done; '
        f"ln -sf {victim} .git/orchestrate.pid"
    )
    script = write_script(
        tmp_path / "script.json",
        {
            "T001": {
                "attempts": [[{"run": plant}, {"fail": "again"}], [{"write": "one.txt", "content": "1\n"}]]
            },
            "T002": [{"write": "two.txt", "content": "2\n"}],
        },
    )
    done = orchestrate(repo, "run", "plan.md", "--script", str(script), "--max-attempts", "2")
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious\n"
    assert "## Your task: T001" in (run_dir(repo) / "prompts" / "T001.attempt-2.md").read_text()
    assert task_commits(repo) == ["T001", "T002"]


# -- what the run's state costs every later task -------------------------------------------------


def measured_model(request: RecordedRequest) -> Response:
    """What a model commonly does first: look at the tree, search it, then do the task."""
    messages = request.body["messages"]
    name = re.search(r"Write `(\w+)\.txt`", messages[0]["content"][0]["text"])
    assert name is not None
    steps: list[tuple[str, dict[str, Any]]] = [
        ("list_dir", {"path": ".", "recursive": True}),
        ("search", {"pattern": "Write|task"}),
        ("write_file", {"path": f"{name.group(1)}.txt", "content": f"{name.group(1)}\n"}),
    ]
    turn = (len(messages) + 1) // 2
    return tool_call(*steps[turn - 1]) if turn <= len(steps) else finish("done", "written")


def plan_of(title: str, *names: str) -> str:
    lines = [f"# Plan {title}\n\n## Phase 1: Work\n\n"]
    for number, name in enumerate(names, 1):
        lines.append(f"- [ ] T00{number} Write `{name}.txt`\n  - Verify: `test -f {name}.txt`\n")
    return "".join(lines)


def tokens_of_a_task_after_two_runs(root: Path, keep_state: bool) -> int:
    """Input tokens (fresh + cache write + cache read) of plan C's task, in a repository where
    plans A and B were run before, their state left in the tree or not."""
    files = {"README.md": "# measure\n", "a.md": plan_of("A", "a1", "a2"), "b.md": plan_of("B", "b1", "b2")}
    repo = make_repo(root, {**files, "c.md": plan_of("C", "c1")})
    with FakeMessagesServer() as api:
        api.respond_with(measured_model)
        env = api_env(api, "none")
        for plan in ("a.md", "b.md"):
            done = orchestrate(repo, "run", plan, "--agent", "anthropic", "--model", TEST_MODEL, env=env)
            assert done.returncode == 0, done.stderr
        if not keep_state:
            shutil.rmtree(repo / "checkpoints")
        done = orchestrate(repo, "run", "c.md", "--agent", "anthropic", "--model", TEST_MODEL, env=env)
        assert done.returncode == 0, done.stderr
        shown = orchestrate(repo, "show", "--json", env=env)
    report = json.loads(shown.stdout)
    spent = report["tasks"]["T001"]["usage"]
    return int(
        spent["input_tokens"] + spent["cache_creation_input_tokens"] + spent["cache_read_input_tokens"]
    )


def test_earlier_runs_state_costs_a_later_task_no_tokens(tmp_path: Path) -> None:
    clean = tokens_of_a_task_after_two_runs(tmp_path / "clean", keep_state=False)
    with_state = tokens_of_a_task_after_two_runs(tmp_path / "with-state", keep_state=True)
    growth = (with_state - clean) / clean
    print(
        f"\nplan C's task: {clean} input tokens without earlier runs' state, {with_state} with two "
        f"({growth:+.2%})"
    )
    assert abs(growth) < 0.002, (clean, with_state)
