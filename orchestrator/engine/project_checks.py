"""The project's own checks: found in the repository's build files, tried once, written to
orchestrate.toml (`orchestrate init`).

What is looked at: pyproject.toml and the pytest/ruff/mypy files beside it, package.json scripts
(test, typecheck, lint, build) and tsconfig.json, go.mod, Cargo.toml, and a Makefile's targets.
Each candidate runs once, as a run's verification commands run (in the run's sandbox, with the
allow-listed environment and never a key); those that pass become `verify`, those that fail are
written commented out with their error, so the user sees what was tried and why it was left out."""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.config import CONFIG_FILE, PYPROJECT, Settings, load_settings
from orchestrator.engine.session import run_sandbox
from orchestrator.engine.verification import CommandResult, missing_programs, run_verification
from orchestrator.errors import ConfigError, UsageError
from orchestrator.persistence.checkpoints import RunStore
from orchestrator.persistence.repo import GitRepo, find_repo_root
from orchestrator.tools.environment import secret
from orchestrator.tools.sandbox import Sandbox

_MAX_BUILD_FILE = 1 << 20
NODE_SCRIPTS = ("lint", "typecheck", "build", "test")
"""package.json scripts worth running after every task, cheapest first."""
MAKE_TARGETS = ("lint", "typecheck", "check", "build", "test")
"""Makefile targets worth running after every task, cheapest first."""
_MAKE_RULE = re.compile(r"^([A-Za-z0-9_.-]+(?:[ \t]+[A-Za-z0-9_.-]+)*)[ \t]*:(?![=:])", re.MULTILINE)
_ERROR_CHARS = 160
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_CONTROL = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]")
_LOCKFILES = (("pnpm-lock.yaml", "pnpm"), ("yarn.lock", "yarn"), ("bun.lockb", "bun"), ("bun.lock", "bun"))


@dataclass(frozen=True)
class Candidate:
    command: str
    found_in: str
    """Why it is a candidate, for the comment beside it: `pyproject.toml [tool.pytest.ini_options]`."""


@dataclass(frozen=True)
class Tried:
    candidate: Candidate
    result: CommandResult | None
    """None when the command's program is not on PATH (it was not started)."""
    missing: str = ""
    """The program that was not found, when `result` is None."""

    @property
    def passed(self) -> bool:
        return self.result is not None and self.result.ok

    def error(self) -> str:
        """One line: why the check was left out."""
        if self.result is None:
            if "/" in self.missing:
                return f"needs `{self.missing}`, which is not there (install the project's dependencies)"
            return f"needs `{self.missing}`, which is not on PATH"
        if self.result.ok:
            return ""
        how = (
            f"timed out after {self.result.duration:.0f}s"
            if self.result.timed_out
            else f"exit {self.result.exit_code}"
        )
        # A TOML comment may hold no control character: a coloured error would break the file.
        plain = _CONTROL.sub(" ", _ANSI.sub("", self.result.output_tail.replace("\t", " ")))
        lines = [line.strip() for line in plain.splitlines() if line.strip()]
        said = _last_telling(lines)
        text = f"{how}: {said}" if said else how
        return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…"


_WRAPPER_NOISE = re.compile(
    r"^(> |make(\[\d+\])?: \*\*\*|npm (error|ERR!)|\S*ELIFECYCLE|error Command failed|info Visit)"
)
"""What make and the node package managers add around a failing script's own words."""


def _last_telling(lines: list[str]) -> str:
    """The line of a command's output that says most about its failure: the last one naming an
    error, else the last one, leaving out what make or npm say around the script's own output."""
    lines = [line for line in lines if not _WRAPPER_NOISE.match(line)] or lines
    for line in reversed(lines):
        if re.search(r"error|fail|not found|no such|cannot|missing", line, re.IGNORECASE):
            return line
    return lines[-1] if lines else ""


def _read(path: Path) -> str | None:
    if not path.is_file() or path.is_symlink():
        return None
    if path.stat().st_size > _MAX_BUILD_FILE:
        raise UsageError(f"larger than {_MAX_BUILD_FILE} bytes; is it the right file?", path=path)
    return path.read_text(encoding="utf-8", errors="replace")


def _toml(path: Path) -> dict[str, Any] | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        at = re.search(r"\(at line (\d+)", str(exc))
        line = int(at.group(1)) if at else None
        raise ConfigError(f"not valid TOML: {exc}", path=path, line=line) from None


