"""Live-shaped traffic, kept as data in tests/fixtures/live/ (see its README for where
each fact comes from), folded through Conversation: every event is valid for the SDK's
GA types and none is left unhandled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.sdk_strict import validate_server_event
from voicecli.protocol.conversation import Conversation
from voicecli.protocol.notifications import (
    ResponseDone,
    TranscriptDone,
    UnhandledEvent,
)

LIVE = Path(__file__).parent.parent / "fixtures" / "live"


def events(name: str) -> list[dict[str, Any]]:
    data: dict[str, Any] = json.loads((LIVE / f"{name}.json").read_text())
    return list(data["events"])


def fold(name: str) -> tuple[Conversation, list[Any]]:
    conv = Conversation()
    notes = [n for e in events(name) for n in conv.apply(e)]
    assert not [n for n in notes if isinstance(n, UnhandledEvent)]
    return conv, notes


@pytest.mark.parametrize(
    "name", ["voice_turn", "function_call_turn", "failed_response", "rate_limit"]
)
def test_every_event_is_valid_for_the_sdk(name: str) -> None:
    for event in events(name):
        validate_server_event(event)


def test_voice_turn() -> None:
    conv, notes = fold("voice_turn")
    assert [(i.role, i.text) for i in conv.items] == [
        ("user", "What's the weather?"),
        ("assistant", "Sunny and warm."),
    ]
    done = next(n for n in notes if isinstance(n, ResponseDone))
    assert done.status == "completed" and done.usage is not None
    assert done.usage.input_cached_text_tokens == 64 and done.usage.input_cached_audio_tokens == 0
    transcript = next(n for n in notes if isinstance(n, TranscriptDone) and n.role == "user")
    assert transcript.usage is not None and transcript.usage.input_audio_tokens == 13
    assert conv.expires_at == 1756324625


def test_function_call_turn() -> None:
    conv, _ = fold("function_call_turn")
    call = conv.items[-1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.arguments == '{"city":"Paris"}' and call.call_id == "call_Fx02Aaaaaaaaaaaa"


def test_failed_response() -> None:
    conv, notes = fold("failed_response")
    done = next(n for n in notes if isinstance(n, ResponseDone))
    assert done.status == "failed" and done.error is not None
    assert done.error.code == "insufficient_quota"
    assert conv.active_response_id is None


def test_rate_limit_sequence() -> None:
    conv, notes = fold("rate_limit")
    done = [n for n in notes if isinstance(n, ResponseDone)]
    assert [d.status for d in done] == ["completed", "completed", "failed"]
    assert done[-1].why is not None and done[-1].why.startswith("rate_limit_exceeded")
    assert [i.text for i in conv.items if i.role == "assistant"] == ["Answer 0.", "Answer 1."]
