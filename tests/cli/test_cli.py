"""The ``voicecli`` command, run as a subprocess in a private environment."""

from __future__ import annotations

import asyncio
import ctypes.util
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import private_env, voicecli, write_question
from tests.conftest import require
from voicecli import cli
from voicecli.config import Config, ConnectionConfig
from voicecli.connection import Connection, ConnectionFailed, FatalServerError
from voicecli.history import SessionLog
from voicecli.server import BackgroundServer

KEY = "sk-test-SECRET123-cli"


def test_help(tmp_path: Path) -> None:
    done = voicecli("--help", env=private_env(tmp_path))
    assert done.returncode == 0, done.stderr
    for command in ("ask", "serve", "devices", "history", "export"):
        assert command in done.stdout
    assert "--local" in done.stdout and "--config" in done.stdout
    done = voicecli("export", "--help", env=private_env(tmp_path))
    assert done.returncode == 0 and "--format" in done.stdout


def test_serve_starts_answers_and_stops(tmp_path: Path) -> None:
    env = private_env(tmp_path, SERVE_KEY=KEY)
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicecli", "serve", "--port", "0", "--api-key-env", "SERVE_KEY"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = re.search(r"listening on (ws://\S+)", line)
        assert m, line
        url = m.group(1)

        async def talk() -> None:
            async with Connection(ConnectionConfig(url=url), KEY) as conn:
                first = await asyncio.wait_for(anext(aiter(conn)), 5)
                assert first["type"] == "session.created"
            with pytest.raises(FatalServerError) as excinfo:
                await Connection(ConnectionConfig(url=url), "sk-wrong-key-000").connect()
            assert excinfo.value.close_code == 3000

        asyncio.run(talk())
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert KEY not in out + line + err


def test_serve_refuses_an_unset_key_variable(tmp_path: Path) -> None:
    done = voicecli(
        "serve", "--port", "0", "--api-key-env", "NOT_SET_ANYWHERE", env=private_env(tmp_path)
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "NOT_SET_ANYWHERE" in done.stderr


def _sessions(env: dict[str, str]) -> list[SessionLog]:
    data_dir = Path(env["XDG_DATA_HOME"]) / "voicecli"
    logs = []
    for i, text in enumerate(("first question", "second question")):
        log = SessionLog.create(data_dir, now=1_764_000_000 + 60 * i, model="gpt-realtime")
        log.append_turn({"role": "user", "item_id": f"u{i}", "text": text})
        log.append_turn({"role": "assistant", "item_id": f"a{i}", "text": f"answer {i}"})
        log.close()
        logs.append(log)
    return logs


def test_history_lists_newest_first(tmp_path: Path) -> None:
    env = private_env(tmp_path)
    done = voicecli("history", env=env)
    assert done.returncode == 0 and done.stdout.startswith("no sessions yet")
    first, second = _sessions(env)
    done = voicecli("history", env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:4] == ["session", "started", "type", "turns"]
    assert lines[1].startswith(second.path.name[:-6]) and lines[1].endswith("second question")
    assert lines[2].startswith(first.path.name[:-6])
    assert "2025-11-24 16:01:00" in lines[1]


def test_export(tmp_path: Path) -> None:
    env = private_env(tmp_path)
    first, _ = _sessions(env)
    done = voicecli("export", first.session_id, env=env)
    assert done.returncode == 0, done.stderr
    assert "**You**" in done.stdout and "first question" in done.stdout
    out = tmp_path / "s.json"
    done = voicecli("export", first.session_id[:5], "--format", "json", "--out", str(out), env=env)
    assert done.returncode == 0 and done.stdout == ""
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [t["text"] for t in data["turns"]] == ["first question", "answer 0"]
    done = voicecli("export", "nosuchsession", env=env)
    assert done.returncode == 1
    assert (
        done.stderr.startswith("voicecli export: no session matches")
        and done.stderr.count("\n") == 1
    )


def _portaudio() -> bool:
    return ctypes.util.find_library("portaudio") is not None


@pytest.mark.audio
def test_devices(tmp_path: Path) -> None:
    require("PortAudio", _portaudio(), "apt-get install libportaudio2")
    require("PulseAudio", bool(os.environ.get("PULSE_SERVER")), "run scripts/test")
    done = voicecli("devices", env=private_env(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["#", "in", "out"]
    assert len(lines) >= 2
    # the virtual PulseAudio devices are reachable through ALSA's pulse plugin
    assert any("pulse" in line or "default" in line for line in lines[1:]), done.stdout


@pytest.mark.parametrize(
    ("where", "text", "expect"),
    [
        ("config", "[session\n", "TOML syntax error"),
        ("config", '[session]\nvoise = "ash"\n', "session.voise: unknown key"),
        (
            "user",
            "[vad]\naggressiveness = 9\n",
            "vad.aggressiveness: expected an integer from 0 to 3",
        ),
        ("env", "", "connection.url: expected a ws://"),
        ("flag", "", "command line: session.voice: expected a voice the Realtime API knows"),
    ],
)
def test_bad_config_is_exit_2_and_one_line(
    tmp_path: Path, where: str, text: str, expect: str
) -> None:
    env = private_env(tmp_path)
    args: list[str] = []
    if where == "config":
        path = tmp_path / "bad.toml"
        path.write_text(text, encoding="utf-8")
        args = ["--config", str(path)]
    elif where == "user":
        path = Path(env["XDG_CONFIG_HOME"]) / "voicecli" / "config.toml"
        path.parent.mkdir(parents=True)
        path.write_text(text, encoding="utf-8")
    elif where == "env":
        env["VOICECLI_URL"] = "nonsense"
    else:
        args = ["--voice", " "]
    done = voicecli(*args, "history", env=env)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("voicecli history: ")
    assert expect in done.stderr
    assert done.stdout == ""


def test_readable_config_with_a_key_warns(tmp_path: Path) -> None:
    env = private_env(tmp_path)
    path = tmp_path / "c.toml"
    path.write_text(
        '# api_key = "sk-abcdefghijklmnopqrstuvwxyz"\n[session]\nvoice = "ash"\n', encoding="utf-8"
    )
    path.chmod(0o644)
    done = voicecli("--config", str(path), "history", env=env)
    assert done.returncode == 0
    assert "chmod 600" in done.stderr and "sk-abcdefghijklmnopqrstuvwxyz" not in done.stderr


def test_ask_without_key_explains(tmp_path: Path) -> None:
    done = voicecli("ask", str(write_question(tmp_path / "q.wav")), env=private_env(tmp_path))
    assert done.returncode == 1
    assert "OPENAI_API_KEY" in done.stderr and "--local" in done.stderr
    assert done.stderr.count("\n") == 1


def test_debug_output_never_contains_the_key(tmp_path: Path) -> None:
    question = write_question(tmp_path / "q.wav")
    with BackgroundServer(api_key=KEY, pace=0, record=False) as srv:
        env = private_env(tmp_path, OPENAI_API_KEY=KEY)
        done = voicecli("--debug", "--url", srv.url, "ask", str(question), env=env)
        assert done.returncode == 0, done.stderr
        assert "Authorization: Bearer [REDACTED]" in done.stderr  # debug did log the headers
        assert "assistant:" in done.stdout
        # a wrong key: the failure is reported, the key still nowhere
        env["OPENAI_API_KEY"] = "sk-test-WRONG-cli-9876"
        bad = voicecli("--debug", "--url", srv.url, "ask", str(question), env=env)
        assert bad.returncode == 1
        assert "API key" in bad.stderr.splitlines()[-1]
    for text in (done.stdout, done.stderr, bad.stdout, bad.stderr):
        assert KEY not in text
        assert "sk-test-WRONG-cli-9876" not in text


def test_local_flag_runs_the_app_inside_a_local_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``voicecli --local``: the composition root hands the app an engine whose config
    points at a running local server, with no key; the server is gone afterwards."""
    from voicecli.engine import Engine
    from voicecli.ui import app

    seen: dict[str, Any] = {}

    class FakeApp:
        def __init__(self, engine: Engine, config: Config, **kwargs: Any) -> None:
            seen.update(engine=engine, url=config.connection.url, notices=kwargs["notices"])

        def notify(self, text: str) -> None:
            seen["debug"] = text

        def run(self) -> int:
            config = seen["engine"].config

            async def probe() -> str:
                async with Connection(config, None) as conn:
                    return str((await anext(aiter(conn)))["type"])

            seen["first"] = asyncio.run(probe())
            return 7

    monkeypatch.setattr(app, "VoiceApp", FakeApp)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)  # as in a terminal
    for name, value in private_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert cli.main(["--local"]) == 7
    assert "debug" not in seen
    assert seen["engine"]._api_key is None
    assert seen["engine"].history is not None  # the root opened the session log
    assert seen["first"] == "session.created"
    assert seen["url"].startswith("ws://127.0.0.1:")

    async def after() -> None:
        await Connection(ConnectionConfig(url=seen["url"]), None).connect()

    with pytest.raises(ConnectionFailed, match="refused"):
        asyncio.run(after())
