"""The empty transcript says how to talk (in the current turn mode), type and get help."""

from __future__ import annotations

import dataclasses

from tests.ui.fakes import FakeEngine, FakeItem
from voicecli.engine.notifications import StatusChanged
from voicecli.protocol.notifications import ItemAdded
from voicecli.ui.app import VoiceApp


def first_line(app: VoiceApp) -> str:
    return app.transcript.render_line(0).text.strip()


async def test_the_hint_follows_the_turn_mode_and_goes_with_the_first_turn() -> None:
    engine = FakeEngine()
    engine.status = dataclasses.replace(engine.status, turn_mode="local-vad")
    app = VoiceApp(engine, None, run_engine=False, clock=lambda: 1_000_000.0)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.pause()
        line = first_line(app)
        assert line.startswith("just speak")
        assert "t: type" in line and "ctrl+p: commands" in line and "v: mode" in line

        engine.publish(StatusChanged(dataclasses.replace(engine.status, turn_mode="push-to-talk")))
        await pilot.pause()
        assert first_line(app).startswith("press space to talk, again to send")

        engine.conversation.items.append(FakeItem("u1", "user", body="hello"))
        engine.publish(ItemAdded("u1", 0))
        await pilot.pause()
        app.transcript.flush_now()
        assert first_line(app) == "user"


async def test_rebound_keys_are_named_in_the_hint() -> None:
    engine = FakeEngine()
    engine.status = dataclasses.replace(engine.status, turn_mode="push-to-talk")
    keys = {"push_to_talk": "f5", "text": "f6"}
    app = VoiceApp(engine, None, run_engine=False, clock=lambda: 1_000_000.0, keys=keys)
    async with app.run_test(size=(100, 24)) as pilot:
        await pilot.pause()
        await pilot.pause()
        line = first_line(app)
        assert line.startswith("press f5 to talk") and "f6: type" in line


async def test_the_no_key_screen_fits_a_narrow_terminal() -> None:
    from textual.containers import Vertical

    from voicecli.ui.screens.nokey import NoKeyApp

    app = NoKeyApp()
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        box = app.screen.query_one(Vertical).region
        assert box.x >= 0 and box.right <= 60  # was 80 wide whatever the terminal
