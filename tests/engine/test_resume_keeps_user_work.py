"""No stop loses or repeats work: a user who edits the tree or the plan between a kill and a
`resume` finds every edit either still in the tree or in a named ref that resume's output names,
and every task committed exactly once. Real `orchestrate` processes, killed at named crash points
(ORCHESTRATE_CRASH_AT), in real repositories."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from benchmarks.crash_bench import Project, make_project, orchestrate, resume_args, run_args
from orchestrator.engine.crash import CRASH_POINTS, PARALLEL_CRASH_POINTS
from tests.conftest import git

_REF = re.compile(r"refs/orchestrate/\S+?(?=[\s,;)]|$)")


def _crash(project: Project, point: str, task: str, *extra: str) -> None:
    done = orchestrate(
        [*run_args(project), *extra], project.repo, {"ORCHESTRATE_CRASH_AT": f"{point}:{task}"}
    )
    assert done.returncode == 137, done.stderr


def _resume(project: Project, *extra: str) -> subprocess.CompletedProcess[str]:
    return orchestrate([*resume_args(project), *extra], project.repo)


def _committed_tasks(repo: Path) -> list[str]:
    raw = git(repo, "log", "--reverse", "--format=%(trailers:key=Orchestrate-Task,valueonly)%x1e")
    return [r.strip() for r in raw.split("\x1e") if r.strip()]


def _refs_named(output: str) -> list[str]:
    return list(dict.fromkeys(m.group(0).rstrip(".") for m in _REF.finditer(output)))


def _blob_in(repo: Path, ref: str, path: str) -> str | None:
    done = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=repo, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def _kept(repo: Path, path: str, content: str, output: str) -> bool:
    """The user's `content` of `path` is in the tree, or in a ref that `output` names."""
    target = repo / path
    if target.is_file() and target.read_text() == content:
        return True
    return any(_blob_in(repo, ref, path) == content for ref in _refs_named(output))


def _show(project: Project) -> str:
    done = orchestrate([*resume_args(project)[:3], "show", "--repo", str(project.repo)], project.repo)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_parallel_run_killed_while_merging_keeps_the_users_edits(tmp_path: Path) -> None:
    project = make_project(tmp_path, parallel=3)
    # T003's work (notes/a.txt) is merged into the run's work tree, not yet committed.
    _crash(project, "after_merge", "T003")
    repo = project.repo
    assert (repo / "notes" / "a.txt").read_text() == "alpha\n"
    # Meanwhile the user edits a file the merge wrote, a tracked file of their own, and a new one.
    (repo / "notes" / "a.txt").write_text("alpha\nthe user's line\n")
    (repo / ".gitignore").write_text("__pycache__/\n*.log\n")
    (repo / "mine.txt").write_text("mine\n")

    first = _resume(project)
    # Changes the run did not make are not swept into a task's commit: the resume refuses...
    assert first.returncode == 2, first.stderr
    # ...and loses none of them: those outside the merge stay in the tree, the merged file the
    # user edited is kept in a ref the output names.
    assert (repo / ".gitignore").read_text() == "__pycache__/\n*.log\n"
    assert (repo / "mine.txt").read_text() == "mine\n"
    assert _kept(repo, "notes/a.txt", "alpha\nthe user's line\n", first.stderr)
    saved = [r for r in _refs_named(first.stderr) if _blob_in(repo, r, "notes/a.txt")]
    assert saved
    assert saved[0] in _show(project)

    second = _resume(project, "--allow-dirty")
    assert second.returncode == 0, second.stderr
    assert sorted(_committed_tasks(repo)) == ["T001", "T002", "T003", "T004", "T005"]
    # The user's own changes are still theirs: in the tree, in no commit of the run.
    assert (repo / ".gitignore").read_text() == "__pycache__/\n*.log\n"
    assert (repo / "mine.txt").read_text() == "mine\n"
    assert git(repo, "log", "--format=%H", "--", "mine.txt", ".gitignore").count("\n") == 0  # initial only
    assert (repo / "notes" / "a.txt").read_text() == "alpha\n"  # T003's work, committed


