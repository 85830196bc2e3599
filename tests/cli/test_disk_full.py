"""A disk that fills up mid-run: the run stops resumably (exit 1) with a clear message, never a
traceback, and `resume` finishes it once there is room, each task committed exactly once.

The repository (and so the journal, the plan and git's objects) lives on a real, tiny tmpfs; the
disk is filled by a command of the agent's, as any other process on the machine might fill it, at a
moment orchestrate does not choose. Mounting needs root (CAP_SYS_ADMIN): the test skips without it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import git, make_repo, orchestrate

PLAN = """\
# Plan

## Phase 1: Files

- [ ] T001 Write `a.txt`
  - Verify: `test -f a.txt`
- [ ] T002 Write `b.txt`
  - Verify: `test -f b.txt`
- [ ] T003 Write `c.txt`
  - Verify: `test -f c.txt`
"""


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


@pytest.mark.parametrize("parallel", [[], ["--parallel", "2"]], ids=["serial", "parallel"])
def test_a_full_disk_stops_the_run_resumably(tiny_disk: Path, tmp_path: Path, parallel: list[str]) -> None:
    # The filler lies beside the repository on the same disk, so the sandbox is off for the step.
    repo = make_repo(
        tiny_disk / "repo", {"README.md": "# r\n", "plan.md": PLAN, "orchestrate.toml": 'sandbox = "none"\n'}
    )
    filler, once = tiny_disk / "filler.bin", tmp_path / "filled-once"
    fill = f"test -e {once} || {{ touch {once}; head -c 64M /dev/zero > {filler}; }}; true"
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {
                "T001": [{"write": "a.txt", "content": "a\n"}, {"run": fill}],
                "T002": [{"write": "b.txt", "content": "b\n"}],
                "T003": [{"write": "c.txt", "content": "c\n"}],
            }
        )
    )
    stopped = orchestrate(repo, "run", "plan.md", "--script", str(script), *parallel)
    assert once.exists()  # the disk was filled mid-run
    assert stopped.returncode == 3, stopped.stderr  # stopped, resumable
    assert "Traceback" not in stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1]
    assert "No space left on device" in stopped.stderr or "Out of diskspace" in stopped.stderr, stopped.stderr
    assert "orchestrate resume" in stopped.stderr, stopped.stderr
    assert "Traceback" not in last

    assert "internal error" not in stopped.stderr, stopped.stderr

    filler.unlink()
    # What the journal says of the stop (where it had room to say it) is the clear line too.
    stop = orchestrate(repo, "show", "--json")
    assert stop.returncode == 0, stop.stderr
    told = json.loads(stop.stdout).get("message") or ""
    assert "internal error" not in told, told
    if told:
        assert "make room, then resume" in told, told
    resumed = orchestrate(repo, "resume")
    assert resumed.returncode == 0, resumed.stderr
    tasks = git(repo, "log", "--format=%(trailers:key=Orchestrate-Task,valueonly)").split()
    assert sorted(tasks) == ["T001", "T002", "T003"]  # each exactly once
    assert git(repo, "status", "--porcelain") == ""
    shown = orchestrate(repo, "show")
    assert shown.returncode == 0, shown.stderr
