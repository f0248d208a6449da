"""A full client-decided exchange through the official SDK: session, audio, echo reply."""

from __future__ import annotations

import base64

import numpy as np

from tests.server.conftest import Client, append, pcm_of, tone, types
from voicecli.server import RealtimeServer

SPOKEN_ORDER = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    # deltas here
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "conversation.item.done",
    "response.output_item.done",
    "response.done",
    "rate_limits.updated",
]


def _not_delta(t: str) -> bool:
    return not t.endswith(".delta")


async def test_session_created_is_the_full_default_ga_session(server: RealtimeServer) -> None:
    from tests.server.conftest import sdk_client

    async with sdk_client(server).realtime.connect(model="gpt-realtime") as conn:
        event = await conn.recv()  # the SDK's own parsing accepts it
        assert event.type == "session.created"
    session = server.sent[0]["session"]
    assert session["id"].startswith("sess_")
    assert session["object"] == "realtime.session"
    assert session["type"] == "realtime"
    assert session["model"] == "gpt-realtime"
    assert session["output_modalities"] == ["audio"]
    assert session["tools"] == [] and session["tool_choice"] == "auto"
    assert session["max_output_tokens"] == "inf" and session["truncation"] == "auto"
    assert session["tracing"] is None and session["prompt"] is None and session["include"] is None
    ai, ao = session["audio"]["input"], session["audio"]["output"]
    assert ai["format"] == {"type": "audio/pcm", "rate": 24000}
    assert ai["noise_reduction"] is None and ai["transcription"] is None
    assert ai["turn_detection"] == {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    }
    assert ao == {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0}
    import time

    assert abs(session["expires_at"] - (time.time() + 3600)) < 5


async def test_commit_and_response_echo_the_exact_samples(
    server: RealtimeServer, manual: Client
) -> None:
    speech = tone(1.25, seed=1)
    await append(manual, speech)
    await manual.send({"type": "input_audio_buffer.commit", "event_id": "evt_commit"})
    committed, added, done = [await manual.recv() for _ in range(3)]
    assert committed["type"] == "input_audio_buffer.committed"
    assert committed["previous_item_id"] is None
    item_id = committed["item_id"]
    assert added["type"] == "conversation.item.added" and added["item"]["id"] == item_id
    assert done["type"] == "conversation.item.done"
    assert done["item"]["role"] == "user"
    assert done["item"]["content"] == [{"type": "input_audio", "transcript": None}]

    await manual.send({"type": "response.create"})
    events = await manual.reply()
    assert types(events, _not_delta) == SPOKEN_ORDER
    # Deltas are interleaved between content_part.added and output_audio.done.
    deltas = types(events, lambda t: t.endswith(".delta"))
    assert set(deltas) == {
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
    }
    first_audio = deltas.index("response.output_audio.delta")
    assert "response.output_audio_transcript.delta" in deltas[first_audio:]
    assert all("obfuscation" in e for e in events if e["type"].endswith(".delta"))

    np.testing.assert_array_equal(pcm_of(events), speech)
    chunks = [e for e in events if e["type"] == "response.output_audio.delta"]
    assert len(chunks) == 13  # ~100 ms each
    transcript = "".join(
        e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
    )
    assert transcript == "You said 1.2 seconds of audio."
    by_type = {e["type"]: e for e in events}
    assert by_type["response.output_audio_transcript.done"]["transcript"] == transcript
    item = by_type["conversation.item.done"]["item"]
    assert item["role"] == "assistant" and item["status"] == "completed"
    assert item["content"] == [{"type": "output_audio", "transcript": transcript}]
    assert by_type["conversation.item.added"]["previous_item_id"] == item_id
    assert by_type["response.output_item.added"]["item"]["content"] == []

    done = by_type["response.done"]["response"]
    assert done["status"] == "completed" and done["status_details"] is None
    assert done["id"] == by_type["response.created"]["response"]["id"]
    assert by_type["response.created"]["response"]["status"] == "in_progress"
    usage = done["usage"]
    # 1.25 s of user audio = 13 tokens (100 ms each); 1.25 s of reply = 25 (50 ms each).
    assert usage["input_token_details"]["audio_tokens"] == 13
    assert usage["output_token_details"] == {"audio_tokens": 25, "text_tokens": 8}
    assert usage["output_tokens"] == 33
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    limits = by_type["rate_limits.updated"]["rate_limits"]
    assert {r["name"] for r in limits} == {"requests", "tokens"}


