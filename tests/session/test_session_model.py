"""The session model alone: whole objects on the wire, one turn mode, knobs kept across
modes and reconnects, reconciliation with the server's answer; every update it makes is
a valid ``session.update`` for the ``openai`` SDK's types."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sdk_strict import validate_client_event
from voicecli.config import Config, load_config
from voicecli.session import CLIENT_MODES, SessionModel, SessionShapeError


def model(**overrides: Any) -> SessionModel:
    return SessionModel(load_config(env={}, user_file=False, overrides=overrides))


def valid(session: dict[str, Any]) -> None:
    validate_client_event({"type": "session.update", "session": {"type": "realtime", **session}})


def td_of(session: dict[str, Any]) -> Any:
    return session["audio"]["input"]["turn_detection"]


def test_client_modes_send_no_turn_detection_and_server_modes_a_whole_one() -> None:
    assert td_of(model().payload()) is None
    td = td_of(model(turn_mode="server-vad").payload())
    assert td == {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "create_response": True,
        "interrupt_response": True,
    }
    semantic = td_of(model(turn_mode="semantic-vad").payload())
    assert semantic["type"] == "semantic_vad" and semantic["eagerness"] == "auto"


def test_a_partial_edit_goes_out_whole_and_survives_modes_and_reconnects() -> None:
    m = model(turn_mode="server-vad")
    update = m.edit({"audio": {"input": {"turn_detection": {"threshold": 0.7}}}})
    assert td_of(update)["type"] == "server_vad" and td_of(update)["threshold"] == 0.7
    assert td_of(update)["silence_duration_ms"] == 500  # whole, not {"threshold": 0.7}
    valid(update)
    m.set_turn_mode("local-vad")
    assert td_of(m.payload()) is None
    m.set_turn_mode("server-vad")
    m.reconnected()
    assert td_of(m.payload())["threshold"] == 0.7


def test_picking_a_server_vad_in_the_editor_switches_the_client_mode() -> None:
    m = model()  # local-vad
    m.edit({"audio": {"input": {"turn_detection": {"type": "server_vad"}}}})
    assert m.turn_mode == "server-vad" and not m.client_decides
    m.edit({"audio": {"input": {"turn_detection": None}}})
    assert m.turn_mode == "local-vad"  # back to the client mode it came from


def test_changing_only_the_language_sends_the_model_too() -> None:
    update = model().edit({"audio": {"input": {"transcription": {"language": "fr"}}}})
    assert update["audio"]["input"]["transcription"] == {
        "model": "gpt-4o-mini-transcribe",
        "language": "fr",
    }
    valid(update)


def test_idle_timeout_is_sent_in_server_vad() -> None:
    m = model(turn_mode="server-vad", session={"turn_detection": {"idle_timeout_ms": 8000}})
    assert td_of(m.payload())["idle_timeout_ms"] == 8000


@pytest.mark.parametrize(
    "change",
    [
        {"audio": {"input": {"turn_detection": {"type": "bogus"}}}},
        {"audio": {"input": {"turn_detection": {"type": "semantic_vad", "threshold": 0.5}}}},
        {"audio": {"input": {"turn_detection": "server_vad"}}},
        {"audio": {"input": {"transcription": {"language": "fr", "model": None}}}},
    ],
)
def test_a_change_that_cannot_be_made_whole_is_refused_and_changes_nothing(
    change: dict[str, Any],
) -> None:
    m = model(turn_mode="server-vad")
    before = m.payload()
    with pytest.raises(SessionShapeError):
        m.edit(change)
    assert m.payload() == before


def test_the_server_answer_decides_who_commits_once_every_update_is_answered() -> None:
    m = model()  # local-vad: the client commits
    m.update_sent()
    m.update_sent()
    server_vad = {"audio": {"input": {"turn_detection": {"type": "server_vad"}}}}
    assert m.session_updated(server_vad) is None  # an older answer: one more is coming
    assert m.session_updated(server_vad) == "server-vad"
    assert m.turn_mode == "server-vad"  # so exactly one side commits


def test_tools_are_declared_and_kept_for_a_reconnect() -> None:
    m = model()
    tool = {"type": "function", "name": "fs__read", "description": "d", "parameters": {}}
    update = m.set_tools([tool])
    assert update == {"tools": [tool], "tool_choice": "auto"}
    m.reconnected()
    assert m.payload()["tools"] == [tool] and m.payload()["tool_choice"] == "auto"
    valid(m.payload())


# -- any sequence of operations keeps the invariants ------------------------------------

_knobs = st.fixed_dictionaries(
    {},
    optional={
        "threshold": st.floats(0.0, 1.0),
        "prefix_padding_ms": st.integers(0, 2000),
        "silence_duration_ms": st.integers(0, 5000),
        "create_response": st.booleans(),
        "interrupt_response": st.booleans(),
    },
)
_operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("mode"),
            st.sampled_from(["local-vad", "push-to-talk", "server-vad", "semantic-vad"]),
        ),
        st.tuples(st.just("server_vad"), _knobs),
        st.tuples(st.just("semantic"), st.sampled_from(["low", "medium", "high", "auto"])),
        st.tuples(st.just("none"), st.none()),
        st.tuples(st.just("language"), st.sampled_from(["en", "fr", None])),
        st.tuples(st.just("voice"), st.sampled_from(["marin", "cedar"])),
        st.tuples(st.just("reconnect"), st.none()),
        st.tuples(st.just("echo"), st.none()),
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(ops=_operations)
def test_any_sequence_keeps_one_turn_mode_and_whole_objects(ops: list[tuple[str, Any]]) -> None:
    m = SessionModel(Config())
    for kind, arg in ops:
        if kind == "mode":
            update = m.set_turn_mode(arg)
        elif kind == "server_vad":
            update = m.edit({"audio": {"input": {"turn_detection": {"type": "server_vad", **arg}}}})
        elif kind == "semantic":
            td = {"type": "semantic_vad", "eagerness": arg}
            update = m.edit({"audio": {"input": {"turn_detection": td}}})
        elif kind == "none":
            update = m.edit({"audio": {"input": {"turn_detection": None}}})
        elif kind == "language":
            update = m.edit({"audio": {"input": {"transcription": {"language": arg}}}})
        elif kind == "voice":
            update = m.edit({"audio": {"output": {"voice": arg}}})
        elif kind == "reconnect":
            m.reconnected()
            update = m.payload()
        else:  # the server echoes what we want: nothing changes
            m.update_sent()
            assert m.session_updated(m.payload()) is None
            continue
        if update:
            valid(update)
        payload = m.payload()
        valid(payload)
        td = td_of(payload)
        assert (td is None) == (m.turn_mode in CLIENT_MODES)
        if td is not None:
            assert {"type", "create_response", "interrupt_response"} <= set(td)
        tr = payload["audio"]["input"]["transcription"]
        assert tr is None or tr.get("model")


def test_reading_the_servers_session() -> None:
    from voicecli.session import server_interrupts, server_speaks, server_transcribes

    server = model(turn_mode="server-vad").payload()
    assert server_interrupts(server) and server_transcribes(server) and server_speaks(server)
    quiet = {
        "output_modalities": ["text"],
        "audio": {
            "input": {"transcription": None, "turn_detection": {"interrupt_response": False}}
        },
    }
    assert not server_interrupts(quiet)
    assert not server_transcribes(quiet) and not server_speaks(quiet)
    assert server_interrupts(None) and not server_transcribes(None) and server_speaks(None)
