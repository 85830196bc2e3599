from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from orchestrator.config import load_settings
from orchestrator.errors import ConfigError
from tests.conftest import git, make_repo, orchestrate


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.orchestrate]\nmax_attempts = 5\ntimeout = 9\nparallel = 2\n"
    )
    env = {"ORCHESTRATE_TIMEOUT": "7", "ORCHESTRATE_PARALLEL": "3"}
    settings = load_settings(tmp_path, {"parallel": 4, "max_cost": None}, environ=env)
    assert (settings.max_attempts, settings.timeout, settings.parallel) == (5, 7.0, 4)
    assert settings.max_cost is None


def test_orchestrate_toml_wins_over_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.orchestrate]\nmax_attempts = 5\n")
    (tmp_path / "orchestrate.toml").write_text('verify = ["true"]\n')
    settings = load_settings(tmp_path, environ={})
    assert settings.verify == ["true"]
    assert settings.max_attempts == 3


def test_bad_setting_names_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "orchestrate.toml").write_text("max_attempts = 0\n")
    with pytest.raises(ConfigError, match=r"orchestrate\.toml:1: setting .max_attempts."):
        load_settings(tmp_path, environ={})


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    (tmp_path / "orchestrate.toml").write_text("max_atempts = 2\n")
    with pytest.raises(ConfigError, match="max_atempts"):
        load_settings(tmp_path, environ={})


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    (tmp_path / "orchestrate.toml").write_text("verify = [\n")
    with pytest.raises(ConfigError, match="orchestrate.toml: not valid TOML"):
        load_settings(tmp_path, environ={})


def test_the_default_agent_is_anthropic_unless_a_script_is_given(tmp_path: Path) -> None:
    assert load_settings(tmp_path, environ={}).agent == "anthropic"
    scripted = load_settings(tmp_path, {"script": tmp_path / "s.json"}, environ={})
    assert scripted.agent == "scripted"
    chosen = load_settings(tmp_path, {"script": tmp_path / "s.json", "agent": "command"}, environ={})
    assert chosen.agent == "command"


# -- through the CLI: every bad setting is one line naming where it came from, exit 2 ----------


PLAN = """\
# Plan

## Phase 1: Files

- [ ] T001 Write `a.txt`
  - Verify: `test -f a.txt`
- [ ] T002 Write `b.txt`
  - Verify: `test -f b.txt`
"""

SCRIPT = {"T001": [{"write": "a.txt", "content": "a\n"}], "T002": [{"write": "b.txt", "content": "b\n"}]}


def snapshot(repo: Path) -> tuple[str, str, str]:
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "status", "--porcelain", "--ignored"),
        git(repo, "branch", "--list"),
    )


def assert_refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path]:
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "plan.md": PLAN})
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    return repo, script


def commit_config(repo: Path, name: str, text: str) -> None:
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-qm", f"settings in {name}")


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('agent = "scripted"\nprices = [1]\n', 2, ["prices", "dictionary"]),
        ("# budget\n\ntimeout = inf\n", 3, ["timeout", "finite"]),
        ("max_cost = nan\n", 1, ["max_cost", "finite"]),
        ("parallel = 2\n\n[prices.my-model]\ninput = 1.0\noutput = -inf\n", 5, ["prices.my-model.output"]),
        ('[prices]\nmy-model = { input = 1, output = "lots" }\n', 2, ["prices.my-model.output"]),
        ("max-attempts = 0\n", 1, ["max_attempts", "greater than or equal to 1"]),
        ("max_atempts = 2\n", 1, ["max_atempts", "unknown setting"]),
        ('verify = ["true", ""]\n', 1, ["verify"]),
        ("agent_timeout = 1e9\n", 1, ["agent_timeout", "604800"]),
        ("max_cost = 5\nrequests_per_minute = 0\n", 2, ["requests_per_minute", "greater than 0"]),
        ("requests_per_minute = -inf\n", 1, ["requests_per_minute", "finite"]),
    ],
)
def test_a_bad_setting_in_orchestrate_toml_names_its_line(
    project: tuple[Path, Path], text: str, line: int, words: list[str], dry: bool
) -> None:
    repo, script = project
    commit_config(repo, "orchestrate.toml", text)
    before = snapshot(repo)
    done = orchestrate(repo, "run", "plan.md", "--script", str(script), *(["--dry-run"] if dry else []))
    assert_refused(done, f"orchestrate.toml:{line}:", *words)
    assert snapshot(repo) == before


