"""Prompt templates are untrusted: the agent can write `prompts/*.j2`, and even the user's own
committed override must not run code inside orchestrate (which holds the API key).

Attacked as it would be: a hostile scripted agent writes a template whose payload runs a shell
command (writing a marker file with the environment); a hostile override is committed before the
run; `run --dry-run --show-prompts` is pointed at one. Every time the marker must never exist, the
key must never show, and the error must be one line naming the file and line. All through the real
CLI in a subprocess, in a real git repository.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from tests.conftest import orchestrate as run_orchestrate

SECRET = "sk-ant-test-DO-NOT-LEAK-4242"


def orchestrate(
    repo: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """With a key in the environment: a template that reaches for it must find nothing."""
    return run_orchestrate(repo, *args, env={"ANTHROPIC_API_KEY": SECRET, **(env or {})})


PLAN = """\
# Plan: templates

## Phase 1: Files

- [ ] T001 Write `a.txt`
  - Verify: `test -f a.txt`
- [ ] T002 Write `b.txt`
  - Verify: `test -f b.txt`
"""


def payloads(marker: Path) -> dict[str, str]:
    """Ways out of a plain Jinja2 template into Python, each writing `marker` with the environment."""
    shell = f"env > {marker}"
    return {
        "cycler": f"{{{{ cycler.__init__.__globals__.os.popen('{shell}').read() }}}}",
        "lipsum": f"{{{{ lipsum.__globals__['os'].system('{shell}') }}}}",
        "subclasses": (
            "{% for c in ''.__class__.__mro__[1].__subclasses__() %}"
            f"{{% if c.__name__ == 'Popen' %}}{{{{ c(['sh', '-c', '{shell}']).wait() }}}}{{% endif %}}"
            "{% endfor %}"
        ),
        "context": (
            f"{{{{ self._TemplateReference__context.cycler.__init__.__globals__.os.system('{shell}') }}}}"
        ),
        "environ": (
            "{{ cycler.__init__.__globals__.os.environ['ANTHROPIC_API_KEY'] }}"
            f"{{{{ joiner.__init__.__globals__.os.system('{shell}') }}}}"
        ),
    }


def snapshot(repo: Path) -> tuple[str, str, list[str]]:
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "status", "--porcelain", "--ignored"),
        sorted(p.name for p in repo.iterdir()),
    )


def script(tmp_path: Path, steps: dict[str, object]) -> Path:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(steps))
    return path


def assert_one_line_error(done: subprocess.CompletedProcess[str], where: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert where in lines[0], lines[0]
    assert "unsafe" in lines[0] or "not allowed" in lines[0], lines[0]
    assert "Traceback" not in done.stderr
    assert SECRET not in done.stdout + done.stderr


@pytest.mark.parametrize("parallel", [[], ["--parallel", "2"]], ids=["serial", "parallel"])
def test_a_template_the_agent_writes_never_runs(tmp_path: Path, parallel: list[str]) -> None:
    """T001's agent plants prompts/task.md.j2 (T002's prompt would be rendered from it) and
    prompts/retry.md.j2 (its own retry's): the change is undone and reported, nothing renders it."""
    marker = tmp_path / "MARKER"
    payload = payloads(marker)["cycler"]
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "plan.md": PLAN})
    steps = {
        "T001": {
            "attempts": [
                [
                    {"write": "a.txt", "content": "a\n"},
                    {"write": "prompts/task.md.j2", "content": f"owned\n{payload}\n"},
                    {"write": "prompts/retry.md.j2", "content": f"owned\n{payload}\n"},
                ],
                [{"write": "a.txt", "content": "a\n"}],
            ]
        },
        "T002": [{"write": "b.txt", "content": "b\n"}],
    }
    done = orchestrate(repo, "run", "plan.md", "--script", str(script(tmp_path, steps)), *parallel)
    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    assert "prompts/task.md.j2" in done.stderr  # the undo is reported
    assert git(repo, "log", "--format=%H", "--", "prompts") == ""  # never committed
    assert not (repo / "prompts").exists()
    shown = orchestrate(repo, "show")
    assert "undone changes to: prompts/retry.md.j2, prompts/task.md.j2" in shown.stdout
    # The next run (and its dry run) renders nothing the agent wrote either.
    (repo / "next.md").write_text("# Next\n\n- [ ] N001 Write `n.txt`\n")
    git(repo, "add", "next.md")
    git(repo, "commit", "-qm", "next plan")
    dry = orchestrate(repo, "run", "next.md", "--dry-run", "--show-prompts")
    assert dry.returncode == 0, dry.stderr
    assert "Your task: " in dry.stdout
    assert not marker.exists()


