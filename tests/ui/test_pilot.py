"""Pilot tests: every key of the main screen, driven against the REAL engine and the REAL
local server (text mode: no microphone, a NullSink). Each test asserts the UI result and
the exact client events the server received."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from voicecli.audio.sinks import NullSink
from voicecli.audio.sources import NullSource
from voicecli.config import Config, load_config
from voicecli.engine import Engine
from voicecli.server import RealtimeServer
from voicecli.ui.app import VoiceApp
from voicecli.ui.screens.session_editor import SessionEditor
from voicecli.ui.screens.text_input import TextInputScreen

SIZE = (120, 40)


def make_config(srv: RealtimeServer, tmp_path: Path, **overrides: Any) -> Config:
    base: dict[str, Any] = {
        "connection": {"url": srv.url, "model": "gpt-realtime"},
        "data_dir": str(tmp_path / "data"),
        "turn_mode": "push-to-talk",
    }
    base.update(overrides)
    return load_config(config_file=None, env={}, overrides=base)


def make_app(srv: RealtimeServer, tmp_path: Path, **overrides: Any) -> VoiceApp:
    config = make_config(srv, tmp_path, **overrides)
    engine = Engine(config, source=None, sink=NullSink(), api_key=None)
    return VoiceApp(engine, config, save_dir=tmp_path / "saved")


async def until(pilot: Pilot[Any], check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the app run until ``check()`` holds (the server answers asynchronously)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for the UI")
        await pilot.pause(0.02)


def received(srv: RealtimeServer, kind: str) -> list[dict[str, Any]]:
    return [e for e in srv.received if e.get("type") == kind]


async def connected(pilot: Pilot[Any]) -> VoiceApp:
    app = pilot.app
    assert isinstance(app, VoiceApp)
    await until(pilot, lambda: app.status_bar.status.connection == "connected")
    return app


async def test_text_message_gets_a_streamed_reply(server: RealtimeServer, tmp_path: Path) -> None:
    app = make_app(server, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await pilot.press("t")
        assert isinstance(app.screen, TextInputScreen)
        await pilot.press(*"hello there", "enter")
        await until(pilot, lambda: "You said: hello there" in app.transcript.markdown())
        creates = received(server, "conversation.item.create")
        assert creates[-1]["item"]["role"] == "user"
        assert creates[-1]["item"]["content"] == [{"type": "input_text", "text": "hello there"}]
        assert received(server, "response.create")
        await until(pilot, lambda: "response done" in app.status_bar.ack)


async def test_slash_also_opens_the_text_box(server: RealtimeServer, tmp_path: Path) -> None:
    app = make_app(server, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await pilot.press("slash")
        assert isinstance(app.screen, TextInputScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, TextInputScreen)
        assert not received(server, "conversation.item.create")


async def test_ctrl_k_clears_and_shows_the_server_answer(
    server: RealtimeServer, tmp_path: Path
) -> None:
    app = make_app(server, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await pilot.press("ctrl+k")
        await until(pilot, lambda: app.status_bar.ack == "input buffer cleared ✓")
        assert [e["type"] for e in server.received][-1] == "input_audio_buffer.clear"


def appended_ms(srv: RealtimeServer) -> float:
    """Audio the server received in ``input_audio_buffer.append`` (PCM16 24 kHz)."""
    return sum(len(e["audio"]) * 3 / 4 / 48 for e in received(srv, "input_audio_buffer.append"))


async def test_enter_commits_the_spoken_turn_and_asks_for_a_response(
    server: RealtimeServer, tmp_path: Path
) -> None:
    config = make_config(server, tmp_path)
    engine = Engine(config, source=NullSource(), sink=NullSink(), api_key=None)
    app = VoiceApp(engine, config, save_dir=tmp_path / "saved")
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await pilot.press("space")  # push-to-talk: the turn opens, the mic streams
        await until(pilot, lambda: appended_ms(server) >= 200)
        await pilot.press("enter")
        await until(pilot, lambda: bool(received(server, "response.create")))
        kinds = [e["type"] for e in server.received]
        commit = kinds.index("input_audio_buffer.commit")
        assert kinds[commit + 1] == "response.create"
        assert received(server, "response.create")[-1].get("response") in (None, {})
        await until(pilot, lambda: app.status_bar.ack == "response done")
        users = [it for it in engine.conversation.items if it.role == "user"]
        assert users, "the committed turn is in the conversation"


async def test_enter_with_nothing_spoken_sends_no_commit(
    server: RealtimeServer, tmp_path: Path
) -> None:
    # the engine never sends an empty commit (the server would reject it); the UI
    # must not claim one was sent
    app = make_app(server, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await pilot.press("enter")
        await pilot.press("ctrl+k")  # a later event, to know the engine sent everything
        await until(pilot, lambda: app.status_bar.ack == "input buffer cleared ✓")
        assert not received(server, "input_audio_buffer.commit")
        assert not any(e.type == "input_audio_buffer.commit" for e in app.event_log.entries)


async def test_a_server_error_is_shown_in_the_status_bar_and_the_transcript(
    server: RealtimeServer, tmp_path: Path
) -> None:
    app = make_app(server, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        # past the editor's validation: the server's own check answers
        app.engine.update_session({"audio": {"output": {"speed": 9.0}}})
        await until(pilot, lambda: app.status_bar.ack.startswith("error"))
        assert "invalid_value" in app.status_bar.ack
        view = app.transcript
        view.flush_now()
        shown = "\n".join(view.render_line(y).text for y in range(view.size.height))
        assert "⚠ invalid_value" in shown, "the error is shown inline in the transcript"


async def test_escape_cancels_the_running_response(server: RealtimeServer, tmp_path: Path) -> None:
    app = make_app(server, tmp_path)
    server.pace = 1.0  # a reply long enough to interrupt
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await pilot.press("t", *"tell me something long", "enter")
        await until(pilot, lambda: app.status_bar.status.response in ("generating", "playing"))
        await pilot.press("escape")
        await until(pilot, lambda: app.status_bar.ack == "response cancelled ✓")
        assert received(server, "response.cancel")


async def test_m_mutes_and_v_cycles_turn_mode(server: RealtimeServer, tmp_path: Path) -> None:
    app = make_app(server, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        before = len(received(server, "session.update"))
        await pilot.press("v")
        await until(pilot, lambda: app.status_bar.status.turn_mode == "local-vad")
        await pilot.press("v")
        await until(pilot, lambda: len(received(server, "session.update")) >= before + 1)
        await until(pilot, lambda: app.status_bar.status.turn_mode == "server-vad")
        td = received(server, "session.update")[-1]["session"]["audio"]["input"]["turn_detection"]
        assert td["type"] == "server_vad"
        await until(pilot, lambda: app.status_bar.ack == "session updated ✓")
        await pilot.press("m")
        assert "mic" in app.status_bar.ack


async def test_space_starts_push_to_talk(server: RealtimeServer, tmp_path: Path) -> None:
    app = make_app(server, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await pilot.press("space")
        assert app.status_bar.ack.startswith("push-to-talk")


async def test_session_editor_sends_only_changed_fields(
    server: RealtimeServer, tmp_path: Path
) -> None:
    app = make_app(server, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        before = len(received(server, "session.update"))
        await pilot.press("s")
        editor = app.screen
        assert isinstance(editor, SessionEditor)
        editor.query_one("#f-speed", Input).value = "1.25"
        field = editor.query_one("#f-max_output_tokens", Input)
        field.value = "300"
        field.focus()  # apply works from inside a text field
        await pilot.pause()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: len(received(server, "session.update")) > before)
        update = received(server, "session.update")[-1]["session"]
        assert update == {
            "type": "realtime",
            "max_output_tokens": 300,
            "audio": {"output": {"speed": 1.25}},
        }
        await until(pilot, lambda: editor.pending_event_id is None)
        assert editor.session is not None
        assert editor.session["audio"]["output"]["speed"] == 1.25


async def test_session_editor_validates_before_sending(
    server: RealtimeServer, tmp_path: Path
) -> None:
    app = make_app(server, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        before = len(server.received)
        await pilot.press("s")
        editor = app.screen
        assert isinstance(editor, SessionEditor)
        editor.query_one("#f-speed", Input).value = "9"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "between" in str(editor.query_one("#e-speed").render())
        assert len(server.received) == before


async def test_l_toggles_the_event_log_with_sent_and_received(
    server: RealtimeServer, tmp_path: Path
) -> None:
    app = make_app(server, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        assert not app.event_log.display
        await pilot.press("l")
        assert app.event_log.display
        await until(pilot, lambda: len(app.event_log.entries) >= 2)
        kinds = {(e.direction, e.type) for e in app.event_log.entries}
        assert ("sent", "session.update") in kinds
        assert ("received", "session.created") in kinds


async def test_ctrl_s_saves_markdown(server: RealtimeServer, tmp_path: Path) -> None:
    app = make_app(server, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await pilot.press("t", *"hi", "enter")
        await until(pilot, lambda: "You said: hi" in app.transcript.markdown())
        await pilot.press("ctrl+s")
        assert app.last_saved is not None
        text = app.last_saved.read_text()
        assert "**User:** hi" in text and "You said: hi" in text
        assert app.last_saved.stat().st_mode & 0o777 == 0o600  # private, as the logs


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
async def test_quit_closes_the_engine(server: RealtimeServer, tmp_path: Path, key: str) -> None:
    app = make_app(server, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await pilot.press(key)
        await until(pilot, lambda: app.engine.status.connection == "closed")
    assert app.return_code == 0
