"""The seed's workflow through the installed CLI (issue 17): an orchestration prompt driving a plan.
`lint` reports what does not resolve; a dry run hands each unit its section of the plan; a run ticks
a unit's boxes in the prompt and the boxes it completes in the plan in ONE commit; an agent's edit of
the plan is undone; kills between ticking and committing resume exactly. The synthetic prompt under
tests/fixtures/seed runs everywhere; the same checks on the shared MemberJunction documents skip
without ../shared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.planfile import parse_plan
from tests.conftest import git, make_repo, orchestrate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "seed"
PROMPT = "plans/orchestrator-prompt.md"
DRIVEN = "plans/cart-plan.md"

SCRIPT = {
    "2a": [{"write": "src/cart.py", "content": "class Cart:\n    items: dict[str, int] = {}\n"}],
    "2b": [{"write": "src/prices.py", "content": "from decimal import Decimal\n"}],
    "3a": [{"write": "src/checkout.py", "content": "def checkout(cart):\n    cart.items.clear()\n"}],
}


def seed_repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "repo",
        {
            "README.md": "# shop\n",
            PROMPT: (FIXTURES / "orchestrator-prompt.md").read_text(),
            DRIVEN: (FIXTURES / "cart-plan.md").read_text(),
        },
    )


def script_file(tmp_path: Path, script: dict[str, object]) -> Path:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(script))
    return path


def run(repo: Path, script: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = orchestrate(repo, "run", PROMPT, "--agent", "scripted", "--script", str(script), *extra, env=env)
    return done.returncode, done.stdout + done.stderr


def unit_commits(repo: Path) -> list[tuple[str, str]]:
    raw = git(repo, "log", "--reverse", "--format=%H%x1f%(trailers:key=Orchestrate-Task,valueonly)%x1e")
    rows = [r.strip("\n ").split("\x1f") for r in raw.split("\x1e") if r.strip("\n ")]
    return [(sha, task.strip()) for sha, task in rows if task.strip()]


def changed_offsets(repo: Path, sha: str, path: str) -> list[int]:
    before = git(repo, "show", f"{sha}~1:{path}").encode()
    after = git(repo, "show", f"{sha}:{path}").encode()
    assert len(before) == len(after)
    return [i for i in range(len(before)) if before[i] != after[i]]


def test_lint_reports_what_does_not_resolve_and_the_criterion_without_a_box(tmp_path: Path) -> None:
    repo = seed_repo(tmp_path)
    done = orchestrate(repo, "lint", PROMPT)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    warnings = [line for line in lines if ": warning: " in line]
    assert len(warnings) == 1, lines
    assert '"Totals are right"' in warnings[0]
    assert "not a box" in warnings[0]
    assert any(": info: " in line and "/Users/someone/code/shop/CLAUDE.md" in line for line in lines)


def test_dry_run_gives_each_unit_its_section_of_the_plan(tmp_path: Path) -> None:
    repo = seed_repo(tmp_path)
    done = orchestrate(repo, "run", PROMPT, "--dry-run", "--show-prompts")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout + done.stderr
    waves = out.split("Wave ")
    assert "  2a  " in waves[1]
    assert "  2b  " in waves[1]  # "can run in parallel with 2A"
    assert "  3a  " in waves[2]
    first = waves[1].split("  2b  ")[0]
    assert 'The section "2.1 Cart Model" of plans/cart-plan.md' in first
    assert "keyed by product id" in first
    assert "Prices are `Decimal`" not in first  # 2.2 is 2B's
    assert "Checkout turns the cart" not in first
    assert "Cart keeps items between requests (testing pending) (plans/cart-plan.md" in first
    assert "- src/cart.py" in first
    # Every worker gets the global rules, those of the template's code block too.
    assert "Python compiles without errors" in first
    assert "Never store card numbers" in first
    assert f"Do not edit {DRIVEN}" in first
    assert "orchestrate plays that part. You are the" in first  # the prompt speaks to an orchestrator


def test_a_unit_ticks_its_boxes_and_the_plan_criterion_in_one_commit(tmp_path: Path) -> None:
    repo = seed_repo(tmp_path)
    before = parse_plan(repo / PROMPT)
    unit = before.task("2a")
    assert unit is not None
    code, out = run(repo, script_file(tmp_path, SCRIPT), "--task", "2a")
    assert code == 0, out
    commits = unit_commits(repo)
    assert [task for _, task in commits] == ["2a"]
    sha = commits[0][0]
    assert sorted(git(repo, "show", "--name-only", "--format=", sha).split()) == [
        DRIVEN,
        PROMPT,
        "src/cart.py",
    ]
    assert changed_offsets(repo, sha, PROMPT) == unit.box_offsets
    assert changed_offsets(repo, sha, DRIVEN) == [box.box_offset for box in unit.linked]
    assert git(repo, "status", "--porcelain") == ""
    # status and next on the plan see the box ticked.
    status = orchestrate(repo, "next", DRIVEN, "--json")
    ids = [task["id"] for task in json.loads(status.stdout)["tasks"]]
    assert not any("cart-keeps-items" in task_id for task_id in ids)
    assert "cart-keeps-items" in orchestrate(repo, "parse", DRIVEN).stdout


def test_the_whole_prompt_runs_to_the_end(tmp_path: Path) -> None:
    repo = seed_repo(tmp_path)
    code, out = run(repo, script_file(tmp_path, SCRIPT))
    assert code == 0, out
    assert sorted(task for _, task in unit_commits(repo)) == ["2a", "2b", "3a"]
    driven = parse_plan(repo / DRIVEN)
    by_title = {task.title: task.checked for task in driven.tasks}
    assert by_title == {
        "Cart model designed": True,
        "Cart keeps items between requests (testing pending)": True,
        "Checkout completes in under 2 seconds": True,
        "No order is lost": True,
    }
    assert "4 of 4 tasks done" in orchestrate(repo, "status", DRIVEN).stdout


def test_an_agents_edit_of_the_plan_is_undone(tmp_path: Path) -> None:
    repo = seed_repo(tmp_path)
    tampering = (
        (FIXTURES / "cart-plan.md").read_text().replace("- [ ] No order is lost", "- [x] No order is lost")
    )
    script = {
        "2a": {
            "attempts": [
                [
                    {"write": "src/cart.py", "content": "class Cart: ...\n"},
                    {"write": DRIVEN, "content": tampering},
                ],
                [{"write": "src/cart.py", "content": "class Cart: ...\n"}],
            ]
        }
    }
    code, out = run(repo, script_file(tmp_path, script), "--task", "2a")
    assert code == 0, out
    assert f"changed {DRIVEN}; undone" in out
    driven = {task.title: task.checked for task in parse_plan(repo / DRIVEN).tasks}
    assert driven["No order is lost"] is False
    assert driven["Cart keeps items between requests (testing pending)"] is True


def outcome(repo: Path) -> tuple[list[str], dict[str, bytes], str]:
    files = {
        p: (repo / p).read_bytes()
        for p in (PROMPT, DRIVEN, "src/cart.py", "src/prices.py", "src/checkout.py")
    }
    return [task for _, task in unit_commits(repo)], files, git(repo, "status", "--porcelain")


@pytest.mark.parametrize("point", ["after_committing", "after_linked_tick", "after_tick", "after_commit"])
def test_a_kill_between_ticking_and_committing_resumes_exactly(tmp_path: Path, point: str) -> None:
    reference = seed_repo(tmp_path / "reference")
    code, out = run(reference, script_file(tmp_path, SCRIPT))
    assert code == 0, out
    repo = seed_repo(tmp_path / "killed")
    code, out = run(repo, script_file(tmp_path, SCRIPT), env={"ORCHESTRATE_CRASH_AT": f"{point}:2a"})
    assert code == 137, out
    done = orchestrate(repo, "resume")
    assert done.returncode == 0, done.stdout + done.stderr
    commits, files, status = outcome(repo)
    expected_commits, expected_files, _ = outcome(reference)
    assert sorted(commits) == sorted(expected_commits)
    assert len(commits) == 3  # each unit committed once
    assert files == expected_files
    assert status == ""
    first = next(sha for sha, task in unit_commits(repo) if task == "2a")
    assert DRIVEN in git(repo, "show", "--name-only", "--format=", first).split()


def test_a_kill_between_ticking_and_committing_in_a_parallel_run(tmp_path: Path) -> None:
    """--parallel 2: 2A and 2B in worktrees, landed one at a time in the run's work tree; a kill
    after 2A's plan criterion is ticked there, before its commit; resume commits each unit once."""
    repo = seed_repo(tmp_path / "killed")
    script = script_file(tmp_path, SCRIPT)
    env = {"ORCHESTRATE_CRASH_AT": "after_linked_tick:2a"}
    code, out = run(repo, script, "--parallel", "2", env=env)
    assert code == 137, out
    done = orchestrate(repo, "resume")
    assert done.returncode == 0, done.stdout + done.stderr
    commits, _, status = outcome(repo)
    assert sorted(commits) == ["2a", "2b", "3a"]
    assert status == ""
    driven = {task.title: task.checked for task in parse_plan(repo / DRIVEN).tasks}
    assert all(driven.values()), driven
    first = next(sha for sha, task in unit_commits(repo) if task == "2a")
    assert changed_offsets(repo, first, DRIVEN) != []


