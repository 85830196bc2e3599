"""`--agent codex`: the installed CLI in a subprocess with a fake `codex` replaying what the real
0.171.0 printed (tests/fakes/codex_cli.py), in a real repository; and the backend alone where a
wall clock or a process tree is the point."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from orchestrator.agents.base import AgentConfigError, AgentRequest, AgentStatus, AgentUnavailable
from orchestrator.agents.registry import create_agent
from orchestrator.config import Settings
from tests.conftest import git, make_repo, orchestrate
from tests.fakes import codex_cli
from tests.fakes.codex_cli import OVERLOADED, READ_ONLY, SUCCESS, UNAUTHORIZED, calls, script
from tests.fakes.listener import Recorder

PLAN = """\
# Plan

## Phase 1: Files

- [ ] T001 Create `hello.txt`
  - Verify: `test -f hello.txt`
- [ ] T002 Create `notes.txt`
  - Verify: `test -f notes.txt`
"""
EDITS = {"hello.txt": "hi\n", "notes.txt": "notes\n"}
KEY = "sk-openai-test-0123456789abcdef"
# The fake codex logs to its own folder, which bubblewrap would keep read-only.
UNCONFINED = {"ORCHESTRATE_SANDBOX": "none"}


@pytest.fixture
def codex_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = codex_cli.install(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


@pytest.fixture
def codex_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Its home outside the repository, its config naming a model genai-prices knows."""
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text('model = "gpt-5"\n')
    monkeypatch.setenv("CODEX_HOME", str(home))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OTHER_SECRET", "not-for-codex-0123456789")
    return home


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"plan.md": PLAN, ".gitignore": "checkpoints/\n"})


def tasks_committed(repo: Path) -> list[str]:
    return git(repo, "log", "--reverse", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split()


def test_a_plan_done_by_codex_is_committed_with_its_usage_priced(
    repo: Path, codex_bin: Path, codex_home: Path
) -> None:
    script(codex_bin, SUCCESS, edits=EDITS)
    done = orchestrate(repo, "run", "plan.md", "--agent", "codex", "--max-cost", "5", env=UNCONFINED)
    assert done.returncode == 0, done.stderr
    assert tasks_committed(repo) == ["T001", "T002"]
    assert git(repo, "status", "--porcelain") == ""  # nothing of codex's left in the tree

    # The probe first (read-only, once), then one session a task with the flags that work headless.
    assert len(calls(codex_bin, "probe")) == 1
    sessions = calls(codex_bin)
    assert len(sessions) == 2
    argv = sessions[0]["argv"]
    assert argv[:2] == ["exec", "--json"]
    assert argv[argv.index("--sandbox") + 1] == "workspace-write"
    assert "--skip-git-repo-check" in argv
    assert argv[-1] == "-"  # the prompt through stdin
    assert "Create `hello.txt`" in sessions[0]["stdin"]
    assert "--model" not in argv  # none chosen: its config's
    # Its key and home reach it; no other secret does; its commands are kept from the key.
    assert sessions[0]["env"]["OPENAI_API_KEY"] == KEY
    assert sessions[0]["env"]["CODEX_HOME"] == str(codex_home)
    assert sessions[0]["env"]["OTHER_SECRET"] is None
    excluded = argv[argv.index("shell_environment_policy.ignore_default_excludes=false") + 2]
    assert "OPENAI_API_KEY" in excluded

    # gpt-5 at $1.25/$10 a million, cached input $0.125: 1600 in, 400 cached, 100 out per task;
    # the probe (1500 in, 2 out) is charged to the first task.
    task = 1600 * 1.25e-6 + 400 * 0.125e-6 + 100 * 10e-6
    probe = 1500 * 1.25e-6 + 2 * 10e-6
    state = json.loads(orchestrate(repo, "show", "--json").stdout)
    assert state["usage"]["cost_known"] is True
    assert state["usage"]["cost_usd"] == pytest.approx(2 * task + probe, abs=1e-6)
    assert state["tasks"]["T002"]["usage"]["input_tokens"] == 1600
    assert state["tasks"]["T002"]["usage"]["cache_read_input_tokens"] == 400
    assert state["tasks"]["T002"]["usage"]["output_tokens"] == 100
    assert f"${2 * task + probe:.4f}" in done.stderr


def test_a_model_no_price_list_knows_is_cost_unknown(repo: Path, codex_bin: Path, codex_home: Path) -> None:
    (codex_home / "config.toml").write_text('model = "gpt-6.2-sol"\n')
    script(codex_bin, SUCCESS, edits=EDITS)
    done = orchestrate(repo, "run", "plan.md", "--agent", "codex", "--max-cost", "5", env=UNCONFINED)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith("cost unknown") or "tokens, cost unknown" in done.stderr
    assert done.stderr.count("cannot be enforced for this backend") == 1
    state = json.loads(orchestrate(repo, "show", "--json").stdout)
    assert state["usage"]["cost_known"] is False
    assert state["usage"]["cost_usd"] == 0
    assert state["usage"]["input_tokens"] > 0  # the tokens are known all the same


def test_writes_its_read_only_sandbox_refused_fail_the_attempt(
    repo: Path, codex_bin: Path, codex_home: Path
) -> None:
    # codex exits 0 having changed nothing: the attempt fails, saying why, not "done".
    script(codex_bin, READ_ONLY)
    done = orchestrate(repo, "run", "plan.md", "--agent", "codex", "--max-attempts", "1", env=UNCONFINED)
    assert done.returncode == 1, done.stderr
    assert "codex's sandbox refused its writes" in done.stderr
    assert "Read-only file system" in done.stderr
    assert tasks_committed(repo) == []


def test_an_overloaded_api_stops_the_run_resumably_and_resume_finishes(
    repo: Path, codex_bin: Path, codex_home: Path
) -> None:
    script(codex_bin, OVERLOADED, exit=1)
    run = ["run", "plan.md", "--agent", "codex", "--max-attempts", "1"]
    stopped = orchestrate(repo, *run, env=UNCONFINED)
    assert stopped.returncode == 3, stopped.stderr  # stopped, resumable
    assert "the API was unavailable for codex after its own retries (unexpected status 529" in stopped.stderr
    assert "0 done, 0 failed, 0 skipped, 2 remaining" in stopped.stderr
    assert tasks_committed(repo) == []

    # The API is back: the same attempt budget (1) still does both tasks.
    script(codex_bin, SUCCESS, edits=EDITS)
    resumed = orchestrate(repo, "resume", "--agent", "codex", env=UNCONFINED)
    assert resumed.returncode == 0, resumed.stderr
    assert tasks_committed(repo) == ["T001", "T002"]


def test_a_rejected_key_is_refused_before_the_first_task(
    repo: Path, codex_bin: Path, codex_home: Path
) -> None:
    script(codex_bin, SUCCESS, probe=UNAUTHORIZED, probe_exit=1, edits=EDITS)
    refused = orchestrate(repo, "run", "plan.md", "--agent", "codex", env=UNCONFINED)
    assert refused.returncode == 2
    assert "codex cannot use its key (unexpected status 401 Unauthorized" in refused.stderr
    assert "CODEX_API_KEY" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert calls(codex_bin) == []  # no session started
    assert tasks_committed(repo) == []


def test_a_missing_key_is_refused_before_the_first_task(
    repo: Path, codex_bin: Path, codex_home: Path
) -> None:
    script(codex_bin, SUCCESS, probe=codex_cli.NO_KEY, probe_exit=1, edits=EDITS)
    refused = orchestrate(repo, "run", "plan.md", "--agent", "codex", env=UNCONFINED)
    assert refused.returncode == 2
    assert "codex cannot use its key (Missing environment variable: `OPENAI_API_KEY`.)" in refused.stderr
    assert "export CODEX_API_KEY (or OPENAI_API_KEY)" in refused.stderr
    assert calls(codex_bin) == []


def test_a_key_rejected_mid_run_is_a_resumable_stop(repo: Path, codex_bin: Path, codex_home: Path) -> None:
    script(codex_bin, UNAUTHORIZED, exit=1)
    stopped = orchestrate(repo, "run", "plan.md", "--agent", "codex", env=UNCONFINED)
    assert stopped.returncode == 3, stopped.stderr
    assert "codex could not use its key (unexpected status 401" in stopped.stderr


def test_its_home_inside_the_work_tree_is_refused(repo: Path, codex_bin: Path, codex_home: Path) -> None:
    script(codex_bin, SUCCESS, edits=EDITS)
    inside = {**UNCONFINED, "CODEX_HOME": str(repo / ".codex")}
    stopped = orchestrate(repo, "run", "plan.md", "--agent", "codex", env=inside)
    assert stopped.returncode != 0
    assert "CODEX_HOME" in stopped.stderr
    assert "inside the work tree" in stopped.stderr
    assert calls(codex_bin) == []
    assert tasks_committed(repo) == []


def test_missing_codex_cannot_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AgentConfigError, match="the `codex` CLI is not on PATH"):
        create_agent(Settings(agent="codex"))


