"""response.create overrides, cancellation, concurrency, token limits, tools, items."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from tests.server.conftest import Client, append, pcm_of, tone, types
from voicecli.server import RealtimeServer


def _user_text(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        **extra,
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        },
    }


async def _spoken_turn(c: Client, seconds: float, seed: int = 0) -> np.ndarray:
    speech = tone(seconds, seed=seed)
    await append(c, speech)
    await c.send({"type": "input_audio_buffer.commit"})
    await c.until("conversation.item.done")
    return speech


async def test_cancel_while_running(server: RealtimeServer, manual: Client) -> None:
    speech = await _spoken_turn(manual, 3.0)
    server.pace = 5.0  # 3 s of audio takes 600 ms to send
    await manual.send({"type": "response.create"})
    await manual.until("response.output_audio.delta")
    await manual.send({"type": "response.cancel", "event_id": "evt_cancel"})
    events = await manual.reply()
    assert types(events, lambda t: not t.endswith(".delta")) == [
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "conversation.item.done",
        "response.output_item.done",
        "response.done",
        "rate_limits.updated",
    ]
    response = next(e for e in events if e["type"] == "response.done")["response"]
    assert response["status"] == "cancelled"
    assert response["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert response["output"][0]["status"] == "incomplete"
    received = len(pcm_of(manual.seen))
    assert 0 < received < len(speech)
    np.testing.assert_array_equal(pcm_of(manual.seen), speech[:received])
    # Nothing runs any more.
    await manual.send({"type": "response.cancel"})
    assert (await manual.error())["code"] == "response_cancel_not_active"


async def test_create_while_running_is_an_error(server: RealtimeServer, manual: Client) -> None:
    await _spoken_turn(manual, 2.0)
    server.pace = 5.0
    await manual.send({"type": "response.create"})
    created = (await manual.until("response.created"))[-1]["response"]["id"]
    await manual.send({"type": "response.create", "event_id": "evt_second"})
    error = await manual.error()
    assert error["code"] == "conversation_already_has_active_response"
    assert error["event_id"] == "evt_second"
    assert created in error["message"]
    server.pace = 0
    done = next(e for e in await manual.reply() if e["type"] == "response.done")
    assert done["response"]["status"] == "completed"


async def test_cancel_by_unknown_response_id(manual: Client) -> None:
    await manual.send({"type": "response.cancel", "response_id": "resp_nope"})
    error = await manual.error()
    assert (error["code"], error["param"]) == ("response_cancel_not_active", "response_id")
    assert error["message"] == "Cancellation failed: no active response found"


async def test_out_of_band_response_with_overrides(server: RealtimeServer, manual: Client) -> None:
    await manual.send(_user_text("in the conversation"))
    await manual.until("conversation.item.done")
    await manual.send(
        {
            "type": "response.create",
            "response": {
                "conversation": "none",
                "output_modalities": ["text"],
                "instructions": "Summarize.",
                "metadata": {"purpose": "summary"},
                "input": [
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "out of band"}],
                    }
                ],
            },
        }
    )
    events = await manual.reply()
    assert "conversation.item.added" not in types(events)
    done = next(e for e in events if e["type"] == "response.done")["response"]
    assert done["conversation_id"] is None
    assert done["metadata"] == {"purpose": "summary"}
    assert done["output"][0]["content"] == [
        {"type": "output_text", "text": "You said: out of band"}
    ]
    assert [i.id for i in server.sessions[0].items][-1] != done["output"][0]["id"]


async def test_input_item_reference(manual: Client) -> None:
    await manual.send(_user_text("first", event_id="a"))
    first_id = (await manual.until("conversation.item.done"))[-1]["item"]["id"]
    await manual.send(_user_text("second"))
    await manual.until("conversation.item.done")
    await manual.send(
        {
            "type": "response.create",
            "response": {
                "output_modalities": ["text"],
                "input": [{"type": "item_reference", "id": first_id}],
            },
        }
    )
    events = await manual.reply()
    text = next(e for e in events if e["type"] == "response.output_text.done")["text"]
    assert text == "You said: first"


async def test_max_output_tokens_makes_it_incomplete(manual: Client) -> None:
    speech = await _spoken_turn(manual, 2.0)
    await manual.send({"type": "response.create", "response": {"max_output_tokens": 10}})
    events = await manual.reply()
    response = next(e for e in events if e["type"] == "response.done")["response"]
    assert response["status"] == "incomplete"
    assert response["status_details"] == {"type": "incomplete", "reason": "max_output_tokens"}
    assert response["max_output_tokens"] == 10
    assert response["usage"]["output_tokens"] <= 10
    got = pcm_of(events)
    assert 0 < len(got) < len(speech)


async def test_invalid_response_overrides(manual: Client) -> None:
    for response, code, param in [
        ({"temperature": 1}, "unknown_parameter", "response.temperature"),
        ({"conversation": "maybe"}, "invalid_value", "response.conversation"),
        ({"max_output_tokens": 0}, "invalid_value", "response.max_output_tokens"),
        (
            {"input": [{"type": "item_reference", "id": "item_x"}]},
            "item_not_found",
            "response.input[0].id",
        ),
    ]:
        await manual.send({"type": "response.create", "response": response})
        error = await manual.error()
        assert (error["code"], error["param"]) == (code, param)


async def test_function_call_round_trip(manual: Client) -> None:
    await manual.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "tools": [
                    {
                        "type": "function",
                        "name": "get_time",
                        "description": "Current time",
                        "parameters": {"type": "object", "properties": {}},
                    }
                ],
            },
        }
    )
    await manual.until("session.updated")
    await manual.send(_user_text("please get_time for me"))
    await manual.until("conversation.item.done")
    await manual.send({"type": "response.create"})
    events = await manual.reply()
    assert types(events, lambda t: not t.endswith(".delta")) == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.done",
        "conversation.item.done",
        "response.output_item.done",
        "response.done",
        "rate_limits.updated",
    ]
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["name"] == "get_time"
    assert json.loads(done["arguments"]) == {}  # example values for no properties
    deltas = "".join(
        e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"
    )
    assert deltas == done["arguments"]
    await manual.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": done["call_id"], "output": "12:00"},
        }
    )
    await manual.until("conversation.item.done")
    await manual.send({"type": "response.create"})
    events = await manual.reply()
    transcript = next(e for e in events if e["type"] == "response.output_audio_transcript.done")
    assert transcript["transcript"] == "The function returned: 12:00"


async def test_item_create_positions_and_errors(server: RealtimeServer, manual: Client) -> None:
    await manual.send(_user_text("one"))
    one = (await manual.until("conversation.item.done"))[-1]
    assert one["previous_item_id"] is None
    await manual.send(_user_text("two"))
    two = (await manual.until("conversation.item.done"))[-1]
    assert two["previous_item_id"] == one["item"]["id"]
    await manual.send(
        {
            "type": "conversation.item.create",
            "previous_item_id": "root",
            "item": {
                "id": "item_sys",
                "type": "message",
                "role": "system",
                "content": [{"type": "input_text", "text": "Rules."}],
            },
        }
    )
    added = (await manual.until("conversation.item.added"))[-1]
    assert added["previous_item_id"] is None and added["item"]["id"] == "item_sys"
    await manual.until("conversation.item.done")
    await manual.send(
        {
            "type": "conversation.item.create",
            "previous_item_id": one["item"]["id"],
            "item": {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hi."}],
            },
        }
    )
    mid = (await manual.until("conversation.item.done"))[-1]
    assert mid["previous_item_id"] == one["item"]["id"]
    order = [i.id for i in server.sessions[0].items]
    assert order == ["item_sys", one["item"]["id"], mid["item"]["id"], two["item"]["id"]]
    for event, code in [
        ({**_user_text("x"), "previous_item_id": "item_missing"}, "item_not_found"),
        (
            {
                "type": "conversation.item.create",
                "item": {**_user_text("x")["item"], "id": "item_sys"},
            },
            "item_already_exists",
        ),
        (
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "output_text", "text": "x"}],
                },
            },
            "invalid_value",
        ),
        ({"type": "conversation.item.create", "item": {"type": "mystery"}}, "invalid_value"),
        ({"type": "conversation.item.create"}, "missing_required_parameter"),
    ]:
        await manual.send(event)
        assert (await manual.error())["code"] == code
    await manual.send({"type": "conversation.item.delete", "item_id": "item_sys"})
    assert (await manual.until("conversation.item.deleted"))[-1]["item_id"] == "item_sys"
    assert "item_sys" not in [i.id for i in server.sessions[0].items]


async def test_truncate(manual: Client) -> None:
    await _spoken_turn(manual, 2.0)
    await manual.send({"type": "response.create"})
    events = await manual.reply()
    item = next(e for e in events if e["type"] == "response.output_item.done")["item"]
    user_id = next(e for e in events if e["type"] == "conversation.item.added")["previous_item_id"]

    await manual.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item["id"],
            "content_index": 0,
            "audio_end_ms": 2500,
        }
    )
    error = await manual.error()
    assert error["message"] == "Audio content of 2000 ms is already shorter than 2500 ms"
    await manual.send(
        {
            "type": "conversation.item.truncate",
            "item_id": user_id,
            "content_index": 0,
            "audio_end_ms": 100,
        }
    )
    assert (await manual.error())["message"] == "Only model output audio messages can be truncated"
    await manual.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item["id"],
            "content_index": 0,
            "audio_end_ms": 0,
        }
    )
    assert (await manual.error())["param"] == "audio_end_ms"

    await manual.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item["id"],
            "content_index": 0,
            "audio_end_ms": 1000,
        }
    )
    truncated = (await manual.until("conversation.item.truncated"))[-1]
    assert {k: truncated[k] for k in ("item_id", "content_index", "audio_end_ms")} == {
        "item_id": item["id"],
        "content_index": 0,
        "audio_end_ms": 1000,
    }
    await manual.send({"type": "conversation.item.retrieve", "item_id": item["id"]})
    part = (await manual.until("conversation.item.retrieved"))[-1]["item"]["content"][0]
    full = "You said 2.0 seconds of audio."
    assert full.startswith(part["transcript"]) and len(part["transcript"]) < len(full) * 0.6
    import base64

    assert len(base64.b64decode(part["audio"])) == 1000 * 48
