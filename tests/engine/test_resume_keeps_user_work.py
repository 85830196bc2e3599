"""No stop loses or repeats work: a user who edits the tree or the plan between a kill and a
`resume` finds every edit either still in the tree or in a named ref that resume's output names,
and every task committed exactly once. Real `orchestrate` processes, killed at named crash points
(ORCHESTRATE_CRASH_AT), in real repositories."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.crash_bench import (
    GUIDE,
    GUIDE_TEXT,
    USER_NOTES,
    Project,
    make_project,
    orchestrate,
    resume_args,
    run_args,
)
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


def _commits_touching(repo: Path, *paths: str) -> list[str]:
    """The subjects of the commits that changed any of `paths`, oldest first."""
    return git(repo, "log", "--reverse", "--format=%s", "--", *paths).splitlines()


def _paths_by_task(repo: Path) -> dict[str, set[str]]:
    """Each task commit: the paths it changed."""
    raw = git(repo, "log", "--format=%x1e%(trailers:key=Orchestrate-Task,valueonly)", "--name-only")
    found: dict[str, set[str]] = {}
    for entry in raw.split("\x1e"):
        lines = [line.strip() for line in entry.strip().splitlines() if line.strip()]
        if lines and lines[0] in ("T001", "T002", "T003", "T004", "T005", "T006"):
            assert lines[0] not in found, f"{lines[0]} committed twice"
            found[lines[0]] = set(lines[1:])
    return found


SERIAL_TASK_PATHS = {
    "T001": {"calc.py", "log.txt", "plan.md"},
    "T002": {"calc.py", "log.txt", "plan.md"},
    "T003": {"notes/a.txt", "log.txt", "plan.md"},
    "T004": {"notes/b.txt", "log.txt", "plan.md"},
}
"""What each task of the crash harness's serial plan commits: its own work and its tick, nothing else."""

USER_EDIT = {USER_NOTES: "my notes\n", GUIDE: f"{GUIDE_TEXT}A line of my own.\n"}
"""The crash harness's user edit: a new file, and a tracked file no task touches."""


def _edit_as_the_user(repo: Path, files: dict[str, str]) -> None:
    for path, content in files.items():
        (repo / path).write_text(content)


def _status(repo: Path) -> list[str]:
    done = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo, capture_output=True, text=True
    )
    return done.stdout.splitlines()


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
    # ...and in none of the run's commits: they are not a task's work.
    assert _commits_touching(repo, ".gitignore", "mine.txt") == ["initial"], said
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


# --- a plain resume after the user edited the tree: nothing of theirs lands in a task's commit ---

# Where a serial task is picked up in place (its work tree hash is on record) or started again.
PLAIN_RESUME_POINTS = (
    "after_agent_record",  # agent_finished: verified again, in place
    "mid_verify",
    "after_verify",
    "after_verified",  # task_verified: verified again (the tree moved), in place
    "after_committing",
    "after_tick",
    "after_failed_attempt",  # between attempts: the retry builds on the failed attempt's edits
    "after_commit",  # committed: done, not picked up
)


def _plain_then_allow_dirty(project: Project, edit: dict[str, str]) -> str:
    """A plain resume refuses (exit 2) over the user's changes, naming one and --allow-dirty,
    having committed nothing; the user's files are untouched. Then --allow-dirty to the end.
    Returns everything both said."""
    repo = project.repo
    before = _committed_tasks(repo)
    plain = _resume(project)
    assert plain.returncode == 2, plain.stderr
    assert "--allow-dirty" in plain.stderr
    assert any(path in plain.stderr for path in edit), plain.stderr
    assert "Traceback" not in plain.stderr
    assert _committed_tasks(repo) == before  # nothing of the user's was committed meanwhile
    allowed = _resume(project, "--allow-dirty")
    assert allowed.returncode == 0, plain.stderr + allowed.stderr
    return plain.stderr + allowed.stderr


@pytest.mark.parametrize("point", PLAIN_RESUME_POINTS)
def test_a_plain_resume_never_commits_the_users_edits_into_the_interrupted_task(
    point: str, tmp_path: Path
) -> None:
    project = make_project(tmp_path)
    _crash(project, point, "T002")
    repo = project.repo
    _edit_as_the_user(repo, USER_EDIT)

    said = _plain_then_allow_dirty(project, USER_EDIT)
    # Each task's commit holds its own paths and its tick: nothing of the user's.
    assert _paths_by_task(repo) == SERIAL_TASK_PATHS, said
    assert _commits_touching(repo, USER_NOTES, GUIDE) == ["initial"], said
    # The user's edits are where they left them, uncommitted; nothing else is.
    for path, content in USER_EDIT.items():
        assert (repo / path).read_text() == content
    assert sorted(_status(repo)) == [f" M {GUIDE}", f"?? {USER_NOTES}"], said
    assert "out of the run's commits" in said


