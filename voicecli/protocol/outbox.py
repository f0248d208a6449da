"""The outbox: client events on their way to the server, sans-I/O.

The engine puts events in; its sender takes them out one at a time (:meth:`Outbox.peek`,
then :meth:`Outbox.sent` once written) and feeds the server's answers back
(:meth:`response_started`, :meth:`response_done`, :meth:`confirm`, :meth:`rejected`).
Four rules live here and nowhere else:

* **One response at a time.** ``response.create`` goes out only while no response is
  active or asked for; one asked for meanwhile waits until the active one is done (or
  cancelled and done), and several such asks become one (one response answers them
  all). A create the server still refuses with ``conversation_already_has_active_response``
  (a server-VAD response raced it) waits for that response's end the same way.
* **Backlog.** From a live source (a microphone), queued mic audio beyond
  ``max_backlog_ms`` is dropped oldest first and counted; control events never are.
* **Reliable delivery.** Events whose arrival the server confirms later (commit, clear,
  response.create, item.create) and the audio of the open turn are kept until
  confirmed, and sent again on the next connection.
* **Replay.** After a reconnect the conversation is replayed as items, ids kept, after
  the whole session and before anything queued while disconnected.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from voicecli.pcm import BYTES_PER_MS
from voicecli.protocol.client_events import ClientEvents, JsonEvent
from voicecli.protocol.conversation import Conversation
from voicecli.protocol.items import Item

APPEND = "input_audio_buffer.append"
CREATE = "response.create"
CONFIRMED_LATER = frozenset(
    {"input_audio_buffer.commit", "input_audio_buffer.clear", CREATE, "conversation.item.create"}
)
"""Client events kept until the server's answer shows they arrived."""
TURN_AUDIO_KEEP_MS = 60_000
"""Audio of the open turn kept for re-sending after a reconnect."""
ACTIVE_RESPONSE = "conversation_already_has_active_response"


def audio_ms(event: Mapping[str, Any]) -> float:
    """Milliseconds of audio in an ``input_audio_buffer.append`` (0 for other events)."""
    if event.get("type") != APPEND:
        return 0.0
    return len(event.get("audio", "")) * 3 / 4 / BYTES_PER_MS


