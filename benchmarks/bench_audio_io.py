"""PortAudio edge costs: CPU time inside the DeviceSink/DeviceSource callbacks per block.

Needs PortAudio and an output/input device (PulseAudio virtual devices are fine:
``scripts/virtual-audio-start``, then export its PULSE_SERVER). Prints:

1. DeviceSink callback, live: per 10 ms block, wall and thread-CPU time (median, p99,
   max) while 3 s of audio play, and the process CPU share during playback.
2. DeviceSink callback, driven directly (no device clock): the pure Python cost.
3. DeviceSource callback, live: per 20 ms block while capturing 3 s.
4. DeviceSource event-loop side: resampling a 48 kHz device to 24 kHz, per block.

Usage: python benchmarks/bench_audio_io.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from types import SimpleNamespace
from typing import Any

import numpy as np

RATE = 24_000


def summary(label: str, ns: list[int], block_ms: float) -> None:
    if not ns:
        print(f"  {label}: no samples")
        return
    us = sorted(n / 1000 for n in ns)
    p99 = us[min(len(us) - 1, int(len(us) * 0.99))]
    med = statistics.median(us)
    share = med / (block_ms * 1000) * 100
    print(
        f"  {label}: median {med:.1f} us, p99 {p99:.1f} us, max {us[-1]:.1f} us "
        f"(n={len(us)}; median = {share:.2f}% of a {block_ms:g} ms block)"
    )


def timed(cls: type, wall: list[int], cpu: list[int]) -> type:
    """A subclass whose PortAudio callback records its own wall and thread-CPU time."""

    class Timed(cls):  # type: ignore[misc, valid-type]
        def _callback(self, *args: Any) -> None:
            w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            super()._callback(*args)
            cpu.append(time.thread_time_ns() - c0)
            wall.append(time.perf_counter_ns() - w0)

    return Timed


async def bench_sink() -> None:
    from voicecli.audio.device_sink import DeviceSink

    wall: list[int] = []
    cpu: list[int] = []
    sink = timed(DeviceSink, wall, cpu)(None)
    rng = np.random.default_rng(1)
    audio = (rng.standard_normal(3 * RATE) * 4000).clip(-32000, 32000).astype(np.int16)
    await sink.start()
    await asyncio.sleep(0.3)
    wall.clear()
    cpu.clear()
    t0, c0 = time.perf_counter(), time.process_time()
    pcm = audio.tobytes()
    for i in range(0, len(pcm), 4800):
        sink.write(pcm[i : i + 4800], "bench", 0)
    await sink.drained()
    elapsed, used = time.perf_counter() - t0, time.process_time() - c0
    played = sink.played_ms("bench", 0)
    await sink.close()
    print(f"DeviceSink, live ({sink.rate} Hz, {sink.block} frames/block, played {played} ms):")
    summary("callback wall", wall, sink.block * 1000 / sink.rate)
    summary("callback thread CPU", cpu, sink.block * 1000 / sink.rate)
    print(f"  process CPU while playing: {used / elapsed * 100:.1f}% of one core")

    # the same callback driven directly: the pure cost, no device or scheduler noise
    direct = DeviceSink(None, prebuffer_ms=0)
    frames = direct.block
    out = np.zeros((frames, 1), dtype=np.int16)
    status = SimpleNamespace(output_underflow=False)
    costs: list[int] = []
    for k in range(5000):
        if len(direct._ring) < frames:
            direct.write(audio[: RATE // 2], "direct", 0)
        info = SimpleNamespace(currentTime=k * 0.01, outputBufferDacTime=k * 0.01 + 0.2)
        t = time.perf_counter_ns()
        direct._callback(out, frames, info, status)
        costs.append(time.perf_counter_ns() - t)
    await direct.close()
    print("DeviceSink, callback called directly:")
    summary("callback", costs, frames * 1000 / direct.rate)


async def bench_source() -> None:
    from voicecli.audio.dsp import StreamResampler
    from voicecli.audio.sources import DeviceSource

    wall: list[int] = []
    cpu: list[int] = []
    source = timed(DeviceSource, wall, cpu)(None)
    blocks = 0
    async with source as src:
        await src.wait_started(5)
        wall.clear()
        cpu.clear()
        t0 = time.monotonic()
        async for _ in src.blocks():
            blocks += 1
            if time.monotonic() - t0 > 3:
                break
        overflows = src.overflows
    print(f"DeviceSource, live ({source.rate} Hz, {blocks} blocks, overflows {overflows}):")
    summary("callback wall", wall, 20)
    summary("callback thread CPU", cpu, 20)

    resampler = StreamResampler(48_000, RATE)
    rng = np.random.default_rng(2)
    block = (rng.standard_normal(960) * 3000).astype(np.int16)
    costs: list[int] = []
    for _ in range(2000):
        t = time.perf_counter_ns()
        resampler.process(block)
        costs.append(time.perf_counter_ns() - t)
    print("DeviceSource, event-loop side:")
    summary("resample 48 kHz -> 24 kHz per 20 ms block", costs, 20)


def main() -> int:
    try:
        import sounddevice  # noqa: F401
    except OSError as exc:
        print(f"PortAudio unavailable ({exc}): nothing to measure")
        return 1
    asyncio.run(bench_sink())
    asyncio.run(bench_source())
    return 0


if __name__ == "__main__":
    sys.exit(main())
