"""A bounded, thread-safe int16 ring buffer between the event loop and an audio callback.

One producer (the event loop) writes, one consumer (the PortAudio callback) reads. The
storage is preallocated; :meth:`RingBuffer.read_into` copies into the caller's array and
allocates nothing, so it is safe in a real-time callback. A full buffer never overwrites:
:meth:`RingBuffer.write` stores what fits and returns that count, and the producer keeps
the rest for later (dropping queued speech would be audible; the producer knows better).

Positions are also counted absolutely (``total_written``/``total_read`` since creation),
which lets the sink map the samples the callback played back to the response parts they
came from. The lock is held only for index updates and one or two ``memcpy``-sized copies.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

Int16Array = np.ndarray[Any, np.dtype[np.int16]]


class RingBuffer:
    """A fixed-capacity FIFO of int16 samples (mono)."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._buf: Int16Array = np.zeros(capacity, dtype=np.int16)
        self._lock = threading.Lock()
        self._written = 0  # absolute count of samples ever written
        self._read = 0  # absolute count of samples ever read or discarded

    def __len__(self) -> int:
        """Samples waiting to be read."""
        return self._written - self._read

    @property
    def free(self) -> int:
        """Samples that :meth:`write` can store now."""
        return self.capacity - (self._written - self._read)

    @property
    def total_written(self) -> int:
        """Absolute position of the next sample to be written."""
        return self._written

    @property
    def total_read(self) -> int:
        """Absolute position of the next sample to be read."""
        return self._read

    def write(self, samples: Int16Array) -> int:
        """Append as many of ``samples`` as fit; returns how many were stored.

        Never overwrites unread samples: the caller keeps ``samples[returned:]``.
        """
        src = np.asarray(samples, dtype=np.int16).reshape(-1)
        with self._lock:
            n = min(len(src), self.capacity - (self._written - self._read))
            if n <= 0:
                return 0
            start = self._written % self.capacity
            first = min(n, self.capacity - start)
            self._buf[start : start + first] = src[:first]
            if n > first:
                self._buf[: n - first] = src[first:n]
            self._written += n
            return n

    def read_into(self, out: Int16Array, limit: int | None = None) -> int:
        """Copy up to ``len(out)`` (and at most ``limit``) samples into ``out``; returns
        the count. ``out`` beyond the count is left untouched. Allocates nothing."""
        with self._lock:
            n = min(len(out), self._written - self._read)
            if limit is not None:
                n = min(n, limit)
            if n <= 0:
                return 0
            start = self._read % self.capacity
            first = min(n, self.capacity - start)
            out[:first] = self._buf[start : start + first]
            if n > first:
                out[first:n] = self._buf[: n - first]
            self._read += n
            return n

    def discard(self, n: int) -> int:
        """Drop up to ``n`` unread samples from the front; returns how many."""
        with self._lock:
            n = max(0, min(n, self._written - self._read))
            self._read += n
            return n

    def discard_until(self, position: int) -> int:
        """Drop unread samples before the absolute ``position``; returns how many."""
        with self._lock:
            n = max(0, min(position, self._written) - self._read)
            self._read += n
            return n

    def clear(self) -> int:
        """Drop every unread sample; returns how many."""
        with self._lock:
            n = self._written - self._read
            self._read = self._written
            return n
