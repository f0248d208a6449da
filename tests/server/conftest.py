"""Fixtures for the local server's tests: a server per test, an official-SDK client, and
strict validation of EVERY event the server sent during the test (checked at teardown)."""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from openai import AsyncOpenAI

from tests.sdk_strict import validate_server_event
from voicecli.server import RealtimeServer

API_KEY = "sk-test"
RATE = 24_000


def validate_sent(event: dict[str, Any]) -> None:
    """Strictly validate one server event (session events against the response model)."""
    validate_server_event(event)


@pytest.fixture
async def server() -> AsyncIterator[RealtimeServer]:
    srv = RealtimeServer(api_key=API_KEY, pace=0)
    async with srv:
        yield srv
    for event in srv.sent:
        validate_sent(event)


def sdk_client(srv: RealtimeServer, api_key: str = API_KEY) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=api_key, websocket_base_url=srv.url.removesuffix("/realtime"))


class Client:
    """The SDK connection plus helpers that keep tests short. Events are plain dicts."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.seen: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any]) -> None:
        await self.conn.send(event)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        # The raw wire JSON: exact keys and order, nothing added by the SDK's models.
        event: dict[str, Any] = json.loads(await asyncio.wait_for(self.conn.recv_bytes(), timeout))
        self.seen.append(event)
        return event

    async def until(self, type_: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Receive events up to and including the first of ``type_``."""
        got = []
        while True:
            event = await self.recv(timeout)
            got.append(event)
            if event["type"] == type_:
                return got

    async def error(self, timeout: float = 5.0) -> dict[str, Any]:
        events = await self.until("error", timeout)
        return dict(events[-1]["error"])

    async def reply(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """A whole response, up to and including rate_limits.updated."""
        return await self.until("rate_limits.updated", timeout)


@pytest.fixture
async def client(server: RealtimeServer) -> AsyncIterator[Client]:
    async with sdk_client(server).realtime.connect(model="gpt-realtime") as conn:
        c = Client(conn)
        first = await c.recv()
        assert first["type"] == "session.created"
        yield c


@pytest.fixture
async def manual(client: Client) -> Client:
    """A client whose session has turn detection off (the client decides turns)."""
    await client.send(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
        }
    )
    await client.until("session.updated")
    return client


def tone(seconds: float, hz: float = 440.0, amplitude: float = 0.3, seed: int = 0) -> np.ndarray:
    """A tone with a little noise, so two tones never match by accident."""
    t = np.arange(int(seconds * RATE)) / RATE
    noise = np.random.default_rng(seed).normal(0, 0.03 * amplitude, len(t))
    x = np.sin(2 * math.pi * hz * t) * amplitude + noise
    return np.asarray(np.round(x * 32767), dtype=np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def b64(pcm: np.ndarray) -> str:
    return base64.b64encode(pcm.astype("<i2").tobytes()).decode()


def pcm_of(events: list[dict[str, Any]]) -> np.ndarray:
    data = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def types(events: list[dict[str, Any]], keep: Callable[[str], bool] = lambda t: True) -> list[str]:
    return [e["type"] for e in events if keep(e["type"])]


async def append(c: Client, pcm: np.ndarray, block_s: float = 0.1) -> None:
    step = int(block_s * RATE)
    for i in range(0, len(pcm), step):
        await c.send({"type": "input_audio_buffer.append", "audio": b64(pcm[i : i + step])})
