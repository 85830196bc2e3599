"""A terminal's Ctrl-C goes to its whole foreground process group: orchestrate's git children must
not be in it. Killed there, a `git add -A` failed with -2 and the run ended with exit 2 instead of
the graceful stop (1 in 5 tries, issue 15)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import ORCHESTRATE, make_repo

PLAN = "# P\n\n- [ ] T001 Write `a.txt`\n  - Verify: `test -f a.txt`\n"


def _slow_git(folder: Path, marker: Path) -> Path:
    """A `git` whose `add` waits two seconds (after leaving `marker`) before running the real one."""
    real = shutil.which("git")
    assert real is not None
    folder.mkdir()
    script = folder / "git"
    script.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do\n'
        f'  if [ "$arg" = add ]; then : > "{marker}"; sleep 2; break; fi\n'
        "done\n"
        f'exec "{real}" "$@"\n'
    )
    script.chmod(0o755)
    return folder


def test_ctrl_c_on_the_terminal_stops_the_run_without_killing_its_git(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"plan.md": PLAN})
    script = tmp_path / "script.json"
    script.write_text('{"T001": [{"write": "a.txt", "content": "a\\n"}]}')
    marker = tmp_path / "git-add-started"
    wrapper = _slow_git(tmp_path / "bin", marker)
    proc = subprocess.Popen(
        [str(ORCHESTRATE), "run", "plan.md", "--script", str(script)],
        cwd=repo,
        env={**os.environ, "PATH": f"{wrapper}{os.pathsep}{os.environ['PATH']}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, as a shell gives a foreground job
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "git add never ran"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "failed: -2" not in err, err
    assert proc.returncode in (0, 3), err  # done, or stopped after the step: never an error
    assert "Traceback" not in err
