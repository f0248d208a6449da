"""Server VAD turns, barge-in, idle timeout and synthetic transcription."""

from __future__ import annotations

import numpy as np

from tests.server.conftest import Client, append, pcm_of, silence, tone, types
from voicecli.server import RealtimeServer
from voicecli.server.vad import EnergyVad, SpeechStarted, SpeechStopped


def test_energy_vad_times_include_padding_and_silence() -> None:
    vad = EnergyVad(threshold=0.5, prefix_padding_ms=300, silence_duration_ms=500)
    events = []
    audio = np.concatenate([silence(1.0), tone(1.0), silence(1.0)])
    for i in range(0, len(audio), 480):  # 20 ms blocks
        events += vad.feed(audio[i : i + 480])
    assert events == [SpeechStarted(700), SpeechStopped(2500)]


def test_energy_vad_threshold_and_odd_blocks() -> None:
    quiet = tone(1.0, amplitude=0.003)  # about -55 dBFS
    assert EnergyVad(threshold=0.5).feed(quiet) == []
    sensitive = EnergyVad(threshold=0.1, prefix_padding_ms=0)
    events = []
    for i in range(0, len(quiet), 333):  # blocks that straddle frames
        events += sensitive.feed(quiet[i : i + 333])
    assert events == [SpeechStarted(0)]
    assert EnergyVad(threshold=0.5).feed(tone(0.02)) == []  # one loud frame is a click


async def test_server_vad_turn_commits_and_answers(server: RealtimeServer, client: Client) -> None:
    lead, speech, tail = silence(1.0), tone(1.0, seed=7), silence(0.8)
    await append(client, np.concatenate([lead, speech, tail]), block_s=0.02)
    events = await client.reply()
    assert types(events)[:6] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
    ]
    started, stopped, committed = events[0], events[1], events[2]
    assert started["audio_start_ms"] == 700  # 1000 ms minus 300 ms prefix padding
    assert stopped["audio_end_ms"] == 2500  # speech end + 500 ms of silence
    assert started["item_id"] == stopped["item_id"] == committed["item_id"]
    # The echo is exactly the committed turn: padding, speech, trailing silence.
    expected = np.concatenate([lead, speech, tail])[700 * 24 : 2500 * 24]
    np.testing.assert_array_equal(pcm_of(events), expected)
    done = next(e for e in events if e["type"] == "response.output_audio_transcript.done")
    assert done["transcript"] == "You said 1.8 seconds of audio."


async def test_server_vad_without_auto_response(client: Client) -> None:
    await client.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {
                    "input": {"turn_detection": {"type": "server_vad", "create_response": False}}
                },
            },
        }
    )
    await client.until("session.updated")
    await append(client, np.concatenate([tone(0.5), silence(0.7)]), block_s=0.02)
    await client.until("conversation.item.done")
    await client.send({"type": "input_audio_buffer.clear"})
    assert (await client.recv())["type"] == "input_audio_buffer.cleared"  # no response.created


async def test_speech_interrupts_a_running_response(server: RealtimeServer, client: Client) -> None:
    server.pace = 2.0  # the 3.6 s reply takes 1.8 s to send
    await append(client, np.concatenate([tone(3.0), silence(0.6)]), block_s=0.02)
    await client.until("response.output_audio.delta")
    await append(client, tone(0.3, hz=330), block_s=0.02)
    events = await client.until("response.done")
    assert "input_audio_buffer.speech_started" in types(events)
    response = events[-1]["response"]
    assert response["status"] == "cancelled"
    assert response["status_details"] == {"type": "cancelled", "reason": "turn_detected"}


async def test_semantic_vad_turn(client: Client) -> None:
    await client.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {
                    "input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}
                },
            },
        }
    )
    await client.until("session.updated")
    await append(client, np.concatenate([tone(0.5), silence(0.4)]), block_s=0.02)
    events = await client.until("response.created")
    stopped = next(e for e in events if e["type"] == "input_audio_buffer.speech_stopped")
    assert stopped["audio_end_ms"] == 800  # 500 ms speech + 300 ms ("high" eagerness)
    await client.reply()  # read it all: an unread backlog would stall the closing handshake


async def test_idle_timeout(client: Client) -> None:
    await client.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {
                    "input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000}}
                },
            },
        }
    )
    await client.until("session.updated")
    await append(client, silence(5.2), block_s=0.1)
    events = await client.until("response.created")
    assert types(events)[:4] == [
        "input_audio_buffer.timeout_triggered",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    timeout = events[0]
    assert timeout["audio_start_ms"] == 0 and timeout["audio_end_ms"] == 5000
    assert timeout["item_id"] == events[1]["item_id"]
    await client.reply()


async def test_input_transcription(manual: Client) -> None:
    await manual.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"}}},
            },
        }
    )
    await manual.until("session.updated")
    await append(manual, tone(1.8))
    await manual.send({"type": "input_audio_buffer.commit"})
    events = await manual.until("conversation.item.input_audio_transcription.completed")
    deltas = [e for e in events if e["type"] == "conversation.item.input_audio_transcription.delta"]
    completed = events[-1]
    assert completed["transcript"] == "(1.8 s of speech)"
    assert "".join(d["delta"] for d in deltas) == completed["transcript"]
    assert completed["item_id"] == events[0]["item_id"] and completed["content_index"] == 0
    # token usage, as the gpt-4o transcribe models report it (whisper-1: seconds)
    assert completed["usage"] == {
        "type": "tokens",
        "input_tokens": 18,
        "input_token_details": {"audio_tokens": 18, "text_tokens": 0},
        "output_tokens": 5,
        "total_tokens": 23,
    }
    await manual.send({"type": "conversation.item.retrieve", "item_id": completed["item_id"]})
    item = (await manual.until("conversation.item.retrieved"))[-1]["item"]
    assert item["content"][0]["transcript"] == "(1.8 s of speech)"
