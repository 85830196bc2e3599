"""Reporters that show a run to a person or a program.

- LiveReporter: a rich live table on a terminal (task, phase, status, attempt, elapsed, tokens, cost).
- PlainReporter: one line per step, for logs and pipes.
- JsonlReporter: one JSON object per event on stdout, for programs (`--json`).

All three read the same events (orchestrator/domain/events.py); the board that the live table
and the closing summary draw from is built from those events alone, so what a person sees is what
the journal says.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orchestrator.domain.events import (
    AgentActivity,
    AgentFinished,
    Event,
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
    started: float = field(default_factory=time.time)
    rows: dict[str, TaskRow] = field(default_factory=dict)
    run_usage: Usage = field(default_factory=Usage)
    finished: RunFinished | None = None

    def row(self, task_id: str) -> TaskRow:
        if task_id not in self.rows:
            self.rows[task_id] = TaskRow(id=task_id, phase="", title=task_id)
        return self.rows[task_id]

    def apply(self, event: Event) -> None:
        match event:
            case RunStarted():
                self.run_id, self.plan, self.branch = event.run_id, event.plan, event.branch
                self.agent, self.parallel, self.started = event.agent, event.parallel, event.at
                for info in event.tasks:
                    status = "already done" if info.settled else "pending"
                    self.rows[info.id] = TaskRow(
                        id=info.id, phase=info.phase, title=info.title, status=status
                    )
            case TaskStarted():
                row = self.row(event.task_id)
                row.status, row.attempt, row.note = "running", event.attempt, ""
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
            case TaskRetrying():
                row = self.row(event.task_id)
                row.status, row.note = "retrying", event.reason
            case TaskFinished():
                row = self.row(event.task_id)
                row.status, row.finished = event.status, event.at
                row.attempt = max(row.attempt, event.attempts)
                if event.usage.calls or event.usage.cost_usd:
                    row.usage = event.usage
                if event.commit:
                    row.note = event.commit[:10]
                elif event.reason:
                    row.note = event.reason
            case RunFinished():
                self.finished = event
                if event.usage.calls or event.usage.cost_usd:
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
    return f"${usage.cost_usd:.4f}" if usage.cost_usd else ""


def _visible_rows(board: RunBoard, limit: int) -> tuple[list[TaskRow], int]:
    """Every row when they fit; otherwise the active ones first, then the nearest finished and pending."""
    rows = list(board.rows.values())
    if len(rows) <= limit:
        return rows, 0
    active = {"running", "verifying", "retrying"}
    keep: set[str] = {r.id for r in rows if r.status in active}
    finished = [r for r in rows if r.finished is not None and r.id not in keep]
    finished.sort(key=lambda r: r.finished or 0.0)
    pending = [r for r in rows if r.status == "pending"]
    room = max(limit - len(keep), 0)
    for r in reversed(finished[-max(room // 2, 1) :]):
        if len(keep) < limit:
            keep.add(r.id)
    for r in pending:
        if len(keep) >= limit:
            break
        keep.add(r.id)
    shown = [r for r in rows if r.id in keep]
    return shown, len(rows) - len(shown)


def render_board(
    board: RunBoard, now: float | None = None, max_rows: int = 30, width: int = 120
) -> RenderableType:
    now = time.time() if now is None else now
    title = f"orchestrate run {board.run_id}" if board.run_id else "orchestrate"
    # The title column gives way first; ids, status and numbers must stay whole on an 80-column terminal.
    show_note = width >= 110
    table = Table(title=title, title_justify="left", expand=width < 160, show_lines=False)
    table.add_column("task", no_wrap=True, min_width=4, max_width=24, overflow="ellipsis")
    table.add_column("phase", no_wrap=True, min_width=5, max_width=12, overflow="ellipsis")
    table.add_column("title", overflow="ellipsis", no_wrap=True, ratio=1, min_width=8)
    table.add_column("status", no_wrap=True, min_width=10)
    table.add_column("try", justify="right", min_width=3)
    table.add_column("elapsed", justify="right", min_width=7)
    table.add_column("tokens", justify="right", min_width=6)
    table.add_column("cost", justify="right", min_width=7)
    if show_note:
        table.add_column("note", overflow="ellipsis", no_wrap=True, max_width=40)
    rows, hidden = _visible_rows(board, max_rows)
    for row in rows:
        table.add_row(
            row.id,
            row.phase,
            row.title,
            Text(row.status, style=_STATUS_STYLE.get(row.status, "")),
            str(row.attempt) if row.attempt else "",
            _seconds(row.elapsed(now)),
            _tokens(row.usage),
            _cost(row.usage),
            *([row.note] if show_note else []),
        )
    counts = board.counts()
    parts = [f"{n} {status}" for status, n in sorted(counts.items())]
    if hidden:
        parts.append(f"({hidden} rows not shown)")
    footer = Text(
        f"{' · '.join(parts)}   elapsed {_seconds(now - board.started)}"
        f"   tokens {board.run_usage.total_tokens:,}   cost ${board.run_usage.cost_usd:.4f}",
        style="dim",
    )
    return Group(table, footer)


def summary_lines(board: RunBoard) -> list[str]:
    """The closing lines every reporter prints: outcome, counts, spend, how to go on."""
    end = board.finished
    if end is None:
        return []
    usage = board.run_usage
    lines = [
        f"run {end.run_id}: {end.status}. {end.done} done, {end.failed} failed, {end.skipped} skipped, "
        f"{end.remaining} remaining; {usage.total_tokens:,} tokens, ${usage.cost_usd:.4f}"
    ]
    if end.message:
        lines.append(end.message)
    for row in board.rows.values():
        if row.status == "failed":
            lines.append(f"  failed {row.id}: {row.note}")
    if end.resume_hint:
        lines.append(f"continue with: {end.resume_hint}")
    return lines


class PlainReporter:
    """One line per step, for logs, pipes and CI."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.board = RunBoard()

    def _say(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.stream.write(f"[{stamp}] {text}\n")
        self.stream.flush()

    def emit(self, event: Event) -> None:
        self.board.apply(event)
        match event:
            case RunStarted():
                settled = sum(1 for t in event.tasks if t.settled)
                verb = "resuming" if event.resumed else "starting"
                self._say(
                    f"{verb} run {event.run_id}: {event.plan} on branch {event.branch}, agent {event.agent}, "
                    f"{len(event.tasks)} tasks ({settled} already done), budget {budget(event.max_cost)}"
                )
            case TaskStarted():
                row = self.board.row(event.task_id)
                self._say(f"{event.task_id} started (attempt {event.attempt}): {row.title}")
            case AgentFinished():
                summary = f": {event.summary}" if event.summary else ""
                self._say(f"{event.task_id} agent {event.status}{summary[:200]}")
            case VerificationFinished():
                verdict = "ok" if event.ok else f"FAILED (exit {event.exit_code})"
                self._say(f"{event.task_id} verify `{event.command}` {verdict} in {event.duration:.1f}s")
            case TaskRetrying():
                self._say(f"{event.task_id} retrying (attempt {event.next_attempt}): {event.reason}")
            case TaskFinished():
                row = self.board.row(event.task_id)
                detail = f" {event.commit[:10]}" if event.commit else ""
                reason = f": {event.reason}" if event.reason else ""
                spend = f" ({_tokens(row.usage)} tokens, {_cost(row.usage)})" if row.usage.calls else ""
                self._say(f"{event.task_id} {event.status}{detail}{reason}{spend}")
            case Notice():
                prefix = f"{event.task_id} " if event.task_id else ""
                label = "" if event.level == "info" else f"{event.level}: "
                self._say(f"{prefix}{label}{event.message}")
            case RunFinished():
                for line in summary_lines(self.board):
                    self._say(line)
            case _:
                pass


class JsonlReporter:
    """Every event as one JSON line on stdout (or the given stream)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout

    def emit(self, event: Event) -> None:
        self.stream.write(event.model_dump_json() + "\n")
        self.stream.flush()


class LiveReporter:
    """A live table on a terminal; notices scroll above it; the summary stays after it."""

    def __init__(self, console: Console | None = None, refresh_per_second: float = 4) -> None:
        self.console = console if console is not None else Console(stderr=True)
        self.board = RunBoard()
        self._live = Live(
            get_renderable=self._render,
            console=self.console,
            refresh_per_second=refresh_per_second,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._running = False

    def _render(self) -> RenderableType:
        return render_board(self.board, max_rows=max(self.console.height - 8, 5), width=self.console.width)

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
            self._live.refresh()
            self._live.stop()

    def emit(self, event: Event) -> None:
        self.board.apply(event)
        match event:
            case Notice():
                style = {"info": "", "warning": "bold yellow", "error": "bold red"}[event.level]
                prefix = f"{event.task_id}: " if event.task_id else ""
                label = "" if event.level == "info" else f"{event.level.upper()}: "
                self.console.print(Text(f"{prefix}{label}{event.message}", style=style))
            case RunFinished():
                self.close()
                for line in summary_lines(self.board):
                    self.console.print(line)
            case _:
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
