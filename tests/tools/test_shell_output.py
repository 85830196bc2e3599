"""A command's output is streamed and cut to a bounded head and tail: orchestrate's memory stays
flat whatever a command prints, and the text it keeps decodes safely."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.engine.verification import OUTPUT_TAIL, run_verification
from orchestrator.tools.shell import run_shell

PEAK_LIMIT_MB = 100
"""Python, the package and pydantic take about 40 MB; the output itself must add next to nothing."""

# VmHWM, not getrusage's ru_maxrss: the latter keeps the peak of the process it was forked from
# (a large pytest) across exec.
_MEASURE = """
import json, sys
from pathlib import Path
from orchestrator.tools.shell import run_shell
result = run_shell(sys.argv[1], cwd=Path(sys.argv[2]), timeout=float(sys.argv[3]))
status = Path("/proc/self/status").read_text()
peak_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
print(json.dumps({
    "peak_mb": peak_kb / 1024,
    "exit_code": result.exit_code, "timed_out": result.timed_out, "duration": result.duration,
    "truncated": result.truncated, "output": result.output,
}))
"""


def _measured(command: str, cwd: Path, timeout: float) -> dict[str, object]:
    """run_shell in a fresh interpreter, with that interpreter's peak resident memory."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, command, str(cwd), str(timeout)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    measured: dict[str, object] = json.loads(done.stdout)
    return measured


def test_300_mb_of_output_keeps_memory_flat_and_the_tail_right(tmp_path: Path) -> None:
    # 300 MB of 'x' then a last line: the end of the output is what a failing check reports.
    result = _measured("head -c 300000000 /dev/zero | tr '\\0' x; echo; echo LAST LINE", tmp_path, 120)
    assert result["exit_code"] == 0
    assert result["truncated"]
    assert float(str(result["peak_mb"])) < PEAK_LIMIT_MB, result["peak_mb"]
    output = str(result["output"])
    assert output.endswith("x\nLAST LINE\n")
    assert output.startswith("xxxx")
    # 300,000,011 characters, of which the default limit keeps 20,000.
    assert "[... 299980011 characters cut ...]" in output
    assert len(output) < 20_100


@pytest.mark.slow  # a wall-clock bound: a loaded machine could fail it for the wrong reason
def test_yes_under_a_timeout_keeps_memory_flat_and_stops_on_time(tmp_path: Path) -> None:
    result = _measured("yes", tmp_path, 2)
    assert result["timed_out"]
    assert result["exit_code"] == 124
    assert float(str(result["peak_mb"])) < PEAK_LIMIT_MB, result["peak_mb"]
    assert float(str(result["duration"])) < 5
    assert str(result["output"]).endswith("y\ny\n")
    assert "characters cut" in str(result["output"])


def test_short_output_is_kept_whole(tmp_path: Path) -> None:
    result = run_shell("printf 'one\\ntwo\\n'; echo three >&2; exit 4", tmp_path, timeout=10)
    assert result.output == "one\ntwo\nthree\n"
    assert result.exit_code == 4
    assert not result.truncated


def test_a_cut_through_multibyte_characters_and_invalid_bytes_decodes_safely(tmp_path: Path) -> None:
    # 'é' is two bytes and '€' three: whatever the cut, no half character survives as garbage,
    # and a byte that is not UTF-8 at all becomes one replacement character.
    result = run_shell(
        "printf '\\377start'; for i in $(seq 3000); do printf 'é€'; done; printf 'end\\n'",
        tmp_path,
        timeout=10,
        output_limit=1001,
    )
    assert result.truncated
    head, _, rest = result.output.partition("\n[... ")
    tail = rest.split(" ...]\n", 1)[1]
    assert head.startswith("\ufffdstart")
    assert set(head[6:]) <= {"é", "€"}
    assert tail.endswith("end\n")
    assert set(tail[:-4]) <= {"é", "€"}
    assert len(head) + len(tail) == 1001
    cut = int(rest.split(" characters cut")[0])
    assert len(head) + cut + len(tail) == 1 + 5 + 6000 + 4


def test_output_of_a_background_process_does_not_hold_the_command_open(tmp_path: Path) -> None:
    # The command has ended when bash has: a daemon still holding stdout does not keep us
    # waiting until the timeout, and it is killed with the rest of the command's tree.
    result = run_shell("(while true; do echo tick; sleep 0.05; done) & echo started", tmp_path, timeout=30)
    assert result.ok
    assert result.duration < 5
    assert result.output.startswith("started\n") or "started\n" in result.output


def test_verification_gets_the_bounded_result(tmp_path: Path) -> None:
    outcome = run_verification(["seq 1 2000000; exit 1"], cwd=tmp_path, timeout=60)
    failed = outcome.failure
    assert failed is not None
    assert failed.output_tail.endswith("1999999\n2000000\n")
    assert len(failed.output_tail) <= OUTPUT_TAIL + 100
