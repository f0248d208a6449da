"""Conversation: GA server events folded into ordered items, transcripts and notifications."""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterable
from typing import Any

from tests.protocol import wire
from tests.sdk_strict import validate_server_event
from voicecli.protocol.client_events import ClientEvents
from voicecli.protocol.conversation import MAX_ERRORS, Conversation
from voicecli.protocol.notifications import (
    AudioDelta,
    AudioDone,
    InputCleared,
    InputCommitted,
    ItemAdded,
    ItemDeleted,
    ItemTruncated,
    Notification,
    RateLimitsChanged,
    ResponseDone,
    ResponseStarted,
    ServerError,
    SessionChanged,
    SpeechStarted,
    SpeechStopped,
    TranscriptDelta,
    TranscriptDone,
    TranscriptFailed,
    TranscriptionUsage,
    UnhandledEvent,
)

WORDS = ["Cold", "and", "dusty", "on", "Mars", "tonight"]


def feed(conv: Conversation, events: Iterable[dict[str, Any]]) -> list[Notification]:
    notes: list[Notification] = []
    for event in events:
        notes += conv.apply(event)
    return notes


def order(conv: Conversation) -> list[str]:
    return [i.id for i in conv.items]


def voice_turn(conv: Conversation, *, transcription: bool = True) -> list[Notification]:
    """A session, a committed user audio turn and a spoken reply (6 words, 1.2 s)."""
    return feed(
        conv,
        [
            wire.session_created(transcription=transcription),
            wire.speech_started("item_u1", 120),
            wire.speech_stopped("item_u1", 1400),
            wire.committed("item_u1", None),
            wire.item_added(wire.user_audio_item("item_u1"), None),
            wire.item_done(wire.user_audio_item("item_u1"), None),
            *wire.spoken_response("resp_1", "item_a1", "item_u1", WORDS, usage=wire.usage(100, 40)),
        ],
    )


def test_wire_builders_match_the_sdk() -> None:
    events = [
        wire.session_created(transcription=True),
        wire.session_updated(),
        wire.item_added(wire.user_audio_item("i1"), None),
        wire.item_added(wire.user_text_item("i2", "hi"), "i1"),
        wire.committed("i1", None),
        wire.transcription_delta("i1", "he"),
        wire.transcription_completed("i1", "hello"),
        wire.transcription_failed("i1", "no"),
        *wire.spoken_response("r1", "a1", "i1", WORDS, usage=wire.usage(10, 20)),
        *wire.function_call_response("r2", "f1", "a1", "get_time", "{}"),
        wire.response_done("r3", "cancelled"),
        wire.truncated("a1", 100),
        wire.deleted("a1"),
        wire.error("invalid_value", "bad", "evt_1"),
        wire.rate_limits(),
        wire.speech_started("i3", 0),
        wire.speech_stopped("i3", 500),
        wire.cleared(),
    ]
    for event in events:
        validate_server_event(event)


def test_a_spoken_turn_in_wire_order() -> None:
    conv = Conversation()
    notes = voice_turn(conv)
    assert order(conv) == ["item_u1", "item_a1"]
    user, reply = conv.items
    assert user.role == "user" and user.transcript_pending
    assert reply.role == "assistant" and reply.status == "completed"
    assert reply.text == " ".join(WORDS) and reply.response_id == "resp_1"
    assert reply.heard_text == reply.text and reply.unheard_text == ""
    audio = [n for n in notes if isinstance(n, AudioDelta)]
    assert len(audio) == len(WORDS) and all(len(n.pcm) == 200 * 48 for n in audio)
    assert reply.parts[0].audio_ms == 200 * len(WORDS)
    deltas = [n.delta for n in notes if isinstance(n, TranscriptDelta)]
    assert "".join(deltas) == reply.text
    kinds = [type(n) for n in notes]
    assert kinds.index(SessionChanged) < kinds.index(SpeechStarted) < kinds.index(SpeechStopped)
    assert kinds.index(InputCommitted) < kinds.index(ResponseStarted)
    assert kinds[-1] is ResponseDone and AudioDone in kinds
    done = notes[-1]
    assert isinstance(done, ResponseDone) and done.status == "completed" and done.usage
    assert (done.usage.input_tokens, done.usage.output_tokens) == (100, 40)
    assert done.usage.output_audio_tokens == 20
    assert conv.active_response_id is None
    assert (conv.usage_total.input_tokens, conv.usage_total.output_tokens) == (100, 40)
    assert conv.assistant_has_audio
    assert conv.session_id == "sess_1" and conv.expires_at == 1_900_000_000


def test_the_response_is_active_between_created_and_done() -> None:
    conv = Conversation()
    events = wire.spoken_response("resp_1", "item_a1", None, WORDS)
    conv.apply(events[0])
    assert conv.active_response_id == "resp_1"
    feed(conv, events[1:-1])
    assert conv.active_response_id == "resp_1"
    conv.apply(events[-1])
    assert conv.active_response_id is None


