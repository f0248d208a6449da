"""Real audio through PulseAudio virtual devices (PortAudio -> ALSA ``pulse`` plugin).

Each module run loads its own null sinks (unique names, unloaded afterwards) so other
test runs sharing the daemon cannot interfere; streams are routed to them with
``PULSE_SINK``/``PULSE_SOURCE``, which the plugin reads when a stream opens. What the
sink plays is recorded bit-exactly from the null sink's monitor with ``parec``; the
microphone is fed with ``paplay``. The device-loss test runs a private daemon and kills it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.audio.conftest import FIXTURES, noise
from tests.conftest import require
from voicecli.audio import device_sink
from voicecli.audio.device_sink import DeviceSink
from voicecli.audio.devices import AudioDeviceLost
from voicecli.audio.sources import DeviceSource
from voicecli.audio.wav import read_wav_24k_mono

pytestmark = pytest.mark.audio

RATE = 24_000
BLOCK_MS = 10  # DeviceSink's default callback block


def _pulse_ok() -> bool:
    if not os.environ.get("PULSE_SERVER") or not shutil.which("pactl"):
        return False
    try:
        return subprocess.run(["pactl", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _portaudio_ok() -> bool:
    try:
        import sounddevice  # noqa: F401
    except OSError:
        return False
    return True


def _keeper(source: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A low-latency reader on a monitor keeps the null sink from sleeping in 2 s blocks."""
    return subprocess.Popen(
        ["parec", "-d", source, "--latency-msec=10", "--raw"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )


@dataclass(frozen=True)
class Devices:
    speaker: str
    mic: str


@pytest.fixture(scope="module")
def pulse() -> Iterator[Devices]:
    hint = "run scripts/test (it starts virtual audio), or set PULSE_SERVER"
    require("PulseAudio", _pulse_ok(), hint)
    require("PortAudio", _portaudio_ok(), "apt install libportaudio2")
    tag = f"vc{os.getpid()}_{secrets.token_hex(3)}"
    devices = Devices(speaker=f"{tag}_spk", mic=f"{tag}_mic")
    modules: list[str] = []
    keepers: list[subprocess.Popen[bytes]] = []
    try:
        for name, rate in ((devices.speaker, 24_000), (devices.mic, 16_000)):
            out = subprocess.run(
                ["pactl", "load-module", "module-null-sink", f"sink_name={name}",
                 f"rate={rate}", "channels=1", "format=s16le"],
                capture_output=True, text=True, check=True, timeout=10,
            )  # fmt: skip
            modules.append(out.stdout.strip())
            keepers.append(_keeper(f"{name}.monitor"))
        time.sleep(2.1)  # one 2 s null-sink block, then the keepers' low latency holds
        yield devices
    finally:
        for proc in keepers:
            proc.terminate()
            proc.wait(5)
        for module in modules:
            subprocess.run(["pactl", "unload-module", module], capture_output=True, timeout=10)


@pytest.fixture
def speech() -> np.ndarray:
    """The speech fixture plus a -50 dBFS noise floor, so no sample of it is zero and
    the end of what was heard is visible in a recording."""
    pcm = read_wav_24k_mono(FIXTURES / "speech_one.wav").astype(np.int32)
    pcm += noise(len(pcm) / RATE, dbfs=-50.0, seed=5)
    pcm[pcm == 0] = 1
    return np.clip(pcm, -32768, 32767).astype(np.int16)


def best_match(recorded: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """Peak normalized cross-correlation of ``reference`` in ``recorded`` and its lag."""
    rec = recorded.astype(np.float64)
    ref = reference.astype(np.float64)
    size = 1 << (len(rec) + len(ref)).bit_length()
    corr = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(ref, size)), size)
    lag = int(np.argmax(corr[: len(rec)]))
    window = rec[lag : lag + len(ref)]
    denom = float(np.linalg.norm(window) * np.linalg.norm(ref[: len(window)]))
    return (float(corr[lag]) / denom if denom else 0.0), lag


class Recorder:
    """``parec`` on a monitor, raw 24 kHz mono s16le into a file."""

    def __init__(self, source: str, path: Path) -> None:
        self.path = path
        self._out = path.open("wb")
        self._proc = subprocess.Popen(
            ["parec", "-d", source, "--raw", "--rate=24000", "--channels=1",
             "--format=s16le", "--latency-msec=10"],
            stdout=self._out,
        )  # fmt: skip

    def stop(self) -> np.ndarray:
        self._proc.terminate()
        self._proc.wait(5)
        self._out.close()
        return np.frombuffer(self.path.read_bytes(), dtype="<i2")


async def wait_for(predicate: object, timeout: float) -> float:
    t0 = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out")
        await asyncio.sleep(0.002)
    return time.monotonic() - t0


