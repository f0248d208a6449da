"""What a server event says about cost and failure, parsed leniently: usage of a response
(with the exact cached split of ``cached_tokens_details``), usage of an input
transcription, and why a response failed (``status_details.error``). Bad or missing
fields give zeros or None, never an exception."""

from __future__ import annotations

from typing import Any

from voicecli.protocol.notifications import ResponseError, TranscriptionUsage, Usage


def response_usage(value: Any) -> Usage | None:
    """``response.usage`` of ``response.done``."""
    if not isinstance(value, dict):
        return None
    inp = _obj(value.get("input_token_details"))
    out = _obj(value.get("output_token_details"))
    cached = _obj(inp.get("cached_tokens_details"))
    return Usage(
        input_tokens=count(value.get("input_tokens")),
        output_tokens=count(value.get("output_tokens")),
        input_audio_tokens=count(inp.get("audio_tokens")),
        input_text_tokens=count(inp.get("text_tokens")),
        input_cached_tokens=count(inp.get("cached_tokens")),
        output_audio_tokens=count(out.get("audio_tokens")),
        output_text_tokens=count(out.get("text_tokens")),
        input_cached_audio_tokens=count(cached.get("audio_tokens")),
        input_cached_text_tokens=count(cached.get("text_tokens")),
    )


def transcription_usage(value: Any) -> TranscriptionUsage | None:
    """``usage`` of ``conversation.item.input_audio_transcription.completed``: either
    ``{"type": "tokens", "input_tokens", "input_token_details", "output_tokens"}`` or
    ``{"type": "duration", "seconds"}``."""
    if not isinstance(value, dict):
        return None
    if value.get("type") == "duration":
        seconds = value.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            seconds = 0.0
        return TranscriptionUsage(seconds=float(seconds))
    inp = _obj(value.get("input_token_details"))
    audio = count(inp.get("audio_tokens"))
    text = count(inp.get("text_tokens"))
    if not inp:  # no split given: all input is audio
        audio = count(value.get("input_tokens"))
    return TranscriptionUsage(
        input_audio_tokens=audio,
        input_text_tokens=text,
        output_tokens=count(value.get("output_tokens")),
    )


def response_error(details: Any) -> ResponseError | None:
    """``status_details.error`` of a failed response."""
    error = _obj(_obj(details).get("error"))
    if not error:
        return None
    fields = [error.get(k) for k in ("type", "code", "message")]
    kind, code, message = (f if isinstance(f, str) and f else None for f in fields)
    return ResponseError(kind, code, message)


def count(value: Any) -> int:
    """A token count: a positive int, anything else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


__all__ = ["count", "response_error", "response_usage", "transcription_usage"]
