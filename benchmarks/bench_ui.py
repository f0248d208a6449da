"""UI benchmark (prints, asserts nothing): 1 000 transcript deltas/s into a 2 000-turn
conversation, key-to-action latency p50/p99 and transcript frame time.

Run: ``python benchmarks/bench_ui.py``. Uses the scripted engine from tests/ui/fakes.py
(a real server cannot produce a deterministic 1 000 deltas/s).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textual.events import Key

from tests.ui.fakes import FakeEngine, FakeItem
from voicecli.protocol.notifications import TranscriptDelta
from voicecli.ui.app import VoiceApp
from voicecli.ui.widgets.transcript import TranscriptView

TURNS = 2000
DELTAS_PER_S = 1000
SECONDS = 3.0
KEYS = 200


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


async def main() -> None:
    engine = FakeEngine()
    conv = engine.conversation
    for i in range(TURNS):
        role = "user" if i % 2 == 0 else "assistant"
        conv.items.append(FakeItem(f"item_{i}", role, body=f"turn {i}: " + "lorem ipsum " * 8))
    live = FakeItem("item_live", "assistant", status="in_progress", body="")
    conv.items.append(live)
    app = VoiceApp(engine, None, run_engine=False)
    frame_times: list[float] = []
    original = TranscriptView._flush

    def timed_flush(self: TranscriptView) -> None:
        t0 = time.perf_counter()
        original(self)
        frame_times.append((time.perf_counter() - t0) * 1000)

    TranscriptView._flush = timed_flush  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        t0 = time.perf_counter()
        app.transcript.flush_now()
        first = (time.perf_counter() - t0) * 1000
        await pilot.pause()

        stop = asyncio.Event()

        async def feed() -> int:
            sent = 0
            start = time.perf_counter()
            while not stop.is_set():
                due = int((time.perf_counter() - start) * DELTAS_PER_S)
                while sent < due:
                    live.body += "word "
                    engine.publish(TranscriptDelta("item_live", "assistant", 0, "word "))
                    sent += 1
                await asyncio.sleep(0.001)
            return sent

        feeder = asyncio.create_task(feed())
        latencies: list[float] = []
        calls_before = len(engine.calls)
        start = time.perf_counter()
        for i in range(KEYS):
            t = time.perf_counter()
            want = calls_before + i + 1
            app.post_message(Key("m", None))
            while len(engine.calls) < want:
                await asyncio.sleep(0)
            latencies.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(SECONDS / KEYS)
        stop.set()
        sent = await feeder
        elapsed = time.perf_counter() - start
        await pilot.pause()
    steady = frame_times[1:] or [0.0]
    print(f"turns: {TURNS}, deltas sent: {sent} in {elapsed:.2f} s ({sent / elapsed:.0f}/s)")
    print(f"first full layout of {TURNS} turns: {first:.1f} ms")
    print(
        f"key-to-action latency (m -> engine.toggle_mute): p50 {pct(latencies, 50):.2f} ms, "
        f"p99 {pct(latencies, 99):.2f} ms, max {max(latencies):.2f} ms"
    )
    print(
        f"transcript frame (flush) time: p50 {statistics.median(steady):.2f} ms, "
        f"p99 {pct(steady, 99):.2f} ms, frames {len(steady)} "
        f"({len(steady) / elapsed:.0f}/s)"
    )


if __name__ == "__main__":
    asyncio.run(main())
