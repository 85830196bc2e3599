"""Prompts from Jinja2 templates (StrictUndefined): system, task and retry.

The plan's repository may override any of them with a file of the same name in its prompts folder
(config `prompts_dir`, default `prompts/`). A task gets only the context it needs: the plan's title,
its phase's own section, its item, its verification commands and the project's rules, never the
whole plan."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2

from orchestrator.domain.plan import Plan, Task
from orchestrator.engine.resources import data_dir
from orchestrator.errors import ConfigError
from orchestrator.tools.shell import truncate_middle

RULE_FILES = ("CLAUDE.md", "AGENTS.md")
PHASE_TEXT_LIMIT = 6000
RULES_LIMIT = 8000
TEMPLATES = ("system.md.j2", "task.md.j2", "retry.md.j2")


@dataclass(frozen=True)
class RenderedPrompt:
    system: str
    prompt: str

    def as_text(self) -> str:
        return f"=== system ===\n{self.system}\n=== prompt ===\n{self.prompt}"


def _phase_context(plan: Plan, task: Task) -> str:
    """The phase's own prose: its section without its heading (the template has it) and without
    the items of its tasks (the task's own item is given separately; siblings are not its job)."""
    phase = plan.phase(task.phase)
    if phase is None:
        return ""
    text = phase.text
    for sibling in plan.phase_tasks(task.phase):
        if sibling.context.strip():
            text = text.replace(sibling.context.strip(), "")
    lines = text.strip().splitlines()
    if lines and lines[0].lstrip().startswith("#"):
        lines = lines[1:]
    return "\n".join(line for line in lines).strip()


def _template_error(exc: jinja2.TemplateError, name: str) -> ConfigError:
    """A template's mistake as the error a user sees: the file and line jinja found it at."""
    where = getattr(exc, "filename", None) or name
    return ConfigError(f"prompt template: {exc}", path=where, line=getattr(exc, "lineno", None))


class PromptRenderer:
    def __init__(
        self,
        repo_root: Path,
        plan_path: Path,
        override_dir: Path | None = None,
        protected_paths: list[str] | None = None,
    ):
        self.repo_root = repo_root
        self.plan_path = plan_path
        self.protected_paths = protected_paths or []
        search: list[str] = []
        if override_dir is not None:
            folder = override_dir if override_dir.is_absolute() else repo_root / override_dir
            if folder.is_dir() and any((folder / t).is_file() for t in TEMPLATES):
                search.append(str(folder))
        search.append(str(data_dir("prompts")))
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(search),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )
        self.rules, self.rules_source = self._project_rules()

    def _project_rules(self) -> tuple[str, str]:
        found: list[tuple[str, str]] = []
        for name in RULE_FILES:
            path = self.repo_root / name
            if path.is_file():
                found.append((name, path.read_text(encoding="utf-8", errors="replace").strip()))
        if not found:
            return "", ""
        text = "\n\n".join(body for _, body in found)
        text, _ = truncate_middle(text, RULES_LIMIT)
        return text, ", ".join(name for name, _ in found)

    def load(self) -> PromptRenderer:
        """Compile every template now: a mistake in one is reported before a run begins (naming
        the file and line), and no task pays for the compiling."""
        for name in TEMPLATES:
            try:
                self.env.get_template(name)
            except jinja2.TemplateError as exc:
                raise _template_error(exc, name) from exc
        return self

    def _render(self, name: str, **context: object) -> str:
        try:
            return self.env.get_template(name).render(**context)
        except jinja2.TemplateError as exc:
            raise _template_error(exc, name) from exc

    def render(
        self,
        plan: Plan,
        task: Task,
        verify: list[str],
        attempt: int = 1,
        max_attempts: int = 1,
        failure: str = "",
        workspace: Path | None = None,
        changes_kept: bool = True,
    ) -> RenderedPrompt:
        """The prompts for one attempt; `workspace` is where the agent works when it is not the
        repository itself (a worktree); `changes_kept` says whether the previous attempt's changes
        are still in it (not after a merge conflict, or when a resume had to set them aside)."""
        phase = plan.phase(task.phase)
        phase_text, _ = truncate_middle(_phase_context(plan, task), PHASE_TEXT_LIMIT)
        done = [d for d in task.depends_on if (dep := plan.task(d)) is not None and dep.checked]
        context: dict[str, object] = {
            "plan_title": plan.title,
            "plan_path": self._relative(self.plan_path),
            "phase": {"id": task.phase, "title": phase.title if phase else ""},
            "phase_text": phase_text,
            "task": task.model_dump(),
            "verify": verify,
            "done_dependencies": done,
            "workspace": str(workspace or self.repo_root),
            "protected_paths": self.protected_paths,
            "rules": self.rules,
            "rules_source": self.rules_source,
            "attempt": attempt,
            "max_attempts": max_attempts,
            "failure": failure,
            "changes_kept": changes_kept,
        }
        system = self._render("system.md.j2", **context)
        prompt = self._render("task.md.j2", **context)
        if attempt > 1 and failure:
            prompt = prompt.rstrip("\n") + "\n" + self._render("retry.md.j2", **context)
        return RenderedPrompt(system=system, prompt=prompt)

    def _relative(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.repo_root).as_posix()
        except ValueError:
            return str(path)
