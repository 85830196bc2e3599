"""Human gates (issue 13 item 3), through the installed CLI with the scripted agent: a unit the plan
marks as manual never goes to an agent; it stops as needs-human, tasks that do not depend on it go
on, its dependents wait (neither failed nor skipped), the run ends with exit 4 saying what waits and
what to type. `accept` commits it, `reject` re-opens it (kills: tests/crash/test_gate_crash.py)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from tests.conftest import ORCHESTRATE, git, make_repo, orchestrate

PLAN = """\
# Gates

## Phase 1: Work

- [ ] T001 Write the greeting in greet.txt
- [ ] T002 Manually verify the greeting reads well (depends on T001)
- [ ] T003 Write the farewell in bye.txt (depends on T001)
- [ ] T004 Publish the greeting (depends on T002)
"""

SCRIPT = {
    "T001": [{"write": "greet.txt", "content": "hello\n"}],
    "T002": [{"fail": "an agent was given a person's step"}],
    "T003": [{"write": "bye.txt", "content": "bye\n"}],
    "T004": [{"write": "published.txt", "content": "hello\n"}],
}

NEEDS_HUMAN_EXIT = 4
ATTESTER = "Test Author <author@example.invalid>"  # the git identity tests/conftest.py sets


def project(tmp_path: Path, plan: str = PLAN, script: dict[str, object] | None = None) -> tuple[Path, Path]:
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "plan.md": plan})
    script_path = tmp_path / "script.json"
    script_path.write_text(json.dumps(script if script is not None else SCRIPT))
    return repo, script_path


def run(repo: Path, script: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = orchestrate(
        repo, "run", "plan.md", "--agent", "scripted", "--script", str(script), *extra, env=env
    )
    return done.returncode, done.stdout + done.stderr


def task_commits(repo: Path) -> list[str]:
    raw = git(repo, "log", "--reverse", "--format=%(trailers:key=Orchestrate-Task,valueonly)%x1e")
    return [r.strip() for r in raw.split("\x1e") if r.strip()]


def journal(repo: Path) -> list[dict[str, object]]:
    files = sorted((repo / "checkpoints").glob("*/journal.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]


def run_id(repo: Path) -> str:
    return next(str(r["run_id"]) for r in journal(repo) if r["type"] == "run_started")


def test_a_manual_unit_waits_for_a_human_and_the_rest_goes_on(tmp_path: Path) -> None:
    repo, script = project(tmp_path)
    code, out = run(repo, script)
    assert code == NEEDS_HUMAN_EXIT, out
    # The independent task ran; the manual one and its dependent did not.
    assert task_commits(repo) == ["T001", "T003"]
    assert "- [ ] T002" in (repo / "plan.md").read_text()
    records = journal(repo)
    assert not [r for r in records if r["type"] == "task_running" and r["task"] in ("T002", "T004")]
    held = [r for r in records if r["type"] == "task_needs_human"]
    assert [r["task"] for r in held] == ["T002"]
    assert '"Manually verify"' in str(held[0]["reason"])
    assert not [r for r in records if r["type"] in ("task_failed", "task_skipped")]
    ended = records[-1]
    assert ended["type"] == "run_finished"
    assert ended["status"] == "waiting"
    # The summary says what waits, on what, and the command to type.
    assert "1 task(s) wait for a human: T002 (1 more task(s) wait on them)" in out
    assert "needs a human T002" in out
    assert "continue with: orchestrate accept plan.md T002" in out
    assert git(repo, "status", "--porcelain") == ""


def commit_trailers(repo: Path, rev: str = "HEAD") -> dict[str, str]:
    raw = git(repo, "log", "-1", "--format=%(trailers:only,unfold)", rev)
    return dict(line.split(": ", 1) for line in raw.splitlines() if ": " in line)


def changed_bytes(before: bytes, after: bytes) -> list[int]:
    assert len(before) == len(after)
    return [i for i in range(len(before)) if before[i] != after[i]]


def test_accept_commits_it_with_the_attester_then_resume_runs_its_dependents(tmp_path: Path) -> None:
    repo, script = project(tmp_path)
    assert run(repo, script)[0] == NEEDS_HUMAN_EXIT
    # status and next say what waits for a human (and do not offer it as ready work).
    status = orchestrate(repo, "status", "plan.md")
    assert "Waiting for a human:" in status.stdout
    assert 'T002  the plan marks it as a person\'s step ("Manually verify")' in status.stdout
    assert "orchestrate accept plan.md TASK" in status.stdout
    listed = json.loads(orchestrate(repo, "next", "plan.md", "--json").stdout)
    assert listed["tasks"] == []
    assert [w["id"] for w in listed["waiting_for_human"]] == ["T002"]
    plain = orchestrate(repo, "next", "plan.md")
    assert "T002 waits for a human" in plain.stderr
    before = (repo / "plan.md").read_bytes()
    accepted = orchestrate(repo, "accept", "plan.md", "T002", "--note", "read it aloud: fine")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert f"continue with `orchestrate resume {run_id(repo)}`" in accepted.stdout
    assert task_commits(repo) == ["T001", "T003", "T002"]
    assert commit_trailers(repo) == {
        "Orchestrate-Task": "T002",
        "Orchestrate-Run": run_id(repo),
        "Orchestrate-Evidence": "checks=0 human=accepted",
        "Orchestrate-Attested-By": ATTESTER,
    }
    assert (
        git(repo, "log", "-1", "--format=%s")
        == "Phase 1: Manually verify the greeting reads well (depends on T001)"
    )
    # The tick is one byte, the box of T002; nothing else changed (the unit had no work to keep).
    after = (repo / "plan.md").read_bytes()
    assert [chr(after[i]) for i in changed_bytes(before, after)] == ["x"]
    assert before.index(b"[ ] T002") + 1 == changed_bytes(before, after)[0]
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["plan.md"]
    assert git(repo, "status", "--porcelain") == ""
    accepted_record = next(r for r in journal(repo) if r["type"] == "task_accepted")
    assert accepted_record["note"] == "read it aloud: fine"
    assert accepted_record["by"] == "Test Author <author@example.invalid>"
    shown = orchestrate(repo, "show").stdout
    assert "accepted by Test Author <author@example.invalid>: read it aloud: fine" in shown
    assert "Waiting for a human" not in orchestrate(repo, "status", "plan.md").stdout
    # The dependent runs on resume; the run completes.
    resumed = orchestrate(repo, "resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert task_commits(repo) == ["T001", "T003", "T002", "T004"]
    assert (repo / "published.txt").read_text() == "hello\n"


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    repo, script = project(tmp_path)
    assert run(repo, script)[0] == NEEDS_HUMAN_EXIT
    cases = {
        ("accept", "plan.md", "T999"): "no task 'T999' in plan.md",
        ("accept", "plan.md", "T001"): "task T001 of plan.md does not wait for a human (it is done",
        ("reject", "plan.md", "T004", "--note", "x"): "task T004 of plan.md does not wait for a human",
        ("reject", "plan.md", "T002", "--note", " "): "--note: say why",
        ("accept", "nowhere.md", "T002"): "nowhere.md",
    }
    for args, said in cases.items():
        done = orchestrate(repo, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
        assert said in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    missing_note = orchestrate(repo, "reject", "plan.md", "T002")
    assert missing_note.returncode == 2
    assert "--note" in missing_note.stderr
    # A dirty tree: the accepted task's commit would take the change in.
    (repo / "notes.txt").write_text("mine\n")
    dirty = orchestrate(repo, "accept", "plan.md", "T002")
    assert dirty.returncode == 2
    assert "uncommitted changes" in dirty.stderr
    assert task_commits(repo) == ["T001", "T003"]


def test_reject_opens_it_again_and_the_next_run_stops_it_again(tmp_path: Path) -> None:
    repo, script = project(tmp_path)
    assert run(repo, script)[0] == NEEDS_HUMAN_EXIT
    rejected = orchestrate(repo, "reject", "plan.md", "T002", "--note", "too terse")
    assert rejected.returncode == 0, rejected.stdout + rejected.stderr
    record = next(r for r in journal(repo) if r["type"] == "task_rejected")
    assert record["note"] == "too terse"
    # A manual unit never goes to an agent: resumed, it waits for a human again.
    resumed = orchestrate(repo, "resume")
    assert resumed.returncode == NEEDS_HUMAN_EXIT, resumed.stdout + resumed.stderr
    assert [r["type"] for r in journal(repo) if r.get("task") == "T002"][-2:] == [
        "task_rejected",
        "task_needs_human",
    ]


def test_accept_and_reject_respect_the_run_lock(tmp_path: Path) -> None:
    repo, script = project(tmp_path, script={**SCRIPT, "T003": [{"sleep": 6}, *SCRIPT["T003"]]})
    running = subprocess.Popen(
        [str(ORCHESTRATE), "run", "plan.md", "--agent", "scripted", "--script", str(script)],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            r["type"] == "task_needs_human"
            for r in (journal(repo) if (repo / "checkpoints").is_dir() else [])
        ):
            time.sleep(0.2)
        refused = orchestrate(repo, "accept", "plan.md", "T002")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    finally:
        out, err = running.communicate(timeout=60)
    assert running.returncode == NEEDS_HUMAN_EXIT, out + err
    assert orchestrate(repo, "accept", "plan.md", "T002").returncode == 0


def test_lint_require_verify_leaves_a_persons_step_to_the_person(tmp_path: Path) -> None:
    plan = "# P\n\n- [ ] T001 Write a.txt\n  - Run: `test -f a.txt`\n"
    plan += "- [ ] T002 Execute the quickstart manually\n"
    repo = make_repo(tmp_path / "repo", {"plan.md": plan})
    linted = orchestrate(repo, "lint", "plan.md", "--require-verify")
    assert linted.returncode == 0, linted.stdout + linted.stderr
    unchecked = make_repo(
        tmp_path / "other", {"plan.md": plan.replace("Execute the quickstart manually", "Go")}
    )
    assert orchestrate(unchecked, "lint", "plan.md", "--require-verify").returncode == 1
