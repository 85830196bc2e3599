"""Checks that must fail first (engine/fail_first.py), through the CLI with the scripted agent: a
test an attempt adds is run against the commit the attempt started from with only the test changes
applied, and must fail there; a diff that deletes, skips or loosens existing tests is reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.domain import transitions as t
from orchestrator.domain.state import RunState
from orchestrator.engine.fail_first import is_test_file, reviewer_text, runs_tests, weakened
from orchestrator.persistence.checkpoints import RunStore
from orchestrator.persistence.journal import read_transitions
from tests.conftest import SANDBOXES, git, make_repo, orchestrate

GREET = "def greet(name):\n    return f'Hello, {name}!'\n"
SHOUT = "\n\ndef shout(name):\n    return greet(name).upper()\n"

# A test of what was already there: it passes without the task's change.
OLD_BEHAVIOUR_TEST = (
    "import greet\n\n\ndef test_greet():\n    assert greet.greet('Ann') == 'Hello, Ann!'\n\n\ntest_greet()\n"
)
# A test of the new function: it fails without the task's change.
NEW_BEHAVIOUR_TEST = (
    "import greet\n\n\ndef test_shout():\n    assert greet.shout('ann') == 'HELLO, ANN!'\n\n\ntest_shout()\n"
)
ADD_SHOUT = {"append": "greet.py", "content": SHOUT}
OLD_TEST = {"write": "test_shout.py", "content": OLD_BEHAVIOUR_TEST}
NEW_TEST = {"write": "test_shout.py", "content": NEW_BEHAVIOUR_TEST}

PLAN = """\
# Plan

## Phase 1: Work

- [ ] T001 Add `shout(name)` to `greet.py`, with a test
  - Verify: `python3 test_shout.py`
