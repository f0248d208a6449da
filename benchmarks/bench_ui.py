"""UI benchmark (prints, asserts nothing): 1 000 transcript deltas/s into a 2 000-turn
conversation, key-to-action latency p50/p99, transcript frame time (the batched
re-layout) and screen paint time (Textual's compositor rendering the changed regions).

Run: ``python benchmarks/bench_ui.py``. Uses the scripted engine from tests/ui/fakes.py
(a real server cannot produce a deterministic 1 000 deltas/s).
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textual._compositor import Compositor
from textual.events import Key
from textual.pilot import Pilot

from tests.ui.fakes import FakeEngine, FakeItem
from voicecli.engine.notifications import StatusChanged
from voicecli.protocol.notifications import ResponseDone, TranscriptDelta
from voicecli.ui.app import VoiceApp
from voicecli.ui.widgets.transcript import TranscriptView

TURNS = 2000
DELTAS_PER_S = 1000
SECONDS = 3.0
KEYS = 200


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


async def reply_over(
    pilot: Pilot[Any], engine: FakeEngine, settle_times: list[float], count: int
) -> None:
    """A reply ends, then its audio (status playing -> idle): the app settles the heap."""
    for response in ("playing", "idle"):
        engine.status = dataclasses.replace(engine.status, response=response)  # type: ignore[arg-type]
        engine.publish(StatusChanged(engine.status))
        if response == "playing":
            engine.publish(ResponseDone(f"resp_{count}", "completed", None, None))
    for _ in range(200):
        if len(settle_times) >= count:
            return
        await pilot.pause(0.01)
    raise RuntimeError("the app never settled the heap")


def long_conversation(engine: FakeEngine, turns: int = TURNS) -> FakeItem:
    """Fill the engine's conversation with ``turns`` finished turns; returns the
    assistant item still streaming after them."""
    conv = engine.conversation
    for i in range(turns):
        role = "user" if i % 2 == 0 else "assistant"
        conv.items.append(FakeItem(f"item_{i}", role, body=f"turn {i}: " + "lorem ipsum " * 8))
    live = FakeItem("item_live", "assistant", status="in_progress", body="")
    conv.items.append(live)
    return live


async def main() -> None:
    engine = FakeEngine()
    live = long_conversation(engine)
    app = VoiceApp(engine, None, run_engine=False)
    frame_times: list[float] = []
    original = TranscriptView._flush

    def timed_flush(self: TranscriptView) -> None:
        t0 = time.perf_counter()
        original(self)
        frame_times.append((time.perf_counter() - t0) * 1000)

    paint_times: list[float] = []
    render_update = Compositor.render_update

    def timed_paint(self: Compositor, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        result = render_update(self, *args, **kwargs)
        paint_times.append((time.perf_counter() - t0) * 1000)
        return result

    settle_times: list[float] = []
    settle_heap = VoiceApp._settle_heap

    def timed_settle(self: VoiceApp) -> None:
        t0 = time.perf_counter()
        settle_heap(self)
        settle_times.append((time.perf_counter() - t0) * 1000)

    TranscriptView._flush = timed_flush  # type: ignore[method-assign]
    VoiceApp._settle_heap = timed_settle  # type: ignore[method-assign]
    Compositor.render_update = timed_paint  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        # the mount already laid the turns out: force every one to render again
        app.transcript.structure_changed()
        app.transcript.refresh_all()
        t0 = time.perf_counter()
        app.transcript.flush_now()
        first = (time.perf_counter() - t0) * 1000
        await pilot.pause()
        # the 2 000th reply ends, as in a live session: the app settles the heap once
        # the speaker is quiet (VoiceApp._settle_heap, timed here; the first settle on
        # mount was before this layout)
        settle_times.clear()
        await reply_over(pilot, engine, settle_times, 1)
        frame_times.clear()
        paint_times.clear()

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
        # the streamed reply ends: the next settle only visits what is not frozen yet
        await reply_over(pilot, engine, settle_times, 2)
    steady = frame_times or [0.0]
    paints = paint_times or [0.0]
    print(f"turns: {TURNS}, deltas sent: {sent} in {elapsed:.2f} s ({sent / elapsed:.0f}/s)")
    print(f"first full layout of {TURNS} turns: {first:.1f} ms")
    print(
        f"heap settle at {TURNS} turns (once a reply is over): first "
        f"{settle_times[0]:.1f} ms, next (after the streamed reply) {settle_times[1]:.1f} ms"
    )
    print(
        f"key-to-action latency (m -> engine.toggle_mute): p50 {pct(latencies, 50):.2f} ms, "
        f"p99 {pct(latencies, 99):.2f} ms, max {max(latencies):.2f} ms"
    )
    print(
        f"transcript frame (flush) time: p50 {statistics.median(steady):.2f} ms, "
        f"p99 {pct(steady, 99):.2f} ms, frames {len(steady)} "
        f"({len(steady) / elapsed:.0f}/s)"
    )
    print(
        f"screen paint (compositor render_update): p50 {statistics.median(paints):.2f} ms, "
        f"p99 {pct(paints, 99):.2f} ms, paints {len(paint_times)}"
    )


if __name__ == "__main__":
    asyncio.run(main())
