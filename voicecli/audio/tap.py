"""The far-end tap: what the speaker actually played, and when, for the echo canceller.

The speaker's PortAudio callback hands every block it gives the device (silence
included, after fades) to :meth:`FarEndTap.write` with the block's DAC time. The tap
copies it into a preallocated ring and notes one *anchor* (ring position, DAC time) per
block; nothing is allocated there. The mic side (on the event loop) asks
:meth:`FarEndTap.position_at` which ring position reached the DAC at a mic block's ADC
time, and reads the samples with :meth:`FarEndTap.read_into`: so the canceller gets the
far end aligned with the mic by the devices' own clocks (PortAudio reports both on the
same time base), rather than by a guessed constant delay.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

Int16Array = np.ndarray[Any, np.dtype[np.int16]]

_ANCHORS = 64  # blocks of DAC-time history (~0.6 s at 10 ms blocks)


class FarEndTap:
    """A ring of the last ``seconds`` of played samples at ``rate``, with DAC times."""

    def __init__(self, rate: int, seconds: float = 2.0) -> None:
        if rate <= 0 or seconds <= 0:
            raise ValueError("rate and seconds must be positive")
        self.rate = rate
        self.capacity = round(rate * seconds)
        self._buf: Int16Array = np.zeros(self.capacity, dtype=np.int16)
        self._written = 0  # absolute position after the last sample written
        self._anchor_pos = np.zeros(_ANCHORS, dtype=np.int64)
        self._anchor_dac = np.zeros(_ANCHORS, dtype=np.float64)
        self._anchors = 0  # anchors ever written
        self.glitches = 0
        """Underruns the speaker reported: what played no longer matches the ring's
        timeline exactly (the canceller must find the echo again)."""
        self._lock = threading.Lock()

    @property
    def written(self) -> int:
        """Absolute position after the newest sample."""
        return self._written

    # -- the speaker's callback ---------------------------------------------------------

    def write(self, samples: Int16Array, dac_time: float) -> None:
        """PortAudio thread: ``samples`` were handed to the device; the first reaches the
        DAC at ``dac_time`` (stream time). Copies; allocates no buffer."""
        n = len(samples)
        if n == 0:
            return
        with self._lock:
            start = self._written
            i = start % self.capacity
            first = min(n, self.capacity - i)
            self._buf[i : i + first] = samples[:first]
            if n > first:
                self._buf[: n - first] = samples[first:n]
            a = self._anchors % _ANCHORS
            self._anchor_pos[a] = start
            self._anchor_dac[a] = dac_time
            self._anchors += 1
            self._written = start + n

    # -- the mic side -------------------------------------------------------------------

    def position_at(self, time: float) -> float | None:
        """The (fractional) ring position that reached the DAC at ``time``, from the
        anchor nearest to it; None when nothing was played yet."""
        with self._lock:
            count = min(self._anchors, _ANCHORS)
            if count == 0:
                return None
            newest = (self._anchors - 1) % _ANCHORS
            best = newest
            best_gap = abs(float(self._anchor_dac[newest]) - time)
            for k in range(1, count):
                j = (newest - k) % _ANCHORS
                gap = abs(float(self._anchor_dac[j]) - time)
                if gap < best_gap:
                    best, best_gap = j, gap
            return (
                float(self._anchor_pos[best]) + (time - float(self._anchor_dac[best])) * self.rate
            )

    def read_into(self, position: int, out: Int16Array) -> int:
        """Copy the samples at ``[position, position + len(out))`` into ``out``; samples
        never written, or already overwritten, read as silence. Returns how many were
        real samples."""
        n = len(out)
        with self._lock:
            oldest = max(0, self._written - self.capacity)
            lo = max(position, oldest)
            hi = min(position + n, self._written)
            out[:] = 0
            if hi <= lo:
                return 0
            i = lo % self.capacity
            count = hi - lo
            first = min(count, self.capacity - i)
            dst = lo - position
            out[dst : dst + first] = self._buf[i : i + first]
            if count > first:
                out[dst + first : dst + count] = self._buf[: count - first]
            return count


__all__ = ["FarEndTap"]
