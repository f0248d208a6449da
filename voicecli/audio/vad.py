"""Local endpointing: where a turn of speech starts and ends in the 24 kHz mic stream.

webrtcvad only takes 8/16/32/48 kHz audio in 10/20/30 ms frames, so the endpointer
keeps a 16 kHz side path (a streaming soxr resampler) for the detector, while the
pre-roll it hands back is the original 24 kHz audio that goes to the API.

webrtcvad alone is not enough, for two measured reasons:

* it has a built-in hangover: after any speech it keeps saying "speech" for 2-6
  more 30 ms frames (60-180 ms measured, depending on the mode). A 20 ms click
  becomes four voiced 30 ms frames in a row, so "3 voiced frames" would start a
  turn on every click, and every end would come 100-185 ms late;
* its noise model starts untrained: the first 60-220 ms of plain background noise
  are called speech (white noise at -60 to -30 dBFS, every mode and frame size).

So each 10 ms slice of a frame is also measured against the noise floor (the quietest
10 ms of the last 3 s), and only slices that webrtcvad calls speech *and* that stand
``gate_db`` above the floor count as speech ("loud-voiced"). Rules (``[vad]`` in the
config):

* **start**: within one run of consecutive webrtcvad-voiced frames, loud-voiced
  slices adding up to ``start_frames * frame_ms`` (90 ms at the defaults). The onset
  is the start of the first loud-voiced slice of the run. Measured on cuts of the
  speech fixtures at 52 alignments each: 20-60 ms blips never start a turn, 70 ms
  ones 6 times, 100 ms ones 39 times.
* **warm-up**: nothing counts as speech in the first ``warmup_ms`` (the floor and
  webrtcvad's model are learning).
* **end**: ``silence_ms`` after the end of the last loud-voiced slice. The end time is
  the end of that slice (the hangover is not counted as speech).

Times are stream times in ms from the first sample fed (or from ``reset()``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import webrtcvad

from voicecli.audio.dsp import SAMPLE_RATE, SILENCE_DBFS, Int16Array, StreamResampler, as_int16

__all__ = ["Endpointer", "SpeechEnd", "SpeechStart", "VadEvent"]

_VAD_RATE = 16_000
_SLICE_MS = 10  # loudness is judged per 10 ms, finer than webrtcvad's frames
_SLICE_16K = _VAD_RATE * _SLICE_MS // 1000


@dataclass(frozen=True)
class SpeechStart:
    """Speech began at ``t_ms``. ``preroll`` is the 24 kHz audio from ``prefix_ms``
    before the onset up to the end of the block just fed, so a caller sends
    ``preroll`` and then every following block, and nothing is lost or doubled."""

    t_ms: int
    preroll: Int16Array = field(repr=False, compare=False)


@dataclass(frozen=True)
class SpeechEnd:
    """Speech ended at ``t_ms`` (end of the last voiced frame) after ``speech_ms``."""

    t_ms: int
    speech_ms: int


VadEvent = SpeechStart | SpeechEnd


class Endpointer:
    """Turns a stream of 24 kHz int16 blocks (any length) into speech start/end events.

    Not thread-safe: feed it from one task.
    """

    def __init__(
        self,
        aggressiveness: int = 2,
        silence_ms: int = 500,
        prefix_ms: int = 300,
        start_frames: int = 3,
        frame_ms: int = 30,
        *,
        warmup_ms: int = 300,
        gate_db: float = 6.0,
        floor_window_ms: int = 3_000,
    ) -> None:
        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"aggressiveness must be 0-3, got {aggressiveness}")
        if frame_ms not in (10, 20, 30):
            raise ValueError(f"frame_ms must be 10, 20 or 30, got {frame_ms}")
        if start_frames < 1:
            raise ValueError(f"start_frames must be at least 1, got {start_frames}")
        if silence_ms <= 0 or prefix_ms < 0:
            raise ValueError(f"need silence_ms > 0, prefix_ms >= 0: got {silence_ms}, {prefix_ms}")
        self.aggressiveness = aggressiveness
        self.silence_ms = silence_ms
        self.prefix_ms = prefix_ms
        self.start_frames = start_frames
        self.frame_ms = frame_ms
        self.warmup_ms = warmup_ms
        self.gate_db = gate_db
        self.floor_window_ms = floor_window_ms
        self._frame_16k = _VAD_RATE * frame_ms // 1000
        self._start_slices = start_frames * frame_ms // _SLICE_MS
        self._floor_slices = max(1, floor_window_ms // _SLICE_MS)
        # 24 kHz history kept for the pre-roll: the prefix before an onset confirmed a
        # little later, plus the resampler's lag (_trim keeps more for a long run)
        self._keep = SAMPLE_RATE * (prefix_ms + 4 * start_frames * frame_ms + 200) // 1000
        self.reset()

    def reset(self) -> None:
        """Forget everything, including the stream clock (the next sample is t=0)."""
        self._vad = webrtcvad.Vad(self.aggressiveness)
        self._resampler = StreamResampler(SAMPLE_RATE, _VAD_RATE)
        self._pending16 = np.zeros(0, dtype=np.int16)  # 16 kHz samples not yet in a frame
        self._slices = 0  # 10 ms slices judged so far
        self._floor: deque[tuple[int, float]] = deque()  # sliding minimum of slice levels
        self._history: deque[Int16Array] = deque()  # recent 24 kHz blocks
        self._history_len = 0
        self._fed = 0  # 24 kHz samples fed
        self._in_speech = False
        self._run_loud = 0  # loud-voiced slices in the current voiced run (before a start)
        self._run_onset = 0  # first loud-voiced slice of that run
        self._onset = 0  # slice index of the reported onset
        self._last_loud = 0  # slice index just after the last loud-voiced slice

    @property
    def in_speech(self) -> bool:
        """A start has been reported and its end not yet."""
        return self._in_speech

    @property
    def stream_ms(self) -> float:
        """Stream time fed so far, in ms."""
        return self._fed * 1000 / SAMPLE_RATE

    @property
    def noise_floor_dbfs(self) -> float:
        """The current noise floor estimate (quietest 10 ms of the floor window)."""
        return self._floor[0][1] if self._floor else SILENCE_DBFS

    def feed(self, block: Int16Array | bytes) -> list[SpeechStart | SpeechEnd]:
        """Feed the next block of 24 kHz mono audio; returns the events it completes."""
        arr = as_int16(block).reshape(-1)
        if arr.size == 0:
            return []
        self._history.append(arr.copy())
        self._history_len += arr.size
        self._fed += arr.size
        events: list[SpeechStart | SpeechEnd] = []
        side = self._resampler.process(arr)
        buf = np.concatenate([self._pending16, side]) if self._pending16.size else side
        n = buf.size // self._frame_16k
        for i in range(n):
            frame = buf[i * self._frame_16k : (i + 1) * self._frame_16k]
            events.extend(self._frame(frame))
        self._pending16 = buf[n * self._frame_16k :].copy()
        self._trim()
        return events

    def _loudness(self, frame: Int16Array) -> list[bool]:
        """Per 10 ms slice: does it stand ``gate_db`` above the noise floor?"""
        x = frame.astype(np.float64).reshape(-1, _SLICE_16K)
        mean_sq = np.mean(x * x, axis=1)
        levels = [
            max(SILENCE_DBFS, 10.0 * math.log10(m / 32768.0**2)) if m > 0 else SILENCE_DBFS
            for m in mean_sq.tolist()
        ]
        loud: list[bool] = []
        for level in levels:
            index = self._slices + len(loud)
            # sliding-window minimum: a monotonic deque of (slice, level)
            while self._floor and self._floor[-1][1] >= level:
                self._floor.pop()
            self._floor.append((index, level))
            while self._floor[0][0] <= index - self._floor_slices:
                self._floor.popleft()
            loud.append(level > self._floor[0][1] + self.gate_db)
        return loud

    def _frame(self, frame: Int16Array) -> list[SpeechStart | SpeechEnd]:
        first = self._slices
        loud = self._loudness(frame)
        self._slices += len(loud)
        voiced = self._vad.is_speech(frame.tobytes(), _VAD_RATE)
        if first * _SLICE_MS < self.warmup_ms:
            voiced = False  # the floor and webrtcvad's model are still learning
        hits = [first + k for k, is_loud in enumerate(loud) if is_loud] if voiced else []
        events: list[SpeechStart | SpeechEnd] = []
        if not self._in_speech:
            if not voiced:
                self._run_loud = 0
                return events
            for k in hits:
                if self._run_loud == 0:
                    self._run_onset = k
                self._run_loud += 1
            if self._run_loud >= self._start_slices:
                self._in_speech = True
                self._onset = self._run_onset
                self._last_loud = hits[-1] + 1
                self._run_loud = 0
                t_ms = self._onset * _SLICE_MS
                events.append(SpeechStart(t_ms, self._preroll(t_ms)))
            return events
        if hits:
            self._last_loud = hits[-1] + 1
        if (self._slices - self._last_loud) * _SLICE_MS >= self.silence_ms:
            self._in_speech = False
            end_ms = self._last_loud * _SLICE_MS
            events.append(SpeechEnd(end_ms, end_ms - self._onset * _SLICE_MS))
        return events

    def _preroll(self, onset_ms: int) -> Int16Array:
        # from prefix_ms before the onset to the end of everything fed (the current
        # block included)
        start = max(0, (onset_ms - self.prefix_ms) * SAMPLE_RATE // 1000)
        held_from = self._fed - self._history_len
        audio: Int16Array = np.concatenate(list(self._history))
        preroll: Int16Array = audio[max(0, start - held_from) :].copy()
        return preroll

    def _trim(self) -> None:
        keep = self._keep
        if not self._in_speech and self._run_loud:
            # a start may still be confirmed for the run in progress: keep its prefix
            run_from = (self._run_onset * _SLICE_MS - self.prefix_ms) * SAMPLE_RATE // 1000
            keep = max(keep, self._fed - run_from)
        while self._history and self._history_len - self._history[0].size >= keep:
            self._history_len -= self._history.popleft().size