"""


def _project(
    tmp_path: Path,
    script: dict[str, Any],
    *,
    plan: str = PLAN,
    files: dict[str, str] | None = None,
    config: str = 'sandbox = "none"\n',
) -> tuple[Path, Path]:
    repo = make_repo(
        tmp_path / "repo",
        {
            "plan.md": plan,
            "greet.py": GREET,
            ".gitignore": "__pycache__/\n",
            "orchestrate.toml": config,
            **(files or {}),
        },
    )
    script_path = tmp_path / "script.json"
    script_path.write_text(json.dumps(script))
    return repo, script_path


def _run(repo: Path, script: Path, *flags: str) -> Any:
    return orchestrate(repo, "run", "plan.md", "--script", str(script), "--branch", "feature", *flags)


def _records(repo: Path, kind: str) -> list[dict[str, Any]]:
    store = RunStore.for_repo(repo, Path("checkpoints"))
    latest = store.latest()
    assert latest is not None
    return [r for r in store.records(latest) if r["type"] == kind]


def _nothing_left_behind(repo: Path) -> None:
    """No worktree, branch, ref or scratch tree of the base run; the work tree clean."""
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert git(repo, "branch", "--format=%(refname:short)").split() == ["feature", "work"]
    refs = git(repo, "for-each-ref", "--format=%(refname)").split()
    assert all(r.startswith(("refs/heads/feature", "refs/heads/work")) for r in refs), refs
    assert not (repo / "checkpoints" / ".fail-first").exists()
    assert git(repo, "status", "--porcelain") == ""


def test_a_new_test_that_already_passes_at_base_is_flagged_and_the_run_goes_on(tmp_path: Path) -> None:
    repo, script = _project(
        tmp_path,
        {"T001": [ADD_SHOUT, OLD_TEST]},
    )

    done = _run(repo, script)

    assert done.returncode == 0, done.stderr
    assert "warning: fail-first: the new tests (test_shout.py) already pass without the change" in done.stderr
    # The summary says it again, under the run's last line.
    summary = done.stderr[done.stderr.index("run ") :]
    assert "T001 fail-first: the new tests (test_shout.py) already pass without the change" in summary
    [found] = _records(repo, "fail_first")
    assert found["result"] == "passed-at-base"
    assert found["tests"] == ["test_shout.py"]
    assert [(c["command"], c["ok"]) for c in found["checks"]] == [("python3 test_shout.py", True)]
    assert found["base"] == git(repo, "rev-parse", "feature~1")
    assert "Orchestrate-Evidence: checks=1 fail-first=passed-at-base" in git(repo, "log", "-1", "--format=%B")
    _nothing_left_behind(repo)


def test_with_require_a_test_passing_at_base_fails_the_attempt_and_the_retry_says_why(
    tmp_path: Path,
) -> None:
    repo, script = _project(
        tmp_path,
        {
            "T001": {
                "attempts": [
                    [ADD_SHOUT, OLD_TEST],
                    [NEW_TEST],
                ]
            }
        },
    )

    done = _run(repo, script, "--fail-first", "require")

    assert done.returncode == 0, done.stderr
    assert (
        "T001 retrying (attempt 2): fail-first: the tests this attempt added or changed (test_shout.py)"
        in (done.stderr)
    )
    results = [r["result"] for r in _records(repo, "fail_first")]
    assert results == ["passed-at-base", "ok"]
    [failed] = _records(repo, "attempt_failed")
    assert failed["reason"].startswith("fail-first: ")
    run_dir = RunStore.for_repo(repo, Path("checkpoints")).run_dir(
        str(RunStore.for_repo(repo, Path("checkpoints")).latest())
    )
    retry_prompt = (run_dir / "prompts" / "T001.attempt-2.md").read_text()
    assert "pass against the commit it started from" in retry_prompt
    assert "`python3 test_shout.py` passed there too" in retry_prompt
    assert git(repo, "show", "feature:test_shout.py") == NEW_BEHAVIOUR_TEST.strip()
    _nothing_left_behind(repo)


def test_with_require_every_attempt_passing_at_base_fails_the_task(tmp_path: Path) -> None:
    repo, script = _project(
        tmp_path,
        {"T001": [ADD_SHOUT, OLD_TEST]},
    )

    done = _run(repo, script, "--fail-first", "require", "--max-attempts", "2")

    assert done.returncode == 1
    assert "failed T001: fail-first: " in done.stderr
    assert [r["result"] for r in _records(repo, "fail_first")] == ["passed-at-base", "passed-at-base"]
    assert git(repo, "rev-list", "--count", "feature") == "1"  # nothing committed
    assert not (repo / "checkpoints" / ".fail-first").exists()


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_red_then_green_test_passes_fail_first(tmp_path: Path, sandbox: str) -> None:
    # The check also writes a file where it runs: at base that is the scratch tree, never the
    # task's workspace (whose commit would otherwise carry it).
    plan = PLAN.replace("`python3 test_shout.py`", "`python3 test_shout.py && echo ran >> checked.txt`")
    repo, script = _project(
        tmp_path,
        {"T001": [ADD_SHOUT, NEW_TEST]},
        plan=plan,
        config=f'sandbox = "{sandbox}"\n',
    )

    done = _run(repo, script)

    assert done.returncode == 0, done.stderr
    [found] = _records(repo, "fail_first")
    assert found["result"] == "ok", found
    [at_base] = found["checks"]
    assert at_base["ok"] is False
    assert at_base["exit_code"] == 1
    assert "has no attribute 'shout'" in at_base["output_tail"]
    assert "T001 fail-first ok" in done.stderr
    assert "already pass without the change" not in done.stderr
    assert git(repo, "show", "feature:checked.txt") == "ran"  # once: the workspace's own check
    assert "Orchestrate-Evidence: checks=1 fail-first=ok" in git(repo, "log", "-1", "--format=%B")
    shown = orchestrate(repo, "show").stdout
    check = "`python3 test_shout.py && echo ran >> checked.txt`"
    assert f"fail-first ok: {check} failed at base (exit 1) (test_shout.py)" in shown
    assert f"at base {check} -> exit 1" in shown
    _nothing_left_behind(repo)


def test_a_diff_that_deletes_a_test_is_reported(tmp_path: Path) -> None:
    old_test = "import greet\n\n\ndef test_greet():\n    assert greet.greet('A') == 'Hello, A!'\n"
    plan = PLAN.replace("with a test", "and drop the old test").replace(
        "`python3 test_shout.py`", '`python3 -c "import greet; greet.shout"`'
    )
    repo, script = _project(
        tmp_path,
        {"T001": [{"append": "greet.py", "content": SHOUT}, {"run": "rm tests/test_greet.py"}]},
        plan=plan,
        files={"tests/test_greet.py": old_test},
    )

    done = _run(repo, script)

    assert done.returncode == 0, done.stderr
    assert "warning: tests weakened: tests/test_greet.py: test file deleted (1 test)" in done.stderr
    summary = done.stderr[done.stderr.index("run ") :]
    assert "T001 tests weakened: tests/test_greet.py: test file deleted (1 test)" in summary
    [found] = _records(repo, "fail_first")
    assert found["weakened"] == ["tests/test_greet.py: test file deleted (1 test)"]
    assert found["result"] == "none"
    trailer = git(repo, "log", "-1", "--format=%(trailers:key=Orchestrate-Evidence,valueonly)")
    assert trailer == "checks=1 fail-first=none tests-weakened=1"
    journal = RunStore.for_repo(repo, Path("checkpoints"))
    state = RunState.from_records(journal.transitions(str(journal.latest())))
    text = reviewer_text(state.task("T001"))
    assert "weakens tests that were already there" in text
    assert "- tests/test_greet.py: test file deleted (1 test)" in text


def test_a_diff_that_adds_pytest_mark_skip_is_reported(tmp_path: Path) -> None:
    old_test = "import greet\n\n\ndef test_greet():\n    assert greet.greet('A') == 'Hello, A!'\n"
    skipped = old_test.replace("import greet\n", "import greet\nimport pytest\n").replace(
        "def test_greet", "@pytest.mark.skip(reason='later')\ndef test_greet"
    )
    plan = PLAN.replace("`python3 test_shout.py`", '`python3 -c "import greet; greet.shout"`')
    repo, script = _project(
        tmp_path,
        {"T001": [{"append": "greet.py", "content": SHOUT}, {"write": "test_greet.py", "content": skipped}]},
        plan=plan,
        files={"test_greet.py": old_test},
    )

    done = _run(repo, script)

    assert done.returncode == 0, done.stderr
    finding = "test_greet.py: skip added: @pytest.mark.skip"
    assert f"warning: tests weakened: {finding}" in done.stderr
    [found] = _records(repo, "fail_first")
    assert found["weakened"] == [finding]
    # No check of the task runs the test it changed: nothing to run at base.
    assert found["result"] == "none"
    assert "no check of the task runs the tests it changed" in found["note"]
    _nothing_left_behind(repo)


def test_fail_first_off_runs_nothing_at_base_but_still_reports_weakened_tests(tmp_path: Path) -> None:
    loosened = "import greet\n\n\ndef test_greet():\n    greet.greet('A')\n\n\ntest_greet()\n"
    repo, script = _project(
        tmp_path,
        {"T001": [{"append": "greet.py", "content": SHOUT}, {"write": "test_shout.py", "content": loosened}]},
        files={"test_shout.py": OLD_BEHAVIOUR_TEST},
        config='sandbox = "none"\nfail_first = "off"\n',
    )

    done = _run(repo, script)

    assert done.returncode == 0, done.stderr
    [found] = _records(repo, "fail_first")
    assert found["result"] == "off"
    assert found["checks"] == []
    assert found["weakened"] == ["test_shout.py: assertions 1 -> 0"]


def test_a_bad_fail_first_setting_is_one_line_naming_its_source(tmp_path: Path) -> None:
    repo, script = _project(tmp_path, {}, config='sandbox = "none"\nfail_first = "sometimes"\n')

    done = _run(repo, script)

    assert done.returncode == 2
    assert "orchestrate.toml:2" in done.stderr
    assert "fail_first" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_scratch_tree_a_killed_run_left_is_removed_by_the_next_run(tmp_path: Path) -> None:
    repo, script = _project(
        tmp_path,
        {"T001": [ADD_SHOUT, NEW_TEST]},
    )
    left = repo / "checkpoints" / ".fail-first" / "20260101-000000-dead" / "T001.1"
    left.mkdir(parents=True)
    (left / "test_shout.py").write_text("left by a kill\n")
    (repo / ".git" / "info" / "exclude").write_text("checkpoints/\n")

    done = _run(repo, script)

    assert done.returncode == 0, done.stderr
    assert not (repo / "checkpoints" / ".fail-first").exists()


def test_parallel_tasks_run_their_tests_at_their_own_base(tmp_path: Path) -> None:
    plan = """\
