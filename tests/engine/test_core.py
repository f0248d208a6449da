"""Issue #10's defects, each against the real local server: a message typed while the
assistant answers is answered, session settings have one source of truth, replays keep
cut-off answers whole, and the history's disk writes stay off the loop."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import Recorder, history_records, started, stop
from tests.engine.test_reconnect import FAST, replies, text_engine
from tests.sdk_strict import validate_client_event
from voicecli.audio.sinks import NullSink
from voicecli.config import Config
from voicecli.engine import Engine, Notice, TurnLogged
from voicecli.engine.notifications import ConnectionChanged
from voicecli.protocol.notifications import AudioDelta, ResponseDone, SessionChanged
from voicecli.server import RealtimeServer

ConfigFor = Callable[..., Config]


def updates(server: RealtimeServer) -> list[dict[str, Any]]:
    return [e["session"] for e in server.received if e["type"] == "session.update"]


def turn_detection(session: dict[str, Any]) -> Any:
    return session.get("audio", {}).get("input", {}).get("turn_detection", "absent")


async def test_a_message_typed_while_the_assistant_answers_is_answered(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    """#10.2: send_text used to send response.cancel and response.create at once; the
    server refused the create (conversation_already_has_active_response) and the typed
    message was never answered."""
    async with RealtimeServer(pace=1.0) as server:  # real time: the first reply runs long
        engine, task = await text_engine(config_for(server), recorder)
        engine.send_text("tell me a long story about the sea")
        await recorder.wait_for(lambda n: isinstance(n, AudioDelta), count=3)
        engine.send_text("and now something else")
        await recorder.wait_for(
            lambda n: isinstance(n, ResponseDone) and n.status == "completed", timeout=20
        )
        await stop(engine, task)
    errors = [e for e in server.sent if e["type"] == "error"]
    assert not errors, errors
    texts = [(i.role, i.text) for i in engine.conversation.items]
    assert texts[-1] == ("assistant", "You said: and now something else")
    kinds = [e["type"] for e in server.received]
    first_cancel = kinds.index("response.cancel")
    assert kinds[first_cancel:].count("response.create") == 1


async def test_picking_server_vad_in_the_editor_switches_the_client_turn_mode(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    """#10.3: the editor and the turn-mode key both wrote turn_detection; server VAD picked
    in the editor while the client was in local-VAD mode made both sides commit."""
    async with RealtimeServer(pace=0) as server:
        engine, task = await text_engine(config_for(server, turn_mode="local-vad"), recorder)
        await recorder.wait_for(lambda n: isinstance(n, SessionChanged), count=2)
        engine.update_session({"audio": {"input": {"turn_detection": {"type": "server_vad"}}}})
        assert engine.turn_mode == "server-vad" and engine.status.turn_mode == "server-vad"
        await recorder.wait_for(lambda n: isinstance(n, SessionChanged), count=3)
        engine.update_session({"audio": {"input": {"turn_detection": None}}})
        assert engine.turn_mode == "local-vad"  # somebody still ends the turns
        await recorder.wait_for(lambda n: isinstance(n, SessionChanged), count=4)
        await stop(engine, task)
    sent = updates(server)
    assert turn_detection(sent[1])["type"] == "server_vad"
    assert set(turn_detection(sent[1])) >= {"threshold", "silence_duration_ms", "create_response"}
    assert turn_detection(sent[2]) is None
    assert not [e for e in server.sent if e["type"] == "error"]


async def test_a_partial_turn_detection_is_sent_whole_and_survives_a_reconnect(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    """#10.3: the editor sent {"threshold": 0.7} without a type (the SDK's types and the
    live service reject it), and a reconnect brought back 0.5."""
    async with RealtimeServer(pace=0) as server:
        engine, task = await text_engine(config_for(server, turn_mode="server-vad"), recorder)
        await recorder.wait_for(lambda n: isinstance(n, SessionChanged), count=2)
        engine.update_session({"audio": {"input": {"turn_detection": {"threshold": 0.7}}}})
        await recorder.wait_for(lambda n: isinstance(n, SessionChanged), count=3)
        server.faults.drop_after_audio_deltas = 1
        engine.send_text("drop it")
        await recorder.wait_for(
            lambda n: isinstance(n, ConnectionChanged) and n.state == "reconnecting"
        )
        server.faults.drop_after_audio_deltas = None
        await replies(recorder, 1)
        await stop(engine, task)
    sent = updates(server)
    edit = turn_detection(sent[1])
    assert edit["type"] == "server_vad" and edit["threshold"] == 0.7
    assert edit["silence_duration_ms"] == 500  # whole, not partial
    after_reconnect = turn_detection(sent[-1])
    assert after_reconnect["type"] == "server_vad" and after_reconnect["threshold"] == 0.7
    for event in server.received:
        if event["type"] == "session.update":
            validate_client_event(event)


async def test_changing_only_the_language_sends_the_transcription_model(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async with RealtimeServer(pace=0) as server:
        engine, task = await text_engine(config_for(server), recorder)
        await recorder.wait_for(lambda n: isinstance(n, SessionChanged), count=2)
        engine.update_session({"audio": {"input": {"transcription": {"language": "fr"}}}})
        await recorder.wait_for(lambda n: isinstance(n, SessionChanged), count=3)
        await stop(engine, task)
    transcription = updates(server)[1]["audio"]["input"]["transcription"]
    assert transcription == {"model": "gpt-4o-mini-transcribe", "language": "fr"}


async def test_a_change_that_cannot_be_made_whole_is_refused_with_a_notice(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async with RealtimeServer(pace=0) as server:
        engine, task = await text_engine(config_for(server, turn_mode="local-vad"), recorder)
        await recorder.wait_for(lambda n: isinstance(n, SessionChanged), count=2)
        assert engine.update_session({"audio": {"input": {"turn_detection": {"x": 1}}}}) == ""
        await recorder.wait_for(lambda n: isinstance(n, Notice) and "not changed" in n.text)
        await stop(engine, task)
    assert len(updates(server)) == 1  # only the one at connect


async def test_three_reconnects_keep_a_cut_off_answer_as_heard(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    """#10.4: each replay cut the text again ("one two three four five" -> "one two")."""
    async with RealtimeServer(pace=1.0) as server:
        engine = Engine(config_for(server), sink=NullSink(realtime=True), backoff=FAST)
        engine.subscribe(recorder)
        task = await started(engine)
        engine.send_text("one two three four five six seven eight nine ten")
        await recorder.wait_for(lambda n: isinstance(n, AudioDelta), count=5)
        await asyncio.sleep(1.0)  # a second of it heard
        engine.cancel()
        await recorder.wait_for(lambda n: type(n).__name__ == "ItemTruncated")
        await recorder.wait_for(lambda n: isinstance(n, ResponseDone))
        await asyncio.sleep(0.2)
        answer = engine.conversation.items[-1]
        heard, full = answer.heard_text, answer.text
        assert heard and heard != full
        for n in range(3):
            server.faults.expire_after_s = 0.0
            await recorder.wait_for(
                lambda x: isinstance(x, ConnectionChanged) and x.state == "reconnecting",
                count=n + 1,
            )
            server.faults.expire_after_s = None
            await recorder.wait_for(
                lambda x: isinstance(x, ConnectionChanged) and x.state == "connected",
                count=n + 2,
            )
            await recorder.wait_for(lambda x: isinstance(x, SessionChanged), count=4 + 2 * n)
        await stop(engine, task)
    assert (answer.heard_text, answer.text) == (heard, full)
    replayed = [
        e["item"]["content"][0]["text"]
        for e in server.received
        if e["type"] == "conversation.item.create" and e["item"].get("id") == answer.id
    ]
    assert len(replayed) >= 3 and set(replayed) == {heard.strip()}