# ---- the shared MemberJunction documents ------------------------------------------------------

SEED = "plans/seed-orchestrator-prompt.md"
AUDIO = "plans/audio-sage-realtime-implementation-plan.md"


def shared_repo(tmp_path: Path, shared_plans: Path) -> Path:
    return make_repo(
        tmp_path / "repo",
        {
            "README.md": "# mj\n",
            SEED: (shared_plans / "seed-orchestrator-prompt.md").read_text(),
            AUDIO: (
                shared_plans / "MemberJunction__MJ__plans__audio-sage-realtime-implementation-plan.md"
            ).read_text(),
        },
    )


def test_the_seed_prompt_on_the_shared_documents(tmp_path: Path, shared_plans: Path) -> None:
    repo = shared_repo(tmp_path, shared_plans)
    lint = orchestrate(repo, "lint", SEED)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    warnings = [line for line in lint.stdout.splitlines() if ": warning: " in line or ": error: " in line]
    assert len(warnings) == 1, warnings
    assert '"Prompt override works correctly"' in warnings[0]
    dry = orchestrate(repo, "run", SEED, "--dry-run", "--show-prompts")
    assert dry.returncode == 0, dry.stderr
    first_wave = (dry.stdout + dry.stderr).split("Wave ")[1]
    assert "  2a  " in first_wave
    assert "  2b  " in first_wave
    prompt_2a = first_wave.split("  2b  ")[0]
    assert 'The section "2.1 Backend WebSocket Setup"' in prompt_2a
    assert "export class VoiceConversationHandler" in prompt_2a
    assert "export class VoiceConversationService" not in prompt_2a  # 2.2: 2B's
    assert "## Phase 3: Eleven Labs" not in prompt_2a
    script = {
        "2a": [{"write": "packages/MJServer/src/websocket/VoiceConversationHandler.ts", "content": "x\n"}]
    }
    code, out = orchestrate_run(repo, SEED, script_file(tmp_path, script), "--task", "2a")
    assert code == 0, out
    (sha, task), *_ = unit_commits(repo)
    assert task == "2a"
    unit = parse_plan(repo / SEED).task("2a")
    assert unit is not None
    assert len(changed_offsets(repo, sha, SEED)) == 5  # its five verification boxes
    ticked = git(repo, "show", sha, "--", AUDIO)
    assert "+- [x] WebSocket connections stable for >5 minutes (testing pending)" in ticked
    assert len(changed_offsets(repo, sha, AUDIO)) == 1


