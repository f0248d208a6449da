"""The event loop on a slow disk: prints numbers, asserts nothing.

    .venv/bin/python benchmarks/bench_core.py [--turns 10] [--fsync-ms 30] [--write-ms 5]

The loop that runs the engine also runs the UI, the mic and the speaker pump, so any
wait on it is a wait for all of them. This runs a conversation against the local
server with the history log and a recording on (mic: paced silence, 20 ms blocks; the
speaker: a paced null sink), while the disk is made slow on purpose: every ``fsync``
sleeps ``--fsync-ms`` and every WAV write ``--write-ms``. A ticker measures how late the
loop wakes it every 5 ms (its lag). Run it on an older checkout for comparison with
``PYTHONPATH=that/checkout``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from voicecli.audio.sinks import NullSink
from voicecli.audio.sources import NullSource
from voicecli.audio.wav import WavWriter
from voicecli.config import load_config
from voicecli.engine import Engine
from voicecli.protocol.notifications import ResponseDone
from voicecli.server import RealtimeServer

TICK_S = 0.005


async def measure(turns: int, fsync_ms: float, write_ms: float) -> list[float]:
    lags: list[float] = []
    real_fsync, real_write = os.fsync, WavWriter.write

    def slow_fsync(fd: int) -> None:
        time.sleep(fsync_ms / 1000)
        real_fsync(fd)

    def slow_write(self: WavWriter, frames: object) -> None:
        time.sleep(write_ms / 1000)
        real_write(self, frames)  # type: ignore[arg-type]

    with tempfile.TemporaryDirectory() as tmp:
        async with RealtimeServer(pace=1.0) as server:
            config = load_config(
                env={},
                user_file=False,
                overrides={
                    "connection": {"url": server.url},
                    "data_dir": str(Path(tmp) / "data"),
                    "turn_mode": "push-to-talk",
                    "audio": {"record": str(Path(tmp) / "rec.wav")},
                },
            )
            engine = Engine(config, source=NullSource(), sink=NullSink(realtime=True))
            done = asyncio.Event()
            engine.subscribe(lambda n: done.set() if isinstance(n, ResponseDone) else None)
            task = asyncio.create_task(engine.run())
            await engine.wait_connected()
            os.fsync = slow_fsync
            WavWriter.write = slow_write  # type: ignore[method-assign]
            ticking = True

            async def ticker() -> None:
                loop = asyncio.get_running_loop()
                while ticking:
                    t0 = loop.time()
                    await asyncio.sleep(TICK_S)
                    lags.append((loop.time() - t0 - TICK_S) * 1000)

            tick = asyncio.create_task(ticker())
            try:
                for k in range(turns):
                    done.clear()
                    engine.send_text(f"turn {k}: tell me something short")
                    await done.wait()
            finally:
                ticking = False
                await tick
                os.fsync = real_fsync
                WavWriter.write = real_write  # type: ignore[method-assign]
                await engine.close()
                await task
    return lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--fsync-ms", type=float, default=30.0)
    parser.add_argument("--write-ms", type=float, default=5.0)
    args = parser.parse_args()
    lags = sorted(asyncio.run(measure(args.turns, args.fsync_ms, args.write_ms)))
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    print(
        f"loop lag, {args.turns} turns, fsync {args.fsync_ms:g} ms, WAV write "
        f"{args.write_ms:g} ms: median {statistics.median(lags):.1f} ms, p99 {p99:.1f} ms, "
        f"max {lags[-1]:.1f} ms ({len(lags)} ticks)"
    )


if __name__ == "__main__":
    main()
