"""BackgroundServer, serve_forever, and the strict check every server test ends with."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.sdk_strict import StrictValidationError
from tests.server.conftest import validate_sent
from voicecli.server import BackgroundServer, ServerStartError

ROOT = Path(__file__).resolve().parents[2]
_SERVE = (
    "import sys; from voicecli.server import serve_forever; "
    "sys.exit(serve_forever('127.0.0.1', {port}))"
)


def test_background_server_serves_from_its_own_thread() -> None:
    with BackgroundServer("127.0.0.1", 0, api_key="sk-bg") as bg:
        assert bg.url == f"ws://127.0.0.1:{bg.port}/v1/realtime"
        with connect(bg.url + "?model=gpt-realtime", additional_headers={"api-key": "sk-bg"}) as ws:
            created = json.loads(ws.recv())
            assert created["type"] == "session.created"
            ws.send(json.dumps({"type": "input_audio_buffer.clear", "event_id": "e1"}))
            assert json.loads(ws.recv())["type"] == "input_audio_buffer.cleared"
        assert bg.server.received[-1]["event_id"] == "e1"
        for event in bg.server.sent:
            validate_sent(event)
    bg.close()  # idempotent


def test_background_server_reports_a_busy_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServerStartError, match=f"cannot listen on 127.0.0.1:{port}"):
            BackgroundServer("127.0.0.1", port)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_forever_logs_the_url_and_stops_on_ctrl_c() -> None:
    port = _free_port()
    code = _SERVE.format(port=port)
    with subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as proc:
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            assert f"ws://127.0.0.1:{port}/v1/realtime" in line
            with connect(f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime") as ws:
                assert json.loads(ws.recv())["type"] == "session.created"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
            assert "Traceback" not in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_serve_forever_fails_cleanly_on_a_busy_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        code = _SERVE.format(port=port)
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=20
        )
    assert done.returncode == 1
    assert "cannot listen on" in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - start < 20


def test_the_strict_check_rejects_what_the_sdk_does_not_know() -> None:
    good = {"type": "input_audio_buffer.cleared", "event_id": "event_1"}
    validate_sent(good)
    with pytest.raises(StrictValidationError):
        validate_sent({**good, "surprise": 1})
    session = {"type": "realtime", "id": "sess_1", "object": "realtime.session", "expires_at": 1}
    validate_sent({"type": "session.created", "event_id": "event_2", "session": session})
    with pytest.raises(StrictValidationError):
        validate_sent(
            {
                "type": "session.updated",
                "event_id": "event_3",
                "session": {**session, "temperature": 0.8},
            }
        )
    with pytest.raises(StrictValidationError):
        validate_sent({"type": "response.output_audio.delta", "event_id": "event_4"})


def test_server_package_stays_apart_from_client_layers() -> None:
    code = (
        "import sys, voicecli.server; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'openai') "
        "or m.startswith(('voicecli.engine', 'voicecli.ui'))]; print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