def _table(data: dict[str, Any] | None, *keys: str) -> dict[str, Any] | None:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data if isinstance(data, dict) else None


def _python_tool(root: Path, name: str) -> str:
    """A Python tool as the project runs it: from its own virtual environment when it has one."""
    for venv in (".venv", "venv"):
        if (root / venv / "bin" / name).is_file():
            return f"{venv}/bin/{name}"
    return name


def _python(root: Path) -> list[Candidate]:
    pyproject = _toml(root / PYPROJECT)
    tool = _table(pyproject, "tool") or {}
    found: list[Candidate] = []
    ruff = "ruff" in tool or any((root / f).is_file() for f in ("ruff.toml", ".ruff.toml"))
    if ruff:
        where = f"{PYPROJECT} [tool.ruff]" if "ruff" in tool else "ruff.toml"
        found.append(Candidate(f"{_python_tool(root, 'ruff')} check .", where))
    mypy_table = _table(tool, "mypy")
    mypy_ini = next((f for f in ("mypy.ini", ".mypy.ini") if (root / f).is_file()), None)
    if mypy_table is not None or mypy_ini:
        # Without `files` in its settings mypy checks nothing unless told where to look.
        files = mypy_table is not None and "files" in mypy_table
        command = _python_tool(root, "mypy") + ("" if files else " .")
        where = f"{PYPROJECT} [tool.mypy]" if mypy_table is not None else str(mypy_ini)
        found.append(Candidate(command, where))
    pytest_where = _pytest_config(root, tool)
    if pytest_where:
        found.append(Candidate(f"{_python_tool(root, 'python')} -m pytest -q", pytest_where))
    return found


def _pytest_config(root: Path, tool: dict[str, Any]) -> str:
    if "pytest" in tool:
        return f"{PYPROJECT} [tool.pytest.ini_options]"
    if (root / "pytest.ini").is_file():
        return "pytest.ini"
    for name, section in (("setup.cfg", "[tool:pytest]"), ("tox.ini", "[pytest]")):
        text = _read(root / name)
        if text is not None and section in text:
            return f"{name} {section}"
    if (root / "conftest.py").is_file():
        return "conftest.py"
    tests = root / "tests"
    if tests.is_dir() and any(tests.rglob("test_*.py")):
        return "tests/test_*.py"
    return ""


def _node(root: Path) -> list[Candidate]:
    path = root / "package.json"
    text = _read(path)
    if text is None:
        return []
    try:
        package = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"not valid JSON: {exc.msg}", path=path, line=exc.lineno) from None
    scripts = package.get("scripts") if isinstance(package, dict) else None
    scripts = scripts if isinstance(scripts, dict) else {}
    runner = _package_manager(root, package if isinstance(package, dict) else {})
    found: list[Candidate] = []
    typecheck = next((s for s in ("typecheck", "type-check", "tsc") if s in scripts), None)
    for name in NODE_SCRIPTS:
        script = typecheck if name == "typecheck" else name
        if script is None or not isinstance(scripts.get(script), str):
            if name == "typecheck" and (root / "tsconfig.json").is_file():
                # Installed tsc only: npx asks the registry first, even with --no-install, and
                # without the network that is a minute of retries.
                found.append(Candidate("node_modules/.bin/tsc --noEmit", "tsconfig.json"))
            continue
        command = f"{runner} test" if script == "test" else f"{runner} run {script}"
        found.append(Candidate(command, f"package.json scripts.{script}"))
    return found


def _package_manager(root: Path, package: dict[str, Any]) -> str:
    declared = package.get("packageManager")
    if isinstance(declared, str):
        name = declared.split("@", 1)[0]
        if name in ("npm", "pnpm", "yarn", "bun"):
            return name
    for lockfile, name in _LOCKFILES:
        if (root / lockfile).is_file():
            return name
    return "npm"


def _go(root: Path) -> list[Candidate]:
    if not (root / "go.mod").is_file():
        return []
    return [Candidate("go vet ./...", "go.mod"), Candidate("go test ./...", "go.mod")]


def _rust(root: Path) -> list[Candidate]:
    if not (root / "Cargo.toml").is_file():
        return []
    return [Candidate("cargo test", "Cargo.toml")]


