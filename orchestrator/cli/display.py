"""Reporters that show a run to a person or a program.

- LiveReporter: on a terminal, every step a permanent line and, under them, a compact live region
  (the running tasks, the totals).
- PlainReporter: the same lines, time-stamped, for logs and pipes.
- JsonlReporter: one JSON object per event on stdout, for programs (`--json`).

All three read the same events (orchestrator/domain/events.py); the board that the live region
and the closing summary draw from is built from those events alone, so what a person sees is what
the journal says.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from orchestrator.domain.events import (
    AgentActivity,
    AgentFinished,
    Event,
    FailFirstChecked,
    Notice,
    RunFinished,
    RunStarted,
    TaskFinished,
    TaskRetrying,
    TaskStarted,
    VerificationFinished,
)
from orchestrator.domain.usage import Usage

_STATUS_STYLE = {
    "pending": "dim",
    "running": "bold cyan",
    "verifying": "cyan",
    "retrying": "yellow",
    "done": "green",
    "unverified": "yellow",
    "failed": "bold red",
    "skipped": "magenta",
    "needs_human": "bold yellow",
    "already done": "dim green",
}


@dataclass
class TaskRow:
    id: str
    phase: str
    title: str
    status: str = "pending"
    attempt: int = 0
    started: float | None = None
    finished: float | None = None
    usage: Usage = field(default_factory=Usage)
    note: str = ""
    node: str = ""
    """The Ray node its attempt runs on (`--executor ray`): "<node id> (<address>)"."""

    def elapsed(self, now: float) -> float | None:
        if self.started is None:
            return None
        return (self.finished or now) - self.started


@dataclass
class RunBoard:
    """The state of a run as its events tell it."""

    run_id: str = ""
    plan: str = ""
    branch: str = ""
    agent: str = ""
    parallel: int = 1
    max_cost: float | None = None
    started: float = field(default_factory=time.time)
    rows: dict[str, TaskRow] = field(default_factory=dict)
    run_usage: Usage = field(default_factory=Usage)
    finished: RunFinished | None = None
    fail_first: dict[str, FailFirstChecked] = field(default_factory=dict)
    """Each task's latest fail-first finding (the summary names the doubtful ones)."""

    def row(self, task_id: str) -> TaskRow:
        if task_id not in self.rows:
            self.rows[task_id] = TaskRow(id=task_id, phase="", title=task_id)
        return self.rows[task_id]

    def apply(self, event: Event) -> None:
        match event:
            case RunStarted():
                self.run_id, self.plan, self.branch = event.run_id, event.plan, event.branch
                self.agent, self.parallel, self.started = event.agent, event.parallel, event.at
                self.max_cost = event.max_cost
                for info in event.tasks:
                    status = "already done" if info.settled else "pending"
                    self.rows[info.id] = TaskRow(
                        id=info.id, phase=info.phase, title=info.title, status=status
                    )
            case TaskStarted():
                row = self.row(event.task_id)
                row.status, row.attempt, row.note, row.node = "running", event.attempt, "", event.node
                if row.started is None:
                    row.started = event.at
                row.finished = None
            case AgentActivity() if event.kind == "model_call":
                row = self.row(event.task_id)
                if event.task_usage is not None:
                    row.usage = event.task_usage
                elif event.usage is not None:
                    row.usage = row.usage + event.usage
                if event.run_usage is not None:
                    self.run_usage = event.run_usage
                elif event.usage is not None:
                    self.run_usage = self.run_usage + event.usage
            case AgentFinished():
                self.row(event.task_id).status = "verifying"
            case VerificationFinished() if not event.ok:
                self.row(event.task_id).note = f"`{event.command}` exited {event.exit_code}"
            case FailFirstChecked():
                self.fail_first[event.task_id] = event
            case TaskRetrying():
                row = self.row(event.task_id)
                row.status, row.note = "retrying", event.reason
            case TaskFinished():
                row = self.row(event.task_id)
                row.status, row.finished = event.status, event.at
                row.attempt = max(row.attempt, event.attempts)
                if event.usage.calls or event.usage.cost_usd or not event.usage.cost_known:
                    row.usage = event.usage
                if event.commit:
                    row.note = event.commit[:10]
                elif event.reason:
                    row.note = event.reason
            case RunFinished():
                self.finished = event
                if event.usage.calls or event.usage.cost_usd or not event.usage.cost_known:
                    self.run_usage = event.usage
            case _:
                pass

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows.values():
            out[row.status] = out.get(row.status, 0) + 1
        return out


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes}m{seconds:02d}s"


def _tokens(usage: Usage) -> str:
    total = usage.total_tokens
    return f"{total:,}" if total else ""


def budget(max_cost: float | None) -> str:
    """A run's spending limit in words: every run states it, "none" included."""
    return "none" if max_cost is None else f"${max_cost:.2f}"


