"""What parse and status look like where a user reads them: piped into grep, and in a real terminal
(tmux) at 60, 80 and 120 columns. Ids and titles are never broken across lines by us."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import ORCHESTRATE, make_repo

PLAN = """\
# Realtime plan

## Phase 2: WebSocket Infrastructure

- [x] WebSocket infrastructure implemented (handler + service)
- [ ] Backend VoiceConversationHandler created with in-memory session management
  - verify: `test -f handler.py`

## Phase 3: Production Readiness of the whole streaming audio pipeline with monitoring

- [ ] Frontend VoiceConversationService created with RxJS observables
"""
IDS = [
    "2-websocket-infrastructure-implemented",
    "2-backend-voiceconversationhandler-created",
    "3-frontend-voiceconversationservice",
]
TITLES = [
    "WebSocket infrastructure implemented (handler + service)",
    "Backend VoiceConversationHandler created with in-memory session management",
    "Frontend VoiceConversationService created with RxJS observables",
]
PHASE_TITLE = "Production Readiness of the whole streaming audio pipeline with monitoring"

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    path = tmp_path / "plan.md"
    path.write_text(PLAN)
    return path


def piped(*args: str | Path) -> str:
    done = subprocess.run(
        [str(ORCHESTRATE), *map(str, args)], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def on_screen(width: int, *args: str | Path, height: int = 60, cwd: Path | None = None) -> list[str]:
    """The rows of a `width`-column tmux terminal after `orchestrate ARGS` ran in it."""
    socket = f"orchestrate-test-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", socket, "-f", "/dev/null"]
    command = " ".join([str(ORCHESTRATE), *(f"'{a}'" for a in args)]) + "; echo __END__; sleep 60"
    if cwd is not None:
        command = f"cd '{cwd}' && {command}"
    subprocess.run(
        [*tmux, "new-session", "-d", "-x", str(width), "-y", str(height), "-s", "t", command],
        check=True,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            rows = subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", "t", "-S", "-"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.splitlines()
            if "__END__" in rows or time.monotonic() > deadline:
                return [row.rstrip() for row in rows]
            time.sleep(0.1)
    finally:
        subprocess.run([*tmux, "kill-server"], check=False, capture_output=True)


def test_parse_piped_prints_one_task_a_line_with_its_id_and_title_whole(plan: Path) -> None:
    lines = piped("parse", plan).splitlines()
    for task_id, title in zip(IDS, TITLES, strict=True):
        mine = [line for line in lines if task_id in line and "after" not in line.split(task_id)[0]]
        assert len(mine) == 1, lines
        assert title in mine[0]
    assert any(line.startswith("[x] 2-websocket-infrastructure-implemented") for line in lines)
    assert any("after: 2-websocket-infrastructure-implemented" in line for line in lines)
    assert "    verify: test -f handler.py" in lines
    assert f"Phase 3: {PHASE_TITLE}  (line 9)" in lines


def test_status_piped_prints_each_phase_on_one_line(plan: Path) -> None:
    lines = piped("status", plan).splitlines()
    assert any(line.startswith("Phase 3") and PHASE_TITLE in line and "0/1" in line for line in lines), lines
    assert any(line.startswith("Phase 2") and "1/2" in line for line in lines)


@needs_tmux
@pytest.mark.parametrize("width", [60, 80, 120])
def test_parse_in_a_terminal_never_breaks_an_id_or_a_word_of_a_title(plan: Path, width: int) -> None:
    rows = on_screen(width, "parse", plan)
    assert all(len(row) <= width for row in rows)
    text = " ".join(rows)
    for task_id in IDS:
        assert any(task_id in row for row in rows), (task_id, rows)
    words = {word for title in TITLES for word in title.split()}
    screen_words = set(text.split())
    assert words <= screen_words, words - screen_words
    assert any("verify: test -f handler.py" in row for row in rows)


@needs_tmux
@pytest.mark.parametrize("width", [60, 80, 120])
def test_status_in_a_terminal_keeps_phase_titles_whole_words(plan: Path, width: int) -> None:
    rows = on_screen(width, "status", plan)
    screen_words = set(" ".join(rows).split())
    assert set(PHASE_TITLE.split()) <= screen_words
    assert any("0/1" in row for row in rows)
    assert any(IDS[1] in row for row in rows)


RUN_PLAN = """\
# Small plan

## Phase 1: One

- [ ] T001 Write `a.txt`
  - Verify: `test -f a.txt`
- [ ] Backend VoiceConversationHandler writes `b.txt` with in-memory session management
  - Verify: `python3 check.py`
"""
CHECK = """\
import sys
text = open("b.txt").read().strip()
if text != "bee":
    print(f"b.txt says {text!r}, not 'bee'")
    sys.exit(1)
"""
RUN_SCRIPT = {
    "T001": [{"write": "a.txt", "content": "a\n"}],
    "1-backend-voiceconversationhandler-writes": {
        "attempts": [[{"write": "b.txt", "content": "b\n"}], [{"write": "b.txt", "content": "bee\n"}]]
    },
}


@needs_tmux
@pytest.mark.parametrize("width", [60, 80, 120])
def test_a_run_in_a_terminal_leaves_its_causes_on_screen(tmp_path: Path, width: int) -> None:
    # The failing check's output and the retry's reason are permanent lines, at any width: the
    # live table overwrote them, and hid its note column below 110 columns.
    repo = make_repo(tmp_path / "repo", {"plan.md": RUN_PLAN, "check.py": CHECK})
    script = tmp_path / "script.json"
    script.write_text(json.dumps(RUN_SCRIPT))
    rows = on_screen(width, "run", "plan.md", "--agent", "scripted", "--script", script, cwd=repo, height=80)
    assert all(len(row) <= width for row in rows)
    text = " ".join(" ".join(rows).split())
    long_id = "1-backend-voiceconversationhandler-writes"
    assert any(long_id in row for row in rows)
    assert f"{long_id} verify `python3 check.py` FAILED (exit 1)" in text
    assert "| b.txt says 'b', not 'bee'" in text
    assert f"{long_id} retrying (attempt 2): `python3 check.py` exited 1" in text
    assert "budget none" in text
    assert "run " in text
    assert ": complete. 2 done, 0 failed" in text