def test_a_serial_run_killed_mid_task_keeps_the_users_plan_edit_and_runs_the_new_task(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path)
    _crash(project, "after_agent", "T002")  # T002's first attempt has edited calc.py
    repo = project.repo
    plan = project.plan.read_text()
    added = "- [ ] T005 Write `notes/c.txt`\n  - Verify: `test -f notes/c.txt`\n"
    project.plan.write_text(plan + added)
    (repo / ".gitignore").write_text("__pycache__/\n*.log\n")
    script = json.loads(project.script.read_text())
    script["T005"] = [{"write": "notes/c.txt", "content": "gamma\n"}]
    project.script.write_text(json.dumps(script))

    done = _resume(project, "--script", str(project.script))
    assert done.returncode == 0, done.stderr
    final = project.plan.read_text()
    assert "- [x] T005 Write `notes/c.txt`" in final  # the user's task was kept, read and run
    assert _committed_tasks(repo) == ["T001", "T002", "T003", "T004", "T005"]
    assert (repo / "notes" / "c.txt").read_text() == "gamma\n"
    # The interrupted attempt's tree (with the user's .gitignore edit) is in a ref resume named.
    assert _kept(repo, ".gitignore", "__pycache__/\n*.log\n", done.stderr)
    assert git(repo, "status", "--porcelain") in ("", "M .gitignore")