async def test_history_writes_stay_off_the_loop(
    config_for: ConfigFor, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#10.8: the history's fsync ran in the receive handler, on the loop that also runs
    the UI and the speaker. A 300 ms fsync must not stall the loop; the turn is
    announced only once it is on disk."""
    slow = 0.3
    real_fsync = os.fsync
    synced: list[int] = []

    def slow_fsync(fd: int) -> None:
        time.sleep(slow)
        real_fsync(fd)
        synced.append(fd)

    async with RealtimeServer(pace=0) as server:
        config = config_for(server)
        engine = Engine(config, sink=NullSink(), backoff=FAST)
        engine.subscribe(recorder)
        task = await started(engine)
        on_disk: list[int] = []  # fsyncs done when each turn was announced
        engine.subscribe(lambda n: on_disk.append(len(synced)) if isinstance(n, TurnLogged) else None)
        monkeypatch.setattr(os, "fsync", slow_fsync)
        worst = 0.0
        engine.send_text("hello")
        deadline = time.monotonic() + 10
        while len(on_disk) < 2 and time.monotonic() < deadline:
            t0 = time.monotonic()
            await asyncio.sleep(0.01)
            worst = max(worst, time.monotonic() - t0 - 0.01)
        monkeypatch.setattr(os, "fsync", real_fsync)
        await stop(engine, task)
    assert on_disk[:2] == [1, 2]  # each turn was on disk when announced
    assert len(history_records(Path(config.data_dir))) == 2
    # on the loop, every fsync would stall it for all of its 300 ms
    assert worst < slow * 0.9, f"the loop stalled {worst * 1000:.0f} ms"
