"""Shared fixtures for the pure audio tests: signal makers and the committed speech
fixtures (see tests/fixtures/README.md) with their measured boundaries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.audio.fake_sd import FakeSoundDevice
from voicecli.audio import sources
from voicecli.audio.wav import read_wav_24k_mono

FIXTURES = Path(__file__).parent.parent / "fixtures"
RATE = 24_000


def tone(freq: float, seconds: float, rate: int = RATE, dbfs: float = -6.0) -> np.ndarray:
    """A sine as int16 at ``dbfs`` peak."""
    t = np.arange(round(seconds * rate)) / rate
    amp = 32767 * 10 ** (dbfs / 20)
    return np.rint(amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def noise(seconds: float, dbfs: float = -70.0, seed: int = 1, rate: int = RATE) -> np.ndarray:
    """Seeded white noise with RMS ``dbfs``: a quiet room, not digital silence."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(round(seconds * rate)) * 32768 * 10 ** (dbfs / 20)
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def blocks(samples: np.ndarray, size: int) -> list[np.ndarray]:
    return [samples[i : i + size] for i in range(0, len(samples), size)]


@dataclass(frozen=True)
class Speech:
    """A speech fixture at 24 kHz and its spoken spans in ms."""

    name: str
    pcm: np.ndarray
    spans_ms: list[tuple[float, float]]


def _load(name: str) -> Speech:
    meta = json.loads((FIXTURES / "speech.json").read_text())[name]
    spans = [(a * 1000 / RATE, b * 1000 / RATE) for a, b in meta["speech_samples"]]
    return Speech(name, read_wav_24k_mono(FIXTURES / name), spans)


@pytest.fixture(scope="session")
def speech_one() -> Speech:
    """One utterance: 0.6 s lead, ~2.1 s of speech, 1 s tail."""
    return _load("speech_one.wav")


@pytest.fixture(scope="session")
def speech_two() -> Speech:
    """Two utterances 1 s apart."""
    return _load("speech_two.wav")


@pytest.fixture
def fake_sd(monkeypatch: pytest.MonkeyPatch) -> FakeSoundDevice:
    fake = FakeSoundDevice()
    monkeypatch.setattr(sources, "sounddevice_module", lambda: fake)
    monkeypatch.setattr(sources, "find_device", lambda spec, kind: 7)
    monkeypatch.setattr(sources, "choose_rate", lambda device, kind: 24_000)
    return fake
