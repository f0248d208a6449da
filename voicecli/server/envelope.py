"""The envelope of a client event: a JSON object frame with a known ``type``, a string
``event_id`` and only the top-level keys that type allows. Errors are worded like the
live service's."""

from __future__ import annotations

import json
from typing import Any

from voicecli.server.errors import ProtocolError, invalid_type, missing_parameter
from voicecli.server.errors import unknown_parameter as _unknown

#: Allowed top-level keys of every client event the GA WebSocket API accepts.
CLIENT_EVENTS: dict[str, tuple[str, ...]] = {
    "session.update": ("session",),
    "input_audio_buffer.append": ("audio",),
    "input_audio_buffer.commit": (),
    "input_audio_buffer.clear": (),
    "conversation.item.create": ("previous_item_id", "item"),
    "conversation.item.truncate": ("item_id", "content_index", "audio_end_ms"),
    "conversation.item.delete": ("item_id",),
    "conversation.item.retrieve": ("item_id",),
    "response.create": ("response",),
    "response.cancel": ("response_id",),
}


def parse_frame(message: str | bytes) -> dict[str, Any]:
    """The event object of one frame; :class:`ProtocolError` for a binary frame, bad
    JSON or a JSON value that is not an object."""
    if isinstance(message, bytes):
        raise ProtocolError(
            "invalid_event",
            "Binary frames are not supported: send each event as a JSON text frame.",
        )
    try:
        event = json.loads(message)
    except ValueError:
        raise ProtocolError(
            "invalid_json",
            "We could not parse the JSON body of your request. (HINT: This likely "
            "means you aren't using your HTTP library correctly.)",
        ) from None
    if not isinstance(event, dict):
        raise ProtocolError("invalid_event", "Each event must be a JSON object.")
    return event


def check_envelope(event: dict[str, Any]) -> str:
    """The event's type, once its envelope is valid (else :class:`ProtocolError`)."""
    type_ = event.get("type")
    if "event_id" in event and not isinstance(event["event_id"], str):
        raise invalid_type("event_id", "a string", event["event_id"])
    if not isinstance(type_, str) or type_ not in CLIENT_EVENTS:
        if type_ is None:
            raise missing_parameter("type")
        listed = ", ".join(f"'{t}'" for t in CLIENT_EVENTS)
        raise ProtocolError(
            "invalid_value",
            f"Invalid value: '{type_}'. Supported values are: {listed}.",
            "type",
        )
    allowed = CLIENT_EVENTS[type_]
    for key in event:
        if key not in ("type", "event_id", *allowed):
            raise _unknown(key)
    return type_
