"""Barge-in, sans-I/O: what to send when the user talks over the assistant.

Two rules from the field (see the protocol reference's "Known traps"): a truncate
with ``audio_end_ms`` of 0 or past the audio received gets an error and can leave
the conversation stuck, so clamp to what was received and skip when nothing was
heard; and ``response.cancel`` with nothing running is an error too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from voicecli.pcm import BYTES_PER_MS


@dataclass(frozen=True, slots=True)
class PlayedPart:
    """One assistant audio content part that was written to the sink."""

    item_id: str
    content_index: int
    played_ms: float
    """Audio that reached the speaker (from the sink)."""
    received_bytes: int
    """PCM bytes received from the server for this part so far."""
    done: bool = False
    """The server finished sending this part (``response.output_audio.done``)."""
    truncated: bool = False
    """Already truncated once: never truncate again."""


@dataclass(frozen=True, slots=True)
class Truncate:
    item_id: str
    content_index: int
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class BargeInPlan:
    flush: bool
    """Fade out and drop what the sink still holds."""
    cancel: bool
    """Send ``response.cancel`` (only when a response is still running)."""
    response_id: str | None
    truncates: tuple[Truncate, ...]


def truncate_point(played_ms: float, received_bytes: int) -> int:
    """``audio_end_ms`` for a part: what was heard, clamped to what was received.

    Returns 0 when nothing was heard, meaning "do not truncate".
    """
    received_ms = received_bytes // BYTES_PER_MS
    heard = math.floor(max(0.0, played_ms))
    return max(0, min(heard, received_ms))


def plan_barge_in(
    parts: Sequence[PlayedPart],
    *,
    active_response_id: str | None,
    playing: bool,
    server_cancels: bool = False,
) -> BargeInPlan | None:
    """Decide a barge-in, or ``None`` when there is nothing to interrupt.

    ``server_cancels``: server VAD with ``interrupt_response`` already cancels the
    response itself, so a second cancel would only earn ``response_cancel_not_active``.
    A part heard to its very end (and fully received) is not truncated: nothing of
    it went unheard.
    """
    if active_response_id is None and not playing:
        return None
    truncates: list[Truncate] = []
    for part in parts:
        if part.truncated:
            continue
        end = truncate_point(part.played_ms, part.received_bytes)
        if end <= 0:
            continue
        if part.done and end >= part.received_bytes // BYTES_PER_MS:
            continue
        truncates.append(Truncate(part.item_id, part.content_index, end))
    cancel = active_response_id is not None and not server_cancels
    return BargeInPlan(
        flush=playing or bool(parts),
        cancel=cancel,
        response_id=active_response_id if cancel else None,
        truncates=tuple(truncates),
    )
