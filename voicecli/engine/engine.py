"""The engine: mic -> turn-taking -> client events -> connection, and back to the speaker.

Three tasks, each awaiting a queue or a socket (never polling):

* the **mic task** reads the source's 20 ms blocks, runs the endpointer and the echo
  guard, asks the :class:`~voicecli.engine.turns.TurnController` what to do and puts
  client events in the outbox;
* the **sender** drains the outbox onto the connection, oldest first; when the socket
  stalls, mic audio waits up to ``max_backlog_s`` and then the oldest audio is dropped
  (counted in :attr:`EngineStatus.dropped_audio_ms`);
* the **receiver** folds server events into the :class:`Conversation`, writes assistant
  audio to the sink, logs finished turns to the history and forwards every
  notification to subscribers.

The sender and receiver live as long as one connection; :meth:`Engine.run` reconnects
with backoff, re-sends the session and replays the conversation. Every task the engine
starts is awaited (and its exception retrieved) before :meth:`Engine.run` returns, even
when ``run`` itself is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from voicecli.audio.devices import AudioDeviceLost, PortAudioMissing
from voicecli.audio.dsp import rms_dbfs
from voicecli.audio.echo import EchoGuard
from voicecli.audio.sinks import AudioSink, NullSink
from voicecli.audio.sources import AudioSource
from voicecli.audio.vad import Endpointer, SpeechEnd, SpeechStart
from voicecli.audio.wav import ConversationRecorder
from voicecli.config import Config
from voicecli.connection import Connection, ConnectionLost, FatalServerError
from voicecli.engine.bargein import PlayedPart, Truncate, plan_barge_in, truncate_point
from voicecli.engine.cost import estimate_cost
from voicecli.engine.eventlog import sanitize
from voicecli.engine.notifications import (
    ConnectionChanged,
    EventLogged,
    Notice,
    StatusChanged,
    TurnLogged,
)
from voicecli.engine.status import ConnectionState, EngineStatus, TurnMode, next_turn_mode
from voicecli.engine.turns import Action, Append, BargeIn, Clear, Commit, TurnController
from voicecli.history import SessionLog
from voicecli.protocol.client_events import ClientEvents
from voicecli.protocol.conversation import Conversation, Item
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

log = logging.getLogger(__name__)

BYTES_PER_MS = 48
_CONFIRMED_LATER = frozenset(
    {
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
        "response.create",
        "conversation.item.create",
    }
)
"""Client events kept until the server's answer shows they arrived."""
FATAL_CODES = frozenset(
    {"invalid_api_key", "missing_model", "model_not_found", "beta_api_shape_disabled"}
)
"""Error codes after which the server closes (3000/4000): never retried."""
LEVEL_INTERVAL_S = 0.05
"""Mic-level-only status updates are coalesced to at most 20 per second."""
TURN_AUDIO_KEEP_MS = 60_000
"""Audio of the open turn kept for re-sending after a reconnect."""
SETTLE_MARGIN_S = 0.5
"""After a barge-in flush, the truncate waits for the sink to fall quiet: at most the
configured output latency plus this."""
UNDERRUN_WARNING_AT = 3
"""Speaker underruns after which the user is told (once) to raise the output latency."""
RECORD_LEAD_MS = 40
"""The recording gets assistant audio this far ahead of what was heard: the recorder
lays it down from the current mic time, so without a lead over the mic block period
(20 ms) the assistant side would get a few ms of silence wherever the two clocks jitter.
A barge-in records only what was heard."""

Subscriber = Callable[[Notification], None]
_DEVICE_ERRORS = (OSError, LookupError, PortAudioMissing, ValueError)
"""What opening or using an audio device raises (AudioDeviceError is an OSError,
DeviceNotFound a LookupError, PortAudioMissing a RuntimeError)."""


