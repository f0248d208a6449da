"""Muting releases a device microphone (its stream closes) and unmuting takes it back;
the engine goes on through both, and a stop while muted still ends cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import numpy as np

from tests.engine.conftest import Recorder, started, stop
from voicecli.audio.sinks import NullSink
from voicecli.audio.sources import BLOCK_SAMPLES, PausableSource
from voicecli.config import Config
from voicecli.engine import Engine
from voicecli.server import RealtimeServer

ConfigFor = Callable[..., Config]


class ReleasableMic:
    """A live source of silence that, like DeviceSource, delivers nothing while paused."""

    realtime = True

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._paused = False
        self._stopped = False
        self._wake = asyncio.Event()

    async def __aenter__(self) -> ReleasableMic:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.calls.append("closed")

    @property
    def paused(self) -> bool:
        return self._paused

    async def pause(self) -> None:
        self.calls.append("pause")
        await asyncio.sleep(0.03)  # a stream takes a moment to close
        self._paused = True

    async def resume(self) -> None:
        self.calls.append("resume")
        await asyncio.sleep(0.03)
        self._paused = False
        self._wake.set()

    async def blocks(self) -> AsyncIterator[np.ndarray[Any, np.dtype[np.int16]]]:
        while not self._stopped:
            if self._paused:
                self._wake.clear()
                await self._wake.wait()
                continue
            await asyncio.sleep(0.02)
            yield np.zeros(BLOCK_SAMPLES, np.int16)

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``check`` (the source's state changes without a notification)."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def test_mute_releases_the_microphone_and_unmute_takes_it_back(
    server: RealtimeServer, config_for: ConfigFor, recorder: Recorder
) -> None:
    mic = ReleasableMic()
    assert isinstance(mic, PausableSource)
    engine = Engine(config_for(server, turn_mode="server-vad"), source=mic, sink=NullSink())
    engine.subscribe(recorder)
    task = await started(engine)
    await until(lambda: engine.status.mic == "sending")
    engine.toggle_mute()
    await until(lambda: mic.paused)
    assert engine.status.mic == "muted"
    engine.toggle_mute()
    await until(lambda: not mic.paused and engine.status.mic == "sending")
    # toggled three times in a burst: the last word counts (muted), in order
    for _ in range(3):
        engine.toggle_mute()
    await until(lambda: mic.paused)
    await asyncio.sleep(0.2)
    assert mic.paused and mic.calls[-1] == "pause"
    await stop(engine, task)  # stopping while released: no hang, the source is closed
    assert mic.calls[:2] == ["pause", "resume"] and mic.calls[-1] == "closed"
