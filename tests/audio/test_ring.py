"""RingBuffer: FIFO order across the wrap, never overwriting, no allocation when read,
and a producer and a consumer thread hammering it at once."""

from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest

from voicecli.audio.ring import RingBuffer


def seq(start: int, n: int) -> np.ndarray:
    return (np.arange(start, start + n) % 30000).astype(np.int16)


def test_fifo_across_the_wrap() -> None:
    ring = RingBuffer(10)
    out = np.zeros(10, dtype=np.int16)
    assert ring.write(seq(0, 7)) == 7
    assert ring.read_into(out[:5]) == 5
    assert out[:5].tolist() == [0, 1, 2, 3, 4]
    assert ring.write(seq(7, 8)) == 8  # wraps: 2 left + 8 new = 10
    assert len(ring) == 10 and ring.free == 0
    assert ring.read_into(out) == 10
    assert out.tolist() == list(range(5, 15))
    assert ring.total_written == 15 and ring.total_read == 15


def test_full_ring_stores_what_fits_and_never_overwrites() -> None:
    ring = RingBuffer(8)
    assert ring.write(seq(0, 5)) == 5
    assert ring.write(seq(5, 5)) == 3  # the caller keeps the last 2
    assert ring.write(seq(100, 3)) == 0
    out = np.full(12, -1, dtype=np.int16)
    assert ring.read_into(out) == 8
    assert out[:8].tolist() == list(range(8))
    assert out[8:].tolist() == [-1] * 4  # untouched beyond the count


def test_read_limit_discard_and_clear() -> None:
    ring = RingBuffer(16)
    ring.write(seq(0, 12))
    out = np.zeros(8, dtype=np.int16)
    assert ring.read_into(out, limit=3) == 3 and out[:3].tolist() == [0, 1, 2]
    assert ring.discard(2) == 2
    assert ring.discard_until(8) == 3  # positions 5, 6, 7
    assert ring.read_into(out, limit=1) == 1 and out[0] == 8
    assert ring.discard_until(4) == 0  # already past it
    assert ring.clear() == 3
    assert len(ring) == 0 and ring.total_read == ring.total_written == 12
    assert ring.read_into(out) == 0


def test_rejects_a_non_positive_capacity() -> None:
    with pytest.raises(ValueError):
        RingBuffer(0)


def test_read_into_allocates_nothing() -> None:
    ring = RingBuffer(48_000)
    out = np.zeros(4800, dtype=np.int16)  # an allocation would show as >= 9600 bytes
    ring.write(seq(0, 40_000))
    ring.read_into(out)  # warm up
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(7):
            ring.read_into(out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < 2048, peak - base


def test_concurrent_producer_and_consumer_keep_every_sample_in_order() -> None:
    total = 300_000
    ring = RingBuffer(1000)
    received = np.zeros(total, dtype=np.int16)
    rng = np.random.default_rng(3)
    chunks = rng.integers(1, 700, size=2000)
    errors: list[BaseException] = []

    def produce() -> None:
        pos = 0
        i = 0
        while pos < total:
            n = min(int(chunks[i % len(chunks)]), total - pos)
            i += 1
            data = seq(pos, n)
            done = 0
            while done < n:
                done += ring.write(data[done:])
            pos += n

    def consume() -> None:
        try:
            out = np.zeros(240, dtype=np.int16)
            got = 0
            while got < total:
                n = ring.read_into(out)
                received[got : got + n] = out[:n]
                got += n
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert not any(t.is_alive() for t in threads)
    assert np.array_equal(received, seq(0, total))
    assert ring.total_read == ring.total_written == total
