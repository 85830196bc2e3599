"""Prompts from Jinja2 templates (StrictUndefined): system, task and retry.

The plan's repository may override any of them with a file of the same name in its prompts folder
(config `prompts_dir`, default `prompts/`). Templates are untrusted (an agent can write that folder;
a plain Jinja2 template is arbitrary Python in a process that holds the API key), so:

- they are read once, before the run, from the commit the run starts from (never from the work
  tree, where an agent's uncommitted or git-ignored file may lie), and compiled from memory;
- they render in Jinja2's immutable sandbox: no attribute starting with `_`, no calling of
  unsafe or mutating methods; an attempt is a ConfigError naming the file and line;
- the prompts folder is a protected path (config.always_protected): an agent's edit is undone.

A task gets only the context it needs, never the whole plan. The system prompt holds what is the
same for every task of a run (the rules of the work, the plan's preamble and its global rules
sections, the project's CLAUDE.md/AGENTS.md), so the prompt cache carries it from task to task; the
first message holds the task's own: its phase's prose, its text with its steps, criteria and
files, one line per sibling task of its phase, what its finished dependencies changed (files and
their worker's report), where it works and the commands that judge it."""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from orchestrator.config import Settings, prompts_folder
from orchestrator.domain.plan import BoxState, Expectation, Plan, StepKind, Task
from orchestrator.domain.state import RunState, TaskStatus
from orchestrator.engine.resources import data_dir
from orchestrator.engine.verification import commands_for
from orchestrator.errors import ConfigError, OrchestrateError
from orchestrator.input_files import PROMPT_FILE_LIMIT, read_regular_file
from orchestrator.persistence.repo import GitRepo
from orchestrator.tools.shell import truncate_middle

RULE_FILES = ("CLAUDE.md", "AGENTS.md")
PHASE_TEXT_LIMIT = 6000
SECTION_TEXT_LIMIT = 16000
"""Characters of each section of another document a task is given (its code blocks are long)."""
RULES_LIMIT = 8000
PREAMBLE_LIMIT = 6000
PLAN_RULES_LIMIT = 12000
SIBLINGS_SHOWN = 30
DEPENDENCY_FILES_SHOWN = 15
REPORT_LIMIT = 600
TEMPLATES = ("system.md.j2", "task.md.j2", "retry.md.j2", "review.md.j2")
TEMPLATE_SUFFIX = ".j2"
MAX_TEMPLATE_BYTES = 256 * 1024
MAX_TEMPLATES = 200
TRIAL_FAILURE = "(a failure report from the previous attempt)"


@dataclass(frozen=True)
class Template:
    source: str
    filename: str
    """Where it came from, as error messages name it: `prompts/task.md.j2` or the shipped file."""


@dataclass
class Templates:
    """The templates of one run, in memory: name (relative to the folder) -> source."""

    files: dict[str, Template]
    notes: list[str] = field(default_factory=list)
    """What a user should know: uncommitted edits to a template that the run does not use."""

    @classmethod
    def builtin(cls) -> Templates:
        folder = data_dir("prompts")
        return cls(
            {
                name: Template((folder / name).read_text(encoding="utf-8"), str(folder / name))
                for name in TEMPLATES
            }
        )

    def overlaid(self, overrides: Mapping[str, Template]) -> Templates:
        return Templates({**self.files, **overrides}, list(self.notes))


def _decode(data: bytes, filename: str) -> str:
    if len(data) > MAX_TEMPLATE_BYTES:
        raise ConfigError(f"prompt template larger than {MAX_TEMPLATE_BYTES} bytes", path=filename)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError("prompt template is not UTF-8 text", path=filename, line=line) from exc


def committed_templates(repo: GitRepo, commit: str | None, folder: str) -> dict[str, Template]:
    """The `.j2` files under `folder` (a path in the repository, "." for its root) as `commit`
    has them: regular files only (a symlink is not followed), read through git, not the tree."""
    if commit is None:
        return {}
    prefix = "" if folder == "." else folder.rstrip("/") + "/"
    found = {
        path.removeprefix(prefix): (sha, path)
        for path, sha in repo.files_at(commit, prefix)
        if path.startswith(prefix) and path.endswith(TEMPLATE_SUFFIX)
    }
    if len(found) > MAX_TEMPLATES:
        raise ConfigError(f"more than {MAX_TEMPLATES} templates under {folder}/; is prompts_dir right?")
    out: dict[str, Template] = {}
    for name, (sha, path) in found.items():
        out[name] = Template(_decode(repo.blob(sha), path), path)
    return out


