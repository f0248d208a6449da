"""Config-driven key bindings, tiny terminals, and missing audio (text mode), driven
against the REAL engine and the REAL local server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input

from tests.ui.test_pilot import SIZE, connected, make_app, make_config, received, until
from voicecli.audio import device_sink, devices
from voicecli.compose import ui_audio
from voicecli.config import DEFAULT_KEYS, ConfigError
from voicecli.engine import Engine
from voicecli.server import RealtimeServer
from voicecli.ui.app import ACTIONS, AudioWarning, ConnectionBanner, VoiceApp
from voicecli.ui.screens.text_input import TextInputScreen


def test_every_config_action_is_a_ui_action() -> None:
    assert [a.id for a in ACTIONS] == list(DEFAULT_KEYS)
    for action in ACTIONS:
        assert callable(getattr(VoiceApp, f"action_{action.method}"))


async def test_keys_rebound_in_config_drive_the_ui(server: RealtimeServer, tmp_path: Path) -> None:
    # the config's names differ from the UI's methods: log -> toggle_log,
    # turn_mode -> cycle_turn_mode
    app = make_app(server, tmp_path, keys={"log": "x", "turn_mode": "f2"})
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await pilot.press("l")  # no longer bound
        assert not app.event_log.display
        await pilot.press("x")
        assert app.event_log.display
        before = len(received(server, "session.update"))
        await pilot.press("v")  # no longer bound either
        await pilot.pause()
        assert app.status_bar.status.turn_mode == "push-to-talk"
        await pilot.press("f2")
        await until(pilot, lambda: app.status_bar.status.turn_mode == "local-vad")
        await until(pilot, lambda: len(received(server, "session.update")) > before)
        await pilot.press("escape")  # from the log's filter back to the transcript
        footer_keys = set(app.screen.active_bindings)
        assert "x" in footer_keys and "f2" in footer_keys and "l" not in footer_keys


def test_clashing_keys_fail_at_start_with_one_line(server: RealtimeServer, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config(server, tmp_path, keys={"mute": "v"})
    message = str(caught.value)
    assert "\n" not in message
    assert "keys.mute" in message and "'v' is already bound to 'turn_mode'" in message


async def test_a_20x5_terminal_does_not_crash_and_keys_still_work(
    server: RealtimeServer, tmp_path: Path
) -> None:
    app = make_app(server, tmp_path)
    async with app.run_test(size=(20, 5)) as pilot:
        await connected(pilot)
        await pilot.press("t", *"hi", "enter")
        await until(pilot, lambda: "You said: hi" in app.transcript.markdown())
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        await pilot.resize_terminal(20, 5)
        await pilot.pause()
        assert app.size == (20, 5)
        app.transcript.flush_now()  # renders every turn at the new width
        await pilot.press("ctrl+k")
        await until(pilot, lambda: app.status_bar.ack == "input buffer cleared ✓")
        await pilot.press("l")
        assert app.event_log.display
        await pilot.press("q")
        await until(pilot, lambda: app.engine.status.connection == "closed")
    assert app.return_code == 0


def toast_texts(app: VoiceApp) -> list[str]:
    return [str(toast.render()) for toast in app.screen.query("Toast")]


async def test_portaudio_missing_shows_a_notice_and_text_mode_works(
    server: RealtimeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_portaudio(spec: Any, kind: str) -> int | None:
        raise devices.PortAudioMissing("libportaudio.so.2: cannot open shared object file")

    monkeypatch.setattr(devices, "find_device", no_portaudio)
    config = make_config(server, tmp_path)
    source, sink, notices = ui_audio(config)
    assert source is None and sink is None
    assert len(notices) == 1 and "PortAudio is not installed" in notices[0]
    assert "press t" in notices[0]

    engine = Engine(config, source=source, sink=sink, api_key=None)
    app = VoiceApp(engine, config, notices=notices, save_dir=tmp_path / "saved")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await connected(pilot)
        await until(pilot, lambda: any("PortAudio is not installed" in t for t in toast_texts(app)))
        await pilot.press("t")
        assert isinstance(app.screen, TextInputScreen)
        app.screen.query_one(Input).value = "still here"
        await pilot.press("enter")
        await until(pilot, lambda: "You said: still here" in app.transcript.markdown())


class QueryError(Exception):
    """Like sounddevice.PortAudioError: derives from Exception only."""


async def test_no_default_device_gives_text_mode_and_the_speaker_gets_the_latency(
    server: RealtimeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[dict[str, Any]] = []

    class BrokenSink:
        def __init__(self, device: int | None, **kwargs: Any) -> None:
            opened.append({"device": device, **kwargs})
            raise QueryError("Error querying device -1")

    def first_device(spec: Any, kind: str) -> int | None:
        if kind == "input":
            raise devices.DeviceNotFound("no input device matches 'usb'; input devices: none")
        return None

    monkeypatch.setattr(devices, "find_device", first_device)
    monkeypatch.setattr(device_sink, "DeviceSink", BrokenSink)
    config = make_config(server, tmp_path, audio={"output_latency": 0.35, "input_device": "usb"})
    source, sink, notices = ui_audio(config)
    assert source is None and sink is None
    assert opened == [{"device": None, "latency": 0.35}]
    assert notices == [
        "no microphone found: no input device matches 'usb'; input devices: none; "
        "see `voicecli devices` (text mode: press t to type)",
        "no speaker found: Error querying device -1; see `voicecli devices` "
        "(replies are shown, not played)",
    ]

    engine = Engine(config, source=source, sink=sink, api_key=None)
    app = VoiceApp(engine, config, notices=notices, save_dir=tmp_path / "saved")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await connected(pilot)
        await until(pilot, lambda: len(toast_texts(app)) >= 2)
        texts = "\n".join(toast_texts(app))
        assert "no microphone" in texts and "no speaker" in texts
        app.clear_notifications()  # the toasts go; the warnings stay on screen
        warning = str(app.main.query_one(AudioWarning).render())
        assert "no microphone found" in warning and "no speaker found" in warning
        await pilot.press("slash", *"typed", "enter")
        await until(pilot, lambda: "You said: typed" in app.transcript.markdown())
        assert received(server, "conversation.item.create")[-1]["item"]["content"] == [
            {"type": "input_text", "text": "typed"}
        ]


async def test_escape_stops_reconnecting_and_ctrl_r_brings_the_line_back(
    server: RealtimeServer, tmp_path: Path
) -> None:
    app = make_app(server, tmp_path)
    engine = app.engine
    assert isinstance(engine, Engine)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        banner = app.main.query_one(ConnectionBanner)
        assert not banner.display
        acks: list[str] = []
        acknowledge = app.status_bar.acknowledge
        app.status_bar.acknowledge = lambda text: (acks.append(text), acknowledge(text))[1]  # type: ignore[method-assign]
        # the line goes down in the middle of a reply, and the server refuses to come back
        server.faults.refuse_connections = 1000
        server.faults.drop_after_audio_deltas = 1
        engine.send_text("are you there")
        await until(pilot, lambda: app.status_bar.status.connection == "reconnecting")
        await until(pilot, lambda: "ctrl+r: retry now" in str(banner.render()))
        assert "escape: stop" in str(banner.render())
        await pilot.press("escape")
        await until(pilot, lambda: app.status_bar.status.connection == "offline")
        assert app.status_bar.ack == "stopped reconnecting: ctrl+r to try again"
        await until(pilot, lambda: "offline" in str(banner.render()))
        refused = server.refused
        await pilot.pause(1.2)  # longer than the first backoff delays: no attempt made
        assert server.refused == refused
        server.faults.refuse_connections = 0
        server.faults.drop_after_audio_deltas = None
        await pilot.press("ctrl+r")
        assert "reconnecting now…" in acks
        await until(pilot, lambda: app.status_bar.status.connection == "connected")
        await until(pilot, lambda: not banner.display)
        await pilot.press("ctrl+r")
        assert app.status_bar.ack == "nothing to reconnect: connected"
        # the replayed conversation carries the interrupted message
        replayed = received(server, "conversation.item.create")
        assert any(
            e["item"].get("content", [{}])[0].get("text") == "are you there" for e in replayed
        )
