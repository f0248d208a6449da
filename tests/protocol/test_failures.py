"""The one classification of connection failures (voicecli.protocol.failures)."""

from __future__ import annotations

import json

import pytest

from voicecli.protocol.failures import body_line, close_failure, error_kind, http_failure


def refusal(status: int, body: str = "", provider: str = "openai") -> tuple[str, bool, str]:
    f = http_failure(
        status,
        "Reason",
        body,
        where="wss://x/v1/realtime",
        provider=provider,
        key_hint="KEY",
        model="dep",
    )
    return f.kind, f.retriable, f.message


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 410, 413, 422, 451, 499])
def test_client_errors_are_fatal_except_408_and_429(status: int) -> None:
    kind, retriable, message = refusal(status, "first line\nsecond line")
    assert (kind, retriable) == ("fatal", False)
    assert f"HTTP {status}" in message and "first line" in message
    assert "second line" not in message


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_timeouts_rate_limits_and_server_errors_back_off(status: int) -> None:
    kind, retriable, message = refusal(status)
    assert (kind, retriable) == ("retry", True)
    assert f"HTTP {status}" in message


def test_a_json_body_says_its_code_and_message() -> None:
    body = json.dumps({"error": {"code": "OperationNotSupported", "message": "No  realtime\n"}})
    assert body_line(body) == "OperationNotSupported: No realtime"
    assert body_line(b"") == ""
    assert body_line("\n\n  plain text  \nmore") == "plain text"
    assert len(body_line("x" * 5000)) == 300


def test_azure_404_says_check_the_deployment_name() -> None:
    assert "check the deployment name" in refusal(404, provider="azure")[2]
    assert "'dep'" in refusal(404, provider="azure")[2]
    assert "deployment" not in refusal(404, provider="openai")[2]


def test_close_1001_maximum_duration_is_an_expiry() -> None:
    text = "Your session hit the maximum duration of 60 minutes."
    f = close_failure(1001, text, None)
    assert f.kind == "expired" and text in f.message
    assert close_failure(1000, "", {"code": "session_expired"}).kind == "expired"
    assert close_failure(1001, "going away", None).kind == "retry"
    assert close_failure(None, "", None).kind == "retry"
    assert close_failure(3000, "", None).kind == "fatal"
    assert close_failure(4000, "", None).kind == "fatal"


def test_error_codes() -> None:
    assert error_kind("invalid_api_key") == "fatal"
    assert error_kind("session_expired") == "expired"
    assert error_kind("server_error") is None
    assert error_kind(None) is None
