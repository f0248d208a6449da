"""Telling the user's voice from the assistant's own voice coming back through the mic.

Without headphones the microphone hears the speakers. There is no echo canceller
here; instead a level test decides whether a mic block can be the user's:

* ``off``: every block counts (headphones, or a platform echo canceller upstream).
* ``half-duplex``: no block counts while the assistant is audible, nor for
  ``hold_ms`` after playback falls silent (the echo's tail: output latency and room).
* ``guard``: a block counts when its level is more than ``margin_db`` above the
  loudest playback level of the last ``window_ms`` plus ``coupling_db`` (how much
  louder than the digital playback level the echo can arrive; 0 dB assumes speakers
  and mic gain do not amplify). The window covers the delay between a block being
  played and its echo reaching the mic.

Time is counted in mic samples (24 kHz), so the guard is deterministic under test.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from voicecli.audio.dsp import SAMPLE_RATE, SILENCE_DBFS, Int16Array, as_int16, rms_dbfs

__all__ = ["EchoGuard", "EchoMode"]

EchoMode = Literal["off", "guard", "half-duplex"]


class EchoGuard:
    """Decides per mic block whether it may be the user's speech."""

    def __init__(
        self,
        mode: EchoMode = "guard",
        margin_db: float = 10.0,
        *,
        window_ms: int = 400,
        hold_ms: int = 300,
        coupling_db: float = 0.0,
        playback_floor_dbfs: float = -60.0,
    ) -> None:
        if mode not in ("off", "guard", "half-duplex"):
            raise ValueError(f"echo mode must be off, guard or half-duplex, got {mode!r}")
        self.mode: EchoMode = mode
        self.margin_db = margin_db
        self.window_ms = window_ms
        self.hold_ms = hold_ms
        self.coupling_db = coupling_db
        self.playback_floor_dbfs = playback_floor_dbfs
        self.reset()

    def reset(self) -> None:
        """Forget the playback history."""
        self._now = 0  # mic samples seen
        self._levels: deque[tuple[int, float]] = deque()  # (time, playback dBFS)
        self._last_audible: int | None = None  # time playback was last above the floor

    def expected_echo_dbfs(self) -> float:
        """The loudest echo recent playback could produce at the mic (guard mode)."""
        if not self._levels:
            return SILENCE_DBFS
        return max(level for _, level in self._levels) + self.coupling_db

    def user_speaking(self, block: Int16Array | bytes, playback_dbfs: float | None) -> bool:
        """True when ``block`` (mic, 24 kHz) should count as the user's voice, given the
        level of what is being played right now (``None``: nothing is playing)."""
        arr = as_int16(block)
        self._now += arr.shape[0]
        audible = playback_dbfs is not None and playback_dbfs > self.playback_floor_dbfs
        if audible:
            self._last_audible = self._now
        level = playback_dbfs if playback_dbfs is not None else SILENCE_DBFS
        self._levels.append((self._now, level))
        horizon = self._now - self.window_ms * SAMPLE_RATE // 1000
        while self._levels and self._levels[0][0] < horizon:
            self._levels.popleft()
        if self.mode == "off":
            return True
        if self.mode == "half-duplex":
            if self._last_audible is None:
                return True
            return self._now - self._last_audible > self.hold_ms * SAMPLE_RATE // 1000
        expected = self.expected_echo_dbfs()
        if expected - self.coupling_db <= self.playback_floor_dbfs:
            return True  # nothing audible was played recently: no echo to explain
        return rms_dbfs(arr) > expected + self.margin_db
