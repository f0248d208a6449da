"""The conversation's items: messages (with their content parts), function calls and
their outputs, as :class:`~voicecli.protocol.conversation.Conversation` folds them from
server events; what the user heard of a cut-off answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from voicecli.pcm import BYTES_PER_MS
from voicecli.protocol.notifications import Usage

_TEXT_KEYS = {"input_text": "text", "text": "text", "output_text": "text"}
_TRANSCRIPT_TYPES = frozenset({"input_audio", "audio", "output_audio"})


@dataclass(slots=True)
class ContentPart:
    """One content part of a message item. ``text`` is the text, or the transcript of
    audio; ``done`` is set when it is final (for user audio: transcribed or failed)."""

    type: str
    text: str = ""
    audio_bytes_received: int = 0
    done: bool = False
    failed: str | None = None

    @property
    def audio_ms(self) -> float:
        """Milliseconds of assistant audio received for this part."""
        return self.audio_bytes_received / BYTES_PER_MS


@dataclass(slots=True, eq=False)
class Item:
    """A conversation item: a message, a function call, or a function call's output."""

    id: str
    type: str = "message"
    role: str | None = None
    status: str | None = None
    previous_item_id: str | None = None
    response_id: str | None = None
    parts: list[ContentPart] = field(default_factory=list)
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None
    truncated_at_ms: int | None = None
    truncated_content_index: int = 0
    transcription_expected: bool = False
    placed: bool = True  # False while only response.* events have named it

    @property
    def text(self) -> str:
        """The item's text: typed text, or the transcript of its audio."""
        return " ".join(p.text for p in self.parts if p.text)

    @property
    def heard_text(self) -> str:
        """For an assistant item cut short: the part of the text the user heard."""
        return self.text[: self._cut()]

    @property
    def unheard_text(self) -> str:
        """The text past the cut (empty unless truncated); ``heard + unheard == text``."""
        return self.text[self._cut() :]

    @property
    def transcript_pending(self) -> bool:
        """User audio whose transcript has not arrived yet (and is expected)."""
        return self.transcription_expected and any(
            p.type == "input_audio" and not p.done for p in self.parts
        )

    def part(self, index: int, type_: str) -> ContentPart:
        """The part at ``index``, created (with empty parts before it) if missing."""
        while len(self.parts) <= index:
            self.parts.append(ContentPart(type_ if len(self.parts) == index else "unknown"))
        return self.parts[index]

    def _cut(self) -> int:
        """Where the heard text ends, as an offset into :attr:`text`.

        The audio and its transcript are generated together, so the share of the part's
        audio that was heard is taken as the share of its transcript heard, moved back to
        a word boundary (a half-heard word counts as unheard)."""
        text = self.text
        if self.truncated_at_ms is None:
            return len(text)
        offset = 0
        for index, p in enumerate(self.parts):
            if not p.text:
                continue
            if index == self.truncated_content_index:
                break
            if index > self.truncated_content_index:
                return max(0, offset - 1)  # before the separating space
            offset += len(p.text) + 1
        else:
            return len(text)
        p = self.parts[self.truncated_content_index]
        received = p.audio_ms
        share = 0.0 if received <= 0 else min(1.0, self.truncated_at_ms / received)
        if share >= 1.0:
            return offset + len(p.text)
        cut = int(len(p.text) * share)
        while cut > 0 and not p.text[cut].isspace():
            cut -= 1
        return offset + cut


@dataclass(slots=True)
class UsageTotal:
    """Tokens used by every response of the conversation so far."""

    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, usage: Usage) -> None:
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens


def fill_status(item: Item, data: Mapping[str, Any]) -> None:
    """Copy an item object's ``status`` into ``item`` (when it has one)."""
    status = data.get("status")
    if isinstance(status, str):
        item.status = status


def fill_item(item: Item, data: Mapping[str, Any]) -> None:
    """Copy what an item object holds into ``item``, keeping streamed text that the
    object lacks (the server's copy of an item has empty transcripts mid-stream)."""
    type_ = data.get("type")
    if isinstance(type_, str):
        item.type = type_
    for attr in ("role", "status", "call_id", "name", "arguments", "output"):
        value = data.get(attr)
        if isinstance(value, str):
            setattr(item, attr, value)
    content = data.get("content")
    if not isinstance(content, list):
        return
    for index, raw in enumerate(content):
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            continue
        part = item.part(index, raw["type"])
        part.type = raw["type"]
        key = _TEXT_KEYS.get(part.type) or ("transcript" if part.type in _TRANSCRIPT_TYPES else "")
        text = raw.get(key) if key else None
        if isinstance(text, str) and (text or not part.text):
            part.text = text
            if part.type != "audio" and part.type != "output_audio":
                part.done = True  # typed text, or a user transcript the server already has


__all__ = ["ContentPart", "Item", "UsageTotal", "fill_item", "fill_status"]
