"""What a finished response means for the user, beyond its items.

* A failed response says why (``status_details.error``: ``insufficient_quota``,
  ``server_error``...): an error notice (the transcript's error row, ``ask``'s stderr),
  the status bar's ``response_error``, and a note in the history.
* An answer that should be spoken but came back as text is said once. Live models are
  reported to answer in text only once the history they are given is text, which is
  what a replay after a reconnect sends (assistant audio cannot be sent back).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voicecli.engine.journal import Journal
from voicecli.engine.notifications import Notice
from voicecli.protocol.conversation import Conversation
from voicecli.protocol.notifications import Notification, ResponseDone

TEXT_ONLY_NOTICE = (
    "the assistant answered in text although speech was asked for (models are reported "
    "to do this after a reconnect, when the history they get back is text); its answers "
    "are shown, not spoken"
)


class SpokenCheck:
    """Tells, once until answers are spoken again, that a response came back as text."""

    def __init__(self) -> None:
        self._told = False

    def check(self, conversation: Conversation, response_id: str) -> str | None:
        """The notice to show for the completed response ``response_id`` (None:
        nothing to say)."""
        session = conversation.session or {}
        if list(session.get("output_modalities") or ["audio"]) != ["audio"]:
            return None
        said = [
            i
            for i in conversation.items
            if i.response_id == response_id and i.type == "message" and i.role == "assistant"
        ]
        if not said:
            return None
        spoken = any(
            p.audio_bytes_received > 0 or p.type in ("audio", "output_audio")
            for i in said
            for p in i.parts
        )
        if spoken:
            self._told = False
            return None
        if self._told:
            return None
        self._told = True
        return TEXT_ONLY_NOTICE


class Outcomes:
    """Reports each finished response (see the module docstring)."""

    def __init__(
        self,
        conversation: Conversation,
        journal: Journal,
        publish: Callable[[Notification], None],
        set_status: Callable[..., None],
    ) -> None:
        self._conversation = conversation
        self._journal = journal
        self._publish = publish
        self._set_status: Callable[..., Any] = set_status
        self._spoken = SpokenCheck()

    def response_done(self, note: ResponseDone) -> None:
        if note.status == "failed":
            why = note.why or "no reason given"
            self._set_status(response_error=why)
            self._publish(Notice("error", f"the response failed: {why}"))
            self._journal.log_failure(note)
        elif note.status == "completed":
            self._set_status(response_error=None)
            text_only = self._spoken.check(self._conversation, note.response_id)
            if text_only is not None:
                self._publish(Notice("warning", text_only))


__all__ = ["TEXT_ONLY_NOTICE", "Outcomes", "SpokenCheck"]
