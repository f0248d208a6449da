"""The one audio format voicecli speaks with the Realtime API: PCM16 mono at 24 kHz."""

from __future__ import annotations

SAMPLE_RATE = 24_000
"""Samples per second, both ways."""
BYTES_PER_SAMPLE = 2
BYTES_PER_MS = SAMPLE_RATE * BYTES_PER_SAMPLE // 1000
"""48: bytes of audio per millisecond."""

__all__ = ["BYTES_PER_MS", "BYTES_PER_SAMPLE", "SAMPLE_RATE"]
