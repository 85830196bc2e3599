"""Fixtures for the agent backends: the fake Messages API, settings that keep tests fast, a recorder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.claude_cli import install
from tests.fakes.listener import Recorder
from tests.fakes.messages_server import TEST_KEY, FakeMessagesServer


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMessagesServer]:
    """A fake Messages API, reached the way users configure gateways: ANTHROPIC_BASE_URL."""
    with FakeMessagesServer() as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_KEY)
        yield server


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder first on PATH holding the fake `claude` (tests/fakes/claude_cli.py)."""
    bin_dir = install(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CLAUDECODE", "1")  # as inside a Claude Code session
    return bin_dir
