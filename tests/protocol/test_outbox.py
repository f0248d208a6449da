"""The outbox, sans-I/O: backlog, one response at a time, reliable delivery, replay."""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.protocol import wire
from tests.sdk_strict import validate_client_event
from voicecli.protocol.client_events import ClientEvents
from voicecli.protocol.conversation import Conversation
from voicecli.protocol.outbox import Outbox


def append(ev: ClientEvents, ms: int = 100) -> dict[str, Any]:
    return ev.append(b"\x00\x00" * 24 * ms)


def drain(box: Outbox) -> list[dict[str, Any]]:
    """Write everything queued; returns the events in the order written."""
    out = []
    while (event := box.peek()) is not None:
        box.sent(event)
        out.append(event)
    return out


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def test_backlog_drops_oldest_audio_never_control_events() -> None:
    ev = ClientEvents()
    box = Outbox(ev, max_backlog_ms=500, live=True)
    audio = [append(ev) for _ in range(5)]
    for event in audio:
        assert box.put(event) == 0
    box.put(ev.clear())
    later = [append(ev) for _ in range(5)]
    dropped = sum(box.put(event) for event in later)
    assert dropped == 500 and box.dropped_audio_ms == 500
    assert box.queued_audio_ms <= 500
    sent = drain(box)
    assert types(sent) == ["input_audio_buffer.clear"] + ["input_audio_buffer.append"] * 5
    assert [e["event_id"] for e in sent[1:]] == [e["event_id"] for e in later]


def test_a_file_source_is_never_dropped_it_waits() -> None:
    ev = ClientEvents()
    box = Outbox(ev, max_backlog_ms=500, live=False)
    for _ in range(10):
        assert box.put(append(ev)) == 0
    assert box.over_backlog and not box.drained_enough
    drain(box)
    assert box.drained_enough and box.dropped_audio_ms == 0


def test_a_response_asked_for_while_one_runs_waits_for_its_end() -> None:
    """Issue #10.2: a message typed while the assistant answers used to send
    response.create at once, which the server refuses; it waits for response.done."""
    ev = ClientEvents()
    box = Outbox(ev, max_backlog_ms=2000, live=True)
    box.request_response()
    assert types(drain(box)) == ["response.create"]
    box.response_started()
    box.put(ev.response_cancel("resp_1"))
    box.put(ev.user_text("and another thing"))
    box.request_response()
    box.request_response()  # several asks: one response answers them all
    assert types(drain(box)) == ["response.cancel", "conversation.item.create"]
    assert box.response_waiting
    box.response_done()
    assert types(drain(box)) == ["response.create"]
    assert not box.response_waiting


def test_a_create_in_flight_holds_the_next() -> None:
    ev = ClientEvents()
    box = Outbox(ev, max_backlog_ms=2000, live=True)
    box.request_response()
    drain(box)  # sent, response.created not in yet
    box.request_response()
    assert drain(box) == []
    box.response_started()
    box.response_done()
    assert types(drain(box)) == ["response.create"]


def test_a_create_that_raced_a_server_response_is_asked_again_after_it() -> None:
    ev = ClientEvents()
    box = Outbox(ev, max_backlog_ms=2000, live=True)
    box.request_response()
    (create,) = drain(box)
    refused = box.rejected(create["event_id"], "conversation_already_has_active_response")
    assert refused is create
    assert drain(box) == []  # the server's own response runs
    box.response_done()
    assert types(drain(box)) == ["response.create"]


def test_another_refusal_of_a_create_does_not_block_later_ones() -> None:
    ev = ClientEvents()
    box = Outbox(ev, max_backlog_ms=2000, live=True)
    box.request_response()
    (create,) = drain(box)
    box.request_response()
    box.rejected(create["event_id"], "invalid_request_error")
    assert types(drain(box)) == ["response.create"]