async def test_server_records_every_client_event(server: RealtimeServer, manual: Client) -> None:
    await append(manual, tone(0.2))
    await manual.send({"type": "input_audio_buffer.clear", "event_id": "evt_x"})
    await manual.until("input_audio_buffer.cleared")
    kinds = [e["type"] for e in server.received]
    assert kinds == [
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.append",
        "input_audio_buffer.clear",
    ]
    assert server.sessions[0].received == server.received
    assert server.received[-1]["event_id"] == "evt_x"


async def test_text_message_gets_a_spoken_tone_reply(manual: Client) -> None:
    await manual.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hello there"}],
            },
        }
    )
    await manual.until("conversation.item.done")
    await manual.send({"type": "response.create"})
    events = await manual.reply()
    assert types(events, _not_delta) == SPOKEN_ORDER
    done = next(e for e in events if e["type"] == "response.output_audio_transcript.done")
    assert done["transcript"] == "You said: hello there"
    audio = pcm_of(events)
    assert 0.2 < len(audio) / 24000 < 2.0
    peak = int(np.max(np.abs(audio.astype(np.int32))))
    assert 1000 < peak < 8000  # gentle, not silent


async def test_text_modality(manual: Client) -> None:
    await manual.send(
        {
            "type": "session.update",
            "session": {"type": "realtime", "output_modalities": ["text"]},
        }
    )
    await manual.until("session.updated")
    await manual.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}],
            },
        }
    )
    await manual.until("conversation.item.done")
    await manual.send({"type": "response.create"})
    events = await manual.reply()
    assert types(events) == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_text.delta",  # "You"
        "response.output_text.delta",  # " said:"
        "response.output_text.delta",  # " hi"
        "response.output_text.done",
        "response.content_part.done",
        "conversation.item.done",
        "response.output_item.done",
        "response.done",
        "rate_limits.updated",
    ]
    by_type = {e["type"]: e for e in events}
    assert by_type["response.content_part.added"]["part"] == {"type": "text", "text": ""}
    assert by_type["response.output_text.done"]["text"] == "You said: hi"
    assert by_type["conversation.item.done"]["item"]["content"] == [
        {"type": "output_text", "text": "You said: hi"}
    ]
    usage = by_type["response.done"]["response"]["usage"]
    assert usage["output_token_details"]["audio_tokens"] == 0


async def test_second_turn_links_items_and_reports_cached_tokens(manual: Client) -> None:
    long_text = "word " * 1200  # > 1024 tokens of context, so the next prompt is cached
    await manual.send(
        {"type": "session.update", "session": {"type": "realtime", "instructions": long_text}}
    )
    await manual.until("session.updated")
    speech = tone(0.5, seed=2)
    await append(manual, speech)
    await manual.send({"type": "input_audio_buffer.commit"})
    await manual.send({"type": "response.create"})
    first = await manual.reply()
    assert first[0]["type"] == "input_audio_buffer.committed"
    usage1 = next(e for e in first if e["type"] == "response.done")["response"]["usage"]
    assert usage1["input_token_details"]["cached_tokens"] == 0
    speech2 = tone(0.3, hz=660, seed=3)
    await append(manual, speech2)
    await manual.send({"type": "input_audio_buffer.commit"})
    await manual.send({"type": "response.create"})
    second = await manual.reply()
    assistant_id = next(e for e in first if e["type"] == "response.output_item.done")["item"]["id"]
    assert second[0]["previous_item_id"] == assistant_id
    np.testing.assert_array_equal(pcm_of(second), speech2)
    usage2 = next(e for e in second if e["type"] == "response.done")["response"]["usage"]
    cached = usage2["input_token_details"]["cached_tokens"]
    assert cached > 0 and cached % 64 == 0 and cached <= usage1["input_tokens"]


async def test_retrieve_returns_the_user_audio(manual: Client) -> None:
    speech = tone(0.4, seed=4)
    await append(manual, speech)
    await manual.send({"type": "input_audio_buffer.commit"})
    item_id = (await manual.until("input_audio_buffer.committed"))[-1]["item_id"]
    await manual.send({"type": "conversation.item.retrieve", "item_id": item_id})
    item = (await manual.until("conversation.item.retrieved"))[-1]["item"]
    audio = base64.b64decode(item["content"][0]["audio"])
    np.testing.assert_array_equal(np.frombuffer(audio, "<i2"), speech)
