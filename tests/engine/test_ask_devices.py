"""``voicecli ask`` with audio devices that cannot be used, and its ``--local`` server:
in-process, with the device classes replaced (no PortAudio needed)."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

import voicecli.audio.device_sink
import voicecli.audio.devices
import voicecli.audio.sources
import voicecli.server
from tests.engine.conftest import make_config
from voicecli.audio.devices import AudioDeviceError, DeviceNotFound, PortAudioMissing
from voicecli.audio.sinks import NullSink
from voicecli.compose import run_ask


class PortAudioError(Exception):
    """Like sounddevice's: not one of the audio layer's own exceptions."""


def ask_args(tmp_path: Path, **flags: Any) -> argparse.Namespace:
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


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("voicecli ask: ")
    return lines[0]


class SpyServer(voicecli.server.BackgroundServer):
    calls: list[dict[str, Any]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        SpyServer.calls.append({"args": args, **kwargs})
        super().__init__(*args, **kwargs)


@pytest.fixture
def spy_server(monkeypatch: pytest.MonkeyPatch) -> type[SpyServer]:
    SpyServer.calls = []
    monkeypatch.setattr(voicecli.server, "BackgroundServer", SpyServer)
    return SpyServer


@pytest.mark.parametrize(
    "error",
    [
        PortAudioMissing("libportaudio.so.2: cannot open shared object file"),
        DeviceNotFound("no output device matches 'hdmi'; output devices: 0: pulse"),
        AudioDeviceError("cannot open the speaker: Invalid sample rate\n[PaErrorCode -9997]"),
        PortAudioError("Error querying device -1"),
    ],
)
def test_a_speaker_that_cannot_open_exits_2_with_one_line(
    tmp_path: Path,
    speech_wav: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> NullSink:
        raise error

    monkeypatch.setattr(voicecli.audio.device_sink, "DeviceSink", broken)
    config = make_config("ws://127.0.0.1:9/v1/realtime", tmp_path)
    code = run_ask(config, ask_args(tmp_path, input=str(speech_wav), play=True))
    assert code == 2
    line = one_error_line(capsys)
    assert str(error).split()[0] in line


def test_the_speaker_gets_the_configured_latency_and_is_released_when_it_cannot_start(
    tmp_path: Path,
    speech_wav: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    made: list[FailingSink] = []

    class FailingSink(NullSink):
        def __init__(self, device: Any = None, **kwargs: Any) -> None:
            super().__init__()
            self.device, self.kwargs, self.closed = device, kwargs, False
            made.append(self)

        async def start(self) -> None:
            raise AudioDeviceError("cannot start the speaker: device busy")

        async def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(voicecli.audio.device_sink, "DeviceSink", FailingSink)
    config = make_config(
        "ws://127.0.0.1:9/v1/realtime",
        tmp_path,
        audio={"output_latency": 0.35, "output_device": "speakers"},
    )
    code = run_ask(config, ask_args(tmp_path, input=str(speech_wav), play=True))
    assert code == 2
    assert "device busy" in one_error_line(capsys)
    (sink,) = made
    assert sink.device == "speakers" and sink.kwargs == {"latency": 0.35}
    assert sink.closed


def test_a_missing_microphone_exits_2_before_connecting(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    spy_server: type[SpyServer],
) -> None:
    def find_device(spec: Any, kind: str) -> int | None:
        raise DeviceNotFound(f"no {kind} device matches {spec!r}; input devices: none")

    monkeypatch.setattr(voicecli.audio.devices, "find_device", find_device)
    config = make_config("ws://127.0.0.1:9/v1/realtime", tmp_path, audio={"input_device": "usb"})
    code = run_ask(config, ask_args(tmp_path, mic=True))
    assert code == 2
    assert "no input device matches 'usb'" in one_error_line(capsys)


def test_a_microphone_that_cannot_open_exits_2_and_local_server_keeps_no_log(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    spy_server: type[SpyServer],
) -> None:
    class BrokenMic:
        realtime = True

        def __init__(self, device: Any = None, **kwargs: Any) -> None:
            self.device = device

        async def __aenter__(self) -> BrokenMic:
            raise AudioDeviceError("cannot open the microphone: Device unavailable")

        async def __aexit__(
            self,
            exc_type: type[BaseException] | None,
            exc: BaseException | None,
            tb: TracebackType | None,
        ) -> None:
            return None

        async def blocks(self) -> Any:  # pragma: no cover - never entered
            raise AssertionError("not opened")
            yield

        def stop(self) -> None:
            return None  # never opened: nothing runs

    monkeypatch.setattr(voicecli.audio.devices, "find_device", lambda spec, kind: None)
    monkeypatch.setattr(voicecli.audio.sources, "DeviceSource", BrokenMic)
    config = make_config("ws://127.0.0.1:9/v1/realtime", tmp_path)
    code = run_ask(config, ask_args(tmp_path, mic=True))
    assert code == 2
    assert "Device unavailable" in one_error_line(capsys)
    # --local: the same in-process server as `voicecli --local`, without the event log
    assert spy_server.calls == [{"args": (), "host": "127.0.0.1", "port": 0, "record": False}]
