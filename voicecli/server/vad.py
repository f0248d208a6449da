"""An energy voice-activity detector for the local server (sans-I/O).

The live service runs a neural VAD; this one thresholds the RMS level of 20 ms frames,
which is enough for tests and the offline demo (tones count as speech, by design).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from voicecli.server.synth import SAMPLES_PER_MS, Pcm

FRAME_MS = 20
FRAME = FRAME_MS * SAMPLES_PER_MS
#: Consecutive loud frames needed to call it speech (a click is not a turn).
START_FRAMES = 2
#: Silence needed to end a turn under semantic_vad, by eagerness.
SEMANTIC_SILENCE_MS = {"low": 1500, "medium": 800, "auto": 800, "high": 300}


def threshold_dbfs(threshold: float) -> float:
    """Map the API's 0..1 threshold onto a level: 0 -> -70 dBFS, 0.5 -> -40, 1 -> -10."""
    return -70.0 + 60.0 * threshold


def level_dbfs(frame: Pcm) -> float:
    if not len(frame):
        return -120.0
    rms = math.sqrt(float(np.mean(np.square(frame.astype(np.float64)))))
    return 20 * math.log10(max(rms, 1e-9) / 32768.0)


@dataclass(frozen=True)
class SpeechStarted:
    audio_start_ms: int  # includes the prefix padding


@dataclass(frozen=True)
class SpeechStopped:
    audio_end_ms: int  # includes the trailing silence that ended the turn


class EnergyVad:
    """Feed 24 kHz int16 samples in any block size; get start/stop events with times in
    ms since the first sample fed."""

    def __init__(
        self, threshold: float = 0.5, prefix_padding_ms: int = 300, silence_duration_ms: int = 500
    ) -> None:
        self.configure(threshold, prefix_padding_ms, silence_duration_ms)
        self.position = 0  # samples fed so far
        self.in_speech = False
        self._pending = np.zeros(0, dtype=np.int16)
        self._loud_run = 0
        self._quiet_ms = 0

    def configure(self, threshold: float, prefix_padding_ms: int, silence_duration_ms: int) -> None:
        self.threshold_db = threshold_dbfs(threshold)
        self.prefix_padding_ms = prefix_padding_ms
        self.silence_duration_ms = silence_duration_ms

    @property
    def now_ms(self) -> float:
        return self.position / SAMPLES_PER_MS

    def reset(self) -> None:
        """Forget a turn in progress (buffer cleared)."""
        self.in_speech = False
        self._loud_run = 0
        self._quiet_ms = 0

    def feed(self, samples: Pcm) -> list[SpeechStarted | SpeechStopped]:
        events: list[SpeechStarted | SpeechStopped] = []
        data = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        n_frames = len(data) // FRAME
        for i in range(n_frames):
            frame = data[i * FRAME : (i + 1) * FRAME]
            start_sample = self.position
            self.position += FRAME
            loud = level_dbfs(frame) > self.threshold_db
            if not self.in_speech:
                self._loud_run = self._loud_run + 1 if loud else 0
                if self._loud_run >= START_FRAMES:
                    self.in_speech = True
                    self._quiet_ms = 0
                    first = start_sample - (START_FRAMES - 1) * FRAME
                    start_ms = first // SAMPLES_PER_MS - self.prefix_padding_ms
                    events.append(SpeechStarted(max(0, start_ms)))
            else:
                self._quiet_ms = 0 if loud else self._quiet_ms + FRAME_MS
                if self._quiet_ms >= self.silence_duration_ms:
                    self.in_speech = False
                    self._loud_run = 0
                    events.append(SpeechStopped(self.position // SAMPLES_PER_MS))
        self._pending = data[n_frames * FRAME :].copy()
        return events