# -- the backend alone -------------------------------------------------------------------------

LEAK = "while true; do date >> leak.txt; sleep 0.05; done"


def request(where: Path) -> AgentRequest:
    workspace = where / "workspace"
    workspace.mkdir(exist_ok=True)
    return AgentRequest(task_id="T001", system_prompt="Be careful.", prompt="-x Write.", workspace=workspace)


def _growing(path: Path) -> bool:
    time.sleep(0.2)  # a write under way when its writer was killed lands
    before = path.stat().st_size
    time.sleep(0.5)
    return path.stat().st_size != before


def test_a_session_past_the_timeout_is_killed_with_what_it_started(
    codex_bin: Path, codex_home: Path, tmp_path: Path, recorder: Recorder
) -> None:
    script(codex_bin, SUCCESS[:2], sleep=30, spawn=LEAK)
    started = time.monotonic()
    outcome = create_agent(Settings(agent="codex", agent_timeout=1.5)).run(request(tmp_path), recorder)
    assert time.monotonic() - started < 15
    assert outcome.status == AgentStatus.FAILED
    assert outcome.summary.startswith("codex timed out after 1.5s (agent_timeout) and was killed")
    assert (tmp_path / "workspace" / "leak.txt").exists()
    assert not _growing(tmp_path / "workspace" / "leak.txt")


def test_the_prompt_goes_through_stdin_and_a_5xx_is_unavailable(
    codex_bin: Path, codex_home: Path, tmp_path: Path, recorder: Recorder
) -> None:
    lines = codex_cli.session(*codex_cli.api_error(500, "Internal Server Error", "boom"))
    script(codex_bin, lines, exit=1)
    with pytest.raises(AgentUnavailable, match=r"unavailable for codex .*unexpected status 500"):
        create_agent(Settings(agent="codex")).run(request(tmp_path), recorder)
    (call,) = calls(codex_bin)
    assert call["argv"][-1] == "-"
    assert "-x Write." in call["stdin"]  # a prompt starting with `-` is never a flag
