"""A user turn whose transcription never comes stops saying "… transcribing" (14.3)."""

from __future__ import annotations

import pytest

from tests.ui.fakes import FakeEngine, FakeItem
from voicecli.ui.app import VoiceApp
from voicecli.ui.widgets import transcript


def shown(app: VoiceApp) -> str:
    view = app.transcript
    return "\n".join(view.render_line(y).text for y in range(view.size.height))


async def test_a_missing_transcription_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(transcript, "monotonic", lambda: now[0])
    monkeypatch.setattr(transcript, "TRANSCRIPT_TIMEOUT_S", 0.3)
    engine = FakeEngine()
    engine.conversation.items = [
        FakeItem("u1", "user", pending=True),
        FakeItem("u2", "user", pending=True),
    ]
    app = VoiceApp(engine, None, run_engine=False, clock=lambda: 1_000_000.0)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.transcript.flush_now()
        assert shown(app).count("… transcribing") == 2
        # one transcription arrives in time; the other never does
        engine.conversation.items[1] = FakeItem("u2", "user", body="hello there")
        app.transcript.item_changed("u2")
        now[0] = 0.3
        for _ in range(100):  # the timeout's timer re-renders the turn by itself
            await pilot.pause(0.05)
            text = shown(app)
            if "transcribing" not in text:
                break
        assert "(no transcript)" in text
        assert "hello there" in text
        assert "transcribing" not in text
