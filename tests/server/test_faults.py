"""Each fault switch, flipped on a running server."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from tests.server.conftest import API_KEY, Client, append, sdk_client, tone, types
from voicecli.server import MALFORMED_KINDS, RealtimeServer

HEADERS = {"Authorization": f"Bearer {API_KEY}"}


async def _commit_and_respond(c: Client, seconds: float = 1.0) -> None:
    await append(c, tone(seconds))
    await c.send({"type": "input_audio_buffer.commit"})
    await c.send({"type": "response.create"})


async def test_drop_after_n_audio_deltas(server: RealtimeServer, manual: Client) -> None:
    server.faults.drop_after_audio_deltas = 3
    await _commit_and_respond(manual)
    with pytest.raises(ConnectionClosedError) as info:
        while True:
            await manual.recv()
    assert info.value.rcvd is None  # no close frame: the network "failed"
    assert types(manual.seen).count("response.output_audio.delta") == 3
    assert "response.done" not in types(manual.seen)


async def test_drop_on_nth_append(server: RealtimeServer, manual: Client) -> None:
    server.faults.drop_on_append = 2
    await append(manual, tone(0.1))
    await append(manual, tone(0.1))
    with pytest.raises(ConnectionClosed):
        await manual.recv()
    assert server.sessions[0].closed.is_set() or await _closed_soon(server)


async def _closed_soon(server: RealtimeServer) -> bool:
    await asyncio.wait_for(server.sessions[0].closed.wait(), 2)
    return True


async def test_delay_every_event(server: RealtimeServer, manual: Client) -> None:
    server.faults.delay_ms = 150
    start = time.monotonic()
    await manual.send({"type": "input_audio_buffer.clear"})
    await manual.until("input_audio_buffer.cleared")
    assert time.monotonic() - start >= 0.15
    server.faults.delay_ms = 0
    start = time.monotonic()
    await manual.send({"type": "input_audio_buffer.clear"})
    await manual.until("input_audio_buffer.cleared")
    assert time.monotonic() - start < 0.15


async def test_malformed_frames_before_a_reply(server: RealtimeServer) -> None:
    server.faults.malformed_before_reply = MALFORMED_KINDS
    async with connect(server.url + "?model=gpt-realtime", additional_headers=HEADERS) as ws:
        await ws.recv()
        await ws.send(
            json.dumps({"type": "response.create", "response": {"output_modalities": ["text"]}})
        )
        text, binary, unknown, missing, created = [await ws.recv() for _ in range(5)]
        assert isinstance(text, str)
        with pytest.raises(ValueError):
            json.loads(text)
        assert isinstance(binary, bytes)
        assert json.loads(unknown)["type"] == "server.mystery_event"
        assert set(json.loads(missing)) == {"type", "event_id"}
        assert json.loads(created)["type"] == "response.created"
    assert len(server.malformed_sent) == 4
    assert all(e["type"] != "server.mystery_event" for e in server.sent)


async def test_session_expiry(server: RealtimeServer) -> None:
    server.faults.expire_after_s = 0.3
    async with sdk_client(server).realtime.connect(model="gpt-realtime") as conn:
        created = json.loads(await conn.recv_bytes())
        assert created["session"]["expires_at"] <= time.time() + 1
        error = json.loads(await asyncio.wait_for(conn.recv_bytes(), 3))
        assert error["error"]["code"] == "session_expired"
        with pytest.raises(ConnectionClosed):
            await conn.recv_bytes()


async def test_expiry_can_be_shortened_live(server: RealtimeServer, client: Client) -> None:
    server.faults.expire_after_s = 0.0
    assert (await client.error())["code"] == "session_expired"


async def test_an_idle_session_does_not_poll_its_expiry(
    server: RealtimeServer, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the watchdog sleeps until the limit or a switch change (it polled at 20 Hz: the
    # in-process server of `voicecli --local` woke the app's loop 20 times a second)
    import voicecli.server.connection as connection

    reads: list[float] = []

    class CountingClock:
        def __getattr__(self, name: str) -> object:
            return getattr(time, name)

        def monotonic(self) -> float:
            reads.append(time.monotonic())
            return reads[-1]

    monkeypatch.setattr(connection, "time", CountingClock())
    server.faults.expire_after_s = 3600.0  # wakes the watchdog once, with the new clock
    await asyncio.sleep(0.5)
    assert len(reads) <= 2
    server.faults.expire_after_s = 0.0  # and a change still ends the session at once
    assert (await client.error())["code"] == "session_expired"


async def test_refuse_connections(server: RealtimeServer) -> None:
    server.faults.refuse_connections = 2
    for _ in range(2):
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.url + "?model=gpt-realtime", additional_headers=HEADERS):
                pass
        assert info.value.response.status_code == 503
    async with connect(server.url + "?model=gpt-realtime", additional_headers=HEADERS) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
    assert server.refused == 2 and server.faults.refuse_connections == 0


async def test_stall(server: RealtimeServer, manual: Client) -> None:
    server.faults.stall_s = 0.4
    start = time.monotonic()
    await manual.send({"type": "input_audio_buffer.clear"})
    await manual.until("input_audio_buffer.cleared")
    assert time.monotonic() - start >= 0.4
    assert server.faults.stall_s == 0  # consumed
    start = time.monotonic()
    await manual.send({"type": "input_audio_buffer.clear"})
    await manual.until("input_audio_buffer.cleared")
    assert time.monotonic() - start < 0.3


async def test_stall_during_a_response(server: RealtimeServer, manual: Client) -> None:
    server.pace = 5.0  # 2 s of audio: ~400 ms of deltas
    await _commit_and_respond(manual, 2.0)
    await manual.until("response.output_audio.delta")
    server.faults.stall_s = 0.3
    stamps = [time.monotonic()]
    while True:
        event = await manual.recv()
        stamps.append(time.monotonic())
        if event["type"] == "rate_limits.updated":
            break
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert max(gaps) >= 0.25  # the stream paused, then went on to the end
