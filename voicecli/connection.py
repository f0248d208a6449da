"""One WebSocket connection to a Realtime server (OpenAI, Azure OpenAI or compatible).

* :func:`build_endpoint` turns ``[connection]`` settings into the URL to dial, and
  :func:`auth_headers` adds the key the way the provider expects it.
* :class:`Connection` dials, writes client events (:meth:`Connection.send`) and yields
  server events as dicts (``async for event in conn``). It is only the socket: what to
  send, in which order and what to drop when the socket stalls is the engine's outbox
  (:mod:`voicecli.protocol.outbox`).
* Failures are one-line exceptions, classified once by :mod:`voicecli.protocol.failures`:
  :class:`ConnectionFailed` (could not connect; ``retriable`` or not),
  :class:`FatalServerError` (the server ended the session for a reason a retry will not
  fix: bad key, bad model), :class:`SessionExpired` (the session's time is up: rotate)
  and :class:`ConnectionLost` (a drop worth a reconnect). The API key never appears in
  a URL, repr, log line or exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.version import version as WEBSOCKETS_VERSION

from voicecli import __version__
from voicecli.aio import timeout
from voicecli.config import AuthMode, Config, ConnectionConfig, ResolvedProvider
from voicecli.config import detect_provider as detect_provider  # re-exported
from voicecli.protocol.failures import Failure, close_failure, error_kind, http_failure
from voicecli.secrets import RedactingFilter, redact, register_secret

log = logging.getLogger(__name__)
_ws_log = logging.getLogger(f"{__name__}.websockets")
# websockets logs handshake headers (the Authorization header) at DEBUG
_ws_log.addFilter(RedactingFilter())

MAX_FRAME = 32 * 1024 * 1024  # one append may carry 15 MiB of audio (20 MiB of base64)
MALFORMED = "voicecli.malformed_frame"


class ConnectionFailed(Exception):
    """The connection could not be opened. ``failure`` is the one classification
    (:mod:`voicecli.protocol.failures`); ``retriable`` says whether trying again later
    may work (refused, DNS, timeout, HTTP 408/429/5xx) or not (bad URL, HTTP 400/401/
    403/404 and other 4xx, TLS certificate, insecure URL)."""

    def __init__(self, message: str, *, retriable: bool = True, failure: Failure | None = None):
        super().__init__(message)
        self.failure = failure or Failure("retry" if retriable else "fatal", message)

    @property
    def retriable(self) -> bool:
        return self.failure.retriable


class FatalServerError(Exception):
    """The server ended the session for a reason a plain retry will not fix.

    ``code`` is the error code (``invalid_api_key``, ``model_not_found``...),
    ``close_code`` the WebSocket close code when there was one.
    """

    def __init__(self, message: str, *, code: str | None = None, close_code: int | None = None):
        super().__init__(message)
        self.code = code
        self.close_code = close_code


class ConnectionRejected(ConnectionFailed, FatalServerError):
    """Connecting failed in a way retrying cannot fix (both a :class:`ConnectionFailed`
    and a :class:`FatalServerError`, so reconnect loops stop)."""

    def __init__(
        self, message: str, *, code: str | None = None, failure: Failure | None = None
    ) -> None:
        ConnectionFailed.__init__(
            self, message, failure=failure or Failure("fatal", message, code=code)
        )
        self.code = code
        self.close_code = None


class ConnectionLost(Exception):
    """The connection dropped or the server closed it: worth a reconnect."""


class SessionExpired(ConnectionLost):
    """The session reached the server's time limit (60 minutes): this session is over;
    a new connection starts a new one (rotate and replay the conversation)."""

    def __init__(self, message: str, *, code: str | None = None, close_code: int | None = None):
        super().__init__(message)
        self.code = code
        self.close_code = close_code


# --- endpoints --------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where to connect: the full URL (never holding a key), the provider and a short
    label for messages."""

    url: str
    provider: ResolvedProvider
    label: str
    host: str
    port: int
    secure: bool

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine (``localhost``, 127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_SECRET_PARAMS = ("key", "token", "secret", "password", "sig")


def build_endpoint(conn: ConnectionConfig) -> Endpoint:
    """The URL to dial for ``conn``: ``http(s)`` becomes ``ws(s)``, Azure gets the GA
    path ``/openai/v1/realtime``, the model (Azure: deployment) goes in ``?model=``.
    Raises :class:`ConnectionRejected` for an unusable URL or for unencrypted ``ws://``
    to another machine without ``insecure``."""
    raw = conn.url.strip()
    parts = urlsplit(raw)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ConnectionRejected(f"connection.url is not a WebSocket URL: {_safe_url(raw)}")
    provider: ResolvedProvider = conn.resolved_provider
    path = parts.path
    if provider == "azure" and path.rstrip("/") in ("", "/openai", "/openai/v1"):
        path = "/openai/v1/realtime"
    elif provider == "openai" and path.rstrip("/") in ("", "/v1"):
        path = "/v1/realtime"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(k in ("model", "deployment") for k, _ in query):
        query.append(("model", conn.model))
    try:
        port = parts.port or (443 if scheme == "wss" else 80)
    except ValueError:
        raise ConnectionRejected(f"connection.url has a bad port: {_safe_url(raw)}") from None
    url = urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))
    endpoint = Endpoint(
        url=url,
        provider=provider,
        label=_safe_url(url),
        host=parts.hostname,
        port=port,
        secure=scheme == "wss",
    )
    if not endpoint.secure and not endpoint.loopback and not conn.insecure:
        raise ConnectionRejected(
            f"refusing unencrypted ws:// to {endpoint.host}: the API key would cross the "
            "network in clear; use wss:// or set connection.insecure = true (--insecure)"
        )
    return endpoint


