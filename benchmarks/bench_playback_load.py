"""Playback under load (prints, asserts nothing): dropouts and barge-in time per
``audio.output_latency``, with the app idle and with the UI at its busiest.

    PULSE_SERVER=... python benchmarks/bench_playback_load.py [--latencies 0.2,0.05,0.03]

The microphone is open and read throughout, as in the app. For each latency a
:class:`~voicecli.audio.device_sink.DeviceSink` plays a continuous 440 Hz
tone (written ahead, as the server sends audio faster than real time) into the
PulseAudio null sink while ``parec`` records its monitor. Dropouts are counted in the
recording itself: 2 ms windows inside the tone where it fell silent (PortAudio's
underflow flags are printed too, but the ALSA->PulseAudio path does not always raise
them). Then the sink is flushed mid-tone (a barge-in) and the tone recorded past the
flush point is the barge-in -> silent time.

"UI busy" runs, in the same process and event loop, the workload of
benchmarks/bench_ui.py while a reply plays: a 2 000-turn conversation, 1 000 transcript
deltas/s, a response.done every half second, and the whole transcript laid out again
every 2 s (as on a terminal resize). The playback callback needs the GIL, so this is
what can starve it; garbage collections hold the GIL throughout, which is why the app
settles its heap only when the speaker is quiet (VoiceApp._settle_heap).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_engine import have_pulse, record_speaker
from bench_ui import long_conversation

from tests.ui.fakes import FakeEngine
from voicecli.audio.device_sink import DeviceSink
from voicecli.audio.sources import DeviceSource
from voicecli.protocol.notifications import ResponseDone, TranscriptDelta
from voicecli.ui.app import VoiceApp

RATE = 24_000
TONE_S = 6.0
FLUSH_AT_S = 4.0
AMPLITUDE = 8000
WINDOW = RATE // 500  # 2 ms


@contextlib.asynccontextmanager
async def ui_load() -> AsyncIterator[None]:
    """The busiest UI of bench_ui.py, running until the block exits."""
    engine = FakeEngine()
    # a reply plays throughout: the app settles its heap only once the speaker is quiet
    engine.status = dataclasses.replace(engine.status, response="playing")
    live = long_conversation(engine)
    app = VoiceApp(engine, None, run_engine=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        stop = asyncio.Event()

        async def feed() -> None:
            sent = 0
            start = time.perf_counter()
            next_done = 0.5
            layouts = 0
            while not stop.is_set():
                elapsed = time.perf_counter() - start
                while sent < int(elapsed * 1000):
                    live.body += "word "
                    engine.publish(TranscriptDelta("item_live", "assistant", 0, "word "))
                    sent += 1
                if elapsed >= next_done:
                    engine.publish(ResponseDone(f"resp_{sent}", "completed", None, None))
                    next_done += 0.5
                if elapsed >= 2.0 * layouts:  # every 2 s the whole transcript again
                    app.transcript.structure_changed()
                    app.transcript.refresh_all()
                    app.transcript.flush_now()
                    layouts += 1
                await asyncio.sleep(0.001)

        feeder = asyncio.create_task(feed())
        try:
            yield
        finally:
            stop.set()
            await feeder


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (AMPLITUDE * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def analyse(recorded: np.ndarray, played_ms: float) -> tuple[int, float, float]:
    """(dropouts, ms lost to them, ms of tone heard past the flush point)."""
    n = len(recorded) // WINDOW
    peaks = np.abs(recorded[: n * WINDOW].astype(np.int32)).reshape(n, WINDOW).max(axis=1)
    loud = np.flatnonzero(peaks > AMPLITUDE // 4)
    if len(loud) == 0:
        return -1, float("nan"), float("nan")
    first, last = int(loud[0]), int(loud[-1])
    quiet = peaks[first : last + 1] <= AMPLITUDE // 4
    # a dropout: a run of quiet windows; the fade-in/out of start and end lie outside
    edges = np.diff(np.concatenate(([0], quiet.astype(np.int8), [0])))
    dropouts = int((edges == 1).sum())
    lost_ms = float(quiet.sum()) * WINDOW / RATE * 1000
    heard_ms = (last + 1 - first) * WINDOW / RATE * 1000 - lost_ms
    return dropouts, lost_ms, heard_ms - played_ms


@contextlib.asynccontextmanager
async def mic_running() -> AsyncIterator[DeviceSource]:
    """The microphone open and read, as in the app (its callback also wants the GIL)."""
    async with DeviceSource(None) as mic:

        async def read() -> None:
            async for _ in mic.blocks():
                pass

        reader = asyncio.create_task(read())
        try:
            yield mic
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def one_run(latency: float, loaded: bool, raw: Path) -> tuple[int, float, int, float]:
    async with mic_running():
        return await _play(latency, loaded, raw)


async def _play(latency: float, loaded: bool, raw: Path) -> tuple[int, float, int, float]:
    sink = DeviceSink(None, latency=latency)
    rec = await record_speaker(raw)
    load = ui_load() if loaded else contextlib.nullcontext()
    try:
        async with load:  # type: ignore[attr-defined]
            pcm = tone(TONE_S)
            for i in range(0, len(pcm), 2400):  # 100 ms deltas, all at once
                sink.write(pcm[i : i + 2400], "item", 0)
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < FLUSH_AT_S:
                await asyncio.sleep(0.005)
            played = sink.played_ms("item", 0)
            sink.flush(fade=True)
            await sink.drained()
        await asyncio.sleep(0.3)
    finally:
        rec.terminate()
        rec.wait(5)
        underflows = sink.underflows
        await sink.close()
    recorded = np.frombuffer(raw.read_bytes(), dtype="<i2")
    dropouts, lost_ms, past_flush_ms = analyse(recorded, played)
    return dropouts, lost_ms, underflows, past_flush_ms


async def main(latencies: list[float], runs: int) -> None:
    if not have_pulse():
        print("needs PortAudio, parec and PULSE_SERVER (run it through scripts/bench)")
        return
    raw = Path(tempfile.mkdtemp()) / "speaker.raw"
    print(
        f"{TONE_S:.0f} s tone per run, flushed at {FLUSH_AT_S:.0f} s; {runs} runs each; "
        "dropouts counted in the monitor recording"
    )
    print(
        "output_latency | load    | dropouts (total) | ms lost | PortAudio underflows | "
        "flush -> silent: median, max"
    )
    for latency in latencies:
        for loaded in (False, True):
            drops, lost, under, past = [], [], [], []
            for _ in range(runs):
                d, ms, u, p = await one_run(latency, loaded, raw)
                drops.append(d)
                lost.append(ms)
                under.append(u)
                past.append(p)
            print(
                f"{latency:14.3f} | {'UI busy' if loaded else 'idle':7} | "
                f"{sum(drops):16d} | {sum(lost):7.0f} | {sum(under):20d} | "
                f"{statistics.median(past):.0f} ms, {max(past):.0f} ms"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latencies", default="0.2,0.08,0.05,0.04,0.03,0.02")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main([float(x) for x in args.latencies.split(",")], args.runs))
