"""The journal when a write fails for want of space: the append is an OutOfSpace error (the run
stops resumably), and no part of the record stays in the file, so records appended once there is
room again are all read back (a torn line in the middle would hide every record after it).

A child process gets a small file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored), so its writes fail
with EFBIG part-way through a record, as a full disk makes them fail with ENOSPC."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, signal, sys
from pathlib import Path
from orchestrator.errors import OutOfSpace
from orchestrator.domain import transitions as t
from orchestrator.persistence.journal import Journal

directory = Path(sys.argv[1])
journal = Journal(directory)
journal.open()
journal.append(t.RunStarted(run_id="r"))
size = (directory / "journal.jsonl").stat().st_size
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 150, hard))  # one record and a half
failed = None
for n in range(10):
    try:
        journal.append(t.AgentActed(task="T", detail=f"{n} " + "x" * 60))
    except OutOfSpace as exc:
        failed = (n, exc.exit_code, exc.render())
        break
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
journal.append(t.RunStopped(status="stopped"))
journal.close()
print(json.dumps(failed))
"""


def test_a_failed_append_leaves_no_torn_record_behind(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints" / "run"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    failed = json.loads(done.stdout)
    assert failed is not None, "no append failed"
    n, exit_code, message = failed
    assert n == 1  # the second record, cut part-way by the limit
    assert exit_code == 3  # stopped, resumable
    assert "File too large" in message
    assert "journal.jsonl" in message
    lines = (directory / "journal.jsonl").read_bytes().splitlines(keepends=True)
    records = [json.loads(line) for line in lines]  # every line whole: none torn
    assert [r["type"] for r in records] == ["run_started", "agent_event", "run_stopped"]
