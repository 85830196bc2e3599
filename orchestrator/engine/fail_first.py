"""Checks that must fail first: a test an attempt added or changed is evidence only if it fails
without the change.

After a task's checks pass (engine.attempts), the checks that run tests are run once more, against
the commit the attempt started from with only the attempt's test changes applied, in a scratch tree
of their own; at least one must fail there. The result (journaled as `fail_first`):

    ok              a check failed at base: the tests tell the change from its absence
    passed-at-base  every check passed at base: the new tests would pass without the change
    none            no test added or changed, or no check of the task runs one
    off             `fail_first = "off"`: not run

`fail_first = "warn"` (the default) reports passed-at-base and goes on; `"require"` fails the
attempt with the reason, which the next attempt's prompt carries.

The same diff is read for what it does to tests that were there before: a test file deleted, a test
function removed, a skip added (pytest.mark.skip, it.skip, xit, t.Skip, @Disabled, ...), fewer
assertions. Those findings are reported (a warning, the journal, the run's summary) and handed to
the reviewer (`reviewer_text`); they never fail an attempt on their own, since tests are sometimes
rightly rewritten.

The scratch tree is a plain directory under the checkpoints folder (`.fail-first/<run>/...`),
written from git objects (persistence.GitRepo.export_with): no worktree, branch or ref
is made, and the task's workspace and the run's branch are never touched. It is removed when the
base run ends; one a kill left behind is removed when the next run or resume starts
(`clear_leftovers`). Dependency folders the checks need and no commit holds (a virtualenv,
node_modules) are linked in from the workspace, read-only under bubblewrap.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from orchestrator.config import Settings
from orchestrator.domain import transitions as t
from orchestrator.domain.plan import Expectation, Task
from orchestrator.domain.state import TaskRecord
from orchestrator.engine.crash import crash_point
from orchestrator.engine.recorder import Recorder
from orchestrator.engine.stop import StopToken
from orchestrator.engine.verification import CommandResult, run_verification
from orchestrator.engine.worktrees import safe_name
from orchestrator.persistence.repo import GitRepo, TreeChange
from orchestrator.tools.sandbox import Sandbox

SCRATCH_DIR = ".fail-first"
"""Under the checkpoints folder (kept out of git): <checkpoints>/.fail-first/<run>/<task>.<attempt>."""

CRASH_POINTS = (
    "mid_fail_first",  # the scratch tree made and the first check at base run, nothing journaled
    "after_fail_first",  # fail_first journaled, task_verified not
)
"""Where the crash harness may kill a task that added tests (tests/crash/test_fail_first_crash.py)."""

# -- what is a test ------------------------------------------------------------------------------

_TEST_NAME = re.compile(
    r"""(?x)
    ^(?: test_.+\.(?:py|rb|sh|exs?)
       | .+_test\.(?:py|go|rb|exs?|dart|sh|c|cc|cpp|rs|js|ts)
       | conftest\.py
       | .+\.(?:test|spec)\.[cm]?[jt]sx?
       | .+_spec\.rb
       | .+(?:Test|Tests|IT|Spec)\.(?:java|kt|kts|scala|cs|swift|groovy)
       | .+\.bats
    )$"""
)
_TEST_FOLDERS = frozenset({"test", "tests", "__tests__", "spec", "specs", "testing", "e2e"})
_CODE = frozenset(
    ".py .js .jsx .ts .tsx .mjs .cjs .go .rs .java .kt .kts .scala .rb .php .cs .swift .ex .exs "
    ".c .cc .cpp .h .hpp .sh .bats .dart .groovy .clj .lua".split()
)


def is_test_file(path: str, named: Iterable[str] = ()) -> bool:
    """Whether `path` (from the top of the tree) holds tests: by the ecosystems' own naming
    (test_*.py, *_test.go, *.test.ts, FooTest.java, ...), code inside a tests folder (tests/,
    __tests__/, spec/), or a file the unit names as one of its tests (`named`)."""
    if path in set(named):
        return True
    pure = PurePosixPath(path)
    if _TEST_NAME.match(pure.name):
        return True
    return pure.suffix in _CODE and any(part in _TEST_FOLDERS for part in pure.parts[:-1])


_RUNNER = re.compile(
    r"""(?x)
    (?:^|[\s;&|(/])
    (?: py\.?test | unittest | nose2? | tox | nox | jest | vitest | mocha | ava | karma | jasmine
      | playwright | cypress | rspec | phpunit | bats | ctest | pytest-\w+
      | go\s+test | cargo\s+(?:test|nextest) | dotnet\s+test | swift\s+test | deno\s+test | bun\s+test
      | mix\s+test | mvn | mvnw | gradlew? | sbt | rake
      | (?:npm|pnpm|yarn|bun)\s+(?:run\s+)?(?:test|spec)[\w:-]*
      | (?:make|just|task)\s+(?:[-\w]+\s+)*?(?:test|tests|check|spec)[\w-]*
    )(?=$|[\s;&|)])"""
)


def runs_tests(command: str, tests: Iterable[str]) -> bool:
    """Whether `command` runs tests: a test runner (pytest, go test, npm test, make test, ...), or a
    command that names one of `tests` (`python3 tests/test_x.py`, `python -m unittest
    tests.test_x`). A `grep` or a `test -f` does not."""
    if _RUNNER.search(command):
        return True
    for path in tests:
        module = path.removesuffix(".py").replace("/", ".")
        if path in command or (path.endswith(".py") and module in command):
            return True
    return False


# -- what a diff does to existing tests ----------------------------------------------------------


@dataclass(frozen=True)
class _Dialect:
    tests: re.Pattern[str]
    """A test's definition; group 1, when there is one, its name."""
    skips: re.Pattern[str]
    asserts: re.Pattern[str]
    comment: tuple[str, ...]