# Plan

## Phase 1: Work

- [ ] T001 [P] Add `shout(name)` to `greet.py`, with a test
  - Verify: `python3 test_shout.py`
- [ ] T002 [P] Add `whisper(name)` in `quiet.py`, with a test
  - Verify: `python3 test_quiet.py`
"""
    quiet_test = "import quiet\n\nassert quiet.whisper('A') == 'a'\n"
    repo, script = _project(
        tmp_path,
        {
            "T001": [ADD_SHOUT, NEW_TEST],
            "T002": [
                {"write": "quiet.py", "content": "def whisper(name):\n    return name.lower()\n"},
                {"write": "test_quiet.py", "content": quiet_test},
            ],
        },
        plan=plan,
    )

    done = _run(repo, script, "--parallel", "2")

    assert done.returncode == 0, done.stderr
    found = {r["task"]: r for r in _records(repo, "fail_first")}
    assert found["T001"]["result"] == "ok"
    assert found["T002"]["result"] == "ok"
    assert "No module named 'quiet'" in found["T002"]["checks"][0]["output_tail"]
    _nothing_left_behind(repo)


# -- the pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("tests/test_x.py", True),
        ("pkg/x_test.go", True),
        ("src/app.test.ts", True),
        ("src/__tests__/app.js", True),
        ("src/test/java/FooTest.java", True),
        ("spec/models/user_spec.rb", True),
        ("conftest.py", True),
        ("tests/fixtures/data.json", False),
        ("src/testing_utils.py", False),
        ("greet.py", False),
        ("README.md", False),
    ],
)
def test_test_files_are_told_by_the_ecosystems_own_naming(path: str, expected: bool) -> None:
    assert is_test_file(path) is expected


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("pytest -q", True),
        ("uv run pytest tests/", True),
        ("python -m pytest", True),
        ("go test ./...", True),
        ("npm test", True),
        ("npm run test:unit", True),
        ("cargo test", True),
        ("make test", True),
        ("python3 test_shout.py", True),
        ("python -m unittest test_shout", True),
        ("test -f greet.py", False),
        ("grep -q shout greet.py", False),
        ("ruff check .", False),
        ("npx tsc --noEmit", False),
    ],
)
def test_checks_that_run_tests_are_told_from_those_that_do_not(command: str, expected: bool) -> None:
    assert runs_tests(command, ["test_shout.py"]) is expected


def test_what_weakens_a_test_file_in_each_ecosystem() -> None:
    py_before = "def test_a():\n    assert 1\n    assert 2\n\n\ndef test_b():\n    assert 3\n"
    assert weakened("t/test_x.py", py_before, py_before) == []
    assert weakened("t/test_x.py", py_before, py_before + "\n\ndef test_c():\n    assert 4\n") == []
    assert weakened("t/test_x.py", py_before, "def test_a():\n    assert 1\n    assert 2\n") == [
        "t/test_x.py: test removed: test_b",
        "t/test_x.py: assertions 3 -> 2",
    ]
    assert weakened("t/test_x.py", py_before, py_before.replace("    assert 2\n", "")) == [
        "t/test_x.py: assertions 3 -> 2"
    ]
    commented = py_before.replace("def test_b():\n    assert 3\n", "# def test_b():\n#     assert 3\n")
    assert "t/test_x.py: test removed: test_b" in weakened("t/test_x.py", py_before, commented)

    js_before = "describe('x', () => {\n  it('adds', () => { expect(add(1, 2)).toBe(3) })\n})\n"
    assert weakened("a.test.ts", js_before, js_before.replace("it(", "it.skip(")) == [
        "a.test.ts: skip added: it.skip"
    ]
    assert weakened("a.test.ts", js_before, js_before.replace("it(", "xit(")) == [
        "a.test.ts: skip added: xit(",
    ]

    go_before = 'func TestAdd(t *testing.T) {\n\tif Add(1, 2) != 3 {\n\t\tt.Errorf("no")\n\t}\n}\n'
    go_after = go_before.replace("{\n\tif", '{\n\tt.Skip("flaky")\n\tif')
    assert weakened("calc_test.go", go_before, go_after) == ["calc_test.go: skip added: t.Skip("]

    java_before = "class CalcTest {\n  @Test\n  void adds() {\n    assertEquals(3, add(1, 2));\n  }\n}\n"
    java_after = java_before.replace("  @Test\n", "  @Disabled\n  @Test\n")
    assert weakened("CalcTest.java", java_before, java_after) == ["CalcTest.java: skip added: @Disabled"]

    assert weakened("tests/test_x.py", py_before, None) == ["tests/test_x.py: test file deleted (2 tests)"]
    assert weakened("tests/test_x.py", None, py_before) == []


def test_the_reviewer_text_says_nothing_when_there_is_nothing_to_say() -> None:
    state = RunState()
    state.apply(t.TaskRunning(task="T001", attempt=1))
    assert reviewer_text(state.task("T001")) == ""
    state.apply(t.FailFirstChecked(task="T001", attempt=1, result="none", note="no test"))
    assert reviewer_text(state.task("T001")) == ""
    state.apply(t.FailFirstChecked(task="T001", attempt=1, result="passed-at-base", tests=["test_x.py"]))
    assert "PASS against the commit it started from" in reviewer_text(state.task("T001"))


def test_an_old_journal_without_fail_first_records_still_folds(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    journal.write_text(
        json.dumps({"v": 2, "type": "task_running", "at": 1.0, "task": "T001", "attempt": 1})
        + "\n"
        + json.dumps(
            {"v": 2, "type": "task_verified", "at": 2.0, "task": "T001", "attempt": 1, "tree": "abc"}
        )
        + "\n"
    )
    state = RunState.from_records(read_transitions(journal))
    assert state.task("T001").fail_first is None


SUPERPOWERS_PLAN = """\
# Shout Implementation Plan

