"""WAV files: read anything common as 24 kHz mono int16, write safely, and record
incrementally so a killed process still leaves a playable file.

Reading parses the RIFF chunks itself (the stdlib ``wave`` module refuses
WAVE_FORMAT_EXTENSIBLE and float files, which many tools write), accepting 8/16/24/32
bit integer PCM and 32/64-bit float, any rate and channel count.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from voicecli.audio.dsp import SAMPLE_RATE, Int16Array, as_int16, float_to_int16, resample
from voicecli.files import write_file
from voicecli.writer import DiskWriter

__all__ = [
    "ConversationRecorder",
    "WavError",
    "WavInfo",
    "WavWriter",
    "read_wav",
    "read_wav_24k_mono",
    "write_wav",
]

_PCM = 0x0001
_FLOAT = 0x0003
_EXTENSIBLE = 0xFFFE
_HEADER_BYTES = 44  # RIFF + fmt (16-byte PCM body) + data header, as WavWriter writes


class WavError(ValueError):
    """A WAV file that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


class WavInfo:
    """What a WAV file's ``fmt`` chunk says."""

    __slots__ = ("bits", "channels", "format_tag", "rate")

    def __init__(self, format_tag: int, channels: int, rate: int, bits: int) -> None:
        self.format_tag = format_tag
        self.channels = channels
        self.rate = rate
        self.bits = bits

    def __repr__(self) -> str:
        kind = "float" if self.format_tag == _FLOAT else "PCM"
        return f"WavInfo({self.bits}-bit {kind}, {self.channels} ch, {self.rate} Hz)"


def _decode(path: Path, info: WavInfo, data: bytes) -> npt.NDArray[np.float64] | Int16Array:
    """Interleaved sample bytes to (frames, channels): int16 when the file is 16-bit
    (no conversion), otherwise float64 in [-1, 1]."""
    width = info.bits // 8
    frame = width * info.channels
    usable = len(data) - len(data) % frame  # a torn last frame (killed writer) is dropped
    data = data[:usable]
    if info.format_tag == _FLOAT:
        if info.bits not in (32, 64):
            raise WavError(path, f"unsupported float sample width: {info.bits} bits")
        flt = np.frombuffer(data, dtype="<f4" if info.bits == 32 else "<f8")
        return flt.astype(np.float64).reshape(-1, info.channels)
    if info.bits == 16:
        return np.frombuffer(data, dtype="<i2").astype(np.int16).reshape(-1, info.channels)
    if info.bits == 8:  # unsigned, centred on 128
        u8 = np.frombuffer(data, dtype=np.uint8).astype(np.float64)
        return ((u8 - 128.0) / 128.0).reshape(-1, info.channels)
    if info.bits == 24:
        b = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        return (v.astype(np.float64) / float(1 << 23)).reshape(-1, info.channels)
    if info.bits == 32:
        i32 = np.frombuffer(data, dtype="<i4").astype(np.float64)
        return (i32 / float(1 << 31)).reshape(-1, info.channels)
    raise WavError(path, f"unsupported sample width: {info.bits} bits")


