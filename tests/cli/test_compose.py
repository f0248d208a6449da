"""The composition root (issue #10's design step): one place builds the engine for the
UI and for ask, with one history policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import make_config
from voicecli import compose
from voicecli.audio import devices
from voicecli.history import SessionLog


def no_devices(spec: Any, kind: str) -> int | None:
    raise devices.DeviceNotFound(f"no {kind} device matches {spec!r}")


def test_the_ui_engine_goes_on_without_history_with_the_same_line_as_ask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devices, "find_device", no_devices)
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    config = make_config("ws://127.0.0.1:9/v1/realtime", tmp_path, data_dir=str(blocker / "d"))
    built = compose.build_ui_engine(compose.Endpoint(config, None))
    assert built.history is None and built.engine.history is None
    assert built.notices[0].startswith("no microphone") and "no speaker" in built.notices[1]
    assert built.notices[2].startswith("no session history (Not a directory")
    built.close()


def test_the_ui_engine_gets_a_session_log_the_root_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devices, "find_device", no_devices)
    config = make_config("ws://127.0.0.1:9/v1/realtime", tmp_path)
    built = compose.build_ui_engine(compose.Endpoint(config, "sk-test"))
    assert isinstance(built.history, SessionLog) and built.engine.history is built.history
    assert built.engine._api_key == "sk-test"
    built.close()
    with pytest.raises(ValueError, match="closed"):
        built.history.append_turn({"role": "user"})


def test_endpoint_says_when_a_key_is_missing(tmp_path: Path) -> None:
    openai = make_config("wss://api.openai.com/v1/realtime", tmp_path)
    with compose.endpoint(openai, local=False, env={}) as ep:
        assert ep.key_missing and ep.api_key is None
    with compose.endpoint(openai, local=False, env={"OPENAI_API_KEY": "sk-test-k"}) as ep:
        assert not ep.key_missing and ep.api_key == "sk-test-k"
    own = make_config("ws://127.0.0.1:9/v1/realtime", tmp_path)  # a compatible server
    with compose.endpoint(own, local=False, env={}) as ep:
        assert not ep.key_missing and ep.api_key is None
    with compose.endpoint(openai, local=True, env={}) as ep:
        assert ep.api_key is None and ep.config.connection.url.startswith("ws://127.0.0.1:")
