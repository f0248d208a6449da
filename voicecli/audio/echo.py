"""Telling the user's voice from the assistant's own voice coming back through the mic.

Without headphones the microphone hears the speakers. There is no echo canceller
here; instead a level test decides whether a mic block can be the user's:

* ``off``: every block counts (headphones, or a platform echo canceller upstream).
* ``half-duplex``: no block counts while the assistant is audible, nor for
  ``hold_ms`` after playback falls silent (the echo's tail: output latency and room).
* ``guard``: while anything audible was played in the last ``window_ms`` (the delay
  between a block reaching the speaker and its echo reaching the mic), a block counts
  when ``mic dB > playback peak dB + coupling + margin_db``; *playback peak* is the
  loudest playback level of that window, *coupling* the echo path's gain, learned
  online. Every block during playback that is *not* taken for the user measures
  ``d = mic dB - playback peak dB``; the coupling is the largest ``d`` of the last
  ``learn_ms`` of such blocks (ten per-bucket maxima: O(1) state, no allocation per
  block), clamped to ``[min_coupling_db, max_coupling_db]``. A ``d`` enters at most
  ``rise_db_per_s`` above the current coupling, so the rising onset of the user's
  words (blocks just below the threshold) cannot push the threshold ahead of the user;
  a soft user taken for echo raises it slowly (the safe direction) and is forgotten
  ``learn_ms`` later. Until ``learn_ms`` of playback has been judged, the initial
  ``coupling_db`` (0 dB: echo as loud as the digital playback) still counts, so the
  first words of the first reply are guarded as conservatively as ever. The coupling
  persists across replies (:meth:`reset` keeps it): the room rarely changes. Echo
  that gets louder by more than ``margin_db`` at once (speaker volume turned far up)
  counts as the user: blocks taken for the user are never learned from.

Time is counted in mic samples (24 kHz), so the guard is deterministic under test.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from voicecli.audio.dsp import SAMPLE_RATE, SILENCE_DBFS, Int16Array, as_int16, rms_dbfs

__all__ = ["EchoGuard", "EchoMode"]

EchoMode = Literal["off", "guard", "half-duplex"]

_BUCKETS = 10  # the learning window is kept as this many per-bucket maxima


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
        min_coupling_db: float = -40.0,
        max_coupling_db: float = 10.0,
        learn_ms: int = 2000,
        rise_db_per_s: float = 5.0,
        playback_floor_dbfs: float = -60.0,
        cancelled_db: float = 10.0,
    ) -> None:
        if mode not in ("off", "guard", "half-duplex"):
            raise ValueError(f"echo mode must be off, guard or half-duplex, got {mode!r}")
        if not min_coupling_db <= coupling_db <= max_coupling_db:
            raise ValueError(
                f"coupling_db {coupling_db} outside [{min_coupling_db}, {max_coupling_db}]"
            )
        if learn_ms < 20 * _BUCKETS:
            raise ValueError(f"learn_ms must be at least {20 * _BUCKETS}, got {learn_ms}")
        self.mode: EchoMode = mode
        self.margin_db = margin_db
        self.window_ms = window_ms
        self.hold_ms = hold_ms
        self.initial_coupling_db = coupling_db
        self.min_coupling_db = min_coupling_db
        self.max_coupling_db = max_coupling_db
        self.learn_ms = learn_ms
        self.rise_db_per_s = rise_db_per_s
        self.playback_floor_dbfs = playback_floor_dbfs
        self.cancelled_db = cancelled_db
        self._bucket_len = learn_ms * SAMPLE_RATE // 1000 // _BUCKETS  # mic samples
        self._buckets = [coupling_db] * _BUCKETS  # the initial value fills the window
        self._bucket = 0
        self._bucket_fill = 0
        self._learned = 0  # mic samples judged echo since the start (or a relearn)
        self.reset()

    def reset(self) -> None:
        """Forget the playback history (the learned coupling stays)."""
        self._now = 0  # mic samples seen
        self._levels: deque[tuple[int, float]] = deque()  # (time, playback dBFS)
        self._last_audible: int | None = None  # time playback was last above the floor

    def relearn(self) -> None:
        """Forget the learned echo path: back to the initial coupling, learned anew
        over ``learn_ms`` (the echo path changed)."""
        self._buckets = [self.initial_coupling_db] * _BUCKETS
        self._bucket_fill = 0
        self._learned = 0

    @property
    def learning(self) -> bool:
        """Guard mode has not yet learned the echo path from ``learn_ms`` of echo (since
        the start, or the last :meth:`relearn`): until then it keeps the safe initial
        coupling, and only a voice that much louder than the playback counts."""
        return self.mode == "guard" and self._learned < self.learn_ms * SAMPLE_RATE // 1000

    @property
    def coupling_db(self) -> float:
        """The echo path's gain as learned so far: echo dB minus playback dB."""
        learned = max(self._buckets)
        return min(self.max_coupling_db, max(self.min_coupling_db, learned))

    def _playback_peak(self) -> float:
        if not self._levels:
            return SILENCE_DBFS
        return max(level for _, level in self._levels)

    def expected_echo_dbfs(self) -> float:
        """The loudest echo recent playback can explain at the mic (guard mode)."""
        peak = self._playback_peak()
        return SILENCE_DBFS if peak <= SILENCE_DBFS else peak + self.coupling_db

    def _learn(self, d: float, samples: int) -> None:
        """One block judged echo: ``d`` (mic dB - playback peak dB) enters the window,
        at most ``rise_db_per_s`` above the current coupling."""
        d = min(d, self.coupling_db + self.rise_db_per_s * samples / SAMPLE_RATE)
        self._learned += samples
        buckets, b = self._buckets, self._bucket
        if d > buckets[b]:
            buckets[b] = d
        self._bucket_fill += samples
        if self._bucket_fill >= self._bucket_len:
            self._bucket_fill = 0
            b = (b + 1) % _BUCKETS
            self._bucket = b
            buckets[b] = self.min_coupling_db  # the oldest bucket leaves the window

    def user_speaking(
        self,
        block: Int16Array | bytes,
        playback_dbfs: float | None,
        *,
        removed_db: float | None = None,
    ) -> bool:
        """True when ``block`` (mic, 24 kHz) should count as the user's voice, given the
        level of what is being played right now (``None``: nothing is playing).

        ``removed_db``: how much an echo canceller upstream took out of this block (mic
        dB - cleaned dB; None: no canceller). A block it removed ``cancelled_db`` or more
        from was echo, whatever its level, and its residual is what the guard learns;
        a block it kept (near-end speech, or an echo it failed to find) is judged by
        level but never learned from, so a voice below the threshold cannot raise it."""
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
        peak = self._playback_peak()
        if peak <= self.playback_floor_dbfs:
            return True  # nothing audible was played recently: no echo to explain
        d = rms_dbfs(arr) - peak
        if removed_db is not None and removed_db >= self.cancelled_db:
            self._learn(d, arr.shape[0])  # the canceller found it: echo
            return False
        if d > self.coupling_db + self.margin_db:
            return True
        if removed_db is None or d <= self.min_coupling_db:
            self._learn(d, arr.shape[0])
        return False
