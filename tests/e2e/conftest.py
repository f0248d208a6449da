"""Fixtures for the real-audio tests: PulseAudio (virtual devices), PortAudio, espeak-ng."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import require


def _pulse_ok() -> bool:
    if not os.environ.get("PULSE_SERVER") or not shutil.which("pactl"):
        return False
    return subprocess.run(["pactl", "info"], capture_output=True, timeout=5).returncode == 0


def _portaudio_ok() -> bool:
    try:
        import sounddevice  # noqa: F401
    except OSError:
        return False
    return True


@pytest.fixture
def audio_env() -> None:
    require("PulseAudio", _pulse_ok(), "run scripts/test, or start a daemon and set PULSE_SERVER")
    require("PortAudio", _portaudio_ok(), "apt-get install libportaudio2")
    require("espeak-ng", shutil.which("espeak-ng") is not None, "apt-get install espeak-ng")
