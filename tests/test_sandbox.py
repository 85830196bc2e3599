from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator.tools.sandbox import Sandbox, detect_sandbox

bubblewrap = detect_sandbox("auto")
needs_bwrap = pytest.mark.skipif(bubblewrap.kind != "bubblewrap", reason=bubblewrap.warning or "no bwrap")


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=30, check=False)


@needs_bwrap
def test_workspace_is_writable_and_the_rest_is_not(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    script = f"echo made > made.txt && (echo x > {outside}/escape.txt) 2>/dev/null; echo done"
    done = _run(bubblewrap.wrap(["bash", "-c", script], work), work)
    assert done.returncode == 0, done.stderr
    assert (work / "made.txt").read_text() == "made\n"
    assert not (outside / "escape.txt").exists()


@needs_bwrap
def test_network_is_off(tmp_path: Path) -> None:
    probe = "import socket; socket.create_connection(('127.0.0.1', 9), timeout=2)"
    inside = _run(bubblewrap.wrap(["python3", "-c", probe], tmp_path), tmp_path)
    assert inside.returncode != 0
    assert "Network is unreachable" in inside.stderr or "Connection refused" in inside.stderr


@needs_bwrap
def test_git_directory_is_read_only(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    done = _run(bubblewrap.wrap(["bash", "-c", "touch .git/x"], tmp_path), tmp_path)
    assert done.returncode != 0
    assert not (tmp_path / ".git" / "x").exists()


def test_none_leaves_the_command_alone_and_says_so(tmp_path: Path) -> None:
    assert Sandbox("none").wrap(["true"], tmp_path) == ["true"]
    assert "WITHOUT a sandbox" in detect_sandbox("none").warning


@needs_bwrap
def test_the_run_state_is_masked_and_a_worktree_under_it_is_writable_but_not_its_git_file(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    state = repo / "checkpoints"
    journal = state / "run1" / "journal.jsonl"
    journal.parent.mkdir(parents=True)
    journal.write_text('{"type": "run_started"}\n')
    worktree = state / "run1" / "worktrees" / "T001"
    worktree.mkdir(parents=True)
    (worktree / ".git").write_text("gitdir: /elsewhere\n")
    sandbox = bubblewrap.hiding(state)
    attack = (
        f"ls -A {state}/run1 > listed.txt 2>&1; cat {journal} > read.txt 2>&1; "
        f"echo forged >> {journal}; echo 'gitdir: /mine' > .git; echo work > work.txt; true"
    )
    done = _run(sandbox.wrap(["bash", "-c", attack], worktree), worktree)
    assert done.returncode == 0, done.stderr
    assert (worktree / "work.txt").read_text() == "work\n"
    # Only the mount point the worktree needs; the journal is not there to read or to forge.
    assert (worktree / "listed.txt").read_text().split() == ["worktrees"]
    assert "No such file" in (worktree / "read.txt").read_text()
    assert journal.read_text() == '{"type": "run_started"}\n'
    assert (worktree / ".git").read_text() == "gitdir: /elsewhere\n"
    # From the repository itself (a serial run's workspace), the state inside it is masked too.
    done = _run(sandbox.wrap(["bash", "-c", f"ls -A {state}; echo x > {state}/new"], repo), repo)
    assert done.stdout.strip() == ""
    assert not (state / "new").exists()


@needs_bwrap
def test_orchestrate_is_not_in_the_commands_pid_namespace(tmp_path: Path) -> None:
    import os

    probe = f"test -e /proc/{os.getpid()}/environ && echo VISIBLE; ls /proc | grep -c '^[0-9]'"
    done = _run(bubblewrap.wrap(["bash", "-c", probe], tmp_path), tmp_path)
    assert "VISIBLE" not in done.stdout
    assert int(done.stdout.split()[-1]) < 10  # bwrap's init, bash, ls, grep


@needs_bwrap
def test_root_inside_has_no_capabilities_to_undo_the_sandbox(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    attack = (
        "grep CapEff /proc/self/status; mount -o remount,rw / 2>&1; mount -o remount,bind,rw / 2>&1; "
        f"umount -l {work} 2>&1; echo x > {outside}/escape.txt 2>&1; true"
    )
    done = _run(bubblewrap.wrap(["bash", "-c", attack], work), work)
    assert "CapEff:\t0000000000000000" in done.stdout
    assert not (outside / "escape.txt").exists()


@needs_bwrap
def test_network_on_when_the_sandbox_says_so(tmp_path: Path) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5); print('reached')"
        on = _run(bubblewrap.with_network().wrap(["python3", "-c", probe], tmp_path), tmp_path)
        off = _run(bubblewrap.wrap(["python3", "-c", probe], tmp_path), tmp_path)
    assert "reached" in on.stdout, on.stderr
    assert "reached" not in off.stdout


@needs_bwrap
def test_a_readable_path_in_tmp_is_shown_read_only_and_a_writable_one_is_writable(tmp_path: Path) -> None:
    shown = tmp_path / "prompt"
    shown.mkdir()
    (shown / "prompt.md").write_text("do it\n")
    state = tmp_path / "agent-state"
    state.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    sandbox = bubblewrap.reading(shown).writing(state)
    script = f"cat {shown}/prompt.md; echo x > {shown}/prompt.md; echo kept > {state}/s.txt; true"
    done = _run(sandbox.wrap(["bash", "-c", script], work), work)
    assert "do it" in done.stdout
    assert (shown / "prompt.md").read_text() == "do it\n"
    assert (state / "s.txt").read_text() == "kept\n"


@needs_bwrap
def test_a_sandboxed_command_that_times_out_leaves_nothing_running(tmp_path: Path) -> None:
    import time

    from orchestrator.tools.shell import run_shell

    marker = tmp_path / "survived"
    result = run_shell(f"(sleep 2; touch {marker}) & sleep 30", tmp_path, timeout=0.5, sandbox=bubblewrap)
    assert result.timed_out
    time.sleep(3)
    assert not marker.exists(), "a process in the sandbox outlived the timeout"


@needs_bwrap
def test_credential_files_in_home_are_masked_unless_given_back(tmp_path: Path) -> None:
    from orchestrator.tools.sandbox import credential_paths

    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text("aws_secret_access_key = s3cr3t\n")
    (home / ".claude").mkdir()
    (home / ".claude" / ".credentials.json").write_text('{"token": "s3cr3t"}')
    (home / ".claude.json").write_text('{"primaryApiKey": "s3cr3t"}')
    (home / ".codex").mkdir()
    (home / ".codex" / "auth.json").write_text('{"OPENAI_API_KEY": "c0dex-s3cr3t"}')
    (home / ".gitconfig").write_text("[user]\n\tname = Ann\n")
    work = tmp_path / "work"
    work.mkdir()
    found = credential_paths(home)
    assert {p.name for p in found} == {".aws", ".credentials.json", ".claude.json", "auth.json"}
    sandbox = bubblewrap.reading(home).hiding(*found)  # (home is in /tmp, private in the sandbox)
    look = (
        f"cat {home}/.aws/credentials {home}/.claude/.credentials.json {home}/.claude.json "
        f"{home}/.codex/auth.json {home}/.gitconfig"
    )
    done = _run(sandbox.wrap(["bash", "-c", look + "; true"], work), work)
    assert "s3cr3t" not in done.stdout
    assert "name = Ann" in done.stdout  # the rest of home is there, read-only
    # An agent CLI given its own state back (claude-code) sees its credentials, and only those.
    given = sandbox.writing(home / ".claude", home / ".claude.json")
    done = _run(given.wrap(["bash", "-c", look + "; true"], work), work)
    assert done.stdout.count("s3cr3t") == 2
    assert "aws_secret_access_key" not in done.stdout
    assert "c0dex" not in done.stdout
    # codex given its home back (CODEX_HOME, ~/.codex) sees its login.
    done = _run(sandbox.writing(home / ".codex").wrap(["bash", "-c", look + "; true"], work), work)
    assert done.stdout.count("s3cr3t") == 1
    assert "c0dex-s3cr3t" in done.stdout


@needs_bwrap
def test_tools_on_path_under_tmp_are_found_inside_read_only_and_the_rest_of_tmp_stays_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A checkout and its venv under /tmp (as CI clones them): the private /tmp must not hide the
    # interpreter and the tools the command is meant to find.
    assert tmp_path.is_relative_to("/tmp")
    tools = tmp_path / "venv" / "bin"
    tools.mkdir(parents=True)
    (tools / "mytool").write_text("#!/bin/sh\necho tool ran\n")
    (tools / "mytool").chmod(0o755)
    private = tmp_path / "other"
    private.mkdir()
    (private / "secret.txt").write_text("not for the sandbox\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    script = f"mytool; cat {private}/secret.txt; echo x > {tools}/mytool; true"
    done = _run(bubblewrap.wrap(["bash", "-c", script], work), work)
    assert "tool ran" in done.stdout, done.stderr
    assert "not for the sandbox" not in done.stdout
    assert (tools / "mytool").read_text() == "#!/bin/sh\necho tool ran\n"
