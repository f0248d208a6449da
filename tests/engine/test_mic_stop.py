"""The engine's mic loop ends by the source's explicit stop, not by cancellation alone:
a source that swallows a cancellation (as ``asyncio.wait_for`` did on Python 3.11, see
tests/audio/test_stop.py) still lets ``Engine.run`` return promptly after ``close``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import numpy as np

from tests.engine.conftest import started, stop
from voicecli.audio.sinks import NullSink
from voicecli.audio.sources import BLOCK_SAMPLES
from voicecli.config import Config
from voicecli.engine import Engine
from voicecli.engine.engine import STOP_GRACE_S
from voicecli.server import RealtimeServer


class StubbornSource:
    """A microphone whose wait outlives one cancellation: it only ends on stop()."""

    realtime = True
    overflows = 0

    def __init__(self) -> None:
        self.stopped = asyncio.Event()
        self.swallowed = 0
        self.blocks_read = 0

    async def __aenter__(self) -> StubbornSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def stop(self) -> None:
        self.stopped.set()

    async def blocks(self) -> AsyncIterator[Any]:
        while not self.stopped.is_set():
            try:
                await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                self.swallowed += 1  # the race: the cancel is lost, the loop runs on
                if self.swallowed > 1:
                    raise
            self.blocks_read += 1
            yield np.zeros(BLOCK_SAMPLES, np.int16)


async def test_close_ends_a_mic_loop_that_swallows_its_cancel(
    config_for: Callable[..., Config],
) -> None:
    async with RealtimeServer(pace=0) as server:
        source = StubbornSource()
        engine = Engine(config_for(server), source=source, sink=NullSink())
        task = await started(engine)
        while source.blocks_read < 3:
            await asyncio.sleep(0.01)
        t0 = time.monotonic()
        await stop(engine, task)
        took = time.monotonic() - t0
    assert source.stopped.is_set()
    assert source.swallowed == 0  # it ended by its stop, never needed a cancel
    assert took < STOP_GRACE_S


async def test_a_cancelled_shutdown_still_runs_every_step() -> None:
    """Textual cancels the engine's worker at exit; the steps after the interrupted one
    (closing the tools' log files, the speaker, the history) used to be skipped."""
    from voicecli.engine.tasks import run_to_end

    done: list[str] = []

    async def slow(name: str) -> None:
        await asyncio.sleep(0.05)
        done.append(name)

    task = asyncio.create_task(run_to_end(lambda: slow("a"), lambda: slow("b")))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.wait([task], timeout=2)
    assert task.cancelled() and done == ["a", "b"]
