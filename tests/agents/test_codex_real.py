"""The real `codex` CLI (npm @openai/codex, 0.171.0 in CI) carrying a plan through `orchestrate run`,
its model a fake Responses API on 127.0.0.1 (tests/fakes/responses_server.py) that scripts its tool
calls: files really written by codex's own shell tool, really committed by orchestrate. Skipped,
saying so, where codex is not installed."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SANDBOXES, git, make_repo, orchestrate
from tests.fakes.responses_server import (
    TEST_KEY,
    FakeResponsesServer,
    codex_home,
    overloaded,
    say,
    shell,
    unauthorized,
)

pytestmark = pytest.mark.skipif(
    shutil.which("codex") is None,
    reason="the real codex CLI is not installed (npm install -g @openai/codex@0.171.0; .ci/run does)",
)

PLAN = """\
# Plan

## Phase 1: Files

- [ ] T001 Create `hello.txt` saying hi
  - Verify: `grep -q hi hello.txt`
- [ ] T002 Create `notes.txt`
  - Verify: `test -f notes.txt`
"""


@pytest.fixture
def api() -> Iterator[FakeResponsesServer]:
    with FakeResponsesServer() as server:
        yield server


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A TMPDIR that is not /tmp: codex refuses to set up its own sandbox's helper when its home
    is under the temporary directory, as the tests' homes are."""
    where = Path(tempfile.mkdtemp(prefix="orchestrate-codex-", dir="/var/tmp"))
    yield where
    shutil.rmtree(where, ignore_errors=True)


def env_for(tmp_path: Path, api: FakeResponsesServer, sandbox: str, tmpdir: Path) -> dict[str, str]:
    return {
        "CODEX_HOME": str(codex_home(tmp_path, api)),
        "OPENAI_API_KEY": TEST_KEY,
        "ORCHESTRATE_SANDBOX": sandbox,
        "TMPDIR": str(tmpdir),
    }


def tasks_committed(repo: Path) -> list[str]:
    return git(repo, "log", "--reverse", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split()


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_real_codex_carries_a_plan_and_its_work_is_committed(
    tmp_path: Path, api: FakeResponsesServer, outside_tmp: Path, sandbox: str
) -> None:
    repo = make_repo(tmp_path / "repo", {"plan.md": PLAN, ".gitignore": "checkpoints/\n"})
    api.script(
        say("OK"),  # the readiness probe
        shell("printf 'hi\\n' > hello.txt"),
        say("DONE: wrote hello.txt"),
        shell("env > seen-env.txt; printf 'notes\\n' > notes.txt"),
        say("DONE: wrote notes.txt"),
    )
    done = orchestrate(
        repo,
        "run",
        "plan.md",
        "--agent",
        "codex",
        "--max-cost",
        "5",
        env=env_for(tmp_path, api, sandbox, outside_tmp),
    )
    assert done.returncode == 0, done.stderr
    assert tasks_committed(repo) == ["T001", "T002"]
    assert (repo / "hello.txt").read_text() == "hi\n"
    assert api.pending == 0
    # Its key went to codex (the requests carry it), never to the commands it ran.
    assert all(r.headers.get("authorization") == f"Bearer {TEST_KEY}" for r in api.turns)
    assert TEST_KEY not in (repo / "seen-env.txt").read_text()
    # The prompt reached the model; usage came back and was priced (gpt-5).
    assert "Create `hello.txt` saying hi" in json.dumps(api.turns[1].body["input"])
    state = json.loads(orchestrate(repo, "show", "--json").stdout)
    assert state["usage"]["cost_known"] is True
    assert state["usage"]["cost_usd"] > 0
    assert state["tasks"]["T002"]["usage"]["cache_read_input_tokens"] == 400  # 2 requests, 200 each


def test_real_codex_on_an_overloaded_api_stops_resumably(
    tmp_path: Path, api: FakeResponsesServer, outside_tmp: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"plan.md": PLAN, ".gitignore": "checkpoints/\n"})
    env = env_for(tmp_path, api, "none", outside_tmp)
    api.script(say("OK"), overloaded())
    stopped = orchestrate(repo, "run", "plan.md", "--agent", "codex", "--max-attempts", "1", env=env)
    assert stopped.returncode == 3, stopped.stderr
    assert "the API was unavailable for codex after its own retries" in stopped.stderr
    assert "529" in stopped.stderr

    api.script(
        say("OK"), shell("printf 'hi\\n' > hello.txt"), say("DONE"), shell("touch notes.txt"), say("DONE")
    )
    resumed = orchestrate(repo, "resume", "--agent", "codex", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert tasks_committed(repo) == ["T001", "T002"]


def test_real_codex_with_a_rejected_key_is_refused_before_the_first_task(
    tmp_path: Path, api: FakeResponsesServer, outside_tmp: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"plan.md": PLAN})
    api.script(unauthorized())
    refused = orchestrate(
        repo, "run", "plan.md", "--agent", "codex", env=env_for(tmp_path, api, "none", outside_tmp)
    )
    assert refused.returncode == 2, refused.stderr
    assert "codex cannot use its key (unexpected status 401" in refused.stderr
    assert len(api.turns) == 1  # the probe only
    assert tasks_committed(repo) == []
