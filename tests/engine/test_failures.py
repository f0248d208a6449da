"""Connection failures end, back off or rotate by the one classification
(voicecli.protocol.failures), as the engine's supervisor acts on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.engine.conftest import FAST, Recorder, started, stop
from voicecli.aio import timeout
from voicecli.audio.sinks import NullSink
from voicecli.config import Config
from voicecli.engine import ConnectionChanged, Engine, Notice
from voicecli.protocol.notifications import ResponseDone
from voicecli.server import RealtimeServer

ConfigFor = Callable[..., Config]


@pytest.mark.parametrize(
    ("status", "said"),
    [
        (400, "OperationNotSupported"),
        (401, "Access denied"),
        (403, "Forbidden"),
        (404, "DeploymentNotFound"),
    ],
)
async def test_a_refused_handshake_is_said_plainly_and_not_retried(
    config_for: ConfigFor, recorder: Recorder, status: int, said: str
) -> None:
    async with RealtimeServer(pace=0) as server:
        server.faults.refuse_handshake_with = status
        engine = Engine(config_for(server), sink=NullSink(), backoff=FAST)
        engine.subscribe(recorder)
        async with timeout(5):
            await engine.run()  # before: HTTP 400 was retried forever
        assert server.refused == 1
        errors = [n.text for n in recorder.of(Notice) if n.level == "error"]
        assert len(errors) == 1
        assert f"HTTP {status}" in errors[0] and said in errors[0]
        assert engine.status.connection == "failed"
        failed = [n for n in recorder.of(ConnectionChanged) if n.state == "failed"]
        assert failed and f"HTTP {status}" in failed[0].detail


async def test_http_429_backs_off_and_connects_when_it_clears(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async with RealtimeServer(pace=0) as server:
        server.faults.refuse_handshake_with = 429
        engine = Engine(config_for(server), sink=NullSink(), backoff=FAST)
        engine.subscribe(recorder)
        task = asyncio.create_task(engine.run())
        await recorder.wait_for(
            lambda n: isinstance(n, ConnectionChanged) and n.state == "reconnecting", count=2
        )
        server.faults.refuse_handshake_with = None
        async with timeout(5):
            await engine.wait_connected()
        assert server.refused >= 2
        warnings = [n.text for n in recorder.of(Notice) if n.level == "warning"]
        assert any("HTTP 429" in w for w in warnings)
        await stop(engine, task)


@pytest.mark.parametrize("with_error", [True, False])
async def test_expiry_rotates_without_a_lost_connection(
    config_for: ConfigFor, recorder: Recorder, with_error: bool
) -> None:
    """The live service ends a session at 60 minutes with a close 1001 "maximum
    duration" (with or without a session_expired error first): a new session, the
    conversation replayed, and no "connection lost"."""
    async with RealtimeServer(pace=0) as server:
        engine = Engine(config_for(server), sink=NullSink(), backoff=FAST)
        engine.subscribe(recorder)
        task = await started(engine)
        engine.send_text("remember 42")
        await recorder.wait_for(lambda n: isinstance(n, ResponseDone))
        server.faults.expire_without_error = not with_error
        server.faults.expire_after_s = 0.0
        await recorder.wait_for(
            lambda n: isinstance(n, Notice) and "time limit" in n.text, timeout=5
        )
        server.faults.expire_after_s = None
        await recorder.wait_for(
            lambda n: isinstance(n, ConnectionChanged) and n.state == "connected", count=2
        )
        await stop(engine, task)
        texts = [n.text for n in recorder.of(Notice)]
        assert not [t for t in texts if "connection lost" in t], texts
        assert engine.status.connection == "closed"
        second = server.sessions[-1].received
        replayed = [e for e in second if e["type"] == "conversation.item.create"]
        assert replayed and replayed[0]["item"]["content"][0]["text"] == "remember 42"
