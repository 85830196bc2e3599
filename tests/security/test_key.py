"""The key: nothing orchestrate runs for the agent or for verification gets ANTHROPIC_API_KEY.

Attacked as a hostile model would (the fake Messages API answering with tool calls of its choosing)
and as a hostile repository would (a test file that the plan's own `python3 -m unittest` runs, a
scripted `run` step, a command agent): each reads its environment, /proc/<parent>/environ, every
/proc/*/environ and /proc/*/cmdline it can see, and scans the memory of every orchestrate process
above it for `sk-ant-`; it writes all it found, base64-encoded (which redaction cannot see), into
the repository (committed with the task), outside it, and into the tool output the model reads.
The key must then be nowhere: not in any commit, file, journal, output or request body, decoded
or not. With bubblewrap and with `sandbox = "none"`; the real CLI in a subprocess throughout.

Also: the warning that commands run unconfined reaches a piped log, a terminal and `show`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import pty
import re
import secrets
import select
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.conftest import ORCHESTRATE, SANDBOXES, git, make_repo, needs_bwrap, orchestrate
from tests.fakes.messages_server import (
    TEST_MODEL,
    FakeMessagesServer,
    RecordedRequest,
    Response,
    finish,
    tool_call,
)

KEY = f"sk-ant-test-{secrets.token_hex(16)}"
"""This test run's own key (the fake API takes any): an unconfined command can read any process's
environment, and other runs on this machine may hold the fakes' TEST_KEY while they start."""
INNOCENT = "DEPLOY_NOTE"
"""A variable with a name no deny-list flags, holding the key all the same."""

SNOOP = r'''
"""Find the API key wherever this process can look; write it all down, base64-encoded."""
import base64, os, sys

found = []

def keep(label, data):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    found.append(f"{label} B64:{base64.b64encode(data).decode()}")

def failed(label, exc):
    found.append(f"{label} ERR:{type(exc).__name__}:{exc}")

def scan_memory(pid):
    try:
        with open(f"/proc/{pid}/maps") as f:
            regions = [line.split() for line in f]
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
            for region in regions:
                if not region[1].startswith("rw"):
                    continue
                start, end = (int(x, 16) for x in region[0].split("-"))
                try:
                    mem.seek(start)
                    data = mem.read(end - start)
                except OSError:
                    continue
                at = data.find(b"sk-ant-")
                while at >= 0:
                    keep(f"{pid}/mem@{start + at:x}", data[at : at + 64])
                    at = data.find(b"sk-ant-", at + 1)
        found.append(f"{pid}/mem scanned")
    except OSError as exc:
        failed(f"{pid}/mem", exc)

keep("os.environ", "\n".join(f"{k}={v}" for k, v in os.environ.items()))
parent = os.getppid()
for name in ("environ", "cmdline"):
    try:
        with open(f"/proc/{parent}/{name}", "rb") as f:
            keep(f"parent {parent}/{name}", f.read())
    except OSError as exc:
        failed(f"parent {parent}/{name}", exc)
pid = parent
while pid > 1:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError as exc:
        failed(f"{pid}/walk", exc)
        break
    if any(os.path.basename(arg) == b"orchestrate" for arg in cmdline.split(b"\0")):
        scan_memory(pid)
    pid = int(stat.rsplit(b")", 1)[1].split()[1])
for entry in sorted(os.listdir("/proc")):
    if entry.isdigit():
        for name in ("environ", "cmdline"):
            try:
                with open(f"/proc/{entry}/{name}", "rb") as f:
                    keep(f"{entry}/{name}", f.read())
            except OSError as exc:
                failed(f"{entry}/{name}", exc)
text = "\n".join(found) + "\n"
for target in sys.argv[1:]:
    try:
        with open(target, "a") as f:
            f.write(text)
    except OSError as exc:
        print(f"cannot write {target}: {exc}")
print(text)
'''

HOSTILE_TEST = """\
import runpy, sys, unittest

class Snoop(unittest.TestCase):
    def test_snoop(self):
        sys.argv = ["snoop.py", "leak_verify.txt", {outside!r}]
        runpy.run_path("snoop.py", run_name="__main__")
"""

SHELL_ATTACK = (
    'echo "ppid B64:$(base64 -w0 /proc/$PPID/environ)"; '
    'for p in /proc/[0-9]*; do echo "$p B64:$(base64 -w0 $p/environ 2>/dev/null)"; done; '
    'echo "env B64:$(env | base64 -w0)"'
)

