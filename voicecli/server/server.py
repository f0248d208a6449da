"""The local Realtime server: handshake, authentication, and ways to run it."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import signal
import sys
import threading
from collections.abc import Coroutine
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from voicecli.server.connection import RealtimeSession
from voicecli.server.errors import handshake_refusal_body
from voicecli.server.faults import Faults
from voicecli.server.session_config import model_is_known
from voicecli.server.synth import new_id

PATHS = ("/v1/realtime", "/openai/v1/realtime")
#: One append may carry 15 MiB of audio, which is 20 MiB of base64.
MAX_FRAME = 32 * 1024 * 1024


class ServerStartError(OSError):
    """The server could not listen on the requested address."""


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class RealtimeServer:
    """A GA-protocol OpenAI Realtime server for tests and offline use.

    ``pace`` is how much faster than real time audio deltas are sent (5 by default, like
    the live service; ``0`` or ``math.inf`` sends without pauses). With ``record`` (the
    default) the server keeps, across all connections, every client event received in
    ``received`` and every event sent in ``sent`` (malformed frames injected by a fault go
    to ``malformed_sent``); ``sessions`` holds each connection's :class:`RealtimeSession`,
    whose own ``received`` lists that connection's client events. Turn ``record`` off for
    long-running use.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        faults: Faults | None = None,
        *,
        pace: float = 5.0,
        record: bool = True,
        azure_deployments: tuple[str, ...] | None = None,
    ) -> None:
        self.host = host
        self.azure_deployments = azure_deployments
        """Azure mode: the transcription deployments that exist (a transcription model
        must be one of them, as on Azure OpenAI); None: OpenAI mode, any model."""
        self._port = port
        self._api_key = api_key
        self.faults = faults if faults is not None else Faults()
        self.pace = pace
        self.record = record
        self.received: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.malformed_sent: list[str | bytes] = []
        self.sessions: list[RealtimeSession] = []
        self.refused = 0
        self._server: Server | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not started")
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://{_format_host(self.host)}:{self.port}/v1/realtime"

    async def start(self) -> None:
        try:
            self._server = await serve(
                self._handle,
                self.host,
                self._port,
                process_request=self._process_request,
                max_size=MAX_FRAME,
                ping_interval=20,
                ping_timeout=20,
                close_timeout=2,
                server_header="voicecli-local-realtime",
            )
        except OSError as exc:
            raise ServerStartError(
                exc.errno,
                f"cannot listen on {_format_host(self.host)}:{self._port}: {exc.strerror or exc}",
            ) from exc

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close(close_connections=True)
        await self._server.wait_closed()
        for session in self.sessions:
            await session.closed.wait()

    async def __aenter__(self) -> RealtimeServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- handshake ----------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path.rstrip("/") not in PATHS:
            return connection.respond(HTTPStatus.NOT_FOUND, "Not found: use /v1/realtime\n")
        refuse = self.faults.refuse_handshake_with
        if refuse is not None:
            self.refused += 1
            response = connection.respond(HTTPStatus(refuse), handshake_refusal_body(refuse))
            response.headers["Content-Type"] = "application/json"
            return response
        if self.faults.refuse_connections > 0:
            self.faults.refuse_connections -= 1
            self.refused += 1
            return connection.respond(
                HTTPStatus.SERVICE_UNAVAILABLE, "Service unavailable (injected fault)\n"
            )
        return None

    def _authorized(self, headers: Headers) -> bool:
        if self._api_key is None:
            return True
        given = headers.get("api-key")
        auth = headers.get("authorization", "")
        if given is None and auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        return given is not None and hmac.compare_digest(given.encode(), self._api_key.encode())

    async def _fatal(
        self, ws: ServerConnection, code: str, message: str, close_code: int, param: str | None
    ) -> None:
        """Send one ``error`` event, then close: the handshake succeeded but the session
        cannot start (the live service does the same)."""
        event = {
            "type": "error",
            "event_id": new_id("event"),
            "error": {
                "type": "invalid_request_error",
                "code": code,
                "message": message,
                "param": param,
                "event_id": None,
            },
        }
        if self.record:
            self.sent.append(event)
        with contextlib.suppress(ConnectionClosed):
            await ws.send(json.dumps(event))
            await ws.close(close_code, code)

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        headers = request.headers
        if "realtime=v1" in headers.get("openai-beta", "").replace(" ", ""):
            await self._fatal(
                ws,
                "beta_api_shape_disabled",
                "The beta Realtime API shape is disabled: remove the 'OpenAI-Beta: realtime=v1' "
                "header and use the GA event names.",
                1008,
                None,
            )
            return
        if not self._authorized(headers):
            await self._fatal(
                ws,
                "invalid_api_key",
                "Incorrect API key provided. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                3000,
                None,
            )
            return
        query = parse_qs(urlsplit(request.path).query)
        model = (query.get("model") or query.get("deployment") or [""])[0]
        if not model_is_known(model):
            message = (
                "Missing required parameter: 'model'."
                if not model
                else f"The model '{model}' does not exist or you do not have access to it."
            )
            await self._fatal(
                ws, "missing_model" if not model else "model_not_found", message, 4000, "model"
            )
            return
        session = RealtimeSession(ws, self, model)
        self.sessions.append(session)
        await session.run()


class BackgroundServer:
    """A :class:`RealtimeServer` on its own event loop in a daemon thread, for callers that
    own their loop (the Textual app, ``voicecli ask --local``). Starts in the constructor;
    raises :class:`ServerStartError` if the port cannot be bound."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        *,
        faults: Faults | None = None,
        pace: float = 5.0,
        record: bool = True,
    ) -> None:
        self.server = RealtimeServer(host, port, api_key, faults, pace=pace, record=record)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="voicecli-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8765,
    api_key: str | None = None,
    *,
    azure_deployments: tuple[str, ...] | None = None,
) -> int:
    """Run the server until Ctrl+C or SIGTERM (``voicecli serve``; ``--azure`` gives
    ``azure_deployments``). Returns an exit code."""

    async def main() -> int:
        server = RealtimeServer(
            host, port, api_key, record=False, azure_deployments=azure_deployments
        )
        try:
            await server.start()
        except ServerStartError as exc:
            sys.stderr.write(f"voicecli serve: {exc.strerror}\n")
            return 1
        sys.stderr.write(f"voicecli local Realtime server listening on {server.url}\n")
        sys.stderr.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await server.stop()
        return 0

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:  # platforms without loop signal handlers
        return 0
