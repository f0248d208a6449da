"""One connection at a time: the outbox pumped into the socket, the socket's events
into the conversation.

:meth:`Link.serve` is what the supervisor runs for each connection: it sends the whole
session and the replay first (the outbox's :meth:`~voicecli.protocol.outbox.Outbox.
reconnect`), then runs the sender and the receiver until the connection ends, the
engine closes or a rotation is due, and says why it ended. Both loops end by the
socket's close (the explicit stop); the reap only collects them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from voicecli.connection import Connection, ConnectionLost, FatalServerError, SessionExpired
from voicecli.engine.bus import StatusBus
from voicecli.engine.eventlog import sanitize
from voicecli.engine.notifications import EventLogged, Notice
from voicecli.engine.supervisor import ROTATE
from voicecli.engine.tasks import reap
from voicecli.protocol.client_events import JsonEvent
from voicecli.protocol.conversation import Conversation
from voicecli.protocol.failures import error_kind
from voicecli.protocol.notifications import Notification, ServerError
from voicecli.protocol.outbox import Outbox
from voicecli.session import SessionModel

Direction = Literal["sent", "received"]

MIN_SESSION_S = 10.0
"""A session renewed after an expiry that expires again sooner than this is retried with
backoff, not rotated at once (a server whose sessions end at once must not make the
client spin)."""


class Link:
    """See the module docstring. :meth:`send` works from the start; :meth:`wire` hands
    over the engine's reactions before the first :meth:`serve`."""

    def __init__(
        self,
        outbox: Outbox,
        conversation: Conversation,
        session: SessionModel,
        bus: StatusBus,
        *,
        secrets: tuple[str, ...],
    ) -> None:
        self._outbox = outbox
        self._conversation = conversation
        self._session = session
        self._bus = bus
        self._secrets = secrets
        self._handle: Callable[[Notification], None] = _unwired
        self._log_event: Callable[[Direction, Mapping[str, Any]], None] = _unwired
        self._on_event: Callable[[dict[str, Any]], None] = _unwired
        self._new_connection: Callable[[], None] = _unwired
        self._forget_cut_response: Callable[[], None] = _unwired
        self._fail: Callable[[str], None] = _unwired
        self._failed: Callable[[], bool] = lambda: False
        self._drained: Callable[[], None] = _unwired
        self.ready = asyncio.Event()
        """Set when the outbox may have something to send (the sender wakes)."""
        self.connected = asyncio.Event()
        self.updates: dict[str, Mapping[str, Any]] = {}
        """session.updates sent and not answered yet, oldest first: event_id -> session."""
        self.resume_response = False
        """The last connection cut a response: ask again after the replay."""
        self._just_expired = False  # the last connection ended by the session's expiry

    def wire(
        self,
        *,
        handle: Callable[[Notification], None],
        log_event: Callable[[Direction, Mapping[str, Any]], None],
        on_event: Callable[[dict[str, Any]], None],
        new_connection: Callable[[], None],
        forget_cut_response: Callable[[], None],
        fail: Callable[[str], None],
        failed: Callable[[], bool],
        drained: Callable[[], None],
    ) -> None:
        """The engine's reactions: ``handle`` one notification; ``log_event`` journals a
        sanitized wire event; ``on_event`` sees every raw server event (tool calls);
        ``new_connection`` resets what belongs to one connection; ``forget_cut_response``
        drops a response the connection cut; ``fail`` ends the engine (``failed`` says
        it did); ``drained`` says the outbox has room again."""
        self._handle, self._log_event, self._on_event = handle, log_event, on_event
        self._new_connection, self._forget_cut_response = new_connection, forget_cut_response
        self._fail, self._failed, self._drained = fail, failed, drained

    def send(self, event: JsonEvent) -> None:
        """Queue a client event (never blocks); a stalled socket drops old mic audio."""
        dropped = self._outbox.put(event)
        if dropped:
            first = self._bus.status.dropped_audio_ms == 0
            self._bus.set(dropped_audio_ms=self._outbox.dropped_audio_ms)
            if first:
                self._bus.publish(
                    Notice("warning", "the connection is stalled: dropping the oldest mic audio")
                )
        self.ready.set()

    async def serve(
        self, conn: Connection, closing: asyncio.Event, rotate_now: asyncio.Event
    ) -> str | None:
        """Configure the session, pump until the connection ends; returns why it ended
        (None when closing, :data:`ROTATE` for a new session)."""
        began = time.monotonic()
        self._session.reconnected()
        self.updates.clear()
        self._new_connection()
        self._outbox.reconnect(
            self._session.payload(), self._conversation, resume_response=self.resume_response
        )
        self.resume_response = False
        self.ready.set()
        self._bus.set_connection("connected", "")
        self.connected.set()
        sender = asyncio.create_task(self._send_loop(conn), name="voicecli-send")
        receiver = asyncio.create_task(self._receive_loop(conn), name="voicecli-recv")
        stop = asyncio.create_task(closing.wait(), name="voicecli-closing")
        rotate = asyncio.create_task(rotate_now.wait(), name="voicecli-rotate")
        tasks = (sender, receiver, stop, rotate)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            # the explicit stop: the receiver ends with its socket, the sender wakes to
            # find it closed; the reap below only collects them
            with contextlib.suppress(Exception):
                await conn.close()
            self.ready.set()
        finally:
            self.connected.clear()
            await reap(tasks)
        if stop in done:
            return None
        if rotate in done:
            return ROTATE
        for task in (receiver, sender):
            if task in done and not task.cancelled():
                exc = task.exception()
                if isinstance(exc, FatalServerError):
                    self._fail(str(exc))
                    return "fatal"
                # an expiry is not a loss: a new session; but a new session that
                # expires at once again backs off (no spinning against such a server)
                again = self._just_expired and time.monotonic() - began < MIN_SESSION_S
                self._just_expired = isinstance(exc, SessionExpired)
                if self._just_expired and not again:
                    self._forget_cut_response()
                    self._bus.publish(Notice("info", f"{exc}: renewing"))
                    return ROTATE
                if exc is not None:
                    return str(exc) or type(exc).__name__
        return "closed by server"

    async def _send_loop(self, conn: Connection) -> None:
        while conn.is_open:
            event = self._outbox.peek()
            if event is None:
                self.ready.clear()
                await self.ready.wait()
                continue
            self._conversation.record_sent(event)
            await conn.send(event)  # ConnectionLost: the event stays, sent again later
            self._outbox.sent(event)
            if event.get("type") == "session.update":
                self._session.update_sent()
                self.updates[str(event.get("event_id"))] = event.get("session") or {}
            if self._outbox.drained_enough:
                self._drained()
            self._journal_and_publish("sent", event)

    async def _receive_loop(self, conn: Connection) -> None:
        async for event in conn:
            self._journal_and_publish("received", event)
            notes = self._conversation.apply(event)
            expired = False
            for note in notes:
                self._handle(note)
                kind = error_kind(note.code) if isinstance(note, ServerError) else None
                if isinstance(note, ServerError) and kind == "fatal":
                    # the server closes right after: retrying cannot help
                    self._fail(f"the server refused the session: {note.message}")
                expired = expired or kind == "expired"
            self._on_event(event)
            if self._failed():
                return
            if expired:
                raise SessionExpired("the session reached its time limit", code="session_expired")
        raise ConnectionLost("closed by server")

    def _journal_and_publish(self, direction: Direction, event: Mapping[str, Any]) -> None:
        sanitized = sanitize(event, self._secrets)
        self._log_event(direction, sanitized)
        self._bus.publish(EventLogged(direction, sanitized))


def _unwired(*_: Any) -> None:
    raise RuntimeError("Link.wire() was not called")


__all__ = ["MIN_SESSION_S", "Link"]