def test_user_transcript_streams_then_completes() -> None:
    conv = Conversation()
    voice_turn(conv)
    notes = feed(
        conv,
        [
            wire.transcription_delta("item_u1", "What's the "),
            wire.transcription_delta("item_u1", "weather?"),
        ],
    )
    user = conv.item("item_u1")
    assert user is not None and user.text == "What's the weather?" and user.transcript_pending
    assert [type(n) for n in notes] == [TranscriptDelta, TranscriptDelta]
    assert isinstance(notes[0], TranscriptDelta) and notes[0].role == "user"
    notes = conv.apply(wire.transcription_completed("item_u1", "What is the weather?"))
    assert user.text == "What is the weather?" and not user.transcript_pending
    usage = TranscriptionUsage(seconds=1.0)  # billed apart: kept for the cost
    assert notes == [TranscriptDone("item_u1", "user", 0, "What is the weather?", usage)]


def test_failed_transcription_ends_the_wait() -> None:
    conv = Conversation()
    voice_turn(conv)
    notes = conv.apply(wire.transcription_failed("item_u1", "audio unintelligible"))
    assert notes == [TranscriptFailed("item_u1", "audio unintelligible")]
    user = conv.item("item_u1")
    assert user is not None and not user.transcript_pending and user.text == ""


def test_no_transcript_is_pending_when_transcription_is_off() -> None:
    conv = Conversation()
    voice_turn(conv, transcription=False)
    user = conv.item("item_u1")
    assert user is not None and not user.transcript_pending


def test_truncation_marks_the_unheard_words() -> None:
    conv = Conversation()
    voice_turn(conv)
    reply = conv.item("item_a1")
    assert reply is not None
    # 6 words, 200 ms of audio each: 600 ms heard is half the transcript
    notes = conv.apply(wire.truncated("item_a1", 600))
    assert notes == [ItemTruncated("item_a1", 0, 600)]
    assert reply.truncated_at_ms == 600
    assert reply.heard_text == "Cold and dusty"
    assert reply.unheard_text == " on Mars tonight"
    assert reply.heard_text + reply.unheard_text == reply.text


def test_a_half_heard_word_counts_as_unheard() -> None:
    conv = Conversation()
    voice_turn(conv)
    conv.apply(wire.truncated("item_a1", 300))  # 25 %: inside "and"
    reply = conv.item("item_a1")
    assert reply is not None and reply.heard_text == "Cold"


def test_truncation_at_the_ends() -> None:
    conv = Conversation()
    voice_turn(conv)
    reply = conv.item("item_a1")
    assert reply is not None
    conv.apply(wire.truncated("item_a1", 5000))  # past what was received: all heard
    assert reply.heard_text == reply.text and reply.unheard_text == ""
    conv.apply(wire.truncated("item_a1", 0))
    assert reply.heard_text == "" and reply.unheard_text == reply.text


def test_items_are_ordered_by_previous_item_id_not_arrival() -> None:
    conv = Conversation()
    conv.apply(wire.session_created())
    b = wire.user_text_item("b", "second")
    a = wire.user_text_item("a", "first")
    c = wire.user_text_item("c", "inserted after a")
    d = wire.user_text_item("d", "after b")
    notes = feed(conv, [wire.item_added(b, "a"), wire.item_added(d, "b")])
    assert order(conv) == ["b", "d"]
    notes = conv.apply(wire.item_added(a, None))
    assert order(conv) == ["a", "b", "d"]
    assert notes == [ItemAdded("a", 0)]
    conv.apply(wire.item_added(c, "a"))
    assert order(conv) == ["a", "c", "b", "d"]


def test_a_delta_for_an_item_never_announced_is_dropped_not_a_turn() -> None:
    """Issue #10.6: a transcript or audio delta naming an unknown item used to become an
    assistant turn of its own; it is reported and dropped."""
    conv = Conversation()
    feed(
        conv,
        [
            wire.session_created(),
            wire.item_added(wire.user_text_item("u1", "hi"), None),
        ],
    )
    events = wire.spoken_response("r1", "a1", "u1", ["hello"])
    for kind in ("response.output_audio.delta", "response.output_audio_transcript.delta"):
        stray = {**next(e for e in events if e["type"] == kind), "item_id": "ghost"}
        notes = conv.apply(stray)
        assert len(notes) == 1 and isinstance(notes[0], UnhandledEvent)
        assert "never announced" in notes[0].reason
    assert order(conv) == ["u1"]
    feed(conv, events)
    assert order(conv) == ["u1", "a1"]
    assert conv.item("a1") is not None and conv.item("a1").text == "hello"  # type: ignore[union-attr]