def folder_templates(folder: Path) -> dict[str, Template]:
    """The `.j2` files under a folder outside any repository (or outside the run's), read now."""
    if not folder.is_dir():
        return {}
    paths = [p for p in sorted(folder.rglob(f"*{TEMPLATE_SUFFIX}")) if p.is_file() and not p.is_symlink()]
    if len(paths) > MAX_TEMPLATES:
        raise ConfigError(f"more than {MAX_TEMPLATES} templates under {folder}; is prompts_dir right?")
    return {
        p.relative_to(folder).as_posix(): Template(_decode(p.read_bytes(), str(p)), str(p)) for p in paths
    }


def run_templates(root: Path, prompts_dir: Path, repo: GitRepo | None, commit: str | None) -> Templates:
    """The templates a run uses: the shipped ones, overridden by the repository's prompts folder
    as `commit` has it (a folder outside the repository is read from disk, now). Uncommitted
    edits of an override are named in `notes`: the run does not use them."""
    templates = Templates.builtin()
    folder = prompts_folder(root, prompts_dir) if repo is not None else None
    if repo is None or folder is None:
        outside = prompts_dir if prompts_dir.is_absolute() else root / prompts_dir
        return templates.overlaid(folder_templates(outside))
    committed = committed_templates(repo, commit, folder)
    result = templates.overlaid(committed)
    if folder != ".":  # (a whole repository's .j2 files are not worth reading for a note)
        for name, template in sorted(folder_templates(root / folder).items()):
            kept = committed.get(name)
            if kept is None or kept.source != template.source:
                result.notes.append(
                    f"{folder}/{name} has uncommitted changes that a run does not use (templates "
                    "are read from the commit a run starts from); commit it to use it"
                )
    return result


@dataclass(frozen=True)
class RenderedPrompt:
    system: str
    prompt: str

    def as_text(self) -> str:
        return f"=== system ===\n{self.system}\n=== prompt ===\n{self.prompt}"


@dataclass(frozen=True)
class FinishedDependency:
    """What a finished dependency of a task changed, for its prompt."""

    id: str
    title: str
    files: list[str] = field(default_factory=list)
    report: str = ""
    """Its worker's summary, shortened."""
    in_run: bool = True
    """Done by this run (files and report known), or found done when it started."""


def finished_dependencies(
    plan: Plan, task: Task, state: RunState | None, repo: GitRepo | None
) -> list[FinishedDependency]:
    """The task's done dependencies with what they changed: the files of their commit (the plan
    left out) and their worker's last report, as far as this run knows them."""
    found: list[FinishedDependency] = []
    plan_rel = state.plan if state is not None else ""
    earlier: dict[str, str] | None = None
    for dep_id in task.depends_on:
        dep = plan.task(dep_id)
        record = state.tasks.get(dep_id) if state is not None else None
        done_here = record is not None and record.status is TaskStatus.DONE
        if dep is None or not (dep.checked or done_here):
            continue
        if record is None or not done_here:
            # Done before this run: an earlier run's commit (its trailer) still says what changed.
            if earlier is None and repo is not None and state is not None:
                with contextlib.suppress(OrchestrateError):
                    earlier = {c.task_id: c.sha for c in repo.trailer_commits()}
            commit = (earlier or {}).get(dep.id)
            files = _commit_files(repo, commit, plan_rel) if commit else []
            found.append(FinishedDependency(dep.id, dep.title, files, in_run=False))
            continue
        assert record is not None
        summary = next((a.summary for a in reversed(record.attempts) if a.summary), "") or ""
        report = " ".join(summary.split())
        if len(report) > REPORT_LIMIT:
            report = report[: REPORT_LIMIT - 1] + "…"
        files = _commit_files(repo, record.commit, plan_rel) if record.commit else []
        found.append(FinishedDependency(dep.id, dep.title, files, report))
    return found


