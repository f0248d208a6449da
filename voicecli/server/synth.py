"""Identifiers, obfuscation padding, token estimates and the synthesized reply voice."""

from __future__ import annotations

import math
import random
import string

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 24_000
SAMPLES_PER_MS = SAMPLE_RATE // 1000
_ALPHABET = string.ascii_letters + string.digits
_rng = random.SystemRandom()

Pcm = npt.NDArray[np.int16]


def new_id(prefix: str, length: int = 21) -> str:
    """An id in the live service's style, e.g. ``item_C3bVJ2xRkQ7m...``."""
    return prefix + "_" + "".join(_rng.choices(_ALPHABET, k=length))


def obfuscation(delta: str) -> str:
    """Padding the live service adds to deltas so their sizes do not leak content."""
    return "".join(_rng.choices(_ALPHABET, k=max(2, 16 - len(delta) % 16)))


def audio_ms(samples: int) -> float:
    return samples / SAMPLES_PER_MS


def input_audio_tokens(ms: float) -> int:
    """User audio costs about one token per 100 ms."""
    return math.ceil(ms / 100)


def output_audio_tokens(ms: float) -> int:
    """Assistant audio costs about one token per 50 ms."""
    return math.ceil(ms / 50)


def text_tokens(text: str) -> int:
    """About four characters per token."""
    return math.ceil(len(text) / 4)


# A pentatonic scale: whatever the text, the melody stays gentle.
_SCALE_HZ = (261.63, 293.66, 329.63, 392.00, 440.00, 523.25)


def tone_voice(text: str, amplitude: float = 0.12) -> Pcm:
    """A soft tone pattern standing in for speech: one 160 ms note per word, 60 ms apart,
    each with raised-cosine edges (no clicks). Deterministic for a given text."""
    words = text.split() or [""]
    note = int(0.160 * SAMPLE_RATE)
    gap = int(0.060 * SAMPLE_RATE)
    t = np.arange(note) / SAMPLE_RATE
    edge = int(0.020 * SAMPLE_RATE)
    envelope = np.ones(note)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, edge))
    envelope[:edge] = ramp
    envelope[-edge:] = ramp[::-1]
    out = np.zeros((note + gap) * len(words), dtype=np.float64)
    for i, word in enumerate(words):
        hz = _SCALE_HZ[sum(map(ord, word)) % len(_SCALE_HZ)]
        start = i * (note + gap)
        out[start : start + note] = np.sin(2 * math.pi * hz * t) * envelope
    return np.asarray(np.round(out * amplitude * 32767), dtype=np.int16)