def _cost(usage: Usage) -> str:
    return usage.cost_text() if usage.cost_usd or not usage.cost_known else ""


ACTIVE = ("running", "verifying", "retrying")
OUTPUT_TAIL_LINES = 12
"""Of a failing check's output, the last lines printed under it: the cause, on screen and in logs."""


def _active_row(row: TaskRow, now: float, width: int) -> Text:
    """One running task: status, id (whole), attempt, time, spend, then its title cut to fit."""
    numbers = "  ".join(
        part
        for part in (
            f"try {row.attempt}" if row.attempt else "",
            f"on {row.node.split()[0]}" if row.node else "",
            _seconds(row.elapsed(now)),
            f"{_tokens(row.usage)} tokens" if row.usage.total_tokens else "",
            _cost(row.usage),
        )
        if part
    )
    line = Text(f"{row.status:<9} ", style=_STATUS_STYLE.get(row.status, ""))
    line.append(row.id, style="bold")
    line.append(f"  {numbers}" if numbers else "")
    room = width - line.cell_len - 2
    if room >= 8:
        title = Text(row.title, style="dim")
        title.truncate(room, overflow="ellipsis")
        line.append("  ")
        line.append_text(title)
    return line


def render_live(
    board: RunBoard, now: float | None = None, width: int = 120, height: int = 40
) -> RenderableType:
    """The live region under the permanent lines: one line per running task, then the totals.

    Compact on purpose: what happened (a failing check and its output, a retry and why, a warning)
    is printed above it as a permanent line, so nothing a user needs is overwritten."""
    now = time.time() if now is None else now
    active = [row for row in board.rows.values() if row.status in ACTIVE]
    room = max(height - 3, 1)
    lines: list[RenderableType] = [_active_row(row, now, width) for row in active[:room]]
    if len(active) > room:
        lines.append(Text(f"… and {len(active) - room} more running", style="dim"))
    counts = " · ".join(f"{n} {status}" for status, n in sorted(board.counts().items()))
    totals = (
        f"elapsed {_seconds(now - board.started)}   tokens {board.run_usage.total_tokens:,}   "
        f"cost {board.run_usage.cost_text()}   budget {budget(board.max_cost)}"
    )
    # One line where it fits; else two, each short enough for 60 columns.
    fits = len(counts) + 3 + len(totals) <= width
    lines += (
        [Text(f"{counts}   {totals}", style="dim")]
        if fits
        else [Text(counts, style="dim"), Text(totals, style="dim")]
    )
    return Group(*lines)


def summary_lines(board: RunBoard) -> list[str]:
    """The closing lines every reporter prints: outcome, counts, spend, how to go on."""
    end = board.finished
    if end is None:
        return []
    usage = board.run_usage
    lines = [
        f"run {end.run_id}: {end.status}. {end.done} done, {end.failed} failed, {end.skipped} skipped, "
        f"{end.remaining} remaining; {usage.total_tokens:,} tokens, {usage.cost_text()}"
    ]
    if end.message:
        lines.append(end.message)
    for row in board.rows.values():
        if row.status == "failed":
            lines.append(f"  failed {row.id}: {row.note}")
    for task_id in end.needs_human:
        lines.append(f"  needs a human {task_id}: {board.row(task_id).note}")
    lines += _doubtful_tests(board)
    if end.resume_hint:
        lines.append(f"continue with: {end.resume_hint}")
    return lines


def fail_first_line(result: str, tests: Sequence[str], note: str) -> str:
    """Fail-first's finding in one line for a person."""
    if result == "ok":
        return f"fail-first ok: the new tests fail without the change ({note})"
    if result == "passed-at-base":
        named = ", ".join(tests[:3]) + (f" and {len(tests) - 3} more" if len(tests) > 3 else "")
        return f"fail-first: the new tests ({named}) already pass without the change: no evidence it works"
    return f"fail-first {result}: {note}" if note else f"fail-first {result}"


def _doubtful_tests(board: RunBoard) -> list[str]:
    """Tasks whose new tests pass without their change, or whose diff weakened existing tests."""
    lines: list[str] = []
    for task_id, found in board.fail_first.items():
        if found.result == "passed-at-base":
            lines.append(f"  {task_id} {fail_first_line(found.result, found.tests, found.note)}")
        lines += [f"  {task_id} tests weakened: {finding}" for finding in found.weakened]
    return lines


def _fail_first_lines(event: FailFirstChecked) -> list[str]:
    lines: list[str] = []
    if event.result == "passed-at-base":
        lines.append(f"{event.task_id} warning: {fail_first_line(event.result, event.tests, event.note)}")
    elif event.result == "ok":
        lines.append(f"{event.task_id} {fail_first_line(event.result, event.tests, event.note)}")
    lines += [f"{event.task_id} warning: tests weakened: {finding}" for finding in event.weakened]
    return lines