def read_wav(path: str | Path) -> tuple[Int16Array, WavInfo]:
    """Read a WAV file as int16 ``(frames, channels)`` at its own rate, with its format.

    Raises ``WavError`` for a missing/unreadable file, a non-WAV file, an unsupported
    format, a truncated header or no audio at all.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise WavError(p, f"cannot read: {exc.strerror or exc}") from exc
    if len(raw) == 0:
        raise WavError(p, "empty file")
    if len(raw) < 12 or raw[:4] not in (b"RIFF", b"RIFX", b"RF64") or raw[8:12] != b"WAVE":
        raise WavError(p, "not a WAV file (no RIFF/WAVE header)")
    if raw[:4] != b"RIFF":
        raise WavError(p, f"unsupported WAV variant {raw[:4].decode('ascii')}")
    info: WavInfo | None = None
    data: bytes | None = None
    pos = 12
    while pos + 8 <= len(raw):
        cid, size = struct.unpack_from("<4sI", raw, pos)
        body = raw[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            if len(body) < 16:
                raise WavError(p, "truncated fmt chunk")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _EXTENSIBLE:
                if len(body) < 26:
                    raise WavError(p, "truncated WAVE_FORMAT_EXTENSIBLE fmt chunk")
                (tag,) = struct.unpack_from("<H", body, 24)  # the sub-format GUID's tag
            info = WavInfo(tag, channels, rate, bits)
        elif cid == b"data":
            # a writer killed before fixing the header leaves size 0 or too big: use
            # whatever bytes follow
            data = raw[pos + 8 :] if size == 0 or pos + 8 + size > len(raw) else body
            break
        pos += 8 + size + (size & 1)  # chunks are word-aligned
    if info is None:
        raise WavError(p, "truncated: no fmt chunk")
    if info.format_tag not in (_PCM, _FLOAT):
        raise WavError(
            p, f"unsupported encoding (format tag 0x{info.format_tag:04x}); need PCM or float"
        )
    if info.channels < 1 or info.rate < 1:
        raise WavError(p, f"invalid format: {info.channels} channels at {info.rate} Hz")
    if info.bits % 8 or not 8 <= info.bits <= 64:
        raise WavError(p, f"unsupported sample width: {info.bits} bits")
    if data is None:
        raise WavError(p, "truncated: no data chunk")
    frames = _decode(p, info, data)
    if frames.shape[0] == 0:
        raise WavError(p, "no audio (empty data chunk)")
    if frames.dtype == np.int16:
        return frames.astype(np.int16, copy=False), info
    return float_to_int16(frames), info


def read_wav_24k_mono(path: str | Path) -> Int16Array:
    """Read a WAV file as 1-D int16 at 24 kHz: channels are mixed down (the mean) and
    other rates resampled with soxr. Raises ``WavError`` with a one-line reason."""
    frames, info = read_wav(path)
    if info.channels == 1:
        mono = frames[:, 0].astype(np.int16)
    else:
        mono = np.rint(frames.astype(np.float64).mean(axis=1)).astype(np.int16)
    return resample(mono, info.rate, SAMPLE_RATE)


def _header(rate: int, channels: int, data_bytes: int) -> bytes:
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        _PCM,
        channels,
        rate,
        rate * channels * 2,
        channels * 2,
        16,
        b"data",
        data_bytes,
    )


def _pcm_bytes(samples: Int16Array | bytes, channels: int) -> bytes:
    if isinstance(samples, (bytes, bytearray, memoryview)):
        raw = bytes(samples)
        if len(raw) % (2 * channels):
            raise ValueError(f"{len(raw)} bytes is not a whole number of {channels}-ch frames")
        return raw
    arr = as_int16(samples)
    if arr.ndim == 2 and arr.shape[1] != channels:
        raise ValueError(f"got {arr.shape[1]}-channel frames for a {channels}-channel file")
    if arr.ndim == 1 and channels != 1 and arr.size % channels:
        raise ValueError(f"{arr.size} samples is not a whole number of {channels}-ch frames")
    return arr.astype("<i2", copy=False).tobytes()


def write_wav(
    path: str | Path, samples: Int16Array | bytes, rate: int = SAMPLE_RATE, channels: int = 1
) -> None:
    """Write 16-bit PCM with :func:`voicecli.files.write_file`: a regular file is replaced
    atomically (readers never see a half-written file; a symlink's target is replaced,
    not the link), anything else (``/dev/null``, a FIFO, ``/dev/stdout``) written
    through."""
    pcm = _pcm_bytes(samples, channels)
    write_file(path, _header(rate, channels, len(pcm)) + pcm)


class WavWriter:
    """Incremental 16-bit PCM WAV writer that keeps the file playable at all times.

    Each ``write`` appends the frames and then patches the RIFF and data sizes, so a
    process killed at any point (even ``kill -9``) leaves a valid WAV holding every
    completed write. ``fsync`` runs every ``fsync_s`` seconds of audio (the OS cache
    survives a process crash; fsync only matters for a power cut) and at ``close``.
    """

    def __init__(
        self,
        path: str | Path,
        rate: int = SAMPLE_RATE,
        channels: int = 1,
        *,
        fsync_s: float = 5.0,
    ) -> None:
        self.path = Path(path)
        self.rate = rate
        self.channels = channels
        self.frames_written = 0
        self._fsync_every = max(1, int(fsync_s * rate))
        self._since_fsync = 0
        self._f: BinaryIO | None = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._f.write(_header(rate, channels, 0))
        self._f.flush()

    @property
    def closed(self) -> bool:
        return self._f is None

    def write(self, frames: Int16Array | bytes) -> None:
        """Append frames (mono: 1-D; more channels: ``(n, channels)`` or interleaved)."""
        if self._f is None:
            raise ValueError(f"{self.path}: write to a closed WavWriter")
        pcm = _pcm_bytes(frames, self.channels)
        if not pcm:
            return
        f = self._f
        f.seek(0, os.SEEK_END)
        f.write(pcm)
        n = len(pcm) // (2 * self.channels)
        self.frames_written += n
        data_bytes = self.frames_written * 2 * self.channels
        # the sizes go in after the data, so a crash between the two leaves sizes that
        # are too small (readable), never too big
        f.seek(4)
        f.write(struct.pack("<I", 36 + data_bytes))
        f.seek(40)
        f.write(struct.pack("<I", data_bytes))
        f.flush()
        self._since_fsync += n
        if self._since_fsync >= self._fsync_every:
            os.fsync(f.fileno())
            self._since_fsync = 0

    def close(self) -> None:
        """Flush, fsync and close (idempotent)."""
        if self._f is None:
            return
        f, self._f = self._f, None
        try:
            f.flush()
            os.fsync(f.fileno())
        finally:
            f.close()

    @property
    def duration_s(self) -> float:
        return self.frames_written / self.rate

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ConversationRecorder:
    """Records a conversation as a stereo WAV: left = microphone, right = assistant.

    Both sides are placed by sample time: the microphone is a continuous clock (each
    ``add_mic`` block follows the last), and assistant audio is laid down from the
    current mic time, or right after the previous assistant audio if that is still
    playing. Frames are written once both channels are known for them (when one side
    is silent it is filled with zeros), so the file on disk is always valid and at
    most a few blocks behind. Thread-safe: mic and playback callbacks may call in
    from different threads.

    ``disk``: the writes (and their size patches and fsyncs) run on that writer thread,
    in order, so the caller's thread (the event loop) never waits for the disk; the
    first write error goes to ``on_error``, from the writer's thread (or, with a
    loop, on it). Without ``disk`` they run in the caller's thread.
    """

    def __init__(
        self,
        path: str | Path,
        rate: int = SAMPLE_RATE,
        *,
        fsync_s: float = 5.0,
        disk: DiskWriter | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ):
        self._writer = WavWriter(path, rate, channels=2, fsync_s=fsync_s)
        self._disk = disk
        self._on_error = on_error
        self._failed = False
        self._closed = False
        self._lock = threading.Lock()
        self._mic: list[Int16Array] = []  # mic samples not yet written
        self._mic_pending = 0
        self._asst = np.zeros(0, dtype=np.int16)  # assistant samples from the write point
        self._written = 0  # frames on disk
        self._mic_time = 0  # frames of mic audio received

    @property
    def path(self) -> Path:
        return self._writer.path

    @property
    def frames_written(self) -> int:
        return self._written

    def add_mic(self, block: Int16Array | bytes) -> None:
        """The next block of microphone audio (24 kHz mono int16)."""
        arr = as_int16(block).reshape(-1)
        with self._lock:
            self._mic.append(arr.astype(np.int16))
            self._mic_pending += arr.size
            self._mic_time += arr.size
            self._drain(final=False)

    def add_assistant(self, block: Int16Array | bytes) -> None:
        """Assistant audio as it is played; starts no earlier than the current mic
        time and never overlaps earlier assistant audio."""
        arr = as_int16(block).reshape(-1)
        with self._lock:
            if self._closed:
                return
            # where the assistant audio continues from: after what is queued, or now
            start = max(self._written + self._asst.size, self._mic_time)
            gap = start - (self._written + self._asst.size)
            parts = [self._asst]
            if gap:
                parts.append(np.zeros(gap, dtype=np.int16))
            parts.append(arr.astype(np.int16))
            self._asst = np.concatenate(parts)
            self._drain(final=False)

    def _drain(self, *, final: bool) -> None:
        # write every frame whose mic sample is known; assistant defaults to silence
        n = self._mic_pending
        if final:
            n = max(n, self._asst.size)
        if n == 0 or self._closed:
            return
        mic = np.concatenate(self._mic) if self._mic else np.zeros(0, dtype=np.int16)
        if mic.size < n:
            mic = np.concatenate([mic, np.zeros(n - mic.size, dtype=np.int16)])
        asst = self._asst[:n]
        if asst.size < n:
            asst = np.concatenate([asst, np.zeros(n - asst.size, dtype=np.int16)])
        stereo = np.empty((n, 2), dtype=np.int16)
        stereo[:, 0] = mic[:n]
        stereo[:, 1] = asst
        self._run(lambda: self._writer.write(stereo))
        self._written += n
        self._mic = []
        self._mic_pending = 0
        self._asst = self._asst[n:]

    def close(self) -> None:
        """Write what is left (assistant audio past the last mic block too) and close
        (with ``disk``: once the writer reaches it)."""
        with self._lock:
            self._drain(final=True)
            self._closed = True
            self._run(self._writer.close)

    def _run(self, job: Callable[[], None]) -> None:
        if self._disk is None:
            job()
        else:
            self._disk.submit(job, self._done)

    def _done(self, result: object) -> None:
        if isinstance(result, BaseException) and not self._failed:
            self._failed = True
            if self._on_error is not None:
                self._on_error(result)

    def __enter__(self) -> ConversationRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