def _commit_files(repo: GitRepo | None, commit: str, plan_rel: str) -> list[str]:
    """The paths `commit` changed, the plan left out, the first few named."""
    if repo is None:
        return []
    try:
        files = [f for f in repo.changed_between(f"{commit}^", commit) if f != plan_rel]
    except OrchestrateError:
        return []
    if len(files) > DEPENDENCY_FILES_SHOWN:
        files = [*files[:DEPENDENCY_FILES_SHOWN], f"and {len(files) - DEPENDENCY_FILES_SHOWN} more"]
    return files


def _siblings(plan: Plan, task: Task) -> tuple[list[dict[str, object]], int]:
    """One line per other task of the task's phase (its own children excepted): whose work is not
    this worker's."""
    others = [t for t in plan.phase_tasks(task.phase) if t.id != task.id and t.parent != task.id]
    shown = [{"id": t.id, "title": t.title, "done": t.settled} for t in others[:SIBLINGS_SHOWN]]
    return shown, max(0, len(others) - SIBLINGS_SHOWN)


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
    # What the system prompt already gives every task (a plan without phase headings makes its
    # whole text the one phase's).
    for shared in (plan.preamble, *(section.text for section in plan.rules)):
        if shared.strip():
            text = text.replace(shared.strip(), "")
    lines = text.strip().splitlines()
    if lines and lines[0].strip() == "---":  # front matter: metadata, not the phase's prose
        end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() in ("---", "...")), 0)
        lines = lines[end + 1 :]
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("#")):
        lines = lines[1:]  # the phase's heading (the template gives it) and the plan's title
    text = "\n".join(lines).strip()
    return "" if set(text) <= set("-*_ \n") else text


def _template_error(exc: jinja2.TemplateError, name: str, filenames: Iterable[str]) -> ConfigError:
    """A template's mistake as the error a user sees: the file and line jinja found it at. A
    syntax error carries them; an error while rendering (an unsafe access, an undefined name) is
    located by the frame jinja gives the template in the traceback."""
    where = getattr(exc, "filename", None) or name
    line = getattr(exc, "lineno", None)
    if line is None:
        known = set(filenames)
        tb: types.TracebackType | None = exc.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code
            if code.co_filename in known:
                where, line = code.co_filename, tb.tb_lineno
            tb = tb.tb_next
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ConfigError(f"prompt template: {message}", path=where, line=line)


@dataclass(frozen=True)
class RendererParts:
    """A run's renderer as data (it pickles; a compiled one does not): the templates, protected
    paths and project rules it read once when the run began, and the plan's path in the repository."""

    templates: Templates
    protected_paths: list[str]
    rules: str
    rules_source: str
    plan_rel: str


