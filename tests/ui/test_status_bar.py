"""The status bar: the countdown stops while offline, no cost without a key, narrow
terminals keep the important parts, and it repaints only when its text changes."""

from __future__ import annotations

import dataclasses
import time

from tests.ui.fakes import FakeEngine
from tests.ui.test_pilot import until
from voicecli.engine.notifications import ConnectionChanged, StatusChanged
from voicecli.engine.status import EngineStatus
from voicecli.ui.app import ConnectionBanner, VoiceApp
from voicecli.ui.widgets.status import render_status


def make(show_cost: bool = True) -> tuple[VoiceApp, FakeEngine, list[float]]:
    now = [1_000_000.0]
    engine = FakeEngine()
    app = VoiceApp(engine, None, run_engine=False, clock=lambda: now[0], show_cost=show_cost)
    return app, engine, now


def publish(engine: FakeEngine, **changes: object) -> None:
    engine.status = dataclasses.replace(engine.status, **changes)  # type: ignore[arg-type]
    engine.publish(StatusChanged(engine.status))


async def test_the_countdown_stops_while_offline_and_restarts_with_a_new_session() -> None:
    app, engine, now = make()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        bar = app.status_bar
        now[0] += 60
        await until(pilot, lambda: "left 59:00" in bar.text)  # the 1 Hz tick
        publish(engine, connection="reconnecting")
        await pilot.pause()
        now[0] += 600  # ten minutes without a session
        await pilot.pause(1.3)
        assert "left 59:00" in bar.text
        publish(engine, connection="connected")  # a new session: its own full hour
        await until(pilot, lambda: "left 60:00" in bar.text)


async def test_no_cost_estimate_when_no_key_was_sent() -> None:
    app, engine, _ = make(show_cost=False)
    async with app.run_test(size=(120, 40)) as pilot:
        publish(engine, input_tokens=10, output_tokens=20, cost_usd=0.5)
        # the repaint is rate-limited and lands late on a busy machine: wait for it
        await until(pilot, lambda: "tokens 10↑ 20↓" in app.status_bar.text)
        assert "$" not in app.status_bar.text


async def test_level_changes_repaint_at_most_15_times_a_second() -> None:
    app, engine, _ = make()
    async with app.run_test(size=(120, 40)) as pilot:
        publish(engine, mic="live")
        await pilot.pause(0.2)
        before = app.status_bar.repaints
        start = time.monotonic()
        for i in range(100):  # a new level every 10 ms (the engine sends one per 50 ms)
            publish(engine, mic_level=(i % 10) / 10)
            await pilot.pause(0.01)
        elapsed = time.monotonic() - start
        repaints = app.status_bar.repaints - before
        # at most 15 Hz, plus the 1 Hz countdown and one pending repaint
        assert 1 <= repaints <= 15 * elapsed + elapsed + 2


async def test_unchanged_text_does_not_repaint() -> None:
    app, engine, _ = make()
    async with app.run_test(size=(120, 40)) as pilot:
        publish(engine, mic="muted")
        before = -1
        while app.status_bar.repaints != before:  # the mute's own (rate-limited) repaint
            before = app.status_bar.repaints  # lands late on a busy machine
            await pilot.pause(0.3)
        for i in range(20):  # the level is not shown while muted
            publish(engine, mic_level=i / 20)
        await pilot.pause(0.2)
        assert app.status_bar.repaints == before


def test_80_columns_keep_vad_time_left_and_audio_trouble() -> None:
    status = EngineStatus(
        connection="reconnecting",
        endpoint="wss://api.openai.com/v1/realtime?model=gpt-realtime",
        mic="live",
        mic_level=0.5,
        underruns=2,
        input_tokens=12345,
        output_tokens=6789,
        cost_usd=1.2345,
        last_latency_ms=420,
    )
    text = render_status(status, 0.0, 0.0, "session updated ✓", width=78).plain
    first, second = text.split("\n")
    assert len(first) <= 78 and len(second) <= 78
    assert "vad silence" in first and "mode" in first and "reconnecting" in first
    assert "left 60:00" in second and "speaker underruns 2" in second
    assert "session updated ✓" in second
    assert "api.openai.com" not in first  # the endpoint goes first


async def test_the_reconnect_banner_wraps_at_80_columns() -> None:
    app, engine, _ = make()
    async with app.run_test(size=(80, 24)) as pilot:
        engine.publish(ConnectionChanged("reconnecting", "attempt 2 in 1.5 s"))
        await pilot.pause()
        banner = app.main.query_one(ConnectionBanner)
        assert banner.display
        assert banner.size.height >= 2  # the hints wrap instead of being cut
        assert "replayed when it is back" in str(banner.render())