@pytest.mark.parametrize("rate", [None, 48_000], ids=["24k", "resampled-48k"])
async def test_device_sink_plays_what_played_ms_says(
    pulse: Devices,
    speech: np.ndarray,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rate: int | None,
) -> None:
    monkeypatch.setenv("PULSE_SINK", pulse.speaker)
    recorder = Recorder(f"{pulse.speaker}.monitor", tmp_path / "heard.raw")
    sink = DeviceSink(None, rate=rate)
    try:
        await sink.start()
        await asyncio.sleep(0.3)  # the recorder is connected
        first = speech[RATE // 2 : RATE]  # 0.5 s, played to the end
        sink.write(first.tobytes(), "first", 0)
        await asyncio.wait_for(sink.drained(), 3)
        pcm = speech.tobytes()
        for i in range(0, len(pcm), 4800):  # 100 ms deltas, far faster than real time
            sink.write(pcm[i : i + 4800], "second", 0)
        first_sample_s = await wait_for(lambda: sink.played_ms("second", 0) > 0, 2)
        await asyncio.sleep(1.2)
        sink.flush(fade=True)
        await asyncio.wait_for(sink.drained(), 2)
        played_first = sink.played_ms("first", 0)
        played = sink.played_ms("second", 0)
        await asyncio.sleep(0.3)
    finally:
        recorded = recorder.stop()
        await sink.close()
    print(f"first sample after {first_sample_s * 1000:.0f} ms; played {played} ms")
    assert played_first == 500  # resampled: the part's tail was flushed in on drain
    corr, lag = best_match(recorded, first)
    assert corr > 0.95, corr
    corr, lag = best_match(recorded, speech[: played * RATE // 1000])
    assert corr > 0.95, corr
    tail = np.flatnonzero(recorded[lag:])
    heard_ms = (tail[-1] + 1) * 1000 / RATE
    print(f"heard {heard_ms:.1f} ms of the interrupted part, played_ms says {played}")
    assert 1000 < played < 2500
    assert abs(heard_ms - played) <= BLOCK_MS + 5


async def test_device_source_captures_what_the_mic_hears(
    pulse: Devices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wav = FIXTURES / "speech_one.wav"
    reference = read_wav_24k_mono(wav)
    monkeypatch.setenv("PULSE_SOURCE", f"{pulse.mic}.monitor")
    got: list[np.ndarray] = []
    async with DeviceSource(None) as src:
        await src.wait_started(5)  # an idle null sink can hold back the first audio
        player = await asyncio.create_subprocess_exec("paplay", f"--device={pulse.mic}", str(wav))
        want = len(reference) + RATE // 2

        async def collect() -> None:
            async for block in src.blocks():
                got.append(block)
                if len(got) * len(block) >= want:
                    return

        await asyncio.wait_for(collect(), len(reference) / RATE + 5)
        assert await player.wait() == 0
        overflows = src.overflows
    captured = np.concatenate(got)
    assert all(len(b) == 480 for b in got)
    corr, lag = best_match(captured, reference)
    print(f"capture: correlation {corr:.3f}, lag {lag * 1000 / RATE:.0f} ms")
    assert corr > 0.95, corr
    assert overflows == 0


def _recording_streams(source: str) -> int:
    """How many clients record from ``source`` (pactl's source outputs on it)."""
    out = subprocess.run(
        ["pactl", "list", "short", "source-outputs"],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout  # fmt: skip
    index = subprocess.run(
        ["pactl", "list", "short", "sources"], capture_output=True, text=True, timeout=10
    ).stdout
    ids = [line.split()[0] for line in index.splitlines() if line.split()[1] == source]
    return sum(1 for line in out.splitlines() if ids and line.split()[1] == ids[0])


async def test_a_paused_microphone_is_released_and_resumes_capturing(
    pulse: Devices, monkeypatch: pytest.MonkeyPatch
) -> None:
    # muting pauses the source: the sound server no longer has our record stream (the
    # desktop's mic-in-use indicator goes off), and the same blocks() goes on afterwards
    mic = f"{pulse.mic}.monitor"
    monkeypatch.setenv("PULSE_SOURCE", mic)
    keepers = _recording_streams(mic)  # the fixture's own recorder
    async with DeviceSource(None) as src:
        await src.wait_started(5)
        blocks = src.blocks()
        await asyncio.wait_for(anext(blocks), 5)
        assert _recording_streams(mic) == keepers + 1
        await asyncio.wait_for(src.pause(), 5)
        await asyncio.sleep(0.5)
        assert _recording_streams(mic) == keepers
        await asyncio.wait_for(src.resume(), 5)
        before = src.callbacks
        for _ in range(10):  # 200 ms of audio from the reopened stream
            await asyncio.wait_for(anext(blocks), 5)
        assert src.callbacks > before
        assert _recording_streams(mic) == keepers + 1
    assert _recording_streams(mic) == keepers


async def test_sound_server_dying_ends_the_streams_cleanly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A private daemon is killed mid-stream: the source raises AudioDeviceLost and the
    sink's drained() returns, both promptly."""
    require("PortAudio", _portaudio_ok(), "apt install libportaudio2")
    require("pulseaudio", shutil.which("pulseaudio") is not None, "apt install pulseaudio")
    run = Path(tempfile.mkdtemp(prefix="vcpa", dir="/tmp"))
    sock = run / "pulse.sock"
    (run / "ci.pa").write_text(
        f"load-module module-native-protocol-unix socket={sock} auth-anonymous=1\n"
        "load-module module-null-sink sink_name=lost rate=24000 channels=1 format=s16le\n"
        "set-default-source lost.monitor\nset-default-sink lost\n"
    )
    env = {**os.environ, "PULSE_SERVER": f"unix:{sock}"}
    daemon = subprocess.Popen(
        ["pulseaudio", "-n", "-F", str(run / "ci.pa"), "--daemonize=no",
         "--exit-idle-time=-1", "--use-pid-file=no", f"--log-target=file:{run / 'log'}"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            if subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        monkeypatch.setenv("PULSE_SERVER", f"unix:{sock}")
        monkeypatch.delenv("PULSE_SINK", raising=False)
        monkeypatch.delenv("PULSE_SOURCE", raising=False)
        sink = DeviceSink(None)
        sink.write(np.full(RATE * 10, 1000, np.int16), "a", 0)
        async with DeviceSource(None) as src:
            await src.wait_started(5)
            blocks = 0
            with pytest.raises(AudioDeviceLost):
                async for _ in src.blocks():
                    blocks += 1
                    if blocks == 5:
                        daemon.kill()
                        killed = time.monotonic()
            lost_after = time.monotonic() - killed
        await asyncio.wait_for(sink.drained(), 3)
        drained_after = time.monotonic() - killed
        await sink.close()
    finally:
        daemon.kill()
        daemon.wait(5)
        shutil.rmtree(run, ignore_errors=True)
    print(f"source raised {lost_after * 1000:.0f} ms, sink drained {drained_after * 1000:.0f} ms")
    assert lost_after < 2.5
    assert drained_after < 3


async def test_a_stream_stopped_while_idle_plays_the_next_reply_completely(
    pulse: Devices, speech: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two replies, each after an idle stop (the stream restarts twice)."""
    monkeypatch.setenv("PULSE_SINK", pulse.speaker)
    monkeypatch.setattr(device_sink, "_IDLE_CHECK_S", 0.05)
    recorder = Recorder(f"{pulse.speaker}.monitor", tmp_path / "heard.raw")
    sink = DeviceSink(None, idle_stop_s=0.3)
    replies = {"first": speech[: RATE * 2], "second": speech[: RATE * 2][::-1].copy()}
    played: dict[str, int] = {}
    try:
        await sink.start()
        for item, reply in replies.items():
            await wait_for(lambda: not sink.running, 3)  # stopped: nothing plays
            pcm = reply.tobytes()
            for i in range(0, len(pcm), 4800):  # 100 ms deltas, faster than real time
                sink.write(pcm[i : i + 4800], item, 0)
            await asyncio.wait_for(sink.drained(), 5)
            played[item] = sink.played_ms(item, 0)
        await asyncio.sleep(0.3)
        underflows, restarts = sink.underflows, sink.restarts
    finally:
        recorded = recorder.stop()
        await sink.close()
    assert restarts == 2
    for item, reply in replies.items():
        assert played[item] == len(reply) * 1000 // RATE
        corr, lag = best_match(recorded, reply)
        print(f"{item} reply after an idle stop: correlation {corr:.5f}, underflows {underflows}")
        assert corr > 0.999, corr
        heard = recorded[lag : lag + len(reply)]
        fade = round(RATE * 0.005)  # the sink fades in over its first 5 ms
        assert len(heard) == len(reply)
        # all of it: the first block after a start lost ~8 ms without START_SILENCE_BLOCKS
        assert np.abs(heard[fade:].astype(np.int32) - reply[fade:]).max() <= 2


async def test_the_mic_keeps_capturing_while_the_speaker_stops_and_starts(
    pulse: Devices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Aborting and restarting the output stream once made the input stall here; the
    idle stop uses Pa_StopStream (the callback thread ends by itself)."""
    monkeypatch.setenv("PULSE_SINK", pulse.speaker)
    monkeypatch.setenv("PULSE_SOURCE", f"{pulse.mic}.monitor")
    monkeypatch.setattr(device_sink, "_IDLE_CHECK_S", 0.02)
    sink = DeviceSink(None, idle_stop_s=0.05)
    got = 0
    async with DeviceSource(None) as src:
        await src.wait_started(5)

        async def collect() -> None:
            nonlocal got
            async for _ in src.blocks():
                got += 1

        collector = asyncio.create_task(collect())
        t0 = time.monotonic()
        try:
            for _ in range(6):
                sink.write(noise(0.1, dbfs=-20.0).tobytes(), "beep", 0)
                await asyncio.wait_for(sink.drained(), 3)
                await wait_for(lambda: not sink.running, 3)
            elapsed = time.monotonic() - t0
            before = got
            await asyncio.sleep(0.5)
            after = got
        finally:
            src.stop()
            await asyncio.wait_for(collector, 5)
            await sink.close()
    print(f"{sink.restarts} restarts in {elapsed:.1f} s; {before} mic blocks")
    assert sink.restarts >= 5
    assert after - before >= 15  # 0.5 s of 20 ms blocks still arriving (25 due)
    assert before >= elapsed / 0.02 * 0.8