def test_three_replays_leave_a_cut_off_answer_unchanged() -> None:
    """Issue #10.4: the replay sends a truncated answer as the part that was heard; the
    server's echo of it must not apply the old truncation again."""
    conv = Conversation()
    feed(
        conv,
        [wire.session_created(), wire.item_added(wire.user_text_item("u1", "count"), None)],
    )
    feed(conv, wire.spoken_response("r1", "a1", "u1", ["one", "two", "three", "four", "five"]))
    item = conv.item("a1")
    assert item is not None
    received_ms = int(item.parts[0].audio_ms)
    conv.apply(
        {
            "type": "conversation.item.truncated",
            "event_id": "e",
            "item_id": "a1",
            "content_index": 0,
            "audio_end_ms": received_ms * 2 // 5,
        }
    )
    heard, full = item.heard_text, item.text
    assert heard and heard != full
    for _ in range(3):
        conv.apply(wire.session_created())
        feed(
            conv,
            [
                wire.item_added(wire.user_text_item("u1", "count"), None),
                wire.item_added(
                    {
                        "id": "a1",
                        "type": "message",
                        "role": "assistant",
                        "status": "completed",
                        "content": [{"type": "output_text", "text": item.heard_text}],
                    },
                    "u1",
                ),
            ],
        )
        assert (item.heard_text, item.text) == (heard, full)


def test_a_replay_after_reconnecting_adds_no_duplicates() -> None:
    conv = Conversation()
    voice_turn(conv)
    conv.apply(wire.transcription_completed("item_u1", "hello"))
    before = [(i.id, i.text) for i in conv.items]
    assert isinstance(conv.apply(wire.session_created())[0], SessionChanged)
    assert not conv.assistant_has_audio  # a new session: the voice may change again
    # the engine replays with the same ids; the server announces them again
    feed(
        conv,
        [
            wire.item_added(wire.user_text_item("item_u1", "hello"), None),
            wire.item_added(
                wire.assistant_item("item_a1", "completed", " ".join(WORDS)), "item_u1"
            ),
        ],
    )
    assert [(i.id, i.text) for i in conv.items] == before
    conv.apply(wire.item_added(wire.user_text_item("item_u2", "next"), "item_a1"))
    assert order(conv) == ["item_u1", "item_a1", "item_u2"]


def test_a_new_sessions_first_item_goes_after_the_old_ones() -> None:
    conv = Conversation()
    voice_turn(conv)
    conv.apply(wire.session_created())
    conv.apply(wire.item_added(wire.user_text_item("fresh", "new start"), None))
    assert order(conv) == ["item_u1", "item_a1", "fresh"]


def test_deleted_items_leave() -> None:
    conv = Conversation()
    voice_turn(conv)
    assert conv.apply(wire.deleted("item_a1")) == [ItemDeleted("item_a1")]
    assert order(conv) == ["item_u1"] and conv.item("item_a1") is None
    notes = conv.apply(wire.deleted("item_a1"))
    assert isinstance(notes[0], UnhandledEvent)


def test_errors_name_the_client_event_that_caused_them() -> None:
    conv = Conversation()
    commit = ClientEvents().commit()
    conv.record_sent(commit)
    notes = conv.apply(
        wire.error("input_audio_buffer_commit_empty", "buffer too small", commit["event_id"])
    )
    assert notes == [
        ServerError(
            code="input_audio_buffer_commit_empty",
            message="buffer too small",
            type="invalid_request_error",
            param=None,
            client_event_id=commit["event_id"],
            client_event_type="input_audio_buffer.commit",
        )
    ]
    assert list(conv.errors) == notes


def test_errors_are_bounded() -> None:
    conv = Conversation()
    for n in range(MAX_ERRORS + 50):
        conv.apply(wire.error("x", f"error {n}"))
    assert len(conv.errors) == MAX_ERRORS
    assert conv.errors[-1].message == f"error {MAX_ERRORS + 49}"


def test_cancelled_response_leaves_its_item_incomplete() -> None:
    conv = Conversation()
    conv.apply(wire.session_created())
    events = wire.spoken_response("r1", "a1", None, WORDS)
    feed(conv, events[:6])  # cut mid-stream
    notes = conv.apply(wire.response_done("r1", "cancelled"))
    assert notes == [ResponseDone("r1", "cancelled", "client_cancelled", None)]
    reply = conv.item("a1")
    assert reply is not None and reply.status == "incomplete" and reply.text == "Cold"


def test_function_calls_accumulate_their_arguments() -> None:
    conv = Conversation()
    conv.apply(wire.session_created())
    feed(conv, wire.function_call_response("r1", "f1", None, "get_time", '{"tz": "UTC"}'))
    call = conv.item("f1")
    assert call is not None and call.type == "function_call"
    assert (call.name, call.call_id, call.arguments) == ("get_time", "call_1", '{"tz": "UTC"}')


