"""Real audio through PulseAudio virtual devices: ``voicecli ask --mic --play --local``.

A speech WAV made by espeak-ng is played into the virtual mic (``mic_feed``), voicecli
captures it through PortAudio, local VAD commits once, the local server echoes it, the
reply plays through PortAudio into the null sink ``speaker`` and ``parec`` records it
from ``speaker.monitor``. Needs PULSE_SERVER (scripts/test starts the daemon).

The virtual mic and speaker are separate null sinks: nothing played reaches the mic, as
with headphones, and the config says so (``audio.headphones``). The echo guard, with a
real echo path, is tested in test_echo_guard.py.

Every subprocess is killed if still running and waited for, whatever the outcome: a
leaked ``ask`` or ``parec`` would hold the audio devices (and its pipes would raise
ResourceWarning) in the tests after it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicecli.audio.wav import read_wav_24k_mono

pytestmark = [pytest.mark.audio, pytest.mark.slow]


def speak(text: str, path: Path) -> Path:
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), text], check=True, timeout=10)
    return path


@contextlib.contextmanager
def reaped(proc: subprocess.Popen[Any]) -> Iterator[subprocess.Popen[Any]]:
    """``proc``, killed on the way out if still running, then waited for (pipes closed)."""
    with proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            # Popen.__exit__ closes the pipes and waits


@pytest.fixture
def recorder_proc(tmp_path: Path) -> Iterator[Path]:
    raw = tmp_path / "speaker.raw"
    with raw.open("wb") as out:
        proc = subprocess.Popen(
            [
                "parec",
                "-d",
                "speaker.monitor",
                "--raw",
                "--rate=24000",
                "--channels=1",
                "--format=s16le",
                "--latency-msec=20",
            ],
            stdout=out,
        )
        with reaped(proc):
            try:
                yield raw
            finally:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)


@contextlib.contextmanager
def start_ask(
    tmp_path: Path, audio_config: str = "headphones = true"
) -> Iterator[tuple[subprocess.Popen[str], Path, Path]]:
    transcript, out = tmp_path / "t.jsonl", tmp_path / "reply.wav"
    config = tmp_path / "cfg" / "voicecli" / "config.toml"
    config.parent.mkdir(parents=True)
    # the virtual devices are acoustically isolated: see the module docstring
    config.write_text(f"[audio]\n{audio_config}\n")
    env = dict(os.environ)
    env.update(XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    env.pop("OPENAI_API_KEY", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voicecli",
            "ask",
            "--mic",
            "--play",
            "--local",
            "--out",
            str(out),
            "--transcript",
            str(transcript),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    with reaped(proc):
        yield proc, transcript, out


def events(transcript: Path) -> list[dict[str, Any]]:
    if not transcript.exists():
        return []
    out = []
    for line in transcript.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line being written
    return out


def wait_event(transcript: Path, kind: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in events(transcript):
            if event.get("type") == kind:
                return event
        time.sleep(0.05)
    raise AssertionError(f"no {kind} within {timeout}s")


def best_correlation(recorded: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """Peak normalized cross-correlation of ``reference`` inside ``recorded``, and its lag."""
    rec = recorded.astype(np.float64)
    ref = reference.astype(np.float64)
    n = len(rec) + len(ref)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(ref, size)), size)
    lag = int(np.argmax(corr[: len(rec)]))
    window = rec[lag : lag + len(ref)]
    if len(window) < len(ref):
        return 0.0, lag
    denom = np.linalg.norm(window) * np.linalg.norm(ref)
    return float(corr[lag] / denom) if denom else 0.0, lag


def test_ask_mic_play_round_trip(audio_env: None, tmp_path: Path, recorder_proc: Path) -> None:
    utt = speak("What is the weather like in Paris today?", tmp_path / "q.wav")
    with start_ask(tmp_path) as (proc, transcript, out):
        wait_event(transcript, "session.created")
        time.sleep(1.0)  # an idle null sink delivers nothing to a new stream for a moment
        subprocess.run(["paplay", "--device=mic_feed", str(utt)], check=True, timeout=20)
        stdout, stderr = proc.communicate(timeout=40)
    assert proc.returncode == 0, stderr
    assert "assistant:" in stdout
    sent = [e for e in events(transcript) if e["direction"] == "sent"]
    assert [e["type"] for e in sent].count("input_audio_buffer.commit") == 1
    reply = read_wav_24k_mono(out)
    assert len(reply) > 24_000  # the echo of ~2 s of speech
    time.sleep(0.3)
    recorded = np.frombuffer(recorder_proc.read_bytes(), dtype="<i2")
    corr, _ = best_correlation(recorded, reply)
    assert corr > 0.9, corr


def test_second_utterance_interrupts_the_reply(
    audio_env: None, tmp_path: Path, recorder_proc: Path
) -> None:
    first = speak(
        "Please tell me everything you know about the history of the city of Paris.",
        tmp_path / "q1.wav",
    )
    second = speak("Stop, stop.", tmp_path / "q2.wav")
    with start_ask(tmp_path) as (proc, transcript, out):
        wait_event(transcript, "session.created")
        time.sleep(1.0)
        subprocess.run(["paplay", "--device=mic_feed", str(first)], check=True, timeout=20)
        wait_event(transcript, "response.output_audio.delta")
        time.sleep(0.8)
        started_second = time.monotonic()
        subprocess.run(["paplay", "--device=mic_feed", str(second)], check=True, timeout=20)
        stdout, stderr = proc.communicate(timeout=40)
    assert proc.returncode == 0, stderr
    sent = [e for e in events(transcript) if e["direction"] == "sent"]
    types = [e["type"] for e in sent]
    assert types.count("input_audio_buffer.commit") == 1  # one turn only
    truncate = next(e for e in sent if e["type"] == "conversation.item.truncate")
    reply = read_wav_24k_mono(out)
    reply_ms = len(reply) / 24
    # ~0.8 s after the first delta, plus VAD onset: plausible, and not the whole reply
    assert 500 <= truncate["audio_end_ms"] < reply_ms - 200, (truncate, reply_ms)
    if "response.cancel" in types:
        assert types.index("response.cancel") < types.index("conversation.item.truncate")
    assert "[interrupted]" in stdout
    # playback stopped: the recording holds about audio_end_ms of the reply, not all of it
    time.sleep(0.3)
    recorded = np.frombuffer(recorder_proc.read_bytes(), dtype="<i2").astype(np.float64)
    loud = np.abs(recorded) > 300
    heard_ms = loud.sum() / 24
    assert heard_ms < reply_ms - 300, (heard_ms, reply_ms)
    assert time.monotonic() - started_second < 40
