"""Only persistence/ starts git (issue 11): a scan of every module's syntax tree outside it.

A static check, not a runtime one: it looks for the ways our code names git as a program (an
argv whose first item is "git" or git_program(), a call given the bare name "git", GitPython's
`import git`), which is what a new `subprocess.run(["git", ...])` in the CLI or the engine would
look like. The engine's git goes through GitRepo; the command an agent or a check runs is the
user's (it may well be git) and is not ours to route.
"""

from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path

import orchestrator
from orchestrator.persistence.gitconfig import SAFETY
from tests.conftest import orchestrate

PACKAGE = Path(orchestrator.__file__).parent
PERSISTENCE = PACKAGE / "persistence"


def _names_git(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant) and node.value == "git":
        return True
    if isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        return name == "git_program"
    return False


def git_starts(source: str) -> list[int]:
    """The lines of `source` that start git or reach for the means to."""
    lines: list[int] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.List, ast.Tuple)) and node.elts and _names_git(node.elts[0]):
            lines.append(node.lineno)
        elif isinstance(node, ast.Call) and node.args and _names_git(node.args[0]):
            lines.append(node.lineno)
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "git" for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] == "git" or any(a.name == "git_program" for a in node.names):
                lines.append(node.lineno)
        elif isinstance(node, ast.Attribute) and node.attr == "git_program":
            lines.append(node.lineno)
    return sorted(set(lines))


def test_only_persistence_starts_git() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if PERSISTENCE not in path.parents
        for line in git_starts(path.read_text(encoding="utf-8"))
    ]
    assert found == []


def raw_git_calls(source: str) -> list[int]:
    """The lines of `source` that hand GitRepo.git an argv of their own (`repo.git("ls-tree", ...)`)
    instead of calling a method that says what it does."""
    return sorted(
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "git"
    )


def test_git_plumbing_is_named_in_persistence() -> None:
    # The engine says what it wants of git (commit_tree, files_at, prune_worktrees...); the argv
    # lists, and what git's plumbing output means, stay in persistence/.
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if PERSISTENCE not in path.parents
        for line in raw_git_calls(path.read_text(encoding="utf-8"))
    ]
    assert found == []
    assert raw_git_calls('x = 1\nrepo.git("worktree", "prune")') == [2]


def test_the_scan_sees_each_way_of_starting_git() -> None:
    # What the CLI's demo did before its git moved to persistence/scratch.py, and the other shapes.
    samples = [
        'subprocess.run(["git", "init", "-q"], cwd=scratch, check=True)',
        'subprocess.run(("git", "log"), check=False)',
        "os.execvp('git', ['git', 'status'])",
        "subprocess.Popen([git_program(), 'status'])",
        "subprocess.Popen([repo_module.git_program(), 'status'])",
        "from orchestrator.persistence.repo import git_program",
        "import git",
        "from git import Repo",
        "shutil.which('git')",
    ]
    for sample in samples:
        assert git_starts(sample) == [1], sample
    assert git_starts('subprocess.run(["ls", "git"])\nrepo.git("status")\nx = "git"') == []


def _logging_git(folder: Path, log: Path) -> Path:
    """A `git` that writes each call to a file of its own in the folder `log` (its group, then each
    argument, NUL-ended) and runs the real git: first on PATH, it sees every git process orchestrate
    starts. A file per call: with --parallel, two gits write at once, and lines appended to one log
    by several writes each came out interleaved."""
    real = shutil.which("git")
    assert real is not None
    folder.mkdir()
    log.mkdir()
    script = folder / "git"
    script.write_text(
        "#!/bin/sh\n"
        # Field 5 of /proc/PID/stat is the process group: the call's first word says whether git
        # leads a group of its own (a terminal's Ctrl-C then does not reach it).
        "read -r _ _ _ _ group _ < /proc/$$/stat\n"
        f"record=$(mktemp '{log}/call.XXXXXXXX')\n"
        "{ if [ \"$group\" = $$ ]; then printf 'own-group\\0'; else printf 'shared\\0'; fi\n"
        '  printf \'%s\\0\' "$@"; } > "$record"\n'
        f"exec '{real}' \"$@\"\n"
    )
    script.chmod(0o755)
    return folder


def test_every_git_process_orchestrate_starts_carries_the_safety_settings_in_a_group_of_its_own(
    tmp_path: Path,
) -> None:
    # Dynamic, where the scan above is static: the demo (a scratch repository made, a parallel run
    # with worktrees, commits, merges) then status, runs and show, each git process seen as it starts.
    log = tmp_path / "git-calls"
    wrapper = _logging_git(tmp_path / "bin", log)
    env = {"PATH": f"{wrapper}{os.pathsep}{os.environ['PATH']}"}
    scratch = tmp_path / "demo"
    for args in (
        ("demo", "--agent", "scripted", "--parallel", "2", "--dir", str(scratch)),
        ("status", "plans/demo.md"),
        ("runs",),
        ("show",),
    ):
        done = orchestrate(scratch if args[0] != "demo" else tmp_path, *args, env=env)
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    calls = [record.read_text(errors="replace").split("\0")[:-1] for record in sorted(log.glob("call.*"))]
    assert len(calls) > 20
    unsafe = [" ".join(call) for call in calls if tuple(call[1 : len(SAFETY) + 1]) != SAFETY]
    assert unsafe == []
    in_our_group = [" ".join(call[1:]) for call in calls if call[0] != "own-group"]
    assert in_our_group == []


def test_only_the_ray_executor_imports_ray() -> None:
    """Ray is an optional extra: one module reaches for it (engine/ray_cluster.py, lazily), so a
    machine without it runs everything else."""
    importing: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name.split(".")[0] == "ray" for name in names):
                importing.append(str(path.relative_to(PACKAGE)))
    assert sorted(set(importing)) == ["engine/ray_cluster.py"]
