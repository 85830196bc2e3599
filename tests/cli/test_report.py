"""`orchestrate report`, and the report a run writes to its directory however it ends: after a
complete run, a failed one, a stop, and one that waits for a person. Real scripted runs through
the installed CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from orchestrator.engine import report as report_module
from orchestrator.engine.report import RunReport
from tests.conftest import ORCHESTRATE, git, make_repo, orchestrate

PLAN = """\
# Small plan

## Phase 1: One

- [ ] T001 Write `a.txt`
  - Verify: `test -f a.txt`
- [ ] T002 Write `b.txt`
  - Verify: `grep -q bee b.txt`

## Phase 2: Two

- [ ] T003 Update `README.md`
  - Verify: `grep -q more README.md`
"""

GOOD = {
    "T001": [{"write": "a.txt", "content": "a\n"}],
    "T002": {"attempts": [[{"write": "b.txt", "content": "b\n"}], [{"write": "b.txt", "content": "bee\n"}]]},
    "T003": [{"append": "README.md", "content": "more\n"}],
}


def _project(tmp_path: Path, script: dict[str, object], plan: str = PLAN) -> tuple[Path, Path]:
    repo = make_repo(
        tmp_path / "repo",
        {
            "README.md": "# r\n",
            "plan.md": plan,
            ".gitignore": "checkpoints/\n",
            "orchestrate.toml": 'verify = ["test -f README.md"]\n',
        },
    )
    path = tmp_path / "script.json"
    path.write_text(json.dumps(script))
    return repo, path


def _run_dir(repo: Path) -> Path:
    (directory,) = (repo / "checkpoints").iterdir()
    return directory


def _written(repo: Path) -> tuple[str, RunReport]:
    directory = _run_dir(repo)
    markdown = (directory / "report.md").read_text()
    as_json = RunReport.model_validate_json((directory / "report.json").read_text())
    return markdown, as_json


def _sections(markdown: str) -> list[str]:
    return [line[3:] for line in markdown.splitlines() if line.startswith("## ")]


SEED_ORDER = [
    "Files created",
    "Files modified",
    "Build status",
    "Test and audit results",
    "Remaining manual steps",
    "What remains",
    "Tasks",
]
"""The seed prompt's final report (files created, files modified, build status, test and audit
results, remaining manual steps), then what remains and each task."""


def test_a_complete_run_writes_its_report_and_report_prints_it(tmp_path: Path) -> None:
    repo, script = _project(tmp_path, GOOD)
    done = orchestrate(repo, "run", "plan.md", "--script", str(script))
    assert done.returncode == 0, done.stderr
    markdown, written = _written(repo)
    assert f"run report: {_run_dir(repo) / 'report.md'}" in done.stderr
    assert _sections(markdown) == SEED_ORDER
    assert written.status == "complete"
    assert [(f.path, f.tasks) for f in written.files_created] == [("a.txt", ["T001"]), ("b.txt", ["T002"])]
    assert [(f.path, f.tasks) for f in written.files_modified] == [
        ("README.md", ["T003"]),
        ("plan.md", ["T001", "T002", "T003"]),
    ]
    assert written.build.status == "passing"
    assert [(c.command, c.task) for c in written.build.checks] == [("test -f README.md", "T003")]
    assert written.tests.ran == written.tests.passed == 6
    assert written.audit is not None
    assert written.audit.clean
    assert written.audit.boxes == 3
    assert written.remaining == []
    assert written.needs_human == []
    t002 = next(task for task in written.tasks if task.id == "T002")
    assert t002.commit == git(repo, "log", "--format=%H", "--grep=b.txt", "-1")
    assert [(f.path, f.change) for f in t002.files] == [("b.txt", "created")]
    assert [a.failure is not None for a in t002.attempts] == [True, False]
    assert "`grep -q bee b.txt` exited 1" in (t002.attempts[0].failure or "")
    assert [(c.command, c.ok) for c in t002.checks] == [
        ("grep -q bee b.txt", True),
        ("test -f README.md", True),
    ]
    assert "- `a.txt` (T001)" in markdown
    assert "**passing**" in markdown
    assert "- audit: clean (3 ticked box(es)" in markdown
    assert "- attempt 1: agent done, 0 tokens, $0.00; failed: `grep -q bee b.txt` exited 1" in markdown

    printed = orchestrate(repo, "report")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.split("\n", 1)[1] == markdown.split("\n", 1)[1]
    as_json = orchestrate(repo, "report", "--format", "json")
    assert RunReport.model_validate_json(as_json.stdout).files_created == written.files_created


def test_a_failed_run_reports_the_failure_and_what_remains(tmp_path: Path) -> None:
    script = {**GOOD, "T002": [{"write": "b.txt", "content": "b\n"}]}
    repo, path = _project(tmp_path, script)
    done = orchestrate(repo, "run", "plan.md", "--script", str(path), "--max-attempts", "1")
    assert done.returncode == 1
    markdown, written = _written(repo)
    assert written.status == "failed"
    assert [(r.task, r.status) for r in written.remaining] == [("T002", "failed"), ("T003", "skipped")]
    assert written.remaining[0].line == 7
    assert [c.command for c in written.tests.failed] == ["grep -q bee b.txt"]
    assert "- T002 (line 7) Write `b.txt`: failed: " in markdown
    assert written.plan_open == 2
    assert "- the plan has 2 open task(s) in all (`orchestrate next plan.md`)" in markdown
    assert "- check `grep -q bee b.txt`: FAILED (exit 1)" in markdown
    assert f"Continue with `orchestrate resume {written.run_id}`." in markdown


def test_a_stopped_run_writes_its_report_too(tmp_path: Path) -> None:
    script = {
        **GOOD,
        "T002": [{"run": "touch started"}, {"sleep": 2}, {"write": "b.txt", "content": "bee\n"}],
    }
    repo, path = _project(tmp_path, script)
    with open(repo / ".git" / "info" / "exclude", "a") as exclude:
        exclude.write("started\n")
    process = subprocess.Popen(
        [str(ORCHESTRATE), "run", "plan.md", "--script", str(path)],
        cwd=repo,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not (repo / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 3, stderr
    markdown, written = _written(repo)
    assert written.status == "stopped"
    assert [task.id for task in written.tasks if task.status == "done"] == ["T001"]
    assert [r.task for r in written.remaining] == ["T002", "T003"]
    assert written.remaining[-1].status == "not started"
    assert "Status: **stopped**" in markdown

    resumed = orchestrate(repo, "resume", "--script", str(path))
    assert resumed.returncode == 0, resumed.stderr
    _, after = _written(repo)
    assert after.status == "complete"
    assert after.remaining == []


def test_what_waits_for_a_person_is_a_remaining_manual_step(tmp_path: Path) -> None:
    plan = PLAN + "- [ ] T004 Manually verify the greeting with the team\n"
    repo, path = _project(tmp_path, GOOD, plan)
    done = orchestrate(repo, "run", "plan.md", "--script", str(path))
    assert done.returncode == 4, done.stderr
    markdown, written = _written(repo)
    assert written.status == "waiting"
    assert [w.task for w in written.needs_human] == ["T004"]
    assert "orchestrate accept plan.md T004" in written.needs_human[0].how
    manual = markdown.split("## Remaining manual steps\n")[1].split("\n## ")[0]
    assert manual.startswith("- T004 Manually verify the greeting with the team: waits for a person: ")

    accepted = orchestrate(repo, "accept", "plan.md", "T004", "--note", "greeted the team")
    assert accepted.returncode == 0, accepted.stderr
    audited = json.loads(orchestrate(repo, "audit", "plan.md", "--json").stdout)
    assert audited["findings"] == []
    t004 = next(box for box in audited["boxes"] if box["task"] == "T004")
    assert t004["evidence"]["source"] == "attested"
    assert t004["evidence"]["attested_by"] == "Test Author <author@example.invalid>"
    resumed = orchestrate(repo, "resume")
    assert resumed.returncode == 0, resumed.stderr
    markdown, written = _written(repo)
    assert written.status == "complete"
    assert written.needs_human == []
    assert "- judged: accepted by Test Author <author@example.invalid>: greeted the team" in markdown


def test_report_without_runs_or_with_a_bad_format_is_exit_2(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    done = orchestrate(repo, "report")
    assert done.returncode == 2
    assert done.stderr.startswith("orchestrate: error: no runs found")
    assert orchestrate(repo, "report", "--format", "html").returncode == 2


def test_the_shipped_schema_is_the_reports() -> None:
    shipped = Path(report_module.__file__).with_name(report_module.REPORT_SCHEMA)
    assert json.loads(shipped.read_text()) == RunReport.model_json_schema()


def test_the_seed_prompts_run_ends_with_the_final_report_it_asks_for(
    tmp_path: Path, shared_plans: Path
) -> None:
    prompt = (shared_plans / "seed-orchestrator-prompt.md").read_text()
    plan = (
        shared_plans / "MemberJunction__MJ__plans__audio-sage-realtime-implementation-plan.md"
    ).read_text()
    asks = prompt.split("## When Implementation Completes")[1].split("## ")[0]
    for item in ("All files created", "All files modified", "Build status", "Remaining manual steps"):
        assert item in asks  # what the seed asks its final report for
    repo = make_repo(
        tmp_path / "repo",
        {
            "plans/seed-orchestrator-prompt.md": prompt,
            "plans/audio-sage-realtime-implementation-plan.md": plan,
            ".gitignore": "checkpoints/\n",
        },
    )
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps({"2a": [{"write": "packages/ws/handler.ts", "content": "export class H {}\n"}]})
    )
    done = orchestrate(
        repo, "run", "plans/seed-orchestrator-prompt.md", "--task", "2a", "--script", str(script)
    )
    assert done.returncode == 0, done.stderr
    markdown, written = _written(repo)
    assert _sections(markdown) == SEED_ORDER
    assert [(f.path, f.tasks) for f in written.files_created] == [("packages/ws/handler.ts", ["2a"])]
    assert "plans/seed-orchestrator-prompt.md" in [f.path for f in written.files_modified]
    assert written.plan_open > 10
    assert written.audit is not None
    assert written.audit.boxes >= 1  # 2a's verification boxes, ticked by its commit


def test_fail_first_is_in_the_report(tmp_path: Path) -> None:
    plan = "# Plan\n\n- [ ] T001 Add `shout(name)`, tested\n  - Verify: `python3 test_shout.py`\n"
    old_behaviour_test = "import greet\n\nassert greet.greet('Ann') == 'Hello, Ann!'\n"
    repo = make_repo(
        tmp_path / "repo",
        {
            "plan.md": plan,
            "greet.py": "def greet(name):\n    return f'Hello, {name}!'\n",
            ".gitignore": "__pycache__/\ncheckpoints/\n",
        },
    )
    script = tmp_path / "script.json"
    shout = "\n\ndef shout(name):\n    return greet(name).upper()\n"
    steps = [
        {"append": "greet.py", "content": shout},
        {"write": "test_shout.py", "content": old_behaviour_test},
    ]
    script.write_text(json.dumps({"T001": steps}))
    done = orchestrate(repo, "run", "plan.md", "--script", str(script))
    assert done.returncode == 0, done.stderr
    markdown, written = _written(repo)
    (task,) = written.tasks
    assert task.fail_first is not None
    assert task.fail_first.result == "passed-at-base"
    assert task.fail_first.tests == ["test_shout.py"]
    assert "- judged: fail-first: passed-at-base" in markdown


REVIEWED_PLAN = """\
# Plan: greeter