def test_a_task_the_user_inserted_and_committed_joins_the_resumed_run(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    _crash(project, "after_done", "T001")
    repo = project.repo
    text = project.plan.read_text()
    inserted = "- [ ] T010 Write `notes/z.txt`\n  - Verify: `test -f notes/z.txt`\n"
    text = text.replace("\n## Phase 2", f"{inserted}\n## Phase 2")
    project.plan.write_text(text)
    git(repo, "commit", "-q", "-am", "plan: one more task")
    script = json.loads(project.script.read_text())
    script["T010"] = [{"write": "notes/z.txt", "content": "zed\n"}]
    project.script.write_text(json.dumps(script))

    done = _resume(project, "--script", str(project.script))
    assert done.returncode == 0, done.stderr
    assert _committed_tasks(repo) == ["T001", "T002", "T010", "T003", "T004"]
    assert "[ ]" not in project.plan.read_text()
    again = _resume(project)
    assert "is complete" in again.stderr


def test_with_phase_only_new_tasks_of_that_phase_join(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    _crash(project, "after_done", "T001", "--phase", "1")
    repo = project.repo
    text = project.plan.read_text()
    text = text.replace(
        "\n## Phase 2", "- [ ] T010 Write `notes/z.txt`\n  - Verify: `test -f notes/z.txt`\n\n## Phase 2"
    )
    text += "- [ ] T011 Write `notes/y.txt`\n  - Verify: `test -f notes/y.txt`\n"
    project.plan.write_text(text)
    git(repo, "commit", "-q", "-am", "plan: two more tasks")
    script = json.loads(project.script.read_text())
    script["T010"] = [{"write": "notes/z.txt", "content": "zed\n"}]
    script["T011"] = [{"write": "notes/y.txt", "content": "why\n"}]
    project.script.write_text(json.dumps(script))

    done = _resume(project, "--script", str(project.script))
    assert done.returncode == 0, done.stderr
    assert _committed_tasks(repo) == ["T001", "T002", "T010"]
    assert "- [ ] T011" in project.plan.read_text()


NEW_TASK = "- [ ] T006 Write `notes/new.txt`\n  - Verify: `test -f notes/new.txt`\n"
QUICK_SERIAL = ("after_start", "after_agent_record", "after_verified", "after_tick", "after_commit")
QUICK_PARALLEL = ("after_worktree", "after_committing", "after_merge", "after_tick", "after_done")


def _user_edits_then_resume(project: Project, tasks: list[str]) -> None:
    """What a user may do after a kill: edit a tracked file, add a file, add a task to the plan;
    then resume (--allow-dirty: their changes stay out of the run) until the run is done."""
    repo = project.repo
    (repo / ".gitignore").write_text("__pycache__/\n*.log\n")
    (repo / "mine.txt").write_text("mine\n")
    project.plan.write_text(project.plan.read_text() + NEW_TASK)
    script = json.loads(project.script.read_text())
    script["T006"] = [{"write": "notes/new.txt", "content": "new\n"}]
    project.script.write_text(json.dumps(script))
    said = ""
    for _ in range(3):
        done = _resume(project, "--allow-dirty", "--script", str(project.script))
        said += done.stderr
        if done.returncode == 0:
            break
    assert done.returncode == 0, said
    assert sorted(_committed_tasks(repo)) == sorted([*tasks, "T006"]), said
    assert "- [x] T006" in project.plan.read_text()
    assert _kept(repo, ".gitignore", "__pycache__/\n*.log\n", said), said
    assert _kept(repo, "mine.txt", "mine\n", said), said
    # A ref the output names is one `orchestrate show` lists too.
    shown = _show(project)
    assert all(ref in shown for ref in _refs_named(said)), (said, shown)


@pytest.mark.parametrize("point", QUICK_SERIAL)
def test_user_edits_between_a_kill_and_resume_are_kept_serial(point: str, tmp_path: Path) -> None:
    project = make_project(tmp_path)
    _crash(project, point, "T002")
    _user_edits_then_resume(project, ["T001", "T002", "T003", "T004"])


@pytest.mark.parametrize("point", QUICK_PARALLEL)
def test_user_edits_between_a_kill_and_resume_are_kept_parallel(point: str, tmp_path: Path) -> None:
    project = make_project(tmp_path, parallel=3)
    _crash(project, point, "T003")
    _user_edits_then_resume(project, ["T001", "T002", "T003", "T004", "T005"])


@pytest.mark.slow
@pytest.mark.parametrize("point", [p for p in CRASH_POINTS if p not in QUICK_SERIAL])
def test_user_edits_at_every_other_crash_point_are_kept_serial(point: str, tmp_path: Path) -> None:
    project = make_project(tmp_path)
    _crash(project, point, "T002")
    _user_edits_then_resume(project, ["T001", "T002", "T003", "T004"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "point",
    [
        p
        for p in (*PARALLEL_CRASH_POINTS, *CRASH_POINTS)
        if p not in QUICK_PARALLEL and p != "after_failed_attempt"
    ],
)
def test_user_edits_at_every_other_crash_point_are_kept_parallel(point: str, tmp_path: Path) -> None:
    project = make_project(tmp_path, parallel=3)
    _crash(project, point, "T003")
    _user_edits_then_resume(project, ["T001", "T002", "T003", "T004", "T005"])


def test_a_task_the_user_took_out_of_the_plan_mid_attempt_leaves_its_edits_in_a_named_ref(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path)
    _crash(project, "after_agent", "T002")  # T002's first attempt appended to calc.py
    repo = project.repo
    partial = (repo / "calc.py").read_text()
    text = project.plan.read_text()
    start = text.index("- [ ] T002")
    project.plan.write_text(text[:start] + text[text.index("\n## Phase 2") + 1 :])
    script = json.loads(project.script.read_text())
    del script["T002"]
    project.script.write_text(json.dumps(script))

    done = _resume(project, "--script", str(project.script))
    assert done.returncode == 0, done.stderr
    assert _committed_tasks(repo) == ["T001", "T003", "T004"]
    assert _kept(repo, "calc.py", partial, done.stderr)
    assert git(repo, "status", "--porcelain") == ""
