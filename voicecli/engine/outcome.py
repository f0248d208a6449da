"""What a finished response means for the user, beyond its items.

* A failed response says why (``status_details.error``: ``insufficient_quota``,
  ``server_error``...): an error notice (the transcript's error row, ``ask``'s stderr),
  the status bar's ``response_error``, and a note in the history.
* An answer that should be spoken but came back as text is asked for again, spoken.
  Live models are reported to answer in text only once the history they are given is
  text, which is what a replay after a reconnect sends (assistant audio cannot be sent
  back).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from voicecli.engine.journal import Journal
from voicecli.engine.notifications import Notice
from voicecli.pcm import BYTES_PER_MS
from voicecli.protocol.client_events import ClientEvents, JsonEvent
from voicecli.protocol.conversation import Conversation
from voicecli.protocol.notifications import Notification, ResponseDone
from voicecli.session import server_speaks

RECOVER_NOTICE = (
    "the assistant answered in text although speech was asked for (models are reported "
    "to do this after a reconnect, when the history they get back is text): asking again "
    "for a spoken answer"
)
TEXT_ONLY_NOTICE = (
    "the assistant still answers in text although speech was asked for; its answers are "
    "shown, not spoken"
)
SILENCE_MS = 1000
"""The silent user audio that brings speech back (livekit/agents' recovery uses 1 s)."""


def spoken(conversation: Conversation, response_id: str) -> bool | None:
    """Whether the response ``response_id`` was spoken: None when that is not a question
    (the session asks for text, or the response said nothing)."""
    if not server_speaks(conversation.session):
        return None
    said = [
        i
        for i in conversation.items
        if i.response_id == response_id and i.type == "message" and i.role == "assistant"
    ]
    if not said:
        return None
    return any(
        p.audio_bytes_received > 0 or p.type in ("audio", "output_audio")
        for i in said
        for p in i.parts
    )


class Outcomes:
    """Reports each finished response (see the module docstring).

    The recovery from a text answer (after livekit/agents' for the same behaviour):
    delete the text answer, add a second of silent user audio (the history then holds
    audio again) and ask once more; if that answer is text too, say so once and stop
    trying until an answer is spoken again."""

    def __init__(
        self,
        conversation: Conversation,
        journal: Journal,
        events: ClientEvents,
        *,
        publish: Callable[[Notification], None],
        set_status: Callable[..., None],
        send: Callable[[JsonEvent], None],
        request_response: Callable[[], None],
    ) -> None:
        self._conversation = conversation
        self._journal = journal
        self._ev = events
        self._publish = publish
        self._set_status: Callable[..., Any] = set_status
        self._send = send
        self._request_response = request_response
        self._recovered = False  # asked again in this run of text answers
        self._told = False

    def response_done(self, note: ResponseDone) -> None:
        if note.status == "failed":
            why = note.why or "no reason given"
            self._set_status(response_error=why)
            self._publish(Notice("error", f"the response failed: {why}"))
            self._journal.log_failure(note)
            return
        if note.status != "completed":
            return
        self._set_status(response_error=None)
        verdict = spoken(self._conversation, note.response_id)
        if verdict is None:
            return
        if verdict:
            self._recovered = self._told = False
        elif not self._recovered:
            self._recovered = True
            self._publish(Notice("warning", RECOVER_NOTICE))
            self._ask_for_speech(note.response_id)
        elif not self._told:
            self._told = True
            self._publish(Notice("warning", TEXT_ONLY_NOTICE))

    def _ask_for_speech(self, response_id: str) -> None:
        for item in self._conversation.items:
            if item.response_id == response_id and item.role == "assistant":
                self._send(self._ev.item_delete(item.id))
        silence = self._ev.user_audio(bytes(SILENCE_MS * BYTES_PER_MS))
        silence["item"]["id"] = f"item_{secrets.token_hex(8)}"  # confirmed by its item.added
        self._send(silence)
        self._request_response()


__all__ = ["RECOVER_NOTICE", "TEXT_ONLY_NOTICE", "Outcomes", "spoken"]
