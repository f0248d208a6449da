"""Live-shaped traffic (tests/fixtures/live/) replayed through the engine, over a
connection that plays the recorded server events: what the user is told, the status
bar's tokens and cost, the history."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import Recorder, make_config, started, stop
from tests.protocol.test_live_fixtures import events
from voicecli.audio.sinks import NullSink
from voicecli.config import ConnectionConfig
from voicecli.connection import ConnectionLost, build_endpoint
from voicecli.engine import Engine, Notice, TurnLogged
from voicecli.protocol.notifications import ResponseDone


class ReplayConnection:
    """Plays recorded server events, takes what the client sends, and stays open until
    closed (as a live socket would)."""

    def __init__(self, recorded: list[dict[str, Any]]) -> None:
        self._events = [_now(e) for e in recorded]
        self.sent: list[dict[str, Any]] = []
        self._closed = asyncio.Event()
        self.endpoint = build_endpoint(ConnectionConfig())

    async def connect(self) -> None:
        return None

    @property
    def is_open(self) -> bool:
        return not self._closed.is_set()

    async def send(self, event: dict[str, Any]) -> None:
        if self._closed.is_set():
            raise ConnectionLost("closed")
        self.sent.append(event)

    def __aiter__(self) -> ReplayConnection:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._events:
            await asyncio.sleep(0)
            return self._events.pop(0)
        await self._closed.wait()
        raise StopAsyncIteration

    async def close(self) -> None:
        self._closed.set()


def _now(event: dict[str, Any]) -> dict[str, Any]:
    """A recorded session expired long ago: moved to an hour from now, or the engine
    would rotate at once."""
    session = event.get("session")
    if isinstance(session, dict) and "expires_at" in session:
        return {**event, "session": {**session, "expires_at": int(time.time()) + 3600}}
    return event


def replaying(name: str, tmp_path: Path, recorder: Recorder, **config: Any) -> Engine:
    cfg = make_config("wss://api.openai.com/v1/realtime", tmp_path, **config)
    conn = ReplayConnection(events(name))
    factory: Callable[[], Any] = lambda: conn  # noqa: E731
    engine = Engine(cfg, sink=NullSink(), connection_factory=factory)
    engine.subscribe(recorder)
    return engine


async def test_voice_turn_priced_at_the_models_rates(tmp_path: Path, recorder: Recorder) -> None:
    engine = replaying("voice_turn", tmp_path, recorder, connection={"model": "gpt-realtime-mini"})
    task = await started(engine)
    await recorder.wait_for(lambda n: isinstance(n, ResponseDone))
    await recorder.wait_for(lambda n: isinstance(n, TurnLogged) and n.role == "assistant")
    await stop(engine, task)
    status = engine.status
    assert (status.input_tokens, status.output_tokens) == (132, 121)
    # mini: text 55 x 0.60 + cached text 64 x 0.06 + audio 13 x 10 + out 30 x 2.40 + 91 x 20
    assert status.cost_usd == pytest.approx(2058.84 / 1e6)
    # transcription apart, at gpt-4o-mini-transcribe's rates: 13 x 3.00 + 9 x 5.00
    assert status.transcription_usd == pytest.approx(84 / 1e6)
    assert not [n for n in recorder.of(Notice) if n.level == "error"]


@pytest.mark.parametrize(
    ("name", "code"),
    [("failed_response", "insufficient_quota"), ("rate_limit", "rate_limit_exceeded")],
)
async def test_failures_are_said(tmp_path: Path, recorder: Recorder, name: str, code: str) -> None:
    engine = replaying(name, tmp_path, recorder)
    task = await started(engine)
    await recorder.wait_for(lambda n: isinstance(n, ResponseDone) and n.status == "failed")
    await stop(engine, task)
    errors = [n.text for n in recorder.of(Notice) if n.level == "error"]
    assert len(errors) == 1 and code in errors[0]
    assert engine.status.response_error is not None and code in engine.status.response_error


async def test_function_call_turn_reaches_the_history(tmp_path: Path, recorder: Recorder) -> None:
    engine = replaying("function_call_turn", tmp_path, recorder)
    task = await started(engine)
    await recorder.wait_for(lambda n: isinstance(n, TurnLogged) and n.role == "function_call")
    await stop(engine, task)
    call = engine.conversation.items[-1]
    assert call.name == "get_weather" and call.arguments == '{"city":"Paris"}'