### Task 1: Shout

**Files:**
- Modify: `greet.py`
- Test: `test_shout.py`

- [ ] **Step 1: Write the failing test**

- [ ] **Step 2: Run it to see it fail**

Run: `python3 test_shout.py`
Expected: FAIL with AttributeError

- [ ] **Step 3: Write `shout`**

- [ ] **Step 4: Check it is there**

Run: `grep -q "def shout" greet.py`
Expected: PASS
"""


def test_the_plans_own_red_step_is_run_at_base(tmp_path: Path) -> None:
    # The final check runs no test; the plan's red step (`Expected: FAIL`) does, and it must fail at
    # base as the plan says.
    repo, script = _project(tmp_path, {"task-1": [ADD_SHOUT, NEW_TEST]}, plan=SUPERPOWERS_PLAN)

    done = _run(repo, script)

    assert done.returncode == 0, done.stderr
    [found] = _records(repo, "fail_first")
    assert found["result"] == "ok", found
    assert [c["command"] for c in found["checks"]] == ["python3 test_shout.py"]
    _nothing_left_behind(repo)


def test_a_file_the_plan_names_as_a_test_is_one_whatever_its_name(tmp_path: Path) -> None:
    plan = SUPERPOWERS_PLAN.replace("- Test: `test_shout.py`", "- Test: `checks/shout_check.py`").replace(
        "python3 test_shout.py", "python3 checks/shout_check.py"
    )
    check = NEW_BEHAVIOUR_TEST.replace("import greet", "import sys\n\nsys.path.insert(0, '.')\nimport greet")
    repo, script = _project(
        tmp_path,
        {"task-1": [ADD_SHOUT, {"write": "checks/shout_check.py", "content": check}]},
        plan=plan,
    )

    done = _run(repo, script)

    assert done.returncode == 0, done.stderr
    [found] = _records(repo, "fail_first")
    assert found["tests"] == ["checks/shout_check.py"]
    assert found["result"] == "ok", found


def test_a_resume_keeps_the_runs_stricter_fail_first(tmp_path: Path) -> None:
    repo, script = _project(tmp_path, {"T001": [ADD_SHOUT, OLD_TEST]})
    crashed = orchestrate(
        repo,
        *("run", "plan.md", "--script", str(script), "--branch", "feature"),
        *("--fail-first", "require", "--max-attempts", "2"),
        env={"ORCHESTRATE_CRASH_AT": "after_start:T001"},
    )
    assert crashed.returncode == 137, crashed.stderr

    # No flag: the configuration says warn, the run said require; the stricter holds.
    resumed = orchestrate(repo, "resume")

    assert resumed.returncode == 1, resumed.stderr
    assert "failed T001: fail-first: " in resumed.stderr
    assert [r["result"] for r in _records(repo, "fail_first")] == ["passed-at-base", "passed-at-base"]


def test_a_task_that_only_writes_tests_of_existing_code_is_not_flagged(tmp_path: Path) -> None:
    plan = PLAN.replace("Add `shout(name)` to `greet.py`, with a test", "Test `greet(name)`")
    repo, script = _project(tmp_path, {"T001": [OLD_TEST]}, plan=plan)

    done = _run(repo, script, "--fail-first", "require")

    assert done.returncode == 0, done.stderr
    [found] = _records(repo, "fail_first")
    assert found["result"] == "none"
    assert found["note"] == "the attempt changed only tests: there is no change for them to fail without"
    assert found["checks"] == []
