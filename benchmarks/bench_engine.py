"""Engine benchmarks: prints numbers, asserts nothing.

    /tmp/venv/bin/python benchmarks/bench_engine.py [--soak-minutes 60] [--skip-soak]

1. CPU of capture-side processing (level, echo guard, endpointer, turn controller,
   base64 + JSON of the append) per minute of streamed audio, in local-vad and
   server-vad mode.
2. End of speech -> commit, beyond ``silence_ms`` (local VAD on a signal with a known
   end of speech).
3. First audio delta -> first sample at the device (DeviceSink when PortAudio and a
   PulseAudio server are available, else the paced NullSink).
4. Barge-in onset -> playback silent (the sink's played-time stops growing).
5. |truncate audio_end_ms - audio really played|: the truncate the engine sends (the
   played time once the flushed sink is quiet: what the device held still plays),
   against the reply samples found in a ``parec`` recording of the speaker monitor
   (PulseAudio only); and, for comparison, a truncate at the played time of the
   flush itself.
6. Soak: N simulated minutes against the local server, faster than real time; RSS at
   start and end, events handled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from local_stack import PAREC_SPEAKER, free_port

from tests.engine.conftest import utterance
from voicecli.audio.sinks import NullSink
from voicecli.config import Config, load_config
from voicecli.engine import Engine, EventLogged
from voicecli.engine.bargein import truncate_point
from voicecli.protocol.notifications import Notification, ResponseDone

RATE = 24_000
BLOCK = 480


def config(url: str = "ws://127.0.0.1:1/v1/realtime", **over: Any) -> Config:
    base: dict[str, Any] = {
        "connection": {"url": url, "model": "gpt-realtime"},
        "data_dir": tempfile.mkdtemp(prefix="voicecli-bench-"),
    }
    base.update(over)
    return load_config(config_file=None, env={}, overrides=base)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def blocks_of(pcm: np.ndarray) -> list[np.ndarray]:
    n = len(pcm) // BLOCK
    return [pcm[i * BLOCK : (i + 1) * BLOCK] for i in range(n)]


# -- 1 & 2: the capture path, no socket ---------------------------------------------


def bench_capture_cpu() -> None:
    speech = np.concatenate([utterance(2.0, 0.5, 1.0) for _ in range(12)])  # ~42 s
    blocks = blocks_of(speech)
    audio_min = len(blocks) * BLOCK / RATE / 60
    for mode in ("local-vad", "server-vad"):
        engine = Engine(config(turn_mode=mode), sink=NullSink())
        engine._connected.set()
        outbox = engine._outbox
        t0 = time.process_time()
        for block in blocks:
            engine._on_block(block)
            while outbox:  # what the sender does besides the socket write
                json.dumps(outbox.popleft())
            engine._outbox_audio_ms = 0.0
        cpu = time.process_time() - t0
        print(
            f"capture+VAD+send [{mode}]: {cpu / audio_min:.3f} CPU s per minute of audio "
            f"({cpu / audio_min / 60 * 100:.2f}% of a core)"
        )


def bench_commit_delay() -> None:
    cfg = config(turn_mode="local-vad")
    silence_ms = cfg.vad.silence_ms
    delays = []
    for speech_s in (0.6, 1.0, 1.7, 2.3):
        lead = 0.5
        pcm = utterance(speech_s, lead, 1.5)
        engine = Engine(cfg, sink=NullSink())
        engine._connected.set()
        end_ms = (lead + speech_s) * 1000
        for i, block in enumerate(blocks_of(pcm)):
            engine._on_block(block)
            if any(e.get("type") == "input_audio_buffer.commit" for e in engine._outbox):
                t_ms = (i + 1) * BLOCK / RATE * 1000
                delays.append(t_ms - end_ms - silence_ms)
                break
            engine._outbox.clear()
    print(
        f"end of speech -> commit beyond silence_ms={silence_ms}: "
        f"mean {statistics.mean(delays):.1f} ms, max {max(delays):.1f} ms (n={len(delays)})"
    )


# -- 3, 4, 5: playback ---------------------------------------------------------------


def have_pulse() -> bool:
    if not os.environ.get("PULSE_SERVER") or not shutil.which("parec"):
        return False
    try:
        import sounddevice  # noqa: F401
    except OSError:
        return False
    return True


async def wait_until(pred: Any, timeout: float = 5.0, step: float = 0.001) -> float:
    """Benchmark-only polling: measures when ``pred`` first holds."""
    t0 = time.perf_counter()
    while not pred():
        if time.perf_counter() - t0 > timeout:
            return float("nan")
        await asyncio.sleep(step)
    return time.perf_counter() - t0


async def record_speaker(raw: Path) -> subprocess.Popen[bytes]:
    """Start ``parec`` recording the null sink's monitor (24 kHz mono s16le) into
    ``raw``; returns once it is running. Terminate it to stop."""
    rec = subprocess.Popen(
        PAREC_SPEAKER,
        stdout=raw.open("wb"),
    )
    await asyncio.sleep(0.3)
    return rec


def heard_in_recording(recorded: np.ndarray, reply: np.ndarray) -> float:
    """Milliseconds of ``reply`` that reached the speaker: align its start in the
    recording by cross-correlation, then find where the recording falls silent."""
    head = reply[:4800].astype(np.float64)
    rec = recorded.astype(np.float64)
    size = 1 << (len(rec) + len(head)).bit_length()
    corr = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(head, size)), size)
    start = int(np.argmax(corr[: len(rec)]))
    tail = np.abs(rec[start:]) > 200
    loud = np.flatnonzero(tail)
    return float(loud[-1] + 1) / 24 if len(loud) else 0.0


async def bench_playback() -> None:
    from voicecli.audio.sinks import AudioSink

    pulse = have_pulse()
    sink: AudioSink
    if pulse:
        from voicecli.audio.device_sink import DeviceSink

        sink = DeviceSink(None)
        label = "DeviceSink -> PulseAudio null sink, measured with parec"
    else:
        sink = NullSink(realtime=True)
        label = "paced NullSink (no PulseAudio: device numbers not measured)"
    rng = np.random.default_rng(7)
    firsts, silences, errors, errors_at_flush = [], [], [], []
    await sink.start()
    raw = Path(tempfile.mkdtemp()) / "speaker.raw"
    try:
        for run in range(6):
            reply = (rng.standard_normal(3 * RATE) * 6000).clip(-32000, 32000).astype(np.int16)
            item = f"item_{run}"
            rec = None
            if pulse:
                rec = await record_speaker(raw)
            pcm = reply.tobytes()
            for i in range(0, len(pcm), 4800):  # 50 ms deltas, faster than real time
                sink.write(pcm[i : i + 4800], item, 0)
            firsts.append(await wait_until(lambda item=item: sink.played_ms(item, 0) > 0) * 1000)
            await asyncio.sleep(0.5 + 0.13 * run)
            onset = time.perf_counter()
            cut_at_flush = truncate_point(sink.played_ms(item, 0), len(pcm))
            sink.flush(fade=True)
            last = [sink.played_ms(item, 0), time.perf_counter()]

            def stable(item: str = item, last: list[float] = last) -> bool:
                now = sink.played_ms(item, 0)
                if now != last[0]:
                    last[0], last[1] = now, time.perf_counter()
                return time.perf_counter() - last[1] > 0.05

            await wait_until(stable)
            silences.append((last[1] - onset) * 1000)
            await sink.drained()
            cut = truncate_point(sink.played_ms(item, 0), len(pcm))  # what the engine sends
            if rec is not None:
                await asyncio.sleep(0.3)
                rec.terminate()
                rec.wait(5)
                recorded = np.frombuffer(raw.read_bytes(), dtype="<i2")
                heard = heard_in_recording(recorded, reply)
            else:
                heard = sink.played_ms(item, 0)
            errors.append(abs(heard - cut))
            errors_at_flush.append(abs(heard - cut_at_flush))
    finally:
        closing = sink.close()
        if asyncio.iscoroutine(closing):
            await closing
    print(f"playback [{label}]:")
    print(f"  first write -> first sample at the device: median {statistics.median(firsts):.1f} ms")
    print(
        f"  barge-in (flush) -> the sink's played count stops: median "
        f"{statistics.median(silences):.1f} ms"
    )
    print(
        f"  |truncate audio_end_ms - audio really played|: median "
        f"{statistics.median(errors):.1f} ms, max {max(errors):.1f} ms (n={len(errors)})"
    )
    print(
        f"  barge-in (flush) -> silent at the device (audio recorded past the flush point): "
        f"median {statistics.median(errors_at_flush):.1f} ms, max {max(errors_at_flush):.1f} ms"
    )


# -- 6: soak ---------------------------------------------------------------------------


class LoopSource:
    """``minutes`` of speech turns as fast as possible (an AudioSource)."""

    def __init__(self, minutes: float) -> None:
        self.turn = blocks_of(utterance(2.0, 0.3, 1.2))
        self.total = int(minutes * 60 * RATE / BLOCK)
        self.overflows = 0

    async def __aenter__(self) -> LoopSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def stop(self) -> None:
        self.total = 0

    async def blocks(self) -> AsyncIterator[np.ndarray]:
        for i in range(self.total):
            if i >= self.total:
                return
            yield self.turn[i % len(self.turn)]
            if i % 25 == 0:
                await asyncio.sleep(0)  # let the socket tasks run (a real mic waits here)


async def bench_soak(minutes: float) -> None:
    # the server runs in its own process, so RSS below is the client's alone
    port = free_port()
    code = f"from voicecli.server import serve_forever; serve_forever(port={port})"
    server = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
    try:
        assert server.stderr is not None
        server.stderr.readline()  # "listening on ..."
        await _soak(minutes, f"ws://127.0.0.1:{port}/v1/realtime")
    finally:
        server.terminate()
        server.wait(5)


async def _soak(minutes: float, url: str) -> None:
    if url:
        cfg = config(url, turn_mode="server-vad")
        from voicecli.history import SessionLog

        history = SessionLog.create(cfg.data_dir, kind="bench")
        engine = Engine(cfg, source=LoopSource(minutes), sink=NullSink(), history=history)  # type: ignore[arg-type]
        counts = {"sent": 0, "received": 0, "responses": 0}

        def count(note: Notification) -> None:
            if isinstance(note, EventLogged):
                counts[note.direction] += 1
            elif isinstance(note, ResponseDone):
                counts["responses"] += 1

        engine.subscribe(count)
        start_rss = rss_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        task = asyncio.create_task(engine.run())
        await engine.wait_connected()
        mic_done = asyncio.Event()

        def on(note: Notification) -> None:
            from voicecli.engine import StatusChanged

            if isinstance(note, StatusChanged) and note.status.mic == "off":
                mic_done.set()

        engine.subscribe(on)
        await mic_done.wait()
        await asyncio.sleep(1.0)
        await engine.close()
        await task
        history.close()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"soak: {minutes:.0f} simulated min in {wall:.1f} s wall ({cpu:.1f} s client CPU)")
        print(
            f"  events sent {counts['sent']}, received {counts['received']}, "
            f"responses {counts['responses']}; RSS {start_rss:.1f} MB -> {rss_mb():.1f} MB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--soak-minutes", type=float, default=60.0)
    parser.add_argument("--skip-soak", action="store_true")
    args = parser.parse_args()
    bench_capture_cpu()
    bench_commit_delay()
    asyncio.run(bench_playback())
    if not args.skip_soak:
        asyncio.run(bench_soak(args.soak_minutes))


if __name__ == "__main__":
    main()
