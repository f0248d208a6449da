from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.conftest import utterance
from voicecli.audio.wav import write_wav


@pytest.fixture
def speech_wav(tmp_path: Path) -> Path:
    path = tmp_path / "speech.wav"
    write_wav(path, utterance())
    return path
