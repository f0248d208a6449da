"""The echo canceller with a real echo: a PulseAudio loopback feeds what the virtual
speaker plays back into the virtual mic at -6 dB (loud laptop speakers beside the mic)
while ``voicecli ask --mic --play --local`` answers a spoken question (the local
server's reply is the question played back).

Checked with ``echo_mode = "aec"``: the reply's own echo never interrupts it, and a
"stop" spoken exactly as loud as that echo does. The same quiet "stop" does not get
through the level guard (it needs the voice 10 dB above the echo), so the canceller
is what makes the difference.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require
from tests.e2e.test_echo_guard import converse, echo_path
from tests.e2e.test_real_audio import speak, start_ask
from voicecli.audio.aec import aec_available
from voicecli.audio.wav import read_wav_24k_mono

pytestmark = [pytest.mark.audio, pytest.mark.slow]

COUPLING = 0.5  # linear: -6 dB


def as_loud_as_the_echo(source: Path, target: Path) -> Path:
    """``source`` scaled by the coupling: the user's voice as loud as the echo of a
    reply spoken at the question's level."""
    pcm = read_wav_24k_mono(source).astype(np.float64) * COUPLING
    with wave.open(str(target), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24_000)
        w.writeframes(np.clip(np.rint(pcm), -32768, 32767).astype("<i2").tobytes())
    return target


def ask_over_loud_echo(
    tmp_path: Path, echo_mode: str, interrupt_after_s: float | None
) -> tuple[list[str], str, str]:
    """One spoken question over the -6 dB echo path; optionally a "stop" as loud as
    the echo ``interrupt_after_s`` after the reply starts. Returns the sent event
    types, stdout and stderr."""
    question = speak(
        "Please tell me everything you know about the history of the city of Paris, "
        "from the Romans to the present day.",
        tmp_path / "q1.wav",
    )
    stop = as_loud_as_the_echo(
        speak("Stop, stop, that is enough.", tmp_path / "q2.wav"), tmp_path / "q2q.wav"
    )
    with (
        echo_path(COUPLING),
        start_ask(tmp_path, f'echo_mode = "{echo_mode}"') as (proc, transcript, _out),
    ):
        return converse(proc, transcript, question, stop, interrupt_after_s)


@pytest.fixture(autouse=True)
def _aec() -> None:
    require("the aec extra (livekit)", aec_available(), "pip install -e '.[aec]'")


def test_aec_keeps_the_reply_from_interrupting_itself(audio_env: None, tmp_path: Path) -> None:
    sent, stdout, stderr = ask_over_loud_echo(tmp_path, "aec", interrupt_after_s=None)
    assert "echo canceller" not in stderr  # it ran: no fallback notice
    assert sent.count("input_audio_buffer.commit") == 1
    assert "conversation.item.truncate" not in sent
    assert "[interrupted]" not in stdout


def test_a_voice_as_loud_as_the_echo_interrupts_through_aec(
    audio_env: None, tmp_path: Path
) -> None:
    # 2 s in: the canceller has converged (about 1 s: see the README)
    sent, stdout, _ = ask_over_loud_echo(tmp_path, "aec", interrupt_after_s=2.0)
    assert sent.count("input_audio_buffer.commit") == 1
    assert "conversation.item.truncate" in sent
    assert "[interrupted]" in stdout


def test_the_guard_does_not_hear_that_voice(audio_env: None, tmp_path: Path) -> None:
    sent, stdout, _ = ask_over_loud_echo(tmp_path, "guard", interrupt_after_s=2.0)
    assert "conversation.item.truncate" not in sent
    assert "[interrupted]" not in stdout
