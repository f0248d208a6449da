"""The connection layer: endpoints and headers per provider, the insecure-URL rule, and
real sockets against the local server (events, bad key, a stalled socket, closes).
The send queue's policy (backlog, one response at a time) is the outbox's:
tests/protocol/test_outbox.py."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from voicecli.config import ConnectionConfig
from voicecli.connection import (
    MALFORMED,
    Connection,
    ConnectionFailed,
    ConnectionLost,
    ConnectionRejected,
    FatalServerError,
    SessionExpired,
    auth_headers,
    build_endpoint,
    classify_close,
    detect_provider,
    is_loopback,
)
from voicecli.server import BackgroundServer

KEY = "sk-test-SECRET123-connection"


def audio_append(ms: int) -> dict[str, Any]:
    """An append carrying ``ms`` of noise (PCM16 mono 24 kHz; random, so that
    permessage-deflate cannot shrink it)."""
    pcm = os.urandom(48 * ms)
    return {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}


# --- endpoints --------------------------------------------------------------------------


def test_openai_endpoint_and_bearer_header() -> None:
    ep = build_endpoint(ConnectionConfig())
    assert ep.url == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert ep.provider == "openai"
    assert (ep.host, ep.port, ep.secure) == ("api.openai.com", 443, True)
    assert auth_headers(ep, KEY) == {"Authorization": f"Bearer {KEY}"}
    assert auth_headers(ep, None) == {}
    # an https:// base URL is converted and given the realtime path
    ep = build_endpoint(
        ConnectionConfig(url="https://api.openai.com/v1", model="gpt-realtime-mini")
    )
    assert ep.url == "wss://api.openai.com/v1/realtime?model=gpt-realtime-mini"


@pytest.mark.parametrize(
    "url",
    [
        "https://myres.openai.azure.com",
        "https://myres.openai.azure.com/openai/v1",
        "wss://myres.openai.azure.com/openai/v1/realtime",
    ],
)
def test_azure_endpoint_uses_ga_path_and_api_key_header(url: str) -> None:
    ep = build_endpoint(ConnectionConfig(url=url, model="my-deployment"))
    assert ep.provider == "azure"
    assert ep.url == "wss://myres.openai.azure.com/openai/v1/realtime?model=my-deployment"
    assert auth_headers(ep, KEY) == {"api-key": KEY}
    assert "Authorization" not in auth_headers(ep, KEY)


def test_compatible_endpoint_keeps_the_url() -> None:
    conn = ConnectionConfig(url="ws://127.0.0.1:8765/custom/path?x=1", model="m")
    ep = build_endpoint(conn)
    assert ep.provider == "compatible"
    assert ep.url == "ws://127.0.0.1:8765/custom/path?x=1&model=m"
    assert auth_headers(ep, KEY) == {"Authorization": f"Bearer {KEY}"}
    # an explicit model in the URL wins; provider can be forced
    ep = build_endpoint(ConnectionConfig(url="wss://example.com/rt?model=x", provider="azure"))
    assert ep.url == "wss://example.com/rt?model=x"
    assert ep.provider == "azure"


def test_detect_provider_and_loopback() -> None:
    assert detect_provider("wss://api.openai.com/v1/realtime") == "openai"
    assert detect_provider("https://r.cognitiveservices.azure.com") == "azure"
    assert detect_provider("ws://localhost:1") == "compatible"
    for host in ("localhost", "127.0.0.1", "127.5.6.7", "::1", "[::1]", "a.localhost"):
        assert is_loopback(host), host
    for host in ("example.com", "10.0.0.1", "192.168.1.2", "localhost.example.com"):
        assert not is_loopback(host), host


def test_plain_ws_to_another_machine_needs_insecure() -> None:
    with pytest.raises(ConnectionRejected) as excinfo:
        build_endpoint(ConnectionConfig(url="ws://10.1.2.3:8765/v1/realtime"))
    assert "--insecure" in str(excinfo.value)
    assert excinfo.value.retriable is False
    assert isinstance(excinfo.value, FatalServerError)  # reconnect loops stop on it
    ep = build_endpoint(ConnectionConfig(url="ws://10.1.2.3:8765/v1/realtime", insecure=True))
    assert ep.secure is False
    assert build_endpoint(ConnectionConfig(url="ws://localhost:9/v1/realtime")).loopback
    with pytest.raises(ConnectionRejected, match="not a WebSocket URL"):
        build_endpoint(ConnectionConfig(url="ftp://example.com/"))


def test_key_never_in_repr_or_url() -> None:
    conn = Connection(ConnectionConfig(url="wss://u:pw@example.com/rt?api_key=abc"), KEY)
    assert KEY not in repr(conn)
    assert "pw" not in repr(conn) and "abc" not in repr(conn)
    assert KEY not in conn.endpoint.url


# --- close classification ---------------------------------------------------------------


def test_classify_close() -> None:
    err = classify_close(3000, None, key_env="MY_KEY")
    assert isinstance(err, FatalServerError) and err.code == "invalid_api_key"
    assert "MY_KEY" in str(err) and err.close_code == 3000
    err = classify_close(4000, {"code": "model_not_found"}, model="bogus")
    assert isinstance(err, FatalServerError) and "'bogus'" in str(err)
    err = classify_close(1000, {"code": "session_expired"})
    assert isinstance(err, SessionExpired)
    err = classify_close(1008, {"code": "beta_api_shape_disabled"})
    assert isinstance(err, FatalServerError) and err.code == "beta_api_shape_disabled"
    for code in (None, 1006, 1000, 1001, 1011):
        lost = classify_close(code, None)
        assert isinstance(lost, ConnectionLost), code
        assert not isinstance(lost, FatalServerError)


# --- against the local server -----------------------------------------------------------


@pytest.fixture
def server() -> Iterator[BackgroundServer]:
    with BackgroundServer(api_key=KEY, pace=0) as srv:
        yield srv


def local(srv: BackgroundServer, **kw: Any) -> ConnectionConfig:
    return ConnectionConfig(url=srv.url, **kw)


async def next_of(conn: Connection, type_: str, timeout: float = 5.0) -> dict[str, Any]:
    async def find() -> dict[str, Any]:
        async for event in conn:
            if event["type"] == type_:
                return event
        raise AssertionError(f"the stream ended before {type_}")

    return await asyncio.wait_for(find(), timeout)


async def test_connect_send_and_iterate(server: BackgroundServer) -> None:
    async with Connection(local(server), KEY) as conn:
        assert conn.is_open
        created = await next_of(conn, "session.created")
        assert created["session"]["model"] == "gpt-realtime"
        await conn.send(
            {"type": "session.update", "session": {"type": "realtime", "instructions": "hi"}}
        )
        assert conn.sent_events == 1
        updated = await next_of(conn, "session.updated")
        assert updated["session"]["instructions"] == "hi"
    assert not conn.is_open
    with pytest.raises(ConnectionLost):
        await conn.send({"type": "input_audio_buffer.clear"})


async def test_bad_key_is_fatal_close_3000_with_clear_message(
    server: BackgroundServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "sk-test-WRONG-KEY-4567"
    for key in (wrong, None):
        conn = Connection(local(server, api_key_env="MY_VOICE_KEY"), key)
        with pytest.raises(FatalServerError) as excinfo:
            await conn.connect()
        err = excinfo.value
        assert err.code == "invalid_api_key"
        assert err.close_code == 3000
        assert "rejected the API key" in str(err) and "MY_VOICE_KEY" in str(err)
        assert wrong not in str(err)
    # the client's own records (websockets logs the handshake headers at DEBUG)
    client = [r.getMessage() for r in caplog.records if r.name.startswith("voicecli.connection")]
    assert any("Authorization: Bearer [REDACTED]" in m for m in client)
    assert not [m for m in client if wrong in m or KEY in m]


async def test_unknown_model_is_fatal(server: BackgroundServer) -> None:
    conn = Connection(local(server, model="no-such-model"), KEY)
    with pytest.raises(FatalServerError) as excinfo:
        await conn.connect()
    assert excinfo.value.code == "model_not_found"
    assert excinfo.value.close_code == 4000


async def test_refused_and_unreachable_are_retriable(server: BackgroundServer) -> None:
    server.server.faults.refuse_connections = 1
    with pytest.raises(ConnectionFailed) as excinfo:
        await Connection(local(server), KEY).connect()
    assert "503" in str(excinfo.value) and excinfo.value.retriable
    assert not isinstance(excinfo.value, FatalServerError)
    # then the next attempt works
    async with Connection(local(server), KEY) as conn:
        await next_of(conn, "session.created")
    port = server.port
    server.close()
    with pytest.raises(ConnectionFailed) as excinfo:
        await Connection(ConnectionConfig(url=f"ws://127.0.0.1:{port}/v1/realtime"), KEY).connect()
    assert "refused" in str(excinfo.value) and excinfo.value.retriable


async def test_a_stalled_socket_makes_send_wait_then_it_works_again(
    server: BackgroundServer,
) -> None:
    """The server stops reading for a while: send() waits (the caller's outbox holds and
    drops mic audio meanwhile), and the connection works again afterwards."""
    async with Connection(local(server), KEY) as conn:
        await next_of(conn, "session.created")
        server.server.faults.stall_s = 3.0
        await conn.send({"type": "input_audio_buffer.clear"})  # the server stalls on it
        slowest = 0.0
        for _ in range(400):  # 200 s of audio, 12.8 MB of base64: more than socket buffers
            t0 = time.perf_counter()
            await conn.send(audio_append(500))
            slowest = max(slowest, time.perf_counter() - t0)
        assert slowest > 0.5, "the socket never filled: nothing exercised"
        await conn.send({"type": "input_audio_buffer.clear"})
        await next_of(conn, "input_audio_buffer.cleared", timeout=20)


async def test_drop_is_connection_lost(server: BackgroundServer) -> None:
    server.server.faults.drop_on_append = 1
    async with Connection(local(server), KEY) as conn:
        await next_of(conn, "session.created")
        await conn.send(audio_append(100))
        with pytest.raises(ConnectionLost) as excinfo:
            await next_of(conn, "never.sent")
        assert not isinstance(excinfo.value, FatalServerError)
        assert "dropped" in str(excinfo.value)
        with pytest.raises(ConnectionLost):
            await conn.send(audio_append(100))


async def test_session_expiry_is_fatal_for_the_session(server: BackgroundServer) -> None:
    server.server.faults.expire_after_s = 0.3
    async with Connection(local(server), KEY) as conn:
        await next_of(conn, "session.created")
        with pytest.raises(SessionExpired) as excinfo:
            await next_of(conn, "never.sent")
        assert excinfo.value.code == "session_expired"


async def test_malformed_frames_become_markers(server: BackgroundServer) -> None:
    server.server.faults.malformed_before_reply = ("text", "binary")
    async with Connection(local(server), KEY) as conn:
        await next_of(conn, "session.created")
        await conn.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "hello"}],
                },
            }
        )
        await conn.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        kinds = []
        async for event in conn:
            if event["type"] == MALFORMED:
                kinds.append(event["kind"])
            if event["type"] == "response.done":
                break
        assert kinds == ["invalid_json", "binary"]
        assert conn.malformed_frames == 2


async def test_close_is_quiet_and_idempotent(server: BackgroundServer) -> None:
    conn = Connection(local(server), KEY)
    await conn.connect()
    await conn.close()
    await conn.close()
    assert [e async for e in conn] == []  # iteration ends quietly after close()