def event_lines(board: RunBoard, event: Event) -> list[str]:
    """What an event says as permanent lines, the same in a log and above the live region: every
    step, the failing command with the tail of its output, why a task is retried, notices, the
    summary. `board` has applied the event already."""
    match event:
        case RunStarted():
            settled = sum(1 for t in event.tasks if t.settled)
            verb = "resuming" if event.resumed else "starting"
            return [
                f"{verb} run {event.run_id}: {event.plan} on branch {event.branch}, agent {event.agent}, "
                f"{len(event.tasks)} tasks ({settled} already done), budget {budget(event.max_cost)}"
            ]
        case TaskStarted():
            row = board.row(event.task_id)
            where = f" on Ray node {event.node}" if event.node else ""
            return [f"{event.task_id} started (attempt {event.attempt}){where}: {row.title}"]
        case AgentFinished():
            summary = f": {event.summary}" if event.summary else ""
            return [f"{event.task_id} agent {event.status}{summary[:200]}"]
        case VerificationFinished():
            verdict = "ok" if event.ok else f"FAILED (exit {event.exit_code})"
            lines = [f"{event.task_id} verify `{event.command}` {verdict} in {event.duration:.1f}s"]
            if not event.ok:
                tail = [line for line in event.output_tail.rstrip().splitlines() if line.strip()]
                lines += [f"    | {line}" for line in tail[-OUTPUT_TAIL_LINES:]]
            return lines
        case FailFirstChecked():
            return _fail_first_lines(event)
        case TaskRetrying():
            return [f"{event.task_id} retrying (attempt {event.next_attempt}): {event.reason}"]
        case TaskFinished():
            row = board.row(event.task_id)
            detail = f" {event.commit[:10]}" if event.commit else ""
            reason = f": {event.reason}" if event.reason else ""
            spend = f" ({_tokens(row.usage)} tokens, {_cost(row.usage)})" if row.usage.calls else ""
            return [f"{event.task_id} {event.status}{detail}{reason}{spend}"]
        case Notice():
            prefix = f"{event.task_id} " if event.task_id else ""
            label = "" if event.level == "info" else f"{event.level}: "
            return [f"{prefix}{label}{event.message}"]
        case RunFinished():
            return summary_lines(board)
        case _:
            return []


def _line_style(event: Event) -> str:
    match event:
        case Notice():
            return {"info": "", "warning": "bold yellow", "error": "bold red"}[event.level]
        case VerificationFinished() if not event.ok:
            return "red"
        case TaskRetrying():
            return "yellow"
        case FailFirstChecked() if event.result == "passed-at-base" or event.weakened:
            return "bold yellow"
        case TaskFinished():
            return _STATUS_STYLE.get(event.status, "")
        case _:
            return ""


class PlainReporter:
    """One line per step, for logs, pipes and CI."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.board = RunBoard()

    def emit(self, event: Event) -> None:
        self.board.apply(event)
        stamp = time.strftime("%H:%M:%S")
        for line in event_lines(self.board, event):
            self.stream.write(f"[{stamp}] {line}\n")
        self.stream.flush()


class JsonlReporter:
    """Every event as one JSON line on stdout (or the given stream)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout

    def emit(self, event: Event) -> None:
        self.stream.write(event.model_dump_json() + "\n")
        self.stream.flush()


class LiveReporter:
    """On a terminal, as cargo and uv do: every step a permanent line (the same as the plain log's),
    under them a compact live region of the running tasks and the totals; the summary stays."""

    def __init__(self, console: Console | None = None, refresh_per_second: float = 4) -> None:
        self.console = console if console is not None else Console(stderr=True)
        self.board = RunBoard()
        self._live = Live(
            get_renderable=self._render,
            console=self.console,
            refresh_per_second=refresh_per_second,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._running = False

    def _render(self) -> RenderableType:
        return render_live(self.board, width=self.console.width, height=self.console.height)

    def __enter__(self) -> LiveReporter:
        self._live.start(refresh=True)
        self._running = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._running:
            self._running = False
            self._live.stop()

    def emit(self, event: Event) -> None:
        self.board.apply(event)
        if isinstance(event, RunFinished):
            self.close()
        style = _line_style(event)
        for line in event_lines(self.board, event):
            # Printed through the live display: above its region, which is drawn again under it.
            self.console.print(Text(line, style=style if not line.startswith("    | ") else "dim"))
        if self._running:
            self._live.refresh()


def pick_reporter(
    json_output: bool, stream: IO[str] | None = None
) -> PlainReporter | JsonlReporter | LiveReporter:
    """JSONL for --json; a live table on a terminal; plain lines otherwise."""
    if json_output:
        return JsonlReporter()
    target = stream if stream is not None else sys.stderr
    if target.isatty():
        return LiveReporter(Console(file=target))
    return PlainReporter(target)
