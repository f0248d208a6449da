"""The playback tracker: assistant audio from the protocol to the speaker, and back.

It writes each audio delta to the sink, keeps per content part what was received,
and on a barge-in (the user speaks, or presses escape) flushes the sink, cancels the
response and truncates each part to what the user really heard: the sink's played-time
ledger (DAC time) says how much that was, so the truncation waits until the flushed
sink is quiet. It also feeds the conversation recording with what was heard, measures
the latency to the first sample heard, and reports a speaker that underruns or dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicecli import aio
from voicecli.audio.sinks import AudioSink, NullSink
from voicecli.audio.wav import ConversationRecorder
from voicecli.engine.bargein import PlayedPart, Truncate, plan_barge_in, truncate_point
from voicecli.engine.notifications import Notice
from voicecli.engine.tasks import reap
from voicecli.pcm import BYTES_PER_MS
from voicecli.protocol.client_events import ClientEvents, JsonEvent
from voicecli.protocol.conversation import Conversation
from voicecli.protocol.notifications import AudioDelta, AudioDone, Notification
from voicecli.writer import DiskWriter

log = logging.getLogger(__name__)

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


PartKey = tuple[str, int]


class PlaybackTracker:
    """See the module docstring. ``send`` queues a client event; ``set_response`` sets
    the engine's response state; ``set_status`` any other status field; ``publish``
    forwards a notification; ``settled`` runs when a truncation or the playback is
    over (deferred turns may be logged then)."""

    def __init__(
        self,
        sink: AudioSink,
        conversation: Conversation,
        events: ClientEvents,
        *,
        output_latency: float,
        record_to: Path | None,
        disk: DiskWriter,
        send: Callable[[JsonEvent], None],
        set_status: Callable[..., None],
        publish: Callable[[Notification], None],
        settled: Callable[[], None],
    ) -> None:
        self.sink: AudioSink = sink
        self._conversation = conversation
        self._ev = events
        self._output_latency = output_latency
        self._record_to = record_to
        self._disk = disk
        self._send = send
        self._set_status = set_status
        self._publish = publish
        self._settled = settled
        self._parts: dict[PartKey, _Part] = {}
        self._silenced: set[str] = set()
        self._cancel_sent: set[str] = set()
        self._pending_truncates: dict[str, str] = {}  # truncate event_id -> item_id
        self._recorder: ConversationRecorder | None = None
        self._recorded: dict[PartKey, _Recorded] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._drain_task: asyncio.Task[None] | None = None
        self._speech_end_at: float | None = None
        self._first_audio_at: float | None = None
        self._awaiting_first_audio: PartKey | None = None
        self._speaker_lost = False
        self._underruns = 0
        self._underrun_warned = False
        self.last_latency_ms: float | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the speaker (a failing one becomes a NullSink, with a notice) and open
        the recording when one is configured."""
        try:
            await self.sink.start()
        except Exception as exc:  # a speaker that fails must not stop the engine
            self._publish(Notice("error", f"speaker unavailable ({exc}): replies are not played"))
            with contextlib.suppress(Exception):
                await self.sink.close()
            self.sink = NullSink()
        if self._record_to is not None and self._recorder is None:
            try:
                self._recorder = ConversationRecorder(
                    self._record_to, disk=self._disk, on_error=self._recording_failed
                )
            except OSError as exc:
                self._publish(Notice("error", f"cannot record to {self._record_to}: {exc}"))

    def _recording_failed(self, exc: BaseException) -> None:
        self._publish(Notice("error", f"the recording is incomplete: {exc}"))

    async def close(self) -> None:
        """Wait for pending truncations' tasks, close the recording and the speaker."""
        tasks = [*self._tasks, *([self._drain_task] if self._drain_task else [])]
        await reap(tasks)
        self._drain_task = None
        if self._recorder is not None:
            self._record_played()
            self._recorder.close()  # on the writer thread, after the last write
            self._recorder = None
            self._recorded.clear()
        try:
            await self.sink.close()
        except Exception:  # closing must not mask why the engine stops
            log.warning("closing the audio sink failed", exc_info=True)

    # -- state for the others ------------------------------------------------------------

    @property
    def is_playing(self) -> bool:
        return self.sink.is_playing

    def playing_items(self) -> set[str]:
        return {item_id for item_id, _ in self._parts}

    def truncating_items(self) -> set[str]:
        """Items whose truncation is pending (their turn is not final yet)."""
        return set(self._pending_truncates.values())

    def unsettled_items(self) -> set[str]:
        """Items whose turn is not final yet: still playing, or being truncated."""
        playing = self.playing_items() if self.is_playing else set()
        return self.truncating_items() | playing

    # -- from the protocol -----------------------------------------------------------------

    def on_audio(self, note: AudioDelta) -> None:
        if note.response_id in self._silenced:
            return
        key = (note.item_id, note.content_index)
        part = self._parts.get(key)
        if part is None:
            part = self._parts[key] = _Part(note.response_id)
        part.received_bytes += len(note.pcm)
        self.sink.write(note.pcm, note.item_id, note.content_index)
        self.check_speaker()
        if self._recorder is not None:
            self._recorded.setdefault(key, _Recorded(bytearray())).pcm += note.pcm
        if self._first_audio_at is None:
            self._first_audio_at = time.monotonic()
            self._awaiting_first_audio = key
        self._set_status(response="playing")
        self._watch_drain()

    def response_started(self) -> None:
        """A response began: its audio may follow, so the speaker gets ready now (a
        stream stopped while idle takes a while to start)."""
        self.sink.wake()

    def on_audio_done(self, note: AudioDone) -> None:
        part = self._parts.get((note.item_id, note.content_index))
        if part is not None:
            part.done = True

    def response_done(self, response_id: str) -> None:
        self._cancel_sent.discard(response_id)

    def truncated(self, item_id: str) -> None:
        """The server confirmed a truncation of ``item_id``."""
        for event_id, pending in list(self._pending_truncates.items()):
            if pending == item_id:
                del self._pending_truncates[event_id]

    def rejected(self, client_event_id: str | None) -> str | None:
        """A truncation the server refused: returns its item id (None: not ours)."""
        if client_event_id is None:
            return None
        return self._pending_truncates.pop(client_event_id, None)

    def new_connection(self) -> None:
        """Parts of the old connection will get no more audio or truncations."""
        self._parts.clear()

    # -- the mic side ------------------------------------------------------------------------

    def record_mic(self, block: np.ndarray[Any, np.dtype[np.int16]], *, muted: bool) -> None:
        """Lay a mic block into the recording (silence while muted), and the assistant
        audio heard until now beside it."""
        if self._recorder is None:
            return
        self._recorder.add_mic(np.zeros_like(block) if muted else block)
        self._record_played(lead_ms=RECORD_LEAD_MS)

    def mark_speech_end(self) -> None:
        """The user's turn ended now: the latency clock starts."""
        self._speech_end_at = time.monotonic()
        self._first_audio_at = None
        self._awaiting_first_audio = None

    @property
    def speech_end_marked(self) -> bool:
        return self._speech_end_at is not None

    def note_first_sample(self, *, final: bool = False) -> None:
        """Latency: end of the user's speech to the first sample at the speaker, read
        from the sink's played-time accounting."""
        key = self._awaiting_first_audio
        if key is None or self._speech_end_at is None or self._first_audio_at is None:
            return
        played = self.sink.played_ms(*key)
        if played <= 0 and not final:
            return
        heard_at = max(time.monotonic() - played / 1000.0, self._first_audio_at)
        self.last_latency_ms = round((heard_at - self._speech_end_at) * 1000.0, 1)
        self._set_status(last_latency_ms=self.last_latency_ms)
        self._awaiting_first_audio = None
        self._speech_end_at = None

    def check_speaker(self) -> None:
        """Count underruns (told once past a few) and report a speaker that died, once;
        playback goes on with it (it plays nothing and counts nothing more as heard, so
        an interrupted reply is still truncated to what the user really heard)."""
        if self._speaker_lost:
            return
        underruns = int(getattr(self.sink, "underflows", 0))
        if underruns != self._underruns:
            self._underruns = underruns
            self._set_status(underruns=underruns)
            if underruns >= UNDERRUN_WARNING_AT and not self._underrun_warned:
                self._underrun_warned = True
                self._publish(
                    Notice(
                        "warning",
                        f"the speaker ran out of audio {underruns} times (crackles): "
                        f"raise audio.output_latency (now {self._output_latency:g} s) "
                        "in the config",
                    )
                )
        error = self.sink.error
        if error is not None:
            self._speaker_lost = True
            self._publish(Notice("warning", f"speaker lost: {error}, continuing without sound"))

    # -- barge-in ------------------------------------------------------------------------------

    def barge_in(self, *, server_cancels: bool, voice_ms: float = 0.0) -> bool:
        """Stop the assistant: flush, cancel (unless the server does), truncate to what
        was heard; ``voice_ms`` > 0 (the user's voice began that long ago): to what was
        heard when it began. False when nothing was playing or running."""
        active = self._conversation.active_response_id
        active_for_cancel = None if active in self._cancel_sent else active
        parts = [
            PlayedPart(
                item_id,
                ci,
                max(0.0, self.sink.played_ms(item_id, ci) - voice_ms),
                part.received_bytes,
                part.done,
                part.truncated,
            )
            for (item_id, ci), part in self._parts.items()
        ]
        plan = plan_barge_in(
            parts,
            active_response_id=active_for_cancel,
            playing=self.sink.is_playing,
            server_cancels=server_cancels,
        )
        if plan is None:
            return False
        self._record_played()  # heard so far; the rest once the sink is quiet, or never
        received = {key: (part.received_bytes, part.done) for key, part in self._parts.items()}
        if plan.flush:
            self.sink.flush(fade=True)
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
            self._spawn(
                self._truncate_when_heard(cuts, recorded, at_onset=voice_ms > 0),
                "voicecli-truncate",
            )
        else:
            for cut in plan.truncates:
                self._send_truncate(cut.item_id, cut.content_index, cut.audio_end_ms)
        self._parts.clear()
        self._awaiting_first_audio = None
        self._set_status(response="cancelled")
        return True

    def forget_response(self, response_id: str) -> None:
        """The connection died mid-response: drop its audio (it will never finish)."""
        self._silenced.add(response_id)
        self._record_played()
        self._recorded.clear()
        if self.sink.is_playing:
            self.sink.flush(fade=True)
        self._parts.clear()
        self._cancel_sent.discard(response_id)

    def _send_truncate(self, item_id: str, content_index: int, audio_end_ms: int) -> None:
        event = self._ev.truncate(item_id, content_index, audio_end_ms)
        self._pending_truncates[str(event["event_id"])] = item_id
        self._send(event)

    async def _truncate_when_heard(
        self,
        cuts: list[tuple[Truncate, int, bool]],
        recorded: dict[PartKey, _Recorded],
        *,
        at_onset: bool = False,
    ) -> None:
        """After a flush: wait until the sink has played out what the device held (at
        most its latency plus a margin), then truncate each part to what was heard
        (``at_onset``: as planned, to what was heard when the user's voice began)."""
        with contextlib.suppress(TimeoutError):
            async with aio.timeout(self._output_latency + SETTLE_MARGIN_S):
                await self.sink.drained()
        for cut, received_bytes, done in cuts:
            self._pending_truncates.pop(f"settling:{cut.item_id}", None)
            played = self.sink.played_ms(cut.item_id, cut.content_index)
            end = (
                cut.audio_end_ms
                if at_onset
                else max(cut.audio_end_ms, truncate_point(played, received_bytes))
            )
            if done and end >= received_bytes // BYTES_PER_MS:
                continue  # heard to its end after all: nothing to cut
            self._send_truncate(cut.item_id, cut.content_index, end)
        if self._recorder is not None:
            for key, rec in recorded.items():
                heard = min(len(rec.pcm), self.sink.played_ms(*key) * BYTES_PER_MS)
                if heard > rec.taken:
                    self._recorder.add_assistant(bytes(rec.pcm[rec.taken : heard]))
        self._settled()

    # -- draining --------------------------------------------------------------------------------

    def _watch_drain(self) -> None:
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.get_running_loop().create_task(
                self._await_drain(), name="voicecli-drain"
            )

    async def _await_drain(self) -> None:
        """Wait for the sink to finish what it holds, then let the engine settle."""
        await self.sink.drained()
        self.check_speaker()
        self._record_played(drained=True)
        self.note_first_sample(final=True)
        self._settled()

    def _spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- recording ---------------------------------------------------------------------------------

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
                heard = min(heard, (self.sink.played_ms(*key) + lead_ms) * BYTES_PER_MS)
            if heard > rec.taken:
                recorder.add_assistant(bytes(rec.pcm[rec.taken : heard]))
                rec.taken = heard
            if drained:
                del self._recorded[key]


__all__ = ["RECORD_LEAD_MS", "SETTLE_MARGIN_S", "UNDERRUN_WARNING_AT", "PlaybackTracker"]
