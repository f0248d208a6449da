"""What a sink played, per response part: the ledger behind ``AudioSink.played_ms``."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from voicecli.audio.dsp import SILENCE_DBFS, rms_dbfs
from voicecli.pcm import SAMPLE_RATE

Int16Array = np.ndarray[Any, np.dtype[np.int16]]
Key = tuple[str, int]
LEVEL_BLOCK = SAMPLE_RATE // 50  # samples in 20 ms: the resolution of level_dbfs


class PlayedLedger:
    """Maps absolute sample positions to response parts and counts what was played.

    Positions only grow. Samples in ``[start, end)`` written for a part form a segment;
    ranges that were flushed unplayed are *discards*. Given the play position ``pos``
    (everything before it either played or discarded), a part's played count is its
    segments' overlap with ``[0, pos)`` minus discards. Settled segments are folded into
    per-part totals, so the bookkeeping stays as small as what is in flight.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._segments: deque[list[Any]] = deque()  # [start, end, key]
        self._discards: deque[tuple[int, int]] = deque()
        self._levels: deque[tuple[int, int, float]] = deque()  # [start, end) -> dBFS
        self._settled: dict[Key, int] = {}

    def add(self, start: int, samples: Int16Array, key: Key) -> None:
        n = len(samples)
        if n == 0:
            return
        last = self._segments[-1] if self._segments else None
        if last is not None and last[2] == key and last[1] == start:
            last[1] = start + n
        else:
            self._segments.append([start, start + n, key])
        step = self.rate // 50
        for i in range(0, n, step):
            piece = samples[i : i + step]
            self._levels.append((start + i, start + i + len(piece), rms_dbfs(piece)))

    def discard(self, start: int, end: int) -> None:
        if end > start:
            self._discards.append((start, end))

    def _discarded(self, start: int, end: int) -> int:
        return sum(max(0, min(end, b) - max(start, a)) for a, b in self._discards)

    def settle(self, pos: int) -> None:
        """Fold everything before ``pos`` into the per-part totals (bounded memory)."""
        while self._segments and self._segments[0][1] <= pos:
            start, end, key = self._segments.popleft()
            heard = (end - start) - self._discarded(start, end)
            self._settled[key] = self._settled.get(key, 0) + heard
        floor = self._segments[0][0] if self._segments else pos
        while self._discards and self._discards[0][1] <= floor:
            self._discards.popleft()
        while self._levels and self._levels[0][1] <= pos:
            self._levels.popleft()

    def played(self, key: Key, pos: int) -> int:
        """Samples of ``key`` played before ``pos``."""
        self.settle(pos)
        total = self._settled.get(key, 0)
        for start, end, seg_key in self._segments:
            if start >= pos:
                break
            if seg_key == key:
                stop = min(end, pos)
                total += (stop - start) - self._discarded(start, stop)
        return total

    def level(self, pos: int) -> float | None:
        """The level of the 20 ms around ``pos`` (None: nothing written there)."""
        self.settle(pos)
        for start, end, dbfs in self._levels:
            if start <= pos < end:
                if any(a <= pos < b for a, b in self._discards):
                    return None
                return dbfs if dbfs > SILENCE_DBFS else None
            if start > pos:
                break
        return None


__all__ = ["LEVEL_BLOCK", "PlayedLedger"]
