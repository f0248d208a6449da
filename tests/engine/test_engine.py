"""The engine against the real local server: turns in every mode, actions, barge-in."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import (
    Recorder,
    history_records,
    started,
    stop,
    utterance,
)
from tests.sdk_strict import validate_client_event
from voicecli.audio.sinks import NullSink
from voicecli.audio.sources import NullSource, WavFileSource
from voicecli.config import Config
from voicecli.engine import Engine, EngineStatus, StatusChanged, TurnLogged
from voicecli.history import SessionLog
from voicecli.protocol.notifications import ResponseDone
from voicecli.server import RealtimeServer
from voicecli.session import changed_fields, deep_merge

ConfigFor = Callable[..., Config]


def audio_sent(server: RealtimeServer) -> bytes:
    return b"".join(
        base64.b64decode(e["audio"])
        for e in server.received
        if e.get("type") == "input_audio_buffer.append"
    )


def types_received(server: RealtimeServer) -> list[str]:
    return [str(e.get("type")) for e in server.received]


async def one_turn(
    server: RealtimeServer,
    config: Config,
    recorder: Recorder,
    wav: Path,
    *,
    ptt: bool = False,
    tmp_path: Path | None = None,
) -> Engine:
    history = SessionLog.create(config.data_dir, kind="test")
    engine = Engine(
        config,
        source=WavFileSource(wav, realtime=False),
        sink=NullSink(),
        history=history,
    )
    engine.subscribe(recorder)
    if ptt:
        engine.push_to_talk()
    task = await started(engine)
    await recorder.wait_for(lambda n: isinstance(n, ResponseDone))
    await recorder.wait_for(
        lambda n: isinstance(n, TurnLogged) and n.role == "assistant", timeout=5
    )
    await stop(engine, task)
    history.close()
    return engine


@pytest.mark.parametrize("mode", ["local-vad", "push-to-talk", "server-vad", "semantic-vad"])
async def test_full_turn_in_each_mode(
    server: RealtimeServer,
    config_for: ConfigFor,
    recorder: Recorder,
    speech_wav: Path,
    mode: str,
) -> None:
    config = config_for(server, turn_mode=mode)
    engine = await one_turn(server, config, recorder, speech_wav, ptt=mode == "push-to-talk")
    received = types_received(server)
    update = next(e for e in server.received if e["type"] == "session.update")
    td = update["session"]["audio"]["input"]["turn_detection"]
    if mode in ("local-vad", "push-to-talk"):
        assert td is None
        assert received.count("input_audio_buffer.commit") == 1
        assert received.count("response.create") == 1
    else:
        assert td["type"] == mode.replace("-", "_")
        assert "input_audio_buffer.commit" not in received  # the server commits
    for event in server.received:
        validate_client_event(event)
    # the echo reply carries back exactly the committed audio
    reply = engine.conversation.items[-1]
    assert reply.role == "assistant" and reply.status == "completed"
    assert "input_audio_buffer_commit_empty" not in str(server.sent)
    assert engine.status.output_tokens > 0
    assert engine.status.cost_usd is None  # a server on this machine: nothing to pay
    assert engine.status.last_latency_ms is not None
    logged = history_records(Path(config.data_dir))
    assert any(r.get("role") == "assistant" and r.get("usage") for r in logged)


async def test_local_vad_sends_preroll_and_speech_only(
    server: RealtimeServer, config_for: ConfigFor, recorder: Recorder, speech_wav: Path
) -> None:
    config = config_for(server, turn_mode="local-vad")
    await one_turn(server, config, recorder, speech_wav)
    sent_ms = len(audio_sent(server)) / 48
    # 1.0 s of speech + prefix (300 ms) + silence_ms (500) give or take a few frames;
    # the 0.5 s lead and most of the 1.2 s tail are never sent
    assert 1300 <= sent_ms <= 2000, sent_ms


async def test_mute_sends_no_audio(
    server: RealtimeServer, config_for: ConfigFor, recorder: Recorder, speech_wav: Path
) -> None:
    config = config_for(server, turn_mode="server-vad")
    engine = Engine(config, source=WavFileSource(speech_wav, realtime=True), sink=NullSink())
    engine.subscribe(recorder)
    engine.toggle_mute()
    task = await started(engine)
    await recorder.wait_for(lambda n: isinstance(n, StatusChanged) and n.status.mic == "muted")
    await recorder.wait_for(lambda n: engine.status.mic == "off", 8)  # the file ended
    await stop(engine, task)
    assert "input_audio_buffer.append" not in types_received(server)


async def test_short_turn_is_cleared_not_committed(
    server: RealtimeServer, config_for: ConfigFor, recorder: Recorder, tmp_path: Path
) -> None:
    from voicecli.audio.wav import write_wav

    wav = tmp_path / "blip.wav"
    write_wav(wav, utterance(speech_s=0.06, lead_s=0.0, tail_s=0.0))
    config = config_for(server, turn_mode="push-to-talk")
    engine = Engine(config, source=WavFileSource(wav, realtime=False), sink=NullSink())
    engine.subscribe(recorder)
    engine.push_to_talk()
    task = await started(engine)
    await recorder.wait_for(lambda n: isinstance(n, StatusChanged) and n.status.mic == "sending")
    await recorder.wait_for(lambda n: type(n).__name__ == "InputCleared")
    await stop(engine, task)
    received = types_received(server)
    assert "input_audio_buffer.clear" in received
    assert "input_audio_buffer.commit" not in received
    assert not [e for e in server.sent if e["type"] == "error"]


async def test_send_text_and_update_session_only_changed_fields(
    server: RealtimeServer, config_for: ConfigFor, recorder: Recorder
) -> None:
    config = config_for(server)
    engine = Engine(config, source=None, sink=NullSink())  # history "auto": under data_dir
    engine.subscribe(recorder)
    task = await started(engine)
    await recorder.wait_for(lambda n: type(n).__name__ == "SessionChanged")
    engine.send_text("hello there")
    await recorder.wait_for(lambda n: isinstance(n, ResponseDone))
    voice = engine.conversation.session["audio"]["output"]["voice"]  # type: ignore[index]
    event_id = engine.update_session(
        {"instructions": "Be brief.", "audio": {"output": {"voice": voice}}}
    )
    await recorder.wait_for(lambda n: type(n).__name__ == "SessionChanged", count=3)
    await stop(engine, task)
    update = next(e for e in server.received if e.get("event_id") == event_id)
    assert update["session"] == {"type": "realtime", "instructions": "Be brief."}
    texts = [i.text for i in engine.conversation.items]
    assert texts[0] == "hello there"
    assert "hello there" in texts[1]
    assert not [e for e in server.sent if e["type"] == "error"]
    logged = history_records(Path(config.data_dir))
    assert [r["role"] for r in logged] == ["user", "assistant"]
    assert logged[0]["text"] == "hello there"


async def test_cancel_and_clear(
    config_for: ConfigFor, recorder: Recorder, speech_wav: Path
) -> None:
    async with RealtimeServer(pace=1.0) as server:  # real-time reply: there is time to cancel
        engine = Engine(config_for(server), source=None, sink=NullSink())
        engine.subscribe(recorder)
        task = await started(engine)
        engine.send_text("tell me a long story")
        await recorder.wait_for(lambda n: type(n).__name__ == "AudioDelta", count=3)
        engine.cancel()
        done = await recorder.wait_for(lambda n: isinstance(n, ResponseDone))
        assert done[0].status == "cancelled"  # type: ignore[attr-defined]
        engine.clear_input()
        await recorder.wait_for(lambda n: type(n).__name__ == "InputCleared")
        engine.cancel()  # nothing running: must not send a second cancel
        await asyncio.sleep(0.1)
        await stop(engine, task)
        received = types_received(server)
        assert received.count("response.cancel") == 1
        assert not [e for e in server.sent if e["type"] == "error"]


async def test_barge_in_truncates_to_what_was_played(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async with RealtimeServer(pace=1.0) as server:
        sink = NullSink(realtime=True)
        engine = Engine(config_for(server), source=None, sink=sink)
        engine.subscribe(recorder)
        task = await started(engine)
        engine.send_text("say something long enough to interrupt")
        await recorder.wait_for(lambda n: type(n).__name__ == "AudioDelta", count=5)
        await asyncio.sleep(0.3)
        engine.cancel()
        await recorder.wait_for(lambda n: type(n).__name__ == "ItemTruncated", timeout=5)
        await recorder.wait_for(lambda n: isinstance(n, TurnLogged) and n.role == "assistant")
        await stop(engine, task)
        cut = next(e for e in server.received if e["type"] == "conversation.item.truncate")
        assert 100 <= cut["audio_end_ms"] <= 1500
        item = engine.conversation.item(cut["item_id"])
        assert item is not None and item.truncated_at_ms == cut["audio_end_ms"]
        assert not [e for e in server.sent if e["type"] == "error"]


async def test_turn_mode_switch_sends_turn_detection(
    server: RealtimeServer, config_for: ConfigFor, recorder: Recorder
) -> None:
    engine = Engine(config_for(server, turn_mode="local-vad"), source=None, sink=NullSink())
    engine.subscribe(recorder)
    task = await started(engine)
    modes = [engine.cycle_turn_mode() for _ in range(4)]
    await recorder.wait_for(lambda n: type(n).__name__ == "SessionChanged", count=5)
    await stop(engine, task)
    assert modes == ["server-vad", "semantic-vad", "push-to-talk", "local-vad"]
    tds = [
        e["session"]["audio"]["input"]["turn_detection"]
        for e in server.received
        if e["type"] == "session.update"
    ][1:]
    assert [td and td["type"] for td in tds] == ["server_vad", "semantic_vad", None, None]
    assert engine.status.turn_mode == "local-vad"


async def test_status_published_and_text_only_engine_has_no_mic(
    server: RealtimeServer, config_for: ConfigFor, recorder: Recorder
) -> None:
    engine = Engine(config_for(server), source=NullSource(), sink=NullSink())
    engine.subscribe(recorder)
    task = await started(engine)
    await stop(engine, task)
    states = [n.status.connection for n in recorder.of(StatusChanged)]
    assert "connected" in states and states[-1] == "closed"
    assert isinstance(engine.status, EngineStatus)


def test_changed_fields_and_deep_merge() -> None:
    current: dict[str, Any] = {"instructions": "a", "audio": {"output": {"voice": "x", "speed": 1}}}
    wanted = {"instructions": "a", "audio": {"output": {"voice": "y", "speed": 1}}}
    assert changed_fields(current, wanted) == {"audio": {"output": {"voice": "y"}}}
    assert deep_merge(current, {"audio": {"input": None}}) == {
        "instructions": "a",
        "audio": {"output": {"voice": "x", "speed": 1}, "input": None},
    }


async def test_transcripts_logged_before_announced(
    server: RealtimeServer, config_for: ConfigFor, recorder: Recorder, speech_wav: Path
) -> None:
    config = config_for(server, turn_mode="push-to-talk")
    data_dir = Path(config.data_dir)
    seen_in_log: list[bool] = []

    def check(note: Any) -> None:
        if isinstance(note, TurnLogged):
            seen_in_log.append(any(r["item_id"] == note.item_id for r in history_records(data_dir)))

    rec = recorder
    history = SessionLog.create(config.data_dir, kind="test")
    engine = Engine(
        config, source=WavFileSource(speech_wav, realtime=False), sink=NullSink(), history=history
    )
    engine.subscribe(rec)
    engine.subscribe(check)
    engine.push_to_talk()
    task = await started(engine)
    await rec.wait_for(lambda n: isinstance(n, TurnLogged) and n.role == "assistant")
    await stop(engine, task)
    history.close()
    assert seen_in_log and all(seen_in_log)


async def test_malformed_server_frames_are_survived(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    from voicecli.server import MALFORMED_KINDS, Faults

    faults = Faults(malformed_before_reply=MALFORMED_KINDS)
    async with RealtimeServer(pace=0, faults=faults) as server:
        engine = Engine(config_for(server), sink=NullSink())
        engine.subscribe(recorder)
        task = await started(engine)
        engine.send_text("are you still there?")
        await recorder.wait_for(lambda n: isinstance(n, ResponseDone), timeout=5)
        engine.send_text("and now?")
        await recorder.wait_for(lambda n: isinstance(n, ResponseDone), timeout=5, count=2)
        await stop(engine, task)
        assert server.malformed_sent
        assert len(server.sessions) == 1  # no reconnect needed
        assert engine.conversation.items[-1].role == "assistant"