class PromptRenderer:
    def __init__(
        self,
        repo_root: Path,
        plan_path: Path,
        templates: Templates | None = None,
        protected_paths: list[str] | None = None,
    ):
        self.repo_root = repo_root
        self.plan_path = plan_path
        self.protected_paths = protected_paths or []
        self.templates = templates or Templates.builtin()
        files = self.templates.files

        def load(name: str) -> tuple[str, str, Callable[[], bool]] | None:
            found = files.get(name)
            return None if found is None else (found.source, found.filename, lambda: True)

        self.env = ImmutableSandboxedEnvironment(
            loader=jinja2.FunctionLoader(load),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
            auto_reload=False,
        )
        self.rules, self.rules_source = self._project_rules()
        self._plan_rel = self._relative(plan_path)
        self._phase_texts: dict[tuple[str, str], str] = {}
        """(plan sha256, phase id) -> the phase's prose: the same for every task of the phase."""

    @classmethod
    def for_run(
        cls,
        repo: GitRepo,
        plan_path: Path,
        settings: Settings,
        *,
        plan: Plan | None = None,
        selection: Iterable[str] = (),
    ) -> PromptRenderer:
        """A run's renderer: its templates read from the commit the run starts from (the tip of an
        existing --branch, else HEAD; on resume, HEAD, where no agent's edit was committed),
        compiled, and tried on the selection's open tasks of `plan`."""
        commit = None
        if settings.branch and repo.branch_exists(settings.branch):
            commit = repo.rev(f"refs/heads/{settings.branch}")
        commit = commit or repo.head()
        templates = run_templates(repo.root, settings.prompts_dir, repo, commit)
        renderer = cls(repo.root, plan_path, templates, settings.protected_paths).load()
        if plan is not None:
            chosen = set(selection)
            groups = {t.parent for t in plan.tasks if t.parent}  # no prompt: their children work
            tasks = [t for t in plan.tasks if t.id in chosen and not t.settled and t.id not in groups]
            renderer.check(
                plan, tasks, lambda t: commands_for(t.verify, settings.verify), settings.max_attempts
            )
        return renderer

    @property
    def notes(self) -> list[str]:
        return self.templates.notes

    def parts(self) -> RendererParts:
        """What another machine needs to render this run's prompts (see RendererParts)."""
        return RendererParts(
            self.templates, self.protected_paths, self.rules, self.rules_source, self._plan_rel
        )

    @classmethod
    def from_parts(cls, parts: RendererParts, repo_root: Path) -> PromptRenderer:
        """The run's renderer for a copy of its repository at `repo_root` (a Ray node's clone):
        the templates and project rules the run read when it began, not read again there."""
        renderer = cls(repo_root, repo_root / parts.plan_rel, parts.templates, parts.protected_paths)
        renderer.rules, renderer.rules_source = parts.rules, parts.rules_source
        return renderer.load()

    def _project_rules(self) -> tuple[str, str]:
        found: list[tuple[str, str]] = []
        for name in RULE_FILES:
            path = self.repo_root / name
            if path.is_file():
                data = read_regular_file(
                    path, what="project rules file", limit=PROMPT_FILE_LIMIT, error=ConfigError
                )
                found.append((name, data.decode("utf-8", errors="replace").strip()))
        if not found:
            return "", ""
        text = "\n\n".join(body for _, body in found)
        text, _ = truncate_middle(text, RULES_LIMIT)
        return text, ", ".join(name for name, _ in found)

    def load(self) -> PromptRenderer:
        """Compile every template now: a mistake in one is reported before a run begins (naming
        the file and line), and no task pays for the compiling."""
        for name in TEMPLATES:
            self._template(name)
        return self

    def check(
        self, plan: Plan, tasks: Iterable[Task], commands: Callable[[Task], list[str]], max_attempts: int
    ) -> None:
        """Render every prompt of `tasks` once (first attempts, and a retry of the first), so that
        a template's mistake or unsafe access stops the run before it begins, not at its tenth task.
        Branches a template takes only on later attempts are still checked when they render."""
        first = True
        for task in tasks:
            verify = commands(task)
            self.render(plan, task, verify, attempt=1, max_attempts=max_attempts)
            if first:
                self.render(
                    plan, task, verify, attempt=2, max_attempts=max(max_attempts, 2), failure=TRIAL_FAILURE
                )
                first = False

    def _template(self, name: str) -> jinja2.Template:
        try:
            return self.env.get_template(name)
        except jinja2.TemplateError as exc:
            raise _template_error(exc, name, self._filenames()) from exc

    def _filenames(self) -> list[str]:
        return [t.filename for t in self.templates.files.values()]

    def _render(self, name: str, **context: object) -> str:
        template = self._template(name)
        try:
            return template.render(**context)
        except jinja2.TemplateError as exc:
            raise _template_error(exc, name, self._filenames()) from exc

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
        dependencies: list[FinishedDependency] | None = None,
    ) -> RenderedPrompt:
        """The prompts for one attempt; `workspace` is where the agent works when it is not the
        repository itself (a worktree); `changes_kept` says whether the previous attempt's changes
        are still in it (not after a merge conflict, or when a resume had to set them aside);
        `dependencies` what the task's finished dependencies changed (default: their ids only)."""
        phase = plan.phase(task.phase)
        key = (plan.sha256, task.phase)
        phase_text = self._phase_texts.get(key) if plan.sha256 else None
        if phase_text is None:
            phase_text, _ = truncate_middle(_phase_context(plan, task), PHASE_TEXT_LIMIT)
            if plan.sha256:  # (a plan made in memory has no digest to know it by)
                self._phase_texts[key] = phase_text
        done = [d for d in task.depends_on if (dep := plan.task(d)) is not None and dep.checked]
        if dependencies is None:
            dependencies = finished_dependencies(plan, task, None, None)
        siblings, more = _siblings(plan, task)
        run_wide = self._run_context(plan)
        context: dict[str, object] = {
            **run_wide,
            "phase": {"id": task.phase, "title": phase.title if phase else ""},
            "phase_text": phase_text,
            "task": task.model_dump(),
            "verify": verify,
            "done_dependencies": done,
            "dependencies": [vars(d) for d in dependencies],
            "steps": [
                {
                    "title": step.title,
                    "done": step.state is BoxState.DONE,
                    "criterion": step.kind is StepKind.CRITERION,
                    "unchecked": step.title in task.uncovered,
                }
                for step in task.steps
            ],
            "uncovered": [c for c in task.uncovered if c not in {step.title for step in task.steps}],
            "sections": [
                {**excerpt.model_dump(), "text": truncate_middle(excerpt.text, SECTION_TEXT_LIMIT)[0]}
                for excerpt in task.sections
            ],
            "linked": [{**box.model_dump(), "done": box.state is BoxState.DONE} for box in task.linked],
            "siblings": siblings,
            "siblings_more": more,
            "expected_output": [
                c.model_dump() for c in task.checks if c.expect is Expectation.OUTPUT and c.expected
            ],
            "workspace": str(workspace or self.repo_root),
            "attempt": attempt,
            "max_attempts": max_attempts,
            "failure": failure,
            "changes_kept": changes_kept,
        }
        # Only what is the same for every task of the run: the prompt cache carries it over.
        system = self._render("system.md.j2", **run_wide)
        prompt = self._render("task.md.j2", **context)
        if attempt > 1 and failure:
            prompt = prompt.rstrip("\n") + "\n" + self._render("retry.md.j2", **context)
        return RenderedPrompt(system=system, prompt=prompt)

    def render_review(
        self,
        plan: Plan,
        task: Task,
        criteria: list[str],
        diff: str,
        *,
        diff_cut: bool = False,
        diff_notes: str = "",
        problems: list[str] | None = None,
    ) -> str:
        """The reviewer's prompt: the criteria, the unit as the plan writes it, the plan's and the
        project's rules, and the attempt's diff; `problems` are why its previous verdict was not
        accepted. Never the worker's report."""
        return self._render(
            "review.md.j2",
            **self._run_context(plan),
            task=task.model_dump(),
            criteria=criteria,
            steps=[step.title for step in task.steps],
            expected_output=[
                c.model_dump() for c in task.checks if c.expect is Expectation.OUTPUT and c.expected
            ],
            diff=diff,
            diff_cut=diff_cut,
            diff_notes=diff_notes,
            problems=problems or [],
        )

    def _run_context(self, plan: Plan) -> dict[str, object]:
        """What the system prompt may show: the same for every task of a run."""
        preamble, _ = truncate_middle(plan.preamble.strip(), PREAMBLE_LIMIT)
        sections: list[dict[str, str]] = []
        budget = PLAN_RULES_LIMIT
        for section in plan.rules:
            lines = section.text.strip().splitlines()
            # A rules section that holds units (### Task N under ## Global Constraints) gives only
            # its own prose: the units are each their own worker's.
            inside = [t.line for t in plan.tasks if section.line < t.line < section.line + len(lines)]
            if inside:
                lines = lines[: min(inside) - section.line]
            if lines and lines[0].lstrip().startswith("#"):  # the template gives the heading
                lines = lines[1:]
            text, _ = truncate_middle("\n".join(lines).strip(), max(budget, 200))
            budget -= len(text)
            sections.append({"title": section.title, "text": text})
            if budget <= 0:
                break
        return {
            "plan_title": plan.title,
            "plan_path": self._plan_rel,
            "plan_preamble": preamble,
            "plan_rules": sections,
            "plan_documents": plan.linked_documents,
            # An orchestration prompt (its units are given sections of, or tick boxes in, other
            # documents) speaks to an orchestrator: the worker is told it is a sub-agent.
            "plan_orchestrates": any(t.sections or t.linked for t in plan.tasks),
            "protected_paths": self.protected_paths,
            "rules": self.rules,
            "rules_source": self.rules_source,
        }

    def _relative(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.repo_root).as_posix()
        except ValueError:
            return str(path)