def test_a_bad_setting_in_pyproject_names_its_line(project: tuple[Path, Path]) -> None:
    repo, script = project
    commit_config(
        repo,
        "pyproject.toml",
        '[project]\nname = "x"\ntimeout = "not ours"\n\n[tool.orchestrate]\nparallel = 1\ncompact_at = nan\n',
    )
    done = orchestrate(repo, "run", "plan.md", "--script", str(script), "--dry-run")
    assert_refused(done, "pyproject.toml:7:", "compact_at", "finite")


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--timeout", "inf", ["flag --timeout", "finite"]),
        ("--timeout", "nan", ["flag --timeout", "finite"]),
        ("--max-cost", "inf", ["flag --max-cost", "finite"]),
        ("--max-cost", "-1", ["flag --max-cost", "greater than or equal to 0"]),
        ("--max-attempts", "0", ["flag --max-attempts"]),
        ("--timeout", "1e308", ["flag --timeout", "604800"]),
        ("--branch", "a..b", ["flag --branch", "not a valid git branch name"]),
        ("--parallel", "5000", ["flag --parallel", "less than or equal to 1024"]),
    ],
)
@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
def test_a_bad_flag_is_refused_before_anything_runs(
    project: tuple[Path, Path], flag: str, value: str, words: list[str], dry: bool
) -> None:
    repo, script = project
    before = snapshot(repo)
    extra = ["--dry-run"] if dry else []
    done = orchestrate(repo, "run", "plan.md", "--script", str(script), flag, value, *extra)
    assert_refused(done, *words)
    assert snapshot(repo) == before


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("ORCHESTRATE_TIMEOUT", "inf", ["environment variable ORCHESTRATE_TIMEOUT", "finite"]),
        ("ORCHESTRATE_COMMAND_TIMEOUT", "1e400", ["environment variable ORCHESTRATE_COMMAND_TIMEOUT"]),
        ("ORCHESTRATE_PRICES", "[1]", ["environment variable ORCHESTRATE_PRICES", "dictionary"]),
        ("ORCHESTRATE_PRICES", "{bad", ["environment variable ORCHESTRATE_PRICES", "JSON"]),
        ("ORCHESTRATE_PARALLEL", "two", ["environment variable ORCHESTRATE_PARALLEL", "integer"]),
        ("ORCHESTRATE_SANDBOX", "off", ["environment variable ORCHESTRATE_SANDBOX", "bubblewrap"]),
        ("ORCHESTRATE_MODEL", "", ["environment variable ORCHESTRATE_MODEL", "at least 1 character"]),
        ("ORCHESTRATE_CONTEXT_WINDOW", "9" * 30, ["environment variable ORCHESTRATE_CONTEXT_WINDOW"]),
        # Secret-looking by name (TOKEN): still read as our setting, not held back as a secret.
        ("ORCHESTRATE_MAX_TOKENS", "0", ["environment variable ORCHESTRATE_MAX_TOKENS", "max_tokens"]),
        (
            "ORCHESTRATE_PRICES",
            '{"my-model": {"input": 1, "output": 1, "cache": 2}}',
            ["environment variable ORCHESTRATE_PRICES", "unknown key 'cache' in setting 'prices.my-model'"],
        ),
    ],
)
def test_a_bad_environment_variable_is_named(
    project: tuple[Path, Path], name: str, value: str, words: list[str]
) -> None:
    repo, script = project
    before = snapshot(repo)
    done = orchestrate(repo, "run", "plan.md", "--script", str(script), env={name: value})
    assert_refused(done, *words)
    assert snapshot(repo) == before


def test_resume_refuses_a_bad_flag_before_it_touches_anything(project: tuple[Path, Path]) -> None:
    repo, script = project
    crashed = orchestrate(
        repo, "run", "plan.md", "--script", str(script), env={"ORCHESTRATE_CRASH_AT": "after_done:T001"}
    )
    assert crashed.returncode == 137
    for value in ("inf", "nan", "-3"):
        done = orchestrate(repo, "resume", "--timeout", value)
        assert_refused(done, "flag --timeout")
    resumed = orchestrate(repo, "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert git(repo, "log", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split() == ["T002", "T001"]


@pytest.mark.parametrize("where", ["under-a-file", "file", "proc"])
@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
def test_a_checkpoints_dir_that_cannot_be_made_is_refused_in_pre_flight(
    project: tuple[Path, Path], tmp_path: Path, where: str, dry: bool
) -> None:
    repo, script = project
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    target = {"under-a-file": blocker / "checkpoints", "file": blocker, "proc": Path("/proc/orchestrate-x")}[
        where
    ]
    commit_config(repo, "orchestrate.toml", f'# where runs live\ncheckpoints_dir = "{target}"\n')
    before = snapshot(repo)
    extra = ["--dry-run"] if dry else []
    done = orchestrate(repo, "run", "plan.md", "--script", str(script), *extra)
    assert_refused(done, "orchestrate.toml:2:", "checkpoints_dir")
    assert snapshot(repo) == before
    env_done = orchestrate(
        repo, "run", "plan.md", "--script", str(script), env={"ORCHESTRATE_CHECKPOINTS_DIR": str(target)}
    )
    assert_refused(env_done, "environment variable ORCHESTRATE_CHECKPOINTS_DIR", "checkpoints_dir")
