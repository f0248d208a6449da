"""Estimated cost of a session from the usage in ``response.done``.

Prices are gpt-realtime's list prices in USD per 1M tokens (2025-08). They are an
estimate: the bill is what counts.
"""

from __future__ import annotations

from voicecli.protocol.notifications import Usage

PRICES_PER_MILLION: dict[str, float] = {
    "audio_in": 32.0,
    "audio_out": 64.0,
    "text_in": 4.0,
    "text_out": 16.0,
    "cached_in": 0.40,
}


def estimate_cost(usage: Usage, prices: dict[str, float] = PRICES_PER_MILLION) -> float:
    """USD for one response's usage.

    Cached input tokens are split between text and audio in proportion (the
    notification carries only their total). When the server gives no breakdown,
    input and output are priced as audio: a voice client's traffic is mostly audio.
    """
    audio_in, text_in = usage.input_audio_tokens, usage.input_text_tokens
    if audio_in + text_in == 0:
        audio_in = usage.input_tokens
    audio_out, text_out = usage.output_audio_tokens, usage.output_text_tokens
    if audio_out + text_out == 0:
        audio_out = usage.output_tokens
    total_in = audio_in + text_in
    cached = min(usage.input_cached_tokens, total_in)
    if total_in:
        audio_in -= round(cached * audio_in / total_in)
        text_in = total_in - cached - audio_in
    dollars = (
        audio_in * prices["audio_in"]
        + text_in * prices["text_in"]
        + cached * prices["cached_in"]
        + audio_out * prices["audio_out"]
        + text_out * prices["text_out"]
    )
    return dollars / 1_000_000
