"""The local server is as strict as the live service where its behaviour is known
(issue 13.7): whole turn_detection/transcription objects, no assistant audio from the
client, Azure's transcription deployments, handshake refusals, failed responses, expiry,
and text-only answers after a text history."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.server.conftest import API_KEY, Client, sdk_client, types
from voicecli.server import RealtimeServer


def update(**session: Any) -> dict[str, Any]:
    return {
        "type": "session.update",
        "event_id": "evt_up",
        "session": {"type": "realtime", **session},
    }


def audio_input(**fields: Any) -> dict[str, Any]:
    return {"input": fields}


async def test_partial_turn_detection_is_rejected_whole(client: Client) -> None:
    await client.send(
        update(instructions="kept?", audio=audio_input(turn_detection={"threshold": 0.7}))
    )
    error = await client.error()
    assert error["code"] == "missing_required_parameter"
    assert error["param"] == "session.audio.input.turn_detection.type"
    # the whole update was refused: the instructions did not change either
    await client.send(update(max_output_tokens=100))
    session = (await client.until("session.updated"))[-1]["session"]
    assert session["instructions"] != "kept?"


async def test_turn_detection_is_replaced_not_merged(client: Client) -> None:
    await client.send(
        update(audio=audio_input(turn_detection={"type": "server_vad", "threshold": 0.7}))
    )
    await client.until("session.updated")
    await client.send(
        update(audio=audio_input(turn_detection={"type": "server_vad", "silence_duration_ms": 800}))
    )
    td = (await client.until("session.updated"))[-1]["session"]["audio"]["input"]["turn_detection"]
    assert td["silence_duration_ms"] == 800
    assert td["threshold"] == 0.5  # not the 0.7 before: a whole object replaces the old one


async def test_transcription_without_model_is_rejected(client: Client) -> None:
    await client.send(update(audio=audio_input(transcription={"language": "de"})))
    error = await client.error()
    assert error["param"] == "session.audio.input.transcription.model"


async def test_assistant_audio_from_the_client_is_rejected(client: Client) -> None:
    await client.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_audio", "transcript": "hello"}],
            },
        }
    )
    error = await client.error()
    assert error["code"] == "invalid_value"
    assert error["param"] == "item.content[0].type"


async def test_azure_mode_wants_transcription_deployments() -> None:
    async with RealtimeServer(pace=0, azure_deployments=("my-transcribe",)) as server:
        await _azure_session(server)


async def _azure_session(server: RealtimeServer) -> None:
    async with sdk_client(server).realtime.connect(model="gpt-realtime") as conn:
        client = Client(conn)
        await client.until("session.created")
        tr = {"model": "gpt-4o-mini-transcribe"}
        await client.send(update(audio=audio_input(transcription=tr)))
        error = await client.error()
        assert error["param"] == "session.audio.input.transcription.model"
        assert "my-transcribe" in error["message"]
        await client.send(update(audio=audio_input(transcription={"model": "my-transcribe"})))
        session = (await client.until("session.updated"))[-1]["session"]
        assert session["audio"]["input"]["transcription"] == {"model": "my-transcribe"}


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_handshake_refusal_switch(server: RealtimeServer, status: int) -> None:
    server.faults.refuse_handshake_with = status
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with pytest.raises(InvalidStatus) as excinfo:
        async with connect(f"{server.url}?model=gpt-realtime", additional_headers=headers):
            pass
    response = excinfo.value.response
    assert response.status_code == status
    assert json.loads(response.body)["error"]["message"]
    assert server.refused == 1


async def test_failed_response_carries_its_error(server: RealtimeServer, client: Client) -> None:
    server.faults.fail_responses_with = "server_error"
    await client.send({"type": "response.create"})
    done = (await client.until("response.done"))[-1]["response"]
    assert done["status"] == "failed"
    assert done["status_details"]["error"]["code"] == "server_error"
    assert done["output"] == []


async def test_expiry_closes_1001_with_the_live_text(server: RealtimeServer) -> None:
    server.faults.expire_after_s = 0.0
    server.faults.expire_without_error = True
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with connect(f"{server.url}?model=gpt-realtime", additional_headers=headers) as ws:
        seen = []
        with pytest.raises(ConnectionClosed) as excinfo:
            while True:
                seen.append(json.loads(await ws.recv())["type"])
    assert "error" not in seen
    assert excinfo.value.rcvd is not None and excinfo.value.rcvd.code == 1001
    assert "maximum duration" in excinfo.value.rcvd.reason


async def test_text_only_answers_after_a_text_history(
    server: RealtimeServer, client: Client
) -> None:
    server.faults.text_only_after_text_history = True
    for role, kind, text in (("user", "input_text", "hi"), ("assistant", "output_text", "hello")):
        await client.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": role,
                    "content": [{"type": kind, "text": text}],
                },
            }
        )
        await client.until("conversation.item.done")
    await client.send({"type": "response.create", "response": {"output_modalities": ["audio"]}})
    events = await client.reply()
    assert "response.output_audio.delta" not in types(events)
    assert "response.output_text.done" in types(events)
    # without the emulation the same history gets a spoken answer
    server.faults.text_only_after_text_history = False
    await client.send({"type": "response.create", "response": {"output_modalities": ["audio"]}})
    assert "response.output_audio.delta" in types(await client.reply())