## Phase 1: Greeting

### Task 1: Greeter

Create `greet.py` with a `greet(name)` function.

**Verification:**
- [ ] `greet.py` defines `greet(name)`
- [ ] The greeting is polite
"""


def test_review_verdicts_and_their_evidence_are_in_the_report(tmp_path: Path) -> None:
    named, polite = "`greet.py` defines `greet(name)`", "The greeting is polite"
    kind = "def greet(name):\n    return f'Hello, {name}! Welcome.'\n"

    def criterion(text: str, word: str, reason: str, evidence: list[dict[str, object]]) -> dict[str, object]:
        return {"criterion": text, "verdict": word, "reason": reason, "evidence": evidence}

    curt_quote = {"path": "greet.py", "start_line": 2, "end_line": 2, "quote": "return f'Hi {name}'"}
    kind_quote = {
        "path": "greet.py",
        "start_line": 2,
        "end_line": 2,
        "quote": "return f'Hello, {name}! Welcome.'",
    }
    made_up = {"path": "greet.py", "start_line": 1, "end_line": 2, "quote": "def farewell(name):"}
    first = {
        "criteria": [
            criterion(named, "met", "it is defined", [curt_quote]),
            criterion(polite, "not_met", "'Hi' is curt", []),
        ]
    }
    second = {
        "criteria": [
            criterion(named, "met", "it is defined", [kind_quote]),
            criterion(polite, "met", "it welcomes", [made_up]),
        ]
    }
    third = {
        "criteria": [
            criterion(named, "met", "it is defined", [kind_quote]),
            criterion(
                polite, "met", "it welcomes", [{"command": "grep -q Welcome greet.py", "exit_code": 0}]
            ),
        ]
    }
    script = {
        "task-1": {
            "attempts": [
                [{"write": "greet.py", "content": "def greet(name):\n    return f'Hi {name}'\n"}],
                [{"write": "greet.py", "content": kind}],
            ],
            "reviews": [first, second, third],
        }
    }
    repo = make_repo(
        tmp_path / "repo", {"plan.md": REVIEWED_PLAN, ".gitignore": "__pycache__/\ncheckpoints/\n"}
    )
    path = tmp_path / "script.json"
    path.write_text(json.dumps(script))
    done = orchestrate(repo, "run", "plan.md", "--script", str(path))
    assert done.returncode == 0, done.stderr
    markdown, written = _written(repo)
    (task,) = written.tasks
    assert [(r.attempt, r.round, r.outcome) for r in task.reviews] == [
        (1, 1, "not_met"),
        (2, 1, "not_held"),
        (2, 2, "met"),
    ]
    held = [e.held for r in task.reviews for c in r.criteria for e in c.evidence]
    assert held == [True, True, False, True, True]
    assert (
        "- judged: review: met (round 2: met '`greet.py` defines `greet(name)`', "
        "met 'The greeting is polite')" in markdown
    )
    assert "- review of attempt 1, round 1, scripted: not_met" in markdown
    assert "  - not_met 'The greeting is polite': 'Hi' is curt" in markdown
    assert "    - quoted `greet.py:1-2`: 'def farewell(name):' (did NOT hold: " in markdown
    assert "    - ran `grep -q Welcome greet.py`: exit 0 (held)" in markdown
    assert written.audit is not None
    assert written.audit.clean  # the criteria boxes were ticked by the commit, judged by the reviewer
