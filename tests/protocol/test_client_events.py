"""ClientEvents: every event voicecli sends is valid GA per the official SDK's types."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.sdk_strict import StrictValidationError, validate_client_event
from voicecli.protocol.client_events import ClientEvents


def every_event(ev: ClientEvents) -> list[dict[str, Any]]:
    return [
        ev.append(b"\x01\x00" * 480),
        ev.commit(),
        ev.clear(),
        ev.response_create(),
        ev.response_create(
            output_modalities=["text"],
            instructions="Answer in one word.",
            max_output_tokens=50,
            conversation="none",
            metadata={"purpose": "test"},
        ),
        ev.response_cancel(),
        ev.response_cancel("resp_123"),
        ev.session_update(
            {
                "instructions": "Be brief.",
                "output_modalities": ["audio"],
                "audio": {
                    "input": {
                        "turn_detection": {"type": "semantic_vad", "eagerness": "high"},
                        "transcription": {"model": "whisper-1", "language": "en"},
                        "noise_reduction": {"type": "near_field"},
                    },
                    "output": {"voice": "cedar", "speed": 1.2},
                },
                "max_output_tokens": "inf",
            }
        ),
        ev.session_update({"audio": {"input": {"turn_detection": None}}}),
        ev.user_text("hello"),
        ev.assistant_text("hi there"),
        ev.function_call("call_1", "get_time", '{"tz": "UTC"}'),
        ev.function_call_output("call_1", '{"time": "12:00"}'),
        ev.truncate("item_1", 0, 1234),
    ]


def test_every_builder_is_valid_for_the_sdk() -> None:
    events = every_event(ClientEvents())
    for event in events:
        validate_client_event(event)
    assert {e["type"] for e in events} == {
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
        "response.create",
        "response.cancel",
        "session.update",
        "conversation.item.create",
        "conversation.item.truncate",
    }


def test_the_strict_validator_would_notice_a_wrong_event() -> None:
    event = ClientEvents().truncate("item_1", 0, 10)
    event["audio_end"] = 10  # a key the SDK does not know
    with pytest.raises(StrictValidationError):
        validate_client_event(event)


def test_event_ids_are_unique_within_and_across_instances() -> None:
    ids = [e["event_id"] for _ in range(50) for e in every_event(ClientEvents())]
    one = ClientEvents()
    ids += [one.commit()["event_id"] for _ in range(1000)]
    assert len(ids) == len(set(ids))


def test_append_carries_the_pcm_as_base64() -> None:
    pcm = bytes(range(256)) * 10
    event = ClientEvents().append(pcm)
    assert base64.b64decode(event["audio"]) == pcm


def test_session_update_adds_the_ga_type_and_keeps_only_the_given_fields() -> None:
    changes = {"instructions": "Be brief."}
    event = ClientEvents().session_update(changes)
    assert event["session"] == {"type": "realtime", "instructions": "Be brief."}
    assert changes == {"instructions": "Be brief."}  # the caller's mapping is untouched


def test_response_create_and_cancel_shapes() -> None:
    ev = ClientEvents()
    assert "response" not in ev.response_create()
    assert ev.response_create(instructions="x")["response"] == {"instructions": "x"}
    assert "response_id" not in ev.response_cancel()
    assert ev.response_cancel("resp_9")["response_id"] == "resp_9"


def test_items_have_the_ga_content_types() -> None:
    ev = ClientEvents()
    assert ev.user_text("a")["item"]["content"] == [{"type": "input_text", "text": "a"}]
    assert ev.assistant_text("b")["item"]["content"] == [{"type": "output_text", "text": "b"}]
    assert ev.function_call_output("c", "d")["item"] == {
        "type": "function_call_output",
        "call_id": "c",
        "output": "d",
    }
