"""wav: reading every common format as 24 kHz mono, atomic writes, the crash-safe
writer (kill a process mid-recording) and the stereo conversation recorder."""

from __future__ import annotations

import os
import stat
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.audio.conftest import tone
from voicecli.audio.dsp import rms_dbfs
from voicecli.audio.wav import (
    ConversationRecorder,
    WavError,
    WavWriter,
    read_wav,
    read_wav_24k_mono,
    write_wav,
)
from voicecli.writer import DiskWriter


def stdlib_wav(path: Path, frames: bytes, rate: int, channels: int, width: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def encode(x: np.ndarray, width: int) -> bytes:
    """float [-1, 1] samples as little-endian PCM of ``width`` bytes (8-bit unsigned)."""
    if width == 1:
        return bytes(np.clip(np.rint(x * 127 + 128), 0, 255).astype(np.uint8).tobytes())
    if width == 2:
        return bytes(np.rint(x * 32767).astype("<i2").tobytes())
    if width == 3:
        v = np.rint(x * (2**23 - 1)).astype(np.int32)
        b = v.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
        return bytes(b.tobytes())
    return bytes(np.rint(x * (2**31 - 1)).astype("<i4").tobytes())


def peak_freq(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


def sine(freq: float, seconds: float, rate: int, peak: float = 0.5) -> np.ndarray:
    return peak * np.sin(2 * np.pi * freq * np.arange(round(seconds * rate)) / rate)


@pytest.mark.parametrize("rate", [8_000, 16_000, 22_050, 24_000, 44_100, 48_000])
def test_any_rate_becomes_24k_with_pitch_and_length_kept(tmp_path: Path, rate: int) -> None:
    path = stdlib_wav(tmp_path / "a.wav", encode(sine(440, 0.5, rate), 2), rate, 1, 2)
    pcm = read_wav_24k_mono(path)
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert abs(len(pcm) - 12_000) <= 1
    assert peak_freq(pcm[1000:-1000], 24_000) == pytest.approx(440, abs=3)
    assert rms_dbfs(pcm[1000:-1000]) == pytest.approx(-9.03, abs=0.2)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_sample_widths_decode_to_the_same_signal(tmp_path: Path, width: int) -> None:
    x = sine(1000, 0.2, 24_000)
    path = stdlib_wav(tmp_path / f"w{width}.wav", encode(x, width), 24_000, 1, width)
    pcm = read_wav_24k_mono(path)
    expected = np.rint(x * 32767)
    tolerance = 300 if width == 1 else 2  # 8-bit has 1/128 steps
    assert np.max(np.abs(pcm.astype(float) - expected)) <= tolerance


def test_stereo_is_mixed_down(tmp_path: Path) -> None:
    left = sine(300, 0.3, 48_000, peak=0.4)
    right = -left  # opposite phase: cancels in the mix
    inter = np.stack([left, right], axis=1).reshape(-1)
    path = stdlib_wav(tmp_path / "s.wav", encode(inter, 2), 48_000, 2, 2)
    assert rms_dbfs(read_wav_24k_mono(path)) < -80
    same = np.stack([left, left], axis=1).reshape(-1)
    path2 = stdlib_wav(tmp_path / "s2.wav", encode(same, 2), 48_000, 2, 2)
    mixed = read_wav_24k_mono(path2)
    assert len(mixed) == 7_200
    assert rms_dbfs(mixed[500:-500]) == pytest.approx(
        rms_dbfs(encode_i16(left)[1000:-1000]), abs=0.2
    )


def encode_i16(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.rint(x * 32767).astype(np.int16)
    return out


def extensible_or_float(path: Path, x: np.ndarray, *, tag: int, bits: int, rate: int) -> Path:
    """A WAV the stdlib cannot write: float32 or WAVE_FORMAT_EXTENSIBLE PCM."""
    if bits == 32 and tag in (3, 0xFFFE):
        data = x.astype("<f4").tobytes()
        sub = 3
    else:
        data = np.rint(x * 32767).astype("<i2").tobytes()
        sub = 1
    block = bits // 8
    if tag == 0xFFFE:
        guid = struct.pack("<H", sub) + bytes.fromhex("000000001000800000aa00389b71")
        fmt = struct.pack("<HHIIHHHHI", tag, 1, rate, rate * block, block, bits, 22, bits, 4)
        fmt += guid
    else:
        fmt = struct.pack("<HHIIHH", tag, 1, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 5) + b"abcde\x00"  # odd chunk: padded
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.mark.parametrize(("tag", "bits"), [(3, 32), (0xFFFE, 32), (0xFFFE, 16)])
def test_float_and_extensible_files(tmp_path: Path, tag: int, bits: int) -> None:
    x = sine(1000, 0.25, 16_000)
    pcm = read_wav_24k_mono(
        extensible_or_float(tmp_path / "f.wav", x, tag=tag, bits=bits, rate=16_000)
    )
    assert abs(len(pcm) - 6_000) <= 1
    assert peak_freq(pcm[500:-500], 24_000) == pytest.approx(1000, abs=4)


def test_bad_files_raise_one_clear_wav_error(tmp_path: Path) -> None:
    cases: dict[str, tuple[bytes, str]] = {
        "empty.wav": (b"", "empty file"),
        "text.wav": (b"hello, not audio at all", "not a WAV file"),
        "nofmt.wav": (b"RIFF\x04\x00\x00\x00WAVE", "no fmt chunk"),
    }
    good = tmp_path / "good.wav"
    write_wav(good, tone(440, 0.1))
    raw = good.read_bytes()
    cases["nodata.wav"] = (raw[:36], "no data chunk")
    cases["shortfmt.wav"] = (raw[:12] + b"fmt \x10\x00\x00\x00\x01\x00", "truncated fmt")
    cases["headeronly.wav"] = (raw[:44], "no audio")
    mulaw = bytearray(raw)
    mulaw[20:22] = struct.pack("<H", 7)
    cases["mulaw.wav"] = (bytes(mulaw), "unsupported encoding")
    odd = bytearray(raw)
    odd[34:36] = struct.pack("<H", 12)
    cases["12bit.wav"] = (bytes(odd), "unsupported sample width")
    for name, (data, problem) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(WavError, match=problem) as info:
            read_wav_24k_mono(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        assert isinstance(info.value, ValueError)
    with pytest.raises(WavError, match="cannot read"):
        read_wav_24k_mono(tmp_path / "missing.wav")


def test_truncated_data_keeps_whole_frames(tmp_path: Path) -> None:
    path = tmp_path / "t.wav"
    write_wav(path, np.arange(1000, dtype=np.int16).reshape(-1, 2), channels=2)
    path.write_bytes(path.read_bytes()[:-3])  # the data chunk claims more than is there
    frames, info = read_wav(path)
    assert info.channels == 2 and frames.shape == (499, 2)
    assert frames[-1].tolist() == [996, 997]


def test_write_wav_round_trips_and_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    x = tone(440, 0.3)
    write_wav(path, x)
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24_000, 1, 2)
        assert np.array_equal(np.frombuffer(w.readframes(w.getnframes()), "<i2"), x)
    write_wav(path, x.tobytes()[:100], rate=16_000)  # bytes, and a replacement
    with wave.open(str(path)) as w:
        assert w.getframerate() == 16_000 and w.getnframes() == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]  # no temp left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    with pytest.raises(ValueError, match="whole number"):
        write_wav(tmp_path / "x.wav", b"\x00\x00\x00", channels=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]


def test_wav_writer_is_valid_after_every_write(tmp_path: Path) -> None:
    path = tmp_path / "rec.wav"
    x = tone(440, 0.5)
    with WavWriter(path) as writer:
        for i, chunk in enumerate(np.array_split(x, 5)):
            writer.write(chunk)
            with wave.open(str(path)) as w:  # readable while still open
                assert w.getnframes() == sum(len(c) for c in np.array_split(x, 5)[: i + 1])
    assert writer.closed and writer.frames_written == len(x)
    assert np.array_equal(read_wav_24k_mono(path), x)
    with pytest.raises(ValueError, match="closed"):
        writer.write(x)


CRASH = """
import os, sys
import numpy as np
from voicecli.audio.wav import WavWriter
w = WavWriter(sys.argv[1], fsync_s=3600)
for i in range(int(sys.argv[2])):
    w.write(np.full(480, i, dtype=np.int16))
os._exit(9)  # no close, no flush of Python state, no atexit
"""


def test_wav_writer_survives_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "crash.wav"
    proc = subprocess.run([sys.executable, "-c", CRASH, str(path), "37"], timeout=60)
    assert proc.returncode == 9
    with wave.open(str(path)) as w:
        assert w.getnframes() == 37 * 480
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert data[-1] == 36 and data[480] == 1


def test_conversation_recorder_aligns_mic_and_assistant(tmp_path: Path) -> None:
    path = tmp_path / "conv.wav"
    mic = np.full(480, 100, np.int16)
    with ConversationRecorder(path) as rec:
        rec.add_mic(mic)  # 0-480
        rec.add_mic(mic)  # 480-960
        rec.add_assistant(np.full(1000, 7, np.int16))  # starts at mic time 960
        rec.add_assistant(np.full(200, 8, np.int16))  # queued right after: 1960-2160
        for _ in range(3):
            rec.add_mic(mic)  # up to 2400
        with wave.open(str(path)) as w:  # playable while recording
            assert w.getnchannels() == 2 and w.getnframes() == 2400
        rec.add_assistant(np.full(100, 9, np.int16).tobytes())  # now: 2400-2500
    frames, info = read_wav(path)
    assert info.channels == 2 and info.rate == 24_000
    assert frames.shape == (2500, 2)
    assert np.all(frames[:2400, 0] == 100) and np.all(frames[2400:, 0] == 0)
    right = frames[:, 1]
    assert np.all(right[:960] == 0)
    assert np.all(right[960:1960] == 7) and np.all(right[1960:2160] == 8)
    assert np.all(right[2160:2400] == 0) and np.all(right[2400:] == 9)


def test_a_recorder_on_the_writer_thread_never_waits_for_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#10.8: the recording's writes (and their size patches) ran on the event loop,
    every 20 ms; a slow disk stalled the mic, the speaker pump and the UI."""
    real_write = WavWriter.write

    def slow_write(self: WavWriter, frames: Any) -> None:
        time.sleep(0.05)
        real_write(self, frames)

    monkeypatch.setattr(WavWriter, "write", slow_write)
    disk = DiskWriter()
    path = tmp_path / "conv.wav"
    rec = ConversationRecorder(path, disk=disk)
    t0 = time.monotonic()
    for k in range(10):
        rec.add_mic(np.full(480, k, np.int16))
    rec.close()
    assert time.monotonic() - t0 < 0.25  # 10 slow writes (0.5 s inline): none waited for here
    disk.close()
    frames, _ = read_wav(path)
    assert frames.shape == (4800, 2) and frames[-1, 0] == 9


def test_a_recorder_reports_its_first_write_error_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: WavWriter, frames: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(WavWriter, "write", full)
    errors: list[BaseException] = []
    disk = DiskWriter()
    rec = ConversationRecorder(tmp_path / "conv.wav", disk=disk, on_error=errors.append)
    for _ in range(3):
        rec.add_mic(np.zeros(480, np.int16))
    rec.close()
    disk.close()
    assert [str(e) for e in errors] == ["[Errno 28] No space left on device"]
