"""Local endpointing: where a turn of speech starts and ends in the 24 kHz mic stream.

webrtcvad only takes 8/16/32/48 kHz audio in 10/20/30 ms frames, so the endpointer
keeps a 16 kHz side path (a streaming soxr resampler) for the detector, while the
pre-roll it hands back is the original 24 kHz audio that goes to the API.

Rules (the same as ``[vad]`` in the config):

* **start**: ``start_frames`` consecutive voiced frames. The onset time is the start
  of the first of them. Consecutive (not N-of-M) keeps short clicks and blips from
  opening a turn: at the defaults a turn needs 90 ms of unbroken speech.
* **warm-up**: voiced decisions in the first ``warmup_ms`` after the start (or
  ``reset()``) are ignored. webrtcvad's noise model starts untrained and calls the
  first 60-220 ms of plain background noise speech (measured on white noise from -60
  to -30 dBFS, all modes and frame sizes), which would open a turn at every start.
* **end**: ``silence_ms`` of consecutive unvoiced frames after the last voiced one.
  The end time is the end of that last voiced frame.

Times are stream times in ms from the first sample fed (or from ``reset()``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import webrtcvad

from voicecli.audio.dsp import SAMPLE_RATE, Int16Array, StreamResampler, as_int16

__all__ = ["Endpointer", "SpeechEnd", "SpeechStart", "VadEvent"]

_VAD_RATE = 16_000


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
        warmup_ms: int = 300,
    ) -> None:
        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"aggressiveness must be 0-3, got {aggressiveness}")
        if frame_ms not in (10, 20, 30):
            raise ValueError(f"frame_ms must be 10, 20 or 30, got {frame_ms}")
        if start_frames < 1:
            raise ValueError(f"start_frames must be at least 1, got {start_frames}")
        if silence_ms <= 0 or prefix_ms < 0:
            raise ValueError(
                f"need silence_ms > 0 and prefix_ms >= 0, got {silence_ms}, {prefix_ms}"
            )
        self.aggressiveness = aggressiveness
        self.silence_ms = silence_ms
        self.prefix_ms = prefix_ms
        self.start_frames = start_frames
        self.frame_ms = frame_ms
        self.warmup_ms = warmup_ms
        self._warmup_frames = math.ceil(max(0, warmup_ms) / frame_ms)
        self._frame_16k = _VAD_RATE * frame_ms // 1000
        self._silence_frames = math.ceil(silence_ms / frame_ms)
        # 24 kHz history kept for the pre-roll: the prefix before an onset that is
        # detected start_frames later, plus the resampler's lag behind the input
        self._keep = SAMPLE_RATE * (prefix_ms + (start_frames + 2) * frame_ms + 100) // 1000
        self.reset()

    def reset(self) -> None:
        """Forget everything, including the stream clock (the next sample is t=0)."""
        self._vad = webrtcvad.Vad(self.aggressiveness)
        self._resampler = StreamResampler(SAMPLE_RATE, _VAD_RATE)
        self._pending16 = np.zeros(0, dtype=np.int16)  # 16 kHz samples not yet in a frame
        self._frames = 0  # VAD frames judged so far
        self._history: deque[Int16Array] = deque()  # recent 24 kHz blocks
        self._history_len = 0
        self._fed = 0  # 24 kHz samples fed
        self._in_speech = False
        self._run = 0  # consecutive voiced frames while waiting for a start
        self._unvoiced = 0  # consecutive unvoiced frames while in speech
        self._onset_frame = 0
        self._last_voiced_frame = 0

    @property
    def in_speech(self) -> bool:
        """A start has been reported and its end not yet."""
        return self._in_speech

    @property
    def stream_ms(self) -> float:
        """Stream time fed so far, in ms."""
        return self._fed * 1000 / SAMPLE_RATE

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
            voiced = self._vad.is_speech(frame.tobytes(), _VAD_RATE)
            event = self._step(voiced)
            if event is not None:
                events.append(event)
        self._pending16 = buf[n * self._frame_16k :].copy()
        self._trim()
        return events

    def _step(self, voiced: bool) -> SpeechStart | SpeechEnd | None:
        index = self._frames
        self._frames += 1
        if index < self._warmup_frames:
            voiced = False  # the detector is still learning the noise floor
        if not self._in_speech:
            self._run = self._run + 1 if voiced else 0
            if self._run >= self.start_frames:
                self._in_speech = True
                self._onset_frame = index - self.start_frames + 1
                self._last_voiced_frame = index
                self._unvoiced = 0
                t_ms = self._onset_frame * self.frame_ms
                return SpeechStart(t_ms, self._preroll(t_ms))
            return None
        if voiced:
            self._last_voiced_frame = index
            self._unvoiced = 0
            return None
        self._unvoiced += 1
        if self._unvoiced >= self._silence_frames:
            self._in_speech = False
            self._run = 0
            end_ms = (self._last_voiced_frame + 1) * self.frame_ms
            return SpeechEnd(end_ms, end_ms - self._onset_frame * self.frame_ms)
        return None

    def _preroll(self, onset_ms: int) -> Int16Array:
        # from prefix_ms before the onset to the end of everything fed (the current
        # block included)
        start = max(0, (onset_ms - self.prefix_ms) * SAMPLE_RATE // 1000)
        held_from = self._fed - self._history_len
        audio: Int16Array = np.concatenate(list(self._history))
        preroll: Int16Array = audio[max(0, start - held_from) :].copy()
        return preroll

    def _trim(self) -> None:
        while self._history and self._history_len - self._history[0].size >= self._keep:
            self._history_len -= self._history.popleft().size
