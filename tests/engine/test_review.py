"""The reviewer stage through the CLI, offline: the scripted agent scripts the reviewer's verdicts
(`submit_verdict` inputs), and orchestrate checks their evidence itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SANDBOXES, git, make_repo, orchestrate

PLAN = """\
# Plan: greeter

## Phase 1: Greeting

### Task 1: Greeter

Create `greet.py` with a `greet(name)` function.

**Verification:**
- [ ] `greet.py` defines `greet(name)` returning a greeting with the name
- [ ] The greeting is polite
"""

NAMED = "`greet.py` defines `greet(name)` returning a greeting with the name"
POLITE = "The greeting is polite"
CURT = "def greet(name):\n    return f'Hi {name}'\n"
KIND = "def greet(name):\n    return f'Hello, {name}! Welcome.'\n"
RUN_IT = "python3 -c 'import greet; print(greet.greet(1))'"


def quote(path: str, start: int, end: int, text: str) -> dict[str, Any]:
    return {"path": path, "start_line": start, "end_line": end, "quote": text}


def command(text: str, exit_code: int) -> dict[str, Any]:
    return {"command": text, "exit_code": exit_code, "output_tail": ""}


def verdict(*criteria: tuple[str, str, str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "criteria": [{"criterion": c, "verdict": v, "reason": r, "evidence": e} for c, v, r, e in criteria]
    }


ALL_MET = verdict(
    (
        NAMED,
        "met",
        "greet returns a greeting",
        [quote("greet.py", 1, 2, "return f'Hello, {name}! Welcome.'")],
    ),
    (POLITE, "met", "it says hello and welcome", [command(RUN_IT, 0)]),
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "repo", {"README.md": "# greeter\n", ".gitignore": "__pycache__/\n", "plan.md": PLAN}
    )


def run(repo: Path, script: dict[str, Any], *args: str) -> Any:
    path = repo.parent / "script.json"
    path.write_text(json.dumps(script))
    return orchestrate(repo, "run", "plan.md", "--script", str(path), *args)


def journal(repo: Path) -> list[dict[str, Any]]:
    [path] = (repo / "checkpoints").glob("*/journal.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def rounds(repo: Path) -> list[dict[str, Any]]:
    return [r for r in journal(repo) if r["type"] == "review_round"]


def committed(repo: Path) -> list[str]:
    return git(repo, "log", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split()


def test_all_met_with_evidence_that_holds_ticks_and_commits(repo: Path) -> None:
    done = run(
        repo, {"task-1": {"attempts": [[{"write": "greet.py", "content": KIND}]], "reviews": [ALL_MET]}}
    )
    assert done.returncode == 0, done.stderr
    assert committed(repo) == ["task-1"]
    assert "- [x] The greeting is polite" in (repo / "plan.md").read_text()
    [review] = rounds(repo)
    assert review["outcome"] == "met"
    assert review["problems"] == []
    assert review["asked"] == [NAMED, POLITE]
    assert all(e["held"] for c in review["criteria"] for e in c["evidence"])
    assert "verified by checks or a reviewer (1 reviewed)" in done.stderr
    trailer = git(repo, "log", "-1", "--format=%(trailers:key=Orchestrate-Evidence,valueonly)")
    assert trailer.strip() == "checks=0 review=met"
    shown = orchestrate(repo, "show").stdout
    assert "review round 1 (scripted): met" in shown
    assert f"held: `{RUN_IT}` -> exit 0" in shown
    assert "held: greet.py:1-2" in shown


def test_a_reviewer_quoting_a_line_that_is_not_there_is_caught(repo: Path) -> None:
    made_up = verdict(
        (NAMED, "met", "it is there", [quote("greet.py", 1, 2, "return 'Greetings, honoured guest'")]),
        (POLITE, "met", "very polite", [quote("greet.py", 7, 9, "Welcome")]),
    )
    script = {
        "task-1": {
            "attempts": [[{"write": "greet.py", "content": KIND}]],
            # Round 1 and 2 of attempt 1 make things up: the attempt fails; attempt 2's holds.
            "reviews": [made_up, made_up, ALL_MET],
        }
    }
    done = run(repo, script)
    assert done.returncode == 0, done.stderr
    first, second, third = rounds(repo)
    assert (first["attempt"], first["round"], first["outcome"]) == (1, 1, "not_held")
    assert (second["attempt"], second["round"], second["outcome"]) == (1, 2, "not_held")
    assert (third["attempt"], third["outcome"]) == (2, "met")
    assert any("do not contain the quote" in p for p in first["problems"])
    assert any("has 2 lines, none at 7" in p for p in first["problems"])
    failed = [r for r in journal(repo) if r["type"] == "attempt_failed"]
    assert len(failed) == 1
    assert failed[0]["reason"].startswith("the reviewer's verdict did not hold in 2 rounds")
    # The second round was told why its first was refused; neither saw the worker's report.
    [directory] = (repo / "checkpoints").glob("*/prompts")
    again = (directory / "task-1.attempt-1.review-2.md").read_text()
    assert "Your previous verdict was not accepted" in again
    assert "has 2 lines, none at 7" in again
    first_prompt = (directory / "task-1.attempt-1.review-1.md").read_text()
    assert "not accepted" not in first_prompt
    assert "+    return f'Hello, {name}! Welcome.'" in first_prompt  # the attempt's diff
    assert "wrote greet.py" not in first_prompt + again  # the scripted worker's report
    shown = orchestrate(repo, "show").stdout
    assert "DID NOT HOLD: greet.py:1-2" in shown
    assert "not accepted: quote greet.py:7-9" in shown
    assert committed(repo) == ["task-1"]


def test_a_made_up_quote_every_round_fails_the_task_unticked(repo: Path) -> None:
    made_up = verdict(
        (NAMED, "met", "x", [quote("greet.py", 1, 1, "class Greeter")]),
        (POLITE, "met", "x", [quote("nowhere.py", 1, 1, "x")]),
    )
    script = {"task-1": {"attempts": [[{"write": "greet.py", "content": KIND}]], "reviews": [made_up]}}
    done = run(repo, script, "--max-attempts", "2", "--max-review-rounds", "1")
    assert done.returncode == 1
    assert committed(repo) == []
    assert "- [ ] The greeting is polite" in (repo / "plan.md").read_text()
    assert len(rounds(repo)) == 2  # one round per attempt
    assert "nowhere.py is not a file of the attempt's tree" in orchestrate(repo, "show").stdout


def test_not_met_leads_to_a_retry_whose_prompt_carries_the_reasons(repo: Path) -> None:
    not_polite = verdict(
        (NAMED, "met", "returns a greeting", [quote("greet.py", 2, 2, "return f'Hi {name}'")]),
        (POLITE, "not_met", "'Hi 1' is curt: greet with Hello and a welcome", []),
    )
    script = {
        "task-1": {
            "attempts": [[{"write": "greet.py", "content": CURT}], [{"write": "greet.py", "content": KIND}]],
            "reviews": [not_polite, ALL_MET],
        }
    }
    done = run(repo, script)
    assert done.returncode == 0, done.stderr
    assert "retrying (attempt 2): the reviewer found 1 criterion not met" in done.stderr
    [prompt] = (repo / "checkpoints").glob("*/prompts/task-1.attempt-2.md")
    text = prompt.read_text()
    assert "'Hi 1' is curt: greet with Hello and a welcome" in text
    assert f"- {POLITE}:" in text
    assert [r["outcome"] for r in rounds(repo)] == ["not_met", "met"]
    assert (repo / "greet.py").read_text() == KIND
    assert committed(repo) == ["task-1"]


def test_command_evidence_with_a_wrong_exit_code_is_caught(repo: Path) -> None:
    lying = verdict(
        (NAMED, "met", "the module imports", [command("python3 -c 'import greet'", 0)]),
        (
            POLITE,
            "met",
            "a test passes",
            [command("python3 -c 'import greet; assert greet.greet(1) == 2'", 0)],
        ),
    )
    script = {"task-1": {"attempts": [[{"write": "greet.py", "content": KIND}]], "reviews": [lying, ALL_MET]}}
    done = run(repo, script)
    assert done.returncode == 0, done.stderr
    first, second = rounds(repo)
    assert first["outcome"] == "not_held"
    [problem] = first["problems"]
    assert problem.startswith("command `python3 -c 'import greet; assert greet.greet(1) == 2'`: exited 1")
    assert "not 0" in problem
    held = [e["held"] for c in first["criteria"] for e in c["evidence"]]
    assert held == [True, False]
    assert second["outcome"] == "met"


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_reviewer_commands_cannot_change_the_tree(repo: Path, sandbox: str) -> None:
    """The evidence commands run against a copy of the attempt's tree: what they write is not the
    task's work (and under bubblewrap the copy is read-only)."""
    (repo / "orchestrate.toml").write_text(f'sandbox = "{sandbox}"\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "settings")
    vandal = verdict(
        (NAMED, "met", "x", [command("echo pwned > greet.py; echo extra > extra.txt; true", 0)]),
        (POLITE, "met", "x", [command(RUN_IT, 0)]),
    )
    script = {"task-1": {"attempts": [[{"write": "greet.py", "content": KIND}]], "reviews": [vandal]}}
    done = run(repo, script)
    assert done.returncode == 0, done.stderr
    assert (repo / "greet.py").read_text() == KIND
    assert not (repo / "extra.txt").exists()
    assert git(repo, "show", "HEAD:greet.py") + "\n" == KIND


def test_a_quote_may_name_its_file_by_the_workspace_path(repo: Path) -> None:
    absolute = verdict(
        (NAMED, "met", "x", [quote(f"{repo}/greet.py", 1, 2, "return f'Hello, {name}! Welcome.'")]),
        (POLITE, "met", "x", [quote("./greet.py", 2, 2, "Welcome.")]),
    )
    script = {"task-1": {"attempts": [[{"write": "greet.py", "content": KIND}]], "reviews": [absolute]}}
    done = run(repo, script)
    assert done.returncode == 0, done.stderr
    assert [r["outcome"] for r in rounds(repo)] == ["met"]
    outside = verdict((NAMED, "met", "x", [quote("/etc/passwd", 1, 1, "root")]), (POLITE, "met", "x", []))
    again = repo.parent / "again"
    make_repo(again, {"README.md": "# greeter\n", ".gitignore": "__pycache__/\n", "plan.md": PLAN})
    script = {"task-1": {"attempts": [[{"write": "greet.py", "content": KIND}]], "reviews": [outside]}}
    done = run(again, script, "--max-attempts", "1", "--max-review-rounds", "1")
    assert done.returncode == 1
    assert "/etc/passwd is not a file of the attempt's tree" in rounds(again)[0]["problems"][0]


def test_a_met_without_evidence_is_not_accepted(repo: Path) -> None:
    bare = verdict((NAMED, "met", "trust me", []), (POLITE, "met", "trust me", []))
    script = {"task-1": {"attempts": [[{"write": "greet.py", "content": KIND}]], "reviews": [bare, ALL_MET]}}
    done = run(repo, script)
    assert done.returncode == 0, done.stderr
    first = rounds(repo)[0]
    assert first["outcome"] == "not_held"
    assert any("called met with no evidence" in p for p in first["problems"])


def test_a_criterion_left_without_a_verdict_is_not_accepted(repo: Path) -> None:
    half = verdict((NAMED, "met", "x", [quote("greet.py", 1, 2, "def greet(name):")]))
    script = {"task-1": {"attempts": [[{"write": "greet.py", "content": KIND}]], "reviews": [half, ALL_MET]}}
    done = run(repo, script)
    assert done.returncode == 0, done.stderr
    assert rounds(repo)[0]["problems"] == [f"no verdict on criterion 2: {POLITE}"]


def test_needs_human_stops_the_task_and_accept_completes_it(repo: Path) -> None:
    ask = verdict(
        (NAMED, "met", "x", [quote("greet.py", 1, 1, "def greet(name):")]),
        (POLITE, "needs_human", "politeness is a matter of taste", []),
    )
    script = {"task-1": {"attempts": [[{"write": "greet.py", "content": KIND}]], "reviews": [ask]}}
    done = run(repo, script)
    assert done.returncode == 4, done.stderr  # waiting for a person
    assert committed(repo) == []
    assert "- [ ] The greeting is polite" in (repo / "plan.md").read_text()
    assert [r["outcome"] for r in rounds(repo)] == ["needs_human"]
    [held] = [r for r in journal(repo) if r["type"] == "task_needs_human"]
    assert held["reason"].startswith("the reviewer says only a person can judge 1 criterion")
    assert "politeness is a matter of taste" in held["reason"]
    assert "politeness is a matter of taste" in orchestrate(repo, "show").stdout

    accepted = orchestrate(repo, "accept", "plan.md", "task-1", "--note", "polite enough")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert committed(repo) == ["task-1"]
    assert git(repo, "show", "HEAD:greet.py") + "\n" == KIND
    assert "- [x] The greeting is polite" in (repo / "plan.md").read_text()


def test_review_never_skips_the_reviewer(repo: Path) -> None:
    made_up = verdict((NAMED, "not_met", "x", []), (POLITE, "not_met", "x", []))
    script = {"task-1": {"attempts": [[{"write": "greet.py", "content": KIND}]], "reviews": [made_up]}}
    done = run(repo, script, "--review", "never")
    assert done.returncode == 0, done.stderr
    assert rounds(repo) == []
    assert committed(repo) == ["task-1"]


BOX_PLAN = """\
# Plan: boxes

## Phase 1: Files

- [ ] T001 Create `greet.py`
  - Verify: `test -f greet.py`
"""


def test_auto_reviews_only_units_with_criteria_no_command_checks(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"plan.md": BOX_PLAN})
    met = verdict(
        ("The work does what the unit says: Create `greet.py`", "met", "x", [quote("greet.py", 1, 1, "def")])
    )
    script = {"T001": {"attempts": [[{"write": "greet.py", "content": KIND}]], "reviews": [met]}}
    done = run(repo, script)  # auto: its one criterion is checked by a command
    assert done.returncode == 0, done.stderr
    assert rounds(repo) == []

    again = make_repo(tmp_path / "again", {"plan.md": BOX_PLAN})
    done = run(again, script, "--review", "always")
    assert done.returncode == 0, done.stderr
    [review] = rounds(again)
    assert review["asked"] == ["The work does what the unit says: Create `greet.py`"]
    assert review["outcome"] == "met"