_PYTHON = _Dialect(
    tests=re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]+(test\w*)", re.MULTILINE),
    skips=re.compile(
        r"@pytest\.mark\.(?:skip|skipif|xfail)\b|\bpytest\.(?:skip|xfail)\(|@unittest\.(?:skip|skipIf|skipUnless|expectedFailure)\b"
        r"|\bself\.skipTest\(|\braise\s+(?:unittest\.)?SkipTest\b"
    ),
    asserts=re.compile(r"\bassert\b|\.assert\w*\(|\bpytest\.(?:raises|warns|fail)\b|\bself\.fail\("),
    comment=("#",),
)
_JS = _Dialect(
    tests=re.compile(
        r"(?<![.\w])[xf]?(?:it|test)(?:\.(?:skip|only|todo|each\([^)]*\)))?\s*\(\s*(?:'([^']*)'|\"([^\"]*)\"|`([^`]*)`)"
    ),
    skips=re.compile(
        r"\b(?:it|test|describe|suite|context)\.(?:skip|todo|only)\b|(?<![.\w])x(?:it|test|describe)\s*\("
        r"|(?<![.\w])f(?:it|describe)\s*\("
    ),
    asserts=re.compile(
        r"\bexpect\s*\(|\bassert\b|\.should\b|\bt\.(?:is|not|deepEqual|true|false|truthy|falsy|throws\w*|assert)\("
    ),
    comment=("//", "*", "/*"),
)
_GO = _Dialect(
    tests=re.compile(r"^func[ \t]+(Test\w+)[ \t]*\(", re.MULTILINE),
    skips=re.compile(r"\bt\.Skip(?:f|Now)?\("),
    asserts=re.compile(r"\bt\.(?:Error|Errorf|Fatal|Fatalf|Fail|FailNow)\(|\b(?:assert|require)\.\w+\("),
    comment=("//",),
)
_JVM = _Dialect(
    tests=re.compile(
        r"@(?:Test|ParameterizedTest)\b[^\n]*\n(?:\s*@[^\n]*\n)*\s*(?:public\s+|fun\s+|void\s+)*(?:void\s+)?`?(\w+)"
    ),
    skips=re.compile(r"@(?:Disabled|Ignore)\b|\bassumeTrue\("),
    asserts=re.compile(r"\bassert\w*\s*\(|\bverify\s*\(|\bshould\w*\b"),
    comment=("//", "*", "/*"),
)
_RUST = _Dialect(
    tests=re.compile(
        r"#\[(?:tokio::)?test\][^\n]*\n(?:\s*#\[[^\n]*\n)*\s*(?:pub\s+)?(?:async\s+)?fn\s+(\w+)"
    ),
    skips=re.compile(r"#\[ignore\b"),
    asserts=re.compile(r"\b(?:debug_)?assert(?:_eq|_ne|_matches)?!\s*\(|#\[should_panic\b"),
    comment=("//",),
)
_RUBY = _Dialect(
    tests=re.compile(
        r"^[ \t]*(?:it|specify|scenario|test)[ \t(]+['\"]([^'\"]*)|^[ \t]*def[ \t]+(test_\w+)", re.MULTILINE
    ),
    skips=re.compile(r"^[ \t]*(?:skip|pending|xit)\b", re.MULTILINE),
    asserts=re.compile(r"\bexpect\s*[({]|\bassert\w*\b|\.should\b|\brefute\w*\b"),
    comment=("#",),
)
_ANY = _Dialect(
    tests=re.compile(r"^[ \t]*(?:def|func|function|fn)[ \t]+(test\w*)", re.MULTILINE | re.IGNORECASE),
    skips=re.compile(r"\bskip\w*\b", re.IGNORECASE),
    asserts=re.compile(r"\bassert\w*\b|\bexpect\s*\("),
    comment=("#", "//"),
)
_DIALECTS = {
    ".py": _PYTHON,
    ".go": _GO,
    ".rs": _RUST,
    ".rb": _RUBY,
    **dict.fromkeys((".js", ".jsx", ".ts", ".tsx", ".mjs", ".cjs"), _JS),
    **dict.fromkeys((".java", ".kt", ".kts", ".scala", ".groovy"), _JVM),
}


