"""Sources stop by an explicit stop, and a cancellation that arrives with a block is
never swallowed (CPython gh-86296: ``asyncio.wait_for`` on 3.10/3.11 returns the result
when the cancel comes in the same loop iteration as the awaited event; the mic loop then
ran on after ``ask`` had finished, and ``ask`` never exited)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from tests.audio.conftest import tone
from tests.audio.fake_sd import FakeSoundDevice, stream_of
from voicecli.audio.sources import AudioSource, DeviceSource, NullSource, WavFileSource
from voicecli.audio.wav import write_wav


async def until(predicate: object, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


async def test_a_cancel_arriving_with_a_block_ends_the_mic(fake_sd: FakeSoundDevice) -> None:
    got: list[int] = []
    async with DeviceSource(stall_timeout_s=5) as src:

        async def consume() -> None:
            async for block in src.blocks():
                got.append(int(block[0]))

        src._deliver(np.full(480, 1, np.int16), 0.0)  # audio flows
        task = asyncio.create_task(consume())
        await until(lambda: got == [1])
        await asyncio.sleep(0.01)  # the consumer waits for the next block
        src._deliver(np.full(480, 2, np.int16), 0.0)
        await asyncio.sleep(0)  # the block's wakeup runs: the wait is done ...
        task.cancel()  # ... and the cancel comes before the generator resumes
        done, _ = await asyncio.wait([task], timeout=1.0)
        assert done == {task}, "the mic loop swallowed its cancellation and ran on"
        assert task.cancelled()


async def test_stop_ends_a_waiting_device_source(fake_sd: FakeSoundDevice) -> None:
    async with DeviceSource(stall_timeout_s=30) as src:
        stream = stream_of(fake_sd)
        stream.push(np.zeros(480, np.int16))
        got = 0

        async def consume() -> None:
            nonlocal got
            async for _ in src.blocks():
                got += 1

        task = asyncio.create_task(consume())
        await until(lambda: got == 1)
        t0 = time.monotonic()
        src.stop()  # no cancel: the loop ends by itself
        await asyncio.wait([task], timeout=1.0)
        assert task.done() and not task.cancelled() and task.exception() is None
        assert time.monotonic() - t0 < 0.5  # the stall timeout is 30 s
    assert stream.closed


async def test_stop_ends_a_queue_with_blocks_left(fake_sd: FakeSoundDevice) -> None:
    async with DeviceSource() as src:
        for k in range(5):
            src._deliver(np.full(480, k, np.int16), 0.0)
        got: list[int] = []
        async for block in src.blocks():
            got.append(int(block[0]))
            src.stop()
    assert got == [0]


async def stops_on_request(source: AudioSource) -> int:
    """Blocks read before :meth:`stop` (asked after the third) took effect."""
    got = 0
    async with source as src:
        async for _ in src.blocks():
            got += 1
            if got == 3:
                src.stop()
            assert got < 50, "stop() was ignored"
    return got


async def test_stop_ends_an_endless_null_source() -> None:
    assert await stops_on_request(NullSource()) == 3


async def test_stop_ends_a_wav_source(tmp_path: Path) -> None:
    write_wav(tmp_path / "long.wav", tone(440, 5.0))
    assert await stops_on_request(WavFileSource(tmp_path / "long.wav")) == 3
    assert await stops_on_request(WavFileSource(tmp_path / "long.wav", realtime=False)) == 3
