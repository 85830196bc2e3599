from __future__ import annotations

import io
import json

from pydantic import TypeAdapter
from rich.console import Console

from orchestrator.cli.display import JsonlReporter, LiveReporter, PlainReporter, RunBoard, render_live
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


def test_live_region_shows_the_running_tasks_and_the_totals() -> None:
    board = RunBoard()
    for event in _run_events()[:3]:  # T002 running, one model call made
        board.apply(event)
    console = Console(file=io.StringIO(), width=200, force_terminal=False)
    console.print(render_live(board, now=102.5))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "running   T002  try 1  1.5s  1,200 tokens  $0.0060  Count words" in text
    assert "T001" not in text  # not running: their lines are above
    assert "T003" not in text
    assert "1 already done · 1 pending · 1 running" in text
    assert "budget none" in text


def test_live_region_names_the_ray_node_a_task_runs_on() -> None:
    board = RunBoard()
    board.apply(_run_events()[0])
    board.apply(TaskStarted(task_id="T002", attempt=1, node="1e247319 (10.0.0.7)", at=101.0))
    console = Console(file=io.StringIO(), width=200, force_terminal=False)
    console.print(render_live(board, now=102.5))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "running   T002  try 1  on 1e247319  1.5s  Count words" in text
    stream = io.StringIO()
    reporter = PlainReporter(stream)
    reporter.emit(_run_events()[0])
    reporter.emit(TaskStarted(task_id="T002", attempt=1, node="1e247319 (10.0.0.7)", at=101.0))
    assert "T002 started (attempt 1) on Ray node 1e247319 (10.0.0.7): Count words" in stream.getvalue()


def test_live_region_never_cuts_an_id_and_cuts_the_title_first() -> None:
    board = RunBoard()
    long_id = "2-backend-voiceconversationhandler-created"
    board.apply(
        RunStarted(run_id="r", plan="p.md", branch="w", agent="a", max_cost=2.0,
                   tasks=[TaskInfo(id=long_id, phase="2", title="Backend VoiceConversationHandler created")])
    )  # fmt: skip
    board.apply(TaskStarted(task_id=long_id, attempt=3, at=board.started))
    for width in (60, 80, 120):
        console = Console(file=io.StringIO(), width=width, force_terminal=False)
        console.print(render_live(board, now=board.started + 2, width=width))
        rows = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
        assert any(long_id in row for row in rows), rows
        assert all(len(row) <= width for row in rows)
        assert "budget $2.00" in " ".join(rows)
    assert "Backend VoiceConversationHandler created" in rows[0]  # room at 120
    console = Console(file=io.StringIO(), width=80, force_terminal=False)
    console.print(render_live(board, now=board.started + 2, width=80))
    assert console.file.getvalue().splitlines()[0].endswith("Backend Voic…")  # type: ignore[attr-defined]


def test_live_region_keeps_to_the_terminal_height() -> None:
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
    for i in range(20):
        board.apply(TaskStarted(task_id=f"T{i:03d}", attempt=1))
    console = Console(file=io.StringIO(), width=100)
    console.print(render_live(board, height=10))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "T006" in text
    assert "T007" not in text
    assert "and 13 more running" in text
    assert text.count("\n") <= 10


def test_plain_reporter_prints_one_line_per_step_and_the_summary() -> None:
    stream = io.StringIO()
    reporter = PlainReporter(stream)
    for event in _run_events():
        reporter.emit(event)
    out = stream.getvalue()
    assert (
        "starting run r1: plans/demo.md on branch work, agent scripted, 3 tasks (1 already done), budget none"
    ) in out
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
