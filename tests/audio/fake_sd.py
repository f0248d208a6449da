"""A stand-in for the ``sounddevice`` module: streams whose callbacks the test drives,
so the callback logic is checked deterministically without PortAudio."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class PortAudioError(Exception):
    pass


class CallbackAbort(Exception):
    pass


@dataclass
class TimeInfo:
    currentTime: float
    outputBufferDacTime: float = 0.0
    inputBufferAdcTime: float = 0.0


@dataclass
class Status:
    input_overflow: bool = False
    output_underflow: bool = False


class _Stream:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.callback = kwargs["callback"]
        self.finished_callback = kwargs.get("finished_callback")
        self.started = False
        self.closed = False
        self.stops = 0
        self.time = 0.0
        FakeSoundDevice.streams.append(self)

    def start(self) -> None:
        self.started = True

    @property
    def active(self) -> bool:
        return self.started and not self.closed

    def abort(self, ignore_errors: bool = True) -> None:
        self.started = False

    def stop(self, ignore_errors: bool = True) -> None:
        """Like PortAudio: the stream ends (its finished callback runs) and can start again."""
        self.started = False
        self.stops += 1
        if self.finished_callback is not None:
            self.finished_callback()

    def close(self, ignore_errors: bool = True) -> None:
        self.closed = True


class OutputStream(_Stream):
    def pull(
        self, frames: int, now: float, dac_delay: float = 0.2, underflow: bool = False
    ) -> np.ndarray:
        """Run one callback at stream time ``now``; returns what it wrote."""
        out = np.full((frames, self.kwargs["channels"]), 12345, dtype=np.int16)
        status = Status(output_underflow=underflow)
        self.callback(out, frames, TimeInfo(now, now + dac_delay), status)
        return out[:, 0].copy()


class RawInputStream(_Stream):
    """As PortAudio hands a raw mono int16 stream's callback: a buffer of bytes."""

    def push(self, block: np.ndarray, overflow: bool = False) -> None:
        self.callback(
            memoryview(block.astype(np.int16).tobytes()),
            len(block),
            TimeInfo(0.0),
            Status(input_overflow=overflow),
        )

    def finish(self) -> None:
        assert self.finished_callback is not None
        self.finished_callback()


class FakeSoundDevice:
    """Module-like: ``OutputStream``, ``RawInputStream``, ``PortAudioError``."""

    streams: list[_Stream] = []
    PortAudioError = PortAudioError
    CallbackAbort = CallbackAbort
    OutputStream = OutputStream
    RawInputStream = RawInputStream

    def __init__(self) -> None:
        FakeSoundDevice.streams = []


def stream_of(fake: FakeSoundDevice) -> RawInputStream:
    stream = fake.streams[-1]
    assert isinstance(stream, RawInputStream)
    return stream
