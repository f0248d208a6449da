"""Typed notifications that the conversation state emits after folding a server event.

The audio layer, the engine and the UI subscribe to these instead of parsing raw events.
They are small, frozen and carry ids so a subscriber can look the full state up in the
:class:`~voicecli.protocol.conversation.Conversation` when it needs more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Notification:
    """Base class of every notification."""


@dataclass(frozen=True, slots=True)
class SessionChanged(Notification):
    """``session.created`` or ``session.updated``: the whole effective session."""

    session: Mapping[str, Any]
    created: bool = False


@dataclass(frozen=True, slots=True)
class ItemAdded(Notification):
    """A conversation item appeared; ``index`` is its place in the ordered conversation."""

    item_id: str
    index: int


@dataclass(frozen=True, slots=True)
class ItemChanged(Notification):
    """An item's status, content or transcript changed (not for every delta: see below)."""

    item_id: str


@dataclass(frozen=True, slots=True)
class ItemDeleted(Notification):
    item_id: str


@dataclass(frozen=True, slots=True)
class TranscriptDelta(Notification):
    """Text grew: user input transcription, assistant audio transcript or assistant text."""

    item_id: str
    role: str
    content_index: int
    delta: str


@dataclass(frozen=True, slots=True)
class TranscriptDone(Notification):
    """The text of one content part is final (``text`` is the whole text)."""

    item_id: str
    role: str
    content_index: int
    text: str
    usage: TranscriptionUsage | None = None
    """Input transcriptions only: what the transcription used."""


@dataclass(frozen=True, slots=True)
class TranscriptFailed(Notification):
    """Input transcription failed for a user item."""

    item_id: str
    message: str


@dataclass(frozen=True, slots=True)
class AudioDelta(Notification):
    """A chunk of assistant audio: PCM16 mono 24 kHz, already base64-decoded."""

    response_id: str
    item_id: str
    content_index: int
    pcm: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class AudioDone(Notification):
    response_id: str
    item_id: str
    content_index: int


@dataclass(frozen=True, slots=True)
class ResponseStarted(Notification):
    response_id: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one response (from ``response.done``)."""

    input_tokens: int = 0
    output_tokens: int = 0
    input_audio_tokens: int = 0
    input_text_tokens: int = 0
    input_cached_tokens: int = 0
    output_audio_tokens: int = 0
    output_text_tokens: int = 0
    input_cached_audio_tokens: int = 0
    """Of ``input_cached_tokens``, audio (``cached_tokens_details``; text is the rest)."""
    input_cached_text_tokens: int = 0


@dataclass(frozen=True, slots=True)
class TranscriptionUsage:
    """What one input transcription used (the ``usage`` of
    ``conversation.item.input_audio_transcription.completed``, billed apart): tokens, or
    seconds of audio for duration-billed models."""

    input_audio_tokens: int = 0
    input_text_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class ResponseError:
    """Why a response failed: ``status_details.error`` of a failed ``response.done``
    (``type``, ``code`` such as ``insufficient_quota`` or ``server_error``, ``message``)."""

    type: str | None = None
    code: str | None = None
    message: str | None = None

    def __str__(self) -> str:
        head = self.code or self.type or "error"
        return f"{head}: {self.message}" if self.message else head


@dataclass(frozen=True, slots=True)
class ResponseDone(Notification):
    """``response.done``: status is completed, cancelled, incomplete or failed.
    ``reason`` is ``status_details.reason`` (incomplete, cancelled), ``error``
    ``status_details.error`` (failed)."""

    response_id: str
    status: str
    reason: str | None
    usage: Usage | None
    error: ResponseError | None = None

    @property
    def why(self) -> str | None:
        """One phrase saying why the response did not complete (None: no reason given)."""
        if self.error is not None:
            return str(self.error)
        return self.reason


@dataclass(frozen=True, slots=True)
class SpeechStarted(Notification):
    """Server VAD heard speech begin (``audio_start_ms`` includes prefix padding)."""

    item_id: str
    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped(Notification):
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class InputCommitted(Notification):
    item_id: str
    previous_item_id: str | None


@dataclass(frozen=True, slots=True)
class InputCleared(Notification):
    pass


@dataclass(frozen=True, slots=True)
class InputTimeout(Notification):
    """``input_audio_buffer.timeout_triggered`` (server VAD idle timeout)."""

    item_id: str


@dataclass(frozen=True, slots=True)
class ItemTruncated(Notification):
    """The server cut an assistant audio item at ``audio_end_ms``."""

    item_id: str
    content_index: int
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class ServerError(Notification):
    """An ``error`` event, correlated with the client event that caused it when known."""

    code: str | None
    message: str
    type: str | None = None
    param: str | None = None
    client_event_id: str | None = None
    client_event_type: str | None = None


@dataclass(frozen=True, slots=True)
class RateLimitsChanged(Notification):
    limits: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class UnhandledEvent(Notification):
    """An event we do not understand: unknown type, or malformed fields. Logged, not fatal."""

    event_type: str
    reason: str