PLAN = """\
# Plan: notes

## Phase 1: Notes

- [ ] T001 Add the notes
  - Verify: `python3 -m unittest`
"""


def key_env(sandbox: str) -> dict[str, str]:
    """The user's environment: the key under its own name, a token, and the key under an innocent
    name; the sandbox setting as the user chose it."""
    return {
        "ANTHROPIC_API_KEY": KEY,
        "GITHUB_TOKEN": KEY,
        INNOCENT: KEY,
        "ORCHESTRATE_SANDBOX": sandbox,
        "ORCHESTRATE_MAX_RETRIES": "0",
    }


# -- finding the key in whatever the run left -------------------------------------------------------

_B64 = re.compile(rb"[A-Za-z0-9+/]{16,}={0,2}")


def has_key(data: bytes, depth: int = 2) -> bool:
    """The key in `data`, as it is or inside base64 (nested up to `depth`)."""
    if KEY.encode() in data:
        return True
    if depth == 0:
        return False
    for match in _B64.finditer(data):
        blob = match.group()
        for cut in range(4):  # a blob may start mid-quantum
            piece = blob[cut:]
            piece = piece[: len(piece) - len(piece) % 4]
            try:
                decoded = base64.b64decode(piece, validate=True)
            except (binascii.Error, ValueError):
                continue
            if has_key(decoded, depth - 1):
                return True
    return False


def files_under(*roots: Path) -> Iterable[Path]:
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            for path in root.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    yield path


def leaks_on_disk(*roots: Path) -> list[str]:
    return [str(p) for p in files_under(*roots) if has_key(p.read_bytes())]