def orchestrate_run(
    repo: Path, plan: str, script: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    done = orchestrate(repo, "run", plan, "--agent", "scripted", "--script", str(script), *extra, env=env)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.slow
def test_the_whole_seed_prompt_with_kills_and_resumes(tmp_path: Path, shared_plans: Path) -> None:
    repo = shared_repo(tmp_path, shared_plans)
    units = [task.id for task in parse_plan(repo / SEED).tasks]
    script = {unit: [{"write": f"work/{unit}.txt", "content": f"{unit}\n"}] for unit in units}
    path = script_file(tmp_path, script)
    kills = {
        "2b": "after_linked_tick",
        "4a": "after_tick",
        "5c": "after_committing",
        "6a": "after_linked_tick",
    }
    code, out = orchestrate_run(repo, SEED, path, env={"ORCHESTRATE_CRASH_AT": f"{kills['2b']}:2b"})
    assert code == 137, out
    for unit in ("4a", "5c", "6a"):
        done = orchestrate(repo, "resume", env={"ORCHESTRATE_CRASH_AT": f"{kills[unit]}:{unit}"})
        assert done.returncode == 137, done.stdout + done.stderr
    done = orchestrate(repo, "resume")
    assert done.returncode == 0, done.stdout + done.stderr
    commits = [task for _, task in unit_commits(repo)]
    assert sorted(commits) == sorted(units)  # each unit once
    assert git(repo, "status", "--porcelain") == ""
    prompt = parse_plan(repo / SEED)
    assert all(task.checked for task in prompt.tasks)
    audio = parse_plan(repo / AUDIO)
    success = [t for t in audio.tasks if "Success Criteria" in (t.section_path or [""])[-1]]
    assert success
    assert all(t.checked for t in success)
    assert all(t.checked for t in audio.tasks if t.section_path[-1] == "5.6 Security Audit")
