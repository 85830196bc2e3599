"""The tools a sub-agent may call, as JSON-schema specs plus one dispatcher, confined to a workspace.

A tool that fails returns an error result the model sees; it never raises into the agent loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.tools import files
from orchestrator.tools.environment import child_env, redact
from orchestrator.tools.sandbox import Sandbox
from orchestrator.tools.shell import run_shell
from orchestrator.tools.workspace import OutsideWorkspace, Workspace

COMMAND_OUTPUT_LIMIT = 20_000


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class ToolResult:
    text: str
    is_error: bool = False
    summary: str = ""
    """One line for the journal: what was called, on what, and how it went."""


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


_PATH = {"type": "string", "description": "Path relative to the workspace root."}

SPECS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "read_file",
        "Read a text file. Lines come numbered from 1 (the number and the tab after it are not part of "
        "the file). Give start_line/end_line to read part of a long file.",
        _object(
            {"path": _PATH, "start_line": {"type": "integer"}, "end_line": {"type": "integer"}}, ["path"]
        ),
    ),
    ToolSpec(
        "write_file",
        "Create a file or overwrite it completely with `content`. Parent directories are created.",
        _object({"path": _PATH, "content": {"type": "string"}}, ["path", "content"]),
    ),
    ToolSpec(
        "edit_file",
        "Replace old_string with new_string in a file. old_string must match the file exactly "
        "(whitespace included) and occur exactly once, unless replace_all is true.",
        _object(
            {
                "path": _PATH,
                "old_string": {"type": "string"},
                "new_string": {"type": "string"},
                "replace_all": {"type": "boolean"},
            },
            ["path", "old_string", "new_string"],
        ),
    ),
    ToolSpec(
        "list_dir",
        "List a directory (directories end with /). recursive=true lists the whole tree below it.",
        _object({"path": _PATH, "recursive": {"type": "boolean"}}, []),
    ),
    ToolSpec(
        "search",
        "Search file contents with a Python regular expression; answers `path:line: text`. "
        "Optional path (file or directory) and glob (e.g. '*.py') narrow it.",
        _object({"pattern": {"type": "string"}, "path": _PATH, "glob": {"type": "string"}}, ["pattern"]),
    ),
    ToolSpec(
        "run_command",
        "Run a bash command in the workspace root (tests, builds, git status). It has a timeout, no "
        "secrets in its environment, and long output is cut in the middle.",
        _object({"command": {"type": "string"}}, ["command"]),
    ),
)


READ_ONLY_TOOLS = ("read_file", "list_dir", "search", "run_command")
"""What a reviewer may use: it reads and runs, and changes nothing (its commands run against a
read-only copy of the tree)."""


def _arg(args: Mapping[str, Any], name: str, kind: type, default: Any = None, required: bool = True) -> Any:
    if name not in args or args[name] is None:
        if required:
            raise files.ToolError(f"missing required argument '{name}'")
        return default
    value = args[name]
    # bool is an int subclass; a line number given as true is a mistake worth telling apart.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise files.ToolError(f"argument '{name}' must be a {kind.__name__}, got {type(value).__name__}")
    return value


class Toolset:
    """The tools bound to one workspace, one command timeout, one extra environment and a sandbox."""

    def __init__(
        self,
        workspace: Path,
        command_timeout: float,
        env: Mapping[str, str] | None = None,
        sandbox: Sandbox | None = None,
        *,
        read_only: bool = False,
    ):
        """`read_only`: only READ_ONLY_TOOLS exist (a reviewer's set)."""
        self.workspace = Workspace(workspace, sandbox.hidden if sandbox is not None else ())
        self.command_timeout = command_timeout
        self.env = dict(env or {})
        self.sandbox = sandbox
        self._handlers: dict[str, Callable[[Mapping[str, Any]], tuple[str, str]]] = {
            "read_file": self._read,
            "write_file": self._write,
            "edit_file": self._edit,
            "list_dir": self._list,
            "search": self._search,
            "run_command": self._run,
        }
        if read_only:
            self._handlers = {name: self._handlers[name] for name in READ_ONLY_TOOLS}

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        return tuple(spec for spec in SPECS if spec.name in self._handlers)

    def call(self, name: str, args: object) -> ToolResult:
        """Run one tool; every failure becomes an error result, and every text is redacted."""
        handler = self._handlers.get(name)
        if handler is None:
            known = ", ".join(self._handlers)
            return ToolResult(f"unknown tool '{name}'; the tools are: {known}", True, f"{name}: unknown tool")
        if not isinstance(args, Mapping):
            return ToolResult("tool input must be a JSON object", True, f"{name}: bad input")
        try:
            text, summary = handler(args)
        except (files.ToolError, OutsideWorkspace) as exc:
            return ToolResult(redact(str(exc)), True, redact(f"{name}: {exc}")[:200])
        except OSError as exc:
            message = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
            return ToolResult(redact(message), True, redact(f"{name}: {message}")[:200])
        except Exception as exc:  # noqa: BLE001 - a tool's bug must reach the model as an error, not end the run
            message = f"the tool failed: {type(exc).__name__}: {exc}"
            return ToolResult(redact(message), True, redact(f"{name}: {message}")[:200])
        return ToolResult(redact(text), False, redact(summary)[:200])

    def _read(self, args: Mapping[str, Any]) -> tuple[str, str]:
        path = _arg(args, "path", str)
        start = _arg(args, "start_line", int, required=False)
        end = _arg(args, "end_line", int, required=False)
        return files.read_file(self.workspace, path, start, end), f"read_file {path}"

    def _write(self, args: Mapping[str, Any]) -> tuple[str, str]:
        path = _arg(args, "path", str)
        return files.write_file(self.workspace, path, _arg(args, "content", str)), f"write_file {path}"

    def _edit(self, args: Mapping[str, Any]) -> tuple[str, str]:
        path = _arg(args, "path", str)
        text = files.edit_file(
            self.workspace,
            path,
            _arg(args, "old_string", str),
            _arg(args, "new_string", str),
            bool(_arg(args, "replace_all", bool, False, required=False)),
        )
        return text, f"edit_file {path}"

    def _list(self, args: Mapping[str, Any]) -> tuple[str, str]:
        path = _arg(args, "path", str, ".", required=False)
        recursive = bool(_arg(args, "recursive", bool, False, required=False))
        return files.list_dir(self.workspace, path, recursive), f"list_dir {path}"

    def _search(self, args: Mapping[str, Any]) -> tuple[str, str]:
        pattern = _arg(args, "pattern", str)
        path = _arg(args, "path", str, ".", required=False)
        glob = _arg(args, "glob", str, required=False)
        return files.search(self.workspace, pattern, path, glob), f"search {pattern!r} in {path}"

    def _run(self, args: Mapping[str, Any]) -> tuple[str, str]:
        command = _arg(args, "command", str)
        result = run_shell(
            command,
            cwd=self.workspace.root,
            timeout=self.command_timeout,
            env=child_env(self.env),
            output_limit=COMMAND_OUTPUT_LIMIT,
            sandbox=self.sandbox,
        )
        notes: list[str] = []
        if result.timed_out:
            notes.append(f"timed out after {self.command_timeout:g}s; killed with all it started")
        if result.truncated:
            notes.append(f"output cut to {COMMAND_OUTPUT_LIMIT} characters (head and tail kept)")
        header = f"exit code: {result.exit_code}" + "".join(f"\nnote: {n}" for n in notes)
        short = command if len(command) <= 80 else command[:77] + "..."
        return f"{header}\n{result.output}", f"run_command {short!r} -> exit {result.exit_code}"
