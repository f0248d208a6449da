"""Snapshot tests (pytest-textual-snapshot) of the four screens, with scripted state.

Deterministic: 120x40, a fixed clock, fixed ids, no cursor blink, a scripted engine.
Update after an intended change with ``pytest tests/ui --snapshot-update``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from textual.pilot import Pilot

from tests.ui.fakes import FakeEngine, mid_conversation
from voicecli.engine.notifications import EventLogged, StatusChanged
from voicecli.ui.app import VoiceApp
from voicecli.ui.screens.nokey import NoKeyApp

SIZE = (120, 40)
NOW = 1_000_000.0


def scripted_app() -> tuple[VoiceApp, FakeEngine]:
    engine = FakeEngine()
    mid_conversation(engine)
    app = VoiceApp(engine, None, run_engine=False, clock=lambda: NOW)
    return app, engine


async def settle(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, VoiceApp)
    app.transcript.flush_now()
    await pilot.pause()


def test_main_screen_mid_conversation(snap_compare: Any) -> None:
    app, _ = scripted_app()
    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


def test_session_editor(snap_compare: Any) -> None:
    app, _ = scripted_app()

    async def open_editor(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("s")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=open_editor)


def test_session_editor_80x24(snap_compare: Any) -> None:
    """A small terminal: the editor fits it (the form scrolls) and leaves out the
    server's effective session."""
    app, _ = scripted_app()

    async def open_editor(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("s")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=open_editor)


def test_event_log(snap_compare: Any) -> None:
    app, engine = scripted_app()
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "received",
            {"type": "session.created", "event_id": "e1", "session": {"type": "realtime"}},
        ),
        ("sent", {"type": "session.update", "event_id": "evt_1", "session": {"instructions": "x"}}),
        (
            "sent",
            {
                "type": "input_audio_buffer.append",
                "event_id": "evt_2",
                "audio": "<audio 9600 bytes>",
            },
        ),
        ("sent", {"type": "input_audio_buffer.commit", "event_id": "evt_3"}),
        (
            "received",
            {
                "type": "input_audio_buffer.committed",
                "event_id": "e2",
                "item_id": "item_u1",
                "previous_item_id": None,
            },
        ),
        ("sent", {"type": "response.create", "event_id": "evt_4"}),
        (
            "received",
            {
                "type": "response.created",
                "event_id": "e3",
                "response": {"id": "resp_1", "status": "in_progress"},
            },
        ),
    ]
    for i, word in enumerate(["Cold ", "and ", "dusty."]):
        events.append(
            (
                "received",
                {
                    "type": "response.output_audio_transcript.delta",
                    "event_id": f"d{i}",
                    "item_id": "item_a1",
                    "response_id": "resp_1",
                    "delta": word,
                },
            )
        )
    events.append(
        (
            "received",
            {
                "type": "error",
                "event_id": "e9",
                "error": {
                    "type": "invalid_request_error",
                    "code": "invalid_value",
                    "message": "bad voice",
                    "param": "session.audio.output.voice",
                    "event_id": "evt_1",
                },
            },
        )
    )

    async def show_log(pilot: Pilot[Any]) -> None:
        for direction, event in events:
            engine.publish(EventLogged(direction, event))  # type: ignore[arg-type]
        await pilot.pause()
        await pilot.press("l")
        await pilot.pause()
        app.event_log.flush()
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=show_log)


def test_no_key_screen(snap_compare: Any) -> None:
    assert snap_compare(NoKeyApp(), terminal_size=SIZE)


NO_AUDIO = [
    "no microphone found: no input device matches 'usb'; input devices: none; "
    "see `voicecli devices` (text mode: press t to type)",
    "no speaker found: Error querying device -1; see `voicecli devices` "
    "(replies are shown, not played)",
]


def test_first_screen_80x24_without_audio(snap_compare: Any) -> None:
    """An empty conversation: the one-line hint, the audio warnings kept on screen."""
    engine = FakeEngine()
    app = VoiceApp(engine, None, run_engine=False, clock=lambda: NOW, notices=NO_AUDIO)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        app.clear_notifications()  # the toasts go; the warning line stays
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_main_screen_80x24_with_the_event_log(snap_compare: Any) -> None:
    """Narrow: the status bar keeps VAD, time left and audio trouble; the log takes a
    share of the width, the transcript keeps the rest; every key in the footer."""
    app, engine = scripted_app()

    async def run_before(pilot: Pilot[Any]) -> None:
        engine.publish(StatusChanged(dataclasses.replace(engine.status, underruns=3)))
        await pilot.press("l")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_main_screen_200x50(snap_compare: Any) -> None:
    app, _ = scripted_app()
    assert snap_compare(app, terminal_size=(200, 50), run_before=settle)
