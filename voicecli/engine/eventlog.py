"""Make wire events safe to show and store: audio elided, secrets redacted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from voicecli.secrets import known_secrets

# Event types whose base64 payload is audio, and the field that holds it.
_AUDIO_FIELDS = {
    "input_audio_buffer.append": "audio",
    "response.output_audio.delta": "delta",
    "response.audio.delta": "delta",
}
_SECRET_KEYS = frozenset({"api_key", "api-key", "authorization", "client_secret", "token"})
REDACTED = "<redacted>"


def audio_marker(b64: str) -> str:
    """``"<audio N bytes>"`` for a base64 payload, without decoding it."""
    padding = b64[-2:].count("=") if b64 else 0
    size = len(b64) * 3 // 4 - padding
    return f"<audio {size} bytes>"


def sanitize(event: Mapping[str, Any], secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """A copy of ``event`` with audio payloads replaced by a size marker and any
    secret value (``secrets`` and every registered one, such as a hosted MCP server's
    header values), or a key named like one, redacted, at any depth."""
    out = _scrub(event, [s for s in (*secrets, *known_secrets()) if s])
    if not isinstance(out, dict):  # pragma: no cover - _scrub keeps mappings mappings
        return {}
    field = _AUDIO_FIELDS.get(str(event.get("type")))
    if field and isinstance(event.get(field), str):
        out[field] = audio_marker(event[field])
    item = event.get("item")
    if isinstance(item, Mapping) and isinstance(item.get("content"), list):
        for part, src in zip(out["item"]["content"], item["content"], strict=True):
            if isinstance(src, Mapping) and isinstance(src.get("audio"), str):
                part["audio"] = audio_marker(src["audio"])
    return out


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if str(k).lower() in _SECRET_KEYS else _scrub(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    return value
