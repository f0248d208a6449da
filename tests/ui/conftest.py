"""Fixtures shared by the UI tests: no cursor blink (deterministic screens) and a real
local server answering instantly."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator

import pytest
from textual.widgets import Input, TextArea

from voicecli.server import RealtimeServer


@pytest.fixture(autouse=True)
def no_blink(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Input, "cursor_blink", False)
    monkeypatch.setattr(TextArea, "cursor_blink", False)


@pytest.fixture
async def server() -> AsyncIterator[RealtimeServer]:
    srv = RealtimeServer(pace=0)
    async with srv:
        yield srv


@pytest.fixture(autouse=True)
def thaw_heap() -> Iterator[None]:
    """VoiceApp freezes the heap after each response (VoiceApp._settle_heap); thaw it
    after each test so a finished test's app can be collected."""
    yield
    gc.unfreeze()
