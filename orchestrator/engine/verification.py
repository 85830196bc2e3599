"""Verification: a task's own commands, then the configured defaults, each in the repository with a
timeout that kills it and all it started. The first failure ends the round: the retry prompt gets
its output."""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from orchestrator.tools.environment import child_env, redact
from orchestrator.tools.sandbox import Sandbox
from orchestrator.tools.shell import ShellResult, run_shell, truncate_middle

OUTPUT_TAIL = 4000
_NOT_FOUND = 127

# Words that are not programs on PATH but are fine as the first word of a command.
_SHELL_WORDS = {
    "!", "[", "[[", "case", "cd", "command", "echo", "eval", "exec", "exit", "export", "false", "for",
    "if", "printf", "pwd", "read", "set", "source", ".", "test", "true", "type", "until", "while", "{",
    "(", "time", "env", "unset", "shopt", "trap", "wait", "let", "declare", "local",
}  # fmt: skip
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_code: int
    duration: float
    output_tail: str
    timed_out: bool = False
    preexisting: bool = False
    """It failed, as it already did when the run started: reported, not blamed on the task."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def not_found(self) -> bool:
        return self.exit_code == _NOT_FOUND and "not found" in self.output_tail

    def explain(self) -> str:
        """One line for a person: what failed and how."""
        if self.timed_out:
            return f"`{self.command}` timed out after {self.duration:.0f}s (killed with all it started)"
        if self.not_found:
            return f"`{self.command}`: command not found (exit 127); install it or fix the verify command"
        return f"`{self.command}` exited {self.exit_code}"


@dataclass
class VerificationOutcome:
    results: list[CommandResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.ok or r.preexisting for r in self.results)

    @property
    def evidence(self) -> bool:
        """Whether any command passed: a task whose every check failed before the run began is
        not verified by them."""
        return any(r.ok for r in self.results)

    @property
    def failure(self) -> CommandResult | None:
        return next((r for r in self.results if not r.ok and not r.preexisting), None)

    def failure_report(self) -> str:
        """What the retry prompt shows the agent."""
        failed = self.failure
        if failed is None:
            return ""
        if not failed.output_tail.strip():
            return f"{failed.explain()}; it printed nothing"
        return f"{failed.explain()}. Output (tail):\n{failed.output_tail}"


def commands_for(task_verify: Iterable[str], defaults: Iterable[str]) -> list[str]:
    """The task's own commands, then the configured ones it does not already have."""
    ordered = list(dict.fromkeys(task_verify))
    ordered.extend(c for c in defaults if c not in ordered)
    return ordered


def _from_shell(result: ShellResult, preexisting: bool = False) -> CommandResult:
    tail = result.output
    if len(tail) > OUTPUT_TAIL:
        tail, _ = truncate_middle(tail, OUTPUT_TAIL)
    return CommandResult(
        command=result.command,
        exit_code=result.exit_code,
        duration=result.duration,
        output_tail=redact(tail),
        timed_out=result.timed_out,
        preexisting=preexisting and not result.ok,
    )


def run_verification(
    commands: Iterable[str],
    cwd: Path,
    timeout: float,
    on_result: Callable[[CommandResult], None] | None = None,
    *,
    sandbox: Sandbox | None = None,
    env: Mapping[str, str] | None = None,
    preexisting: Collection[str] = (),
) -> VerificationOutcome:
    """Run each command until one fails; `on_result` hears each result as it comes. A command of
    `preexisting` (a default check that failed when the run started) failing again is recorded as
    such and does not stop the round.

    The commands are the plan's and the project's, but what they run (tests, build scripts) the
    agent may have written: they run in `sandbox` (the run's, when it confines) with the
    allow-listed environment plus `env`, never with our secrets."""
    outcome = VerificationOutcome()
    # Bytecode caches written by a check would otherwise land in the task's commit.
    child = child_env({**(env or {}), "PYTHONDONTWRITEBYTECODE": "1"})
    for written in commands:
        command, note = from_the_authors_machine(written)
        shell = run_shell(command, cwd=cwd, timeout=timeout, env=child, sandbox=sandbox)
        result = _from_shell(shell, written in preexisting)
        if note:
            result = replace(result, command=written, output_tail=f"note: {note}\n{result.output_tail}")
        outcome.results.append(result)
        if on_result is not None:
            on_result(result)
        if not result.ok and not result.preexisting:
            break
    return outcome


_CD_FIRST = re.compile(
    r"""^\s*cd\s+(?P<path>"[^"]+"|'[^']+'|[^\s;&|]+)\s*(?:&&|;)\s*(?P<rest>\S.*)$""", re.DOTALL
)


def from_the_authors_machine(command: str) -> tuple[str, str]:
    """`cd /Users/name/project && go test ./...` written where the plan was, with a path that does not
    exist here: the rest of the command runs from the repository root instead, with a note saying so.
    Any other command is run as written."""
    found = _CD_FIRST.match(command)
    if found is None:
        return command, ""
    path = found.group("path").strip("'\"")
    if not path.startswith("/") or Path(path).exists():
        return command, ""
    rest = found.group("rest")
    return rest, f"{path} does not exist here: ran `{rest}` from the repository root"


def first_program(command: str) -> str | None:
    """The program a command starts with, when it is a plain name we can look up on PATH."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    for word in words:
        if _ASSIGNMENT.match(word):
            continue
        if word in _SHELL_WORDS or not _PLAIN_NAME.match(word):
            return None
        return word
    return None


def missing_programs(commands: Iterable[str], path: str | None = None) -> list[tuple[str, str]]:
    """(command, program) for each command whose first program is not on PATH."""
    missing: list[tuple[str, str]] = []
    for command in commands:
        program = first_program(from_the_authors_machine(command)[0])
        if program is not None and shutil.which(program, path=path) is None:
            missing.append((command, program))
    return missing
