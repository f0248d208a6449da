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
from typing import TYPE_CHECKING, Any

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voicecli import aio
from voicecli.server.envelope import check_envelope, parse_frame
from voicecli.server.errors import ProtocolError, invalid_type, invalid_value, missing_parameter
from voicecli.server.faults import Faults
from voicecli.server.items import Item, decode_audio, encode_audio, parse_item
from voicecli.server.reply import Reply, Response, cut_words
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
    text_tokens,
)
from voicecli.server.vad import SEMANTIC_SILENCE_MS, EnergyVad, SpeechStarted

if TYPE_CHECKING:
    from voicecli.server.server import RealtimeServer

log = logging.getLogger(__name__)

#: The live service's words when a session reaches its time limit.
EXPIRY_TEXT = "Your session hit the maximum duration of 60 minutes."
MIN_COMMIT_MS = 100


class _Dropped(Exception):
    """The connection was dropped on purpose (a fault switch)."""


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
        self._responses: dict[str, Response] = {}
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
        """End the session at its time limit the way the live service has been seen to:
        an ``error`` with code ``session_expired``, then a close 1001 whose reason is
        "Your session hit the maximum duration of 60 minutes." (the close alone with
        :attr:`Faults.expire_without_error`; both forms are in
        ``/work/shared/realtime-protocol.md``)."""
        # sleeps until the limit, woken early only when a test changes the switches
        loop = asyncio.get_running_loop()
        switched = asyncio.Event()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(switched.set)

        unwatch = self.faults.watch(wake)
        try:
            while True:
                limit = self.faults.expire_after_s
                limit = SESSION_LIFETIME_S if limit is None else limit
                remaining = self.started + limit - time.monotonic()
                if remaining <= 0:
                    break
                switched.clear()
                with contextlib.suppress(TimeoutError):
                    async with aio.timeout(remaining):
                        await switched.wait()
        finally:
            unwatch()
        with contextlib.suppress(ConnectionClosed):
            if not self.faults.expire_without_error:
                await self.send_error(ProtocolError("session_expired", EXPIRY_TEXT), None)
            await self.ws.close(1001, EXPIRY_TEXT)

    # --- dispatch -----------------------------------------------------------------------

    async def handle_frame(self, message: str | bytes) -> None:
        try:
            event = parse_frame(message)
        except ProtocolError as err:
            await self.send_error(err, None)
            return
        self.received.append(event)
        if self.server.record:
            self.server.received.append(event)
        event_id = event.get("event_id")
        if not isinstance(event_id, str):
            event_id = None
        try:
            type_ = check_envelope(event)
            handler: Callable[[dict[str, Any]], Any] = getattr(
                self, "on_" + type_.replace(".", "_")
            )
            await handler(event)
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

    # --- session ------------------------------------------------------------------------

    async def on_session_update(self, event: dict[str, Any]) -> None:
        if "session" not in event:
            raise missing_parameter("session")
        self.session = merge_session_update(
            self.session,
            event["session"],
            voice_locked=self.assistant_has_audio,
            transcription_deployments=self.server.azure_deployments,
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
            usage=self._transcription_usage(seconds, transcript),
        )

    def _transcription_usage(self, seconds: float, transcript: str) -> dict[str, Any]:
        """What the live service reports: tokens for the gpt-4o transcribe models (audio
        input at 10 tokens/s, the transcript's text as output), seconds for whisper-1
        (the SDK's ``UsageTranscriptTextUsageTokens`` / ``...Duration``)."""
        model = str((self.session["audio"]["input"].get("transcription") or {}).get("model"))
        if model.startswith("whisper"):
            return {"type": "duration", "seconds": round(seconds, 3)}
        audio, out = input_audio_tokens(seconds * 1000), text_tokens(transcript)
        return {
            "type": "tokens",
            "input_tokens": audio,
            "input_token_details": {"audio_tokens": audio, "text_tokens": 0},
            "output_tokens": out,
            "total_tokens": audio + out,
        }

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
        part["transcript"] = cut_words(str(part.get("transcript") or ""), end_ms / max(have_ms, 1))
        await self.send(
            "conversation.item.truncated", item_id=item.id, content_index=index, audio_end_ms=end_ms
        )

    # --- responses ----------------------------------------------------------------------

    def _conversation_response(self) -> Response | None:
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
        resp = Response(
            id=new_id("resp"),
            overrides=overrides,
            in_conversation=overrides.get("conversation", "auto") != "none",
        )
        self._responses[resp.id] = resp
        resp.task = self._spawn(self._run_response(resp))

    async def _run_response(self, resp: Response) -> None:
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
