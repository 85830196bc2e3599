"""Fixtures for the agent backends: the fake Messages API, settings that keep tests fast, a recorder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