def test_input_buffer_and_limits_notifications() -> None:
    conv = Conversation()
    assert conv.apply(wire.cleared()) == [InputCleared()]
    notes = conv.apply(wire.rate_limits())
    assert isinstance(notes[0], RateLimitsChanged) and len(conv.rate_limits) == 2


def test_beta_event_names_fold_like_ga_ones() -> None:
    conv = Conversation()
    conv.apply(wire.session_created())
    events = wire.spoken_response("r1", "a1", None, ["hi", "there"])
    beta = {
        "response.output_audio.delta": "response.audio.delta",
        "response.output_audio_transcript.delta": "response.audio_transcript.delta",
        "response.output_audio_transcript.done": "response.audio_transcript.done",
        "conversation.item.added": "conversation.item.created",
    }
    notes = feed(conv, [{**e, "type": beta.get(e["type"], e["type"])} for e in events])
    assert not [n for n in notes if isinstance(n, UnhandledEvent)]
    reply = conv.item("a1")
    assert reply is not None and reply.text == "hi there" and reply.parts[0].audio_ms == 400


def test_unknown_and_malformed_events_are_reported_and_change_nothing() -> None:
    conv = Conversation()
    voice_turn(conv)
    snapshot = copy.deepcopy([(i.id, i.text, i.status, i.parts) for i in conv.items])
    bad: list[Any] = [
        "not an object",
        {"no": "type"},
        {"type": "response.brand_new_thing"},
        {"type": "response.output_audio.delta", "item_id": "item_a1", "response_id": "r"},
        {
            "type": "response.output_audio.delta",
            "item_id": "item_a1",
            "response_id": "resp_1",
            "content_index": 0,
            "delta": "!!not base64!!",
        },
        {"type": "response.output_audio_transcript.delta", "item_id": 7, "delta": "x"},
        {"type": "conversation.item.truncated", "item_id": "nope", "audio_end_ms": 5},
        {"type": "conversation.item.truncated", "item_id": "item_a1", "audio_end_ms": -5},
        {"type": "conversation.item.added", "item": ["not", "a", "dict"]},
        {"type": "conversation.item.input_audio_transcription.delta", "item_id": "ghost"},
        {"type": "session.updated", "session": None},
        {"type": "error", "error": "text"},
        {"type": "rate_limits.updated", "rate_limits": [1, 2]},
        {"type": "response.done", "response": {"id": 5}},
    ]
    for event in bad:
        notes = conv.apply(event)
        assert len(notes) == 1 and isinstance(notes[0], UnhandledEvent), event
    assert [(i.id, i.text, i.status, i.parts) for i in conv.items] == snapshot
    assert conv.session is not None


def test_a_huge_delta_is_kept_whole() -> None:
    conv = Conversation()
    conv.apply(wire.session_created())
    events = wire.spoken_response("r1", "a1", None, ["x"])
    feed(conv, events[:4])
    huge = "word " * 400_000
    delta = next(e for e in events if e["type"] == "response.output_audio_transcript.delta")
    conv.apply({**delta, "delta": huge})
    reply = conv.item("a1")
    assert reply is not None and reply.text == huge


def test_audio_delta_pcm_is_decoded() -> None:
    conv = Conversation()
    events = wire.spoken_response("r1", "a1", None, ["x"])
    at = next(i for i, e in enumerate(events) if e["type"] == "response.output_audio.delta")
    feed(conv, events[:at])
    delta = events[at]
    pcm = bytes(range(200))
    notes = conv.apply({**delta, "delta": base64.b64encode(pcm).decode()})
    assert notes == [AudioDelta("r1", "a1", 0, pcm)]


def test_interleaved_deltas_of_two_responses_stay_apart() -> None:
    conv = Conversation()
    conv.apply(wire.session_created())
    first = wire.spoken_response("r1", "a1", None, ["alpha", "beta", "gamma"])
    second = wire.spoken_response("r2", "a2", "a1", ["one", "two", "three"])
    mixed = [e for pair in zip(first, second, strict=True) for e in pair]
    notes = feed(conv, mixed)
    assert not [n for n in notes if isinstance(n, UnhandledEvent)]
    assert [(i.id, i.text) for i in conv.items] == [
        ("a1", "alpha beta gamma"),
        ("a2", "one two three"),
    ]
    assert {n.response_id for n in notes if isinstance(n, ResponseDone)} == {"r1", "r2"}
    audio = [(n.response_id, n.item_id) for n in notes if isinstance(n, AudioDelta)]
    assert audio.count(("r1", "a1")) == 3 and audio.count(("r2", "a2")) == 3
    assert conv.active_response_id is None