def test_reconnect_sends_session_replay_unconfirmed_then_what_waited() -> None:
    ev = ClientEvents()
    conv = Conversation()
    for event in (
        wire.session_created(),
        wire.item_added(wire.user_text_item("u1", "hi"), None),
        *wire.spoken_response("r1", "a1", "u1", ["hello"]),
    ):
        conv.apply(event)
    box = Outbox(ev, max_backlog_ms=2000, live=True)
    turn = [append(ev) for _ in range(3)]
    for event in turn:
        box.put(event)
    box.put(ev.commit())
    box.request_response()
    drain(box)  # sent; the connection drops before any confirmation
    typed = ev.user_text("typed while offline")
    box.put(typed)
    box.request_response()
    box.reconnect({"instructions": "x"}, conv, resume_response=True)
    sent = drain(box)
    assert sent[0]["type"] == "session.update"
    assert [e["item"]["id"] for e in sent[1:3]] == ["u1", "a1"]
    assert types(sent[3:]) == [
        "input_audio_buffer.append",
        "input_audio_buffer.append",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "conversation.item.create",
        "response.create",
    ]
    assert sent[-2] is typed
    for event in sent:
        validate_client_event(event)


def test_confirmed_events_are_not_sent_again() -> None:
    ev = ClientEvents()
    box = Outbox(ev, max_backlog_ms=2000, live=True)
    box.put(append(ev))
    box.put(ev.commit())
    item = ev.user_text("x")
    item["item"]["id"] = "item_x"
    box.put(item)
    drain(box)
    box.confirm("input_audio_buffer.commit")
    box.confirm("conversation.item.create", "item_x")
    box.reconnect({}, Conversation(), resume_response=False)
    assert types(drain(box)) == ["session.update"]


# -- one response at a time, whatever the order of events -----------------------------------

ops = st.lists(
    st.sampled_from(["ask", "write", "server_step", "server_vad", "drop_connection", "audio"]),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_never_two_responses_and_every_ask_is_answered(script: list[str]) -> None:
    """A simulated server refuses a create while a response is active (as the live one
    does) and answers in order. Whatever happens, no create the outbox writes is refused
    for that reason unless a server-VAD response raced it, and once things settle every
    ask has had a response after it."""
    ev = ClientEvents()
    box = Outbox(ev, max_backlog_ms=2000, live=True)
    active = False
    inbox: list[dict[str, Any]] = []  # written, not yet processed by the server
    asked_since_response = False
    raced = 0

    def server_step() -> None:
        nonlocal active, raced, asked_since_response
        if inbox:
            event = inbox.pop(0)
            if event["type"] != "response.create":
                return
            if active:
                raced += 1
                box.rejected(event["event_id"], "conversation_already_has_active_response")
                return
            active = True
            asked_since_response = False
            box.response_started()
        elif active:
            active = False
            box.response_done()

    for op in script:
        if op == "ask":
            box.request_response()
            asked_since_response = True
        elif op == "audio":
            box.put(append(ev, 20))
        elif op == "write":
            event = box.peek()
            if event is not None:
                box.sent(event)
                inbox.append(event)
        elif op == "server_step":
            server_step()
        elif op == "server_vad" and not active and not inbox:
            active = True
            box.response_started()
        elif op == "drop_connection":
            inbox.clear()
            if active:
                active = False
            box.reconnect({}, Conversation(), resume_response=False)
    vad_races = script.count("server_vad")
    assert raced <= vad_races
    for _ in range(500):  # settle: write and answer everything
        event = box.peek()
        if event is not None:
            box.sent(event)
            inbox.append(event)
        elif not inbox and not active and not box.response_waiting:
            break
        server_step()
    assert not box.response_waiting
    assert not asked_since_response, "an ask was never answered by a response"


def test_audio_ms_counts_base64() -> None:
    ev = ClientEvents()
    event = ev.append(b"\x01\x00" * 2400)  # 100 ms
    assert len(base64.b64decode(event["audio"])) == 4800
    box = Outbox(ev, max_backlog_ms=2000, live=True)
    box.put(event)
    assert box.queued_audio_ms == 100
