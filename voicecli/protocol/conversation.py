"""The conversation state: every server event folded into items, session and response.

:meth:`Conversation.apply` takes one decoded server event (a dict) and returns the
notifications describing what changed. It never raises: an event it cannot use (unknown
type, missing or wrongly typed fields, an item it has never heard of) comes back as an
:class:`~voicecli.protocol.notifications.UnhandledEvent` and leaves the state as it was.
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from voicecli.protocol.items import Item, UsageTotal, fill_item, fill_status
from voicecli.protocol.notifications import (
    AudioDelta,
    AudioDone,
    InputCleared,
    InputCommitted,
    InputTimeout,
    ItemAdded,
    ItemChanged,
    ItemDeleted,
    ItemTruncated,
    Notification,
    RateLimitsChanged,
    ResponseDone,
    ResponseError,
    ResponseStarted,
    ServerError,
    SessionChanged,
    SpeechStarted,
    SpeechStopped,
    TranscriptDelta,
    TranscriptDone,
    TranscriptFailed,
    UnhandledEvent,
)
from voicecli.protocol.usage import response_error, response_usage, transcription_usage

"""PCM16 mono at 24 kHz."""
MAX_ERRORS = 100
"""Server errors kept in :attr:`Conversation.errors` (the newest)."""
MAX_SENT_REMEMBERED = 4096
"""Client event ids remembered for correlating errors (the newest)."""

INTERNAL_ERROR = "internal error"
"""Prefix of an :class:`UnhandledEvent` reason when folding hit a bug, not bad input."""

BETA_ALIASES: Mapping[str, str] = {
    "conversation.item.created": "conversation.item.added",
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
}
"""Beta event names some compatible servers still send, and their GA equivalents."""


# events that carry nothing a client keeps beyond what other events already gave
_QUIET = frozenset(
    {
        "response.output_item.done",
        "input_audio_buffer.dtmf_event_received",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "output_audio_buffer.cleared",
        # hosted MCP progress: the items themselves arrive as conversation items, and
        # the engine's tool part shows these in the transcript
        "mcp_list_tools.in_progress",
        "mcp_list_tools.completed",
        "mcp_list_tools.failed",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.mcp_call.failed",
    }
)


class _Malformed(Exception):
    """An event lacks a field we need, or has it with the wrong type."""


class Conversation:
    """Folds server events into the conversation; see the module docstring."""

    def __init__(self) -> None:
        self._items: dict[str, Item] = {}
        self._order: list[str] = []
        self._ordered: tuple[Item, ...] | None = ()  # cache of ``items``
        self._session_items: set[str] = set()  # added or re-added in this session
        self._orphans: dict[str, list[str]] = {}  # unknown previous id -> items naming it
        self._replayed: set[str] = set()  # known items re-added by this session (a replay)
        self._sent: OrderedDict[str, str] = OrderedDict()
        self.session: dict[str, Any] | None = None
        """The effective session from the last ``session.created``/``session.updated``."""
        self.active_response_id: str | None = None
        self.assistant_has_audio = False
        """The assistant produced audio in this session (the voice can no longer change)."""
        self.usage_total = UsageTotal()
        self.response_errors: dict[str, ResponseError] = {}
        """Why each failed response failed, by response id."""
        self.rate_limits: tuple[Mapping[str, Any], ...] = ()
        self.errors: deque[ServerError] = deque(maxlen=MAX_ERRORS)
        self._handlers: dict[str, Callable[[dict[str, Any]], list[Notification]]] = {
            "session.created": self._session_created,
            "session.updated": self._session_updated,
            "error": self._error,
            "rate_limits.updated": self._rate_limits,
            "input_audio_buffer.committed": self._committed,
            "input_audio_buffer.cleared": lambda _e: [InputCleared()],
            "input_audio_buffer.speech_started": self._speech_started,
            "input_audio_buffer.speech_stopped": self._speech_stopped,
            "input_audio_buffer.timeout_triggered": self._timeout,
            "conversation.item.added": self._item_added,
            "conversation.item.done": self._item_added,
            "conversation.item.retrieved": self._item_added,
            "conversation.item.deleted": self._item_deleted,
            "conversation.item.truncated": self._item_truncated,
            "conversation.item.input_audio_transcription.delta": self._transcription_delta,
            "conversation.item.input_audio_transcription.completed": self._transcription_done,
            "conversation.item.input_audio_transcription.failed": self._transcription_failed,
            "conversation.item.input_audio_transcription.segment": lambda _e: [],
            "response.created": self._response_created,
            "response.done": self._response_done,
            "response.output_item.added": self._output_item_added,
            "response.content_part.added": self._content_part_added,
            "response.content_part.done": self._content_part_done,
            "response.output_audio.delta": self._audio_delta,
            "response.output_audio.done": self._audio_done,
            "response.output_audio_transcript.delta": self._text_delta,
            "response.output_audio_transcript.done": self._text_done,
            "response.output_text.delta": self._text_delta,
            "response.output_text.done": self._text_done,
            "response.function_call_arguments.delta": self._arguments_delta,
            "response.function_call_arguments.done": self._arguments_done,
        }

    # -- reading ---------------------------------------------------------------------------

    @property
    def items(self) -> Sequence[Item]:
        """The items in conversation order (by ``previous_item_id``, not arrival)."""
        if self._ordered is None:
            self._ordered = tuple(self._items[i] for i in self._order)
        return self._ordered

    def item(self, item_id: str) -> Item | None:
        return self._items.get(item_id)

    @property
    def session_id(self) -> str | None:
        value = (self.session or {}).get("id")
        return value if isinstance(value, str) else None

    @property
    def expires_at(self) -> float | None:
        """When the server ends the session (Unix seconds), if it said."""
        value = (self.session or {}).get("expires_at")
        return float(value) if isinstance(value, (int, float)) and value > 0 else None

    # -- folding ---------------------------------------------------------------------------

    def abandon_response(self) -> list[Notification]:
        """The connection died mid-response: the active response will never finish.
        Delete its items here and end it quietly (nobody saw it finish, and nothing
        must wait for it); returns the deletions to announce."""
        active = self.active_response_id
        if active is None:
            return []
        notes: list[Notification] = []
        for item in list(self.items):
            if item.response_id == active:
                notes += self.apply({"type": "conversation.item.deleted", "item_id": item.id})
        self.apply(
            {
                "type": "response.done",
                "response": {
                    "id": active,
                    "object": "realtime.response",
                    "status": "cancelled",
                    "status_details": {"type": "cancelled", "reason": "client_cancelled"},
                    "output": [],
                    "usage": None,
                },
            }
        )
        return notes

    def record_sent(self, event: Mapping[str, Any]) -> None:
        """Remember a client event's id and type, to name it in the server's errors."""
        event_id = event.get("event_id")
        if isinstance(event_id, str):
            self._sent[event_id] = str(event.get("type"))
            while len(self._sent) > MAX_SENT_REMEMBERED:
                self._sent.popitem(last=False)

    def apply(self, event: Any) -> list[Notification]:
        """Fold one server event into the state; return what changed. Never raises."""
        if not isinstance(event, dict):
            return [UnhandledEvent("?", f"not a JSON object: {type(event).__name__}")]
        raw_type = event.get("type")
        if not isinstance(raw_type, str):
            return [UnhandledEvent("?", "no type")]
        event_type = BETA_ALIASES.get(raw_type, raw_type)
        handler = self._handlers.get(event_type)
        if handler is None:
            if event_type in _QUIET:
                return []
            return [UnhandledEvent(raw_type, "unknown event type")]
        try:
            return handler(event)
        except _Malformed as exc:
            return [UnhandledEvent(raw_type, str(exc))]
        except Exception as exc:  # a bug here must not end the session; the fuzz tests hunt it
            return [UnhandledEvent(raw_type, f"{INTERNAL_ERROR}: {exc!r}")]

    # -- session, errors, limits -------------------------------------------------------------

    def _session_created(self, event: dict[str, Any]) -> list[Notification]:
        session = _dict(event, "session")
        self.session = session
        self.assistant_has_audio = False
        self.active_response_id = None
        # a new session's first item goes after everything a previous session left
        self._session_items.clear()
        self._replayed.clear()
        return [SessionChanged(session, created=True)]

    def _session_updated(self, event: dict[str, Any]) -> list[Notification]:
        self.session = _dict(event, "session")
        return [SessionChanged(self.session)]

    def _error(self, event: dict[str, Any]) -> list[Notification]:
        error = _dict(event, "error")
        message = error.get("message")
        client_event_id = _opt_str(error, "event_id")
        note = ServerError(
            code=_opt_str(error, "code"),
            message=message if isinstance(message, str) else "unknown error",
            type=_opt_str(error, "type"),
            param=_opt_str(error, "param"),
            client_event_id=client_event_id,
            client_event_type=self._sent.get(client_event_id) if client_event_id else None,
        )
        self.errors.append(note)
        return [note]

    def _rate_limits(self, event: dict[str, Any]) -> list[Notification]:
        limits = event.get("rate_limits")
        if not isinstance(limits, list) or not all(isinstance(x, dict) for x in limits):
            raise _Malformed("rate_limits is not a list of objects")
        self.rate_limits = tuple(limits)
        return [RateLimitsChanged(self.rate_limits)]

    # -- input audio buffer ------------------------------------------------------------------

    def _committed(self, event: dict[str, Any]) -> list[Notification]:
        return [InputCommitted(_str(event, "item_id"), _opt_str(event, "previous_item_id"))]

    def _speech_started(self, event: dict[str, Any]) -> list[Notification]:
        return [SpeechStarted(_str(event, "item_id"), _int(event, "audio_start_ms"))]

    def _speech_stopped(self, event: dict[str, Any]) -> list[Notification]:
        return [SpeechStopped(_str(event, "item_id"), _int(event, "audio_end_ms"))]

    def _timeout(self, event: dict[str, Any]) -> list[Notification]:
        return [InputTimeout(_str(event, "item_id"))]

    # -- items -----------------------------------------------------------------------------

    def _item_added(self, event: dict[str, Any]) -> list[Notification]:
        data = _dict(event, "item")
        item_id = _str(data, "id")
        known = self._items.get(item_id)
        item = known or Item(item_id, placed=False)
        if known is not None and (item_id not in self._session_items or item_id in self._replayed):
            self._replayed.add(item_id)
            # our replay of it after a reconnect: the server's copy holds only what we
            # sent (a cut-off answer as the part that was heard), never more than we
            # know, so filling it in again would cut the text at every replay
            fill_status(item, data)
        else:
            fill_item(item, data)
        if item.role == "user" and any(p.type == "input_audio" and not p.done for p in item.parts):
            item.transcription_expected = self._transcription_enabled()
        self._session_items.add(item_id)
        self._changed()
        placing = "previous_item_id" in event
        if known is not None and (known.placed or not placing):
            # a re-added item (a replay after reconnecting) stays where it is
            return [ItemChanged(item_id)]
        if known is None:
            self._items[item_id] = item
        else:
            self._order.remove(item_id)
        if placing:
            item.previous_item_id = _opt_str(event, "previous_item_id")
            item.placed = True
        return [ItemAdded(item_id, self._place(item))]

    def _place(self, item: Item) -> int:
        """Insert ``item`` into the order and return its index.

        A placed item goes right after its previous item (at the start of this session's
        items when it has none); one whose previous item is not known yet, or that only
        ``response.*`` events have named, goes last for now and moves when that item
        arrives, taking the items that follow it along."""
        previous = item.previous_item_id
        if item.placed and previous is None:
            mine = [self._order.index(i) for i in self._session_items if i in self._order]
            index = min(mine, default=len(self._order))
        elif item.placed and previous in self._order:
            index = self._order.index(previous) + 1
        else:
            index = len(self._order)
            if item.placed and previous is not None:
                self._orphans.setdefault(previous, []).append(item.id)
        self._order.insert(index, item.id)
        for child_id in self._orphans.pop(item.id, ()):
            child = self._items.get(child_id)
            if child is None or child.previous_item_id != item.id:
                continue  # deleted or re-placed since
            family = self._followers(child_id) - {item.id}  # a cycle leads back to it
            block = [i for i in self._order if i in family]
            self._order = [i for i in self._order if i not in family]
            at = self._order.index(item.id) + 1
            self._order[at:at] = block
        self._changed()
        return self._order.index(item.id)

    def _followers(self, item_id: str) -> set[str]:
        """``item_id`` and every item that follows it through ``previous_item_id``."""
        family = {item_id}
        grew = True
        while grew:
            grew = False
            for other in self._items.values():
                if other.placed and other.previous_item_id in family and other.id not in family:
                    family.add(other.id)
                    grew = True
        return family

    def _item_deleted(self, event: dict[str, Any]) -> list[Notification]:
        item_id = _str(event, "item_id")
        if item_id not in self._items:
            raise _Malformed(f"deleted item {item_id!r} is unknown")
        del self._items[item_id]
        self._order.remove(item_id)
        self._session_items.discard(item_id)
        self._changed()
        return [ItemDeleted(item_id)]

    def _item_truncated(self, event: dict[str, Any]) -> list[Notification]:
        item = self._known(event)
        content_index = _int(event, "content_index")
        audio_end_ms = _int(event, "audio_end_ms")
        item.truncated_at_ms = audio_end_ms
        item.truncated_content_index = content_index
        self._changed()
        return [ItemTruncated(item.id, content_index, audio_end_ms)]

    def _transcription_delta(self, event: dict[str, Any]) -> list[Notification]:
        item = self._known(event)
        index = _int(event, "content_index", default=0)
        delta = _str(event, "delta")
        part = item.part(index, "input_audio")
        part.text += delta
        self._changed()
        return [TranscriptDelta(item.id, item.role or "user", index, delta)]

    def _transcription_done(self, event: dict[str, Any]) -> list[Notification]:
        item = self._known(event)
        index = _int(event, "content_index", default=0)
        transcript = _str(event, "transcript")
        part = item.part(index, "input_audio")
        part.text = transcript
        part.done = True
        self._changed()
        usage = transcription_usage(event.get("usage"))
        return [TranscriptDone(item.id, item.role or "user", index, transcript, usage)]

    def _transcription_failed(self, event: dict[str, Any]) -> list[Notification]:
        item = self._known(event)
        index = _int(event, "content_index", default=0)
        error = event.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        part = item.part(index, "input_audio")
        part.done = True
        part.failed = message if isinstance(message, str) else "transcription failed"
        self._changed()
        return [TranscriptFailed(item.id, part.failed)]

    # -- responses ---------------------------------------------------------------------------

    def _response_created(self, event: dict[str, Any]) -> list[Notification]:
        response_id = _str(_dict(event, "response"), "id")
        self.active_response_id = response_id
        return [ResponseStarted(response_id)]

    def _response_done(self, event: dict[str, Any]) -> list[Notification]:
        response = _dict(event, "response")
        response_id = _str(response, "id")
        status = response.get("status")
        details = response.get("status_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        error = response_error(details)
        usage = response_usage(response.get("usage"))
        output = response.get("output")
        notes: list[Notification] = []
        for data in output if isinstance(output, list) else ():
            if isinstance(data, dict) and isinstance(data.get("id"), str):
                item = self._items.get(data["id"])
                if item is not None:
                    fill_item(item, data)
                    notes.append(ItemChanged(item.id))
        for item in self._items.values():
            if item.response_id == response_id:
                if item.status == "in_progress":
                    item.status = "incomplete" if status != "completed" else "completed"
                for part in item.parts:
                    part.done = True
        if self.active_response_id == response_id:
            self.active_response_id = None
        if usage is not None:
            self.usage_total.add(usage)
        if error is not None:
            self.response_errors[response_id] = error
        self._changed()
        notes.append(
            ResponseDone(
                response_id,
                status if isinstance(status, str) else "unknown",
                reason if isinstance(reason, str) else None,
                usage,
                error,
            )
        )
        return notes

    def _output_item_added(self, event: dict[str, Any]) -> list[Notification]:
        data = _dict(event, "item")
        item_id = _str(data, "id")
        response_id = _opt_str(event, "response_id")
        item = self._items.get(item_id)
        if item is not None:
            item.response_id = item.response_id or response_id
            fill_item(item, data)
            self._changed()
            return [ItemChanged(item_id)]
        item = Item(item_id, response_id=response_id, placed=False)
        fill_item(item, data)
        self._items[item_id] = item
        self._session_items.add(item_id)
        return [ItemAdded(item_id, self._place(item))]

    def _content_part_added(self, event: dict[str, Any]) -> list[Notification]:
        index = _int(event, "content_index")
        type_ = _str(_dict(event, "part"), "type")
        item = self._response_item(event)
        item.part(index, type_).type = type_
        self._changed()
        return [ItemChanged(item.id)]

    def _content_part_done(self, event: dict[str, Any]) -> list[Notification]:
        index = _int(event, "content_index")
        data = _dict(event, "part")
        type_ = _str(data, "type")
        item = self._response_item(event)
        part = item.part(index, type_)
        final = data.get("transcript") if data.get("type") == "audio" else data.get("text")
        if isinstance(final, str) and final:
            part.text = final
        part.done = True
        self._changed()
        return [ItemChanged(item.id)]

    def _audio_delta(self, event: dict[str, Any]) -> list[Notification]:
        response_id = _str(event, "response_id")
        index = _int(event, "content_index", default=0)
        try:
            pcm = base64.b64decode(_str(event, "delta"), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _Malformed(f"audio delta is not base64: {exc}") from None
        item = self._response_item(event)
        item.part(index, "audio").audio_bytes_received += len(pcm)
        self.assistant_has_audio = True
        return [AudioDelta(response_id, item.id, index, pcm)]

    def _audio_done(self, event: dict[str, Any]) -> list[Notification]:
        response_id = _str(event, "response_id")
        index = _int(event, "content_index", default=0)
        item = self._response_item(event)
        return [AudioDone(response_id, item.id, index)]

    def _text_delta(self, event: dict[str, Any]) -> list[Notification]:
        delta = _str(event, "delta")
        index = _int(event, "content_index", default=0)
        item = self._response_item(event)
        item.part(index, "audio" if _is_audio(event) else "text").text += delta
        self._changed()
        return [TranscriptDelta(item.id, item.role or "assistant", index, delta)]

    def _text_done(self, event: dict[str, Any]) -> list[Notification]:
        audio = _is_audio(event)
        final = _str(event, "transcript" if audio else "text")
        index = _int(event, "content_index", default=0)
        item = self._response_item(event)
        part = item.part(index, "audio" if audio else "text")
        part.text = final
        part.done = True
        self._changed()
        return [TranscriptDone(item.id, item.role or "assistant", index, final)]

    def _arguments_delta(self, event: dict[str, Any]) -> list[Notification]:
        delta = _str(event, "delta")
        item = self._response_item(event)
        item.arguments = (item.arguments or "") + delta
        self._changed()
        return [ItemChanged(item.id)]

    def _arguments_done(self, event: dict[str, Any]) -> list[Notification]:
        arguments = _str(event, "arguments")
        item = self._response_item(event)
        item.arguments = arguments
        name = event.get("name")
        if isinstance(name, str):
            item.name = name
        call_id = event.get("call_id")
        if isinstance(call_id, str):
            item.call_id = call_id
        self._changed()
        return [ItemChanged(item.id)]

    # -- helpers -----------------------------------------------------------------------------

    def _known(self, event: Mapping[str, Any]) -> Item:
        item_id = _str(event, "item_id")
        item = self._items.get(item_id)
        if item is None:
            raise _Malformed(f"item {item_id!r} is unknown")
        return item

    def _response_item(self, event: Mapping[str, Any]) -> Item:
        """The item a ``response.*`` event names. The server announces every output
        item (``response.output_item.added``) before its deltas; one it never announced
        is refused (reported as an :class:`UnhandledEvent`, its output dropped) rather
        than shown as a turn of its own."""
        item_id = _str(event, "item_id")
        item = self._items.get(item_id)
        if item is None:
            raise _Malformed(f"{event.get('type')} for item {item_id!r}, never announced")
        return item

    def _transcription_enabled(self) -> bool:
        audio = (self.session or {}).get("audio")
        audio_in = audio.get("input") if isinstance(audio, dict) else None
        return isinstance(audio_in, dict) and bool(audio_in.get("transcription"))

    def _changed(self) -> None:
        self._ordered = None


def _is_audio(event: Mapping[str, Any]) -> bool:
    """An ``output_audio_transcript`` event (GA or beta name), not ``output_text``."""
    return "audio" in BETA_ALIASES.get(event["type"], event["type"])


def _dict(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise _Malformed(f"{key} is missing or not an object")
    return value


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise _Malformed(f"{key} is missing or not a string")
    return value


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _int(data: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Malformed(f"{key} is missing or not a non-negative integer")
    return value