def _safe_url(url: str) -> str:
    """``url`` for messages: no user info, and query values that look like credentials
    hidden."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        query = [
            (k, "***" if any(s in k.lower() for s in _SECRET_PARAMS) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
        return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))
    except ValueError:
        return "(unparsable URL)"


def auth_headers(
    endpoint: Endpoint, api_key: str | None, auth: AuthMode = "auto"
) -> dict[str, str]:
    """The header carrying ``api_key`` (None: none, a local server). ``auth`` ``auto``:
    ``Authorization: Bearer``, except on Azure, where a key is sent as ``api-key`` and
    an Entra ID token (JWT-shaped) as Bearer."""
    if not api_key:
        return {}
    if auth == "auto":
        bearer = endpoint.provider != "azure" or looks_like_jwt(api_key)
        auth = "bearer" if bearer else "api-key"
    if auth == "api-key":
        return {"api-key": api_key}
    return {"Authorization": f"Bearer {api_key}"}


_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def looks_like_jwt(key: str) -> bool:
    """Whether ``key`` has a JWT's shape (three base64url parts, the first a JSON
    header), as Entra ID access tokens do; Azure API keys are 32+ hex or base62
    characters without dots."""
    return _JWT.fullmatch(key.strip()) is not None


PREVIEW_NOTICE = (
    "connection.url uses the retired preview path (/openai/realtime?api-version=…&"
    "deployment=…): use the GA path, https://RESOURCE.openai.azure.com/openai/v1/realtime "
    "with connection.model = your deployment"
)
"""Told once when the URL is Azure's preview shape."""


def preview_notice(endpoint: Endpoint) -> str | None:
    """:data:`PREVIEW_NOTICE` when ``endpoint`` is Azure's retired preview URL."""
    parts = urlsplit(endpoint.url)
    keys = {k for k, _ in parse_qsl(parts.query)}
    if parts.path.rstrip("/").endswith("/openai/realtime") and (
        "api-version" in keys or "deployment" in keys
    ):
        return PREVIEW_NOTICE
    return None


# --- close classification ---------------------------------------------------------------


def classify_close(
    close_code: int | None,
    last_error: Mapping[str, Any] | None,
    *,
    close_reason: str = "",
    key_env: str = "OPENAI_API_KEY",
    model: str = "",
) -> FatalServerError | ConnectionLost:
    """The exception for a connection the server closed (or that dropped), as
    :func:`voicecli.protocol.failures.close_failure` classifies it."""
    failure = close_failure(
        close_code,
        close_reason,
        last_error,
        key_hint=f"{key_env} (or connection.api_key_command)",
        model=model,
    )
    if failure.kind == "fatal":
        return FatalServerError(failure.message, code=failure.code, close_code=close_code)
    if failure.kind == "expired":
        return SessionExpired(failure.message, code=failure.code, close_code=close_code)
    return ConnectionLost(failure.message)


# --- the connection ---------------------------------------------------------------------


