"""A rejected session.update (rejected whole, as the live service does) names the field
and sends the rest again, so one bad field never loses the others (issue 13.1)."""

from __future__ import annotations

from collections.abc import Callable

from tests.engine.conftest import FAST, Recorder, started, stop
from voicecli.audio.sinks import NullSink
from voicecli.config import Config
from voicecli.engine import Engine, Notice
from voicecli.protocol.notifications import SessionChanged
from voicecli.server import RealtimeServer
from voicecli.session import field_path

ConfigFor = Callable[..., Config]


def test_field_path() -> None:
    assert field_path("session.audio.input.transcription.model") == [
        "audio",
        "input",
        "transcription",
    ]
    assert field_path("session.audio.output.voice") == ["audio", "output", "voice"]
    assert field_path("session.tools[0].name") == ["tools"]
    assert field_path(None) == []


async def test_a_bad_transcription_deployment_loses_nothing_else(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async with RealtimeServer(pace=0, azure_deployments=("my-transcribe",)) as server:
        config = config_for(
            server,
            turn_mode="server-vad",
            session={
                "instructions": "Be brief.",
                "voice": "cedar",
                "transcription": {"model": "gpt-4o-mini-transcribe"},
                "turn_detection": {"threshold": 0.7},
            },
        )
        engine = Engine(config, sink=NullSink(), backoff=FAST)
        engine.subscribe(recorder)
        task = await started(engine)
        await recorder.wait_for(lambda n: isinstance(n, SessionChanged) and not n.created)
        await stop(engine, task)
        session = server.sessions[0].session
        assert session["instructions"] == "Be brief."
        assert session["audio"]["output"]["voice"] == "cedar"
        assert session["audio"]["input"]["turn_detection"]["threshold"] == 0.7
        assert session["audio"]["input"]["transcription"] is None
        errors = [n.text for n in recorder.of(Notice) if n.level == "error"]
        assert len(errors) == 1
        assert "session.audio.input.transcription" in errors[0]
        assert "sent again" in errors[0]
        # a reconnect sends the wanted session without the refused field
        payload = engine.session.payload()
        assert payload["audio"]["input"].get("transcription") is None
        assert payload["instructions"] == "Be brief."