async def _reap(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait for them all, retrieving every exception (so asyncio
    never logs "Task exception was never retrieved"); errors other than cancellation
    are logged. If the caller is cancelled meanwhile, the tasks are still awaited."""
    pending = [t for t in tasks if t is not None]
    for task in pending:
        task.cancel()
    if not pending:
        return
    # shield: a second cancel of the caller must not leave the tasks un-awaited
    gathered = asyncio.gather(*pending, return_exceptions=True)
    try:
        results = await asyncio.shield(gathered)
    except asyncio.CancelledError:
        await gathered
        raise
    for task, result in zip(pending, results, strict=True):
        if isinstance(result, Exception):
            log.debug("%s ended with %r", task.get_name(), result)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: ``initial * 2**attempt`` capped at ``cap``, times a jitter in
    [0.5, 1]; ``max_attempts`` failed attempts in a row end the engine (None: never)."""

    initial: float = 0.5
    cap: float = 30.0
    max_attempts: int | None = None

    def delay(self, attempt: int, rng: random.Random) -> float:
        growth: float = 2.0 ** min(max(0, attempt - 1), 30)  # no overflow in long outages
        return min(self.cap, self.initial * growth) * rng.uniform(0.5, 1.0)


@dataclass(slots=True)
class _Part:
    """Bookkeeping for one assistant audio content part written to the sink."""

    response_id: str
    received_bytes: int = 0
    done: bool = False
    truncated: bool = False


@dataclass(slots=True)
class _Recorded:
    """Assistant audio of one part kept for the conversation recording until heard."""

    pcm: bytearray
    taken: int = 0
    """Bytes already handed to the recorder (heard at the speaker)."""


def turn_detection_for(mode: TurnMode, config: Config) -> dict[str, Any] | None:
    """The session's ``audio.input.turn_detection`` for a turn mode (None: client decides)."""
    if mode in ("push-to-talk", "local-vad"):
        return None
    td = dict(config.session.turn_detection or {})
    keys: tuple[str, ...]
    if mode == "server-vad":
        keys = (
            "threshold",
            "prefix_padding_ms",
            "silence_duration_ms",
            "create_response",
            "interrupt_response",
        )
        out: dict[str, Any] = {"type": "server_vad"}
    else:
        keys = ("eagerness", "create_response", "interrupt_response")
        out = {"type": "semantic_vad"}
    out.update({k: td[k] for k in keys if td.get(k) is not None})
    return out


def deep_merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``changes``, merging nested mappings (None replaces)."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def changed_fields(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of ``wanted`` that differ from ``current`` (nested mappings compared
    field by field), so a session.update carries only what changes."""
    out: dict[str, Any] = {}
    for key, value in wanted.items():
        have = current.get(key)
        if isinstance(value, Mapping) and isinstance(have, Mapping):
            sub = changed_fields(have, value)
            if sub:
                out[key] = sub
        elif have != value or key not in current:
            out[key] = value
    return out


class Engine:
    """Drives one voice conversation; see the module docstring.

    ``source`` None means text only (no mic); ``sink`` None plays nowhere (a
    :class:`NullSink`). ``history``: the session log finished turns go to; "auto"
    opens a new one under ``config.data_dir`` when :meth:`run` starts (and closes it),
    None keeps none. ``live``: the source
    runs on its own clock (a microphone), so when the socket stalls the oldest audio
    beyond ``max_backlog_s`` is dropped; a file source (``live=False``) just waits.
    ``max_turns`` limits the committed user turns (``voicecli ask``: one).
    ``backoff`` governs reconnects (``max_attempts=0``: fail on the first error).
    :meth:`run` starts the sink and closes it (and the source) when it returns; with
    ``config.audio.record`` set it records the microphone and what was heard of the
    assistant to that stereo WAV. A speaker that cannot start, or a microphone that
    cannot open or is lost mid-conversation, is reported as a :class:`Notice` (and
    ``status.mic == "unavailable"``); the conversation goes on in text mode.
    Call the action methods on the loop thread; they never block.
    """

    def __init__(
        self,
        config: Config,
        *,
        source: AudioSource | None = None,
        sink: AudioSink | None = None,
        api_key: str | None = None,
        history: SessionLog | Literal["auto"] | None = "auto",
        backoff: Backoff = Backoff(),
        end_turn_at_eof: bool = True,
        max_turns: int | None = None,
        rotate_margin_s: float = 120.0,
        live: bool | None = None,
        connection_factory: Callable[[], Connection] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.conversation = Conversation()
        self._ev = ClientEvents()
        self._source = source
        self._sink: AudioSink = sink if sink is not None else NullSink()
        self._api_key = api_key
        self._secrets = (api_key,) if api_key else ()
        self._history: SessionLog | None = None if history == "auto" else history
        self._own_history = history == "auto"
        self._backoff = backoff
        self._end_turn_at_eof = end_turn_at_eof
        self._rotate_margin_s = rotate_margin_s
        self._connection_factory = connection_factory or self._default_connection
        self._rng = rng or random.Random()

        audio = config.audio
        echo_mode = "off" if audio.headphones else audio.echo_mode
        self._tc = TurnController(config.turn_mode, echo_mode=echo_mode, max_turns=max_turns)
        self._endpointer = Endpointer(
            aggressiveness=config.vad.aggressiveness,
            silence_ms=config.vad.silence_ms,
            prefix_ms=config.vad.prefix_ms,
            start_frames=config.vad.start_frames,
            frame_ms=config.vad.frame_ms,
        )
        self._echo = EchoGuard(echo_mode, margin_db=audio.echo_margin_db)
        self._speaker_lost = False  # the sink's death was reported
        self._underrun_warned = False  # told once to raise audio.output_latency
        self._recorder: ConversationRecorder | None = None
        self._recorded: dict[tuple[str, int], _Recorded] = {}
        self._max_backlog_ms = float(audio.max_backlog_s) * 1000.0

        self._subscribers: list[Subscriber] = []
        self._status = EngineStatus(
            connection="connecting",
            endpoint=self._endpoint_label(),
            turn_mode=config.turn_mode,
            mic="off",
        )
        self._last_level_publish = 0.0

        # outbox: client events in send order; audio counted for the backlog bound
        self._outbox: deque[dict[str, Any]] = deque()
        self._outbox_audio_ms = 0.0
        self._outbox_ready = asyncio.Event()
        self._outbox_drained = asyncio.Event()
        self._live = live if live is not None else bool(getattr(source, "realtime", True))
        # sent, but not yet confirmed by the server: re-sent after a reconnect
        self._unacked: deque[dict[str, Any]] = deque()
        self._unacked_audio_ms = 0.0

        self._session_overrides: dict[str, Any] = {}
        self._parts: dict[tuple[str, int], _Part] = {}
        self._silenced: set[str] = set()
        self._cancel_sent: set[str] = set()
        self._pending_truncates: dict[str, str] = {}  # truncate event_id -> item_id
        self._deferred_logs: dict[str, ResponseDone] = {}  # item_id -> response done
        self._logged_items: set[str] = set()
        self._speech_end_at: float | None = None
        self._awaiting_first_audio: tuple[str, int] | None = None
        self._first_audio_at: float | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._settling: set[asyncio.Task[None]] = set()
        self._connection: Connection | None = None
        self._connected = asyncio.Event()
        self._closing = asyncio.Event()
        # the user's say over reconnecting: retry now, or stop until asked again
        self._retry_now = asyncio.Event()
        self._stay_offline = False
        self._rotate_now = asyncio.Event()
        self._rotate_timer: asyncio.TimerHandle | None = None
        self._fatal = False
        self._resume_response = False

    # -- public surface --------------------------------------------------------------

    @property
    def status(self) -> EngineStatus:
        return self._status

    @property
    def turn_mode(self) -> TurnMode:
        return self._tc.mode

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
        if self._own_history and self._history is None:
            try:
                self._history = SessionLog.create(self.config.data_dir, kind="session")
            except OSError as exc:
                self._publish(Notice("error", f"no session history: {exc}"))
        await self._start_sink()
        self._open_recorder()
        mic_task = asyncio.create_task(self._mic_loop(), name="voicecli-mic")
        try:
            await self._connection_loop()
        finally:
            await _reap(
                [mic_task, *self._settling] + ([self._drain_task] if self._drain_task else [])
            )
            self._drain_task = None
            if self._rotate_timer is not None:
                self._rotate_timer.cancel()
            await self._close_audio()
            if self._own_history and self._history is not None:
                self._history.close()
                self._history = None
            if not self._fatal:
                self._set_connection("closed", "")

    async def close(self) -> None:
        """Stop: cancels a reconnect wait too. :meth:`run` returns soon after."""
        self._closing.set()
        conn = self._connection
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    def reconnect_now(self) -> bool:
        """Skip the backoff wait and try at once (also resumes after
        :meth:`stop_reconnecting`). False when there is nothing to reconnect."""
        if self._status.connection not in ("reconnecting", "offline"):
            return False
        self._stay_offline = False
        self._retry_now.set()
        return True

    def stop_reconnecting(self) -> bool:
        """Stop the reconnect attempts; the conversation is kept, text typed meanwhile
        waits, and :meth:`reconnect_now` resumes. False when not reconnecting."""
        if self._status.connection != "reconnecting":
            return False
        self._stay_offline = True
        self._retry_now.set()
        return True

    async def _backoff_wait(self, attempt: int) -> bool:
        """Wait before reconnect attempt ``attempt``: the backoff delay, cut short by
        :meth:`reconnect_now`; after :meth:`stop_reconnecting`, until resumed. True when
        resumed by the user (the attempt count starts over), False on a plain timeout."""
        delay = self._backoff.delay(attempt, self._rng)
        self._set_connection("reconnecting", f"attempt {attempt} in {delay:.1f}s")
        # a retry/stop asked during the previous attempt counts now (not cleared first)
        if not await self._closing_or_retry(delay):
            return False
        if self._stay_offline:
            self._retry_now.clear()
            self._set_connection("offline", "reconnecting stopped")
            await self._closing_or_retry(None)
        self._retry_now.clear()
        if not self._closing.is_set():
            self._set_connection("reconnecting", "now")
        return True

    async def _closing_or_retry(self, timeout: float | None) -> bool:
        """Until closing or a user's retry/stop (True), or the timeout (False)."""
        waits = [
            asyncio.create_task(self._closing.wait()),
            asyncio.create_task(self._retry_now.wait()),
        ]
        try:
            done, _ = await asyncio.wait(
                waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            await _reap(waits)
        return bool(done)

    async def wait_connected(self) -> None:
        await self._connected.wait()

    # actions -------------------------------------------------------------------------

    def push_to_talk(self) -> None:
        self._do(self._tc.push_to_talk())
        self._refresh_mic()

    def commit(self) -> None:
        self._do(self._tc.commit())
        self._refresh_mic()

    def cancel(self) -> None:
        """Stop the assistant now: flush playback, cancel, truncate to what was heard."""
        self._barge_in(server_cancels=False)

    def clear_input(self) -> None:
        self._do(self._tc.clear())
        self._refresh_mic()

    def toggle_mute(self) -> None:
        self._do(self._tc.set_muted(not self._tc.muted))
        self._refresh_mic()

    def set_turn_mode(self, mode: TurnMode) -> None:
        if mode == self._tc.mode:
            return
        self._do(self._tc.set_mode(mode))
        self._send(
            self._ev.session_update(
                {"audio": {"input": {"turn_detection": turn_detection_for(mode, self.config)}}}
            )
        )
        self._set_status(turn_mode=mode)
        self._refresh_mic()

    def cycle_turn_mode(self) -> TurnMode:
        mode = next_turn_mode(self._tc.mode)
        self.set_turn_mode(mode)
        return mode

    def send_text(self, text: str, *, respond: bool = True) -> None:
        """Send a typed user message (interrupting the assistant) and ask for a reply."""
        text = text.strip()
        if not text:
            return
        self._barge_in(server_cancels=False)
        event = self._ev.user_text(text)
        # our own id: the server's item.added for it confirms that it arrived
        event["item"]["id"] = f"item_{secrets.token_hex(8)}"
        self._send(event)
        if respond:
            self._mark_speech_end()
            self._send(self._ev.response_create())

    def update_session(self, changes: Mapping[str, Any]) -> str:
        """Send a session.update with the fields of ``changes`` that differ from the
        effective session; they are kept and re-sent after a reconnect. Returns its
        event_id."""
        self._session_overrides = deep_merge(self._session_overrides, changes)
        current = self.conversation.session or {}
        event = self._ev.session_update(changed_fields(current, changes))
        self._send(event)
        return str(event["event_id"])

    # -- audio lifecycle -------------------------------------------------------------

    async def _start_sink(self) -> None:
        try:
            await self._sink.start()
        except Exception as exc:  # a speaker that fails must not stop the engine
            self._publish(Notice("error", f"speaker unavailable ({exc}): replies are not played"))
            with contextlib.suppress(Exception):
                await self._sink.close()
            self._sink = NullSink()

    def _check_speaker(self) -> None:
        """A speaker that died mid-session is reported once; the engine goes on with
        it (it plays nothing and counts nothing more as heard, so an interrupted reply
        is still truncated to what the user really heard)."""
        if self._speaker_lost:
            return
        underruns = int(getattr(self._sink, "underflows", 0))
        if underruns != self._status.underruns:
            self._set_status(underruns=underruns)
            if underruns >= UNDERRUN_WARNING_AT and not self._underrun_warned:
                self._underrun_warned = True
                latency = float(self.config.audio.output_latency)
                self._publish(
                    Notice(
                        "warning",
                        f"the speaker ran out of audio {underruns} times (crackles): "
                        f"raise audio.output_latency (now {latency:g} s) in the config",
                    )
                )
        error = self._sink.error
        if error is not None:
            self._speaker_lost = True
            self._publish(Notice("warning", f"speaker lost: {error}, continuing without sound"))

    def _open_recorder(self) -> None:
        path = self.config.audio.record
        if path is None or self._recorder is not None:
            return
        try:
            self._recorder = ConversationRecorder(path)
        except OSError as exc:
            self._publish(Notice("error", f"cannot record to {path}: {exc}"))

    async def _close_audio(self) -> None:
        if self._recorder is not None:
            self._record_played()
            try:
                self._recorder.close()
            except OSError as exc:
                self._publish(Notice("error", f"the recording is incomplete: {exc}"))
            self._recorder = None
            self._recorded.clear()
        try:
            await self._sink.close()
        except Exception:  # closing must not mask why run() ends
            log.warning("closing the audio sink failed", exc_info=True)

    def _record_played(self, *, lead_ms: int = 0, drained: bool = False) -> None:
        """Hand the recorder the assistant audio heard since the last call (the sink's
        played-time accounting says how much) plus ``lead_ms``; ``drained``: all of it
        was heard."""
        recorder = self._recorder
        if recorder is None:
            return
        for key, rec in list(self._recorded.items()):
            heard = len(rec.pcm)
            if not drained:
                heard = min(heard, (self._sink.played_ms(*key) + lead_ms) * BYTES_PER_MS)
            if heard > rec.taken:
                recorder.add_assistant(bytes(rec.pcm[rec.taken : heard]))
                rec.taken = heard
            if drained:
                del self._recorded[key]

    def _forget_unplayed(self) -> None:
        """Playback is being flushed: record what was heard, drop the rest."""
        self._record_played()
        self._recorded.clear()

    # -- connection lifecycle --------------------------------------------------------

    def _default_connection(self) -> Connection:
        return Connection(self.config, api_key=self._api_key)

    def _endpoint_label(self) -> str:
        url = str(self.config.connection.url)
        return url.split("?", 1)[0]

    async def _connection_loop(self) -> None:
        attempt = 0
        first = True
        while not self._closing.is_set():
            if attempt:
                limit = self._backoff.max_attempts
                if limit is not None and attempt > limit:
                    self._fail("could not reconnect: giving up")
                    return
                if await self._backoff_wait(attempt):
                    attempt = 0  # the user asked: a failure starts the backoff over
                if self._closing.is_set():
                    return
            else:
                self._set_connection("connecting" if first else "reconnecting", "")
            conn = self._connection_factory()
            try:
                await conn.connect()
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await conn.close()
                raise
            except FatalServerError as exc:
                self._fail(str(exc))
                return
            except Exception as exc:  # refused, DNS, TLS, HTTP 5xx...: all worth a retry
                attempt += 1
                if first and self._backoff.max_attempts == 0:
                    self._fail(f"cannot connect to {self._status.endpoint}: {exc}")
                    return
                if attempt == 1:  # once per outage, not once per attempt
                    self._publish(Notice("warning", f"connection failed: {exc}"))
                continue
            self._connection = conn
            attempt = 0
            self._retry_now.clear()  # asked while the attempt was already succeeding
            self._stay_offline = False
            try:
                reason = await self._serve(conn, replay=not first)
            finally:  # also when run() is cancelled: the socket and its tasks go too
                self._connection = None
                self._connected.clear()
                with contextlib.suppress(Exception):
                    await conn.close()
            first = False
            if reason is None:  # closing
                return
            if self._fatal:
                return
            attempt = 1 if reason != "rotate" else 0
            if reason != "rotate":
                self._forget_cut_response()
                self._publish(Notice("warning", f"connection lost ({reason}); reconnecting"))

    async def _serve(self, conn: Connection, *, replay: bool) -> str | None:
        """Configure the session, pump until the connection ends; returns why it ended
        (None when closing)."""
        self._prepare_session(replay=replay)
        self._set_connection("connected", "")
        self._connected.set()
        sender = asyncio.create_task(self._send_loop(conn), name="voicecli-send")
        receiver = asyncio.create_task(self._receive_loop(conn), name="voicecli-recv")
        closing = asyncio.create_task(self._closing.wait(), name="voicecli-closing")
        rotate = asyncio.create_task(self._rotate_now.wait(), name="voicecli-rotate")
        tasks = (sender, receiver, closing, rotate)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # also when run() is cancelled: a receiver left running would fail with
            # ConnectionLost later, with nobody to retrieve it
            await _reap(tasks)
        if closing in done:
            return None
        if rotate in done:
            self._rotate_now.clear()
            return "rotate"
        for task in (receiver, sender):
            if task in done and not task.cancelled():
                exc = task.exception()
                if isinstance(exc, FatalServerError):
                    self._fail(str(exc))
                    return "fatal"
                if exc is not None:
                    return str(exc) or type(exc).__name__
        return "closed by server"

    def _forget_cut_response(self) -> None:
        """The connection died mid-response: that response will never finish. Fold a
        local deletion of its items and its end into the conversation (so the UI drops
        the half answer and nothing waits for it), and ask again after the replay."""
        active = self.conversation.active_response_id
        if active is None:
            return
        self._resume_response = True
        self._silenced.add(active)
        self._forget_unplayed()
        if self._sink.is_playing:
            self._sink.flush(fade=True)
        self._parts.clear()
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
        self._cancel_sent.discard(active)

    def _prepare_session(self, *, replay: bool) -> None:
        """Put the session.update (and, after a reconnect, the replay) at the head of
        the outbox, before anything queued while disconnected."""
        head: list[dict[str, Any]] = [self._ev.session_update(self._session_payload())]
        if replay:
            head.extend(self._replay_events())
            # the old server's input buffer is gone, and what was sent after its last
            # confirmation may never have arrived: send it again
            head.extend(self._unacked)
            creates = any(e.get("type") == "response.create" for e in self._unacked)
            if self._resume_response and not creates:
                head.append(self._ev.response_create())
            if any(e.get("type") == "response.create" for e in self._outbox):
                # a message typed while disconnected asks for its reply after the replay:
                # one response answers everything (a second would be refused with
                # conversation_already_has_active_response, leaving that message unanswered)
                head = [e for e in head if e.get("type") != "response.create"]
        self._resume_response = False
        self._unacked.clear()
        self._unacked_audio_ms = 0.0
        self._parts.clear()
        for event in reversed(head):
            self._outbox.appendleft(event)
            if event.get("type") == "input_audio_buffer.append":
                self._outbox_audio_ms += self._event_audio_ms(event)
        self._outbox_ready.set()

    def _session_payload(self) -> dict[str, Any]:
        payload = deep_merge(self.config.session_payload(), self._session_overrides)
        audio = dict(payload.get("audio") or {})
        audio_in = dict(audio.get("input") or {})
        audio_in["turn_detection"] = turn_detection_for(self._tc.mode, self.config)
        audio["input"] = audio_in
        payload["audio"] = audio
        return payload

    def _replay_events(self) -> list[dict[str, Any]]:
        """The finished conversation as conversation.item.create events, item ids kept
        so the new session's items line up with the ones the UI already shows."""
        events: list[dict[str, Any]] = []
        for item in self.conversation.items:
            event = self._replay_event(item)
            if event is not None:
                events.append(event)
        return events

    def _replay_event(self, item: Item) -> dict[str, Any] | None:
        if item.type == "function_call":
            if not item.call_id or not item.name:
                return None
            event = self._ev.function_call(item.call_id, item.name, item.arguments or "{}")
        elif item.type == "function_call_output":
            if not item.call_id:
                return None
            event = self._ev.function_call_output(item.call_id, item.output or "")
        elif item.role == "user":
            text = item.text.strip()
            if not text:
                return None
            event = self._ev.user_text(text)
        elif item.role == "assistant":
            text = (item.heard_text if item.truncated_at_ms is not None else item.text).strip()
            if not text:
                return None
            event = self._ev.assistant_text(text)
        else:
            return None
        event["item"]["id"] = item.id
        return event

    # -- sending ---------------------------------------------------------------------

    def _send(self, event: dict[str, Any]) -> None:
        self._outbox.append(event)
        if event.get("type") == "input_audio_buffer.append":
            self._outbox_audio_ms += self._event_audio_ms(event)
            self._enforce_backlog()
        self._outbox_ready.set()

    @staticmethod
    def _event_audio_ms(event: Mapping[str, Any]) -> float:
        return len(event.get("audio", "")) * 3 / 4 / BYTES_PER_MS

    def _enforce_backlog(self) -> None:
        """Drop the oldest queued mic audio beyond ``max_backlog_s`` (socket stalled)."""
        if self._outbox_audio_ms <= self._max_backlog_ms or not self._live:
            return
        dropped = 0.0
        kept: deque[dict[str, Any]] = deque()
        for event in self._outbox:
            if (
                self._outbox_audio_ms - dropped > self._max_backlog_ms
                and event.get("type") == "input_audio_buffer.append"
            ):
                dropped += self._event_audio_ms(event)
                continue
            kept.append(event)
        self._outbox = kept
        self._outbox_audio_ms -= dropped
        first = self._status.dropped_audio_ms == 0
        self._set_status(dropped_audio_ms=self._status.dropped_audio_ms + dropped)
        if first:
            self._publish(
                Notice("warning", "the connection is stalled: dropping the oldest mic audio")
            )

    async def _send_loop(self, conn: Connection) -> None:
        while True:
            if not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            event = self._outbox[0]
            self.conversation.record_sent(event)
            try:
                await conn.send(event)
            except BaseException:
                raise  # the event stays at the head: sent again after reconnecting
            if self._outbox and self._outbox[0] is event:
                self._outbox.popleft()
            self._after_sent(event)

    def _after_sent(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "input_audio_buffer.append":
            ms = self._event_audio_ms(event)
            self._outbox_audio_ms = max(0.0, self._outbox_audio_ms - ms)
            if self._outbox_audio_ms <= self._max_backlog_ms / 2:
                self._outbox_drained.set()
            self._unacked.append(event)
            self._unacked_audio_ms += ms
            self._trim_unacked()
        elif kind in _CONFIRMED_LATER:
            self._unacked.append(event)
        self._publish(EventLogged("sent", sanitize(event, self._secrets)))

    def _trim_unacked(self) -> None:
        """Keep at most TURN_AUDIO_KEEP_MS of unconfirmed audio (the oldest goes)."""
        while self._unacked_audio_ms > TURN_AUDIO_KEEP_MS:
            for event in self._unacked:
                if event.get("type") == "input_audio_buffer.append":
                    self._unacked.remove(event)
                    self._unacked_audio_ms -= self._event_audio_ms(event)
                    break
            else:
                self._unacked_audio_ms = 0.0

    def _confirm(self, kind: str, item_id: str | None = None) -> None:
        """The server confirmed an event of ``kind``: forget it and, for a commit or a
        clear, the audio before it (without one of ours, the server's VAD committed:
        all the unconfirmed audio is in)."""
        if kind in ("input_audio_buffer.commit", "input_audio_buffer.clear"):
            mine = any(e.get("type") == kind for e in self._unacked)
            kept: deque[dict[str, Any]] = deque()
            done = False
            for event in self._unacked:
                etype = event.get("type")
                if not done and (etype == "input_audio_buffer.append" or etype == kind):
                    done = mine and etype == kind
                    continue
                kept.append(event)
            self._unacked = kept
            self._unacked_audio_ms = sum(
                self._event_audio_ms(e)
                for e in kept
                if e.get("type") == "input_audio_buffer.append"
            )
            return
        for event in self._unacked:
            if event.get("type") != kind:
                continue
            if kind == "conversation.item.create" and event["item"].get("id") != item_id:
                continue
            self._unacked.remove(event)
            return

    # -- receiving -------------------------------------------------------------------

    async def _receive_loop(self, conn: Connection) -> None:
        async for event in conn:
            self._publish(EventLogged("received", sanitize(event, self._secrets)))
            notes = self.conversation.apply(event)
            for note in notes:
                self._handle(note)
                if isinstance(note, ServerError) and note.code in FATAL_CODES:
                    # the server closes right after: retrying cannot help
                    self._fail(f"the server refused the session: {note.message}")
            if self._fatal:
                return
            if self._session_expired(notes):
                raise ConnectionLost("session expired")
        raise ConnectionLost("closed by server")

    @staticmethod
    def _session_expired(notes: list[Notification]) -> bool:
        return any(isinstance(n, ServerError) and n.code == "session_expired" for n in notes)

    def _handle(self, note: Notification) -> None:
        """React to one protocol notification, then forward it."""
        announce: list[Notification] = []
        if isinstance(note, AudioDelta):
            self._on_audio(note)
        elif isinstance(note, AudioDone):
            part = self._parts.get((note.item_id, note.content_index))
            if part is not None:
                part.done = True
        elif isinstance(note, ResponseStarted):
            self._confirm("response.create")
            self._set_status(response="generating")
        elif isinstance(note, ResponseDone):
            self._on_response_done(note, announce)
        elif isinstance(note, SpeechStarted):
            self._set_status(vad="speech")
            td = (self.conversation.session or {}).get("audio", {}).get("input", {})
            interrupt = bool((td.get("turn_detection") or {}).get("interrupt_response", True))
            self._barge_in(server_cancels=interrupt)
        elif isinstance(note, SpeechStopped):
            self._set_status(vad="silence")
            self._mark_speech_end()
        elif isinstance(note, InputCommitted):
            self._confirm("input_audio_buffer.commit")
            self._tc.server_committed()
        elif isinstance(note, InputCleared):
            self._confirm("input_audio_buffer.clear")
            self._tc.server_cleared()
        elif isinstance(note, ItemAdded):
            self._confirm("conversation.item.create", note.item_id)
            item = self.conversation.item(note.item_id)
            # a typed message is final at once; spoken input is when its transcript is
            # (or at once, when transcription is off and no transcript will come)
            if item is not None and item.role == "user":
                typed = any(p.type == "input_text" for p in item.parts)
                if typed or not self._transcription_enabled():
                    self._log_turn(item.id, announce)
        elif isinstance(note, (TranscriptDone, TranscriptFailed)):
            item = self.conversation.item(note.item_id)
            if item is not None and item.role == "user":
                self._log_turn(note.item_id, announce)
        elif isinstance(note, ItemTruncated):
            for event_id, item_id in list(self._pending_truncates.items()):
                if item_id == note.item_id:
                    del self._pending_truncates[event_id]
            self._flush_deferred(note.item_id, announce)
        elif isinstance(note, ServerError):
            self._on_server_error(note, announce)
        elif isinstance(note, SessionChanged):
            self._set_status(expires_at=self.conversation.expires_at)
            self._schedule_rotation()
        self._publish(note)
        for extra in announce:
            self._publish(extra)

    def _on_audio(self, note: AudioDelta) -> None:
        if note.response_id in self._silenced:
            return
        key = (note.item_id, note.content_index)
        part = self._parts.get(key)
        if part is None:
            part = self._parts[key] = _Part(note.response_id)
        part.received_bytes += len(note.pcm)
        self._sink.write(note.pcm, note.item_id, note.content_index)
        self._check_speaker()
        if self._recorder is not None:
            self._recorded.setdefault(key, _Recorded(bytearray())).pcm += note.pcm
        if self._first_audio_at is None:
            self._first_audio_at = time.monotonic()
            self._awaiting_first_audio = key
        if self._status.response != "playing":
            self._set_status(response="playing")
        self._watch_drain()

    def _on_response_done(self, note: ResponseDone, announce: list[Notification]) -> None:
        self._cancel_sent.discard(note.response_id)
        usage = note.usage
        if usage is not None:
            self._set_status(
                input_tokens=self._status.input_tokens + usage.input_tokens,
                output_tokens=self._status.output_tokens + usage.output_tokens,
                cost_usd=self._status.cost_usd + estimate_cost(usage),
            )
        playing_items = {item_id for item_id, _ in self._parts}
        for item in self.conversation.items:
            if item.response_id != note.response_id or item.id in self._logged_items:
                continue
            if item.id in self._pending_truncates.values() or (
                item.id in playing_items and self._sink.is_playing
            ):
                # not finished until it was heard (or cut): logged on drain / truncation
                self._deferred_logs[item.id] = note
                continue
            self._log_turn(item.id, announce, done=note)
        if (
            not self._sink.is_playing and self._status.response != "cancelled"
        ) or self._status.response == "generating":
            self._set_status(response="idle")
        self._maybe_rotate()

    def _on_server_error(self, note: ServerError, announce: list[Notification]) -> None:
        for event in self._unacked:  # rejected: it arrived, and must not be sent again
            if event.get("event_id") == note.client_event_id:
                self._unacked.remove(event)
                break
        if note.client_event_id in self._pending_truncates:
            item_id = self._pending_truncates.pop(note.client_event_id)
            self._flush_deferred(item_id, announce)
        if note.code == "session_expired" or note.code in FATAL_CODES:
            return  # the receiver reconnects, or fails once with its own notice
        if note.code in ("response_cancel_not_active",):
            return  # a race with the response ending by itself: harmless
        self._publish(Notice("error", f"server error: {note.message}"))

    def _flush_settled_logs(self) -> None:
        """Log deferred assistant turns that no truncation is pending for."""
        announce: list[Notification] = []
        pending = set(self._pending_truncates.values())
        for item_id in [i for i in self._deferred_logs if i not in pending]:
            self._flush_deferred(item_id, announce)
        for note in announce:
            self._publish(note)

    def _flush_deferred(self, item_id: str, announce: list[Notification]) -> None:
        done = self._deferred_logs.pop(item_id, None)
        if done is not None:
            self._log_turn(item_id, announce, done=done)

    def _transcription_enabled(self) -> bool:
        session = self.conversation.session or {}
        return bool(session.get("audio", {}).get("input", {}).get("transcription"))

    def _log_turn(
        self, item_id: str, announce: list[Notification], done: ResponseDone | None = None
    ) -> None:
        """Append a finished turn to the history (fsync'd) and announce it after."""
        if item_id in self._logged_items:
            return
        item = self.conversation.item(item_id)
        if item is None:
            return
        self._logged_items.add(item_id)
        record: dict[str, Any] = {
            "item_id": item.id,
            "type": item.type,
            "role": item.role or "",
            "text": item.text,
        }
        if item.type == "function_call":
            record.update(name=item.name, call_id=item.call_id, arguments=item.arguments)
        if item.truncated_at_ms is not None:
            record.update(
                truncated_at_ms=item.truncated_at_ms,
                heard=item.heard_text,
                unheard=item.unheard_text,
            )
        if done is not None:
            record.update(response_id=done.response_id, status=done.status, reason=done.reason)
            if done.usage is not None:
                u = done.usage
                record["usage"] = {
                    "input_tokens": u.input_tokens,
                    "output_tokens": u.output_tokens,
                    "input_audio_tokens": u.input_audio_tokens,
                    "input_text_tokens": u.input_text_tokens,
                    "input_cached_tokens": u.input_cached_tokens,
                    "output_audio_tokens": u.output_audio_tokens,
                    "output_text_tokens": u.output_text_tokens,
                }
        if self._history is not None:
            try:
                self._history.append_turn(record)
            except OSError as exc:
                self._publish(Notice("error", f"could not write the history: {exc}"))
        announce.append(TurnLogged(item.id, item.role or item.type, item.text))

    # -- playback bookkeeping --------------------------------------------------------

    def _watch_drain(self) -> None:
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.get_running_loop().create_task(
                self._await_drain(), name="voicecli-drain"
            )

    async def _await_drain(self) -> None:
        """Wait for the sink to finish what it holds, then mark playback idle."""
        await self._sink.drained()
        self._check_speaker()
        self._record_played(drained=True)
        self._note_first_sample(final=True)
        self._flush_settled_logs()
        if self.conversation.active_response_id is None and self._status.response in (
            "playing",
            "generating",
            "cancelled",
        ):
            self._set_status(response="idle")
        self._maybe_rotate()

    def _note_first_sample(self, *, final: bool = False) -> None:
        """Latency: end of the user's speech to the first sample at the speaker,
        read from the sink's played-time accounting."""
        key = self._awaiting_first_audio
        if key is None or self._speech_end_at is None or self._first_audio_at is None:
            return
        played = self._sink.played_ms(*key)
        if played <= 0 and not final:
            return
        heard_at = time.monotonic() - played / 1000.0
        heard_at = max(heard_at, self._first_audio_at)
        self._set_status(last_latency_ms=round((heard_at - self._speech_end_at) * 1000.0, 1))
        self._awaiting_first_audio = None
        self._speech_end_at = None

    def _mark_speech_end(self) -> None:
        self._speech_end_at = time.monotonic()
        self._first_audio_at = None
        self._awaiting_first_audio = None

    def _barge_in(self, *, server_cancels: bool) -> None:
        active = self.conversation.active_response_id
        active_for_cancel = None if active in self._cancel_sent else active
        parts = [
            PlayedPart(
                item_id,
                ci,
                self._sink.played_ms(item_id, ci),
                part.received_bytes,
                part.done,
                part.truncated,
            )
            for (item_id, ci), part in self._parts.items()
        ]
        plan = plan_barge_in(
            parts,
            active_response_id=active_for_cancel,
            playing=self._sink.is_playing,
            server_cancels=server_cancels,
        )
        if plan is None:
            return
        self._record_played()  # heard so far; the rest once the sink is quiet, or never
        received = {key: (part.received_bytes, part.done) for key, part in self._parts.items()}
        if plan.flush:
            self._sink.flush(fade=True)
        for part in self._parts.values():
            self._silenced.add(part.response_id)
        if active is not None:
            self._silenced.add(active)
        if plan.cancel and plan.response_id is not None:
            self._cancel_sent.add(plan.response_id)
            self._send(self._ev.response_cancel(plan.response_id))
        recorded, self._recorded = self._recorded, {}
        if plan.flush and (plan.truncates or recorded):
            # what the device already holds still plays (about its latency): truncate,
            # and record, to what was really heard once the flushed sink is quiet
            cuts = [
                (cut, *received.get((cut.item_id, cut.content_index), (0, False)))
                for cut in plan.truncates
            ]
            for cut, *_ in cuts:
                self._pending_truncates[f"settling:{cut.item_id}"] = cut.item_id
            task = asyncio.get_running_loop().create_task(
                self._truncate_when_heard(cuts, recorded), name="voicecli-truncate"
            )
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)
        else:
            for cut in plan.truncates:
                self._send_truncate(cut.item_id, cut.content_index, cut.audio_end_ms)
        self._parts.clear()
        self._awaiting_first_audio = None
        self._set_status(response="cancelled")
        self._flush_settled_logs()

    def _send_truncate(self, item_id: str, content_index: int, audio_end_ms: int) -> None:
        event = self._ev.truncate(item_id, content_index, audio_end_ms)
        self._pending_truncates[str(event["event_id"])] = item_id
        self._send(event)

    async def _truncate_when_heard(
        self,
        cuts: list[tuple[Truncate, int, bool]],
        recorded: dict[tuple[str, int], _Recorded],
    ) -> None:
        """After a flush: wait until the sink has played out what the device held (at
        most its latency plus a margin), then truncate each part to what was heard."""
        settle_s = float(self.config.audio.output_latency) + SETTLE_MARGIN_S
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._sink.drained(), settle_s)
        for cut, received_bytes, done in cuts:
            self._pending_truncates.pop(f"settling:{cut.item_id}", None)
            played = self._sink.played_ms(cut.item_id, cut.content_index)
            end = max(cut.audio_end_ms, truncate_point(played, received_bytes))
            if done and end >= received_bytes // BYTES_PER_MS:
                continue  # heard to its end after all: nothing to cut
            self._send_truncate(cut.item_id, cut.content_index, end)
        if self._recorder is not None:
            for key, rec in recorded.items():
                heard = min(len(rec.pcm), self._sink.played_ms(*key) * BYTES_PER_MS)
                if heard > rec.taken:
                    self._recorder.add_assistant(bytes(rec.pcm[rec.taken : heard]))
        self._flush_settled_logs()

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
        expires = self.conversation.expires_at
        if expires is None or self._rotate_now.is_set():
            return
        if expires - time.time() > self._rotate_margin_s:
            return
        quiet = (
            self.conversation.active_response_id is None
            and not self._sink.is_playing
            and not self._tc.in_turn
            and self._status.vad == "silence"
        )
        if quiet:
            self._publish(Notice("info", "renewing the session before it expires"))
            self._rotate_now.set()

    # -- mic -------------------------------------------------------------------------

    async def _mic_loop(self) -> None:
        if self._source is None:
            return
        await self._connected.wait()
        try:
            async with self._source as source:
                self._set_status(mic="live")
                self._refresh_mic()
                async for block in source.blocks():
                    if not self._live and self._outbox_audio_ms > self._max_backlog_ms:
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
        if self._end_turn_at_eof and self._tc.client_decides:
            self.commit()
        self._set_status(mic="off")

    def _mic_lost(self, exc: AudioDeviceLost) -> None:
        """The microphone went away mid-conversation: drop the half-said turn (it would
        be answered as if complete) and go on in text mode."""
        if self._tc.in_turn:
            self._do(self._tc.clear())
        self._set_status(mic="unavailable", vad="silence", mic_level=0.0)
        self._publish(Notice("warning", f"microphone lost ({exc}): continuing in text mode"))

    def _on_block(self, block: np.ndarray[Any, np.dtype[np.int16]]) -> None:
        pcm = block.tobytes()
        dbfs = rms_dbfs(block)
        level = max(0.0, min(1.0, (dbfs + 60.0) / 60.0))
        if self._recorder is not None:
            self._recorder.add_mic(np.zeros_like(block) if self._tc.muted else block)
            self._record_played(lead_ms=RECORD_LEAD_MS)
        self._check_speaker()
        playing = self._sink.is_playing
        # fed every block, playing or not: the guard counts time in mic samples, so only
        # then do its window and hold run on after playback stops (and old levels expire)
        echo_ok = self._echo.user_speaking(block, self._sink.level_dbfs)
        if self._tc.muted:
            self._set_level(0.0)
            return
        # the echo reaches the mic after the sink falls silent (device latency, the
        # room): while the guard still expects it, treat the assistant as audible
        self._tc.playing = playing or not echo_ok
        actions: list[Action] = []
        covered = False
        for event in self._endpointer.feed(block):
            if isinstance(event, SpeechStart):
                self._set_status(vad="speech")
                preroll = event.preroll.tobytes()
                actions.extend(self._tc.speech_start(preroll, echo_ok=echo_ok))
                # in local-vad the pre-roll carries this block (sent, or held as
                # possible echo); the server modes stream it below as any other
                covered = covered or self._tc.mode == "local-vad"
            elif isinstance(event, SpeechEnd):
                self._set_status(vad="silence")
                if self._tc.in_turn:
                    self._mark_speech_end()
                actions.extend(self._tc.speech_end())
        if not covered:
            ep = self._endpointer
            voiced = dbfs > ep.noise_floor_dbfs + ep.gate_db
            actions.extend(self._tc.block(pcm, echo_ok=echo_ok, voiced=voiced))
        self._do(actions)
        self._note_first_sample()
        self._set_level(level)
        self._refresh_mic()

    def _do(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Append):
                self._send(self._ev.append(action.pcm))
            elif isinstance(action, Commit):
                if self._speech_end_at is None or self._tc.mode != "local-vad":
                    self._mark_speech_end()
                self._send(self._ev.commit())
                if action.respond:
                    self._send(self._ev.response_create())
            elif isinstance(action, Clear):
                self._send(self._ev.clear())
            elif isinstance(action, BargeIn):
                self._barge_in(server_cancels=False)

    def _refresh_mic(self) -> None:
        if self._source is None or self._status.mic in ("unavailable", "off"):
            return
        if self._tc.muted:
            mic = "muted"
        elif self._tc.in_turn or not self._tc.client_decides:
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
        self._set_connection("failed", message)
        self._publish(Notice("error", message))

    def _publish(self, note: Notification) -> None:
        for callback in list(self._subscribers):
            try:
                callback(note)
            except Exception:  # a broken subscriber must not stop the engine
                log.exception("subscriber failed on %s", type(note).__name__)


__all__ = ["Backoff", "Engine", "changed_fields", "deep_merge", "turn_detection_for"]
