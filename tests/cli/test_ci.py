"""What the README's CI recipe runs, run here: lint's GitHub annotations, the workflow's commands on
the demo plan, and the pre-commit hook's entry."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from tests.conftest import ORCHESTRATE, REPO_ROOT, make_repo

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "plans"
ENV = {**os.environ, "PATH": f"{ORCHESTRATE.parent}{os.pathsep}{os.environ['PATH']}"}


def _readme_block(after: str) -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    found = re.search(re.escape(after) + r".*?```yaml\n(.*?)```", readme, re.DOTALL)
    assert found is not None, after
    return found.group(1)


def test_lint_format_github_annotates_each_problem_at_its_file_and_line(tmp_path: Path) -> None:
    plan = tmp_path / "plans" / "cycle, 100%.md"
    plan.parent.mkdir()
    shutil.copyfile(FIXTURES / "cycle.md", plan)
    done = subprocess.run(
        [str(ORCHESTRATE), "lint", "plans/cycle, 100%.md", "--format", "github"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    annotations = [line for line in done.stdout.splitlines() if line.startswith("::")]
    assert annotations
    for line in annotations:
        assert re.fullmatch(
            r"::(error|warning|notice) file=plans/cycle%2C 100%25\.md(,line=\d+)?::.+", line
        ), line
    text = subprocess.run(
        [str(ORCHESTRATE), "lint", "plans/cycle, 100%.md"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    errors = [line for line in text.stdout.splitlines() if ": error: " in line]
    assert len([a for a in annotations if a.startswith("::error")]) == len(errors)
    line_of = re.search(r":(\d+): error: ", errors[0])
    assert line_of is not None
    assert any(f",line={line_of.group(1)}::" in a for a in annotations)


def test_the_readme_workflow_runs_its_commands_cleanly_on_the_demo_plan(tmp_path: Path) -> None:
    workflow = _readme_block("### In CI")
    commands = [m.group(1) for m in re.finditer(r"^\s+- run: (orchestrate .*)$", workflow, re.MULTILINE)]
    assert len(commands) == 3
    repo = make_repo(tmp_path / "repo", {"plans/demo.md": (REPO_ROOT / "plans" / "demo.md").read_text()})
    for command in commands:
        done = subprocess.run(
            command.replace("plans/feature.md", "plans/demo.md"),
            shell=True,
            cwd=repo,
            env=ENV,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert '"waves"' in (repo / "schedule.json").read_text()


def test_the_pre_commit_hook_lints_every_plan_it_is_given(tmp_path: Path) -> None:
    manifest = (REPO_ROOT / ".pre-commit-hooks.yaml").read_text()
    entry = re.search(r"^\s+entry: (.*)$", manifest, re.MULTILINE)
    files = re.search(r"^\s+files: (.*)$", manifest, re.MULTILINE)
    assert entry is not None
    assert files is not None
    assert re.search(files.group(1), "plans/demo.md")
    assert not re.search(files.group(1), "README.md")
    shutil.copyfile(REPO_ROOT / "plans" / "demo.md", tmp_path / "demo.md")
    shutil.copyfile(FIXTURES / "cycle.md", tmp_path / "cycle.md")

    def hook(*plans: str) -> subprocess.CompletedProcess[str]:
        argv = [*shlex.split(entry.group(1)), *plans]
        return subprocess.run(argv, cwd=tmp_path, env=ENV, capture_output=True, text=True, check=False)

    assert hook("demo.md").returncode == 0
    both = hook("cycle.md", "demo.md")
    assert both.returncode == 1
    assert "ok: 6 tasks" in both.stdout  # the second plan was linted too


def test_the_readme_first_plan_is_verified_task_by_task(tmp_path: Path) -> None:
    # "Your first plan": the template a newcomer copies must give every task a check of its own,
    # T003 [P] beside nothing else in its phase, and read without a problem.
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Your first plan") :]
    start = section.index("```markdown\n") + len("```markdown\n")
    template = section[start : section.index("\n```\n", start)]
    repo = make_repo(tmp_path / "repo", {"plan.md": template + "\n"})
    lint = subprocess.run(
        [str(ORCHESTRATE), "lint", "plan.md", "--require-verify"], cwd=repo, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "3 by their own checks" in lint.stdout
    dry = subprocess.run(
        [str(ORCHESTRATE), "run", "plan.md", "--dry-run"], cwd=repo, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stdout
    assert re.findall(r"^  (T\d+)", dry.stdout, flags=re.M) == ["T001", "T002", "T003"]
