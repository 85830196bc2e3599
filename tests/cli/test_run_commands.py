"""run / resume / runs / show / demo through the CLI, as a user types them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli.app import app
from tests.conftest import git, make_repo, orchestrate

PLAN = """\
# Small plan

## Phase 1: One

- [ ] T001 Write `a.txt`
  - Verify: `test -f a.txt`
- [ ] T002 Write `b.txt`
  - Verify: `grep -q bee b.txt`

## Phase 2: Two

- [ ] T003 Write `c.txt`
  - Verify: `test -f c.txt`
"""

SCRIPT = {
    "T001": [{"write": "a.txt", "content": "a\n"}],
    "T002": {"attempts": [[{"write": "b.txt", "content": "b\n"}], [{"write": "b.txt", "content": "bee\n"}]]},
    "T003": [{"write": "c.txt", "content": "c\n"}],
}

runner = CliRunner()


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path, Path]:
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "plan.md": PLAN})
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    return repo, repo / "plan.md", script


def _snapshot(repo: Path) -> tuple[str, str, list[str]]:
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "status", "--porcelain", "--ignored"),
        sorted(p.name for p in repo.iterdir()),
    )


def test_run_then_runs_and_show(project: tuple[Path, Path, Path]) -> None:
    repo, plan, script = project
    result = runner.invoke(app, ["run", str(plan), "--agent", "scripted", "--script", str(script)])
    assert result.exit_code == 0, result.output
    assert "3 tasks (0 already done), budget none" in result.output  # every run states its budget
    assert "T002 retrying (attempt 2)" in result.output
    assert "complete" in result.output
    assert git(repo, "log", "--format=%s", "-1") == "Phase 2: Write `c.txt`"

    listed = runner.invoke(app, ["runs", "--repo", str(repo)])
    assert listed.exit_code == 0
    assert "complete" in listed.output
    assert "3/3" in listed.output
    assert "plan.md" in listed.output
    header, row = listed.output.splitlines()[:2]
    assert header.split()[:4] == ["RUN", "STARTED", "TOOK", "STATUS"]
    assert re.search(r" \d{4}-\d\d-\d\d \d\d:\d\d +\d+s +complete ", row), row

    shown = runner.invoke(app, ["show", "--repo", str(repo)])
    assert shown.exit_code == 0
    assert "T002: done commit" in shown.output
    assert "attempt 2: agent done" in shown.output
    assert "verify `grep -q bee b.txt` -> exit 1" in shown.output
    assert "verify `grep -q bee b.txt` -> exit 0" in shown.output

    as_json = json.loads(runner.invoke(app, ["runs", "--repo", str(repo), "--json"]).output)
    assert as_json[0]["status"] == "complete"
    assert 0 < as_json[0]["duration_s"] < 600
    assert as_json[0]["done"] == 3


def test_run_json_prints_jsonl_events_on_stdout(project: tuple[Path, Path, Path]) -> None:
    _, plan, script = project
    result = runner.invoke(app, ["run", str(plan), "--script", str(script), "--json"])
    assert result.exit_code == 0
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert events[0]["event"] == "run_started"
    assert events[-1]["event"] == "run_finished"
    assert events[-1]["status"] == "complete"


def test_dry_run_changes_nothing_and_prints_waves(project: tuple[Path, Path, Path]) -> None:
    repo, plan, script = project
    before = _snapshot(repo)
    result = runner.invoke(app, ["run", str(plan), "--dry-run", "--show-prompts", "--script", str(script)])
    assert result.exit_code == 0, result.output
    assert "Wave 1:" in result.output
    assert "Wave 3:" in result.output
    assert "verify: grep -q bee b.txt" in result.output
    assert "Your task: T001 Write `a.txt`" in result.output
    assert _snapshot(repo) == before
    assert not (repo / "checkpoints").exists()

    as_json = runner.invoke(app, ["run", str(plan), "--dry-run", "--json"])
    report = json.loads(as_json.stdout)
    assert [[t["id"] for t in wave] for wave in report["waves"]] == [["T001"], ["T002"], ["T003"]]
    assert report["waves"][0][0]["verify"] == ["test -f a.txt"]
    assert _snapshot(repo) == before


def test_dry_run_exits_1_on_lint_errors(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {"plan.md": "# P\n\n- [ ] T001 one (depends on T002)\n- [ ] T002 two (depends on T001)\n"},
    )
    result = runner.invoke(app, ["run", str(repo / "plan.md"), "--dry-run"])
    assert result.exit_code == 1
    assert "error" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agent", "nope"], "unknown agent 'nope'"),
        (["--script", "{bad}"], "not valid JSON"),
        (["--script", "{unknown}"], "not in the plan: T999"),
        # Without --dry-run it would be a real (paid) run that merely printed more.
        (["--show-prompts"], "--show-prompts shows what a dry run would send: add --dry-run"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    project: tuple[Path, Path, Path], tmp_path: Path, args: list[str], message: str
) -> None:
    repo, plan, _ = project
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"T999": []}))
    args = [{"{bad}": str(bad), "{unknown}": str(unknown)}.get(a, a) for a in args]
    before = _snapshot(repo)
    done = _cli(["run", str(plan), *args], cwd=repo)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert _snapshot(repo) == before


def test_missing_verification_program_is_refused_before_anything_changes(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo", {"plan.md": "# P\n\n- [ ] T001 one\n  - Verify: `no-such-checker --all`\n"}
    )
    before = _snapshot(repo)
    done = _cli(["run", str(repo / "plan.md")], cwd=repo, extra=["--script", str(_empty_script(tmp_path))])
    assert done.returncode == 2
    assert "no-such-checker" in done.stderr
    assert "not on PATH" in done.stderr
    assert _snapshot(repo) == before


def test_a_broken_prompt_template_is_refused_before_the_run_begins(tmp_path: Path) -> None:
    template = "Task {{ task.id }}\n\n{% if attempt > 1 %}\nretry\n"  # the if is never closed
    repo = make_repo(tmp_path / "repo", {"plan.md": PLAN, "prompts/task.md.j2": template})
    before = _snapshot(repo)
    done = _cli(["run", str(repo / "plan.md")], cwd=repo, extra=["--script", str(_empty_script(tmp_path))])
    assert done.returncode == 2
    assert "prompts/task.md.j2:4:" in done.stderr  # where jinja found the template ended unclosed
    assert "endif" in done.stderr
    assert "Traceback" not in done.stderr
    assert _snapshot(repo) == before  # no run directory, no commit


def test_plan_outside_any_repository_is_refused(tmp_path: Path) -> None:
    plan = tmp_path / "loose" / "plan.md"
    plan.parent.mkdir()
    plan.write_text(PLAN)
    done = _cli(["run", str(plan), "--script", str(_empty_script(tmp_path))], cwd=tmp_path)
    assert done.returncode == 2
    assert "not inside a git repository" in done.stderr
    assert sorted(p.name for p in plan.parent.iterdir()) == ["plan.md"]


def test_protected_branch_refusal_says_what_to_do(project: tuple[Path, Path, Path]) -> None:
    repo, plan, script = project
    git(repo, "switch", "-q", "-c", "master")
    done = _cli(["run", str(plan), "--script", str(script)], cwd=repo)
    assert done.returncode == 2
    assert "protected branch 'master'" in done.stderr
    assert "--branch NAME" in done.stderr


def test_resume_after_a_crash_finishes_the_run(project: tuple[Path, Path, Path]) -> None:
    repo, plan, script = project
    crashed = _cli(
        ["run", str(plan), "--script", str(script)], cwd=repo, env={"ORCHESTRATE_CRASH_AT": "after_tick:T002"}
    )
    assert crashed.returncode == 137
    resumed = _cli(["resume"], cwd=repo)
    assert resumed.returncode == 0, resumed.stderr
    subjects = git(repo, "log", "--format=%s").splitlines()
    assert subjects[:3] == ["Phase 2: Write `c.txt`", "Phase 1: Write `b.txt`", "Phase 1: Write `a.txt`"]
    again = _cli(["resume"], cwd=repo)
    assert again.returncode == 2
    assert "is complete; nothing to resume" in again.stderr


@pytest.mark.parametrize("parallel", [[], ["--parallel", "3"]], ids=["serial", "parallel"])
def test_demo_runs_the_shipped_plan_to_completion(tmp_path: Path, parallel: list[str]) -> None:
    target = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--agent", "scripted", "--dir", str(target), *parallel])
    assert result.exit_code == 0, result.output
    assert "demo: the scripted agent runs offline; nothing is spent" in result.output
    landed = git(target, "log", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split()
    assert sorted(landed) == ["T001", "T002", "T003", "T004", "T005", "T006"]  # each once
    assert f"scratch repository: {target}" in result.output
    log = git(target, "log", "--format=%s%n%(trailers:key=Orchestrate-Task,valueonly)")
    assert "Phase 3: Document the command line in `docs/usage.md`" in log
    assert git(target, "branch", "--show-current") == "orchestrate-demo"
    assert git(target, "status", "--porcelain") == ""
    assert "- [ ]" not in (target / "plans" / "demo.md").read_text()
    shown = runner.invoke(app, ["show", "--repo", str(target)])
    assert "T003: done" in shown.output
    assert "2 attempt(s)" in shown.output


def _empty_script(tmp_path: Path) -> Path:
    path = tmp_path / "empty.json"
    path.write_text("{}")
    return path


def _cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, extra: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real console entry point, in a subprocess: exit codes and stderr as a user sees them."""
    import os

    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", "from orchestrator.cli.app import main; main()", *args, *(extra or [])],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from orchestrator.cli.app import main; main()", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, timeout: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_resumably(tmp_path: Path, presses: int) -> None:
    import signal
    import time

    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "plan.md": PLAN})
    slow = dict(SCRIPT)
    slow["T001"] = [{"write": "started", "content": ""}, {"sleep": 1.5}, {"write": "a.txt", "content": "a\n"}]
    script = tmp_path / "slow.json"
    script.write_text(json.dumps(slow))
    proc = _start(["run", str(repo / "plan.md"), "--script", str(script)], cwd=repo)
    _wait_for(repo / "started")
    for _ in range(presses):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.1)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err  # stopped, resumable
    if presses == 1:
        # The agent's step finished; the run stopped before verifying it.
        assert "stopping after the current step" in err
        assert (repo / "a.txt").exists()
        assert "stopped on request" in err
    else:
        assert "aborted by a second stop signal (Ctrl-C, SIGTERM or SIGHUP)" in err
        assert not (repo / "a.txt").exists()
    assert "orchestrate resume" in err
    assert git(repo, "rev-list", "--count", "HEAD") == "1"

    resumed = _cli(["resume"], cwd=repo)
    assert resumed.returncode == 0, resumed.stderr
    tasks = git(repo, "log", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split()
    assert tasks == ["T003", "T002", "T001"]
    assert git(repo, "status", "--porcelain") == ""


PARALLEL_PLAN = """\
# Side by side

- [ ] T001 [P] Write `a.txt`
  - Verify: `test -f a.txt`
- [ ] T002 [P] Write `b.txt`
  - Verify: `test -f b.txt`
- [ ] T003 [P] Write `c.txt`
  - Verify: `test -f c.txt`
"""


@pytest.mark.slow  # side by side is shown by 0.3 s sleeps: a loaded machine could serialise them
def test_run_parallel_json_shows_tasks_side_by_side_in_their_worktrees(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"plan.md": PARALLEL_PLAN})
    script = tmp_path / "script.json"
    steps = {
        t: [{"write": f"{n}.txt", "content": n}, {"sleep": 0.3}]
        for t, n in zip(("T001", "T002", "T003"), "abc", strict=True)
    }
    script.write_text(json.dumps(steps))
    result = runner.invoke(
        app, ["run", str(repo / "plan.md"), "--script", str(script), "--parallel", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert "not available" not in result.output
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert events[0]["event"] == "run_started"
    assert events[0]["parallel"] == 3
    started = [e for e in events if e["event"] == "task_started"]
    assert len({e["workspace"] for e in started}) == 3
    assert all("/checkpoints/.worktrees/" in e["workspace"] for e in started)
    # All three were running before the first one finished.
    first_done = min(e["at"] for e in events if e["event"] == "task_finished")
    assert all(e["at"] < first_done for e in started)
    landed = git(repo, "log", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split()
    assert sorted(landed) == ["T001", "T002", "T003"]

    shown = runner.invoke(app, ["show", "--repo", str(repo)])
    assert "merged from" in shown.output


def test_a_resumed_task_is_told_its_attempts_left_and_that_its_check_printed_nothing(tmp_path: Path) -> None:
    # After a resume the retry prompt said "Attempt 3 of 2", then an empty "Output (tail):".
    repo = make_repo(
        tmp_path / "repo", {"plan.md": "# P\n\n- [ ] T001 Write `x.txt`\n  - Verify: `test -f x.txt`\n"}
    )
    script = tmp_path / "never.json"
    script.write_text(json.dumps({"T001": [{"write": "y.txt", "content": "y\n"}]}))
    failed = _cli(["run", "plan.md", "--script", str(script), "--max-attempts", "2"], cwd=repo)
    assert failed.returncode == 1, failed.stderr
    assert "`test -f x.txt` exited 1; it printed nothing" in failed.stderr
    again = _cli(["resume", "--script", str(script)], cwd=repo)
    assert again.returncode == 1, again.stderr
    prompts = {p.name: p.read_text() for p in (repo / "checkpoints").glob("*/prompts/T001.attempt-*.md")}
    assert sorted(prompts) == [f"T001.attempt-{n}.md" for n in (1, 2, 3, 4)]
    assert "## Attempt 2 of 2:" in prompts["T001.attempt-2.md"]
    assert "## Attempt 3 of 4:" in prompts["T001.attempt-3.md"]  # the resume's two attempts: 3 and 4
    assert "## Attempt 4 of 4:" in prompts["T001.attempt-4.md"]
    assert "Output (tail):\n\n" not in prompts["T001.attempt-4.md"]


OUT_OF_ORDER = """\
# P

## Phase 1: A

- [ ] T001 one
  - Verify: `true`

## Phase 2: B

- [x] T002 two

## Phase 3: C

- [ ] T003 three
  - Verify: `true`
"""


def test_dry_run_waves_are_the_schedulers_a_box_ticked_out_of_order_opens_nothing(tmp_path: Path) -> None:
    # T002 ticked before T001 ran: T003 still waits for T001 (as `next` and a real run say); the
    # dry run put it in the first wave.
    repo = make_repo(tmp_path / "repo", {"plan.md": OUT_OF_ORDER})
    ready = runner.invoke(app, ["next", str(repo / "plan.md")])
    assert [line.split("\t")[0] for line in ready.output.splitlines()] == ["T001"]
    dry = runner.invoke(app, ["run", str(repo / "plan.md"), "--dry-run", "--agent", "scripted", "--json"])
    assert dry.exit_code == 0, dry.output
    waves = [[t["id"] for t in wave] for wave in json.loads(dry.output)["waves"]]
    assert waves == [["T001"], ["T003"]]


def test_dry_run_first_wave_is_what_next_says_on_a_real_plan(shared_plans: Path, tmp_path: Path) -> None:
    name = "MemberJunction__MJ__plans__audio-sage-realtime-implementation-plan.md"
    repo = make_repo(tmp_path / "repo", {"plan.md": (shared_plans / name).read_text()})
    ready = runner.invoke(app, ["next", str(repo / "plan.md")])
    dry = runner.invoke(app, ["run", str(repo / "plan.md"), "--dry-run", "--agent", "scripted", "--json"])
    first = {t["id"] for t in json.loads(dry.output)["waves"][0]}
    assert first == {line.split("\t")[0] for line in ready.output.splitlines()}


def test_dry_run_and_lint_agree_on_what_is_an_error(tmp_path: Path) -> None:
    # A parent ticked while a child is open: a warning by severity, which lint fails on.
    plan = "# P\n\n- [x] 1. Parent\n  - [ ] 1.1 Child\n  - [x] 1.2 Other child\n- [ ] 2. Next\n"
    repo = make_repo(tmp_path / "repo", {"plan.md": plan})
    lint = orchestrate(repo, "lint", "plan.md")
    assert lint.returncode == 1
    assert "plan.md:3: error:" in lint.stdout
    dry = orchestrate(repo, "run", "plan.md", "--dry-run")
    assert dry.returncode == 1, dry.stdout
    assert "error:3:" in dry.stdout
    as_json = json.loads(orchestrate(repo, "run", "plan.md", "--dry-run", "--json").stdout)
    assert [d["severity"] for d in as_json["diagnostics"] if d["line"] == 3] == ["error"]
