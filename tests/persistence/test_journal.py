"""The journal: append-only JSONL, torn tails ignored and cut off, artifacts written atomically."""

from __future__ import annotations

from pathlib import Path

from orchestrator.domain import transitions as t
from orchestrator.persistence.journal import FORMAT_VERSION, Journal, read_records


def test_records_come_back_in_order_with_a_format_version(tmp_path: Path) -> None:
    with Journal(tmp_path / "run") as journal:
        journal.append(t.RunStarted(run_id="r1"))
        journal.append(t.TaskRunning(task="T001", attempt=1))
        journal.append(t.AgentActed(task="T001", detail="write ñ"), durable=False)
    records = read_records(tmp_path / "run" / "journal.jsonl")
    assert [r["type"] for r in records] == ["run_started", "task_running", "agent_event"]
    assert all(r["v"] == FORMAT_VERSION for r in records)
    assert records[2]["detail"] == "write ñ"


def test_a_torn_last_line_is_skipped_and_cut_off_before_the_next_append(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "run").open()
    journal.append(t.RunStarted(run_id="r1"))
    journal.close()
    path = tmp_path / "run" / "journal.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"v":1,"type":"task_runn')  # a kill in the middle of a write
    assert [r["type"] for r in read_records(path)] == ["run_started"]

    with Journal(tmp_path / "run") as journal:
        journal.append(t.TaskRunning(task="T001"))
    assert [r["type"] for r in read_records(path)] == ["run_started", "task_running"]
    assert b'task_runn"' not in path.read_bytes().replace(b'"task_running"', b"")


def test_artifacts_are_written_whole_and_stray_temp_files_are_cleaned(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "run").open()
    stray = tmp_path / "run" / "prompts" / ".tmp-T001.md.123"
    stray.parent.mkdir(parents=True)
    stray.write_text("half")
    journal.close()
    journal = Journal(tmp_path / "run").open()
    assert not stray.exists()
    path = journal.write_artifact("prompts/T001.attempt-1.md", "the prompt")
    journal.close()
    assert path.read_text() == "the prompt"
    assert sorted(p.name for p in path.parent.iterdir()) == ["T001.attempt-1.md"]