class Connection:
    """One Realtime WebSocket session.

    ``await connect()``, then ``await send(event)`` (returns once the frame is handed
    to the socket: a stalled socket makes it wait, which is how the caller's outbox
    learns to hold and drop audio) and ``async for event in conn`` (server events as
    dicts; non-JSON text and binary frames become
    ``{"type": "voicecli.malformed_frame", ...}`` markers).
    """

    def __init__(
        self,
        config: Config | ConnectionConfig,
        api_key: str | None = None,
        *,
        open_timeout: float = 10.0,
        first_event_timeout: float = 2.0,
        ping_interval: float | None = 20.0,
    ) -> None:
        self._conn = config.connection if isinstance(config, Config) else config
        self._endpoint: Endpoint | None = None
        self.__key = api_key
        register_secret(api_key)
        self._open_timeout = open_timeout
        self._first_event_timeout = first_event_timeout
        self._ping_interval = ping_interval
        self._ws: ClientConnection | None = None
        self._pending_first: dict[str, Any] | None = None
        self._last_fatal_error: dict[str, Any] | None = None
        self._closing = False
        self._ended: BaseException | None = None
        self.malformed_frames = 0
        """Frames from the server that were not JSON event objects."""
        self.sent_events = 0
        """Events written to the socket."""

    def __repr__(self) -> str:
        state = "open" if self._ws is not None and not self._closing else "closed"
        target = self._endpoint.label if self._endpoint else _safe_url(self._conn.url)
        return f"<Connection {target} {state}>"

    @property
    def endpoint(self) -> Endpoint:
        """The resolved endpoint (raises :class:`ConnectionRejected` like connect)."""
        if self._endpoint is None:
            self._endpoint = build_endpoint(self._conn)
        return self._endpoint

    @property
    def is_open(self) -> bool:
        return self._ws is not None and not self._closing and self._ended is None

    # -- connecting ----------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the socket and wait (briefly) for the server's first event, so a bad key
        or model fails here. Raises :class:`ConnectionFailed`,
        :class:`FatalServerError` (or :class:`ConnectionRejected`, both)."""
        if self._ws is not None:
            raise RuntimeError("already connected")
        endpoint = self.endpoint
        headers = auth_headers(endpoint, self.__key, self._conn.auth)
        kwargs: dict[str, Any] = {
            "additional_headers": headers,
            "open_timeout": self._open_timeout,
            "max_size": MAX_FRAME,
            "ping_interval": self._ping_interval,
            "ping_timeout": 20,
            "close_timeout": 2,
            "user_agent_header": f"voicecli/{__version__} websockets/{WEBSOCKETS_VERSION}",
            "logger": _ws_log,
        }
        if endpoint.loopback and _websockets_major() >= 15:
            kwargs["proxy"] = None  # never send a local server's traffic through a proxy
        try:
            ws = await ws_connect(endpoint.url, **kwargs)
        except Exception as exc:
            raise self._connect_error(exc) from None
        self._ws = ws
        try:
            async with timeout(self._first_event_timeout):
                first = await ws.recv()
        except (asyncio.TimeoutError, TimeoutError):
            return  # a compatible server that waits for the client: fine
        except ConnectionClosed as exc:
            error = self._ended_by(exc)
            await self._shutdown()
            if isinstance(error, (FatalServerError, SessionExpired)):
                raise error from None
            raise ConnectionFailed(
                f"{endpoint.label}: the server closed the connection at once ({error})"
            ) from None
        event = self._parse(first)
        if self._note_fatal(event):
            # the close follows right away: report it as the connect failure
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                async with timeout(2.0):
                    await ws.wait_closed()
            error = self._classify(ws.close_code, ws.close_reason or "")
            await self._shutdown()
            raise error
        self._pending_first = event

    def _connect_error(self, exc: BaseException) -> ConnectionFailed:
        ep = self.endpoint
        where = f"{ep.host}:{ep.port}"
        if isinstance(exc, InvalidStatus):
            response = exc.response
            failure = http_failure(
                response.status_code,
                response.reason_phrase,
                redact(_body_text(response.body), [self.__key or ""]),
                where=ep.label,
                provider=ep.provider,
                key_hint=f"{self._conn.api_key_env} or connection.api_key_command",
                model=self._conn.model,
            )
            if failure.retriable:
                return ConnectionFailed(failure.message, failure=failure)
            return ConnectionRejected(failure.message, code=failure.code, failure=failure)
        if isinstance(exc, InvalidURI):
            return ConnectionRejected(f"connection.url is not usable: {ep.label}")
        if isinstance(exc, ssl.SSLCertVerificationError):
            detail = exc.verify_message or "verification failed"
            return ConnectionRejected(
                f"cannot connect to {where}: TLS certificate check failed ({detail})"
            )
        if isinstance(exc, ssl.SSLError):
            return ConnectionFailed(f"cannot connect to {where}: TLS error ({exc.reason})")
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            return ConnectionFailed(
                f"cannot connect to {where}: no answer within {self._open_timeout:g} s"
            )
        if isinstance(exc, socket.gaierror):
            return ConnectionFailed(
                f"cannot connect to {ep.host}: the host name does not resolve "
                "(check connection.url and the network)"
            )
        if isinstance(exc, ConnectionRefusedError):
            return ConnectionFailed(
                f"cannot connect to {where}: connection refused (is the server running?)"
            )
        if isinstance(exc, OSError):
            return ConnectionFailed(f"cannot connect to {where}: {exc.strerror or exc}")
        if isinstance(exc, InvalidHandshake):
            return ConnectionFailed(
                f"cannot connect to {ep.label}: WebSocket handshake failed "
                f"({redact(str(exc), [self.__key or ''])})"
            )
        return ConnectionFailed(
            f"cannot connect to {ep.label}: {type(exc).__name__}: "
            f"{redact(str(exc), [self.__key or ''])}"
        )

    # -- sending -------------------------------------------------------------------------

    async def send(self, event: Mapping[str, Any]) -> None:
        """Write ``event`` to the socket. Raises :class:`ConnectionLost` when the
        connection has ended (the caller keeps the event to send it again),
        ``RuntimeError`` before :meth:`connect` and ``TypeError`` for an event that is
        not JSON."""
        ws = self._ws
        if self._ended is not None or self._closing:
            raise ConnectionLost(str(self._ended or "the connection is closed"))
        if ws is None:
            raise RuntimeError("send() before connect()")
        text = json.dumps(event, separators=(",", ":"))
        try:
            await ws.send(text)
        except ConnectionClosed as exc:
            raise ConnectionLost(str(self._ended or f"the connection dropped ({exc})")) from None
        self.sent_events += 1

    # -- receiving -----------------------------------------------------------------------

    def __aiter__(self) -> Connection:
        return self

    async def __anext__(self) -> dict[str, Any]:
        """The next server event. Ends quietly after :meth:`close`; raises
        :class:`FatalServerError` or :class:`ConnectionLost` when the server closes or
        the connection drops."""
        ws = self._ws
        if ws is None or self._closing:
            raise StopAsyncIteration
        if self._pending_first is not None:
            event, self._pending_first = self._pending_first, None
            return event
        if self._ended is not None:
            raise self._ended
        try:
            frame = await ws.recv()
        except ConnectionClosed as exc:
            if self._closing:
                raise StopAsyncIteration from None
            error = self._ended_by(exc)
            raise error from None
        event = self._parse(frame)
        self._note_fatal(event)
        return event

    def _parse(self, frame: str | bytes) -> dict[str, Any]:
        if isinstance(frame, bytes):
            return self._malformed("binary", len(frame))
        try:
            event = json.loads(frame)
        except ValueError:
            return self._malformed("invalid_json", len(frame))
        if not isinstance(event, dict):
            return self._malformed("not_an_object", len(frame))
        if not isinstance(event.get("type"), str):
            return self._malformed("missing_type", len(frame))
        return event

    def _malformed(self, kind: str, size: int) -> dict[str, Any]:
        self.malformed_frames += 1
        log.warning("ignored a malformed frame from the server (%s, %d bytes)", kind, size)
        return {"type": MALFORMED, "kind": kind, "size": size}

    def _note_fatal(self, event: Mapping[str, Any]) -> bool:
        if event.get("type") != "error":
            return False
        error = event.get("error")
        if isinstance(error, Mapping) and error_kind(str(error.get("code") or "")) is not None:
            self._last_fatal_error = dict(error)
            return True
        return False

    def _classify(self, close_code: int | None, reason: str) -> FatalServerError | ConnectionLost:
        return classify_close(
            close_code,
            self._last_fatal_error,
            close_reason=reason,
            key_env=self._conn.api_key_env,
            model=self._conn.model,
        )

    def _ended_by(self, exc: ConnectionClosed) -> FatalServerError | ConnectionLost:
        close_code = exc.rcvd.code if exc.rcvd is not None else None
        reason = exc.rcvd.reason if exc.rcvd is not None else ""
        error = self._classify(close_code, reason)
        self._ended = error
        return error

    # -- closing -------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the socket (idempotent); queued events not yet written are dropped."""
        self._closing = True
        await self._shutdown()

    async def _shutdown(self) -> None:
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._ended is None:
            self._ended = ConnectionLost("the connection is closed")

    async def __aenter__(self) -> Connection:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _body_text(body: bytes | None) -> str:
    return (body or b"")[:4096].decode("utf-8", "replace")


def _websockets_major() -> int:
    try:
        return int(WEBSOCKETS_VERSION.split(".")[0])
    except ValueError:  # pragma: no cover
        return 0
