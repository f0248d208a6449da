"""The echo canceller (``echo_mode = "aec"``) on a real echo path: PulseAudio's virtual
speaker looped back into the virtual mic (``module-loopback``, 30 ms, at a coupling of
-6 dB or -20 dB), played and captured through DeviceSink / DeviceSource, cancelled by
:class:`~voicecli.audio.aec.EchoCanceller` fed from the sink's far-end tap.

Needs the ``aec`` extra and PulseAudio virtual devices (``bash scripts/bench aec`` starts
them). Prints, per coupling:

1. ERLE (echo return loss enhancement): mic power / cleaned power over the far end's
   speech, in the second ending 1, 2 and 5 s after the reply starts, and 5-10 s.
2. Double talk: after 6 s of reply a near voice as loud as the echo (RMS-matched) is
   spoken into the mic. Correlation of the cleaned signal with that voice as captured
   alone (same path, no reply playing: best lag within 40 ms), next to the raw mic's
   correlation and the module's own transparency (the voice alone through the module).
3. Barge-in with AEC: the mic pipeline (local-vad, defaults) runs on the cleaned
   blocks; when it barges in the sink is flushed. Voice onset (from the capture of the
   voice alone, in the mic's ADC time) -> the last sample at the DAC (the sink's stream
   time when its played count stops), on PortAudio's one clock.
4. CPU of the canceller per second of audio.

Usage: python benchmarks/bench_aec.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voicecli.audio.aec import EchoCanceller
from voicecli.audio.device_sink import DeviceSink
from voicecli.audio.sources import DeviceSource
from voicecli.audio.wav import read_wav_24k_mono
from voicecli.config import load_config
from voicecli.engine.mic import MicPipeline
from voicecli.engine.turns import BargeIn

RATE = 24_000
REPLY = (
    "Paris has a long history. The Romans founded a town on an island in the river "
    "Seine, and over the centuries it grew into the capital of France, with its "
    "cathedrals, palaces, wide boulevards and museums, visited by millions every year."
)
VOICE = "Stop, stop, that is enough. Wait a moment please, I have a question."
VOICE_AT_S = 6.0
DUMP: Path | None = None  # --dump: save every run's blocks here


def speak(text: str, path: Path, voice: str = "en") -> np.ndarray:
    subprocess.run(["espeak-ng", "-v", voice, "-s", "165", "-w", str(path), text], check=True)
    return read_wav_24k_mono(path)


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.astype("<i2").tobytes())


@contextlib.contextmanager
def echo_path(gain: float) -> Iterator[None]:
    """speaker.monitor -> mic_feed through module-loopback at linear ``gain``."""
    module = subprocess.run(
        ["pactl", "load-module", "module-loopback", "source=speaker.monitor", "sink=mic_feed",
         "latency_msec=30", "source_dont_move=true", "sink_dont_move=true"],
        check=True, capture_output=True, text=True, timeout=10,
    ).stdout.strip()  # fmt: skip
    try:
        listing = subprocess.run(
            ["pactl", "list", "sink-inputs"], check=True, capture_output=True, text=True
        ).stdout
        inputs = re.findall(r"Sink Input #(\d+)\s+Driver: [^\n]*\n\s+Owner Module: (\d+)", listing)
        index = next(i for i, owner in inputs if owner == module)
        subprocess.run(["pactl", "set-sink-input-volume", index, str(gain)], check=True)
        time.sleep(0.5)
        yield
    finally:
        subprocess.run(["pactl", "unload-module", module], check=False, timeout=10)


def best_corr(x: np.ndarray, ref: np.ndarray, max_lag: int = 960) -> tuple[float, int]:
    """Highest correlation of ``ref`` with ``x[m + lag : m + lag + len(ref)]`` over every
    lag in -max_lag..max_lag samples, where ``x`` holds ``max_lag`` more samples than
    ``ref`` on each side (``m``); returns (correlation, lag)."""
    x = x.astype(np.float64)
    ref = ref.astype(np.float64)
    n = len(ref)
    if len(x) < n + 2 * max_lag:
        x = np.concatenate([x, np.zeros(n + 2 * max_lag - len(x))])
    ref = ref - ref.mean()
    size = 1 << int(np.ceil(np.log2(len(x) + n)))
    num = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(ref, size)), size)
    num = num[: 2 * max_lag + 1]  # x[k : k + n] . ref for k = 0..2 max_lag
    csum = np.concatenate([[0.0], np.cumsum(x)])
    csq = np.concatenate([[0.0], np.cumsum(x * x)])
    k = np.arange(2 * max_lag + 1)
    sx, sxx = csum[k + n] - csum[k], csq[k + n] - csq[k]
    var_x = np.maximum(sxx - sx * sx / n, 1e-9)
    corr = num / np.sqrt(var_x * float(ref @ ref) + 1e-9)
    best = int(np.argmax(corr))
    return float(corr[best]), best - max_lag


def around(x: np.ndarray, start: int, n: int, pad: int = 960) -> np.ndarray:
    """``x[start - pad : start + n + pad]`` (zero-padded at the edges): what
    :func:`best_corr` slides over."""
    lo = max(0, start - pad)
    seg = x[lo : start + n + pad]
    return np.concatenate([np.zeros(lo - (start - pad), x.dtype), seg])


def transfer(x: np.ndarray, y: np.ndarray, size: int = 2048) -> tuple[float, float, float]:
    """The linear response from ``x`` to ``y`` (aligned) over 150 Hz - 7 kHz: its
    lowest and highest gain in dB, and the lowest coherence (1: ``y`` is a linear
    filtering of ``x``, nothing added or removed non-linearly)."""
    w = np.hanning(size)
    sxx: Any = 0.0
    syy: Any = 0.0
    sxy: Any = 0.0
    for i in range(0, min(len(x), len(y)) - size, size // 2):
        fx, fy = np.fft.rfft(x[i : i + size] * w), np.fft.rfft(y[i : i + size] * w)
        sxx = sxx + np.abs(fx) ** 2
        syy = syy + np.abs(fy) ** 2
        sxy = sxy + fy * np.conj(fx)
    f = np.fft.rfftfreq(size, 1 / RATE)
    band = (f > 150) & (f < 7000)
    gain = 20 * np.log10(np.abs(np.asarray(sxy) / sxx)[band])
    coherence = (np.abs(np.asarray(sxy)) ** 2 / (sxx * syy))[band]
    return float(gain.min()), float(gain.max()), float(coherence.min())


def power(x: np.ndarray) -> float:
    return float(np.mean(x.astype(np.float64) ** 2)) + 1e-9


class Run:
    """One reply played over the echo path while the mic is captured and cancelled."""

    def __init__(self, reply: np.ndarray, voice_wav: Path | None, barge: bool) -> None:
        self.reply = reply
        self.voice_wav = voice_wav
        self.barge = barge
        self.raw: list[np.ndarray] = []
        self.clean: list[np.ndarray] = []
        self.adc: list[float] = []
        self.cpu = 0.0
        self.reply_dac: float | None = None
        self.barge_adc: float | None = None
        self.silent_at: float | None = None
        self.truncate_ms: float | None = None
        self.canceller: EchoCanceller | None = None
        self.underflows = 0
        self.vad_start: list[bool] = []  # per block: the endpointer heard speech begin
        self.echo_ok: list[bool] = []  # per block: the echo check let it count as the user
        self.playback: list[tuple[bool, float | None]] = []  # per block: playing, level
        self.realigns: list[int] = []  # per block: the canceller's re-anchorings so far

    async def go(self, seconds: float, latency: float) -> None:
        cfg = load_config(config_file=None, env={}, overrides={"audio": {"echo_mode": "aec"}})
        pipeline = MicPipeline(cfg, "local-vad")
        sink = DeviceSink(None, latency=latency)
        pipeline.attach_far_end(sink.tap)
        canceller = pipeline.canceller
        assert canceller is not None
        self.canceller = canceller
        async with DeviceSource(None) as source:
            await source.wait_started(5)
            await sink.start()
            await asyncio.sleep(1.0)
            started = time.perf_counter()
            sink.write(self.reply.tobytes(), "reply", 0)
            voice: subprocess.Popen[bytes] | None = None
            async for block in source.blocks():
                now = time.perf_counter() - started
                if self.reply_dac is None and sink.played_ms("reply", 0) > 0:
                    self.reply_dac = float(sink._stream.time) - sink.played_ms("reply", 0) / 1000
                if self.voice_wav is not None and voice is None and now >= VOICE_AT_S:
                    voice = subprocess.Popen(["paplay", "--device=mic_feed", str(self.voice_wav)])
                playing, level = sink.is_playing, sink.level_dbfs
                self.playback.append((playing, level))
                c0 = time.thread_time()  # the loop thread only (not PortAudio's)
                step = pipeline.feed(
                    block,
                    playing=playing,
                    playback_dbfs=level,
                    adc_time=source.block_adc_time,
                )
                self.cpu += time.thread_time() - c0
                assert step.block is not None
                self.raw.append(block)
                self.clean.append(step.block)
                self.adc.append(source.block_adc_time or 0.0)
                self.vad_start.append(step.vad == "speech")
                self.echo_ok.append(step.echo_ok)
                self.realigns.append(canceller.realigned)
                if (
                    self.barge
                    and self.barge_adc is None
                    and any(isinstance(a, BargeIn) for a in step.actions)
                ):
                    self.barge_adc = source.block_adc_time
                    barge = next(a for a in step.actions if isinstance(a, BargeIn))
                    # what the truncate reports (the engine's PlaybackTracker does this)
                    self.truncate_ms = sink.played_ms("reply", 0) - barge.voice_ms
                    sink.flush(fade=True)
                    self.silent_at = await self._until_silent(sink)
                if now > seconds:
                    break
            if voice is not None:
                voice.wait(20)
        self.underflows = sink.underflows
        await sink.close()

    @staticmethod
    async def _until_silent(sink: DeviceSink) -> float:
        last, last_t = sink.played_ms("reply", 0), float(sink._stream.time)
        while float(sink._stream.time) - last_t < 0.08:
            await asyncio.sleep(0.001)
            now = sink.played_ms("reply", 0)
            if now != last:
                last, last_t = now, float(sink._stream.time)
        return last_t

    def save(self, name: str, voice_at: int = -1) -> None:
        """With ``--dump DIR``: the run's blocks and verdicts, to replay the mic
        pipeline's decisions offline (``voice_at``: the voice's first sample, or -1)."""
        if DUMP is None:
            return
        raw, clean = self.signals()
        np.savez(
            DUMP / f"{name}.npz",
            raw=raw,
            clean=clean,
            adc=np.array(self.adc),
            playing=np.array([p for p, _ in self.playback]),
            level=np.array([np.nan if v is None else v for _, v in self.playback]),
            echo_ok=np.array(self.echo_ok),
            realigned=np.array(self.realigns),
            voice_at=voice_at,
        )

    def signals(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.raw), np.concatenate(self.clean)

    def index_at(self, dac: float) -> int:
        """Mic sample index captured at stream time ``dac``."""
        k = int(np.searchsorted(np.array(self.adc), dac)) - 1
        k = max(0, k)
        return k * 480 + int((dac - self.adc[k]) * RATE)


async def capture_voice(voice_wav: Path, seconds: float) -> np.ndarray:
    """The voice alone as the mic hears it (no reply playing)."""
    blocks: list[np.ndarray] = []
    async with DeviceSource(None) as source:
        await source.wait_started(5)
        await asyncio.sleep(0.5)
        t0 = time.perf_counter()
        proc = subprocess.Popen(["paplay", "--device=mic_feed", str(voice_wav)])
        async for block in source.blocks():
            blocks.append(block)
            if time.perf_counter() - t0 > seconds:
                break
        proc.wait(20)
    return np.concatenate(blocks)


def onset(x: np.ndarray) -> int:
    """First sample of the first 10 ms window 30 dB above the quietest ones."""
    frames = x[: len(x) // 240 * 240].astype(np.float64).reshape(-1, 240)
    db = 10 * np.log10((frames**2).mean(axis=1) + 1e-9)
    floor = np.percentile(db, 10)
    k = int(np.argmax(db > floor + 30))
    return k * 240


async def bench(gain: float, runs: int, tmp: Path, latency: float) -> None:
    db = 20 * np.log10(gain)
    reply = speak(REPLY, tmp / "reply.wav")
    reply = (reply.astype(np.float64) / np.abs(reply).max() * 16000).astype(np.int16)
    voice = speak(VOICE, tmp / "voice.wav", voice="en+f3")
    # as loud as the echo: the reply's RMS at the coupling
    scale = np.sqrt(power(reply)) * gain / np.sqrt(power(voice))
    voice = np.clip(voice * scale, -32768, 32767).astype(np.int16)
    voice_wav = tmp / "voice_scaled.wav"
    write_wav(voice_wav, voice)
    print(f"coupling {db:.0f} dB (loopback 30 ms, mic_feed 16 kHz, sink latency {latency:g} s):")
    with echo_path(gain):
        alone = await capture_voice(voice_wav, len(voice) / RATE + 1.0)
        v0 = onset(alone)
        voice_alone = alone[v0 : v0 + len(voice)]
        # the module's own response: the voice alone through a fresh canceller
        fresh = EchoCanceller()
        through = np.concatenate(
            [fresh.process(alone[i : i + 480]) for i in range(0, len(alone) // 480 * 480, 480)]
        )
        n = len(voice)
        transparency, module_lag = best_corr(around(through, v0, n), voice_alone)
        gain_lo, gain_hi, coherence = transfer(
            alone[v0 : v0 + n].astype(np.float64),
            through[v0 + module_lag : v0 + module_lag + n].astype(np.float64),
        )
        voice_through = through[v0 + module_lag : v0 + module_lag + n]
        # the floor for any echo handling: when the VAD hears this voice with no echo
        vad_floor = vad_heard_ms(alone, v0), vad_heard_ms(through, v0)
        erles: dict[str, list[float]] = {"1 s": [], "2 s": [], "5 s": [], "5-10 s": []}
        dts: list[float] = []
        dts_module: list[float] = []
        raws: list[float] = []
        cpus: list[float] = []
        barges: list[float] = []
        stages: dict[str, list[float]] = {"vad": [], "check": [], "barge": [], "silent": []}
        truncate_errors: list[float] = []
        heard_errors: list[float] = []
        glitches: list[int] = []
        realigned: list[int] = []
        for _ in range(runs):
            run = Run(reply, None, barge=False)
            await run.go(11.0, latency)
            glitches.append(run.underflows)
            realigned.append(run.canceller.realigned if run.canceller else 0)
            raw, clean = run.signals()
            assert run.reply_dac is not None
            s0 = run.index_at(run.reply_dac)
            windows = {"1 s": (0, 1), "2 s": (1, 2), "5 s": (4, 5), "5-10 s": (5, 10)}
            for label, (a, b) in windows.items():
                seg = slice(s0 + a * RATE, s0 + b * RATE)
                erles[label].append(10 * np.log10(power(raw[seg]) / power(clean[seg])))
            cpus.append(run.cpu / (len(raw) / RATE) * 1000)

            run = Run(reply, voice_wav, barge=False)
            await run.go(VOICE_AT_S + n / RATE + 1.0, latency)
            raw, clean = run.signals()
            at = locate(
                raw, voice_alone, int(VOICE_AT_S * RATE) - RATE, int(VOICE_AT_S * RATE) + 2 * RATE
            )
            run.save(f"dt{db:.0f}-{len(dts)}", at)
            dts.append(best_corr(around(clean, at, n), voice_alone)[0])
            dts_module.append(best_corr(around(clean, at, n), voice_through)[0])
            raws.append(best_corr(around(raw, at, n), voice_alone)[0])

            run = Run(reply, voice_wav, barge=True)
            await run.go(VOICE_AT_S + n / RATE + 1.0, latency)
            raw, _ = run.signals()
            at = locate(
                raw, voice_alone, int(VOICE_AT_S * RATE) - RATE, int(VOICE_AT_S * RATE) + 2 * RATE
            )
            run.save(f"barge{db:.0f}-{len(barges)}", at)
            k = at // 480
            onset_t = run.adc[k] + (at - k * 480) / RATE
            barged = run.silent_at is not None and run.barge_adc is not None
            if (
                barged
                and run.silent_at is not None
                and run.barge_adc is not None
                and run.barge_adc > onset_t - 1
            ):
                barges.append((run.silent_at - onset_t) * 1000)
                stages["barge"].append((run.barge_adc + 0.02 - onset_t) * 1000)
                stages["silent"].append((run.silent_at - run.barge_adc - 0.02) * 1000)
                if run.truncate_ms is not None and run.reply_dac is not None:
                    at_onset = (onset_t - run.reply_dac) * 1000  # the reply played by then
                    truncate_errors.append(run.truncate_ms - at_onset)
                    heard_errors.append((run.silent_at - run.reply_dac) * 1000 - at_onset)
            else:
                barges.append(float("nan"))
            # where the time goes: the end of the first block after the onset the VAD
            # called speech / the residual-echo check let through
            for stage, flags in (("vad", run.vad_start), ("check", run.echo_ok)):
                hits = [j for j in range(k, len(flags)) if flags[j]]
                stages[stage].append(
                    (run.adc[hits[0]] + 0.02 - onset_t) * 1000 if hits else float("nan")
                )
    for label, values in erles.items():
        print(f"  ERLE {label:>6}: {fmt(values)} dB")
    print(
        f"  the module on the voice alone (no echo): correlation {transparency:.2f}"
        f" at {module_lag / 24:.1f} ms; gain {gain_lo:+.1f}..{gain_hi:+.1f} dB and"
        f" coherence >= {coherence:.3f} over 150 Hz-7 kHz"
    )
    print(
        f"  double talk: correlation of the cleaned signal with the voice alone {fmt(dts, 2)};"
        f" with the voice alone through the module {fmt(dts_module, 2)}; raw mic {fmt(raws, 2)}"
    )
    print(f"  barge-in, voice onset -> speaker silent: {fmt(barges, 0)} ms")
    print(
        f"    with no echo at all the VAD hears that voice {vad_floor[0]:.0f} ms after its onset"
        f" ({vad_floor[1]:.0f} ms through the module): the floor for any echo handling"
    )
    print(
        f"    onset -> end of the block: the VAD hears speech {fmt(stages['vad'], 0)};"
        f" the residual check passes {fmt(stages['check'], 0)}; barge-in"
        f" {fmt(stages['barge'], 0)} ms; then -> speaker silent {fmt(stages['silent'], 0)} ms"
    )
    print(
        f"    truncate - what was played at the voice's onset: {fmt(truncate_errors, 0)} ms"
        f" (truncating to what was heard until silence instead: {fmt(heard_errors, 0)} ms)"
    )
    print(f"  speaker underruns per ERLE run: {glitches}; far-end re-alignments: {realigned}")
    print(f"  mic pipeline CPU with AEC (cancel, VAD, guard): {fmt(cpus, 1)} ms per s of audio")


def vad_heard_ms(x: np.ndarray, at: int) -> float:
    """Onset (sample ``at``) -> the end of the 20 ms block in which the endpointer
    (defaults) hears speech begin in ``x``."""
    from voicecli.audio.vad import Endpointer, SpeechStart

    cfg = load_config(config_file=None, env={}, overrides={}).vad
    ep = Endpointer(
        aggressiveness=cfg.aggressiveness,
        silence_ms=cfg.silence_ms,
        prefix_ms=cfg.prefix_ms,
        start_frames=cfg.start_frames,
        frame_ms=cfg.frame_ms,
    )
    for k in range(len(x) // 480):
        events = ep.feed(x[k * 480 : (k + 1) * 480])
        if (k + 1) * 480 > at and any(isinstance(e, SpeechStart) for e in events):
            return ((k + 1) * 480 - at) / 24
    return float("nan")


def locate(x: np.ndarray, ref: np.ndarray, lo: int, hi: int) -> int:
    """Where in ``x[lo:hi]`` the signal ``ref`` starts (best correlation)."""
    mid = (lo + hi) // 2
    _c, lag = best_corr(around(x, mid, len(ref), (hi - lo) // 2), ref, (hi - lo) // 2)
    return mid + lag


def fmt(values: list[float], digits: int = 1) -> str:
    ok = [v for v in values if v == v]
    if not ok:
        return "n/a"
    missed = len(values) - len(ok)
    med, lo, hi = statistics.median(ok), min(ok), max(ok)
    text = f"median {med:.{digits}f} (min {lo:.{digits}f}, max {hi:.{digits}f}, n={len(ok)})"
    return text + (f", {missed} missed" if missed else "")


async def bench_self_interruption(replies: int, latency: float, tmp: Path) -> None:
    """``replies`` replies of 4 s at -6 dB coupling, nobody speaking: how many did the
    pipeline barge in on (its own echo)?"""
    reply = speak(REPLY, tmp / "reply.wav")[: 4 * RATE]
    reply = (reply.astype(np.float64) / np.abs(reply).max() * 16000).astype(np.int16)
    interrupted = underruns = 0
    with echo_path(0.5):
        for i in range(replies):
            run = Run(reply, None, barge=True)
            await run.go(5.0, latency)
            run.save(f"self-{i}" + ("-barged" if run.barge_adc is not None else ""))
            interrupted += run.barge_adc is not None
            underruns += run.underflows
    print(
        f"self-interruption at -6 dB: {interrupted} of {replies} replies of 4 s "
        f"(speaker underruns meanwhile: {underruns})"
    )


def bench_cpu() -> None:
    """The canceller alone, per second of audio: the echo (-6 dB, 40 ms) of speech,
    with that speech as the far end through a tap (as in use), and with a silent far
    end (nothing playing)."""
    from voicecli.audio.tap import FarEndTap

    far = read_wav_24k_mono(Path(__file__).parents[1] / "tests/fixtures/speech_one.wav")
    far = np.tile(far, 3)
    mic = np.concatenate([np.zeros(960, np.int16), (far[:-960] * 0.5).astype(np.int16)])
    for label, playing in (("far end playing", True), ("far end silent", False)):
        aec = EchoCanceller()
        tap = FarEndTap(RATE)
        aec.attach(tap)
        used, played = 0.0, 0
        for i in range(0, len(mic) // 480 * 480, 480):
            while played < min(len(far), i + 1920):
                chunk = far[played : played + 240] if playing else np.zeros(240, np.int16)
                tap.write(chunk, played / RATE)
                played += 240
            c0 = time.thread_time()
            aec.process(mic[i : i + 480], i / RATE)
            used += time.thread_time() - c0
        print(
            f"canceller alone, {label}: {used / (len(mic) / RATE) * 1000:.1f} ms CPU per s of audio"
        )


def bench_idle() -> None:
    """What the canceller costs while nothing plays (room noise at the mic, the far end
    silent), and what skipping work then would do to the next reply: 6 s of reply, 4 s
    of silence, 6 s of reply (synthetic -6 dB echo, 40 ms, two reflections); the ERLE
    of the second reply's first 250 ms and 250-500 ms, and CPU during the silence
    (from 1 s after the first reply: longer than any echo tail)."""
    from livekit.rtc import AudioFrame

    from voicecli.audio.aec import FRAME, _livekit_module

    speech = read_wav_24k_mono(Path(__file__).parents[1] / "tests/fixtures/speech_one.wav")
    speech = np.tile(speech, 4).astype(np.float64)
    speech = speech / np.abs(speech).max() * 16000
    far = np.concatenate([speech[: 6 * RATE], np.zeros(4 * RATE), speech[6 * RATE : 12 * RATE]])
    echo = np.zeros_like(far)
    for delay_ms, rel in ((40, 1.0), (47, 0.3), (59, -0.15)):
        d = delay_ms * RATE // 1000
        echo[d:] += 0.5 * rel * far[: len(far) - d]
    room = np.random.default_rng(0).standard_normal(len(far)) * 10  # about -70 dBFS
    mic = np.clip(np.rint(echo + room), -32768, 32767).astype(np.int16)
    far16 = far.astype(np.int16)
    second = 10 * RATE
    for label, skip in (
        ("every frame (as now)", None),
        ("no far-end frames in the silence", "reverse"),
        ("nothing in the silence", "both"),
    ):
        apm = _livekit_module()(
            echo_cancellation=True, noise_suppression=True, high_pass_filter=True
        )
        near_buf, far_buf = bytearray(FRAME * 2), bytearray(FRAME * 2)
        near_frame = AudioFrame(near_buf, RATE, 1, FRAME)
        far_frame = AudioFrame(far_buf, RATE, 1, FRAME)
        near, far_arr = np.frombuffer(near_buf, np.int16), np.frombuffer(far_buf, np.int16)
        out = mic.copy()
        idle_cpu = 0.0
        for i in range(0, len(mic) // FRAME * FRAME, FRAME):
            idle = 7 * RATE <= i < second
            c0 = time.thread_time()
            far_arr[:] = far16[i : i + FRAME]
            if not (idle and skip is not None):
                apm.process_reverse_stream(far_frame)
            if not (idle and skip == "both"):
                apm.set_stream_delay_ms(10)
                near[:] = mic[i : i + FRAME]
                apm.process_stream(near_frame)
                out[i : i + FRAME] = near
            if idle:
                idle_cpu += time.thread_time() - c0
        erle = [
            10 * np.log10(power(mic[second + a : second + b]) / power(out[second + a : second + b]))
            for a, b in ((0, RATE // 4), (RATE // 4, RATE // 2))
        ]
        print(
            f"canceller in silence, {label}: {idle_cpu / 3 * 1000:.1f} ms CPU per s;"
            f" the next reply's ERLE 0-250 ms {erle[0]:.0f} dB, 250-500 ms {erle[1]:.0f} dB"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.03, help="speaker latency, s")
    parser.add_argument("--gains", default="0.5,0.1", help="loopback gains (linear, or none)")
    parser.add_argument("--replies", type=int, default=20, help="self-interruption replies")
    parser.add_argument("--dump", type=Path, help="save every run's blocks in this directory")
    args = parser.parse_args()
    global DUMP
    DUMP = args.dump
    if DUMP is not None:
        DUMP.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-aec-"))
    bench_cpu()
    bench_idle()
    asyncio.run(bench_self_interruption(args.replies, args.latency, tmp))
    for gain in (float(g) for g in args.gains.split(",") if g):
        asyncio.run(bench(gain, args.runs, tmp, args.latency))


if __name__ == "__main__":
    main()
