"""The agent's tools on a real workspace: what they do, and what they refuse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.tools.sandbox import detect_sandbox
from orchestrator.tools.toolset import Toolset


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    place = tmp_path / "outside"
    place.mkdir()
    (place / "secret.txt").write_text("outside content\n")
    return place


@pytest.fixture
def ws(tmp_path: Path, outside: Path) -> Path:
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("def main():\n    return 1\n\nmain()\n")
    (root / "notes.txt").write_text("alpha\nbeta\ngamma\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/work\n")
    (root / "escape").symlink_to(outside)  # a directory link pointing out
    (root / "escape.txt").symlink_to(outside / "secret.txt")  # a file link pointing out
    (root / "inner.txt").symlink_to(root / "notes.txt")  # a link that stays inside
    return root


@pytest.fixture
def tools(ws: Path) -> Toolset:
    return Toolset(ws, command_timeout=5.0)


def test_read_numbers_lines_and_takes_a_range(tools: Toolset) -> None:
    whole = tools.call("read_file", {"path": "notes.txt"})
    assert not whole.is_error
    assert whole.text == "     1\talpha\n     2\tbeta\n     3\tgamma\n"
    part = tools.call("read_file", {"path": "notes.txt", "start_line": 2, "end_line": 2})
    assert part.text == "     2\tbeta\n[lines 2-2 of 3]\n"
    past = tools.call("read_file", {"path": "notes.txt", "start_line": 9})
    assert past.is_error
    assert "has 3 lines" in past.text


def test_read_follows_a_link_that_stays_inside(tools: Toolset) -> None:
    assert "beta" in tools.call("read_file", {"path": "inner.txt"}).text


def test_read_refuses_binary_and_missing_files(tools: Toolset, ws: Path) -> None:
    (ws / "blob.bin").write_bytes(b"\x00\x01\x02")
    assert "binary" in tools.call("read_file", {"path": "blob.bin"}).text
    missing = tools.call("read_file", {"path": "nope.txt"})
    assert missing.is_error
    assert missing.text == "no such file: nope.txt"


def test_write_creates_directories(tools: Toolset, ws: Path) -> None:
    result = tools.call("write_file", {"path": "pkg/deep/mod.py", "content": "x = 1\n"})
    assert not result.is_error
    assert result.text == "wrote 6 bytes to pkg/deep/mod.py"
    assert (ws / "pkg/deep/mod.py").read_text() == "x = 1\n"


def test_edit_replaces_exactly_one_occurrence(tools: Toolset, ws: Path) -> None:
    ok = tools.call("edit_file", {"path": "src/app.py", "old_string": "return 1", "new_string": "return 2"})
    assert not ok.is_error
    assert (ws / "src/app.py").read_text() == "def main():\n    return 2\n\nmain()\n"
    twice = tools.call("edit_file", {"path": "src/app.py", "old_string": "main()", "new_string": "run()"})
    assert twice.is_error
    assert "occurs 2 times" in twice.text
    everywhere = tools.call(
        "edit_file",
        {"path": "src/app.py", "old_string": "main()", "new_string": "run()", "replace_all": True},
    )
    assert everywhere.text == "replaced 2 occurrence(s) in src/app.py"
    assert (ws / "src/app.py").read_text().count("run()") == 2


def test_edit_keeps_crlf_line_endings(tools: Toolset, ws: Path) -> None:
    (ws / "win.txt").write_bytes(b"one\r\ntwo\r\n")
    assert not tools.call("edit_file", {"path": "win.txt", "old_string": "two", "new_string": "2"}).is_error
    assert (ws / "win.txt").read_bytes() == b"one\r\n2\r\n"
    hint = tools.call("edit_file", {"path": "win.txt", "old_string": "one\n2", "new_string": "x"})
    assert "CRLF" in hint.text


def test_list_and_search(tools: Toolset) -> None:
    assert tools.call("list_dir", {}).text.splitlines() == [
        "escape/",
        "src/",
        "escape.txt",
        "inner.txt",
        "notes.txt",
    ]
    deep = tools.call("list_dir", {"path": "src", "recursive": True}).text
    assert deep == "src/app.py"
    found = tools.call("search", {"pattern": r"^\s+return", "glob": "*.py"})
    assert found.text == "src/app.py:2:     return 1"
    assert "no match" in tools.call("search", {"pattern": "zeta"}).text
    bad = tools.call("search", {"pattern": "("})
    assert bad.is_error
    assert "invalid regular expression" in bad.text


def test_search_does_not_read_through_links_that_point_out(tools: Toolset) -> None:
    assert "no match" in tools.call("search", {"pattern": "outside content"}).text


ESCAPES = [
    "../outside/secret.txt",
    "{outside}/secret.txt",
    "escape",
    "escape/secret.txt",
    "escape.txt",
    "escape/new.txt",
]


def _calls(path: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("read_file", {"path": path}),
        ("write_file", {"path": path, "content": "pwned"}),
        ("edit_file", {"path": path, "old_string": "outside", "new_string": "pwned"}),
        ("list_dir", {"path": path}),
        ("search", {"pattern": "outside", "path": path}),
    ]


@pytest.mark.parametrize("escape", ESCAPES)
@pytest.mark.parametrize("tool", ["read_file", "write_file", "edit_file", "list_dir", "search"])
def test_every_file_tool_refuses_paths_outside_the_workspace(
    tools: Toolset, outside: Path, escape: str, tool: str
) -> None:
    path = escape.format(outside=outside)
    result = tools.call(tool, dict(_calls(path))[tool])
    assert result.is_error, result.text
    assert "outside the workspace" in result.text
    assert (outside / "secret.txt").read_text() == "outside content\n"
    assert not (outside / "new.txt").exists()


@pytest.mark.parametrize("tool", ["write_file", "edit_file"])
def test_git_internals_are_off_limits(tools: Toolset, ws: Path, tool: str) -> None:
    args = {"path": ".git/HEAD", "content": "x", "old_string": "ref", "new_string": "x"}
    result = tools.call(tool, args)
    assert result.is_error
    assert "inside .git" in result.text
    assert (ws / ".git/HEAD").read_text() == "ref: refs/heads/work\n"


def test_bad_inputs_are_errors_not_crashes(tools: Toolset) -> None:
    assert "must be a JSON object" in tools.call("read_file", "notes.txt").text
    assert "must be a int" in tools.call("read_file", {"path": "notes.txt", "start_line": "2"}).text
    assert "must be a str" in tools.call("write_file", {"path": 3, "content": "x"}).text
    assert tools.call("list_dir", {"path": "notes.txt"}).text == "notes.txt is not a directory"


def test_run_command_reports_exit_code_and_output(tools: Toolset) -> None:
    result = tools.call("run_command", {"command": "cat notes.txt; exit 3"})
    assert not result.is_error  # a failing command is information, not a tool failure
    assert result.text == "exit code: 3\nalpha\nbeta\ngamma\n"
    assert result.summary == "run_command 'cat notes.txt; exit 3' -> exit 3"


def test_run_command_times_out_and_kills_its_group(ws: Path) -> None:
    tools = Toolset(ws, command_timeout=0.5)
    result = tools.call("run_command", {"command": "(sleep 30; touch late.txt) & sleep 30"})
    assert result.text.startswith("exit code: 124\nnote: timed out after 0.5s; killed with all it started")
    assert not (ws / "late.txt").exists()


def test_run_command_cuts_long_output_with_a_note(tools: Toolset) -> None:
    result = tools.call("run_command", {"command": "seq 1 20000"})
    assert "note: output cut to 20000 characters (head and tail kept)" in result.text
    assert "characters cut" in result.text
    assert result.text.rstrip().endswith("20000")


def test_run_command_has_no_secrets_and_redacts_what_it_prints(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_API_KEY", "very-secret-key-value")
    (ws / "dump.txt").write_text("very-secret-key-value\n")
    tools = Toolset(ws, command_timeout=5.0, env={"EXTRA": "given"})
    result = tools.call("run_command", {"command": "echo [$MY_API_KEY] [$EXTRA]; cat dump.txt"})
    assert result.text == "exit code: 0\n[] [given]\n[redacted $MY_API_KEY]\n"


@pytest.mark.skipif(detect_sandbox("auto").kind != "bubblewrap", reason="bubblewrap cannot run here")
def test_sandboxed_commands_cannot_write_outside_or_into_git(ws: Path, outside: Path) -> None:
    tools = Toolset(ws, command_timeout=10.0, sandbox=detect_sandbox("bubblewrap"))
    result = tools.call(
        "run_command",
        {"command": f"touch ok.txt; touch {outside}/new.txt; touch .git/new; echo done"},
    )
    assert result.text.endswith("done\n"), result.text
    assert (ws / "ok.txt").exists()
    assert not (outside / "new.txt").exists()
    assert not (ws / ".git/new").exists()
    assert [p.name for p in outside.iterdir()] == ["secret.txt"]