def _make(root: Path) -> list[Candidate]:
    for name in ("GNUmakefile", "makefile", "Makefile"):
        text = _read(root / name)
        if text is None:
            continue
        targets = {t for rule in _MAKE_RULE.findall(text) for t in rule.split()}
        return [Candidate(f"make {t}", f"{name} target `{t}`") for t in MAKE_TARGETS if t in targets]
    return []


def discover(root: Path) -> list[Candidate]:
    """The checks the repository's build files name, in the order they would run (each family's
    cheapest first), without duplicates."""
    found: dict[str, Candidate] = {}
    for family in (_make, _python, _node, _go, _rust):
        for candidate in family(root):
            found.setdefault(candidate.command, candidate)
    return list(found.values())


# What a plan's global standards ask that a command can check (issue 17): the kind of check, and
# what to run when the project's build files name none of that kind.
_STANDARD_KINDS: tuple[tuple[re.Pattern[str], str, str | None], ...] = (
    (
        re.compile(r"\btype\s*script\b.*\bcompil|\btsc\b|\btype[- ]?check", re.IGNORECASE),
        "typecheck",
        "node_modules/.bin/tsc --noEmit",
    ),
    (re.compile(r"\bpython\b.*\bcompil", re.IGNORECASE), "compile", "python3 -m compileall -q ."),
    (
        re.compile(r"\blint(?:ing|er)?\s+(?:errors?|warnings?|clean|pass)|\bno\s+lint", re.IGNORECASE),
        "lint",
        None,
    ),
    (re.compile(r"\btests?\s+(?:are\s+)?(?:pass|passing|green)", re.IGNORECASE), "test", None),
    (re.compile(r"\bbuilds?\b.*\b(?:without\s+errors?|succeeds?|passes)", re.IGNORECASE), "build", None),
)
_KIND_WORDS = {
    "typecheck": ("typecheck", "type-check", "tsc", "mypy"),
    "compile": ("compileall",),
    "lint": ("lint", "ruff", "clippy", "go vet"),
    "test": ("test", "pytest"),
    "build": ("build",),
}


def standard_candidates(root: Path, plans: Iterable[Path], found: list[Candidate]) -> list[Candidate]:
    """The checks the plans' global standards ask for ("TypeScript compiles without errors"): the
    project's own check of that kind where its build files name one (said beside it), else a
    command of that kind where there is an obvious one. Each is tried like the others."""
    from orchestrator.planfile import parse_plan  # (only init reads plans here)

    extra: list[Candidate] = []
    for path in plans:
        plan = parse_plan(path)
        try:
            shown = path.resolve().relative_to(root).as_posix()
        except ValueError:
            shown = str(path)
        for standard in plan.standards:
            for pattern, kind, fallback in _STANDARD_KINDS:
                if not pattern.search(standard):
                    continue
                asked = f'{shown} asks "{standard}"'
                same = next(
                    (c for c in [*found, *extra] if any(w in c.command for w in _KIND_WORDS[kind])), None
                )
                if same is not None:
                    at = [*found, *extra].index(same)
                    merged = Candidate(same.command, f"{same.found_in}; {asked}")
                    if at < len(found):
                        found[at] = merged
                    else:
                        extra[at - len(found)] = merged
                elif fallback is not None:
                    extra.append(Candidate(fallback, asked))
                break
    return extra


def _missing_program(command: str, root: Path) -> str:
    """The program `command` starts with, when it is neither on PATH nor (a relative path such as
    node_modules/.bin/tsc) in the repository: not worth starting."""
    missing = missing_programs([command])
    if missing:
        return missing[0][1]
    first = command.split(maxsplit=1)[0]
    if "/" in first and not first.startswith("/") and not (root / first).is_file():
        return first
    return ""


def try_checks(
    candidates: Iterable[Candidate],
    root: Path,
    settings: Settings,
    sandbox: Sandbox,
    env: dict[str, str],
    on_tried: Callable[[Tried], None] | None = None,
) -> list[Tried]:
    """Run each candidate once in `root`, as a run runs its verification commands."""
    tried: list[Tried] = []
    for candidate in candidates:
        missing = _missing_program(candidate.command, root)
        if missing:
            outcome = Tried(candidate, None, missing)
        else:
            results = run_verification(
                [candidate.command],
                cwd=root,
                timeout=settings.timeout,
                sandbox=sandbox.with_network(settings.verify_network),
                env=env,
            ).results
            outcome = Tried(candidate, results[0])
        tried.append(outcome)
        if on_tried is not None:
            on_tried(outcome)
    return tried