def leaks_in_git(repo: Path) -> list[str]:
    """Every object of every ref (commits, trees, blobs), decompressed by git."""
    listed = subprocess.run(
        ["git", "rev-list", "--all", "--objects"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    ids = "\n".join(line.split(" ", 1)[0] for line in listed if line.strip()) + "\n"
    batch = subprocess.run(
        ["git", "cat-file", "--batch"], cwd=repo, input=ids.encode(), capture_output=True, check=True
    ).stdout
    return ["git objects"] if has_key(batch) else []


def assert_nowhere(repo: Path, outside: Path, *texts: str, api: FakeMessagesServer | None = None) -> None:
    leaks = leaks_in_git(repo) + leaks_on_disk(repo, outside)
    leaks += [f"output {n}" for n, text in enumerate(texts) if has_key(text.encode("utf-8", "replace"))]
    if api is not None:
        leaks += [f"request {n} body" for n, r in enumerate(api.message_requests) if has_key(r.raw)]
    assert not leaks, f"the key leaked into: {leaks}"


def snooped(path: Path) -> str:
    """The snoop's findings, checked to be real (it ran and read its environment)."""
    assert path.is_file(), f"{path.name} was never written: the snoop did not run"
    text = path.read_text()
    assert "os.environ B64:" in text, text[:500]
    return text


# -- a hostile model --------------------------------------------------------------------------------


def hostile_model(outside: Path) -> object:
    def respond(request: RecordedRequest) -> Response:
        turn = (len(request.body["messages"]) + 1) // 2
        if turn == 1:
            return tool_call("write_file", {"path": "snoop.py", "content": SNOOP})
        if turn == 2:
            test = HOSTILE_TEST.format(outside=str(outside / "verify.txt"))
            return tool_call("write_file", {"path": "test_hostile.py", "content": test})
        if turn == 3:
            return tool_call(
                "run_command", {"command": f"python3 snoop.py leak_agent.txt {outside}/agent.txt"}
            )
        if turn == 4:
            return tool_call("run_command", {"command": SHELL_ATTACK})
        return finish("done", "notes added")

    return respond


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_hostile_model_and_its_tests_never_get_the_key(tmp_path: Path, sandbox: str) -> None:
    repo = make_repo(
        tmp_path / "repo", {"README.md": "# r\n", ".gitignore": "__pycache__/\n", "plan.md": PLAN}
    )
    outside = tmp_path / "outside"
    outside.mkdir()
    with FakeMessagesServer() as api:
        api.respond_with(hostile_model(outside))  # type: ignore[arg-type]
        env = {**key_env(sandbox), "ANTHROPIC_BASE_URL": api.url}
        done = orchestrate(repo, "run", "plan.md", "--agent", "anthropic", "--model", TEST_MODEL, env=env)
        assert done.returncode == 0, done.stderr
        assert len(api.message_requests) == 5
    assert git(repo, "log", "-1", "--format=%(trailers:key=Orchestrate-Task,valueonly)") == "T001"
    committed = git(repo, "show", "--name-only", "--format=", "HEAD").split()
    assert {"leak_agent.txt", "leak_verify.txt", "snoop.py"} <= set(committed)
    agent_saw = snooped(repo / "leak_agent.txt")
    verify_saw = snooped(repo / "leak_verify.txt")
    if sandbox == "none":
        # Unconfined, the snoop found orchestrate among its ancestors and went for its memory.
        assert "/mem " in agent_saw
        assert "/mem " in verify_saw
    if sandbox == "bubblewrap":
        # Its own PID namespace: orchestrate and the test process are not there to read.
        assert "/mem " not in agent_saw + verify_saw
        assert not (outside / "agent.txt").exists()
        assert not (outside / "verify.txt").exists()
    shown = orchestrate(repo, "show")
    shown_json = orchestrate(repo, "show", "--json")
    assert_nowhere(repo, outside, done.stdout, done.stderr, shown.stdout, shown_json.stdout, api=api)


# -- hostile repository content run by the scripted agent and by a command agent -----------------


@pytest.mark.parametrize("sandbox", SANDBOXES)
@pytest.mark.parametrize("agent", ["scripted", "command"])
def test_hostile_repository_code_run_by_other_agents_never_gets_the_key(
    tmp_path: Path, sandbox: str, agent: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    files = {
        "README.md": "# r\n",
        ".gitignore": "__pycache__/\n",
        "plan.md": PLAN,
        "snoop.py": SNOOP,
        "test_hostile.py": HOSTILE_TEST.format(outside=str(outside / "verify.txt")),
    }
    repo = make_repo(tmp_path / "repo", files)
    attack = f"python3 snoop.py leak_agent.txt {outside}/agent.txt && {SHELL_ATTACK} > leak_shell.txt"
    if agent == "scripted":
        script = tmp_path / "script.json"
        script.write_text(json.dumps({"T001": [{"run": attack}]}))
        args = ["--agent", "scripted", "--script", str(script)]
    else:
        args = ["--agent", "command", "--agent-command", attack]
    done = orchestrate(repo, "run", "plan.md", *args, env=key_env(sandbox))
    assert done.returncode == 0, done.stderr
    snooped(repo / "leak_agent.txt")
    snooped(repo / "leak_verify.txt")
    assert "B64:" in (repo / "leak_shell.txt").read_text()
    shown = orchestrate(repo, "show")
    assert_nowhere(repo, outside, done.stdout, done.stderr, shown.stdout)


def test_the_snoop_finds_a_key_where_there_is_one(tmp_path: Path) -> None:
    """The attack works when nothing stops it: a plain child of a process holding the key."""
    (tmp_path / "snoop.py").write_text(SNOOP)
    subprocess.run(
        [sys.executable, "snoop.py", "found.txt"],
        cwd=tmp_path,
        env={**os.environ, INNOCENT: KEY},
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert has_key((tmp_path / "found.txt").read_bytes())


# -- the warning --------------------------------------------------------------------------------------

SIMPLE_PLAN = """\
# Plan

## Phase 1: One

- [ ] T001 Write `a.txt`
  - Verify: `test -f a.txt`
"""
WARNING = "WITHOUT a sandbox"


def _scripted_repo(tmp_path: Path) -> tuple[Path, list[str]]:
    repo = make_repo(tmp_path / "repo", {"plan.md": SIMPLE_PLAN})
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"T001": [{"write": "a.txt", "content": "a\n"}]}))
    return repo, ["run", "plan.md", "--agent", "scripted", "--script", str(script)]


def _path_without_bwrap(tmp_path: Path) -> str:
    """A PATH that has every program of /usr/bin and /bin but bubblewrap."""
    farm = tmp_path / "bin"
    farm.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin"):
        if not Path(directory).is_dir():
            continue
        for program in Path(directory).iterdir():
            target = farm / program.name
            if program.name != "bwrap" and not target.exists():
                target.symlink_to(program)
    return str(farm)


@pytest.mark.parametrize("how", ["sandbox-none", "no-bwrap"])
def test_the_warning_is_in_a_piped_log_and_in_show(tmp_path: Path, how: str) -> None:
    repo, args = _scripted_repo(tmp_path)
    env = (
        {"ORCHESTRATE_SANDBOX": "none"} if how == "sandbox-none" else {"PATH": _path_without_bwrap(tmp_path)}
    )
    done = orchestrate(repo, *args, env=env)
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if WARNING in line]
    assert warned, done.stderr
    assert "warning" in warned[0].lower(), done.stderr
    if how == "no-bwrap":
        assert "bubblewrap (bwrap) is not installed" in warned[0]
    shown = orchestrate(repo, "show")
    assert WARNING in shown.stdout, shown.stdout
    assert WARNING in orchestrate(repo, "show", "--json").stdout


