"""The session editor's pure helpers: form <-> GA session, validation, error mapping."""

from __future__ import annotations

from tests.ui.fakes import SESSION
from voicecli.session_form import (
    changes_from_form,
    field_for_param,
    form_from_session,
    profile_session,
    validate_form,
)


def test_unchanged_form_sends_nothing() -> None:
    form = form_from_session(SESSION)
    assert validate_form(form) == {}
    assert changes_from_form(form, dict(form), SESSION) == {}


def test_only_changed_fields_are_sent() -> None:
    initial = form_from_session(SESSION)
    values = dict(initial, speed="1.25", max_output_tokens="300")
    assert changes_from_form(initial, values, SESSION) == {
        "max_output_tokens": 300,
        "audio": {"output": {"speed": 1.25}},
    }


def test_turn_detection_change_sends_the_whole_object_keeping_flags() -> None:
    initial = form_from_session(SESSION)
    values = dict(initial, td_type="semantic_vad", eagerness="high")
    td = changes_from_form(initial, values, SESSION)["audio"]["input"]["turn_detection"]
    assert td == {
        "type": "semantic_vad",
        "eagerness": "high",
        "create_response": True,
        "interrupt_response": True,
    }
    off = changes_from_form(initial, dict(initial, td_type="none"), SESSION)
    assert off == {"audio": {"input": {"turn_detection": None}}}


def test_validation_names_the_bad_fields() -> None:
    form = dict(form_from_session(SESSION), speed="2", max_output_tokens="0", language="english")
    errors = validate_form(form)
    assert set(errors) == {"speed", "max_output_tokens", "language"}


def test_server_error_param_maps_to_a_field() -> None:
    assert field_for_param("session.audio.output.voice") == "voice"
    assert field_for_param("session.audio.input.turn_detection.threshold") == "threshold"
    assert field_for_param("session.audio.input.turn_detection") == "td_type"
    assert field_for_param(None) is None


def test_flat_profile_becomes_a_ga_session() -> None:
    session = profile_session(
        {"instructions": "Translate", "voice": "cedar", "noise_reduction": "far_field"}
    )
    form = form_from_session(session)
    assert (form["instructions"], form["voice"], form["noise_reduction"]) == (
        "Translate",
        "cedar",
        "far_field",
    )
