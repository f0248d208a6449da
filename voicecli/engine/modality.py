"""Answers that should be spoken but came back as text.

Live models are reported to answer in text only once the history they are given is
text, which is what a replay after a reconnect sends (assistant audio cannot be sent
back). :class:`SpokenCheck` notices a completed response that carries text and no audio
while the session asks for audio, so the user is told why the assistant went silent,
once per occurrence streak rather than at every answer.
"""

from __future__ import annotations

from voicecli.protocol.conversation import Conversation

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


__all__ = ["TEXT_ONLY_NOTICE", "SpokenCheck"]