def test_the_warning_is_repeated_by_resume_and_by_a_dry_run(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"plan.md": SIMPLE_PLAN})
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"T001": [{"write": "b.txt", "content": "b\n"}]}))  # not a.txt
    args = ["--agent", "scripted", "--script", str(script), "--max-attempts", "1"]
    env = {"ORCHESTRATE_SANDBOX": "none"}
    failed = orchestrate(repo, "run", "plan.md", *args, env=env)
    assert failed.returncode == 1, failed.stderr
    resumed = orchestrate(repo, "resume", env=env)
    assert WARNING in resumed.stderr, resumed.stderr
    dry = orchestrate(repo, "run", "plan.md", "--dry-run", env=env)
    assert WARNING in dry.stderr, dry.stderr


@needs_bwrap
def test_no_warning_when_confined(tmp_path: Path) -> None:
    repo, args = _scripted_repo(tmp_path)
    done = orchestrate(repo, *args, env={"ORCHESTRATE_SANDBOX": "auto"})
    assert done.returncode == 0, done.stderr
    assert WARNING not in done.stderr
    assert WARNING not in orchestrate(repo, "show").stdout


def _run_on_a_terminal(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 120
) -> tuple[int, str]:
    """Run `argv` with stdin, stdout and stderr on a pseudo-terminal 200 columns wide; its exit code
    and everything it drew."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the terminal's other end is closed
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_the_warning_is_on_the_live_display(tmp_path: Path) -> None:
    repo, args = _scripted_repo(tmp_path)
    env = {**os.environ, "ORCHESTRATE_SANDBOX": "none", "TERM": "xterm-256color", "COLUMNS": "200"}
    code, drawn = _run_on_a_terminal([str(ORCHESTRATE), *args], repo, env)
    assert code == 0, drawn
    assert "   cost $0.0000   budget none" in drawn  # the live region's totals: this was the live display
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn)
    assert WARNING in plain, plain


# -- claude-code: its own key, handed over explicitly, and nothing else of ours ------------------------

FAKE_CLAUDE = """#!/usr/bin/env python3
import json, os, pathlib, sys
state = pathlib.Path.home() / ".claude"
(state / "env.json").write_text(json.dumps(dict(os.environ)))
try:
    (pathlib.Path(sys.argv[0]).parent.parent.parent / "outside" / "claude.txt").write_text("escaped")
except OSError:
    pass
print(json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": "done",
                  "num_turns": 1, "total_cost_usd": 0.01, "usage": {"input_tokens": 1, "output_tokens": 1}}))
"""


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_claude_code_gets_its_own_key_and_nothing_else(tmp_path: Path, sandbox: str) -> None:
    repo = make_repo(tmp_path / "repo", {"plan.md": SIMPLE_PLAN, "bin/claude": FAKE_CLAUDE})
    (repo / "bin" / "claude").chmod(0o755)
    git(repo, "add", "bin/claude")
    git(repo, "commit", "-q", "-m", "an executable claude")
    (tmp_path / "outside").mkdir()
    home = Path(os.environ["HOME"])
    (home / ".claude").mkdir(exist_ok=True)
    env = {**key_env(sandbox), "PATH": f"{repo / 'bin'}{os.pathsep}{os.environ['PATH']}", "CLAUDECODE": "1"}
    # The fake does no work: the task's check fails and it is retried; only what claude saw matters.
    orchestrate(repo, "run", "plan.md", "--agent", "claude-code", "--max-attempts", "1", env=env)
    seen = json.loads((home / ".claude" / "env.json").read_text())
    assert seen["ANTHROPIC_API_KEY"] == KEY  # the CLI needs it to reach the API
    for name in ("GITHUB_TOKEN", INNOCENT, "CLAUDECODE"):
        assert name not in seen
    if sandbox == "bubblewrap":
        assert not (tmp_path / "outside" / "claude.txt").exists()
