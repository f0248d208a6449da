from __future__ import annotations

import base64

import pytest

from voicecli.engine.cost import estimate_cost
from voicecli.engine.eventlog import REDACTED, sanitize
from voicecli.protocol.notifications import Usage


def test_cost_uses_the_price_table() -> None:
    usage = Usage(
        input_tokens=1_000_000,
        output_tokens=2_000_000,
        input_audio_tokens=1_000_000,
        output_audio_tokens=1_000_000,
        output_text_tokens=1_000_000,
    )
    assert estimate_cost(usage) == pytest.approx(32 + 64 + 16)


def test_cached_input_priced_low_and_no_breakdown_priced_as_audio() -> None:
    cached = Usage(input_tokens=1_000_000, input_text_tokens=1_000_000, input_cached_tokens=500_000)
    assert estimate_cost(cached) == pytest.approx(2 + 0.2)
    assert estimate_cost(Usage(input_tokens=1000, output_tokens=1000)) == pytest.approx(0.096)


def test_sanitize_elides_audio_and_redacts_secrets() -> None:
    b64 = base64.b64encode(bytes(9600)).decode()
    ev = {"type": "input_audio_buffer.append", "audio": b64, "event_id": "e1"}
    assert sanitize(ev)["audio"] == "<audio 9600 bytes>"
    assert ev["audio"] == b64  # the original is untouched
    delta = {"type": "response.output_audio.delta", "delta": base64.b64encode(b"abc").decode()}
    assert sanitize(delta)["delta"] == "<audio 3 bytes>"
    leaky = {
        "type": "error",
        "error": {"message": "bad key sk-test-SECRET given", "api_key": "x"},
        "headers": [{"Authorization": "Bearer sk-test-SECRET"}],
    }
    clean = sanitize(leaky, ("sk-test-SECRET",))
    assert "sk-test-SECRET" not in repr(clean)
    assert clean["error"]["api_key"] == REDACTED
    assert clean["headers"][0]["Authorization"] == REDACTED
    item = {
        "type": "conversation.item.create",
        "item": {"content": [{"type": "input_audio", "audio": b64}]},
    }
    assert sanitize(item)["item"]["content"][0]["audio"] == "<audio 9600 bytes>"