def _toml_string(text: str) -> str:
    # A JSON string is a TOML basic string (both escape `"`, `\` and control characters alike).
    return json.dumps(text, ensure_ascii=False)


def config_text(tried: list[Tried], head: str | None) -> str:
    """orchestrate.toml as `init` writes it: the checks that passed, the others commented out."""
    at = f" at commit {head[:12]}" if head else ""
    lines = [
        "# Written by `orchestrate init`: the project's checks, run after every task's own. Each was",
        f"# run once{at}; those that failed are commented out with their error.",
    ]
    if not tried:
        lines.append(
            "# No build file named a check (pyproject.toml, package.json, go.mod, Cargo.toml, Makefile)"
        )
    lines.append("verify = [")
    for t in tried:
        if t.passed:
            lines.append(f"    {_toml_string(t.candidate.command)},  # {t.candidate.found_in}")
        else:
            lines.append(f"    # {_toml_string(t.candidate.command)},  # {t.candidate.found_in}")
            lines.append(f"    #   failed: {t.error()}")
    lines.append("]")
    return "\n".join(lines) + "\n"


def config_target(root: Path, force: bool) -> Path:
    """Where `init` writes, refusing (before anything runs) to replace settings the user has."""
    target = root / CONFIG_FILE
    if force:
        return target
    if target.exists() or target.is_symlink():
        raise UsageError(f"{target} already exists; pass --force to replace it")
    pyproject = _toml(root / PYPROJECT)
    if _table(pyproject, "tool", "orchestrate") is not None:
        raise UsageError(
            f"{root / PYPROJECT} already holds [tool.orchestrate]; an orchestrate.toml would replace it "
            "(pass --force to write one anyway)"
        )
    return target


@dataclass
class InitReport:
    path: Path
    tried: list[Tried]
    warnings: list[str]

    @property
    def passed(self) -> list[Tried]:
        return [t for t in self.tried if t.passed]


def init_project(
    repo: Path | None,
    force: bool,
    overrides: dict[str, Any],
    on_tried: Callable[[Tried], None] | None = None,
    on_start: Callable[[list[Candidate]], None] | None = None,
    plans: Iterable[Path] = (),
) -> InitReport:
    """`orchestrate init`: find the project's checks, try each once, write orchestrate.toml."""
    start = (repo or Path.cwd()).expanduser().resolve()
    root = find_repo_root(start)
    if root is None:
        raise UsageError(f"{start} is not inside a git repository; run `git init` there or pass --repo")
    target = config_target(root, force)
    try:
        settings = load_settings(root, overrides)
    except ConfigError:
        if not force:
            raise
        settings = load_settings(None, overrides)  # the file being replaced is the broken one
    git = GitRepo(root)
    warnings: list[str] = []
    dirty = git.status()
    if dirty:
        warnings.append(
            f"the work tree has uncommitted changes ({len(dirty)} path(s), e.g. {dirty[0][1]}): the checks "
            "ran on them, not on HEAD alone"
        )
    sandbox = run_sandbox(settings, RunStore.for_repo(root, settings.checkpoints_dir).root)
    if sandbox.warning:
        warnings.append(sandbox.warning)
    env = {name: value for name in settings.pass_env if (value := secret(name)) is not None}
    candidates = discover(root)
    candidates += standard_candidates(root, [p.expanduser() for p in plans], candidates)
    if on_start is not None:
        on_start(candidates)
    tried = try_checks(candidates, root, settings, sandbox, env, on_tried)
    left = sorted({path for _, path in git.status()} - {path for _, path in dirty})
    if left:
        more = f" and {len(left) - 5} more" if len(left) > 5 else ""
        warnings.append(
            f"the checks left changes in the work tree ({', '.join(left[:5])}{more}): a run refuses a "
            "dirty tree, and runs them after every task; add what they build to .gitignore"
        )
    write_config(target, config_text(tried, git.head()))
    return InitReport(target, tried, warnings)


def write_config(target: Path, text: str) -> None:
    """Atomically, replacing a link at `target` rather than writing through it."""
    handle, temp = tempfile.mkstemp(prefix=".orchestrate-init-", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        Path(temp).chmod(0o644)
        Path(temp).replace(target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
