"""The echo guard with a real echo: a PulseAudio loopback feeds what the virtual speaker
plays back into the virtual mic, attenuated like a laptop's speaker-to-mic path, while
``voicecli ask --mic --play --local`` answers a spoken question (the local server's reply
is the question played back, as loud as the user).

Without headphones the mic hears the reply. Checked: with the guard (the default
``echo_mode``) the reply's own echo never interrupts it, and a user speaking over it
still does; with the guard off the same echo does interrupt it, so the echo in these
tests is one the guard really has to handle.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_real_audio import events, speak, start_ask, wait_event

pytestmark = [pytest.mark.audio, pytest.mark.slow]

ECHO_GAIN = 0.1  # PulseAudio linear volume factor: -20 dB, a plausible laptop coupling


@contextlib.contextmanager
def echo_path(gain: float = ECHO_GAIN) -> Iterator[None]:
    """speaker.monitor -> mic_feed through module-loopback at ``gain``."""
    module = subprocess.run(
        [
            "pactl",
            "load-module",
            "module-loopback",
            "source=speaker.monitor",
            "sink=mic_feed",
            "latency_msec=30",
            "source_dont_move=true",
            "sink_dont_move=true",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.strip()
    try:
        listing = subprocess.run(
            ["pactl", "list", "sink-inputs"], check=True, capture_output=True, text=True
        ).stdout
        inputs = re.findall(r"Sink Input #(\d+)\s+Driver: [^\n]*\n\s+Owner Module: (\d+)", listing)
        index = next(i for i, owner in inputs if owner == module)
        subprocess.run(["pactl", "set-sink-input-volume", index, str(gain)], check=True, timeout=10)
        yield
    finally:
        subprocess.run(["pactl", "unload-module", module], check=False, timeout=10)


def converse(
    proc: subprocess.Popen[str],
    transcript: Path,
    question: Path,
    interruption: Path,
    interrupt_after_s: float | None,
) -> tuple[list[str], str, str]:
    """Speak ``question`` into the virtual mic of a running ``ask``; ``interruption``
    too, ``interrupt_after_s`` into the reply (None: not at all). Returns the event types
    ask sent, its stdout and its stderr, once it exited 0."""
    wait_event(transcript, "session.created")
    time.sleep(1.0)  # an idle null sink delivers nothing to a new stream for a moment
    subprocess.run(["paplay", "--device=mic_feed", str(question)], check=True, timeout=20)
    if interrupt_after_s is not None:
        wait_event(transcript, "response.output_audio.delta")
        time.sleep(interrupt_after_s)
        subprocess.run(["paplay", "--device=mic_feed", str(interruption)], check=True, timeout=20)
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        last = [f"{e['direction']} {e.get('type')}" for e in events(transcript)][-20:]
        raise AssertionError(
            f"ask did not finish within 60 s; its last events: {last}; stderr: {stderr}"
        ) from None
    assert proc.returncode == 0, stderr
    return [e["type"] for e in events(transcript) if e["direction"] == "sent"], stdout, stderr


def ask_over_echo(
    tmp_path: Path, audio_config: str, interrupt_after_s: float | None
) -> tuple[list[str], str]:
    """One spoken question while the echo path is live; optionally the user speaks
    again ``interrupt_after_s`` after the reply starts. Returns the sent event types and
    stdout."""
    question = speak(
        "Please tell me everything you know about the history of the city of Paris, "
        "from the Romans to the present day.",
        tmp_path / "q1.wav",
    )
    again = speak("Stop, stop, that is enough.", tmp_path / "q2.wav")
    with echo_path(), start_ask(tmp_path, audio_config) as (proc, transcript, _out):
        sent, stdout, _ = converse(proc, transcript, question, again, interrupt_after_s)
    return sent, stdout


def test_the_guard_keeps_the_reply_from_interrupting_itself(
    audio_env: None, tmp_path: Path
) -> None:
    sent, stdout = ask_over_echo(tmp_path, 'echo_mode = "guard"', interrupt_after_s=None)
    assert sent.count("input_audio_buffer.commit") == 1
    assert "conversation.item.truncate" not in sent
    assert "[interrupted]" not in stdout


def test_the_user_still_interrupts_through_the_guard(audio_env: None, tmp_path: Path) -> None:
    # 3 s in: the guard has learned the echo path by then
    sent, stdout = ask_over_echo(tmp_path, 'echo_mode = "guard"', interrupt_after_s=3.0)
    assert sent.count("input_audio_buffer.commit") == 1
    assert "conversation.item.truncate" in sent
    assert "[interrupted]" in stdout


def test_without_the_guard_the_same_echo_interrupts_the_reply(
    audio_env: None, tmp_path: Path
) -> None:
    sent, stdout = ask_over_echo(tmp_path, 'echo_mode = "off"', interrupt_after_s=None)
    assert "conversation.item.truncate" in sent
    assert "[interrupted]" in stdout
