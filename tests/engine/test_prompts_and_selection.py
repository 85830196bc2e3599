"""Prompt rendering (with a repository's overrides) and run selections (--phase, --task)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import load_settings
from orchestrator.domain.events import ListReporter
from orchestrator.engine.prompts import PromptRenderer, Template, Templates
from orchestrator.engine.session import start_run
from orchestrator.errors import ConfigError
from orchestrator.persistence.repo import GitRepo
from orchestrator.planfile import parse_plan
from tests.conftest import git
from tests.engine.conftest import write_project


def test_a_task_prompt_has_only_its_own_context(project: tuple[Path, Path, Path]) -> None:
    repo, plan_path, _ = project
    (repo / "AGENTS.md").write_text("Use tabs, never spaces.\n")
    plan = parse_plan(plan_path)
    task = plan.task("T003")
    assert task is not None
    renderer = PromptRenderer(repo, plan_path)
    rendered = renderer.render(
        plan, task, ["python3 -c 'x'"], attempt=2, max_attempts=3, failure="boom: exit 1"
    )
    assert "Your task: T003 Add `shout(name)` to `greet.py`" in rendered.prompt
    assert "Phase 2: More" in rendered.prompt
    assert "notes/one.txt" not in rendered.prompt  # another phase's task is not this task's context
    assert "boom: exit 1" in rendered.prompt
    assert "Attempt 2 of 3" in rendered.prompt
    assert "Use tabs, never spaces." in rendered.system
    assert "Do not edit the plan file `plan.md`" in rendered.system


@pytest.mark.parametrize(
    ("kept", "says", "never"),
    [
        (True, "Your previous changes are still in the work tree", "NOT in the work tree"),
        (False, "your previous changes are NOT in the work tree", "still in the work tree"),
    ],
)
def test_a_retry_prompt_says_whether_the_previous_changes_are_still_there(
    project: tuple[Path, Path, Path], kept: bool, says: str, never: str
) -> None:
    repo, plan_path, _ = project
    plan = parse_plan(plan_path)
    task = plan.task("T003")
    assert task is not None
    rendered = PromptRenderer(repo, plan_path).render(
        plan, task, [], attempt=2, max_attempts=3, failure="it broke", changes_kept=kept
    )
    assert "it broke" in rendered.prompt
    assert says in rendered.prompt
    assert never not in rendered.prompt


def test_the_repository_can_override_a_template_and_mistakes_name_the_file(
    project: tuple[Path, Path, Path],
) -> None:
    repo, plan_path, _ = project
    (repo / "prompts").mkdir()
    (repo / "prompts" / "task.md.j2").write_text("DO {{ task.id }} NOW\n")
    git(repo, "add", "prompts")
    git(repo, "commit", "-qm", "our own task prompt")
    plan = parse_plan(plan_path)
    task = plan.task("T001")
    assert task is not None
    settings = load_settings(repo, {})
    renderer = PromptRenderer.for_run(GitRepo(repo), plan_path, settings)
    assert renderer.render(plan, task, []).prompt == "DO T001 NOW\n"
    assert "coding agent" in renderer.render(plan, task, []).system  # the built-in system prompt
    assert "prompts/*.j2" in renderer.render(plan, task, []).system  # protected, and the agent is told
    (repo / "prompts" / "task.md.j2").write_text("{{ no_such_thing }}\n")
    # An uncommitted edit is not what a run renders; it is named in the renderer's notes.
    again = PromptRenderer.for_run(GitRepo(repo), plan_path, settings)
    assert again.render(plan, task, []).prompt == "DO T001 NOW\n"
    assert any("prompts/task.md.j2 has uncommitted changes" in note for note in again.notes)
    git(repo, "commit", "-qam", "a broken task prompt")
    with pytest.raises(ConfigError, match=r"prompts/task.md.j2:1: prompt template: .*no_such_thing"):
        PromptRenderer.for_run(GitRepo(repo), plan_path, settings, plan=plan, selection=["T001"])


def test_templates_render_in_the_sandbox(project: tuple[Path, Path, Path]) -> None:
    repo, plan_path, _ = project
    plan = parse_plan(plan_path)
    task = plan.task("T001")
    assert task is not None
    unsafe = "{{ task.__class__ }}", "{{ cycler.__init__ }}", "{% set x = [] %}{{ x.append(1) }}"
    for source in unsafe:
        templates = Templates.builtin().overlaid({"task.md.j2": Template(f"ok\n{source}\n", "mine.j2")})
        with pytest.raises(ConfigError, match=r"mine.j2:2: prompt template: .*(unsafe|not safely)"):
            PromptRenderer(repo, plan_path, templates).render(plan, task, [])


def test_task_selection_runs_the_task_and_what_it_waits_for(tmp_path: Path) -> None:
    repo, plan, script = write_project(tmp_path)
    result = start_run(plan, {"script": script}, ListReporter(), task="T002")
    assert result.exit_code == 0
    trailers = git(repo, "log", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split()
    assert trailers == ["T002", "T001"]
    ticked = {t.id for t in parse_plan(plan).tasks if t.checked}
    assert ticked == {"T001", "T002"}


def test_phase_selection(tmp_path: Path) -> None:
    repo, plan, script = write_project(tmp_path)
    result = start_run(plan, {"script": script}, ListReporter(), phase="1")
    assert result.exit_code == 0
    assert {t.id for t in parse_plan(plan).tasks if t.checked} == {"T001", "T002"}
    again = start_run(plan, {"script": script}, ListReporter(), phase="1")
    assert again.message == "nothing to do"


def test_dry_run_renders_every_prompt_of_the_real_world_plans(shared_plans: Path) -> None:
    from orchestrator.engine.dryrun import dry_run

    for plan in sorted(shared_plans.glob("*.md")):
        report = dry_run(plan, {}, show_prompts=True)
        tasks = [t for wave in report.waves for t in wave]
        assert all(t.prompt for t in tasks if not t.group), plan.name
        assert report.repo is None
