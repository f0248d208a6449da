"""One response of the local server: what the echo assistant says and how it streams it.

The reply to a spoken turn plays back the exact samples of the user's last committed
audio; the reply to a text message says "You said: <text>" in a synthetic voice; a tool
whose name the user said is called. Deltas are paced like the live service's (faster
than real time), usage is counted like the live service's, and the fault switches that
concern a response (a drop mid-audio, a failure) act here.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from voicecli.server.errors import ProtocolError
from voicecli.server.hostedmcp import plan_round, run_round
from voicecli.server.items import Item, encode_audio
from voicecli.server.synth import (
    SAMPLES_PER_MS,
    Pcm,
    input_audio_tokens,
    new_id,
    output_audio_tokens,
    text_tokens,
    tone_voice,
)
from voicecli.server.tools import calls_for, quote_outputs

if TYPE_CHECKING:
    from voicecli.server.connection import RealtimeSession

#: Audio deltas carry about this much audio each, as the live service sends.
CHUNK_MS = 100


@dataclass
class Response:
    """A response the session runs: its overrides, whether it is in the conversation, its
    task and items."""

    id: str
    overrides: dict[str, Any]
    in_conversation: bool
    task: asyncio.Task[None] | None = None
    cancel_reason: str | None = None
    item_ids: list[str] = field(default_factory=list)


def cut_words(text: str, fraction: float) -> str:
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


def split_text(text: str, parts: int) -> list[str]:
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


FAILURES: dict[str, tuple[str, str]] = {
    "insufficient_quota": (
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    "server_error": (
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
    ),
}
"""Error code -> (type, message) of a failed response: the OpenAI API's texts for a
spent quota and an internal error."""

_NO_USAGE: dict[str, Any] = {
    "total_tokens": 0,
    "input_tokens": 0,
    "output_tokens": 0,
    "input_token_details": {"text_tokens": 0, "audio_tokens": 0, "cached_tokens": 0},
    "output_token_details": {"text_tokens": 0, "audio_tokens": 0},
}


class Reply:
    """Generates one response, in the live service's exact wire order."""

    def __init__(self, session: RealtimeSession, resp: Response) -> None:
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
        self.error: dict[str, str] | None = None

    def _response(self, status: str, usage: dict[str, Any] | None) -> dict[str, Any]:
        details: dict[str, Any] | None = None
        if status in ("cancelled", "incomplete"):
            details = {"type": status, "reason": self.reason}
        if status == "failed":
            details = {"type": status, "error": self.error}
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
        failing = s.faults.fail_responses_with
        if failing is not None:
            await self._fail(failing)
            return
        transcript, audio, source = self._source()
        hosted = plan_round(self.tools, self.context) if self.tool_choice != "none" else None
        calls = self._tools_to_call(source) if hosted is None else []
        for tool, args in calls:
            await self._function_call(tool, args)
        if hosted is not None:
            said = await run_round(self, s.send, self.resp.id, hosted)
            if said is not None:
                await self._message(said, None)
        elif not calls:
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

    async def _fail(self, code: str) -> None:
        """End ``failed`` before any output, with ``status_details.error = {type, code,
        message}`` (the shape of the openai SDK's ``RealtimeResponseStatus.Error``; codes
        and texts as in ``FAILURES``), and no tokens used."""
        kind, message = FAILURES.get(code, ("server_error", f"The response failed ({code})."))
        self.status, self.error = "failed", {"type": kind, "code": code, "message": message}
        self.s.response_finished(0)
        await self.s.send("response.done", response=self._response("failed", _NO_USAGE))

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
        if "audio" in self.modalities and not self._text_only_emulated():
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

    def _text_only_emulated(self) -> bool:
        """:attr:`Faults.text_only_after_text_history`: answer in text although audio was
        asked for when the context holds an earlier assistant message and no audio at
        all (as after a replay, which sends every turn as text). Live models are
        reported to do this (``/work/shared/realtime-protocol.md``; issue 13.6), and a
        client's recovery that adds a user audio message to the context is reported to
        bring speech back (livekit/agents issue 1844)."""
        if not self.s.faults.text_only_after_text_history:
            return False
        history = [i for i in self.context if not any(i is o for o in self.output)]
        answered = any(i.type == "message" and i.role == "assistant" for i in history)
        heard = any(i.audio is not None and len(i.audio) for i in history)
        return answered and not heard

    async def _stream_audio(
        self, item: Item, ids: dict[str, Any], transcript: str, audio: Pcm
    ) -> str:
        s = self.s
        chunk = CHUNK_MS * SAMPLES_PER_MS
        n_chunks = max(1, math.ceil(len(audio) / chunk))
        words = split_text(transcript, n_chunks)
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
                if deltas == s.faults.error_after_audio_deltas:
                    transient = ProtocolError(
                        "server_error", "transient", error_type="server_error"
                    )
                    await s.send_error(transient, None)
            await self._pace(len(pcm) / SAMPLES_PER_MS)
        return said

    async def _stream_text(self, item: Item, ids: dict[str, Any], text: str) -> str:
        s = self.s
        said = ""
        for piece in split_text(text, len(text.split(" "))):
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
        for piece in split_text(args, max(1, len(args) // 8)):
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