def test_always_without_any_reviewer_is_refused_before_anything_runs(repo: Path) -> None:
    script = {"task-1": [{"write": "greet.py", "content": KIND}]}
    done = run(repo, script, "--review", "always")
    assert done.returncode == 2
    assert 'review = "always"' in done.stderr
    assert "ANTHROPIC_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (repo / "greet.py").exists()


def test_auto_without_a_reviewer_says_plainly_the_unit_was_not_reviewed(repo: Path) -> None:
    script = {"task-1": [{"write": "greet.py", "content": KIND}]}
    done = run(repo, script)
    assert done.returncode == 0, done.stderr
    assert "NOT REVIEWED: 2 criteria no command checks" in done.stderr
    [skipped] = [r for r in journal(repo) if r["type"] == "review_skipped"]
    assert "ANTHROPIC_API_KEY" in skipped["reason"]
    assert "NOT REVIEWED" in orchestrate(repo, "show").stdout
    trailer = git(repo, "log", "-1", "--format=%(trailers:key=Orchestrate-Evidence,valueonly)")
    assert trailer.strip() == "checks=0 review=none unverified"


def test_a_bad_review_setting_is_one_line_naming_it(repo: Path) -> None:
    (repo / "orchestrate.toml").write_text('review = "sometimes"\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "settings")
    done = run(repo, {"task-1": [{"write": "greet.py", "content": KIND}]})
    assert done.returncode == 2
    assert "orchestrate.toml:1" in done.stderr
    assert "review" in done.stderr
    assert "Traceback" not in done.stderr


TESTED_PLAN = """\
# Plan: greeter

## Phase 1: Greeting

### Task 1: Greeter

Create `greet.py` with a `greet(name)` function, and its test `tests/test_greet.py`.

- Verify: `python3 tests/test_greet.py`

**Verification:**
- [ ] The greeting is polite
"""


def test_the_reviewer_is_told_what_fail_first_found(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {".gitignore": "__pycache__/\n", "plan.md": TESTED_PLAN})
    test = "import sys\nsys.path.insert(0, '.')\nfrom greet import greet\nassert 'Hello' in greet('x')\n"
    polite = verdict((POLITE, "met", "hello", [quote("greet.py", 2, 2, "Hello, {name}!")]))
    script = {
        "task-1": {
            "attempts": [
                [{"write": "greet.py", "content": KIND}, {"write": "tests/test_greet.py", "content": test}]
            ],
            "reviews": [polite],
        }
    }
    done = run(repo, script)
    assert done.returncode == 0, done.stderr
    [prompt] = (repo / "checkpoints").glob("*/prompts/task-1.attempt-1.review-1.md")
    text = prompt.read_text()
    assert "What orchestrate noticed in the change" in text
    assert "Fail-first: the tests this change adds or changes (tests/test_greet.py) fail" in text
    trailer = git(repo, "log", "-1", "--format=%(trailers:key=Orchestrate-Evidence,valueonly)").strip()
    assert trailer == "checks=1 fail-first=ok review=met"
