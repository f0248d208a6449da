"""Reconnect, replay and backpressure, driven by the local server's fault switches."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import FAST, Recorder, history_records, started, stop, utterance
from voicecli.audio.sinks import NullSink
from voicecli.audio.sources import WavFileSource
from voicecli.config import Config
from voicecli.engine import ConnectionChanged, Engine, Notice, TurnLogged
from voicecli.engine.engine import Backoff
from voicecli.history import SessionLog
from voicecli.protocol.notifications import ResponseDone
from voicecli.server import Faults, RealtimeServer

ConfigFor = Callable[..., Config]


def creates(session_received: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["item"] for e in session_received if e.get("type") == "conversation.item.create"]


def assert_nothing_lost(engine: Engine, server: RealtimeServer, data_dir: str | Path) -> None:
    """Every finished message of the conversation is in the session's JSONL log with its
    final text, and every reconnect replayed the conversation as it stood, in order."""
    logged = {r["item_id"]: r for r in history_records(Path(data_dir))}
    messages = [i for i in engine.conversation.items if i.type == "message"]
    finished = [i for i in messages if i.status == "completed" and i.text]
    assert finished, "nothing finished: the test checked nothing"
    for item in finished:
        assert item.id in logged, f"{item.role} turn {item.text!r} missing from the log"
        assert logged[item.id]["text"] == item.text
    order = [i.id for i in engine.conversation.items]
    for session in server.sessions[1:]:
        replayed = creates(session.received)
        ids = [r["id"] for r in replayed]
        positions = [order.index(i) for i in ids]
        assert positions == sorted(positions), "replayed out of conversation order"
        # nothing finished before the last replayed item was left out (a reply cut off
        # by the drop is; it was never finished)
        before = engine.conversation.items[: max(positions, default=-1) + 1]
        skipped = [i.text for i in before if i in finished and i.id not in ids]
        assert skipped == [], "finished turns missing from the replay"
        for r in replayed:
            item = engine.conversation.item(r["id"])
            assert item is not None and r["role"] == item.role
            if r["role"] == "user":
                texts = [c.get("text") or c.get("transcript") for c in r["content"]]
                assert " ".join(t for t in texts if t) == item.text


async def text_engine(
    config: Config, recorder: Recorder, **kwargs: Any
) -> tuple[Engine, asyncio.Task[None]]:
    """A started engine without audio (replies go to a NullSink), fast backoff unless
    ``backoff`` is given, its notifications going to ``recorder``."""
    kwargs.setdefault("backoff", FAST)
    engine = Engine(config, sink=NullSink(), **kwargs)
    engine.subscribe(recorder)
    return engine, await started(engine)


async def replies(recorder: Recorder, n: int, timeout: float = 10) -> None:
    """Until ``n`` responses have completed."""
    await recorder.wait_for(
        lambda x: isinstance(x, ResponseDone) and x.status == "completed", count=n, timeout=timeout
    )


async def chat(engine: Engine, recorder: Recorder, text: str, n: int) -> None:
    engine.send_text(text)
    await replies(recorder, n)


async def test_drop_mid_response_reconnects_replays_and_answers_again(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async with RealtimeServer(pace=0) as server:
        config = config_for(server)
        history = SessionLog.create(config.data_dir, kind="test")
        engine, task = await text_engine(config, recorder, history=history)
        await chat(engine, recorder, "first question", 1)
        server.faults.drop_after_audio_deltas = 2
        engine.send_text("second question")
        await recorder.wait_for(
            lambda n: isinstance(n, ConnectionChanged) and n.state == "reconnecting"
        )
        server.faults.drop_after_audio_deltas = None
        await replies(recorder, 2)
        await recorder.wait_for(
            lambda n: isinstance(n, TurnLogged) and n.role == "assistant", count=2
        )
        await stop(engine, task)
        history.close()
        assert len(server.sessions) == 2
        replayed = creates(server.sessions[1].received)
        # everything finished before the drop, with the same ids; the cut-off reply is not
        first_items = [i for i in engine.conversation.items][:3]
        assert [r["id"] for r in replayed] == [i.id for i in first_items]
        assert [r["role"] for r in replayed] == ["user", "assistant", "user"]
        assert replayed[0]["content"][0]["text"] == "first question"
        assert replayed[2]["content"][0]["text"] == "second question"
        assert "response.create" in [e["type"] for e in server.sessions[1].received]
        texts = [(i.role, i.text) for i in engine.conversation.items]
        assert texts[0] == ("user", "first question")
        assert texts[2] == ("user", "second question")
        assert texts[-1][0] == "assistant" and "second question" in texts[-1][1]
        logged = history_records(Path(config.data_dir))
        assistant = [r for r in logged if r["role"] == "assistant"]
        assert len(assistant) == 2 and all(r["status"] == "completed" for r in assistant)
        users = [r["text"] for r in logged if r["role"] == "user"]
        assert users == ["first question", "second question"]  # once each, despite the replay
        assert_nothing_lost(engine, server, config.data_dir)


async def test_drop_mid_append_resends_the_turn_audio(
    config_for: ConfigFor, recorder: Recorder, speech_wav: Path
) -> None:
    async with RealtimeServer(pace=0, faults=Faults(drop_on_append=20)) as server:
        config = config_for(server, turn_mode="push-to-talk")
        engine = Engine(
            config, source=WavFileSource(speech_wav, realtime=False), sink=NullSink(), backoff=FAST
        )
        engine.subscribe(recorder)

        def heal(note: object) -> None:  # runs before the reconnect: one drop only
            if isinstance(note, ConnectionChanged) and note.state == "reconnecting":
                server.faults.drop_on_append = None

        engine.subscribe(heal)
        engine.push_to_talk()
        task = await started(engine)
        await recorder.wait_for(lambda x: isinstance(x, ResponseDone), timeout=10)
        await stop(engine, task)
        assert len(server.sessions) == 2
        from voicecli.audio.wav import read_wav_24k_mono

        source_ms = len(read_wav_24k_mono(speech_wav)) / 24
        reply = engine.conversation.items[-1]
        assert reply.role == "assistant"
        # the second session got the whole turn: the echo is as long as the file
        second = server.sessions[1]
        appended = sum(
            len(e["audio"]) * 3 // 4
            for e in second.received
            if e["type"] == "input_audio_buffer.append"
        )
        assert abs(appended / 48 - source_ms) < 40
        logged_roles = [r["role"] for r in history_records(Path(config.data_dir))]
        assert logged_roles.count("assistant") == 1
        assert_nothing_lost(engine, server, config.data_dir)


async def test_session_expiry_reconnects_with_session_and_history(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async with RealtimeServer(pace=0) as server:
        config = config_for(server)
        engine, task = await text_engine(config, recorder)
        await chat(engine, recorder, "remember the number 42", 1)
        server.faults.expire_after_s = 0.0
        await recorder.wait_for(
            lambda n: isinstance(n, ConnectionChanged) and n.state == "reconnecting"
        )
        server.faults.expire_after_s = None
        await recorder.wait_for(
            lambda n: isinstance(n, ConnectionChanged) and n.state == "connected", count=2
        )
        await chat(engine, recorder, "what number?", 2)
        await stop(engine, task)
        second = server.sessions[-1].received
        assert second[0]["type"] == "session.update"
        assert [i["role"] for i in creates(second)[:2]] == ["user", "assistant"]
        assert creates(second)[0]["content"][0]["text"] == "remember the number 42"
        texts = [(i.role, i.text) for i in engine.conversation.items]
        assert [t for t in texts if t[0] == "user"] == [
            ("user", "remember the number 42"),
            ("user", "what number?"),
        ]
        assert texts[-1] == ("assistant", "You said: what number?")
        assert_nothing_lost(engine, server, config.data_dir)


async def test_refused_three_times_then_connects(config_for: ConfigFor, recorder: Recorder) -> None:
    async with RealtimeServer(pace=0) as server:
        config = config_for(server)
        engine, task = await text_engine(config, recorder)
        await chat(engine, recorder, "hello", 1)
        # the server goes away after a turn and refuses the next three reconnects
        server.faults.refuse_connections = 3
        server.faults.drop_after_audio_deltas = 1
        engine.send_text("are you there")
        await recorder.wait_for(
            lambda n: isinstance(n, ConnectionChanged) and n.state == "reconnecting"
        )
        server.faults.drop_after_audio_deltas = None
        await recorder.wait_for(
            lambda n: isinstance(n, ConnectionChanged) and n.state == "connected", count=2
        )
        await replies(recorder, 2)
        await stop(engine, task)
        assert server.refused == 3
        assert_nothing_lost(engine, server, config.data_dir)
        assert [i.text for i in engine.conversation.items if i.role == "user"] == [
            "hello",
            "are you there",
        ]
        assert server.refused == 3
        states = [n.state for n in recorder.of(ConnectionChanged)]
        assert states.count("reconnecting") >= 3
        assert states[-1] == "closed"


async def test_fatal_auth_error_is_not_retried(config_for: ConfigFor, recorder: Recorder) -> None:
    async with RealtimeServer(api_key="sk-right") as server:
        engine = Engine(config_for(server), sink=NullSink(), api_key="sk-wrong", backoff=FAST)
        engine.subscribe(recorder)
        await asyncio.wait_for(engine.run(), 5)
        assert len(server.sessions) == 0  # refused at the session start, never retried
        errors = [n for n in recorder.of(Notice) if n.level == "error"]
        assert len(errors) == 1
        assert "sk-wrong" not in errors[0].text
        assert engine.status.connection == "failed"


async def test_close_cancels_backoff_wait(config_for: ConfigFor, recorder: Recorder) -> None:
    async with RealtimeServer(pace=0, faults=Faults(refuse_connections=100)) as server:
        engine = Engine(config_for(server), sink=NullSink(), backoff=Backoff(initial=30, cap=30))
        engine.subscribe(recorder)
        task = asyncio.create_task(engine.run())
        await recorder.wait_for(
            lambda n: isinstance(n, ConnectionChanged) and n.state == "reconnecting"
        )
        await asyncio.wait_for(engine.close(), 1)
        await asyncio.wait_for(task, 1)
        assert engine.status.connection == "closed"


async def test_reconnect_now_skips_the_backoff_wait(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async with RealtimeServer(pace=0, faults=Faults(refuse_connections=2)) as server:
        engine = Engine(config_for(server), sink=NullSink(), backoff=Backoff(initial=60, cap=60))
        engine.subscribe(recorder)
        assert not engine.reconnect_now()  # nothing to reconnect yet
        task = asyncio.create_task(engine.run())
        for refusals in (1, 2):
            await recorder.wait_for(
                lambda n: isinstance(n, ConnectionChanged) and n.detail.startswith("attempt"),
                count=refusals,
            )
            assert server.refused == refusals
            assert engine.reconnect_now()
        await asyncio.wait_for(engine.wait_connected(), 2)  # not the 30-60 s backoff
        await chat(engine, recorder, "hello", 1)
        assert not engine.reconnect_now()  # connected: nothing to do
        await stop(engine, task)


async def test_stop_reconnecting_stays_offline_until_asked_and_keeps_the_conversation(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async with RealtimeServer(pace=0) as server:
        config = config_for(server)
        engine, task = await text_engine(config, recorder, backoff=Backoff(initial=0.05, cap=0.05))
        await chat(engine, recorder, "before the outage", 1)
        server.faults.refuse_connections = 1000
        server.faults.drop_after_audio_deltas = 1
        engine.send_text("cut off")
        await recorder.wait_for(
            lambda n: isinstance(n, ConnectionChanged) and n.state == "reconnecting", count=2
        )
        assert engine.stop_reconnecting()
        await recorder.wait_for(lambda n: isinstance(n, ConnectionChanged) and n.state == "offline")
        assert not engine.stop_reconnecting()  # already stopped
        refused = server.refused
        await asyncio.sleep(0.5)  # ten backoff delays: none is tried while offline
        assert server.refused == refused
        assert engine.status.connection == "offline"
        server.faults.refuse_connections = 0
        server.faults.drop_after_audio_deltas = None
        engine.send_text("after the outage")  # typed while offline: sent once back
        assert engine.reconnect_now()
        # one reply, to both messages: the replay carries "cut off" as context
        await replies(recorder, 2)
        await stop(engine, task)
        users = [i.text for i in engine.conversation.items if i.role == "user"]
        assert users == ["before the outage", "cut off", "after the outage"]
        assert engine.conversation.items[-1].role == "assistant"  # the last message answered
        errors = [e["error"]["code"] for e in server.sent if e.get("type") == "error"]
        assert errors == []  # no second response.create refused
        assert_nothing_lost(engine, server, config.data_dir)


class BurstSource:
    """A live-like source that produces ``seconds`` of audio far faster than real time,
    so a stalled socket makes the outbox grow."""

    realtime = True
    overflows = 0

    def __init__(self, seconds: float) -> None:
        self.blocks_left = int(seconds * 50)
        self.block = utterance(0.02, 0.0, 0.0)

    async def __aenter__(self) -> BurstSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def stop(self) -> None:
        self.blocks_left = 0

    async def blocks(self) -> Any:
        for i in range(self.blocks_left):
            if i >= self.blocks_left:
                return
            yield self.block
            if i % 50 == 0:
                await asyncio.sleep(0)


@pytest.mark.slow
async def test_stall_drops_oldest_audio_beyond_backlog(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async with RealtimeServer(pace=0) as server:
        config = config_for(server, turn_mode="server-vad", audio={"max_backlog_s": 0.5})
        engine = Engine(config, source=BurstSource(60), sink=NullSink(), backoff=FAST)  # type: ignore[arg-type]
        engine.subscribe(recorder)
        server.faults.stall_s = 4.0
        task = await started(engine)
        await recorder.wait_for(lambda n: isinstance(n, Notice) and "stalled" in n.text, 10)
        await recorder.wait_for(lambda n: engine.status.mic == "off", 30)
        await stop(engine, task)
        assert engine.status.dropped_audio_ms > 0
        assert engine._outbox.queued_audio_ms <= 500


@pytest.mark.slow
async def test_a_ten_second_stall_delays_the_reply_and_loses_nothing(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async with RealtimeServer(pace=0) as server:
        config = config_for(server)
        engine, task = await text_engine(config, recorder)
        await chat(engine, recorder, "before the stall", 1)
        server.faults.stall_s = 10.0
        t0 = asyncio.get_running_loop().time()
        engine.send_text("during the stall")
        await replies(recorder, 2, timeout=20)
        waited = asyncio.get_running_loop().time() - t0
        await recorder.wait_for(
            lambda n: isinstance(n, TurnLogged) and n.role == "assistant", count=2
        )
        await stop(engine, task)
        assert waited >= 9.5  # the server really stalled
        assert len(server.sessions) == 1  # a 10 s stall is waited out (20 s ping timeout)
        texts = [(i.role, i.text) for i in engine.conversation.items]
        assert texts == [
            ("user", "before the stall"),
            ("assistant", "You said: before the stall"),
            ("user", "during the stall"),
            ("assistant", "You said: during the stall"),
        ]
        assert_nothing_lost(engine, server, config.data_dir)


async def test_proactive_rotation_before_expiry_at_a_quiet_moment(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async with RealtimeServer(pace=0, faults=Faults(expire_after_s=4.0)) as server:
        engine, task = await text_engine(config_for(server), recorder, rotate_margin_s=3.0)
        await chat(engine, recorder, "before the rotation", 1)
        await recorder.wait_for(lambda n: isinstance(n, Notice) and "renewing" in n.text, 5)
        await recorder.wait_for(
            lambda n: isinstance(n, ConnectionChanged) and n.state == "connected", count=2
        )
        server.faults.expire_after_s = None
        await chat(engine, recorder, "after the rotation", 2)
        await stop(engine, task)
        expired = [e for e in server.sent if e.get("error", {}).get("code") == "session_expired"]
        assert not expired  # renewed before the server had to expire it
        second = server.sessions[1].received
        assert creates(second)[0]["content"][0]["text"] == "before the rotation"
