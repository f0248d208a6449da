"""Listening in silence wakes nothing but the mic loop: no sender wake-up per block
(each one is a loop iteration, 50 a second, for nothing to send)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.engine.conftest import Recorder, started, stop
from voicecli.audio.sinks import NullSink
from voicecli.audio.sources import NullSource
from voicecli.config import Config
from voicecli.engine import Engine
from voicecli.server import RealtimeServer

ConfigFor = Callable[..., Config]


async def test_silent_mic_blocks_do_not_wake_the_sender(
    server: RealtimeServer, config_for: ConfigFor, recorder: Recorder
) -> None:
    engine = Engine(config_for(server, turn_mode="local-vad"), source=NullSource(), sink=NullSink())
    engine.subscribe(recorder)
    task = await started(engine)
    await asyncio.sleep(0.3)  # the session's own traffic settles
    ready = engine._outbox_ready
    wakes = 0
    original = ready.set

    def counting_set() -> None:
        nonlocal wakes
        wakes += 1
        original()

    ready.set = counting_set  # type: ignore[method-assign]
    await asyncio.sleep(1.0)  # 50 blocks of silence
    await stop(engine, task)
    assert wakes <= 2, wakes
