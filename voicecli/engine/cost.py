"""What a session costs: the one price table, and a meter that adds up each response and
each input transcription.

Prices are USD per 1M tokens, as OpenAI publishes them (openai.com/api/pricing and the
model pages), per model; see :data:`PRICES_CHECKED` for when. Dated snapshots
(``gpt-realtime-2025-08-28``) take their model's prices. A model not in the table
(an Azure deployment name, a compatible server's model) shows tokens without a price,
and so does a server on this machine (``--local``: there is nothing to pay).

Cached input tokens are priced from ``cached_tokens_details`` (the exact text/audio
split the server reports); input transcription is billed apart, by the transcription
model, and kept as its own total.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from voicecli.protocol.notifications import TranscriptionUsage, Usage

PRICES_CHECKED = "2025-10-06"
"""When the table was last compared with OpenAI's published prices (the day
gpt-realtime-mini was released). Not re-checked since: this machine has no network."""


@dataclass(frozen=True, slots=True)
class RealtimePrices:
    """USD per 1M tokens of one realtime model."""

    text_in: float
    text_cached: float
    text_out: float
    audio_in: float
    audio_cached: float
    audio_out: float


@dataclass(frozen=True, slots=True)
class TranscriptionPrices:
    """USD per 1M tokens (token-billed models) or per minute (duration-billed)."""

    audio_in: float = 0.0
    text_in: float = 0.0
    text_out: float = 0.0
    per_minute: float = 0.0


REALTIME_PRICES: dict[str, RealtimePrices] = {
    "gpt-realtime-mini": RealtimePrices(
        text_in=0.60, text_cached=0.06, text_out=2.40,
        audio_in=10.00, audio_cached=0.30, audio_out=20.00,
    ),
    "gpt-realtime": RealtimePrices(
        text_in=4.00, text_cached=0.40, text_out=16.00,
        audio_in=32.00, audio_cached=0.40, audio_out=64.00,
    ),
}  # fmt: skip
"""Per realtime model (a dated snapshot takes its model's)."""

TRANSCRIPTION_PRICES: dict[str, TranscriptionPrices] = {
    "gpt-4o-mini-transcribe": TranscriptionPrices(audio_in=3.00, text_in=1.25, text_out=5.00),
    "gpt-4o-transcribe": TranscriptionPrices(audio_in=6.00, text_in=2.50, text_out=10.00),
    "whisper-1": TranscriptionPrices(per_minute=0.006),
}
"""Per input transcription model."""


_SNAPSHOT = re.compile(r"(?P<name>.+?)(-\d{4}-\d{2}-\d{2})?")


def _lookup(table: dict[str, Any], model: str | None) -> Any:
    """The entry named ``model``, or ``model`` without its snapshot date
    (``gpt-realtime-2025-08-28``); None for anything else (``gpt-realtime-1.5`` is
    another model, with other prices)."""
    match = _SNAPSHOT.fullmatch(model or "")
    return table.get(match.group("name")) if match else None


def realtime_prices(model: str | None) -> RealtimePrices | None:
    """The prices of a realtime model, or None when the table does not know it."""
    found: RealtimePrices | None = _lookup(REALTIME_PRICES, model)
    return found


def response_cost(usage: Usage, prices: RealtimePrices) -> float:
    """USD for one response. Cached tokens are taken off their own modality (exactly,
    from ``cached_tokens_details``; when only a total is given, as audio first, the
    cheaper guess for a voice conversation is still a guess). Without any breakdown,
    input and output are priced as audio."""
    audio_in, text_in = usage.input_audio_tokens, usage.input_text_tokens
    if audio_in + text_in == 0:
        audio_in = usage.input_tokens
    audio_out, text_out = usage.output_audio_tokens, usage.output_text_tokens
    if audio_out + text_out == 0:
        audio_out = usage.output_tokens
    cached_audio, cached_text = usage.input_cached_audio_tokens, usage.input_cached_text_tokens
    if cached_audio + cached_text == 0 and usage.input_cached_tokens:
        cached_audio = min(usage.input_cached_tokens, audio_in)
        cached_text = usage.input_cached_tokens - cached_audio
    cached_audio, cached_text = min(cached_audio, audio_in), min(cached_text, text_in)
    dollars = (
        (audio_in - cached_audio) * prices.audio_in
        + cached_audio * prices.audio_cached
        + (text_in - cached_text) * prices.text_in
        + cached_text * prices.text_cached
        + audio_out * prices.audio_out
        + text_out * prices.text_out
    )
    return dollars / 1_000_000


def transcription_cost(usage: TranscriptionUsage, model: str | None) -> float | None:
    """USD for one input transcription by ``model`` (None: a model the table does not
    know)."""
    prices: TranscriptionPrices | None = _lookup(TRANSCRIPTION_PRICES, model)
    if prices is None:
        return None
    tokens = (
        usage.input_audio_tokens * prices.audio_in
        + usage.input_text_tokens * prices.text_in
        + usage.output_tokens * prices.text_out
    )
    return tokens / 1_000_000 + usage.seconds / 60 * prices.per_minute


class CostMeter:
    """Adds up a session's tokens and, where there is a price, its cost.

    ``free``: a server on this machine, never priced. Each ``add_*`` returns the
    :class:`~voicecli.engine.status.EngineStatus` fields that changed."""

    def __init__(self, model: str, *, free: bool) -> None:
        self._prices = None if free else realtime_prices(model)
        self._free = free
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd: float | None = None if self._prices is None else 0.0
        self.transcription_tokens = 0
        self.transcription_usd: float | None = None

    def add_response(self, usage: Usage) -> dict[str, Any]:
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        if self._prices is not None and self.cost_usd is not None:
            self.cost_usd += response_cost(usage, self._prices)
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
        }

    def add_transcription(self, usage: TranscriptionUsage, model: str | None) -> dict[str, Any]:
        self.transcription_tokens += (
            usage.input_audio_tokens + usage.input_text_tokens + usage.output_tokens
        )
        cost = None if self._free else transcription_cost(usage, model)
        if cost is not None:
            self.transcription_usd = (self.transcription_usd or 0.0) + cost
        return {
            "transcription_tokens": self.transcription_tokens,
            "transcription_usd": self.transcription_usd,
        }


__all__ = [
    "PRICES_CHECKED",
    "REALTIME_PRICES",
    "TRANSCRIPTION_PRICES",
    "CostMeter",
    "RealtimePrices",
    "TranscriptionPrices",
    "realtime_prices",
    "response_cost",
    "transcription_cost",
]
