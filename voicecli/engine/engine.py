"""The engine: wires the parts of one voice conversation together.

Data flows one way through parts that each do one job:

* mic blocks -> :class:`~voicecli.engine.mic.MicPipeline` (level, echo handling,
  endpointing, turn control) -> actions -> client events;
* client events -> :class:`~voicecli.protocol.outbox.Outbox` (one response at a time,
  backlog, reliable delivery, replay) -> the sender -> the connection;
* server events -> :class:`~voicecli.protocol.conversation.Conversation` ->
  notifications -> the :class:`~voicecli.engine.playback.PlaybackTracker` (speaker,
  barge-in, truncation, recording), the :class:`~voicecli.engine.journal.Journal`
  (history, through the writer thread) and the subscribers (the UI, ``ask``);
* the :class:`~voicecli.session.SessionModel` is the session's one shape: what every
  (re)connect sends, what the editor and the turn-mode key change;
* the :class:`~voicecli.engine.supervisor.Supervisor` keeps a connection up.

Every task the engine starts ends by an explicit close (the mic source is stopped, the
sender and receiver end with their connection) and is awaited before :meth:`Engine.run`
returns, even when ``run`` itself is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Literal

import numpy as np

from voicecli.audio.devices import AudioDeviceLost, PortAudioMissing
from voicecli.audio.sinks import AudioSink, NullSink
from voicecli.audio.sources import AudioSource
from voicecli.config import Config
from voicecli.connection import Connection, ConnectionLost, FatalServerError
from voicecli.engine.cost import estimate_cost
from voicecli.engine.eventlog import sanitize
from voicecli.engine.journal import Journal
from voicecli.engine.mic import MicPipeline
from voicecli.engine.notifications import ConnectionChanged, EventLogged, Notice, StatusChanged
from voicecli.engine.playback import PlaybackTracker
from voicecli.engine.status import ConnectionState, EngineStatus, TurnMode, next_turn_mode
from voicecli.engine.supervisor import ROTATE, Backoff, Supervisor
from voicecli.engine.tasks import reap
from voicecli.engine.turns import Action, Append, BargeIn, Clear, Commit
from voicecli.history import SessionLog
from voicecli.protocol.client_events import ClientEvents, JsonEvent
from voicecli.protocol.conversation import Conversation
from voicecli.protocol.notifications import (
    AudioDelta,
    AudioDone,
    InputCleared,
    InputCommitted,
    ItemAdded,
    ItemTruncated,
    Notification,
    ResponseDone,
    ResponseStarted,
    ServerError,
    SessionChanged,
    SpeechStarted,
    SpeechStopped,
    TranscriptDone,
    TranscriptFailed,
)
from voicecli.protocol.outbox import ACTIVE_RESPONSE, Outbox
from voicecli.session import SessionModel, SessionShapeError
from voicecli.writer import DiskWriter

log = logging.getLogger(__name__)

FATAL_CODES = frozenset(
    {"invalid_api_key", "missing_model", "model_not_found", "beta_api_shape_disabled"}
)
"""Error codes after which the server closes (3000/4000): never retried."""
LEVEL_INTERVAL_S = 0.05
"""Mic-level-only status updates are coalesced to at most 20 per second."""

DEFAULT_BACKOFF = Backoff()
Subscriber = Callable[[Notification], None]
_DEVICE_ERRORS = (OSError, LookupError, PortAudioMissing, ValueError)
"""What opening or using an audio device raises (AudioDeviceError is an OSError,
DeviceNotFound a LookupError, PortAudioMissing a RuntimeError)."""


class Engine:
    """Drives one voice conversation; see the module docstring.

    ``source`` None means text only (no mic); ``sink`` None plays nowhere (a
    :class:`NullSink`). ``history``: the session log finished turns go to; "auto"
    opens a new one under ``config.data_dir`` when :meth:`run` starts (and closes it),
    None keeps none. ``live``: the source runs on its own clock (a microphone), so when
    the socket stalls the oldest audio beyond ``max_backlog_s`` is dropped; a file
    source (``live=False``) just waits. ``max_turns`` limits the committed user turns
    (``voicecli ask``: one). ``backoff`` governs reconnects (``max_attempts=0``: fail on
    the first error). :meth:`run` starts the sink and closes it (and the source) when it
    returns; with ``config.audio.record`` set it records the microphone and what was
    heard of the assistant to that stereo WAV. A speaker that cannot start, or a
    microphone that cannot open or is lost mid-conversation, is reported as a
    :class:`Notice` (and ``status.mic == "unavailable"``); the conversation goes on in
    text mode. Call the action methods on the loop thread; they never block.
    """

    def __init__(
        self,
        config: Config,
        *,
        source: AudioSource | None = None,
        sink: AudioSink | None = None,
        api_key: str | None = None,
        history: SessionLog | Literal["auto"] | None = "auto",
        backoff: Backoff = DEFAULT_BACKOFF,
        end_turn_at_eof: bool = True,
        max_turns: int | None = None,
        rotate_margin_s: float = 120.0,
        live: bool | None = None,
        connection_factory: Callable[[], Connection] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.conversation = Conversation()
        self.session = SessionModel(config)
        self._ev = ClientEvents()
        self._source = source
        self._api_key = api_key
        self._secrets = (api_key,) if api_key else ()
        self._own_history = history == "auto"
        self._end_turn_at_eof = end_turn_at_eof
        self._rotate_margin_s = rotate_margin_s
        self._live = live if live is not None else bool(getattr(source, "realtime", True))

        self._subscribers: list[Subscriber] = []
        self._status = EngineStatus(
            connection="connecting",
            endpoint=str(config.connection.url).split("?", 1)[0],
            turn_mode=self.session.turn_mode,
            mic="off",
        )
        self._last_level_publish = 0.0

        self._outbox = Outbox(
            self._ev, max_backlog_ms=float(config.audio.max_backlog_s) * 1000.0, live=self._live
        )
        self._outbox_ready = asyncio.Event()
        self._outbox_drained = asyncio.Event()
        self._update_ids: list[str] = []  # session.updates sent, oldest first, unanswered
        self._mic = MicPipeline(config, self.session.turn_mode, max_turns=max_turns)
        self._status = replace(self._status, echo_mode=self._mic.echo_mode)
        self._writer = DiskWriter()
        self._journal = Journal(self.conversation, self._writer, self._publish)
        if isinstance(history, SessionLog):
            self._journal.history = history
        self._playback = PlaybackTracker(
            sink if sink is not None else NullSink(),
            self.conversation,
            self._ev,
            output_latency=float(config.audio.output_latency),
            record_to=config.audio.record,
            send=self._send,
            set_status=self._set_status,
            publish=self._publish,
            settled=self._settled,
        )
        self._supervisor = Supervisor(
            connection_factory or (lambda: Connection(self.config, api_key=self._api_key)),
            self._serve,
            backoff=backoff,
            rng=rng or random.Random(),
            set_connection=self._set_connection,
            state=lambda: self._status.connection,
            warn=lambda text: self._publish(Notice("warning", text)),
            lost=self._connection_lost,
            fail=self._fail,
            endpoint=self._status.endpoint,
        )
        self._connected = asyncio.Event()
        self._rotate_timer: asyncio.TimerHandle | None = None
        self._resume_response = False
        self._fatal = False

    # -- public surface --------------------------------------------------------------

    @property
    def status(self) -> EngineStatus:
        return self._status

    @property
    def turn_mode(self) -> TurnMode:
        return self._mic.turns.mode

    @property
    def history(self) -> SessionLog | None:
        """The session log finished turns go to (None: none)."""
        return self._journal.history

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Receive every protocol and engine notification, on the loop thread."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    async def run(self) -> None:
        """Connect, pump both ways, reconnect when the connection drops; return after
        :meth:`close` or a fatal error."""
        self._open_history()
        await self._playback.start()
        # echo to cancel only from a speaker into a microphone (a device source has ADC times)
        mic = self._source is not None and hasattr(self._source, "block_adc_time")
        self._mic.attach_far_end(getattr(self._playback.sink, "tap", None) if mic else None)
        self._set_status(echo_mode=self._mic.echo_mode)
        if self._mic.notice is not None:
            self._publish(Notice("warning", self._mic.notice))
        mic_task = asyncio.create_task(self._mic_loop(), name="voicecli-mic")
        try:
            await self._supervisor.run()
        finally:
            self._stop_source()
            await reap([mic_task])
            if self._rotate_timer is not None:
                self._rotate_timer.cancel()
            await self._playback.close()
            if self._own_history:
                self._journal.close()
            # every turn on disk (and announced: the writer's callbacks run first)
            await self._writer.aclose()
            if not self._fatal:
                self._set_connection("closed", "")

    async def close(self) -> None:
        """Stop: cancels a reconnect wait too. :meth:`run` returns soon after."""
        self._supervisor.close()
        self._stop_source()
        conn = self._supervisor.connection
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    def reconnect_now(self) -> bool:
        """Skip the backoff wait and try at once (also resumes after
        :meth:`stop_reconnecting`). False when there is nothing to reconnect."""
        return self._supervisor.reconnect_now()

    def stop_reconnecting(self) -> bool:
        """Stop the reconnect attempts; the conversation is kept, text typed meanwhile
        waits, and :meth:`reconnect_now` resumes. False when not reconnecting."""
        return self._supervisor.stop_reconnecting()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    # actions -------------------------------------------------------------------------

    def push_to_talk(self) -> None:
        self._do(self._mic.turns.push_to_talk())
        self._refresh_mic()

    def commit(self) -> None:
        self._do(self._mic.turns.commit())
        self._refresh_mic()

    def cancel(self) -> None:
        """Stop the assistant now: flush playback, cancel, truncate to what was heard."""
        self._barge_in(server_cancels=False)

    def clear_input(self) -> None:
        self._do(self._mic.turns.clear())
        self._refresh_mic()

    def toggle_mute(self) -> None:
        self._do(self._mic.turns.set_muted(not self._mic.turns.muted))
        self._refresh_mic()

    def set_turn_mode(self, mode: TurnMode) -> None:
        if mode == self.session.turn_mode and mode == self._mic.turns.mode:
            return
        self._send_update(self.session.set_turn_mode(mode))
        self._follow_turn_mode()

    def cycle_turn_mode(self) -> TurnMode:
        mode = next_turn_mode(self._mic.turns.mode)
        self.set_turn_mode(mode)
        return mode

    def send_text(self, text: str, *, respond: bool = True) -> None:
        """Send a typed user message (interrupting the assistant) and ask for a reply:
        the reply is asked for once the interrupted response is over."""
        text = text.strip()
        if not text:
            return
        self._barge_in(server_cancels=False)
        event = self._ev.user_text(text)
        # our own id: the server's item.added for it confirms that it arrived
        event["item"]["id"] = f"item_{secrets.token_hex(8)}"
        self._send(event)
        if respond:
            self._playback.mark_speech_end()
            self._outbox.request_response()
            self._outbox_ready.set()

    def update_session(self, changes: Mapping[str, Any]) -> str:
        """Change the session (GA-shaped, partial); the session model completes it to
        whole objects, keeps it for reconnects and switches the turn mode with
        ``turn_detection``. Returns the event_id of the ``session.update`` sent ("" when
        the change could not be made: a notice says why)."""
        try:
            update = self.session.edit(changes)
        except SessionShapeError as exc:
            self._publish(Notice("error", f"session not changed: {exc}"))
            return ""
        event_id = self._send_update(update)
        self._follow_turn_mode()
        return event_id

    # -- session ---------------------------------------------------------------------

    def _send_update(self, update: Mapping[str, Any]) -> str:
        event = self._ev.session_update(update)
        self._send(event)
        return str(event["event_id"])

    def _follow_turn_mode(self) -> None:
        """Make the client's turn control match the session model's turn mode."""
        mode = self.session.turn_mode
        if mode != self._mic.turns.mode:
            self._do(self._mic.turns.set_mode(mode))
        self._set_status(turn_mode=mode)
        self._refresh_mic()

    def _open_history(self) -> None:
        if not self._own_history or self._journal.history is not None:
            return
        try:
            self._journal.history = SessionLog.create(self.config.data_dir, kind="session")
        except OSError as exc:
            self._publish(Notice("error", f"no session history: {exc}"))
            return
        if self.config.storage.log_events:
            self._journal.open_events(self._journal.history)

    # -- one connection --------------------------------------------------------------

    async def _serve(self, conn: Connection, first: bool) -> str | None:
        """Configure the session, pump until the connection ends; returns why it ended
        (None when closing)."""
        self.session.reconnected()
        self._update_ids.clear()
        self._playback.new_connection()
        self._outbox.reconnect(
            self.session.payload(), self.conversation, resume_response=self._resume_response
        )
        self._resume_response = False
        self._outbox_ready.set()
        self._set_connection("connected", "")
        self._connected.set()
        sup = self._supervisor
        sender = asyncio.create_task(self._send_loop(conn), name="voicecli-send")
        receiver = asyncio.create_task(self._receive_loop(conn), name="voicecli-recv")
        closing = asyncio.create_task(sup.closing.wait(), name="voicecli-closing")
        rotate = asyncio.create_task(sup.rotate_now.wait(), name="voicecli-rotate")
        tasks = (sender, receiver, closing, rotate)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            # the explicit stop: the receiver ends with its socket, the sender wakes to
            # find it closed; the reap below only collects them
            with contextlib.suppress(Exception):
                await conn.close()
            self._outbox_ready.set()
        finally:
            self._connected.clear()
            await reap(tasks)
        if closing in done:
            return None
        if rotate in done:
            return ROTATE
        for task in (receiver, sender):
            if task in done and not task.cancelled():
                exc = task.exception()
                if isinstance(exc, FatalServerError):
                    self._fail(str(exc))
                    return "fatal"
                if exc is not None:
                    return str(exc) or type(exc).__name__
        return "closed by server"

    def _connection_lost(self, reason: str) -> None:
        self._forget_cut_response()
        self._publish(Notice("warning", f"connection lost ({reason}); reconnecting"))

    def _forget_cut_response(self) -> None:
        """The connection died mid-response: that response will never finish. Fold a
        local deletion of its items and its end into the conversation (so the UI drops
        the half answer and nothing waits for it), and ask again after the replay."""
        active = self.conversation.active_response_id
        if active is None:
            return
        self._resume_response = True
        self._playback.forget_response(active)
        for item in list(self.conversation.items):
            if item.response_id == active:
                for note in self.conversation.apply(
                    {"type": "conversation.item.deleted", "item_id": item.id}
                ):
                    self._publish(note)
        # quietly: subscribers never saw this response finish, and must not now
        self.conversation.apply(
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

    # -- sending ---------------------------------------------------------------------

    def _send(self, event: JsonEvent) -> None:
        dropped = self._outbox.put(event)
        if dropped:
            first = self._status.dropped_audio_ms == 0
            self._set_status(dropped_audio_ms=self._outbox.dropped_audio_ms)
            if first:
                self._publish(
                    Notice("warning", "the connection is stalled: dropping the oldest mic audio")
                )
        self._outbox_ready.set()

    async def _send_loop(self, conn: Connection) -> None:
        while conn.is_open:
            event = self._outbox.peek()
            if event is None:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            self.conversation.record_sent(event)
            await conn.send(event)  # ConnectionLost: the event stays, sent again later
            self._outbox.sent(event)
            if event.get("type") == "session.update":
                self.session.update_sent()
                self._update_ids.append(str(event.get("event_id")))
            if self._outbox.drained_enough:
                self._outbox_drained.set()
            sanitized = sanitize(event, self._secrets)
            self._journal.log_event("sent", sanitized)
            self._publish(EventLogged("sent", sanitized))

    # -- receiving -------------------------------------------------------------------

    async def _receive_loop(self, conn: Connection) -> None:
        async for event in conn:
            sanitized = sanitize(event, self._secrets)
            self._journal.log_event("received", sanitized)
            self._publish(EventLogged("received", sanitized))
            notes = self.conversation.apply(event)
            for note in notes:
                self._handle(note)
                if isinstance(note, ServerError) and note.code in FATAL_CODES:
                    # the server closes right after: retrying cannot help
                    self._fail(f"the server refused the session: {note.message}")
            if self._fatal:
                return
            if any(isinstance(n, ServerError) and n.code == "session_expired" for n in notes):
                raise ConnectionLost("session expired")
        raise ConnectionLost("closed by server")

    def _handle(self, note: Notification) -> None:
        """React to one protocol notification, then forward it."""
        after: list[Callable[[], None]] = []  # what must follow the note itself
        if isinstance(note, AudioDelta):
            self._playback.on_audio(note)
        elif isinstance(note, AudioDone):
            self._playback.on_audio_done(note)
        elif isinstance(note, ResponseStarted):
            self._outbox.response_started()
            self._set_status(response="generating")
        elif isinstance(note, ResponseDone):
            self._on_response_done(note)
            after.append(lambda: self._log_response(note))
        elif isinstance(note, SpeechStarted):
            self._set_status(vad="speech")
            td = (self.conversation.session or {}).get("audio", {}).get("input", {})
            interrupt = bool((td.get("turn_detection") or {}).get("interrupt_response", True))
            self._barge_in(server_cancels=interrupt)
        elif isinstance(note, SpeechStopped):
            self._set_status(vad="silence")
            self._playback.mark_speech_end()
        elif isinstance(note, InputCommitted):
            self._outbox.confirm("input_audio_buffer.commit")
            self._mic.turns.server_committed()
        elif isinstance(note, InputCleared):
            self._outbox.confirm("input_audio_buffer.clear")
            self._mic.turns.server_cleared()
        elif isinstance(note, ItemAdded):
            self._outbox.confirm("conversation.item.create", note.item_id)
            after.append(lambda: self._on_item_added(note.item_id))
        elif isinstance(note, (TranscriptDone, TranscriptFailed)):
            item = self.conversation.item(note.item_id)
            if item is not None and item.role == "user":
                after.append(lambda: self._journal.log(note.item_id))
        elif isinstance(note, ItemTruncated):
            self._playback.truncated(note.item_id)
            after.append(lambda: self._journal.flush_item(note.item_id))
        elif isinstance(note, ServerError):
            self._on_server_error(note)
        elif isinstance(note, SessionChanged):
            if not note.created:
                self._on_session_updated(note.session)
            self._set_status(expires_at=self.conversation.expires_at)
            self._schedule_rotation()
        self._publish(note)
        for step in after:
            step()
        self._outbox_ready.set()

    def _on_item_added(self, item_id: str) -> None:
        item = self.conversation.item(item_id)
        # a typed message is final at once; spoken input is when its transcript is
        # (or at once, when transcription is off and no transcript will come)
        if item is not None and item.role == "user":
            typed = any(p.type == "input_text" for p in item.parts)
            if typed or not self._transcription_enabled():
                self._journal.log(item.id)

    def _on_session_updated(self, session: Mapping[str, Any]) -> None:
        if self._update_ids:
            del self._update_ids[0]  # the server answers updates in order
        follow = self.session.session_updated(session)
        if follow is not None:
            self._follow_turn_mode()
            self._publish(
                Notice(
                    "warning",
                    f"the server's turn detection differs from what was asked: now {follow}",
                )
            )

    def _on_response_done(self, note: ResponseDone) -> None:
        self._outbox.response_done()
        self._playback.response_done(note.response_id)
        usage = note.usage
        if usage is not None:
            self._set_status(
                input_tokens=self._status.input_tokens + usage.input_tokens,
                output_tokens=self._status.output_tokens + usage.output_tokens,
                cost_usd=self._status.cost_usd + estimate_cost(usage),
            )
        if (
            not self._playback.is_playing and self._status.response != "cancelled"
        ) or self._status.response == "generating":
            self._set_status(response="idle")
        self._maybe_rotate()

    def _log_response(self, note: ResponseDone) -> None:
        """The response's items are final unless they still play or wait for their
        truncation; those are logged once that settles."""
        playing = self._playback.playing_items() if self._playback.is_playing else set()
        unsettled = self._playback.truncating_items() | playing
        for item in self.conversation.items:
            if item.response_id != note.response_id:
                continue
            if item.id in unsettled:
                self._journal.defer(item.id, note)
            else:
                self._journal.log(item.id, note)

    def _on_server_error(self, note: ServerError) -> None:
        event_id = note.client_event_id
        refused = self._outbox.rejected(event_id, note.code)
        item_id = self._playback.rejected(event_id)
        if item_id is not None:
            self._journal.flush_item(item_id)
        if event_id is not None and event_id in self._update_ids:
            self._update_ids.remove(event_id)
            self.session.update_rejected()
        if note.code == "session_expired" or note.code in FATAL_CODES:
            return  # the receiver reconnects, or fails once with its own notice
        if note.code == "response_cancel_not_active":
            return  # a race with the response ending by itself: harmless
        if refused is not None and note.code == ACTIVE_RESPONSE:
            return  # our response.create raced the server's own: asked again after it
        self._publish(Notice("error", f"server error: {note.message}"))

    def _transcription_enabled(self) -> bool:
        session = self.conversation.session or {}
        return bool(session.get("audio", {}).get("input", {}).get("transcription"))

    # -- playback ----------------------------------------------------------------------

    def _barge_in(self, *, server_cancels: bool) -> None:
        if self._playback.barge_in(server_cancels=server_cancels):
            self._journal.flush_settled(self._playback.truncating_items())

    def _settled(self) -> None:
        """Playback drained, or a truncation settled: log what is final now."""
        self._journal.flush_settled(self._playback.truncating_items())
        if self.conversation.active_response_id is None and self._status.response in (
            "playing",
            "generating",
            "cancelled",
        ):
            self._set_status(response="idle")
        self._maybe_rotate()

    # -- rotation --------------------------------------------------------------------

    def _schedule_rotation(self) -> None:
        """Check for a rotation when the margin before expiry begins (an idle session
        has no response ending to trigger the check)."""
        expires = self.conversation.expires_at
        if self._rotate_timer is not None:
            self._rotate_timer.cancel()
            self._rotate_timer = None
        if expires is None:
            return
        delay = max(0.0, expires - self._rotate_margin_s - time.time())
        self._rotate_timer = asyncio.get_running_loop().call_later(delay, self._maybe_rotate)

    def _maybe_rotate(self) -> None:
        """Reconnect proactively before the session expires, at a quiet moment."""
        quiet = (
            self.conversation.active_response_id is None
            and not self._playback.is_playing
            and not self._mic.turns.in_turn
            and self._status.vad == "silence"
        )
        if self._supervisor.expiring(self.conversation.expires_at, self._rotate_margin_s, quiet):
            self._publish(Notice("info", "renewing the session before it expires"))

    # -- mic -------------------------------------------------------------------------

    def _stop_source(self) -> None:
        stop = getattr(self._source, "stop", None)
        if callable(stop):
            stop()

    async def _until_connected_or_closing(self) -> bool:
        """True once connected; False when the engine closes first."""
        waits = [
            asyncio.create_task(self._connected.wait()),
            asyncio.create_task(self._supervisor.closing.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await reap(waits)
        return not self._supervisor.closing.is_set()

    async def _mic_loop(self) -> None:
        if self._source is None or not await self._until_connected_or_closing():
            return
        closing = self._supervisor.closing
        try:
            async with self._source as source:
                self._set_status(mic="live")
                self._refresh_mic()
                async for block in source.blocks():
                    if closing.is_set():
                        return
                    if not self._live and self._outbox.over_backlog:
                        # a file can wait for the socket; a microphone cannot
                        self._outbox_drained.clear()
                        await self._outbox_drained.wait()
                    self._on_block(block)
                    overflows = int(getattr(source, "overflows", 0))
                    if overflows != self._status.overflows:
                        self._set_status(overflows=overflows)
        except AudioDeviceLost as exc:
            self._mic_lost(exc)
            return
        except Exception as exc:  # any source failure ends the mic, loudly
            if not isinstance(exc, _DEVICE_ERRORS):  # e.g. a raw PortAudioError
                log.warning("the audio source failed", exc_info=True)
            self._set_status(mic="unavailable")
            self._publish(Notice("error", f"microphone unavailable: {exc}"))
            return
        if closing.is_set():
            return
        if self._end_turn_at_eof and self._mic.turns.client_decides:
            self.commit()
        self._set_status(mic="off")

    def _mic_lost(self, exc: AudioDeviceLost) -> None:
        """The microphone went away mid-conversation: drop the half-said turn (it would
        be answered as if complete) and go on in text mode."""
        if self._mic.turns.in_turn:
            self._do(self._mic.turns.clear())
        self._set_status(mic="unavailable", vad="silence", mic_level=0.0)
        self._publish(Notice("warning", f"microphone lost ({exc}): continuing in text mode"))

    def _on_block(self, block: np.ndarray[Any, np.dtype[np.int16]]) -> None:
        playback = self._playback
        playback.check_speaker()
        step = self._mic.feed(
            block,
            playing=playback.is_playing,
            playback_dbfs=playback.sink.level_dbfs,
            adc_time=getattr(self._source, "block_adc_time", None),
        )
        playback.record_mic(
            step.block if step.block is not None else block, muted=self._mic.turns.muted
        )
        if step.notice is not None:
            self._publish(Notice("warning", step.notice))
            self._set_status(echo_mode=self._mic.echo_mode)
        if step.vad is not None:
            self._set_status(vad=step.vad)
        if step.turn_ended:
            playback.mark_speech_end()
        self._do(step.actions)
        playback.note_first_sample()
        self._set_level(step.level)
        self._refresh_mic()

    def _do(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Append):
                self._send(self._ev.append(action.pcm))
            elif isinstance(action, Commit):
                if not self._playback.speech_end_marked or self._mic.turns.mode != "local-vad":
                    self._playback.mark_speech_end()
                self._send(self._ev.commit())
                if action.respond:
                    self._outbox.request_response()
            elif isinstance(action, Clear):
                self._send(self._ev.clear())
            elif isinstance(action, BargeIn):
                self._barge_in(server_cancels=False)
        self._outbox_ready.set()

    def _refresh_mic(self) -> None:
        if self._source is None or self._status.mic in ("unavailable", "off"):
            return
        turns = self._mic.turns
        if turns.muted:
            mic = "muted"
        elif turns.in_turn or not turns.client_decides:
            mic = "sending"
        else:
            mic = "live"
        if mic != self._status.mic:
            self._set_status(mic=mic)

    # -- status & publishing ---------------------------------------------------------

    def _set_level(self, level: float) -> None:
        now = time.monotonic()
        if now - self._last_level_publish < LEVEL_INTERVAL_S:
            self._status = replace(self._status, mic_level=level)
            return
        self._set_status(mic_level=level)

    def _set_status(self, **changes: Any) -> None:
        new = replace(self._status, **changes)
        if new == self._status:
            return
        self._status = new
        self._last_level_publish = time.monotonic()
        self._publish(StatusChanged(new))

    def _set_connection(self, state: ConnectionState, detail: str) -> None:
        self._set_status(connection=state)
        self._publish(ConnectionChanged(state, detail))

    def _fail(self, message: str) -> None:
        if self._fatal:
            return
        self._fatal = True
        self._supervisor.failed = True
        self._set_connection("failed", message)
        self._publish(Notice("error", message))

    def _publish(self, note: Notification) -> None:
        for callback in list(self._subscribers):
            try:
                callback(note)
            except Exception:  # a broken subscriber must not stop the engine
                log.exception("subscriber failed on %s", type(note).__name__)


__all__ = ["Backoff", "Engine"]
