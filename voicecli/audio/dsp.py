"""Sample-level helpers on int16 PCM: resampling (soxr), level, fades, mixdown.

Everything here works on numpy ``int16`` arrays (the Realtime API's ``audio/pcm``:
16-bit little-endian, 24 kHz mono) and returns new arrays; nothing touches a device.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from voicecli.pcm import SAMPLE_RATE

__all__ = [
    "SAMPLE_RATE",
    "SILENCE_DBFS",
    "Int16Array",
    "StreamResampler",
    "as_int16",
    "fade_in",
    "fade_out",
    "float_to_int16",
    "int16_to_float",
    "resample",
    "rms_dbfs",
    "to_mono",
]

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float32]

"""The Realtime API's PCM rate. The same constant as ``voicecli.config.SAMPLE_RATE``:
the import-linter contract keeps ``audio`` and ``config`` independent siblings."""

SILENCE_DBFS = -120.0
"""The level reported for digital silence (instead of minus infinity)."""

_FULL_SCALE = 32768.0


def as_int16(samples: Int16Array | bytes | bytearray | memoryview) -> Int16Array:
    """View ``bytes`` (16-bit little-endian PCM) or an int16 array as an int16 array."""
    if isinstance(samples, (bytes, bytearray, memoryview)):
        raw = bytes(samples)
        if len(raw) % 2:
            raise ValueError(f"16-bit PCM needs an even number of bytes, got {len(raw)}")
        return np.frombuffer(raw, dtype="<i2").astype(np.int16, copy=False)
    arr = np.asarray(samples)
    if arr.dtype != np.int16:
        raise TypeError(f"expected int16 samples, got {arr.dtype}")
    return arr


def int16_to_float(samples: Int16Array) -> FloatArray:
    """int16 PCM to float32 in [-1, 1)."""
    return (np.asarray(samples, dtype=np.float32) / _FULL_SCALE).astype(np.float32, copy=False)


def float_to_int16(samples: npt.NDArray[Any]) -> Int16Array:
    """Float samples in [-1, 1] to int16, clipped (not wrapped) at full scale."""
    scaled = np.rint(np.asarray(samples, dtype=np.float64) * _FULL_SCALE)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def rms_dbfs(block: Int16Array | bytes) -> float:
    """RMS level of a block in dBFS (a full-scale sine is about -3 dBFS).

    Empty or silent blocks give ``SILENCE_DBFS`` (-120) rather than minus infinity, so
    callers can compare and average levels without special cases.
    """
    arr = as_int16(block)
    if arr.size == 0:
        return SILENCE_DBFS
    x = arr.astype(np.float64)
    mean_square = float(np.dot(x, x)) / arr.size  # every mic block: np.mean costs 5x (10 vs 2 us)
    if mean_square <= 0.0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 10.0 * math.log10(mean_square / (_FULL_SCALE * _FULL_SCALE)))


def _ramp(n: int) -> npt.NDArray[np.float64]:
    # raised cosine from exactly 0 (first sample) towards 1: no step, no slope jump
    return 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / max(n, 1))


def fade_in(block: Int16Array, samples: int) -> Int16Array:
    """A copy of ``block`` whose first ``samples`` frames rise from silence."""
    out = np.array(block, dtype=np.int16, copy=True)
    n = max(0, min(samples, out.shape[0]))
    if n:
        gain = _ramp(n)
        if out.ndim == 2:
            gain = gain[:, None]
        out[:n] = np.rint(out[:n] * gain).astype(np.int16)
    return out


def fade_out(block: Int16Array, samples: int) -> Int16Array:
    """A copy of ``block`` whose last ``samples`` frames fall to silence."""
    out = np.array(block, dtype=np.int16, copy=True)
    n = max(0, min(samples, out.shape[0]))
    if n:
        gain = 0.5 + 0.5 * np.cos(np.pi * (np.arange(n) + 1) / n)  # ends on exactly 0
        if out.ndim == 2:
            gain = gain[:, None]
        out[out.shape[0] - n :] = np.rint(out[out.shape[0] - n :] * gain).astype(np.int16)
    return out


def to_mono(frames: Int16Array) -> Int16Array:
    """Mix ``(n, channels)`` frames down to 1-D mono (the mean, so no clipping)."""
    arr = np.asarray(frames)
    if arr.ndim == 1:
        return arr.astype(np.int16, copy=False)
    if arr.ndim != 2:
        raise ValueError(f"expected (frames, channels), got shape {arr.shape}")
    if arr.shape[1] == 1:
        return arr[:, 0].astype(np.int16)
    mixed: Int16Array = np.rint(arr.astype(np.float64).mean(axis=1)).astype(np.int16)
    return mixed


class StreamResampler:
    """Resamples a stream of int16 blocks of any size, keeping filter state between
    blocks (soxr ``HQ``), so block boundaries leave no seams.

    The output lags the input by the filter delay; ``flush()`` returns the tail. Over
    a whole stream the total length is ``round(n_in * out_rate / in_rate)``. Equal
    rates pass blocks through unchanged.
    """

    def __init__(self, in_rate: int, out_rate: int, channels: int = 1) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        if channels < 1:
            raise ValueError(f"channels must be at least 1, got {channels}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.channels = channels
        self._stream: Any = None
        self._new_stream()

    def _new_stream(self) -> None:
        self._stream = (
            None
            if self.in_rate == self.out_rate
            else soxr.ResampleStream(
                self.in_rate, self.out_rate, self.channels, dtype="int16", quality="HQ"
            )
        )

    def _shape(self, block: Int16Array) -> Int16Array:
        arr = as_int16(block)
        if self.channels == 1:
            if arr.ndim == 2 and arr.shape[1] == 1:
                arr = arr[:, 0]
            if arr.ndim != 1:
                raise ValueError(f"expected mono samples, got shape {arr.shape}")
        elif arr.ndim != 2 or arr.shape[1] != self.channels:
            raise ValueError(f"expected (frames, {self.channels}) samples, got {arr.shape}")
        return np.ascontiguousarray(arr)

    def process(self, block: Int16Array) -> Int16Array:
        """Resample the next block; returns whatever output is ready (maybe empty)."""
        arr = self._shape(block)
        if self._stream is None:
            return arr.astype(np.int16)
        out: Int16Array = self._stream.resample_chunk(arr)
        return out

    def flush(self) -> Int16Array:
        """End the stream: the remaining output. The resampler is then ready for a
        new stream."""
        if self._stream is None:
            shape = (0,) if self.channels == 1 else (0, self.channels)
            return np.zeros(shape, dtype=np.int16)
        empty = np.zeros((0,) if self.channels == 1 else (0, self.channels), dtype=np.int16)
        out: Int16Array = self._stream.resample_chunk(empty, last=True)
        self._new_stream()
        return out

    def reset(self) -> None:
        """Drop the filter state (e.g. after a gap in the stream)."""
        self._new_stream()


def resample(samples: Int16Array, in_rate: int, out_rate: int) -> Int16Array:
    """Resample a whole int16 signal (1-D mono or ``(frames, channels)``) at once."""
    arr = as_int16(samples)
    if in_rate == out_rate or arr.shape[0] == 0:
        return arr.astype(np.int16)
    out: Int16Array = soxr.resample(np.ascontiguousarray(arr), in_rate, out_rate, quality="HQ")
    return out.astype(np.int16, copy=False)
