from __future__ import annotations

import io
import json

from pydantic import TypeAdapter
from rich.console import Console

from orchestrator.cli.display import JsonlReporter, LiveReporter, PlainReporter, RunBoard, render_board
from orchestrator.domain.events import (
    AgentActivity,
    AgentFinished,
    Event,
    Notice,
    RunFinished,
    RunStarted,
    TaskFinished,
    TaskInfo,
    TaskRetrying,
    TaskStarted,
    VerificationFinished,
)
from orchestrator.domain.usage import Usage


def _run_events() -> list[Event]:
    call = Usage(input_tokens=1000, output_tokens=200, cost_usd=0.006, calls=1)
    return [
        RunStarted(
            run_id="r1",
            plan="plans/demo.md",
            branch="work",
            agent="scripted",
            tasks=[
                TaskInfo(id="T001", phase="1", title="Create the package", settled=True),
                TaskInfo(id="T002", phase="1", title="Count words"),
                TaskInfo(id="T003", phase="2", title="Add the CLI"),
            ],
            at=100.0,
        ),
        TaskStarted(task_id="T002", attempt=1, at=101.0),
        AgentActivity(task_id="T002", kind="model_call", usage=call, task_usage=call, run_usage=call),
        AgentFinished(task_id="T002", attempt=1, status="done"),
        VerificationFinished(
            task_id="T002", attempt=1, command="pytest -q", exit_code=1, ok=False, duration=0.5
        ),
        TaskRetrying(task_id="T002", next_attempt=2, reason="`pytest -q` exited 1"),
        TaskStarted(task_id="T002", attempt=2, at=103.0),
        VerificationFinished(
            task_id="T002", attempt=2, command="pytest -q", exit_code=0, ok=True, duration=0.4
        ),
        TaskFinished(task_id="T002", status="done", commit="abcdef1234567890", attempts=2, at=104.0),
        TaskStarted(task_id="T003", attempt=1, at=104.5),
        TaskFinished(
            task_id="T003", status="failed", reason="`test -f cli.py` exited 1", attempts=3, at=110.0
        ),
        Notice(level="warning", message="no sandbox: bubblewrap not found"),
        RunFinished(
            run_id="r1",
            status="failed",
            done=1,
            failed=1,
            usage=call,
            resume_hint="orchestrate resume r1",
            at=111.0,
        ),
    ]


def test_board_follows_events() -> None:
    board = RunBoard()
    for event in _run_events():
        board.apply(event)
    t1, t2, t3 = board.rows["T001"], board.rows["T002"], board.rows["T003"]
    assert t1.status == "already done"
    assert (t2.status, t2.attempt, t2.note) == ("done", 2, "abcdef1234")
    assert t2.elapsed(now=999.0) == 3.0  # first start to finish, across attempts
    assert t2.usage.total_tokens == 1200
    assert (t3.status, t3.note) == ("failed", "`test -f cli.py` exited 1")
    assert board.run_usage.cost_usd == 0.006


def test_rendered_table_shows_each_task_with_status_tokens_and_cost() -> None:
    board = RunBoard()
    for event in _run_events():
        board.apply(event)
    console = Console(file=io.StringIO(), width=200, force_terminal=False)
    console.print(render_board(board, now=120.0))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "orchestrate run r1" in text
    for needle in ("T001", "already done", "T002", "Count words", "1,200", "$0.0060", "T003", "failed"):
        assert needle in text
    assert "1 done · 1 failed" in text or "1 already done · 1 done · 1 failed" in text


def test_table_keeps_running_tasks_visible_when_rows_do_not_fit() -> None:
    board = RunBoard()
    board.apply(
        RunStarted(
            run_id="big",
            plan="p.md",
            branch="w",
            agent="scripted",
            tasks=[TaskInfo(id=f"T{i:03d}", phase="1", title=f"task {i}") for i in range(200)],
        )
    )
    board.apply(TaskStarted(task_id="T150", attempt=1))
    console = Console(file=io.StringIO(), width=200)
    console.print(render_board(board, max_rows=10))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "T150" in text
    assert "rows not shown" in text
    assert text.count("\n") < 30


def test_plain_reporter_prints_one_line_per_step_and_the_summary() -> None:
    stream = io.StringIO()
    reporter = PlainReporter(stream)
    for event in _run_events():
        reporter.emit(event)
    out = stream.getvalue()
    assert "starting run r1: plans/demo.md on branch work, agent scripted, 3 tasks (1 already done)" in out
    assert "T002 verify `pytest -q` FAILED (exit 1)" in out
    assert "T002 retrying (attempt 2)" in out
    assert "T002 done abcdef1234" in out
    assert "warning: no sandbox" in out
    assert "run r1: failed. 1 done, 1 failed" in out
    assert "continue with: orchestrate resume r1" in out


def test_jsonl_reporter_round_trips_every_event() -> None:
    stream = io.StringIO()
    reporter = JsonlReporter(stream)
    events = _run_events()
    for event in events:
        reporter.emit(event)
    lines = stream.getvalue().splitlines()
    assert len(lines) == len(events)
    adapter: TypeAdapter[Event] = TypeAdapter(Event)
    assert [adapter.validate_json(line) for line in lines] == events
    assert json.loads(lines[-1])["event"] == "run_finished"


def test_live_reporter_draws_on_a_terminal_and_leaves_the_summary() -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=160, height=40)
    with LiveReporter(console) as live:
        for event in _run_events():
            live.emit(event)
    out = stream.getvalue()
    assert "T002" in out
    assert "Count words" in out
    assert "no sandbox" in out
    assert "continue with: orchestrate resume r1" in out
