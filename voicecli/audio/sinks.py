"""Audio sinks: where the assistant's 24 kHz mono int16 audio is played.

Every sink counts, per response part ``(item_id, content_index)``, how much audio was
actually *heard*: :meth:`AudioSink.played_ms` is what the engine truncates an
interrupted reply to. :class:`NullSink` plays instantly (or in real time, clocked by
``time.monotonic``), exactly; :class:`WavFileSink` writes a file. The speaker itself is
:class:`~voicecli.audio.device_sink.DeviceSink`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from voicecli.audio.dsp import as_int16
from voicecli.audio.ledger import PlayedLedger
from voicecli.audio.wav import WavWriter
from voicecli.pcm import SAMPLE_RATE as RATE

Int16Array = np.ndarray[Any, np.dtype[np.int16]]
Key = tuple[str, int]

log = logging.getLogger(__name__)


@runtime_checkable
class AudioSink(Protocol):
    """Plays the assistant's audio and reports how much of each part was heard."""

    @property
    def is_playing(self) -> bool:
        """Audio is queued or still coming out of the speaker."""
        ...

    @property
    def level_dbfs(self) -> float | None:
        """The level of what the speaker plays right now; None when silent."""
        ...

    @property
    def error(self) -> str | None:
        """Why the speaker stopped working mid-session (it then plays nothing and
        counts nothing more as heard); None while it works or once closed."""
        ...

    def write(self, pcm: bytes | Int16Array, item_id: str, content_index: int = 0) -> None:
        """Queue 24 kHz mono int16 audio of one response part. Never blocks."""
        ...

    def flush(self, fade: bool = True) -> None:
        """Stop: drop everything not yet played (``fade``: a few ms fade-out first)."""
        ...

    async def drained(self) -> None:
        """Return once everything written has been played (or flushed)."""
        ...

    def played_ms(self, item_id: str, content_index: int = 0) -> int:
        """Milliseconds of that part heard so far (at the speaker)."""
        ...

    async def start(self) -> None:
        """Get ready to play (writing also starts a sink)."""
        ...

    def wake(self) -> None:
        """Audio is coming soon: get the device ready now. Never blocks."""
        ...

    async def close(self) -> None:
        """Release the device; the counts stay readable."""
        ...


def as_samples(pcm: bytes | Int16Array) -> Int16Array:
    if isinstance(pcm, (bytes, bytearray, memoryview)):
        raw = bytes(pcm)
        if len(raw) % 2:
            log.warning("dropping a trailing odd byte of audio")
            raw = raw[:-1]
        return np.frombuffer(raw, dtype="<i2").astype(np.int16, copy=False)
    return as_int16(pcm).reshape(-1)


class NullSink:
    """Plays nowhere. ``realtime=False``: every sample counts as played the moment it is
    written. ``realtime=True``: plays at 24 kHz on the monotonic clock (what the event
    loop uses), so a flush mid-reply leaves exactly the elapsed part played."""

    rate = RATE

    def __init__(self, realtime: bool = False) -> None:
        self.realtime = realtime
        self._ledger = PlayedLedger(RATE)
        self._written = 0  # absolute position after the last sample written
        self._base_pos = 0  # realtime: position at which playing (re)started...
        self._base_time: float | None = None  # ...and when; None: idle

    def _position(self) -> int:
        if not self.realtime or self._base_time is None:
            return self._written
        pos = self._base_pos + int((time.monotonic() - self._base_time) * self.rate)
        if pos >= self._written:
            self._base_time = None
            return self._written
        return pos

    @property
    def is_playing(self) -> bool:
        """Realtime only: written audio is still being played out."""
        return self._position() < self._written

    @property
    def error(self) -> str | None:
        """Never fails."""
        return None

    @property
    def level_dbfs(self) -> float | None:
        """The level at the play position (realtime only; None when silent)."""
        pos = self._position()
        return self._ledger.level(pos) if pos < self._written else None

    def write(self, pcm: bytes | Int16Array, item_id: str, content_index: int = 0) -> None:
        """Queue audio of one part (played at once unless realtime)."""
        samples = as_samples(pcm)
        if not len(samples):
            return
        if self.realtime and self._position() >= self._written:
            self._base_pos, self._base_time = self._written, time.monotonic()
        self._ledger.add(self._written, samples, (item_id, content_index))
        self._written += len(samples)
        self._ledger.settle(self._position())

    def flush(self, fade: bool = True) -> None:
        """Drop what has not been played (exact: no fade tail is counted)."""
        pos = self._position()
        self._ledger.discard(pos, self._written)
        self._base_time = None

    async def drained(self) -> None:
        """Wait until the written audio has played out."""
        while True:
            left = self._written - self._position()
            if left <= 0:
                return
            await asyncio.sleep(min(left / self.rate, 0.05))

    def played_ms(self, item_id: str, content_index: int = 0) -> int:
        """Milliseconds of the part played so far (exact, rounded down)."""
        played = self._ledger.played((item_id, content_index), self._position())
        return played * 1000 // self.rate

    async def start(self) -> None:
        """Nothing to start."""

    def wake(self) -> None:
        """Nothing to wake."""

    async def close(self) -> None:
        """Nothing to release."""


class WavFileSink(NullSink):
    """Plays into a WAV file (24 kHz mono): everything written, as written (instantly)."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(realtime=False)
        self.path = Path(path)
        self._writer: WavWriter | None = None

    def write(self, pcm: bytes | Int16Array, item_id: str, content_index: int = 0) -> None:
        """Append the audio to the file and count it as played."""
        samples = as_samples(pcm)
        if self._writer is None:
            self._writer = WavWriter(self.path, RATE, 1)
        self._writer.write(samples)
        super().write(samples, item_id, content_index)

    async def start(self) -> None:
        """Create the file now (it is created on the first write otherwise)."""
        if self._writer is None:
            self._writer = WavWriter(self.path, RATE, 1)

    async def close(self) -> None:
        """Finish the WAV header."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
