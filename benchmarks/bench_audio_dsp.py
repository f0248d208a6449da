"""Audio primitive benchmarks: prints numbers, asserts nothing.

    /tmp/venv/bin/python benchmarks/bench_audio_dsp.py [--seconds 60] [--repeat 5]

CPU time (process time, best of ``--repeat``) per second of audio, fed in the block
sizes a live stream uses, for:

1. StreamResampler 24 kHz -> 16 kHz (the endpointer's VAD side path), 20 ms blocks
2. StreamResampler 48 kHz -> 24 kHz (a 48 kHz device to the API rate), 10 ms blocks
3. Endpointer.feed on speech (the committed espeak-ng fixtures, looped), 20 ms blocks
4. EchoGuard.user_speaking, 20 ms blocks
5. rms_dbfs on one 20 ms block
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voicecli.audio.dsp import StreamResampler, rms_dbfs  # noqa: E402
from voicecli.audio.echo import EchoGuard  # noqa: E402
from voicecli.audio.vad import Endpointer  # noqa: E402
from voicecli.audio.wav import read_wav_24k_mono  # noqa: E402


def speech(seconds: float) -> np.ndarray:
    fixtures = ROOT / "tests" / "fixtures"
    one = np.concatenate(
        [read_wav_24k_mono(fixtures / n) for n in ("speech_one.wav", "speech_two.wav")]
    )
    reps = int(np.ceil(seconds * 24_000 / len(one)))
    return np.tile(one, reps)[: int(seconds * 24_000)]


def noise(seconds: float, rate: int) -> np.ndarray:
    rng = np.random.default_rng(5)
    return (rng.standard_normal(int(seconds * rate)) * 3000).astype(np.int16)


def cpu_per_audio_second(
    make: Callable[[], Callable[[np.ndarray], object]],
    signal: np.ndarray,
    block: int,
    rate: int,
    repeat: int,
) -> float:
    """Best-of-``repeat`` process time (ms) per second of audio."""
    chunks = [signal[i : i + block] for i in range(0, len(signal), block)]
    best = float("inf")
    for _ in range(repeat):
        fn = make()
        t0 = time.process_time()
        for c in chunks:
            fn(c)
        best = min(best, time.process_time() - t0)
    return best * 1000 / (len(signal) / rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per run")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    s, r = args.seconds, args.repeat

    at24 = noise(s, 24_000)
    at48 = noise(s, 48_000)
    talk = speech(s)
    rows: list[tuple[str, float]] = []

    rows.append(
        (
            "StreamResampler 24k->16k, 20 ms blocks",
            cpu_per_audio_second(
                lambda: StreamResampler(24_000, 16_000).process, at24, 480, 24_000, r
            ),
        )
    )
    rows.append(
        (
            "StreamResampler 48k->24k, 10 ms blocks",
            cpu_per_audio_second(
                lambda: StreamResampler(48_000, 24_000).process, at48, 480, 48_000, r
            ),
        )
    )
    rows.append(
        (
            "Endpointer.feed (speech), 20 ms blocks",
            cpu_per_audio_second(lambda: Endpointer().feed, talk, 480, 24_000, r),
        )
    )

    def guard() -> Callable[[np.ndarray], object]:
        g = EchoGuard("guard")
        return lambda b: g.user_speaking(b, -20.0)

    rows.append(
        ("EchoGuard.user_speaking, 20 ms blocks", cpu_per_audio_second(guard, talk, 480, 24_000, r))
    )
    rows.append(
        ("rms_dbfs, 20 ms blocks", cpu_per_audio_second(lambda: rms_dbfs, talk, 480, 24_000, r))
    )

    print(f"CPU per second of audio ({s:g} s of audio per run, best of {r}):")
    for name, ms in rows:
        print(f"  {name:<42} {ms:8.3f} ms/s  ({ms / 10:.3f}% of one core)")


if __name__ == "__main__":
    main()
