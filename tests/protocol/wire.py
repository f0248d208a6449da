"""GA server events as the live service sends them, for feeding a ``Conversation``.

Every builder's output is checked against the official SDK's types in
``test_wire_builders_match_the_sdk``, so these fixtures cannot drift from the protocol.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

_ids = itertools.count(1)

Event = dict[str, Any]


def _event(type_: str, **fields: Any) -> Event:
    return {"type": type_, "event_id": f"event_{next(_ids)}", **fields}


def session(*, transcription: bool = False, voice: str = "marin") -> dict[str, Any]:
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": "sess_1",
        "model": "gpt-realtime",
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "prompt": None,
        "expires_at": 1_900_000_000,
        "include": None,
        "truncation": "auto",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "whisper-1"} if transcription else None,
                "noise_reduction": None,
                "turn_detection": None,
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": voice,
                "speed": 1.0,
            },
        },
    }


def session_created(**kwargs: Any) -> Event:
    return _event("session.created", session=session(**kwargs))


def session_updated(**kwargs: Any) -> Event:
    return _event("session.updated", session=session(**kwargs))


def user_audio_item(item_id: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": [{"type": "input_audio", "transcript": None}],
    }


def user_text_item(item_id: str, text: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
    }


def assistant_item(
    item_id: str, status: str = "in_progress", transcript: str | None = None
) -> dict[str, Any]:
    content = [] if transcript is None else [{"type": "output_audio", "transcript": transcript}]
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def item_added(item: dict[str, Any], previous: str | None) -> Event:
    return _event("conversation.item.added", previous_item_id=previous, item=item)


def item_done(item: dict[str, Any], previous: str | None) -> Event:
    return _event("conversation.item.done", previous_item_id=previous, item=item)


def committed(item_id: str, previous: str | None) -> Event:
    return _event("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)


def transcription_delta(item_id: str, delta: str) -> Event:
    return _event(
        "conversation.item.input_audio_transcription.delta",
        item_id=item_id,
        content_index=0,
        delta=delta,
    )


def transcription_completed(item_id: str, transcript: str) -> Event:
    return _event(
        "conversation.item.input_audio_transcription.completed",
        item_id=item_id,
        content_index=0,
        transcript=transcript,
        usage={"type": "duration", "seconds": 1.0},
    )


def transcription_failed(item_id: str, message: str) -> Event:
    return _event(
        "conversation.item.input_audio_transcription.failed",
        item_id=item_id,
        content_index=0,
        error={"type": "transcription_error", "code": "audio_unintelligible", "message": message},
    )


def response(response_id: str, status: str = "in_progress", **extra: Any) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "realtime.response",
        "status": status,
        "status_details": None,
        "output": [],
        "usage": None,
        "conversation_id": "conv_1",
        "output_modalities": ["audio"],
        "max_output_tokens": "inf",
        **extra,
    }


def _where(response_id: str, item_id: str) -> dict[str, Any]:
    return {"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0}


def spoken_response(
    response_id: str,
    item_id: str,
    previous: str | None,
    words: list[str],
    *,
    audio_ms_per_word: int = 200,
    status: str = "completed",
    usage: dict[str, Any] | None = None,
) -> list[Event]:
    """One spoken reply in the reference's wire order: one transcript delta and
    ``audio_ms_per_word`` of audio per word."""
    where = _where(response_id, item_id)
    transcript = " ".join(words)
    events = [
        _event("response.created", response=response(response_id)),
        _event(
            "response.output_item.added",
            response_id=response_id,
            output_index=0,
            item=assistant_item(item_id),
        ),
        item_added(assistant_item(item_id), previous),
        _event(
            "response.content_part.added",
            **where,
            part={"type": "audio", "transcript": ""},
        ),
    ]
    pcm = base64.b64encode(b"\x00\x00" * 24 * audio_ms_per_word).decode()
    for i, word in enumerate(words):
        delta = word if i == 0 else " " + word
        events.append(_event("response.output_audio_transcript.delta", **where, delta=delta))
        events.append(_event("response.output_audio.delta", **where, delta=pcm))
    events += [
        _event("response.output_audio.done", **where),
        _event("response.output_audio_transcript.done", **where, transcript=transcript),
        _event(
            "response.content_part.done",
            **where,
            part={"type": "audio", "transcript": transcript},
        ),
        item_done(assistant_item(item_id, "completed", transcript), previous),
        _event(
            "response.output_item.done",
            response_id=response_id,
            output_index=0,
            item=assistant_item(item_id, "completed", transcript),
        ),
        response_done(response_id, status, item_id, transcript, usage),
    ]
    return events


def response_done(
    response_id: str,
    status: str,
    item_id: str | None = None,
    transcript: str = "",
    usage: dict[str, Any] | None = None,
) -> Event:
    output = [] if item_id is None else [assistant_item(item_id, "completed", transcript)]
    details: dict[str, Any] | None = None
    if status == "cancelled":
        details = {"type": "cancelled", "reason": "client_cancelled"}
    return _event(
        "response.done",
        response=response(response_id, status, output=output, usage=usage, status_details=details),
    )


def usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {
            "text_tokens": input_tokens,
            "audio_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0},
        },
        "output_token_details": {
            "text_tokens": output_tokens // 2,
            "audio_tokens": output_tokens - output_tokens // 2,
        },
    }


def truncated(item_id: str, audio_end_ms: int) -> Event:
    return _event(
        "conversation.item.truncated", item_id=item_id, content_index=0, audio_end_ms=audio_end_ms
    )


def deleted(item_id: str) -> Event:
    return _event("conversation.item.deleted", item_id=item_id)


def error(code: str, message: str, client_event_id: str | None = None) -> Event:
    return _event(
        "error",
        error={
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": None,
            "event_id": client_event_id,
        },
    )


def rate_limits() -> Event:
    return _event(
        "rate_limits.updated",
        rate_limits=[
            {"name": "requests", "limit": 1000, "remaining": 999, "reset_seconds": 0.06},
            {"name": "tokens", "limit": 50000, "remaining": 49000, "reset_seconds": 1.2},
        ],
    )


def speech_started(item_id: str, ms: int) -> Event:
    return _event("input_audio_buffer.speech_started", item_id=item_id, audio_start_ms=ms)


def speech_stopped(item_id: str, ms: int) -> Event:
    return _event("input_audio_buffer.speech_stopped", item_id=item_id, audio_end_ms=ms)


def cleared() -> Event:
    return _event("input_audio_buffer.cleared")


def function_call_response(
    response_id: str, item_id: str, previous: str | None, name: str, arguments: str
) -> list[Event]:
    item = {
        "id": item_id,
        "object": "realtime.item",
        "type": "function_call",
        "status": "in_progress",
        "call_id": "call_1",
        "name": name,
        "arguments": "",
    }
    half = len(arguments) // 2
    common = {
        "response_id": response_id,
        "item_id": item_id,
        "output_index": 0,
        "call_id": "call_1",
    }
    return [
        _event("response.created", response=response(response_id)),
        _event("response.output_item.added", response_id=response_id, output_index=0, item=item),
        item_added(item, previous),
        _event("response.function_call_arguments.delta", **common, delta=arguments[:half]),
        _event("response.function_call_arguments.delta", **common, delta=arguments[half:]),
        _event("response.function_call_arguments.done", **common, name=name, arguments=arguments),
        _event("response.done", response=response(response_id, "completed")),
    ]