def test_the_run_config_is_protected_from_the_agent(tmp_path: Path) -> None:
    """orchestrate.toml is what the next run reads: an agent that writes one (here to turn the
    sandbox off and add a verification command of its own) is undone, like prompts/."""
    marker = tmp_path / "MARKER"
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "plan.md": PLAN})
    toml = f'sandbox = "none"\nverify = ["touch {marker}"]\n'
    steps = {
        "T001": {
            "attempts": [
                [{"write": "a.txt", "content": "a\n"}, {"write": "orchestrate.toml", "content": toml}],
                [{"write": "a.txt", "content": "a\n"}],
            ]
        },
        "T002": [{"write": "b.txt", "content": "b\n"}],
    }
    done = orchestrate(repo, "run", "plan.md", "--script", str(script(tmp_path, steps)))
    assert done.returncode == 0, done.stderr
    assert "orchestrate.toml" in done.stderr
    assert not (repo / "orchestrate.toml").exists()
    assert git(repo, "log", "--format=%H", "--", "orchestrate.toml") == ""
    again = orchestrate(repo, "run", "plan.md", "--dry-run")
    assert "touch" not in again.stdout


def test_a_template_the_agent_hides_from_git_is_never_read(tmp_path: Path) -> None:
    """The agent ignores prompts/ in .gitignore before writing its template, so that no status
    shows it: templates come from the committed tree, never from whatever lies in the work tree."""
    marker = tmp_path / "MARKER"
    payload = payloads(marker)["lipsum"]
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "plan.md": PLAN})
    steps = {
        "T001": [
            {"write": ".gitignore", "content": "prompts/\n"},
            {"write": "prompts/task.md.j2", "content": payload},
            {"write": "a.txt", "content": "a\n"},
        ],
        "T002": [{"write": "b.txt", "content": "b\n"}],
    }
    done = orchestrate(repo, "run", "plan.md", "--script", str(script(tmp_path, steps)))
    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    # The planted file is still there (ignored); a later run and its dry run do not read it either.
    assert (repo / "prompts" / "task.md.j2").exists()
    (repo / "plan.md").write_text(PLAN)
    git(repo, "commit", "-qam", "the plan again, unticked")
    dry = orchestrate(repo, "run", "plan.md", "--dry-run", "--show-prompts")
    assert dry.returncode == 0, dry.stderr
    assert "Your task: T001" in dry.stdout
    assert not marker.exists()


def test_resume_never_reads_a_template_the_agent_left_uncommitted(tmp_path: Path) -> None:
    """Killed right after the agent wrote a template (before the guard undid it): resume renders
    from the committed tree, not from the work tree the kill left behind."""
    marker = tmp_path / "MARKER"
    payload = payloads(marker)["cycler"]
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "plan.md": PLAN})
    steps = {
        "T001": [
            {"write": "prompts/task.md.j2", "content": payload},
            {"write": "a.txt", "content": "a\n"},
        ],
        "T002": [{"write": "b.txt", "content": "b\n"}],
    }
    path = script(tmp_path, steps)
    crashed = orchestrate(
        repo, "run", "plan.md", "--script", str(path), env={"ORCHESTRATE_CRASH_AT": "after_agent:T001"}
    )
    assert crashed.returncode == 137
    assert (repo / "prompts" / "task.md.j2").exists()
    resumed = orchestrate(repo, "resume", "--script", str(path))
    assert not marker.exists()
    # T001's agent writes the template again on its rerun: undone every time, so T001 fails.
    assert resumed.returncode == 1, resumed.stderr
    assert not marker.exists()
    assert git(repo, "log", "--format=%H", "--", "prompts") == ""


@pytest.mark.parametrize("kind", ["cycler", "lipsum", "subclasses", "context", "environ"])
def test_a_hostile_committed_override_fails_cleanly_before_anything_runs(tmp_path: Path, kind: str) -> None:
    """The user's own override is still rendered sandboxed: its payload is a one-line error naming
    the file and line, exit 2, and no run begins (no journal, no commit, no branch)."""
    marker = tmp_path / "MARKER"
    template = f"# Plan: {{{{ plan_title }}}}\n\nTask {{{{ task.id }}}}\n{payloads(marker)[kind]}\n"
    repo = make_repo(
        tmp_path / "repo", {"README.md": "# r\n", "plan.md": PLAN, "prompts/task.md.j2": template}
    )
    before = snapshot(repo)
    done = orchestrate(repo, "run", "plan.md", "--script", str(script(tmp_path, {})), "--branch", "attempt")
    assert_one_line_error(done, "prompts/task.md.j2:4:")
    assert not marker.exists()
    git(repo, "switch", "-q", "work")  # in case a branch was made (it must not be)
    assert snapshot(repo) == before
    assert git(repo, "branch", "--list", "attempt") == ""


def test_a_payload_on_a_path_the_first_task_does_not_take_still_cannot_run(tmp_path: Path) -> None:
    """A payload only T002's prompt reaches (a run renders it in pre-flight or at T002): one line
    naming the file and line, exit 2; the payload never runs."""
    marker = tmp_path / "MARKER"
    template = (
        "Task {{ task.id }}\n{% if task.id == 'T002' %}\n" + payloads(marker)["cycler"] + "\n{% endif %}\n"
    )
    repo = make_repo(
        tmp_path / "repo", {"README.md": "# r\n", "plan.md": PLAN, "prompts/task.md.j2": template}
    )
    steps = {"T001": [{"write": "a.txt", "content": "a\n"}], "T002": [{"write": "b.txt", "content": "b\n"}]}
    done = orchestrate(repo, "run", "plan.md", "--script", str(script(tmp_path, steps)))
    assert not marker.exists()
    assert done.returncode == 2, done.stderr
    assert "prompts/task.md.j2:3:" in done.stderr
    assert "Traceback" not in done.stderr
    assert SECRET not in done.stdout + done.stderr


