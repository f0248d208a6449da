"""Why a connection failed, and what to do about it: the one classification.

Every way a Realtime connection can end or fail to open is sorted here into one of three
kinds, and both the connection (which raises) and the supervisor (which retries, rotates
or gives up) read the same answer:

* ``"retry"``: worth another attempt after a backoff (refused, DNS, timeout, a drop,
  HTTP 408/429/5xx);
* ``"fatal"``: the same settings will fail again (HTTP 400/401/403/404 and every other
  4xx, a bad key, an unknown model, a refused protocol, an unusable URL);
* ``"expired"``: the session reached the server's time limit; a new connection starts a
  new session (rotate and replay), nothing is wrong.

Sans-I/O: plain values in, a :class:`Failure` out. The facts come from the live
service as documented in ``/work/shared/realtime-protocol.md``: close 3000 for a bad key,
4000 for a bad model, expiry as a ``session_expired`` error or a close 1001 whose reason
says "maximum duration", Azure answering 404 for a deployment that does not exist and
400 (``OperationNotSupported``) for one whose model cannot do realtime.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

FailureKind = Literal["retry", "fatal", "expired"]

FATAL_CLOSE_CODES: Mapping[int, str] = {3000: "invalid_api_key", 4000: "model_not_found"}
"""Close codes after which reconnecting with the same settings cannot help."""
FATAL_ERROR_CODES = frozenset(
    {"invalid_api_key", "missing_model", "model_not_found", "beta_api_shape_disabled"}
)
"""``error`` codes the server sends just before it closes for good."""
EXPIRY_ERROR_CODES = frozenset({"session_expired"})
"""``error`` codes that mean the session's time is up (rotate, do not fail)."""
EXPIRY_CLOSE_TEXT = "maximum duration"
"""What the live service's close reason says at expiry ("Your session hit the maximum
duration of 60 minutes.", close 1001)."""
RETRIED_4XX = frozenset({408, 429})
"""The only 4xx answers worth retrying: a timeout and a rate limit."""
BODY_CHARS = 300
"""How much of a refusal's body a message quotes."""


@dataclass(frozen=True, slots=True)
class Failure:
    """One classified failure: its kind, the line to show the user, and what it was
    classified from (an error ``code``, an HTTP ``status``, a ``close_code``)."""

    kind: FailureKind
    message: str
    code: str | None = None
    status: int | None = None
    close_code: int | None = None

    @property
    def retriable(self) -> bool:
        return self.kind == "retry"


def error_kind(code: str | None) -> FailureKind | None:
    """What an ``error`` event's code means for the connection: ``"fatal"`` (the server
    closes next), ``"expired"``, or None: report it and go on (the live service keeps a
    session open after most errors)."""
    if code in FATAL_ERROR_CODES:
        return "fatal"
    if code in EXPIRY_ERROR_CODES:
        return "expired"
    return None


def body_line(body: bytes | str | None) -> str:
    """The part of an HTTP refusal's body worth showing: the ``error.message`` (and
    code) of a JSON body, else its first non-empty line; at most :data:`BODY_CHARS`."""
    if not body:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, Mapping):
        error = parsed.get("error", parsed)
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            code = error.get("code")
            line = f"{code}: {error['message']}" if isinstance(code, str) else error["message"]
            return _cut(" ".join(line.split()))
    for line in text.splitlines():
        if line.strip():
            return _cut(line.strip())
    return ""


def _cut(text: str) -> str:
    return text if len(text) <= BODY_CHARS else text[: BODY_CHARS - 1] + "…"


def http_failure(
    status: int,
    reason: str,
    body: bytes | str | None,
    *,
    where: str,
    provider: str,
    key_hint: str,
    model: str,
) -> Failure:
    """A handshake the server answered with HTTP ``status`` instead of a WebSocket.

    ``where`` names the endpoint (never holding a key), ``key_hint`` where the key comes
    from, ``model`` the model (Azure: deployment) asked for."""
    said = f"{where}: the server answered HTTP {status} {reason}".rstrip()
    detail = body_line(body)
    if detail:
        said += f": {detail}"
    code = f"http_{status}"
    if status in RETRIED_4XX or status >= 500:
        return Failure("retry", said, code=code, status=status)
    hint = ""
    if status == 401:
        hint = f"the server rejected the API key (check {key_hint})"
    elif status == 403:
        hint = "this key may not use this endpoint"
    elif status == 404 and provider == "azure":
        hint = f"check the deployment name (connection.model = {model!r})"
    elif status == 404:
        hint = "no Realtime endpoint there: check connection.url and connection.model"
    elif status == 400 and provider == "azure":
        hint = f"can the deployment {model!r} do realtime?"
    message = f"{said} ({hint})" if hint else said
    return Failure("fatal", message, code=code, status=status)


def close_failure(
    close_code: int | None,
    close_reason: str,
    last_error: Mapping[str, Any] | None,
    *,
    key_hint: str = "OPENAI_API_KEY",
    model: str = "",
) -> Failure:
    """A connection the server closed, or that dropped. ``last_error`` is the ``error``
    object of the last fatal or expiry ``error`` event, if any."""
    code = str((last_error or {}).get("code") or "") or FATAL_CLOSE_CODES.get(close_code or 0)
    where = f"close {close_code}" if close_code in FATAL_CLOSE_CODES else code
    if close_code == 3000 or code == "invalid_api_key":
        return Failure(
            "fatal",
            f"The server rejected the API key ({where}): check {key_hint}",
            code="invalid_api_key",
            close_code=close_code,
        )
    if close_code == 4000 or code in ("missing_model", "model_not_found"):
        what = f"the model {model!r}" if model else "the model"
        return Failure(
            "fatal",
            f"The server rejected {what} ({where}): check connection.model "
            "(on Azure: the deployment name)",
            code=code or "model_not_found",
            close_code=close_code,
        )
    if code == "beta_api_shape_disabled":
        return Failure(
            "fatal",
            "The server refused the beta protocol (beta_api_shape_disabled)",
            code=code,
            close_code=close_code,
        )
    if code in EXPIRY_ERROR_CODES or (
        close_code == 1001 and EXPIRY_CLOSE_TEXT in close_reason.lower()
    ):
        said = f": {close_reason}" if close_reason else ""
        return Failure(
            "expired",
            f"The session reached its time limit{said}; a new connection starts a new session",
            code="session_expired",
            close_code=close_code,
        )
    if close_code is None or close_code == 1006:
        return Failure("retry", "the connection dropped (no close frame)", close_code=close_code)
    said = f": {close_reason}" if close_reason else ""
    if close_code in (1000, 1001):
        return Failure(
            "retry",
            f"the server closed the connection (close {close_code}{said})",
            close_code=close_code,
        )
    return Failure(
        "retry",
        f"the server closed the connection with an error (close {close_code}{said})",
        close_code=close_code,
    )


__all__ = [
    "EXPIRY_ERROR_CODES",
    "FATAL_CLOSE_CODES",
    "FATAL_ERROR_CODES",
    "Failure",
    "FailureKind",
    "body_line",
    "close_failure",
    "error_kind",
    "http_failure",
]