class Outbox:
    """See the module docstring. ``live``: the audio comes from a clock that cannot wait
    (a microphone), so a stalled socket drops the oldest audio; a file source instead
    waits while :attr:`over_backlog` (the engine's mic loop checks it)."""

    def __init__(self, events: ClientEvents, *, max_backlog_ms: float, live: bool) -> None:
        self._ev = events
        self.max_backlog_ms = max_backlog_ms
        self.live = live
        self._queue: deque[JsonEvent] = deque()
        self._queued_audio_ms = 0.0
        self._unacked: deque[JsonEvent] = deque()
        self._unacked_audio_ms = 0.0
        self._response_active = False
        self._creates_in_flight = 0
        self._held_create: JsonEvent | None = None
        self.dropped_audio_ms = 0.0
        """Mic audio dropped in all because the socket stalled."""

    # -- the queue -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def queued_audio_ms(self) -> float:
        return self._queued_audio_ms

    @property
    def over_backlog(self) -> bool:
        return self._queued_audio_ms > self.max_backlog_ms

    @property
    def drained_enough(self) -> bool:
        """Queued audio is down to half the backlog bound (a waiting file may go on)."""
        return self._queued_audio_ms <= self.max_backlog_ms / 2

    def put(self, event: JsonEvent) -> float:
        """Queue ``event``; ``response.create`` obeys one-response-at-a-time. Returns the
        mic audio (ms) dropped to keep the backlog bound (0 almost always)."""
        if event.get("type") == CREATE:
            self.request_response(event)
            return 0.0
        self._queue.append(event)
        ms = audio_ms(event)
        if not ms:
            return 0.0
        self._queued_audio_ms += ms
        return self._enforce_backlog()

    def request_response(self, event: JsonEvent | None = None) -> None:
        """Ask for a response now, or as soon as the active one is done."""
        event = event if event is not None else self._ev.response_create()
        if self._queue and self._queue[-1].get("type") == CREATE:
            return  # the create already queued last answers this too
        if self._response_active or self._creates_in_flight or self._queued_create():
            if self._held_create is None:
                self._held_create = event
            return
        self._queue.append(event)

    @property
    def response_waiting(self) -> bool:
        """A ``response.create`` is held until the active response is done."""
        return self._held_create is not None

    def _queued_create(self) -> bool:
        return any(e.get("type") == CREATE for e in self._queue)

    def peek(self) -> JsonEvent | None:
        """The next event to write (it stays queued until :meth:`sent`)."""
        return self._queue[0] if self._queue else None

    def sent(self, event: JsonEvent) -> None:
        """``event`` (the head) was written to the socket."""
        if self._queue and self._queue[0] is event:
            self._queue.popleft()
            self._queued_audio_ms = max(0.0, self._queued_audio_ms - audio_ms(event))
        kind = event.get("type")
        if kind == APPEND:
            self._unacked.append(event)
            self._unacked_audio_ms += audio_ms(event)
            self._trim_unacked()
        elif kind in CONFIRMED_LATER:
            self._unacked.append(event)
            if kind == CREATE:
                self._creates_in_flight += 1

    def _enforce_backlog(self) -> float:
        if self._queued_audio_ms <= self.max_backlog_ms or not self.live:
            return 0.0
        dropped = 0.0
        kept: deque[JsonEvent] = deque()
        for event in self._queue:
            ms = audio_ms(event)
            if ms and self._queued_audio_ms - dropped > self.max_backlog_ms:
                dropped += ms
                continue
            kept.append(event)
        self._queue = kept
        self._queued_audio_ms -= dropped
        self.dropped_audio_ms += dropped
        return dropped

    def _trim_unacked(self) -> None:
        """Keep at most TURN_AUDIO_KEEP_MS of unconfirmed audio (the oldest goes)."""
        while self._unacked_audio_ms > TURN_AUDIO_KEEP_MS:
            for event in self._unacked:
                if event.get("type") == APPEND:
                    self._unacked.remove(event)
                    self._unacked_audio_ms -= audio_ms(event)
                    break
            else:
                self._unacked_audio_ms = 0.0

    # -- the server's answers --------------------------------------------------------------

    def response_started(self) -> None:
        """``response.created``: ours, or one the server's VAD started."""
        self._response_active = True
        self._creates_in_flight = max(0, self._creates_in_flight - 1)
        self.confirm(CREATE)

    def response_done(self) -> None:
        """``response.done``: a held ``response.create`` may go now."""
        self._response_active = False
        self._release_held()

    def _release_held(self) -> None:
        if self._held_create is None or self._response_active or self._creates_in_flight:
            return
        held, self._held_create = self._held_create, None
        self._queue.append(held)

    def confirm(self, kind: str, item_id: str | None = None) -> None:
        """The server confirmed an event of ``kind``: forget it and, for a commit or a
        clear, the audio before it (without one of ours, the server's VAD committed:
        all the unconfirmed audio is in)."""
        if kind in ("input_audio_buffer.commit", "input_audio_buffer.clear"):
            mine = any(e.get("type") == kind for e in self._unacked)
            kept: deque[JsonEvent] = deque()
            done = False
            for event in self._unacked:
                etype = event.get("type")
                if not done and etype in (APPEND, kind):
                    done = mine and etype == kind
                    continue
                kept.append(event)
            self._unacked = kept
            self._unacked_audio_ms = sum(audio_ms(e) for e in kept)
            return
        for event in self._unacked:
            if event.get("type") != kind:
                continue
            if kind == "conversation.item.create" and event["item"].get("id") != item_id:
                continue
            self._unacked.remove(event)
            return

    def rejected(self, client_event_id: str | None, code: str | None) -> JsonEvent | None:
        """The server refused one of our events: it arrived, and is not sent again.
        Returns the refused event (None when it was not ours, or is not kept)."""
        if client_event_id is None:
            return None
        for event in self._unacked:
            if event.get("event_id") == client_event_id:
                self._unacked.remove(event)
                break
        else:
            return None
        if event.get("type") == CREATE:
            self._creates_in_flight = max(0, self._creates_in_flight - 1)
            if code == ACTIVE_RESPONSE:
                # a response the server started itself raced ours: ask again after it
                self._response_active = True
                if self._held_create is None:
                    self._held_create = self._ev.response_create()
            self._release_held()
        return event

    # -- reconnecting ----------------------------------------------------------------------

    def reconnect(
        self, session: Mapping[str, Any], conversation: Conversation, *, resume_response: bool
    ) -> JsonEvent:
        """A new connection: queue, ahead of everything queued meanwhile, the whole
        session, the conversation replayed as items, and what was sent but never
        confirmed; at most one ``response.create`` among all of it. Returns the
        ``session.update`` (so its answer can be tracked)."""
        update = self._ev.session_update(session)
        head: list[JsonEvent] = [update]  # no response.create among these
        head.extend(replay_events(self._ev, conversation.items))
        unacked = list(self._unacked)
        wants_response = resume_response or self._held_create is not None
        wants_response = wants_response or any(e.get("type") == CREATE for e in unacked)
        head.extend(e for e in unacked if e.get("type") != CREATE)
        self._unacked.clear()
        self._unacked_audio_ms = 0.0
        self._response_active = False
        self._creates_in_flight = 0
        self._held_create = None
        queued = list(self._queue)
        self._queue = deque(head)
        self._queued_audio_ms = sum(audio_ms(e) for e in head)
        for event in queued:
            self.put(event)  # creates among them obey the one-at-a-time rule again
        if wants_response:
            self.request_response()  # last: one response answers all of it
        return update


def replay_events(events: ClientEvents, items: Iterable[Item]) -> list[JsonEvent]:
    """The finished conversation as ``conversation.item.create`` events, item ids kept
    so the new session's items line up with the ones already shown. An assistant turn
    cut short is replayed as the part that was heard."""
    out: list[JsonEvent] = []
    for item in items:
        event = _replay_event(events, item)
        if event is not None:
            event["item"]["id"] = item.id
            out.append(event)
    return out


def _replay_event(events: ClientEvents, item: Item) -> JsonEvent | None:
    if item.type == "function_call":
        if not item.call_id or not item.name:
            return None
        return events.function_call(item.call_id, item.name, item.arguments or "{}")
    if item.type == "function_call_output":
        if not item.call_id:
            return None
        return events.function_call_output(item.call_id, item.output or "")
    if item.role == "user":
        text = item.text.strip()
        return events.user_text(text) if text else None
    if item.role == "assistant":
        text = (item.heard_text if item.truncated_at_ms is not None else item.text).strip()
        return events.assistant_text(text) if text else None
    return None


__all__ = ["CONFIRMED_LATER", "Outbox", "audio_ms", "replay_events"]
