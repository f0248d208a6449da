"""The error a client event can provoke, in the shape the live service sends."""

from __future__ import annotations

import json
from typing import Any


class ProtocolError(Exception):
    """A rejected client event: becomes one ``error`` server event; the session goes on."""

    def __init__(
        self,
        code: str,
        message: str,
        param: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.error_type = error_type

    def payload(self, client_event_id: str | None) -> dict[str, Any]:
        return {
            "type": self.error_type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
            "event_id": client_event_id,
        }


def unknown_parameter(param: str) -> ProtocolError:
    return ProtocolError("unknown_parameter", f"Unknown parameter: '{param}'.", param)


def invalid_value(param: str, message: str) -> ProtocolError:
    return ProtocolError("invalid_value", f"Invalid value for '{param}': {message}", param)


def invalid_type(param: str, expected: str, value: Any) -> ProtocolError:
    got = type(value).__name__ if value is not None else "null"
    return ProtocolError(
        "invalid_type",
        f"Invalid type for '{param}': expected {expected}, but got {got} instead.",
        param,
    )


def missing_parameter(param: str) -> ProtocolError:
    return ProtocolError(
        "missing_required_parameter", f"Missing required parameter: '{param}'.", param
    )


HANDSHAKE_REFUSALS: dict[int, tuple[str, str]] = {
    400: (
        "OperationNotSupported",
        "The realtime operation does not work with the specified model. Please choose a "
        "different model and try again.",
    ),
    401: (
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
        "provide a valid key for an active subscription and use a correct regional API "
        "endpoint for your resource.",
    ),
    403: ("Forbidden", "The principal does not have permission to use this resource."),
    404: (
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment "
        "within the last 5 minutes, please wait a moment and try again.",
    ),
}
"""Bodies of an HTTP refusal at the handshake, as Azure OpenAI words them (its JSON
``{"error": {"code", "message"}}`` shape; the messages are its documented error texts,
shortened). Other statuses get a generic body of the same shape."""


def handshake_refusal_body(status: int) -> str:
    """The JSON body refusing a handshake with ``status`` (see :data:`HANDSHAKE_REFUSALS`)."""
    code, message = HANDSHAKE_REFUSALS.get(status, (str(status), "Request refused."))
    return json.dumps({"error": {"code": code, "message": message}}) + "\n"
