"""Builders for the GA client events voicecli sends (plain dicts, ready for ``json.dumps``).

Every event gets a unique ``event_id`` so the server's errors (which echo it back in
``error.event_id``) can be tied to the event that caused them.
"""

from __future__ import annotations

import base64
import itertools
import secrets
from collections.abc import Mapping
from typing import Any

JsonEvent = dict[str, Any]


class ClientEvents:
    """Makes client events; one instance per engine keeps ``event_id``\\ s unique."""

    def __init__(self, prefix: str | None = None) -> None:
        # a random prefix keeps ids unique across engines and restarts, a counter within
        self._prefix = prefix if prefix is not None else f"evt_{secrets.token_hex(4)}_"
        self._counter = itertools.count(1)

    def _event(self, type_: str, **fields: Any) -> JsonEvent:
        return {"type": type_, "event_id": f"{self._prefix}{next(self._counter)}", **fields}

    # -- input audio buffer --------------------------------------------------------------

    def append(self, pcm: bytes) -> JsonEvent:
        """``input_audio_buffer.append`` with PCM16 mono 24 kHz audio."""
        return self._event("input_audio_buffer.append", audio=base64.b64encode(pcm).decode())

    def commit(self) -> JsonEvent:
        return self._event("input_audio_buffer.commit")

    def clear(self) -> JsonEvent:
        return self._event("input_audio_buffer.clear")

    # -- responses -----------------------------------------------------------------------

    def response_create(self, **overrides: Any) -> JsonEvent:
        """``response.create``; keyword arguments override the session for this response
        (``output_modalities``, ``instructions``, ``audio``, ``max_output_tokens``, ...)."""
        if overrides:
            return self._event("response.create", response=overrides)
        return self._event("response.create")

    def response_cancel(self, response_id: str | None = None) -> JsonEvent:
        if response_id is None:
            return self._event("response.cancel")
        return self._event("response.cancel", response_id=response_id)

    # -- session -------------------------------------------------------------------------

    def session_update(self, session: Mapping[str, Any]) -> JsonEvent:
        """``session.update`` with only the given fields (the GA ``type`` is added)."""
        return self._event("session.update", session={"type": "realtime", **session})

    # -- conversation items ----------------------------------------------------------------

    def user_text(self, text: str) -> JsonEvent:
        """A typed user message."""
        return self._item(
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        )

    def assistant_text(self, text: str) -> JsonEvent:
        """An assistant message (replaying a conversation after a reconnect)."""
        return self._item(
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text}],
            }
        )

    def user_audio(self, pcm: bytes) -> JsonEvent:
        """A user message of audio (PCM16 mono 24 kHz), without a transcript."""
        audio = base64.b64encode(pcm).decode("ascii")
        return self._item(
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_audio", "audio": audio}],
            }
        )

    def item_delete(self, item_id: str) -> JsonEvent:
        return self._event("conversation.item.delete", item_id=item_id)

    def function_call(self, call_id: str, name: str, arguments: str) -> JsonEvent:
        return self._item(
            {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}
        )

    def function_call_output(self, call_id: str, output: str) -> JsonEvent:
        return self._item({"type": "function_call_output", "call_id": call_id, "output": output})

    def mcp_approval_response(self, item_id: str, request_id: str, approve: bool) -> JsonEvent:
        """The user's answer to a hosted MCP server's ``mcp_approval_request``."""
        return self._item(
            {
                "type": "mcp_approval_response",
                "id": item_id,
                "approval_request_id": request_id,
                "approve": approve,
            }
        )

    def _item(self, item: dict[str, Any]) -> JsonEvent:
        return self._event("conversation.item.create", item=item)

    def truncate(self, item_id: str, content_index: int, audio_end_ms: int) -> JsonEvent:
        """``conversation.item.truncate``: the assistant's audio was heard up to
        ``audio_end_ms`` (callers clamp it to what was received and skip 0)."""
        return self._event(
            "conversation.item.truncate",
            item_id=item_id,
            content_index=content_index,
            audio_end_ms=audio_end_ms,
        )
