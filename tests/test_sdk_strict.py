"""The strict validator itself must catch what the SDK lets through."""

import pytest

from tests.sdk_strict import StrictValidationError, validate_client_event, validate_server_event


def test_accepts_valid_client_event() -> None:
    validate_client_event({"type": "input_audio_buffer.commit", "event_id": "evt_1"})


def test_rejects_unknown_nested_key() -> None:
    with pytest.raises(StrictValidationError, match=r"session\.bogus"):
        validate_client_event(
            {"type": "session.update", "session": {"type": "realtime", "bogus": 1}}
        )


def test_rejects_unknown_type() -> None:
    with pytest.raises(StrictValidationError):
        validate_client_event({"type": "response.audio.delta"})


def test_tolerates_obfuscation_on_server_deltas() -> None:
    validate_server_event(
        {
            "type": "response.output_audio_transcript.delta",
            "event_id": "event_1",
            "response_id": "resp_1",
            "item_id": "item_1",
            "output_index": 0,
            "content_index": 0,
            "delta": "hi",
            "obfuscation": "xyz",
        }
    )
