"""What an open stream costs before voicecli does anything (prints, asserts nothing).

Each case runs in a fresh process for ``--seconds`` (20 by default) and reports that
process's CPU time (all threads: PortAudio's callback threads, PulseAudio's client
threads, the interpreter) as a share of one core:

    nothing                      an idle interpreter with sounddevice imported
    mic, no-op callback          sounddevice.InputStream, 24 kHz mono, 20 ms blocks
    mic, raw no-op callback      RawInputStream (no numpy view built per block)
    mic, raw + hand-off          + the block copied and handed to an asyncio loop
    mic, DeviceSource            voicecli's source, its blocks consumed and dropped
    mic, DeviceSource 40 ms      the same with 40 ms device blocks (for comparison)
    speaker, no-op callback      OutputStream writing silence, 10 ms blocks
    mic + speaker                both no-op streams

The difference between these and the app (``bench_tui_cpu``) is voicecli's own work;
these themselves are the floor a 20 ms microphone stream sets on this machine.
Needs PortAudio and devices (``scripts/virtual-audio-start``, then its PULSE_SERVER).
Run: ``python benchmarks/bench_audio_floor.py [--seconds 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RATE = 24_000
CASES = {
    "nothing": "nothing",
    "mic, no-op callback": "mic_numpy",
    "mic, raw no-op callback": "mic_raw",
    "mic, raw + hand-off": "mic_handoff",
    "mic, DeviceSource": "source_20",
    "mic, DeviceSource 40 ms": "source_40",
    "speaker, no-op callback": "speaker",
    "mic + speaker": "both",
}


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


async def run_case(case: str, seconds: float) -> float:
    """CPU seconds used in ``seconds`` of ``case`` (after 2 s to settle)."""
    import sounddevice as sd

    loop = asyncio.get_running_loop()
    handed: list[Any] = []
    streams: list[Any] = []

    def noop(*_: Any) -> None:
        return None

    def silence(outdata: Any, *_: Any) -> None:
        outdata.fill(0)

    def hand_off(indata: Any, *_: Any) -> None:
        import numpy as np

        block = np.frombuffer(indata, dtype=np.int16).copy()
        loop.call_soon_threadsafe(handed.append, block)
        if len(handed) > 100:
            loop.call_soon_threadsafe(handed.clear)

    mic = {"samplerate": RATE, "channels": 1, "dtype": "int16", "latency": "low"}
    if case in ("mic_numpy", "both"):
        streams.append(sd.InputStream(blocksize=480, callback=noop, **mic))
    if case == "mic_raw":
        streams.append(sd.RawInputStream(blocksize=480, callback=noop, **mic))
    if case == "mic_handoff":
        streams.append(sd.RawInputStream(blocksize=480, callback=hand_off, **mic))
    if case in ("speaker", "both"):
        streams.append(
            sd.OutputStream(
                samplerate=RATE, channels=1, dtype="int16", blocksize=240,
                latency=0.03, callback=silence,
            )
        )  # fmt: skip
    for stream in streams:
        stream.start()
    if case.startswith("source_"):
        sys.path.insert(0, str(REPO))
        from voicecli.audio.sources import DeviceSource

        source = DeviceSource(block_ms=int(case.split("_")[1]))
        async with source:

            async def consume() -> None:
                async for _ in source.blocks():
                    pass

            task = asyncio.create_task(consume())
            await asyncio.sleep(2)
            start = cpu_seconds()
            await asyncio.sleep(seconds)
            used = cpu_seconds() - start
            source.stop()
            await task
        return used
    await asyncio.sleep(2)
    start = cpu_seconds()
    await asyncio.sleep(seconds)
    used = cpu_seconds() - start
    for stream in streams:
        stream.close()
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--case", help=argparse.SUPPRESS)  # one case, in this process
    args = parser.parse_args()
    if args.case:
        used = asyncio.run(run_case(args.case, args.seconds))
        print(f"{100 * used / args.seconds:.2f}")
        return
    print(f"{'case':28s} {'CPU % of a core':>15s}  load avg ({os.cpu_count()} CPUs)")
    for label, case in CASES.items():
        load = Path("/proc/loadavg").read_text().split()[0]
        out = subprocess.run(
            [sys.executable, __file__, "--case", case, "--seconds", str(args.seconds)],
            capture_output=True, text=True, check=True, cwd=REPO,
        )  # fmt: skip
        print(f"{label:28s} {float(out.stdout.split()[-1]):15.2f}  {load}", flush=True)


if __name__ == "__main__":
    main()
