"""One Realtime session over one WebSocket: the GA protocol state machine of the local server.

The server has no speech recognition and no language model. Its assistant *echoes*: the
reply to a spoken turn plays back the exact samples of the user's last committed audio
with the transcript "You said N.N seconds of audio."; the reply to a text message says
"You said: <text>", voiced by a soft synthetic tone pattern. Input transcription, when
enabled, is likewise synthetic: "(1.8 s of speech)".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voicecli.server.errors import ProtocolError, invalid_type, invalid_value, missing_parameter
from voicecli.server.errors import unknown_parameter as _unknown
from voicecli.server.faults import Faults
from voicecli.server.items import Item, decode_audio, encode_audio, parse_item
from voicecli.server.session_config import (
    SEMANTIC_VAD_DEFAULTS,
    SESSION_LIFETIME_S,
    check_response_overrides,
    default_session,
    merge_session_update,
)
from voicecli.server.synth import (
    SAMPLES_PER_MS,
    Pcm,
    input_audio_tokens,
    new_id,
    obfuscation,
    output_audio_tokens,
    text_tokens,
    tone_voice,
)
from voicecli.server.tools import calls_for, quote_outputs
from voicecli.server.vad import SEMANTIC_SILENCE_MS, EnergyVad, SpeechStarted

if TYPE_CHECKING:
    from voicecli.server.server import RealtimeServer

log = logging.getLogger(__name__)

#: Audio deltas carry about this much audio each, as the live service sends.
CHUNK_MS = 100
MIN_COMMIT_MS = 100

#: Allowed top-level keys of every client event the GA WebSocket API accepts.
CLIENT_EVENTS: dict[str, tuple[str, ...]] = {
    "session.update": ("session",),
    "input_audio_buffer.append": ("audio",),
    "input_audio_buffer.commit": (),
    "input_audio_buffer.clear": (),
    "conversation.item.create": ("previous_item_id", "item"),
    "conversation.item.truncate": ("item_id", "content_index", "audio_end_ms"),
    "conversation.item.delete": ("item_id",),
    "conversation.item.retrieve": ("item_id",),
    "response.create": ("response",),
    "response.cancel": ("response_id",),
}


class _Dropped(Exception):
    """The connection was dropped on purpose (a fault switch)."""


@dataclass
class _Response:
    id: str
    overrides: dict[str, Any]
    in_conversation: bool
    task: asyncio.Task[None] | None = None
    cancel_reason: str | None = None
    item_ids: list[str] = field(default_factory=list)


class RealtimeSession:
    """State and event handling for one client connection.

    ``received`` holds every client event this connection received (parsed JSON, in
    order; frames that were not JSON objects are not in it)."""

    def __init__(self, ws: ServerConnection, server: RealtimeServer, model: str) -> None:
        self.ws = ws
        self.server = server
        self.faults: Faults = server.faults
        self.started = time.monotonic()
        lifetime = self.faults.expire_after_s
        self.session = default_session(model, SESSION_LIFETIME_S if lifetime is None else lifetime)
        self.received: list[dict[str, Any]] = []
        self.items: list[Item] = []
        self.assistant_has_audio = False
        self.closed = asyncio.Event()
        # Input audio: a timeline in samples since the session's first audio.
        self._timeline = 0
        self._chunks: list[Pcm] = []
        self._buffer_start = 0  # timeline position (samples) of the buffer's first sample
        self._buffered = 0
        self._vad: EnergyVad | None = None
        self._speech_item: str | None = None
        self._speech_start_ms = 0
        self._idle_from_ms = 0.0
        self._appends = 0
        self._responses: dict[str, _Response] = {}
        self._prev_input_tokens = 0
        self._send_lock = asyncio.Lock()
        self._stalled_until = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._configure_vad()

    # --- sending ----------------------------------------------------------------------

    def _event(self, type_: str, **fields: Any) -> dict[str, Any]:
        event: dict[str, Any] = {"type": type_, "event_id": new_id("event")}
        event.update(fields)
        if type_.endswith(".delta"):
            event["obfuscation"] = obfuscation(str(fields.get("delta", "")))
        return event

    async def _stall_if_asked(self) -> None:
        stall = self.faults.take_stall()
        if stall > 0:
            loop = asyncio.get_running_loop()
            self._stalled_until = max(self._stalled_until, loop.time() + stall)
            transport = self.ws.transport
            transport.pause_reading()
            try:
                await asyncio.sleep(stall)
            finally:
                if not transport.is_closing():
                    transport.resume_reading()
        wait = self._stalled_until - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)

    async def send(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = self._event(type_, **fields)
        async with self._send_lock:
            await self._stall_if_asked()
            if self.faults.delay_ms > 0:
                await asyncio.sleep(self.faults.delay_ms / 1000)
            if self.server.record:
                self.server.sent.append(event)
            await self.ws.send(json.dumps(event))
        return event

    async def send_raw(self, frame: str | bytes) -> None:
        """A frame that is deliberately not a valid event (fault injection)."""
        async with self._send_lock:
            if self.server.record:
                self.server.malformed_sent.append(frame)
            await self.ws.send(frame)

    async def send_error(self, err: ProtocolError, client_event_id: str | None) -> None:
        await self.send("error", error=err.payload(client_event_id))

    def drop(self) -> None:
        """Cut the TCP connection without a close frame, like a network failure."""
        self.ws.transport.abort()
        raise _Dropped

    # --- lifecycle ----------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run(self) -> None:
        self._spawn(self._expiry_watchdog())
        try:
            await self.send("session.created", session=self.session)
            async for message in self.ws:
                await self._stall_if_asked()
                await self.handle_frame(message)
        except (ConnectionClosed, _Dropped):
            pass
        finally:
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(BaseException):
                    await task
            self.closed.set()

    async def _expiry_watchdog(self) -> None:
        while True:
            limit = self.faults.expire_after_s
            limit = SESSION_LIFETIME_S if limit is None else limit
            remaining = self.started + limit - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.sleep(min(remaining, 0.05))
        with contextlib.suppress(ConnectionClosed):
            await self.send_error(
                ProtocolError(
                    "session_expired",
                    "Your session hit the maximum duration of 60 minutes.",
                ),
                None,
            )
            await self.ws.close(1000, "session expired")

    # --- dispatch -----------------------------------------------------------------------

    async def handle_frame(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            await self.send_error(
                ProtocolError(
                    "invalid_event",
                    "Binary frames are not supported: send each event as a JSON text frame.",
                ),
                None,
            )
            return
        try:
            event = json.loads(message)
        except ValueError:
            await self.send_error(
                ProtocolError(
                    "invalid_json",
                    "We could not parse the JSON body of your request. (HINT: This likely "
                    "means you aren't using your HTTP library correctly.)",
                ),
                None,
            )
            return
        if not isinstance(event, dict):
            await self.send_error(
                ProtocolError("invalid_event", "Each event must be a JSON object."), None
            )
            return
        self.received.append(event)
        if self.server.record:
            self.server.received.append(event)
        event_id = event.get("event_id")
        if not isinstance(event_id, str):
            event_id = None
        try:
            await self._dispatch(event)
        except ProtocolError as err:
            await self.send_error(err, event_id)
        except (ConnectionClosed, _Dropped):
            raise
        except Exception:
            # A bug here must not take the session down: report it as the service would.
            log.exception("local server failed on a %r event", event.get("type"))
            await self.send_error(
                ProtocolError(
                    "server_error",
                    "The server had an error while processing your request.",
                    error_type="server_error",
                ),
                event_id,
            )

    async def _dispatch(self, event: dict[str, Any]) -> None:
        type_ = event.get("type")
        if "event_id" in event and not isinstance(event["event_id"], str):
            raise invalid_type("event_id", "a string", event["event_id"])
        if type_ not in CLIENT_EVENTS:
            if type_ is None:
                raise missing_parameter("type")
            listed = ", ".join(f"'{t}'" for t in CLIENT_EVENTS)
            raise ProtocolError(
                "invalid_value",
                f"Invalid value: '{type_}'. Supported values are: {listed}.",
                "type",
            )
        allowed = CLIENT_EVENTS[type_]
        for key in event:
            if key not in ("type", "event_id", *allowed):
                raise _unknown(key)
        handler: Callable[[dict[str, Any]], Any] = getattr(self, "on_" + type_.replace(".", "_"))
        await handler(event)

    # --- session ------------------------------------------------------------------------

    async def on_session_update(self, event: dict[str, Any]) -> None:
        if "session" not in event:
            raise missing_parameter("session")
        self.session = merge_session_update(
            self.session, event["session"], voice_locked=self.assistant_has_audio
        )
        self._configure_vad()
        await self.send("session.updated", session=self.session)

    @property
    def turn_detection(self) -> dict[str, Any] | None:
        td = self.session["audio"]["input"]["turn_detection"]
        return td if isinstance(td, dict) else None

    def _configure_vad(self) -> None:
        td = self.turn_detection
        if td is None:
            self._vad = None
            self._speech_item = None
            return
        if td["type"] == "server_vad":
            args = (td["threshold"], td["prefix_padding_ms"], td["silence_duration_ms"])
        else:
            eagerness = td.get("eagerness", SEMANTIC_VAD_DEFAULTS["eagerness"])
            args = (0.5, 300, SEMANTIC_SILENCE_MS[eagerness])
        if self._vad is None:
            self._vad = EnergyVad(*args)
            # The detector's clock is the session timeline.
            self._vad.position = self._timeline
        else:
            self._vad.configure(*args)

    # --- input audio buffer ---------------------------------------------------------------

    @property
    def now_ms(self) -> float:
        return self._timeline / SAMPLES_PER_MS

    def _take_buffer(self, start: int | None = None, end: int | None = None) -> Pcm:
        """Remove and return timeline samples [start, end) of the buffer (default: all);
        whatever precedes ``end`` is dropped."""
        data = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        lo = 0 if start is None else max(0, start - self._buffer_start)
        hi = len(data) if end is None else max(lo, min(len(data), end - self._buffer_start))
        segment: Pcm = data[lo:hi].copy()
        rest = data[hi:]
        self._chunks = [rest] if len(rest) else []
        self._buffered = len(rest)
        self._buffer_start = self._timeline - len(rest)
        return segment

    async def on_input_audio_buffer_append(self, event: dict[str, Any]) -> None:
        if "audio" not in event:
            raise missing_parameter("audio")
        self._appends += 1
        if self.faults.drop_on_append is not None and self._appends == self.faults.drop_on_append:
            self.drop()
        pcm = decode_audio(event["audio"], "audio")
        if not len(pcm):
            return
        self._chunks.append(pcm)
        self._buffered += len(pcm)
        self._timeline += len(pcm)
        if self._vad is not None:
            for ev in self._vad.feed(pcm):
                if isinstance(ev, SpeechStarted):
                    await self._speech_started(ev.audio_start_ms)
                else:
                    await self._speech_stopped(ev.audio_end_ms)
            await self._check_idle()
            if not self._vad.in_speech:
                self._trim_idle_buffer()

    def _trim_idle_buffer(self) -> None:
        # Under server VAD only the prefix padding before speech matters; keep a generous
        # tail (a manual commit still gets recent audio) but bound memory.
        keep = 30_000 * SAMPLES_PER_MS
        if self._buffered > 2 * keep:
            self._take_buffer(end=self._timeline - keep)

    async def _speech_started(self, audio_start_ms: int) -> None:
        start = max(audio_start_ms, math.ceil(self._buffer_start / SAMPLES_PER_MS))
        self._speech_item = new_id("item")
        self._speech_start_ms = start
        await self.send(
            "input_audio_buffer.speech_started", audio_start_ms=start, item_id=self._speech_item
        )
        td = self.turn_detection
        if td and td.get("interrupt_response"):
            for resp in list(self._responses.values()):
                if resp.in_conversation and resp.cancel_reason is None:
                    resp.cancel_reason = "turn_detected"

    async def _speech_stopped(self, audio_end_ms: int) -> None:
        item_id = self._speech_item or new_id("item")
        self._speech_item = None
        await self.send(
            "input_audio_buffer.speech_stopped", audio_end_ms=audio_end_ms, item_id=item_id
        )
        pcm = self._take_buffer(
            self._speech_start_ms * SAMPLES_PER_MS, audio_end_ms * SAMPLES_PER_MS
        )
        self._idle_from_ms = audio_end_ms
        await self._commit_user_audio(pcm, item_id)
        await self._auto_respond()

    async def _auto_respond(self) -> None:
        td = self.turn_detection
        if td and td.get("create_response") and not self._conversation_response():
            self._start_response({})

    async def _check_idle(self) -> None:
        td = self.turn_detection
        idle = td.get("idle_timeout_ms") if td else None
        if not idle or self._speech_item or self._responses:
            return
        if self.now_ms - self._idle_from_ms < idle:
            return
        item_id = new_id("item")
        start, end = int(self._idle_from_ms), int(self.now_ms)
        self._idle_from_ms = self.now_ms
        await self.send(
            "input_audio_buffer.timeout_triggered",
            audio_start_ms=start,
            audio_end_ms=end,
            item_id=item_id,
        )
        await self._commit_user_audio(self._take_buffer(), item_id)
        await self._auto_respond()

    async def on_input_audio_buffer_commit(self, event: dict[str, Any]) -> None:
        ms = self._buffered / SAMPLES_PER_MS
        if ms < MIN_COMMIT_MS:
            raise ProtocolError(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {ms:.2f} ms of audio.",
            )
        item_id = self._speech_item or new_id("item")
        self._speech_item = None
        if self._vad is not None:
            self._vad.reset()
        await self._commit_user_audio(self._take_buffer(), item_id)

    async def on_input_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        self._take_buffer()
        self._speech_item = None
        if self._vad is not None:
            self._vad.reset()
        await self.send("input_audio_buffer.cleared")

    async def _commit_user_audio(self, pcm: Pcm, item_id: str) -> None:
        previous = self.items[-1].id if self.items else None
        item = Item(
            id=item_id,
            type="message",
            role="user",
            content=[{"type": "input_audio", "transcript": None}],
            audio=pcm,
        )
        self.items.append(item)
        await self.send("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        await self.send("conversation.item.added", previous_item_id=previous, item=item.wire())
        await self.send("conversation.item.done", previous_item_id=previous, item=item.wire())
        if self.session["audio"]["input"]["transcription"] is not None:
            await self._transcribe(item)

    async def _transcribe(self, item: Item) -> None:
        """Synthetic transcription: the server has no STT, it reports the duration."""
        seconds = item.audio_ms / 1000
        transcript = f"({seconds:.1f} s of speech)"
        pieces = transcript.split(" ")
        for i, word in enumerate(pieces):
            await self.send(
                "conversation.item.input_audio_transcription.delta",
                item_id=item.id,
                content_index=0,
                delta=word if i == 0 else " " + word,
            )
        item.content[0]["transcript"] = transcript
        await self.send(
            "conversation.item.input_audio_transcription.completed",
            item_id=item.id,
            content_index=0,
            transcript=transcript,
            usage={"type": "duration", "seconds": round(seconds, 3)},
        )

    # --- conversation items -------------------------------------------------------------

    def _find(self, item_id: Any, param: str = "item_id") -> Item:
        if not isinstance(item_id, str):
            raise missing_parameter(param)
        for item in self.items:
            if item.id == item_id:
                return item
        raise ProtocolError("item_not_found", f"Item with item_id '{item_id}' not found.", param)

    async def on_conversation_item_create(self, event: dict[str, Any]) -> None:
        if "item" not in event:
            raise missing_parameter("item")
        item = parse_item(event["item"])
        if any(i.id == item.id for i in self.items):
            raise ProtocolError(
                "item_already_exists", f"Item with id '{item.id}' already exists.", "item.id"
            )
        prev = event.get("previous_item_id")
        if prev is None:
            index = len(self.items)
        elif prev == "root":
            index = 0
        else:
            index = self.items.index(self._find(prev, "previous_item_id")) + 1
        previous = self.items[index - 1].id if index > 0 else None
        self.items.insert(index, item)
        if item.role == "assistant" and item.audio is not None:
            self.assistant_has_audio = True
        await self.send("conversation.item.added", previous_item_id=previous, item=item.wire())
        await self.send("conversation.item.done", previous_item_id=previous, item=item.wire())

    async def on_conversation_item_delete(self, event: dict[str, Any]) -> None:
        item = self._find(event.get("item_id"))
        self.items.remove(item)
        await self.send("conversation.item.deleted", item_id=item.id)

    async def on_conversation_item_retrieve(self, event: dict[str, Any]) -> None:
        item = self._find(event.get("item_id"))
        wire = item.wire()
        if item.audio is not None:
            for part in wire.get("content", []):
                if part.get("type") in ("input_audio", "output_audio"):
                    part["audio"] = encode_audio(item.audio)
        await self.send("conversation.item.retrieved", item=wire)

    async def on_conversation_item_truncate(self, event: dict[str, Any]) -> None:
        item = self._find(event.get("item_id"))
        index = event.get("content_index")
        end_ms = event.get("audio_end_ms")
        if isinstance(index, bool) or not isinstance(index, int):
            raise invalid_type("content_index", "an integer", index)
        if isinstance(end_ms, bool) or not isinstance(end_ms, int):
            raise invalid_type("audio_end_ms", "an integer", end_ms)
        if (
            item.role != "assistant"
            or not 0 <= index < len(item.content)
            or item.content[index].get("type") != "output_audio"
        ):
            raise ProtocolError(
                "invalid_value", "Only model output audio messages can be truncated", "item_id"
            )
        have_ms = int(item.audio_ms)
        if end_ms > have_ms:
            raise ProtocolError(
                "invalid_value",
                f"Audio content of {have_ms} ms is already shorter than {end_ms} ms",
                "audio_end_ms",
            )
        if end_ms <= 0:
            raise invalid_value("audio_end_ms", "must be greater than 0.")
        for resp in self._responses.values():
            if item.id in resp.item_ids and resp.cancel_reason is None:
                resp.cancel_reason = "client_cancelled"
        assert item.audio is not None
        item.audio = item.audio[: end_ms * SAMPLES_PER_MS]
        part = item.content[index]
        part["transcript"] = _cut_words(str(part.get("transcript") or ""), end_ms / max(have_ms, 1))
        await self.send(
            "conversation.item.truncated", item_id=item.id, content_index=index, audio_end_ms=end_ms
        )

    # --- responses ----------------------------------------------------------------------

    def _conversation_response(self) -> _Response | None:
        for resp in self._responses.values():
            if resp.in_conversation:
                return resp
        return None

    async def on_response_create(self, event: dict[str, Any]) -> None:
        overrides = check_response_overrides(
            event.get("response", {}),
            voice_locked=self.assistant_has_audio,
            voice=self.session["audio"]["output"]["voice"],
        )
        if "input" in overrides:
            overrides["input"] = self._resolve_input(overrides["input"])
        in_conversation = overrides.get("conversation", "auto") != "none"
        active = self._conversation_response()
        if in_conversation and active is not None:
            raise ProtocolError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {active.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        self._start_response(overrides)

    def _resolve_input(self, raw: list[Any]) -> list[Item]:
        out = []
        for i, entry in enumerate(raw):
            path = f"response.input[{i}]"
            if isinstance(entry, dict) and entry.get("type") == "item_reference":
                out.append(self._find(entry.get("id"), f"{path}.id"))
            else:
                out.append(parse_item(entry, path))
        return out

    async def on_response_cancel(self, event: dict[str, Any]) -> None:
        wanted = event.get("response_id")
        if wanted is not None:
            target = self._responses.get(wanted)
        else:
            target = self._conversation_response() or next(iter(self._responses.values()), None)
        if target is None or target.cancel_reason is not None:
            raise ProtocolError(
                "response_cancel_not_active",
                "Cancellation failed: no active response found",
                "response_id" if wanted is not None else None,
            )
        target.cancel_reason = "client_cancelled"

    def _start_response(self, overrides: dict[str, Any]) -> None:
        resp = _Response(
            id=new_id("resp"),
            overrides=overrides,
            in_conversation=overrides.get("conversation", "auto") != "none",
        )
        self._responses[resp.id] = resp
        resp.task = self._spawn(self._run_response(resp))

    async def _run_response(self, resp: _Response) -> None:
        try:
            await Reply(self, resp).run()
        except (ConnectionClosed, _Dropped):
            pass
        except Exception:
            log.exception("local server failed while generating %s", resp.id)
        finally:
            self._responses.pop(resp.id, None)
            self._idle_from_ms = self.now_ms

    def response_finished(self, input_tokens: int) -> None:
        self._prev_input_tokens = input_tokens

    def cached_tokens(self) -> int:
        """Prompt caching as the live service reports it: the previous prompt, in 64-token
        blocks, once it reaches 1024 tokens."""
        prev = self._prev_input_tokens
        return (prev // 64) * 64 if prev >= 1024 else 0

    async def inject_malformed(self) -> None:
        for kind in self.faults.malformed_before_reply:
            if kind == "text":
                await self.send_raw("this is not JSON {")
            elif kind == "binary":
                await self.send_raw(b"\x00\x01binary frame")
            elif kind == "unknown_type":
                await self.send_raw(
                    json.dumps({"type": "server.mystery_event", "event_id": new_id("event")})
                )
            elif kind == "missing_fields":
                await self.send_raw(
                    json.dumps({"type": "response.output_audio.delta", "event_id": new_id("event")})
                )


def _cut_words(text: str, fraction: float) -> str:
    """The words of ``text`` spoken within ``fraction`` of its duration."""
    limit = len(text) * fraction
    kept: list[str] = []
    pos = 0
    for word in text.split(" "):
        pos += len(word) + (1 if kept else 0)
        if pos > limit:
            break
        kept.append(word)
    return " ".join(kept)


def _split_text(text: str, parts: int) -> list[str]:
    """Split ``text`` at word boundaries into ``parts`` roughly equal deltas (some may be
    empty) whose concatenation is ``text``."""
    words = text.split(" ")
    pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
    if parts <= 0:
        return []
    out = ["" for _ in range(parts)]
    for i, piece in enumerate(pieces):
        out[min(parts - 1, i * parts // max(len(pieces), 1))] += piece
    return out


class Reply:
    """Generates one response, in the live service's exact wire order."""

    def __init__(self, session: RealtimeSession, resp: _Response) -> None:
        self.s = session
        self.resp = resp
        cfg = session.session
        ov = resp.overrides
        self.modalities: list[str] = ov.get("output_modalities", cfg["output_modalities"])
        out_audio = ov.get("audio", {}).get("output", {})
        self.voice: str = out_audio.get("voice", cfg["audio"]["output"]["voice"])
        self.max_tokens: int | str = ov.get("max_output_tokens", cfg["max_output_tokens"])
        self.instructions: str = ov.get("instructions", cfg["instructions"])
        self.tools: list[dict[str, Any]] = ov.get("tools", cfg["tools"])
        self.tool_choice: Any = ov.get("tool_choice", cfg["tool_choice"])
        self.metadata: Any = ov.get("metadata")
        self.context: list[Item] = ov.get("input", session.items)
        self.output: list[Item] = []
        self.out_audio_ms = 0.0
        self.out_text = ""
        self.status = "completed"
        self.reason: str | None = None

    def _response(self, status: str, usage: dict[str, Any] | None) -> dict[str, Any]:
        details: dict[str, Any] | None = None
        if status in ("cancelled", "incomplete"):
            details = {"type": status, "reason": self.reason}
        return {
            "object": "realtime.response",
            "id": self.resp.id,
            "status": status,
            "status_details": details,
            "output": [i.wire() for i in self.output],
            "conversation_id": (
                self.s.session["id"].replace("sess_", "conv_", 1)
                if self.resp.in_conversation
                else None
            ),
            "output_modalities": self.modalities,
            "max_output_tokens": self.max_tokens,
            "audio": {
                "output": {
                    "format": dict(self.s.session["audio"]["output"]["format"]),
                    "voice": self.voice,
                }
            },
            "usage": usage,
            "metadata": self.metadata,
        }

    def _budget_left(self) -> float:
        if self.max_tokens == "inf":
            return math.inf
        used = output_audio_tokens(self.out_audio_ms) + text_tokens(self.out_text)
        return float(self.max_tokens) - used

    def _stop_reason(self) -> str | None:
        if self.resp.cancel_reason is not None:
            self.status, self.reason = "cancelled", self.resp.cancel_reason
            return self.reason
        return None

    async def _pace(self, ms: float) -> None:
        pace = self.s.server.pace
        await asyncio.sleep(ms / 1000 / pace if pace > 0 and math.isfinite(pace) else 0)

    def _source(self) -> tuple[str, Pcm | None, Item | None]:
        """What to say: the transcript, the exact audio to echo (if any) and the user item."""
        quoted = quote_outputs(self.context)
        for item in reversed(self.context):
            if item.type == "function_call_output" and quoted is not None:
                return quoted, None, item
            if item.type == "message" and item.role == "user":
                if item.audio is not None and len(item.audio):
                    return (
                        f"You said {item.audio_ms / 1000:.1f} seconds of audio.",
                        item.audio,
                        item,
                    )
                return f"You said: {item.text}", None, item
        return "Hello from the local voicecli server.", None, None

    def _tools_to_call(self, source: Item | None) -> list[tuple[dict[str, Any], str]]:
        on_audio = self.s.faults.call_tools_on_audio
        return calls_for(self.tools, self.tool_choice, source, on_audio=on_audio)

    async def run(self) -> None:
        s = self.s
        await s.inject_malformed()
        await s.send("response.created", response=self._response("in_progress", None))
        transcript, audio, source = self._source()
        calls = self._tools_to_call(source)
        for tool, args in calls:
            await self._function_call(tool, args)
        if not calls:
            await self._message(transcript, audio)
        usage = self._usage()
        s.response_finished(usage["input_tokens"])
        await s.send("response.done", response=self._response(self.status, usage))
        await s.send(
            "rate_limits.updated",
            rate_limits=[
                {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                {
                    "name": "tokens",
                    "limit": 40000,
                    "remaining": max(0, 40000 - usage["total_tokens"]),
                    "reset_seconds": round(usage["total_tokens"] * 60 / 40000, 3),
                },
            ],
        )

    async def _add_output_item(self, item: Item) -> str | None:
        s = self.s
        self.output.append(item)
        self.resp.item_ids.append(item.id)
        await s.send(
            "response.output_item.added",
            response_id=self.resp.id,
            output_index=len(self.output) - 1,
            item=item.wire(),
        )
        previous = None
        if self.resp.in_conversation:
            previous = s.items[-1].id if s.items else None
            s.items.append(item)
            await s.send("conversation.item.added", previous_item_id=previous, item=item.wire())
        return previous

    async def _finish_output_item(self, item: Item, previous: str | None) -> None:
        s = self.s
        if self.resp.in_conversation:
            await s.send("conversation.item.done", previous_item_id=previous, item=item.wire())
        await s.send(
            "response.output_item.done",
            response_id=self.resp.id,
            output_index=len(self.output) - 1,
            item=item.wire(),
        )

    async def _message(self, transcript: str, audio: Pcm | None) -> None:
        s = self.s
        item = Item(id=new_id("item"), type="message", role="assistant", status="in_progress")
        previous = await self._add_output_item(item)
        ids = {
            "response_id": self.resp.id,
            "item_id": item.id,
            "output_index": 0,
            "content_index": 0,
        }
        if "audio" in self.modalities:
            if audio is None:
                audio = tone_voice(transcript)
            await s.send(
                "response.content_part.added", **ids, part={"type": "audio", "transcript": ""}
            )
            item.content.append({"type": "output_audio", "transcript": ""})
            item.audio = np.zeros(0, np.int16)
            said = await self._stream_audio(item, ids, transcript, audio)
            await s.send("response.output_audio.done", **ids)
            await s.send("response.output_audio_transcript.done", **ids, transcript=said)
            await s.send(
                "response.content_part.done", **ids, part={"type": "audio", "transcript": said}
            )
        else:
            await s.send("response.content_part.added", **ids, part={"type": "text", "text": ""})
            item.content.append({"type": "output_text", "text": ""})
            said = await self._stream_text(item, ids, transcript)
            await s.send("response.output_text.done", **ids, text=said)
            await s.send("response.content_part.done", **ids, part={"type": "text", "text": said})
        item.status = "completed" if self.status == "completed" else "incomplete"
        await self._finish_output_item(item, previous)

    async def _stream_audio(
        self, item: Item, ids: dict[str, Any], transcript: str, audio: Pcm
    ) -> str:
        s = self.s
        chunk = CHUNK_MS * SAMPLES_PER_MS
        n_chunks = max(1, math.ceil(len(audio) / chunk))
        words = _split_text(transcript, n_chunks)
        said = ""
        deltas = 0
        for i in range(n_chunks):
            if self._stop_reason():
                break
            pcm = audio[i * chunk : (i + 1) * chunk]
            if self._budget_left() < output_audio_tokens(len(pcm) / SAMPLES_PER_MS) + text_tokens(
                words[i]
            ):
                self.status, self.reason = "incomplete", "max_output_tokens"
                break
            if words[i]:
                said += words[i]
                self.out_text += words[i]
                item.content[0]["transcript"] = said
                await s.send("response.output_audio_transcript.delta", **ids, delta=words[i])
            if len(pcm):
                assert item.audio is not None
                item.audio = np.concatenate([item.audio, pcm])
                self.out_audio_ms += len(pcm) / SAMPLES_PER_MS
                s.assistant_has_audio = True
                await s.send("response.output_audio.delta", **ids, delta=encode_audio(pcm))
                deltas += 1
                limit = s.faults.drop_after_audio_deltas
                if limit is not None and deltas >= limit:
                    s.drop()
            await self._pace(len(pcm) / SAMPLES_PER_MS)
        return said

    async def _stream_text(self, item: Item, ids: dict[str, Any], text: str) -> str:
        s = self.s
        said = ""
        for piece in _split_text(text, len(text.split(" "))):
            if self._stop_reason():
                break
            if self._budget_left() < text_tokens(self.out_text + piece) - text_tokens(
                self.out_text
            ):
                self.status, self.reason = "incomplete", "max_output_tokens"
                break
            said += piece
            self.out_text += piece
            item.content[0]["text"] = said
            await s.send("response.output_text.delta", **ids, delta=piece)
            await self._pace(50)
        return said

    async def _function_call(self, tool: dict[str, Any], args: str) -> None:
        s = self.s
        call_id = new_id("call", 16)
        item = Item(
            id=new_id("item"),
            type="function_call",
            status="in_progress",
            call_id=call_id,
            name=tool["name"],
            arguments="",
        )
        previous = await self._add_output_item(item)
        index = len(self.output) - 1
        ids = {"response_id": self.resp.id, "item_id": item.id, "output_index": index}
        for piece in _split_text(args, max(1, len(args) // 8)):
            if self._stop_reason():
                break
            item.arguments = (item.arguments or "") + piece
            self.out_text += piece
            await s.send(
                "response.function_call_arguments.delta", **ids, call_id=call_id, delta=piece
            )
            await self._pace(20)
        await s.send(
            "response.function_call_arguments.done",
            **ids,
            call_id=call_id,
            name=tool["name"],
            arguments=item.arguments,
        )
        item.status = "completed" if self.status == "completed" else "incomplete"
        await self._finish_output_item(item, previous)

    def _usage(self) -> dict[str, Any]:
        audio_in = 0
        text_in = text_tokens(self.instructions)
        for item in self.context:
            if item in self.output:
                continue
            if item.audio is not None:
                ms = item.audio_ms
                audio_in += (
                    output_audio_tokens(ms) if item.role == "assistant" else input_audio_tokens(ms)
                )
            text_in += text_tokens(item.text or item.arguments or item.output or "")
        total_in = audio_in + text_in
        cached = min(self.s.cached_tokens(), total_in)
        cached_audio = cached * audio_in // total_in if total_in else 0
        out_audio = output_audio_tokens(self.out_audio_ms) if self.out_audio_ms else 0
        out_text = text_tokens(self.out_text)
        return {
            "total_tokens": total_in + out_audio + out_text,
            "input_tokens": total_in,
            "output_tokens": out_audio + out_text,
            "input_token_details": {
                "text_tokens": text_in,
                "audio_tokens": audio_in,
                "image_tokens": 0,
                "cached_tokens": cached,
                "cached_tokens_details": {
                    "text_tokens": cached - cached_audio,
                    "audio_tokens": cached_audio,
                    "image_tokens": 0,
                },
            },
            "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio},
        }