def test_a_second_resume_still_keeps_the_users_edits_out(tmp_path: Path) -> None:
    """Killed again after the --allow-dirty resume verified the task on a tree holding the user's
    edits: the next resume (plain: the user already said --allow-dirty for these) still leaves them
    out of the commit."""
    project = make_project(tmp_path)
    _crash(project, "after_agent_record", "T002")
    repo = project.repo
    _edit_as_the_user(repo, USER_EDIT)
    refused = _resume(project)
    assert refused.returncode == 2, refused.stderr
    again = orchestrate(
        [*resume_args(project), "--allow-dirty"], repo, {"ORCHESTRATE_CRASH_AT": "after_verified:T002"}
    )
    assert again.returncode == 137, again.stderr
    last = _resume(project)
    assert last.returncode == 0, last.stderr
    assert _paths_by_task(repo) == SERIAL_TASK_PATHS, last.stderr
    assert sorted(_status(repo)) == [f" M {GUIDE}", f"?? {USER_NOTES}"]
    # `show` says which of the tree's changes the run kept out of its commits as the user's.
    kept = [line for line in _show(project).splitlines() if line.startswith("kept out of")]
    assert kept == [f"kept out of the run's commits as yours: {GUIDE}, {USER_NOTES}"], kept


def test_a_graceful_stop_after_the_agent_step_then_a_plain_resume_keeps_the_users_edits_out(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path)
    repo = project.repo
    script = json.loads(project.script.read_text())
    first = script["T002"]["attempts"][0]
    script["T002"]["attempts"][0] = [first[0], {"sleep": 2.0}]  # long enough for the signal to land
    project.script.write_text(json.dumps(script))
    proc = subprocess.Popen(
        run_args(project),
        cwd=repo,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while "def mul" not in ((repo / "calc.py").read_text() if (repo / "calc.py").exists() else ""):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "T002's first attempt never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # as `kill PID`: finish the agent step, then stop
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err  # stopped, resumable
    assert "stopped on request" in err
    _edit_as_the_user(repo, USER_EDIT)

    said = _plain_then_allow_dirty(project, USER_EDIT)
    assert _paths_by_task(repo) == SERIAL_TASK_PATHS, said
    assert sorted(_status(repo)) == [f" M {GUIDE}", f"?? {USER_NOTES}"], said


@pytest.mark.parametrize("point", ["after_agent_record", "after_verified", "after_failed_attempt"])
def test_a_user_edit_of_a_path_the_agent_changed_is_kept_in_a_named_ref_and_the_attempt_runs_again(
    point: str, tmp_path: Path
) -> None:
    project = make_project(tmp_path)
    _crash(project, point, "T002")
    repo = project.repo
    theirs = (repo / "calc.py").read_text() + "# the user's line\n"
    edit = {"calc.py": theirs, USER_NOTES: "my notes\n"}
    _edit_as_the_user(repo, edit)

    plain = _resume(project)
    assert plain.returncode == 2, plain.stderr  # user-notes.txt is not the run's either
    # The whole tree as the user left it is in a ref the output names (and `show` lists)...
    saved = [r for r in _refs_named(plain.stderr) if _blob_in(repo, r, "calc.py") == theirs]
    assert saved, plain.stderr
    assert _blob_in(repo, saved[0], USER_NOTES) == "my notes\n"
    assert saved[0] in _show(project)
    # ...the task's path is back as the branch has it, for the attempt to run again; the user's
    # other change stays in the tree.
    assert (repo / "calc.py").read_text() == git(repo, "show", "HEAD:calc.py") + "\n"
    assert (repo / USER_NOTES).read_text() == "my notes\n"

    allowed = _resume(project, "--allow-dirty")
    assert allowed.returncode == 0, allowed.stderr
    assert _paths_by_task(repo) == SERIAL_TASK_PATHS, allowed.stderr
    assert _status(repo) == [f"?? {USER_NOTES}"]
    assert "- [x] T002" in project.plan.read_text()


def test_a_check_the_stop_signal_killed_is_no_verdict(tmp_path: Path) -> None:
    """A terminal's Ctrl-C or hang-up reaches the whole process group, and a check that is just
    starting can be caught in it (killed by the signal, exit -1): that is not the task's failure.
    The task stays as its agent left it and resume verifies it again, so the agent's work is not
    done twice (here: its append would land twice)."""
    mark = tmp_path / "stopped-once"
    # The first time: stop orchestrate (SIGTERM to its pid, as `kill PID`), then die of SIGHUP as
    # a check caught in the signal does.
    verify = f"test -f {mark} || {{ touch {mark}; kill -TERM $PPID; sleep 0.5; kill -HUP $$; }}"
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "plan.md").write_text(f"# Plan\n\n- [ ] T001 Append to `out.txt`\n  - Verify: `{verify}`\n")
    git(repo, "init", "-q", "-b", "work")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"T001": [{"append": "out.txt", "content": "once\n"}]}))
    project = Project(tmp_path, repo, repo / "plan.md", script)
    unconfined = {"ORCHESTRATE_SANDBOX": "none"}  # the check must reach orchestrate's pid

    stopped = orchestrate(run_args(project), repo, unconfined)
    assert stopped.returncode == 3, stopped.stderr  # stopped, resumable
    assert "stopped on request" in stopped.stderr
    assert "retrying" not in stopped.stderr
    resumed = orchestrate(resume_args(project), repo, unconfined)
    assert resumed.returncode == 0, resumed.stderr
    assert _committed_tasks(repo) == ["T001"]
    assert (repo / "out.txt").read_text() == "once\n", stopped.stderr + resumed.stderr
