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
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from voicecli.audio.sinks import AudioSink, NullSink
from voicecli.audio.sources import AudioSource
from voicecli.config import Config
from voicecli.connection import (
    Connection,
    is_loopback,
)
from voicecli.engine.bus import StatusBus, Subscriber
from voicecli.engine.cost import CostMeter
from voicecli.engine.journal import Journal
from voicecli.engine.link import Link
from voicecli.engine.mic import MicPipeline
from voicecli.engine.microphone import Microphone
from voicecli.engine.notifications import Notice
from voicecli.engine.outcome import Outcomes
from voicecli.engine.playback import PlaybackTracker
from voicecli.engine.status import EngineStatus, TurnMode, next_turn_mode
from voicecli.engine.supervisor import Backoff, Supervisor
from voicecli.engine.tasks import reap, run_to_end
from voicecli.engine.toolcalls import ToolCalls
from voicecli.engine.turns import Action, Append, BargeIn, Clear, Commit
from voicecli.history import SessionLog, open_session_log
from voicecli.protocol.client_events import ClientEvents
from voicecli.protocol.conversation import Conversation
from voicecli.protocol.failures import error_kind
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
from voicecli.session import (
    SessionModel,
    SessionShapeError,
    server_interrupts,
    server_transcribes,
)
from voicecli.tools import ToolRunner
from voicecli.writer import DiskWriter

log = logging.getLogger(__name__)

STOP_GRACE_S = 1.0
"""How long the mic loop has to end after its source is stopped before it is cancelled."""