def test_dry_run_show_prompts_renders_sandboxed(tmp_path: Path) -> None:
    """`run --dry-run --show-prompts` runs no template code and does not claim it changed nothing
    when it refused; a dry run without --show-prompts refuses the same template (a run would)."""
    marker = tmp_path / "MARKER"
    # (The system prompt is the run's, the same for every task: it sees no `task`.)
    template = "Plan {{ plan_title }}\n\n" + payloads(marker)["subclasses"] + "\n"
    repo = make_repo(
        tmp_path / "repo", {"README.md": "# r\n", "plan.md": PLAN, "prompts/system.md.j2": template}
    )
    before = snapshot(repo)
    for args in (["--show-prompts"], [], ["--show-prompts", "--json"]):
        done = orchestrate(repo, "run", "plan.md", "--dry-run", *args)
        assert_one_line_error(done, "prompts/system.md.j2:3:")
        assert "nothing was run or changed" not in done.stdout
        assert not marker.exists()
    assert snapshot(repo) == before


def test_dry_run_shows_the_committed_templates_and_says_so(tmp_path: Path) -> None:
    """A run renders the committed override; an uncommitted edit is not used, and the dry run,
    which shows what a run would send, says so."""
    repo = make_repo(
        tmp_path / "repo",
        {"README.md": "# r\n", "plan.md": PLAN, "prompts/task.md.j2": "Committed {{ task.id }}\n"},
    )
    (repo / "prompts" / "task.md.j2").write_text("Edited {{ task.id }}\n")
    done = orchestrate(repo, "run", "plan.md", "--dry-run", "--show-prompts")
    assert done.returncode == 0, done.stderr
    assert "Committed T001" in done.stdout
    assert "Edited" not in done.stdout
    assert "prompts/task.md.j2" in done.stderr
    assert "uncommitted" in done.stderr


@pytest.mark.parametrize("holds_settings", [True, False], ids=["settings-in-pyproject", "no-settings"])
def test_pyproject_is_protected_while_it_holds_the_settings(tmp_path: Path, holds_settings: bool) -> None:
    """pyproject.toml's [tool.orchestrate] is what the next run reads when there is no
    orchestrate.toml: the agent may not change the file then. Otherwise tasks edit it for their own
    reasons (dependencies, tool settings) and may."""
    table = "\n[tool.orchestrate]\nmax_attempts = 2\n" if holds_settings else ""
    pyproject = f'[project]\nname = "x"\n{table}'
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "plan.md": PLAN, "pyproject.toml": pyproject})
    widened = pyproject + ('sandbox = "none"\n' if holds_settings else "\n[tool.other]\nx = 1\n")
    steps = {
        "T001": {
            "attempts": [
                [{"write": "a.txt", "content": "a\n"}, {"write": "pyproject.toml", "content": widened}],
                [{"write": "a.txt", "content": "a\n"}],
            ]
        },
        "T002": [{"write": "b.txt", "content": "b\n"}],
    }
    done = orchestrate(repo, "run", "plan.md", "--script", str(script(tmp_path, steps)))
    assert done.returncode == 0, done.stderr
    kept = (repo / "pyproject.toml").read_text()
    assert kept == (pyproject if holds_settings else widened)
    assert ("pyproject.toml; undone" in done.stderr) is holds_settings


def test_the_users_own_uncommitted_edits_to_protected_files_are_kept(tmp_path: Path) -> None:
    """With --allow-dirty, the user's uncommitted edits of orchestrate.toml and of a template are
    theirs: the guard undoes only what the agent changed, and the user loses nothing."""
    repo = make_repo(
        tmp_path / "repo",
        {
            "README.md": "# r\n",
            "plan.md": PLAN,
            "orchestrate.toml": "max_attempts = 2\n",
            "prompts/task.md.j2": "T\n",
        },
    )
    (repo / "orchestrate.toml").write_text("max_attempts = 3  # mine, not committed yet\n")
    (repo / "prompts" / "task.md.j2").write_text("Mine {{ task.id }}\n")
    steps = {"T001": [{"write": "a.txt", "content": "a\n"}], "T002": [{"write": "b.txt", "content": "b\n"}]}
    done = orchestrate(repo, "run", "plan.md", "--script", str(script(tmp_path, steps)), "--allow-dirty")
    assert done.returncode == 0, done.stderr
    assert "undone" not in done.stderr
    assert (repo / "orchestrate.toml").read_text() == "max_attempts = 3  # mine, not committed yet\n"
    assert (repo / "prompts" / "task.md.j2").read_text() == "Mine {{ task.id }}\n"
    assert "uncommitted changes that a run does not use" in done.stderr
