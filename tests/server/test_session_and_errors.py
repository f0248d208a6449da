"""session.update, the handshake's fatal errors, and every error case of the reference."""

from __future__ import annotations

import json
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.server.conftest import API_KEY, Client, append, sdk_client, tone
from voicecli.server import RealtimeServer


def _update(**session: Any) -> dict[str, Any]:
    return {
        "type": "session.update",
        "event_id": "evt_up",
        "session": {"type": "realtime", **session},
    }


async def test_update_merges_only_present_fields(client: Client) -> None:
    await client.send(
        _update(
            instructions="Be brief.",
            audio={
                "input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 800}},
                "output": {"speed": 1.25},
            },
        )
    )
    session = (await client.until("session.updated"))[-1]["session"]
    assert session["instructions"] == "Be brief."
    td = session["audio"]["input"]["turn_detection"]
    assert td["silence_duration_ms"] == 800 and td["threshold"] == 0.5
    assert session["audio"]["output"] == {
        "format": {"type": "audio/pcm", "rate": 24000},
        "voice": "marin",
        "speed": 1.25,
    }
    await client.send(
        _update(
            audio={"input": {"transcription": {"model": "gpt-4o-transcribe", "language": "en"}}},
            max_output_tokens=200,
            tools=[{"type": "function", "name": "lookup", "parameters": {"type": "object"}}],
            tool_choice="required",
        )
    )
    session = (await client.until("session.updated"))[-1]["session"]
    assert session["instructions"] == "Be brief."  # untouched
    assert session["audio"]["input"]["transcription"] == {
        "model": "gpt-4o-transcribe",
        "language": "en",
    }
    assert session["max_output_tokens"] == 200 and session["tool_choice"] == "required"
    await client.send(
        _update(audio={"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}})
    )
    session = (await client.until("session.updated"))[-1]["session"]
    assert session["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "high",
        "create_response": True,
        "interrupt_response": True,
    }


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        ({"temperature": 0.8}, "unknown_parameter", "session.temperature"),
        ({"audio": {"output": {"pitch": 2}}}, "unknown_parameter", "session.audio.output.pitch"),
        ({"audio": {"output": {"speed": 3.0}}}, "invalid_value", "session.audio.output.speed"),
        ({"audio": {"output": {"voice": "robot"}}}, "invalid_value", "session.audio.output.voice"),
        ({"output_modalities": ["text", "audio"]}, "invalid_value", "session.output_modalities"),
        ({"max_output_tokens": 5000}, "invalid_value", "session.max_output_tokens"),
        (
            {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
            "invalid_value",
            "session.audio.input.format.rate",
        ),
        (
            {"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 2}}}},
            "invalid_value",
            "session.audio.input.turn_detection.threshold",
        ),
        ({"tool_choice": 5}, "invalid_type", "session.tool_choice"),
    ],
)
async def test_invalid_update_is_rejected_whole(
    client: Client, session: dict[str, Any], code: str, param: str
) -> None:
    await client.send(_update(instructions="changed", **session))
    error = await client.error()
    assert (error["code"], error["param"], error["event_id"]) == (code, param, "evt_up")
    assert error["type"] == "invalid_request_error"
    # Nothing changed: a valid update afterwards still shows the old instructions.
    await client.send(_update(truncation="auto"))
    current = (await client.until("session.updated"))[-1]["session"]
    assert current["instructions"] != "changed"


async def test_session_type_is_required(client: Client) -> None:
    await client.send({"type": "session.update", "session": {"instructions": "x"}})
    error = await client.error()
    assert (error["code"], error["param"]) == ("missing_required_parameter", "session.type")


async def test_voice_is_locked_after_assistant_audio(manual: Client) -> None:
    await manual.send(_update(audio={"output": {"voice": "cedar"}}))
    await manual.until("session.updated")
    await append(manual, tone(0.2))
    await manual.send({"type": "input_audio_buffer.commit"})
    await manual.send({"type": "response.create"})
    await manual.reply()
    await manual.send(_update(instructions="new", audio={"output": {"voice": "alloy"}}))
    error = await manual.error()
    assert error["code"] == "cannot_update_voice"
    assert error["event_id"] == "evt_up"
    # The same voice, and everything else, may still change.
    await manual.send(_update(instructions="new", audio={"output": {"voice": "cedar"}}))
    session = (await manual.until("session.updated"))[-1]["session"]
    assert session["instructions"] == "new"


async def test_errors_never_end_the_session(server: RealtimeServer, manual: Client) -> None:
    cases: list[tuple[dict[str, Any], str, str | None, str | None]] = [
        ({"type": "nonsense.event"}, "invalid_value", "type", None),
        ({"type": "response.cancel"}, "response_cancel_not_active", None, None),
        (
            {"type": "input_audio_buffer.append", "audio": "@@not base64@@"},
            "invalid_value",
            "audio",
            None,
        ),
        ({"type": "input_audio_buffer.append"}, "missing_required_parameter", "audio", None),
        ({"type": "input_audio_buffer.commit", "extra": 1}, "unknown_parameter", "extra", None),
        (
            {"type": "conversation.item.delete", "item_id": "item_nope"},
            "item_not_found",
            "item_id",
            None,
        ),
        (
            {"type": "conversation.item.retrieve", "item_id": "item_nope"},
            "item_not_found",
            "item_id",
            None,
        ),
    ]
    for i, (event, code, param, _) in enumerate(cases):
        event_id = f"evt_{i}"
        await manual.conn.send_raw(json.dumps({**event, "event_id": event_id}))
        error = await manual.error()
        assert (error["code"], error["param"], error["event_id"]) == (code, param, event_id), event
    await manual.send(_update(instructions="still alive"))
    assert (await manual.until("session.updated"))[-1]["session"]["instructions"] == "still alive"


async def test_unknown_type_message_lists_supported_types(manual: Client) -> None:
    await manual.conn.send_raw(json.dumps({"type": "response.audio.delta", "event_id": "e1"}))
    error = await manual.error()
    assert error["message"].startswith("Invalid value: 'response.audio.delta'.")
    assert "'session.update'" in error["message"]


async def test_commit_with_too_little_audio(manual: Client) -> None:
    await append(manual, tone(0.04))
    await manual.send({"type": "input_audio_buffer.commit", "event_id": "evt_c"})
    error = await manual.error()
    assert error["code"] == "input_audio_buffer_commit_empty"
    assert error["event_id"] == "evt_c"
    assert error["message"] == (
        "Error committing input audio buffer: buffer too small. Expected at least 100ms "
        "of audio, but buffer only has 40.00 ms of audio."
    )


async def test_clear_empties_the_buffer(manual: Client) -> None:
    await append(manual, tone(0.5))
    await manual.send({"type": "input_audio_buffer.clear"})
    await manual.until("input_audio_buffer.cleared")
    await manual.send({"type": "input_audio_buffer.commit"})
    error = await manual.error()
    assert error["code"] == "input_audio_buffer_commit_empty"
    assert "0.00 ms" in error["message"]


async def test_non_json_and_binary_frames(server: RealtimeServer) -> None:
    url = server.url + "?model=gpt-realtime"
    async with connect(url, additional_headers={"Authorization": f"Bearer {API_KEY}"}) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        await ws.send("{not json")
        error = json.loads(await ws.recv())["error"]
        assert error["code"] == "invalid_json" and error["event_id"] is None
        await ws.send(b"\x00\x01\x02")
        error = json.loads(await ws.recv())["error"]
        assert error["code"] == "invalid_event"
        await ws.send("[1, 2]")
        assert json.loads(await ws.recv())["error"]["code"] == "invalid_event"
        await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        assert json.loads(await ws.recv())["type"] == "input_audio_buffer.cleared"


async def _fatal(url: str, headers: dict[str, str]) -> tuple[dict[str, Any], int]:
    async with connect(url, additional_headers=headers) as ws:
        event = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code is not None
        return event, ws.close_code


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer sk-wrong"},
        {"api-key": "sk-wrong"},
        {"Authorization": "sk-test"},
    ],
)
async def test_bad_or_missing_key_gets_error_then_close_3000(
    server: RealtimeServer, headers: dict[str, str]
) -> None:
    event, code = await _fatal(server.url + "?model=gpt-realtime", headers)
    assert event["type"] == "error"
    assert event["error"]["code"] == "invalid_api_key"
    assert event["error"]["type"] == "invalid_request_error"
    assert API_KEY not in json.dumps(event)
    assert code == 3000


