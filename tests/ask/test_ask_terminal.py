"""``voicecli ask`` on a terminal (issue #14 item 9): ``--mic`` says it is listening and
gives up after ``--timeout`` without speech (exit 3); a long question WAV shows a
progress bar. In-process against the local server, the microphone replaced by a source
of silence (or of speech), stderr by a stream that says it is a terminal."""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import voicecli.audio.devices
import voicecli.audio.sources
from tests.engine.conftest import make_config, utterance
from voicecli import ask
from voicecli.audio.sources import BLOCK_SAMPLES, NullSource
from voicecli.compose import run_ask


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def ask_args(**flags: Any) -> argparse.Namespace:
    base: dict[str, Any] = {
        "input": None,
        "out": None,
        "transcript": None,
        "text_only": False,
        "mic": False,
        "play": False,
        "local": True,
        "timeout": 60.0,
    }
    base.update(flags)
    return argparse.Namespace(**base)


class SilentMic(NullSource):
    """A microphone in a silent room."""

    def __init__(self, device: Any = None, **kwargs: Any) -> None:
        super().__init__(None, realtime=True)


class SpeakingMic(SilentMic):
    """Someone speaks at once, then silence."""

    async def blocks(self) -> AsyncIterator[np.ndarray[Any, np.dtype[np.int16]]]:
        pcm = utterance(speech_s=0.8, lead_s=0.1, tail_s=1.0)
        for pos in range(0, len(pcm) - BLOCK_SAMPLES + 1, BLOCK_SAMPLES):
            yield pcm[pos : pos + BLOCK_SAMPLES]
        async for block in super().blocks():
            yield block


@pytest.fixture
def mic(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setattr(voicecli.audio.devices, "find_device", lambda spec, kind: None)
    return monkeypatch


def test_mic_says_listening_and_gives_up_without_speech(
    tmp_path: Path, mic: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mic.setattr(voicecli.audio.sources, "DeviceSource", SilentMic)
    terminal = Terminal()
    mic.setattr(sys, "stderr", terminal)
    config = make_config("ws://127.0.0.1:9/v1/realtime", tmp_path)
    start = time.monotonic()
    code = run_ask(config, ask_args(mic=True, timeout=0.5))
    assert code == 3
    assert time.monotonic() - start < 30
    lines = terminal.getvalue().splitlines()
    assert lines == [ask.LISTENING, "voicecli ask: no speech heard in 0.5 s (--timeout)"]
    assert capsys.readouterr().out == ""


def test_speech_stops_the_timer(
    tmp_path: Path, mic: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mic.setattr(voicecli.audio.sources, "DeviceSource", SpeakingMic)
    config = make_config("ws://127.0.0.1:9/v1/realtime", tmp_path)
    # longer than the timeout, from the first block to the answer
    code = run_ask(config, ask_args(mic=True, timeout=0.6))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "assistant:" in captured.out
    assert captured.err == ""  # not a terminal: no "listening…"


def test_a_long_question_shows_its_progress_on_a_terminal_only(
    tmp_path: Path,
    speech_wav: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(ask, "LONG_QUESTION_S", 1.0)
    monkeypatch.setattr(ask.ProgressBar, "interval_s", 0.0)
    config = make_config("ws://127.0.0.1:9/v1/realtime", tmp_path)
    assert run_ask(config, ask_args(input=str(speech_wav))) == 0
    assert capsys.readouterr().err == ""  # not a terminal

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert run_ask(config, ask_args(input=str(speech_wav))) == 0
    err = terminal.getvalue()
    frames = err.split("\r")[1:]
    assert len(frames) > 3, err
    assert all(f.startswith("sending speech.wav [") for f in frames)
    assert "  0%" not in frames[-1] and frames[-1].rstrip("\n").split()[-3:-1] == ["100%", "3/3"]
    assert err.endswith("\n") and err.count("\n") == 1
    assert "assistant:" in capsys.readouterr().out
