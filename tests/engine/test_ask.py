"""``voicecli ask`` end to end against the local server, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.engine.conftest import utterance
from voicecli.audio.wav import read_wav_24k_mono
from voicecli.server import BackgroundServer

SECRET = "sk-test-SECRETSECRET"


def run_ask(
    *args: str, tmp_path: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "VOICECLI_URL")}
    full_env.update(
        XDG_DATA_HOME=str(tmp_path / "xdg-data"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
        XDG_STATE_HOME=str(tmp_path / "xdg-state"),
        XDG_CACHE_HOME=str(tmp_path / "xdg-cache"),
    )
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "voicecli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=tmp_path,
    )


@pytest.fixture
def stereo_44k_wav(tmp_path: Path) -> Path:
    """A stereo 44.1 kHz WAV: ask must convert it to 24 kHz mono itself."""
    import soxr

    mono = utterance(speech_s=0.8, lead_s=0.1, tail_s=0.1).astype(np.float32) / 32768
    up = soxr.resample(mono, 24_000, 44_100)
    stereo = np.stack([up, up], axis=1)
    path = tmp_path / "in.wav"
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44_100)
        w.writeframes((np.clip(stereo, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@pytest.mark.slow
def test_ask_local_echoes_the_samples_and_writes_the_transcript(
    tmp_path: Path, stereo_44k_wav: Path
) -> None:
    out, transcript = tmp_path / "out.wav", tmp_path / "t.jsonl"
    proc = run_ask(
        "ask",
        "--local",
        str(stereo_44k_wav),
        "--out",
        str(out),
        "--transcript",
        str(transcript),
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("you: ")
    assert lines[-1].startswith("assistant: ") and "seconds of audio" in lines[-1]
    sent = read_wav_24k_mono(stereo_44k_wav)
    reply = read_wav_24k_mono(out)
    # the local server echoes exactly the committed samples
    assert len(reply) == len(sent)
    assert np.array_equal(reply, sent)
    events = [json.loads(line) for line in transcript.read_text().splitlines()]
    sent_types = [e["type"] for e in events if e["direction"] == "sent"]
    assert sent_types[0] == "session.update"
    assert sent_types.count("input_audio_buffer.commit") == 1
    assert sent_types.count("response.create") == 1
    appends = [e for e in events if e["type"] == "input_audio_buffer.append"]
    assert appends and all(e["audio"].startswith("<audio ") for e in appends)
    sizes = [int(e["audio"].split()[1]) for e in appends]
    assert all(20 * 48 <= s <= 100 * 48 for s in sizes[:-1])
    received = [e["type"] for e in events if e["direction"] == "received"]
    assert received[0] == "session.created" and "response.done" in received


def test_ask_bad_wav_fails_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    proc = run_ask("ask", "--local", str(bad), tmp_path=tmp_path)
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_ask_connection_refused_fails_with_one_line(tmp_path: Path, speech_wav: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_ask(
        "ask",
        str(speech_wav),
        "--url",
        f"ws://127.0.0.1:{port}/v1/realtime",
        tmp_path=tmp_path,
        env={"OPENAI_API_KEY": "sk-x"},
    )
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr


@pytest.mark.slow
def test_ask_never_leaks_the_key(tmp_path: Path, speech_wav: Path) -> None:
    transcript = tmp_path / "t.jsonl"
    with BackgroundServer(api_key=SECRET) as server:
        ok = run_ask(
            "--debug",
            "ask",
            str(speech_wav),
            "--url",
            server.url,
            "--out",
            str(tmp_path / "o.wav"),
            "--transcript",
            str(transcript),
            tmp_path=tmp_path,
            env={"OPENAI_API_KEY": SECRET},
        )
        bad = run_ask(
            "--debug",
            "ask",
            str(speech_wav),
            "--url",
            server.url,
            tmp_path=tmp_path,
            env={"OPENAI_API_KEY": SECRET + "x"},
        )
    assert ok.returncode == 0, ok.stderr
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) >= 1
    haystacks = [ok.stdout, ok.stderr, bad.stdout, bad.stderr]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            haystacks.append(path.read_bytes().decode("latin-1"))
    assert any("session.created" in h for h in haystacks)  # the transcript was searched
    for text in haystacks:
        assert SECRET not in text


@pytest.mark.slow
def test_a_transient_error_mid_reply_does_not_abort_the_ask(
    tmp_path: Path, speech_wav: Path
) -> None:
    """#10.5: one ``server_error`` tied to no client event, in a reply that then
    completes, used to end ask with exit 1, no reply and no logged turn."""
    from voicecli.server.faults import Faults

    out = tmp_path / "o.wav"
    with BackgroundServer(faults=Faults(error_after_audio_deltas=2)) as server:
        proc = run_ask(
            "ask", str(speech_wav), "--url", server.url, "--out", str(out), tmp_path=tmp_path
        )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "voicecli ask: server error: transient (going on)"
    assert "assistant: You said" in proc.stdout
    assert len(read_wav_24k_mono(out)) > 24_000 // 2
    logs = list((tmp_path / "xdg-data").rglob("*.jsonl"))
    turns = [json.loads(line) for p in logs for line in p.read_text().splitlines()]
    assert sum(1 for t in turns if t.get("kind") == "turn") == 2  # the question and the answer


def test_only_errors_about_the_exchange_end_an_ask() -> None:
    from voicecli.ask import ends_the_exchange
    from voicecli.protocol.notifications import ServerError

    def error(code: str | None, about: str | None) -> ServerError:
        return ServerError(code=code, message="m", client_event_type=about)

    assert ends_the_exchange(error("input_audio_buffer_commit_empty", "input_audio_buffer.commit"))
    assert ends_the_exchange(error("invalid_value", "response.create"))
    assert not ends_the_exchange(error(None, None))  # a transient server_error
    assert not ends_the_exchange(error("invalid_value", "session.update"))
    assert not ends_the_exchange(
        error("conversation_already_has_active_response", "response.create")
    )