async def test_bad_key_through_the_sdk(server: RealtimeServer) -> None:
    async with sdk_client(server, api_key="sk-wrong").realtime.connect(
        model="gpt-realtime"
    ) as conn:
        error = await conn.recv()
        assert error.type == "error" and error.error.code == "invalid_api_key"
        with pytest.raises(ConnectionClosed) as info:
            await conn.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 3000


@pytest.mark.parametrize("query", ["", "?model=gpt-5", "?model="])
async def test_missing_or_unknown_model_gets_close_4000(server: RealtimeServer, query: str) -> None:
    event, code = await _fatal(server.url + query, {"Authorization": f"Bearer {API_KEY}"})
    assert event["error"]["code"] in ("missing_model", "model_not_found")
    assert event["error"]["param"] == "model"
    assert code == 4000


@pytest.mark.parametrize(
    "model",
    [
        "gpt-realtime",
        "gpt-realtime-mini",
        "gpt-4o-realtime-preview",
        "gpt-4o-mini-realtime-preview",
    ],
)
async def test_known_models_and_azure_path(server: RealtimeServer, model: str) -> None:
    base = server.url.replace("/v1/realtime", "/openai/v1/realtime")
    async with connect(f"{base}?model={model}", additional_headers={"api-key": API_KEY}) as ws:
        event = json.loads(await ws.recv())
        assert event["type"] == "session.created"
        assert event["session"]["model"] == model


async def test_beta_header_is_refused(server: RealtimeServer) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}", "OpenAI-Beta": "realtime=v1"}
    event, code = await _fatal(server.url + "?model=gpt-realtime", headers)
    assert event["error"]["code"] == "beta_api_shape_disabled"
    assert code == 1008


async def test_unknown_path_is_404(server: RealtimeServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(server.url.replace("/v1/realtime", "/v2/chat")):
            pass
    assert info.value.response.status_code == 404


async def test_no_key_configured_accepts_anyone() -> None:
    async with (
        RealtimeServer(pace=0) as srv,
        websockets.connect(srv.url + "?model=gpt-realtime") as ws,
    ):
        assert json.loads(await ws.recv())["type"] == "session.created"


async def test_a_server_bug_becomes_a_server_error(
    manual: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from voicecli.server import RealtimeSession

    async def broken(self: RealtimeSession, event: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(RealtimeSession, "on_input_audio_buffer_clear", broken)
    await manual.send({"type": "input_audio_buffer.clear", "event_id": "evt_bug"})
    error = await manual.error()
    assert (error["type"], error["code"], error["event_id"]) == (
        "server_error",
        "server_error",
        "evt_bug",
    )
    assert "boom" in caplog.text
    await manual.send(_update(instructions="still here"))
    assert (await manual.until("session.updated"))[-1]["session"]["instructions"] == "still here"
