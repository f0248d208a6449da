"""Azure OpenAI (issue 13.1/13.2): its hosts, how the key is sent (api-key or an Entra ID
token as Bearer), transcription off unless set, the retired preview URL, voices."""

from __future__ import annotations

import base64
import json

import pytest

from voicecli.config import ConfigError, ConnectionConfig, load_config
from voicecli.connection import auth_headers, build_endpoint, looks_like_jwt, preview_notice
from voicecli.session import SessionModel

KEY = "0123456789abcdef0123456789abcdef"


def jwt() -> str:
    def part(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return (
        f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part({'aud': 'cognitiveservices'})}.c2lnbmF0dXJl"
    )


@pytest.mark.parametrize(
    "host",
    ["res.openai.azure.com", "res.services.ai.azure.com", "res.cognitiveservices.azure.com"],
)
def test_azure_hosts(host: str) -> None:
    ep = build_endpoint(ConnectionConfig(url=f"https://{host}", model="my-realtime"))
    assert ep.provider == "azure"
    assert ep.url == f"wss://{host}/openai/v1/realtime?model=my-realtime"


def test_auth_modes() -> None:
    azure = build_endpoint(ConnectionConfig(url="https://res.openai.azure.com", model="d"))
    openai = build_endpoint(ConnectionConfig())
    token = jwt()
    assert looks_like_jwt(token) and not looks_like_jwt(KEY) and not looks_like_jwt("sk-a.b.c")
    assert auth_headers(azure, KEY) == {"api-key": KEY}
    assert auth_headers(azure, token) == {"Authorization": f"Bearer {token}"}
    assert auth_headers(azure, KEY, "bearer") == {"Authorization": f"Bearer {KEY}"}
    assert auth_headers(openai, KEY) == {"Authorization": f"Bearer {KEY}"}
    assert auth_headers(openai, KEY, "api-key") == {"api-key": KEY}


def test_auth_is_a_config_key() -> None:
    config = load_config(config_file=None, env={}, overrides={"connection": {"auth": "bearer"}})
    assert config.connection.auth == "bearer"
    with pytest.raises(ConfigError, match=r"connection\.auth"):
        load_config(config_file=None, env={}, overrides={"connection": {"auth": "token"}})


def test_retired_preview_url_gets_a_notice() -> None:
    preview = (
        "https://res.openai.azure.com/openai/realtime?api-version=2024-10-01-preview&deployment=d"
    )
    ep = build_endpoint(ConnectionConfig(url=preview))
    notice = preview_notice(ep)
    assert notice is not None and "/openai/v1/realtime" in notice
    assert (
        preview_notice(build_endpoint(ConnectionConfig(url="https://res.openai.azure.com"))) is None
    )


def transcription(url: str, **session: object) -> object:
    config = load_config(
        config_file=None, env={}, overrides={"connection": {"url": url}, "session": session}
    )
    return SessionModel(config).payload()["audio"]["input"]["transcription"]


def test_transcription_is_off_on_azure_unless_set() -> None:
    azure = "https://res.openai.azure.com"
    assert transcription(azure) is None
    assert transcription("wss://api.openai.com/v1/realtime") == {"model": "gpt-4o-mini-transcribe"}
    assert transcription(azure, transcription={"model": "my-transcribe"}) == {
        "model": "my-transcribe"
    }


def test_an_unknown_voice_fails_the_config_check_with_the_voices() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(config_file=None, env={}, overrides={"session": {"voice": "nova"}})
    assert "session.voice" in str(excinfo.value)
    assert "marin" in str(excinfo.value) and "cedar" in str(excinfo.value)
