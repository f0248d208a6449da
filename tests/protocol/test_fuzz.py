"""Hostile server input: at least 10 000 generated events per run, none may raise, and
the conversation's invariants hold after every one of them.

Two generators: free-form events (known and unknown types, fields of any type, ids from a
small pool so events hit the same items) and realistic GA sequences from ``wire`` that
are shuffled, cut, duplicated and cross-wired (valid events in a wrong order)."""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.protocol import wire
from voicecli.protocol.conversation import BETA_ALIASES, INTERNAL_ERROR, MAX_ERRORS, Conversation
from voicecli.protocol.notifications import Notification, UnhandledEvent

MIN_EVENTS = 10_000

TYPES = [
    "session.created",
    "session.updated",
    "error",
    "rate_limits.updated",
    "input_audio_buffer.committed",
    "input_audio_buffer.cleared",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.timeout_triggered",
    "conversation.item.added",
    "conversation.item.done",
    "conversation.item.retrieved",
    "conversation.item.deleted",
    "conversation.item.truncated",
    "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.completed",
    "conversation.item.input_audio_transcription.failed",
    "response.created",
    "response.done",
    "response.output_item.added",
    "response.output_item.done",
    "response.content_part.added",
    "response.content_part.done",
    "response.output_audio.delta",
    "response.output_audio.done",
    "response.output_audio_transcript.delta",
    "response.output_audio_transcript.done",
    "response.output_text.delta",
    "response.output_text.done",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.not_yet_invented",
    *BETA_ALIASES,
]
IDS = ["i1", "i2", "i3", "i4", "r1", "r2"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=100_000),
    st.floats(allow_nan=True),
    st.sampled_from(IDS),
    st.text(max_size=12),
    st.just(base64.b64encode(b"\x01\x00" * 24).decode()),
    st.just("%%% not base64 %%%"),
)
FIELDS = [
    "item_id",
    "response_id",
    "previous_item_id",
    "content_index",
    "audio_end_ms",
    "audio_start_ms",
    "delta",
    "transcript",
    "text",
    "arguments",
    "name",
    "call_id",
]


values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from([*FIELDS, "type", "id", "status"]), inner, max_size=4),
    ),
    max_leaves=6,
)


def item_objects() -> st.SearchStrategy[dict[str, Any]]:
    part = st.fixed_dictionaries(
        {
            "type": st.sampled_from(
                ["input_audio", "input_text", "audio", "output_audio", "text", "x"]
            )
        },
        optional={"text": scalars, "transcript": scalars},
    )
    return st.fixed_dictionaries(
        {"id": st.sampled_from(IDS)},
        optional={
            "type": st.sampled_from(["message", "function_call", "function_call_output", 3]),
            "role": st.sampled_from(["user", "assistant", "system", None]),
            "status": st.sampled_from(["in_progress", "completed", "incomplete"]),
            "content": st.one_of(st.lists(part, max_size=3), scalars),
            "arguments": scalars,
            "output": scalars,
        },
    )


free_events = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES)},
    optional={
        **{name: scalars for name in FIELDS},
        "item": st.one_of(item_objects(), values),
        "part": st.one_of(
            st.fixed_dictionaries({"type": st.sampled_from(["audio", "text"])}), values
        ),
        "response": st.one_of(
            st.fixed_dictionaries(
                {"id": st.sampled_from(IDS)},
                optional={
                    "status": st.sampled_from(["completed", "cancelled", "failed"]),
                    "output": st.lists(item_objects(), max_size=2),
                    "usage": values,
                },
            ),
            values,
        ),
        "session": st.one_of(st.just(wire.session(transcription=True)), values),
        "error": values,
        "rate_limits": values,
    },
)


def scripted() -> list[dict[str, Any]]:
    """Two realistic turns (voice then text) and a function call, in wire order."""
    return [
        wire.session_created(transcription=True),
        wire.speech_started("i1", 100),
        wire.speech_stopped("i1", 900),
        wire.committed("i1", None),
        wire.item_added(wire.user_audio_item("i1"), None),
        wire.transcription_delta("i1", "hello "),
        wire.transcription_completed("i1", "hello there"),
        *wire.spoken_response("r1", "i2", "i1", ["one", "two", "three"], usage=wire.usage(9, 9)),
        wire.truncated("i2", 300),
        wire.item_added(wire.user_text_item("i3", "typed"), "i2"),
        *wire.function_call_response("r2", "i4", "i3", "get_time", '{"tz": "UTC"}'),
        wire.deleted("i3"),
        wire.error("x", "boom"),
        wire.rate_limits(),
    ]


SCRIPT_LEN = len(scripted())


@st.composite
def mangled_scripts(draw: st.DrawFn) -> list[dict[str, Any]]:
    events = scripted()
    choice = draw(st.sampled_from(["shuffle", "drop", "duplicate", "rewire"]))
    if choice == "shuffle":
        events = draw(st.permutations(events))
    elif choice == "drop":
        keep = draw(st.lists(st.booleans(), min_size=len(events), max_size=len(events)))
        events = [e for e, k in zip(events, keep, strict=True) if k]
    elif choice == "duplicate":
        events = events + draw(st.lists(st.sampled_from(events), max_size=len(events)))
    else:  # valid events, wrong items: every id swapped for another from the pool
        remap = dict(zip(IDS, draw(st.permutations(IDS)), strict=True))
        events = [
            {k: remap.get(v, v) if isinstance(v, str) else v for k, v in e.items()} for e in events
        ]
    return events


def check_invariants(conv: Conversation, notes: list[Notification]) -> None:
    assert all(isinstance(n, Notification) for n in notes)
    bugs = [n for n in notes if isinstance(n, UnhandledEvent) and INTERNAL_ERROR in n.reason]
    assert not bugs, bugs
    order = [i.id for i in conv.items]
    assert len(order) == len(set(order)), order
    for item_id in order:
        item = conv.item(item_id)
        assert item is not None and item.id == item_id
        assert item.heard_text + item.unheard_text == item.text
        assert isinstance(item.transcript_pending, bool)
    assert len(conv.errors) <= MAX_ERRORS
    if conv.active_response_id is not None:
        assert isinstance(conv.active_response_id, str)


class Counter:
    events = 0


def fold_all(events: list[Any]) -> None:
    conv = Conversation()
    for event in events:
        notes = conv.apply(event)  # must not raise
        Counter.events += 1
        check_invariants(conv, notes)


FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(st.lists(free_events, min_size=40, max_size=60))
def fold_free_events(events: list[dict[str, Any]]) -> None:
    fold_all(events)


@FUZZ
@given(mangled_scripts())
def fold_mangled_scripts(events: list[dict[str, Any]]) -> None:
    fold_all(events)


def test_at_least_ten_thousand_hostile_events_never_raise() -> None:
    Counter.events = 0
    fold_free_events()
    fold_mangled_scripts()
    assert Counter.events >= MIN_EVENTS, Counter.events


def test_the_script_itself_folds_cleanly() -> None:
    conv = Conversation()
    notes = [n for e in scripted() for n in conv.apply(e)]
    assert not [n for n in notes if type(n).__name__ == "UnhandledEvent"]
    assert [i.id for i in conv.items] == ["i1", "i2", "i4"]