DEFAULT_BACKOFF = Backoff()


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
        self._api_key = api_key
        self._secrets = (api_key,) if api_key else ()
        self._own_history = history == "auto"
        self._rotate_margin_s = rotate_margin_s
        self._live = live if live is not None else bool(getattr(source, "realtime", True))

        host = urlsplit(str(config.connection.url)).hostname or ""
        self._cost = CostMeter(config.connection.model, free=is_loopback(host))
        self._mic = MicPipeline(config, self.session.turn_mode, max_turns=max_turns)
        self._bus = StatusBus(
            EngineStatus(
                connection="connecting",
                endpoint=str(config.connection.url).split("?", 1)[0],
                turn_mode=self.session.turn_mode,
                mic="off",
                cost_usd=self._cost.cost_usd,
                echo_mode=self._mic.echo_mode,
            )
        )
        self._publish = self._bus.publish
        self._set_status = self._bus.set
        self._set_connection = self._bus.set_connection

        self._outbox = Outbox(
            self._ev, max_backlog_ms=float(config.audio.max_backlog_s) * 1000.0, live=self._live
        )
        self._link = Link(
            self._outbox, self.conversation, self.session, self._bus, secrets=self._secrets
        )
        self._send = self._link.send
        self._outbox_ready = self._link.ready
        self._updates = self._link.updates
        self._connected = self._link.connected
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
            disk=self._writer,
            send=self._send,
            set_status=self._set_status,
            publish=self._publish,
            settled=self._settled,
        )
        self._microphone = Microphone(
            source,
            self._mic,
            self._playback,
            self._bus,
            self._outbox,
            live=self._live,
            end_turn_at_eof=end_turn_at_eof,
            do=self._do,
            commit=self.commit,
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
        self.tools = ToolCalls(
            self.conversation,
            self._ev,
            send=self._send,
            request_response=self._request_response,
            cancel=self.cancel,
            publish=self._publish,
        )
        """Function calls; a front end sets ``tools.approver`` to be asked."""
        self.tools.runner = ToolRunner(
            config.mcp_servers,
            lambda text: self._publish(Notice("warning", text)),
            log_dir=config.data_dir / "mcp",
        )
        self._tools_ready = asyncio.Event()
        self._outcomes = Outcomes(
            self.conversation,
            self._journal,
            self._ev,
            publish=self._publish,
            set_status=self._set_status,
            send=self._send,
            request_response=self._outbox.request_response,
        )
        self._fatal = False
        self._link.wire(
            handle=self._handle,
            log_event=self._journal.log_event,
            on_event=self.tools.on_event,
            new_connection=self._playback.new_connection,
            forget_cut_response=self._forget_cut_response,
            fail=self._fail,
            failed=lambda: self._fatal,
            drained=self._microphone.outbox_drained.set,
        )

    # -- public surface --------------------------------------------------------------

    @property
    def status(self) -> EngineStatus:
        return self._bus.status

    @property
    def _status(self) -> EngineStatus:
        return self._bus.status

    @property
    def turn_mode(self) -> TurnMode:
        return self._mic.turns.mode

    @property
    def history(self) -> SessionLog | None:
        """The session log finished turns go to (None: none)."""
        return self._journal.history

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Receive every protocol and engine notification, on the loop thread."""
        return self._bus.subscribe(callback)

    async def run(self) -> None:
        """Connect, pump both ways, reconnect when the connection drops; return after
        :meth:`close` or a fatal error."""
        self._open_history()
        await self._playback.start()
        # echo to cancel only from a speaker into a microphone (a device source has ADC times)
        source = self._microphone.source
        device_mic = source is not None and hasattr(source, "block_adc_time")
        self._mic.attach_far_end(getattr(self._playback.sink, "tap", None) if device_mic else None)
        self._set_status(echo_mode=self._mic.echo_mode)
        if self._mic.notice is not None:
            self._publish(Notice("warning", self._mic.notice))
        mic = self._microphone.run(self._connected, self._supervisor.closing, self._tools_ready)
        mic_task = asyncio.create_task(mic, name="voicecli-mic")
        tools_task = asyncio.create_task(self._start_tools(), name="voicecli-tools")
        try:
            await self._supervisor.run()
        finally:
            self._microphone.stop()
            self._supervisor.cancel_expiry_check()
            await run_to_end(
                lambda: reap([mic_task], grace=STOP_GRACE_S),
                lambda: reap([tools_task]),
                self.tools.aclose,
                self._playback.close,
                self._close_journal,
            )
            if not self._fatal:
                self._set_connection("closed", "")

    async def _close_journal(self) -> None:
        # a history handed in is closed by whoever opened it
        self._journal.close(history=self._own_history)
        # every turn on disk (and announced: the writer's callbacks run first)
        await self._writer.aclose()

    async def close(self) -> None:
        """Stop: cancels a reconnect wait too. :meth:`run` returns soon after."""
        self._supervisor.close()
        self._microphone.stop()
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

    async def wait_tools(self) -> None:
        """Until the MCP servers started (or failed) and their tools are declared."""
        await self._tools_ready.wait()

    # actions -------------------------------------------------------------------------

    def push_to_talk(self) -> None:
        self._do(self._mic.turns.push_to_talk())
        self._microphone.refresh()

    def commit(self) -> None:
        self._do(self._mic.turns.commit())
        self._microphone.refresh()

    def cancel(self) -> None:
        """Stop the assistant now: flush playback, cancel, truncate to what was heard."""
        self._barge_in(server_cancels=False)

    def clear_input(self) -> None:
        self._do(self._mic.turns.clear())
        self._microphone.refresh()

    def toggle_mute(self) -> None:
        self._do(self._mic.turns.set_muted(not self._mic.turns.muted))
        self._microphone.refresh()

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

    async def _start_tools(self) -> None:
        try:
            tools = await self.tools.start()
            if tools:
                self._send_update(self.session.set_tools(tools))
        finally:
            self._tools_ready.set()

    def _request_response(self) -> None:
        self._outbox.request_response()
        self._outbox_ready.set()

    def _follow_turn_mode(self) -> None:
        """Make the client's turn control match the session model's turn mode."""
        mode = self.session.turn_mode
        if mode != self._mic.turns.mode:
            self._do(self._mic.turns.set_mode(mode))
        self._set_status(turn_mode=mode)
        self._microphone.refresh()

    def _open_history(self) -> None:
        if self._own_history and self._journal.history is None:
            self._journal.history, notice = open_session_log(self.config.data_dir)
            if notice is not None:
                self._publish(Notice("error", notice))
        if self._journal.history is not None and self.config.storage.log_events:
            self._journal.open_events(self._journal.history)

    # -- one connection --------------------------------------------------------------

    async def _serve(self, conn: Connection, first: bool) -> str | None:
        sup = self._supervisor
        return await self._link.serve(conn, sup.closing, sup.rotate_now)

    def _connection_lost(self, reason: str) -> None:
        self._forget_cut_response()
        self._publish(Notice("warning", f"connection lost ({reason}); reconnecting"))

    def _forget_cut_response(self) -> None:
        """The connection died mid-response: drop the half answer and ask again after
        the replay."""
        active = self.conversation.active_response_id
        if active is None:
            return
        self._link.resume_response = True
        self._playback.forget_response(active)
        for note in self.conversation.abandon_response():
            self._publish(note)

    # -- receiving -------------------------------------------------------------------

    def _handle(self, note: Notification) -> None:
        """React to one protocol notification, then forward it."""
        after: list[Callable[[], None]] = []  # what must follow the note itself
        if isinstance(note, AudioDelta):
            self._playback.on_audio(note)
        elif isinstance(note, AudioDone):
            self._playback.on_audio_done(note)
        elif isinstance(note, ResponseStarted):
            self._outbox.response_started()
            self._playback.response_started()
            self._set_status(response="generating")
        elif isinstance(note, ResponseDone):
            self._on_response_done(note)
            after.append(
                lambda: self._journal.response_done(note, self._playback.unsettled_items())
            )
        elif isinstance(note, SpeechStarted):
            self._set_status(vad="speech")
            self._barge_in(server_cancels=server_interrupts(self.conversation.session))
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
            after.append(
                lambda: self._journal.item_added(
                    note.item_id, transcribed=server_transcribes(self.conversation.session)
                )
            )
        elif isinstance(note, (TranscriptDone, TranscriptFailed)):
            if isinstance(note, TranscriptDone) and note.usage is not None:
                model = (self.session.transcription or {}).get("model")
                self._set_status(**self._cost.add_transcription(note.usage, model))
            item = self.conversation.item(note.item_id)
            if item is not None and item.role == "user":
                after.append(lambda: self._journal.log(note.item_id))
        elif isinstance(note, ItemTruncated):
            self._playback.truncated(note.item_id)
            after.append(lambda: self._journal.flush_item(note.item_id))
        elif isinstance(note, ServerError):
            if self._on_server_error(note):
                return  # handled here: nothing for the user to see
        elif isinstance(note, SessionChanged):
            if not note.created:
                self._on_session_updated(note.session)
            self._set_status(expires_at=self.conversation.expires_at)
            # an idle session has no response ending to trigger the check: a timer does
            self._supervisor.check_expiry_at(
                self.conversation.expires_at, self._rotate_margin_s, self._maybe_rotate
            )
        self._publish(note)
        for step in after:
            step()
        self._outbox_ready.set()

    def _on_session_updated(self, session: Mapping[str, Any]) -> None:
        if self._updates:
            del self._updates[next(iter(self._updates))]  # answered in order
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
        self.tools.response_done(note.response_id)
        self._playback.response_done(note.response_id)
        if note.usage is not None:
            self._set_status(**self._cost.add_response(note.usage))
        if (
            not self._playback.is_playing and self._status.response != "cancelled"
        ) or self._status.response == "generating":
            self._set_status(response="idle")
        self._outcomes.response_done(note)  # why it failed; answers that came as text
        self._maybe_rotate()

    def _on_server_error(self, note: ServerError) -> bool:
        """Undo what the error refused; True when it needs no showing (a harmless race).
        Subscribers get every other error as the :class:`ServerError` itself."""
        event_id = note.client_event_id
        refused = self._outbox.rejected(event_id, note.code)
        item_id = self._playback.rejected(event_id)
        if item_id is not None:
            self._journal.flush_item(item_id)
        if event_id is not None and event_id in self._updates:
            # one bad field must not lose the others: name it, send the rest again
            rejected = self.session.update_rejected(self._updates.pop(event_id), note.param)
            if rejected.resend is not None:
                self._send_update(rejected.resend)
            what = f"session.{rejected.field}" if rejected.field else "the session update"
            again = "; the other settings are sent again" if rejected.resend else ""
            self._publish(Notice("error", f"the server refused {what}: {note.message}{again}"))
            return False  # the editor shows the error on its field
        if error_kind(note.code) is not None:
            return False  # the receiver rotates, or fails once with its own notice
        if note.code == "response_cancel_not_active":
            return True  # a race with the response ending by itself: harmless
        # our response.create raced the server's own: asked again after it
        return refused is not None and note.code == ACTIVE_RESPONSE

    # -- playback ----------------------------------------------------------------------

    def _barge_in(self, *, server_cancels: bool, voice_ms: float = 0.0) -> None:
        if self._playback.barge_in(server_cancels=server_cancels, voice_ms=voice_ms):
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

    # -- actions -----------------------------------------------------------------------

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
                self._barge_in(server_cancels=False, voice_ms=action.voice_ms)
        if actions:  # called for every mic block: a silent one must not wake the sender
            self._outbox_ready.set()

    def _fail(self, message: str) -> None:
        if self._fatal:
            return
        self._fatal = True
        self._supervisor.failed = True
        self._set_connection("failed", message)
        self._publish(Notice("error", message))


__all__ = ["Backoff", "Engine"]