@dataclass
class _Reading:
    names: Counter[str] = field(default_factory=Counter)
    tests: int = 0
    skips: Counter[str] = field(default_factory=Counter)
    asserts: int = 0


def _read(path: str, text: str) -> _Reading:
    dialect = _DIALECTS.get(PurePosixPath(path).suffix, _ANY)
    # Commented-out lines are no test: a test turned into a comment counts as removed.
    code = "\n".join("" if line.lstrip().startswith(dialect.comment) else line for line in text.splitlines())
    reading = _Reading()
    for found in dialect.tests.finditer(code):
        reading.tests += 1
        name = next((g for g in found.groups() if g), None)
        if name:
            reading.names[name] += 1
    reading.skips = Counter(" ".join(m.group(0).split()) for m in dialect.skips.finditer(code))
    reading.asserts = sum(1 for _ in dialect.asserts.finditer(code))
    return reading


def _some(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def weakened(path: str, before: str | None, after: str | None) -> list[str]:
    """What the change of one test file from `before` to `after` (None: absent) does to the tests
    that were in it, one finding a line; [] when it only adds or keeps."""
    if before is None:
        return []
    old = _read(path, before)
    if after is None:
        what = f" ({old.tests} test{'s' if old.tests != 1 else ''})" if old.tests else ""
        return [f"{path}: test file deleted{what}"]
    new = _read(path, after)
    findings: list[str] = []
    removed = sorted((old.names - new.names).elements())
    if removed:
        findings.append(f"{path}: test{'s' if len(removed) > 1 else ''} removed: {_some(removed)}")
    elif new.tests < old.tests:
        findings.append(f"{path}: {old.tests - new.tests} test(s) removed ({old.tests} -> {new.tests})")
    added_skips = sorted((new.skips - old.skips).elements())
    if added_skips:
        findings.append(f"{path}: skip added: {_some(added_skips, 3)}")
    if new.asserts < old.asserts:
        findings.append(f"{path}: assertions {old.asserts} -> {new.asserts}")
    return findings


def weakened_tests(
    changes: Sequence[tuple[str, str]], content: Callable[[str, str], str | None], named: Iterable[str] = ()
) -> list[str]:
    """The findings of `weakened` over a diff: `changes` are (status, path), status 'A', 'M' or 'D'
    as GitRepo.changes_between gives it; `content(side, path)` a file's text on side 'before' or
    'after'. A test file deleted here and added there with the same name or the same text was moved:
    it is compared with its new self."""
    named = list(named)
    tests = [(status, path) for status, path in changes if is_test_file(path, named)]
    added = [path for status, path in tests if status == "A"]
    findings: list[str] = []
    for status, path in tests:
        if status == "A":
            continue
        before = content("before", path)
        after = content("after", path) if status == "M" else None
        if status == "D":
            moved = _moved_to(path, before, added, content)
            if moved is not None:
                added.remove(moved)
                after = content("after", moved)
        findings.extend(weakened(path, before, after))
    return findings


def _moved_to(
    path: str, before: str | None, added: list[str], content: Callable[[str, str], str | None]
) -> str | None:
    name = PurePosixPath(path).name
    for candidate in added:
        if content("after", candidate) == before:
            return candidate
    return next((c for c in added if PurePosixPath(c).name == name), None)


# -- the base run --------------------------------------------------------------------------------

DEPENDENCY_FOLDERS = frozenset(
    {".venv", "venv", "node_modules", ".tox", ".nox", "bower_components", "jspm_packages", ".yarn"}
)
"""Top-level folders of installed dependencies, ignored by git, that the checks at base may need:
linked into the scratch tree from the workspace. Build output (dist/, target/) is not: it may hold
the attempt's own code."""


@dataclass(frozen=True)
class Verdict:
    """What fail-first says about an attempt whose checks passed."""

    reason: str = ""
    """Why the attempt fails (fail_first = "require" and the tests passed at base); "" when it may go on."""
    stopped: bool = False
    """The run's stop cut the base run short: no verdict (resume verifies again)."""


class FailFirst:
    """Runs an attempt's test checks at base and reads its diff for weakened tests (see the module)."""

    def __init__(
        self,
        *,
        settings: Settings,
        recorder: Recorder,
        sandbox: Sandbox,
        env: Callable[[], dict[str, str]],
        scratch_root: Path,
        stop: StopToken,
    ):
        self.settings = settings
        self.recorder = recorder
        self.sandbox = sandbox
        self.env = env
        self.scratch_root = scratch_root
        """<checkpoints>/.fail-first: each run's scratch trees below it."""
        self.stop = stop

    def clear_leftovers(self) -> None:
        """Remove the scratch trees a killed run left (the run lock is held: none is in use)."""
        if self.scratch_root.is_symlink():  # not ours: nothing is deleted or written through it
            self.scratch_root.unlink()
        shutil.rmtree(self.scratch_root, ignore_errors=True)

    def check(
        self,
        task: Task,
        attempt: int,
        ws_repo: GitRepo,
        tree: str,
        passed: Sequence[CommandResult],
        workspace: Path,
    ) -> Verdict:
        """Fail-first for an attempt whose checks (`passed`) passed on `tree`, journaled as
        `fail_first` before the verdict is acted on."""
        base = ws_repo.head_now()
        assert base is not None  # pre-flight refuses a repository without commits
        changes = ws_repo.changes_between(base, tree)
        changed_tests = [c for c in changes if is_test_file(c.path, task.test_files)]
        tests = [(c.status, c.path) for c in changed_tests]
        if not tests:
            return Verdict()  # no test touched: nothing to journal (the record's absence reads as none)

        def content(side: str, path: str) -> str | None:
            data = ws_repo.blob_at(base if side == "before" else tree, path)
            return None if data is None else data.decode("utf-8", errors="replace")

        findings = weakened_tests(tests, content, task.test_files)
        changed = [path for status, path in tests if status != "D"]
        # The checks that passed and run tests, and the plan's own red step (`Run: pytest ...`,
        # `Expected: FAIL`): written to fail before the change.
        red_steps = [c.command for c in task.checks if c.expect is Expectation.FAIL]
        runs = [r.command for r in passed if r.ok and runs_tests(r.command, changed)]
        runs += [c for c in red_steps if c not in runs and runs_tests(c, changed)]
        record = {"task": task.id, "attempt": attempt, "base": base, "tests": changed, "weakened": findings}
        if self.settings.fail_first == "off":
            return self._record(t.FailFirstChecked(**record, result="off"), task)
        if not changed:
            note = "the attempt added or changed no test (it deleted some)"
            return self._record(t.FailFirstChecked(**record, result="none", note=note), task)
        if len(changed_tests) == len(changes):
            # A task that only writes tests (of code that is there): nothing to fail without.
            note = "the attempt changed only tests: there is no change for them to fail without"
            return self._record(t.FailFirstChecked(**record, result="none", note=note), task)
        if not runs:
            note = f"no check of the task runs the tests it changed ({_some(changed, 3)})"
            return self._record(t.FailFirstChecked(**record, result="none", note=note), task)
        results = self._at_base(task, attempt, ws_repo, base, changed_tests, runs, workspace)
        checks = [
            t.CheckAtBase(
                command=r.command,
                exit_code=r.exit_code,
                ok=r.ok,
                duration=round(r.duration, 3),
                timed_out=r.timed_out,
                output_tail=r.output_tail,
            )
            for r in results
        ]
        failed = next((r for r in results if not r.ok), None)
        if failed is not None and failed.exit_code < 0 and self.stop.stopping:
            return Verdict(stopped=True)
        if failed is None:
            result, note = "passed-at-base", "every check that runs them passed at base"
        elif failed.not_found:
            result, note = "none", f"`{failed.command}` could not run at base (command not found)"
        else:
            result, note = "ok", f"`{failed.command}` failed at base ({_how(failed)})"
        transition = t.FailFirstChecked(**record, result=result, checks=checks, note=note)
        return self._record(transition, task)

    def _record(self, transition: t.FailFirstChecked, task: Task) -> Verdict:
        self.recorder.record(transition, durable=False)  # synced with the verdict that follows
        crash_point("after_fail_first", task.id)
        if transition.result == "passed-at-base" and self.settings.fail_first == "require":
            return Verdict(reason=passed_at_base_reason(transition))
        return Verdict()

    def _at_base(
        self,
        task: Task,
        attempt: int,
        ws_repo: GitRepo,
        base: str,
        tests: Sequence[TreeChange],
        commands: list[str],
        workspace: Path,
    ) -> list[CommandResult]:
        """Run `commands` in a scratch tree holding `base` with the attempt's changes to `tests`
        applied; the scratch tree is gone when this returns (or, after a kill, when the next run
        starts)."""
        folder = self.scratch_root / safe_name(self.recorder.state.run_id)
        scratch = folder / f"{safe_name(task.id)}.{attempt}"
        index = folder / f"{safe_name(task.id)}.{attempt}.index"
        for made in (self.scratch_root, folder, scratch):
            if made.is_symlink():  # not ours: nothing is deleted or written through it
                made.unlink()
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            ws_repo.export_with(base, tests, scratch, index)
            if any((workspace / name).is_dir() for name in DEPENDENCY_FOLDERS):
                for name in set(ws_repo.ignored_entries()) & DEPENDENCY_FOLDERS:
                    (scratch / name).symlink_to(workspace / name, target_is_directory=True)
            results: list[CommandResult] = []

            def heard(result: CommandResult) -> None:
                results.append(result)
                crash_point("mid_fail_first", task.id)

            run_verification(
                commands,
                cwd=scratch,
                timeout=self.settings.timeout,
                on_result=heard,
                sandbox=self.sandbox.with_network(self.settings.verify_network),
                env={**self.env(), **_scratch_env(scratch)},
            )
            return results
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            index.unlink(missing_ok=True)
            _remove_if_empty(folder)


def _scratch_env(scratch: Path) -> dict[str, str]:
    """Python imports the scratch tree's code, not the workspace's through an editable install
    (PYTHONPATH comes before site-packages); git does not climb out of the scratch tree into the
    repository holding the checkpoints folder."""
    paths = [str(scratch)] + ([str(scratch / "src")] if (scratch / "src").is_dir() else [])
    inherited = os.environ.get("PYTHONPATH", "")
    return {
        "PYTHONPATH": os.pathsep.join([*paths, inherited] if inherited else paths),
        "GIT_CEILING_DIRECTORIES": str(scratch.parent),
    }


def _remove_if_empty(folder: Path) -> None:
    for directory in (folder, folder.parent):
        try:
            directory.rmdir()
        except OSError:
            return


def _how(result: CommandResult) -> str:
    return "timed out" if result.timed_out else f"exit {result.exit_code}"


def passed_at_base_reason(found: t.FailFirstChecked) -> str:
    """The attempt's failure under fail_first = "require": what the next prompt tells the agent."""
    ran = ", ".join(f"`{check.command}`" for check in found.checks)
    return (
        f"fail-first: the tests this attempt added or changed ({_some(found.tests, 5)}) pass against "
        f"the commit it started from, with only those test changes applied ({ran} passed there too): "
        "they do not show that the change works. Make them test the new behaviour, so that they fail "
        "without the change and pass with it."
    )


def reviewer_text(record: TaskRecord) -> str:
    """What fail-first found on the task's latest attempt, for the reviewer's prompt ("" when there
    is nothing to say): whether its tests fail without the change, and what its diff does to tests
    that were there before (deleted, skipped, fewer assertions)."""
    found = record.fail_first
    if found is None:
        return ""
    lines: list[str] = []
    tests = _some(found.tests, 5)
    if found.result == "ok":
        lines.append(
            f"Fail-first: the tests this change adds or changes ({tests}) fail against the commit it "
            "started from with only the test changes applied, and pass with the change."
        )
    elif found.result == "passed-at-base":
        lines.append(
            f"Fail-first: the tests this change adds or changes ({tests}) PASS against the commit it "
            "started from with only the test changes applied: they do not show that the change "
            "works. Do not take them as evidence for any criterion."
        )
    if found.weakened:
        lines.append(
            "The change weakens tests that were already there (weigh this against the criteria; a "
            "test may be rightly rewritten, but it must say why):"
        )
        lines.extend(f"- {finding}" for finding in found.weakened)
    return "\n".join(lines)
