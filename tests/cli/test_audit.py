"""`orchestrate audit` through the CLI, on repositories a real scripted run has worked in."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from orchestrator.engine import audit as audit_module
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
    "T002": [{"write": "b.txt", "content": "bee\n"}],
    "T003": [{"write": "c.txt", "content": "c\n"}],
}


def _line_of(plan: Path, task_id: str) -> int:
    return next(n for n, text in enumerate(plan.read_text().splitlines(), 1) if f"] {task_id} " in text)


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path, Path]:
    repo = make_repo(
        tmp_path / "repo", {"README.md": "# r\n", "plan.md": PLAN, ".gitignore": "checkpoints/\n"}
    )
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    return repo, repo / "plan.md", script


def _run(repo: Path, script: Path, *args: str) -> None:
    done = orchestrate(repo, "run", "plan.md", "--agent", "scripted", "--script", str(script), *args)
    assert done.returncode == 0, done.stderr


def test_a_clean_run_audits_clean(project: tuple[Path, Path, Path]) -> None:
    repo, _, script = project
    _run(repo, script)
    done = orchestrate(repo, "audit", "plan.md")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 ticked box(es) in plan.md; 3 ticked by orchestrate with evidence; clean" in done.stdout

    report = json.loads(orchestrate(repo, "audit", "plan.md", "--json").stdout)
    assert report["findings"] == []
    assert [b["task"] for b in report["boxes"]] == ["T001", "T002", "T003"]
    first = report["boxes"][0]
    assert first["ticked_by"] == "T001"
    assert first["commit"] == git(repo, "log", "--format=%H", "--grep=a.txt", "-1")
    assert first["evidence"]["source"] == "journal"
    assert first["evidence"]["checks"] == ["test -f a.txt"]


def test_audit_finds_a_box_ticked_by_hand_committed_or_not(project: tuple[Path, Path, Path]) -> None:
    repo, plan, script = project
    _run(repo, script, "--task", "T001")
    assert orchestrate(repo, "tick", "plan.md", "T002").returncode == 0
    git(repo, "commit", "-q", "-am", "tick T002 by hand")
    assert orchestrate(repo, "tick", "plan.md", "T003").returncode == 0  # not committed

    done = orchestrate(repo, "audit", "plan.md")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    t002, t003 = _line_of(plan, "T002"), _line_of(plan, "T003")
    hand = next(x for x in lines if x.startswith(f"plan.md:{t002}: error: T002: "))
    assert "ticked with no commit of orchestrate's" in hand
    assert "'tick T002 by hand'" in hand
    assert "no Orchestrate-Task trailer" in hand
    loose = next(x for x in lines if x.startswith(f"plan.md:{t003}: error: T003: "))
    assert "in no commit" in loose
    assert not any(x.startswith(f"plan.md:{_line_of(plan, 'T001')}:") for x in lines)
    assert "2 finding(s): 1 no-trailer, 1 uncommitted" in done.stdout

    annotations = orchestrate(repo, "audit", "plan.md", "--format", "github")
    assert annotations.returncode == 1
    found = [x for x in annotations.stdout.splitlines() if x.startswith("::")]
    assert len(found) == 2
    assert re.fullmatch(rf"::error file=plan\.md,line={t002}::T002: ticked with no commit .+", found[0])
    assert found[1].startswith(f"::error file=plan.md,line={t003}::T003: ")


def test_a_plan_written_with_its_boxes_ticked_is_all_findings(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"plan.md": PLAN.replace("[ ]", "[x]")})
    done = orchestrate(repo, "audit", "plan.md", "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert [(f["task"], f["kind"]) for f in report["findings"]] == [
        ("T001", "no-trailer"),
        ("T002", "no-trailer"),
        ("T003", "no-trailer"),
    ]


def test_a_task_ticked_on_the_agents_word_is_unverified(tmp_path: Path) -> None:
    plan = "# P\n\n- [ ] T001 Write `a.txt`\n- [ ] T002 Write `b.txt`\n  - Verify: `test -f b.txt`\n"
    repo = make_repo(tmp_path / "repo", {"plan.md": plan, ".gitignore": "checkpoints/\n"})
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {"T001": [{"write": "a.txt", "content": "a"}], "T002": [{"write": "b.txt", "content": "b"}]}
        )
    )
    _run(repo, script)
    done = orchestrate(repo, "audit", "plan.md")
    assert done.returncode == 1
    assert re.search(
        r"^plan\.md:3: error: T001: ticked by \w{10} \(run [\w-]+\) with no evidence", done.stdout, re.M
    )
    assert "T002" not in done.stdout.split("finding(s)")[0]


def test_rerun_catches_a_recorded_check_that_fails_at_head(project: tuple[Path, Path, Path]) -> None:
    repo, plan, script = project
    _run(repo, script)
    git(repo, "rm", "-q", "a.txt")
    git(repo, "commit", "-q", "-m", "drop a.txt")
    assert orchestrate(repo, "audit", "plan.md").returncode == 0  # the ticks are as they were

    done = orchestrate(repo, "audit", "plan.md", "--rerun")
    assert done.returncode == 1, done.stdout + done.stderr
    line = _line_of(plan, "T001")
    assert re.search(
        rf"^plan\.md:{line}: error: T001: its recorded check fails at HEAD: `test -f a.txt` exited 1$",
        done.stdout,
        re.M,
    ), done.stdout
    assert "rerun `grep -q bee b.txt` at HEAD: ok  [T002]" in done.stdout
    assert "1 finding(s): 1 fails-at-head" in done.stdout


def test_rerun_without_the_journal_runs_the_plans_checks(project: tuple[Path, Path, Path]) -> None:
    repo, _, script = project
    _run(repo, script)
    shutil.rmtree(repo / "checkpoints")  # as in CI: the journal is not in the repository
    git(repo, "rm", "-q", "c.txt")
    git(repo, "commit", "-q", "-m", "drop c.txt")
    report = json.loads(orchestrate(repo, "audit", "plan.md", "--rerun", "--json").stdout)
    results = {r["command"]: r["ok"] for r in report["rerun"]}
    assert results == {"test -f a.txt": True, "grep -q bee b.txt": True, "test -f c.txt": False}
    assert ("T003", "fails-at-head") in [(f["task"], f["kind"]) for f in report["findings"]]


def test_bad_input_is_exit_2_with_one_line(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    done = orchestrate(repo, "audit", "missing.md")
    assert done.returncode == 2
    assert done.stderr.startswith("orchestrate: error: ")
    assert len(done.stderr.strip().splitlines()) == 1
    outside = tmp_path / "loose.md"
    outside.write_text(PLAN)
    done = orchestrate(tmp_path, "audit", str(outside))
    assert done.returncode == 2
    assert "not inside a git repository" in done.stderr
    bad = orchestrate(repo, "audit", "README.md", "--format", "xml")
    assert bad.returncode == 2


def test_without_the_journal_the_commits_evidence_trailer_is_the_evidence(tmp_path: Path) -> None:
    plan = "# P\n\n- [ ] T001 Write `a.txt`\n- [ ] T002 Write `b.txt`\n  - Verify: `test -f b.txt`\n"
    repo = make_repo(tmp_path / "repo", {"plan.md": plan, ".gitignore": "checkpoints/\n"})
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {"T001": [{"write": "a.txt", "content": "a"}], "T002": [{"write": "b.txt", "content": "b"}]}
        )
    )
    _run(repo, script)
    shutil.rmtree(repo / "checkpoints")  # as in CI: the journal is not in the repository
    done = orchestrate(repo, "audit", "plan.md", "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert [(b["task"], b["evidence"]["source"], b["evidence"]["trailer"]) for b in report["boxes"]] == [
        ("T001", "trailer", "checks=0 unverified"),
        ("T002", "trailer", "checks=1"),
    ]
    assert [(f["task"], f["kind"]) for f in report["findings"]] == [("T001", "unverified")]
    assert "(Orchestrate-Evidence: checks=0 unverified)" in report["findings"][0]["message"]


def test_a_box_ticked_in_another_tasks_commit_is_reported(project: tuple[Path, Path, Path]) -> None:
    repo, plan, _ = project
    for task in ("T001", "T002"):
        assert orchestrate(repo, "tick", "plan.md", task).returncode == 0
    git(repo, "commit", "-q", "-am", "T001 and more", "-m", "Orchestrate-Task: T001\nOrchestrate-Run: r1")
    done = orchestrate(repo, "audit", "plan.md", "--json")
    assert done.returncode == 1
    found = [(f["task"], f["kind"], f["line"]) for f in json.loads(done.stdout)["findings"]]
    assert found == [
        ("T001", "no-evidence", _line_of(plan, "T001")),
        ("T002", "other-task", _line_of(plan, "T002")),
    ]


def test_the_shipped_schema_is_the_audits() -> None:
    shipped = Path(audit_module.__file__).with_name(audit_module.AUDIT_SCHEMA)
    assert json.loads(shipped.read_text()) == audit_module.AuditReport.model_json_schema()


SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed"


def test_a_box_a_unit_of_another_document_ticked_is_audited_with_that_units_evidence(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {
            "plans/orchestrator-prompt.md": (SEED / "orchestrator-prompt.md").read_text(),
            "plans/cart-plan.md": (SEED / "cart-plan.md").read_text(),
            ".gitignore": "checkpoints/\n",
        },
    )
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"2a": [{"write": "src/cart.py", "content": "class Cart:\n    pass\n"}]}))
    done = orchestrate(repo, "run", "plans/orchestrator-prompt.md", "--task", "2a", "--script", str(script))
    assert done.returncode == 0, done.stderr
    assert orchestrate(repo, "audit", "plans/orchestrator-prompt.md").returncode == 0

    audited = orchestrate(repo, "audit", "plans/cart-plan.md", "--json")
    report = json.loads(audited.stdout)
    criterion = next(b for b in report["boxes"] if b["title"].startswith("Cart keeps items"))
    assert criterion["ticked_by"] == "2a"
    assert criterion["evidence"]["source"] == "journal"
    assert criterion["evidence"]["checks"] == ["test -f src/cart.py"]
    # The one finding: a box the plan was written with ticked, by no commit of orchestrate's.
    assert [(f["kind"], f["task"]) for f in report["findings"]] == [
        ("no-trailer", report["boxes"][0]["task"])
    ]
    assert report["boxes"][0]["title"] == "Cart model designed"
