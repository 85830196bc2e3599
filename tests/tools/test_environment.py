"""The environment children get (an allow-list), the secrets we hold, and the sealed process.

The seal is tested in real subprocesses: a process holding the key seals itself, then a child of
it (as a real command would) tries /proc/<parent>/environ and /proc/<parent>/mem; as root (with
CAP_SYS_PTRACE gone from the bounding set) and, where we can switch to one, as a plain user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.tools import environment
from orchestrator.tools.environment import child_env, hold_secrets, redact, secret
from tests.fakes.messages_server import TEST_KEY


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh store of held secrets, dropped after the test (the module's is process-wide)."""
    store: dict[str, str] = {}
    monkeypatch.setattr(environment, "_held", store)
    return store


def test_children_get_the_allow_list_never_a_key_under_any_name(
    monkeypatch: pytest.MonkeyPatch, held: dict[str, str]
) -> None:
    del held
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("VIRTUAL_ENV", "/venv")
    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_KEY)
    monkeypatch.setenv("DEPLOY_NOTE", TEST_KEY)  # no deny-list would flag this name
    monkeypatch.setenv("HTTPS_PROXY", "http://user:password@proxy:3128")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/ssh-x/agent.1")
    monkeypatch.setenv("CLAUDECODE", "1")
    env = child_env({"PYTHONDONTWRITEBYTECODE": "1"})
    assert env["PATH"] == "/usr/bin:/bin"
    assert env["LC_ALL"] == "C.UTF-8"
    assert env["VIRTUAL_ENV"] == "/venv"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert TEST_KEY not in json.dumps(env)
    for name in ("ANTHROPIC_API_KEY", "DEPLOY_NOTE", "HTTPS_PROXY", "SSH_AUTH_SOCK", "CLAUDECODE"):
        assert name not in env


def test_held_secrets_leave_the_environment_but_stay_readable_and_redacted(
    monkeypatch: pytest.MonkeyPatch, held: dict[str, str]
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_KEY)
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_abcdefgh12345")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Ann Author")  # AUTHOR is not AUTH: our commits need it
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/ssh-x/agent.1")  # our git may sign with it
    names = hold_secrets()
    assert set(names) >= {"ANTHROPIC_API_KEY", "GITHUB_TOKEN"}
    assert "ANTHROPIC_API_KEY" not in os.environ
    assert os.environ["GIT_AUTHOR_NAME"] == "Ann Author"
    assert os.environ["SSH_AUTH_SOCK"] == "/tmp/ssh-x/agent.1"
    assert held["ANTHROPIC_API_KEY"] == TEST_KEY
    assert secret("ANTHROPIC_API_KEY") == TEST_KEY
    assert redact(f"oops {TEST_KEY}") == "oops [redacted $ANTHROPIC_API_KEY]"
    # Named by the user (agent_env, pass_env): passed on, held or not.
    env = child_env(passed=["GITHUB_TOKEN", "UNSET_NAME"])
    assert env["GITHUB_TOKEN"] == "ghp_abcdefgh12345"
    assert "UNSET_NAME" not in env
    assert "ANTHROPIC_API_KEY" not in env


SEALED = """
import json, os, subprocess, sys
from orchestrator.tools.seal import seal_process
sealed = seal_process()
probe = '''
import json, os, sys
ppid = os.getppid()
out = {"env_has_key": any(sys.argv[1] in v for v in os.environ.values())}
for name in ("environ", "mem"):
    try:
        with open(f"/proc/{ppid}/{name}", "rb", buffering=0) as f:
            if name == "mem":
                start = int(open(f"/proc/{ppid}/maps").readline().split("-")[0], 16)
                f.seek(start)
            data = f.read(1 << 20)
        out[name] = "key" if sys.argv[1].encode() in data else "read, no key"
    except OSError as exc:
        out[name] = type(exc).__name__
print(json.dumps(out))
'''
child = subprocess.run([sys.executable, "-c", probe, os.environ["FIND_THIS"]],
                       capture_output=True, text=True, check=True)
print(json.dumps({"sealed": sealed.__dict__, "child": json.loads(child.stdout)}))
"""


def _sealed_process(
    env: dict[str, str], user: list[str] | None = None, python: str = sys.executable
) -> dict[str, dict[str, object]]:
    done = subprocess.run(
        [*(user or []), python, "-c", SEALED],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, dict[str, object]] = json.loads(done.stdout)
    return result


def _env() -> dict[str, str]:
    # The probe is told what to look for under a name the seal leaves alone (not a secret's name),
    # so the key is in our original environment block three times: the block is wiped whole.
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "ANTHROPIC_API_KEY": TEST_KEY,
        "DEPLOY_NOTE": TEST_KEY,
        "FIND_THIS": TEST_KEY,
    }


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and prctl are Linux's")
def test_a_child_of_a_sealed_process_finds_no_key_in_its_environ_or_memory() -> None:
    result = _sealed_process(_env())
    sealed, child = result["sealed"], result["child"]
    assert "ANTHROPIC_API_KEY" in sealed["held"]  # type: ignore[operator]
    assert sealed["environ_wiped"] is True
    assert sealed["dumpable_off"] is True
    assert child["env_has_key"] is True  # FIND_THIS, passed on purpose: the probe can see a key
    assert child["environ"] != "key"
    assert child["mem"] != "key"
    if os.geteuid() == 0 and sealed["ptrace_dropped"]:
        # Root without CAP_SYS_PTRACE may still open our environ (measured: it reads zeros), but
        # not our memory.
        assert child["mem"] == "PermissionError"


@pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/bin/python3").exists(), reason="switching users needs root"
)
@pytest.mark.skipif(
    # The sealed process imports the package from this checkout, as that other user: a checkout in
    # a folder only root may enter (mktemp -d makes them 0700) cannot be imported there.
    not all(p.stat().st_mode & 0o005 == 0o005 for p in Path(__file__).resolve().parents[2:]),
    reason="the checkout is not readable by other users",
)
def test_a_same_user_child_of_a_sealed_process_cannot_open_its_environ_or_memory() -> None:
    user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    # The system's python: our venv's may live where that user cannot go (seal needs no package).
    result = _sealed_process(_env(), user, python="/usr/bin/python3")
    assert result["child"]["environ"] == "PermissionError"
    assert result["child"]["mem"] == "PermissionError"
