"""The GA session object: defaults, validation and merging of ``session.update``
and of ``response.create`` overrides. Pure functions, no I/O."""

from __future__ import annotations

import copy
import time
from collections.abc import Collection, Mapping
from typing import Any

from voicecli.server.errors import (
    ProtocolError,
    invalid_type,
    invalid_value,
    missing_parameter,
    unknown_parameter,
)
from voicecli.server.synth import new_id

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
MODEL_PREFIXES = ("gpt-realtime", "gpt-4o-realtime", "gpt-4o-mini-realtime")
DEFAULT_INSTRUCTIONS = (
    "You are the local voicecli test server. You cannot understand speech: "
    "you play back what you heard and describe it."
)
SESSION_LIFETIME_S = 3600

SERVER_VAD_DEFAULTS: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
SEMANTIC_VAD_DEFAULTS: dict[str, Any] = {
    "type": "semantic_vad",
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}
PCM_FORMAT: dict[str, Any] = {"type": "audio/pcm", "rate": 24000}


def model_is_known(model: str | None) -> bool:
    return bool(model) and any(str(model).startswith(p) for p in MODEL_PREFIXES)


def default_session(model: str, expires_in_s: float = SESSION_LIFETIME_S) -> dict[str, Any]:
    """The full effective session the live service reports in ``session.created``."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time() + expires_in_s),
        "audio": {
            "input": {
                "format": dict(PCM_FORMAT),
                "noise_reduction": None,
                "transcription": None,
                "turn_detection": dict(SERVER_VAD_DEFAULTS),
            },
            "output": {"format": dict(PCM_FORMAT), "voice": "marin", "speed": 1.0},
        },
        "include": None,
    }


# --- small checkers ---------------------------------------------------------------------


def _obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_type(path, "an object", value)
    return value


def _keys(value: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> None:
    for key in value:
        if key not in allowed:
            raise unknown_parameter(f"{path}.{key}")


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise invalid_type(path, "a string", value)
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise invalid_type(path, "a boolean", value)
    return value


def _int(value: Any, path: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_type(path, "an integer", value)
    if not lo <= value <= hi:
        raise invalid_value(path, f"expected a value between {lo} and {hi}, got {value}.")
    return value


def _num(value: Any, path: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid_type(path, "a number", value)
    if not lo <= value <= hi:
        raise invalid_value(path, f"expected a value between {lo} and {hi}, got {value}.")
    return float(value)


def _enum(value: Any, path: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        listed = ", ".join(f"'{c}'" for c in choices)
        raise invalid_value(path, f"'{value}'. Supported values are: {listed}.")
    return str(value)


# --- pieces shared by session.update and response.create ---------------------------------


def check_modalities(value: Any, path: str) -> list[str]:
    if not isinstance(value, list):
        raise invalid_type(path, "an array", value)
    if value not in (["audio"], ["text"]):
        raise invalid_value(path, "expected ['audio'] or ['text'] (one modality).")
    return list(value)


def check_format(value: Any, path: str) -> dict[str, Any]:
    fmt = _obj(value, path)
    _keys(fmt, ("type", "rate"), path)
    kind = _enum(fmt.get("type"), f"{path}.type", ("audio/pcm", "audio/pcmu", "audio/pcma"))
    if kind != "audio/pcm":
        raise invalid_value(
            f"{path}.type", f"'{kind}': the local voicecli server speaks only 'audio/pcm'."
        )
    if "rate" in fmt and fmt["rate"] != 24000:
        raise invalid_value(f"{path}.rate", f"{fmt['rate']}. Only 24000 is supported.")
    return dict(PCM_FORMAT)


def check_voice(value: Any, path: str) -> str:
    return _enum(value, path, VOICES)


def check_max_output_tokens(value: Any, path: str) -> int | str:
    if value == "inf":
        return "inf"
    return _int(value, path, 1, 4096)


_MCP_KEYS = (
    "type",
    "server_label",
    "server_url",
    "server_description",
    "headers",
    "authorization",
    "allowed_tools",
    "require_approval",
)


def _check_mcp_tool(tool: dict[str, Any], path: str) -> dict[str, Any]:
    """A hosted MCP server (``{"type": "mcp", ...}``); the local server only emulates
    calling it (:mod:`voicecli.server.hostedmcp`)."""
    _keys(tool, _MCP_KEYS, path)
    for key in ("server_label", "server_url"):
        if key not in tool:
            raise missing_parameter(f"{path}.{key}")
        _str(tool[key], f"{path}.{key}")
    if "headers" in tool and tool["headers"] is not None:
        for name, value in _obj(tool["headers"], f"{path}.headers").items():
            _str(value, f"{path}.headers.{name}")
    approval = tool.get("require_approval")
    if isinstance(approval, str):
        _enum(approval, f"{path}.require_approval", ("always", "never"))
    elif approval is not None:
        _obj(approval, f"{path}.require_approval")
    return copy.deepcopy(tool)


def check_tools(value: Any, path: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise invalid_type(path, "an array", value)
    tools = []
    for i, raw in enumerate(value):
        p = f"{path}[{i}]"
        tool = _obj(raw, p)
        if isinstance(tool, dict) and tool.get("type") == "mcp":
            tools.append(_check_mcp_tool(tool, p))
            continue
        _keys(tool, ("type", "name", "description", "parameters"), p)
        _enum(tool.get("type"), f"{p}.type", ("function", "mcp"))
        if "name" not in tool:
            raise missing_parameter(f"{p}.name")
        _str(tool["name"], f"{p}.name")
        if "description" in tool:
            _str(tool["description"], f"{p}.description")
        if "parameters" in tool:
            _obj(tool["parameters"], f"{p}.parameters")
        tools.append(copy.deepcopy(tool))
    return tools


def check_tool_choice(value: Any, path: str) -> str | dict[str, Any]:
    if isinstance(value, str):
        return _enum(value, path, ("auto", "none", "required"))
    choice = _obj(value, path)
    _keys(choice, ("type", "name"), path)
    _enum(choice.get("type"), f"{path}.type", ("function",))
    _str(choice.get("name"), f"{path}.name")
    return {"type": "function", "name": choice["name"]}


def _check_turn_detection(value: Any, path: str) -> dict[str, Any] | None:
    """``turn_detection`` replaces the session's as a whole object: ``type`` is required
    (it is the discriminator of the SDK's ``RealtimeAudioInputTurnDetection`` union, and
    the live service rejects an object without it), and fields left out take their
    defaults, not the session's previous values (``/work/shared/realtime-protocol.md``:
    "replaced as whole objects")."""
    if value is None:
        return None
    td = _obj(value, path)
    if "type" not in td:
        raise missing_parameter(f"{path}.type")
    kind = _enum(td.get("type"), f"{path}.type", ("server_vad", "semantic_vad"))
    if kind == "server_vad":
        _keys(td, tuple(SERVER_VAD_DEFAULTS), path)
        base = SERVER_VAD_DEFAULTS
    else:
        _keys(td, tuple(SEMANTIC_VAD_DEFAULTS), path)
        base = SEMANTIC_VAD_DEFAULTS
    out = dict(base)
    for key, val in td.items():
        p = f"{path}.{key}"
        if key == "threshold":
            out[key] = _num(val, p, 0.0, 1.0)
        elif key in ("prefix_padding_ms", "silence_duration_ms"):
            out[key] = _int(val, p, 0, 10_000)
        elif key == "idle_timeout_ms":
            out[key] = None if val is None else _int(val, p, 5_000, 30_000)
        elif key in ("create_response", "interrupt_response"):
            out[key] = _bool(val, p)
        elif key == "eagerness":
            out[key] = _enum(val, p, ("low", "medium", "high", "auto"))
    return out


def _check_transcription_model(model: str, path: str, deployments: Collection[str] | None) -> None:
    """In Azure mode (``deployments`` given) the model must name a transcription
    deployment of the resource: Azure OpenAI resolves ``transcription.model`` as a
    deployment name and rejects the whole ``session.update`` when there is none
    (``/work/shared/realtime-protocol.md``, Azure)."""
    if deployments is not None and model not in deployments:
        known = ", ".join(f"'{d}'" for d in deployments) or "none"
        raise invalid_value(
            path,
            f"'{model}'. The API deployment for this resource does not exist "
            f"(transcription deployments: {known}).",
        )


def _check_audio_input(
    value: Any, current: dict[str, Any], path: str, deployments: Collection[str] | None
) -> None:
    ai = _obj(value, path)
    _keys(ai, ("format", "noise_reduction", "transcription", "turn_detection"), path)
    for key, val in ai.items():
        p = f"{path}.{key}"
        if key == "format":
            current["format"] = check_format(val, p)
        elif key == "noise_reduction":
            if val is None:
                current[key] = None
            else:
                nr = _obj(val, p)
                _keys(nr, ("type",), p)
                current[key] = {
                    "type": _enum(nr.get("type"), f"{p}.type", ("near_field", "far_field"))
                }
        elif key == "transcription":
            if val is None:
                current[key] = None
            else:
                tr = _obj(val, p)
                _keys(tr, ("model", "language", "prompt"), p)
                out: dict[str, Any] = {}
                for k, v in tr.items():
                    out[k] = _str(v, f"{p}.{k}")
                # a whole object: without a model it is refused, never merged
                if not out.get("model"):
                    raise missing_parameter(f"{p}.model")
                _check_transcription_model(out["model"], f"{p}.model", deployments)
                current[key] = out
        elif key == "turn_detection":
            current[key] = _check_turn_detection(val, p)


def _check_audio_output(value: Any, current: dict[str, Any], path: str, voice_locked: bool) -> None:
    ao = _obj(value, path)
    _keys(ao, ("format", "voice", "speed"), path)
    for key, val in ao.items():
        p = f"{path}.{key}"
        if key == "format":
            current["format"] = check_format(val, p)
        elif key == "voice":
            voice = check_voice(val, p)
            if voice_locked and voice != current.get("voice"):
                raise ProtocolError(
                    "cannot_update_voice",
                    "Cannot update a conversation's voice if assistant audio is present.",
                    p,
                )
            current["voice"] = voice
        elif key == "speed":
            current["speed"] = _num(val, p, 0.25, 1.5)


SESSION_FIELDS = (
    "type",
    "model",
    "instructions",
    "output_modalities",
    "audio",
    "tools",
    "tool_choice",
    "max_output_tokens",
    "tracing",
    "truncation",
    "prompt",
    "include",
)


def merge_session_update(
    current: Mapping[str, Any],
    patch: Any,
    *,
    voice_locked: bool,
    transcription_deployments: Collection[str] | None = None,
) -> dict[str, Any]:
    """Return the effective session after ``patch``; raise :class:`ProtocolError` (and
    change nothing: the live service rejects an update as a whole) if any field is
    unknown or invalid. ``transcription_deployments``: Azure mode, the transcription
    models that exist (None: any model)."""
    path = "session"
    s = _obj(patch, path)
    _keys(s, SESSION_FIELDS, path)
    if "type" not in s:
        raise missing_parameter("session.type")
    _enum(s["type"], "session.type", ("realtime",))
    out = copy.deepcopy(dict(current))
    for key, val in s.items():
        p = f"{path}.{key}"
        if key == "model":
            if not model_is_known(_str(val, p)):
                raise invalid_value(p, f"'{val}' is not a realtime model.")
            out[key] = val
        elif key == "instructions":
            out[key] = _str(val, p)
        elif key == "output_modalities":
            out[key] = check_modalities(val, p)
        elif key == "audio":
            audio = _obj(val, p)
            _keys(audio, ("input", "output"), p)
            if "input" in audio:
                _check_audio_input(
                    audio["input"], out["audio"]["input"], f"{p}.input", transcription_deployments
                )
            if "output" in audio:
                _check_audio_output(
                    audio["output"], out["audio"]["output"], f"{p}.output", voice_locked
                )
        elif key == "tools":
            out[key] = check_tools(val, p)
        elif key == "tool_choice":
            out[key] = check_tool_choice(val, p)
        elif key == "max_output_tokens":
            out[key] = check_max_output_tokens(val, p)
        elif key == "tracing":
            if val is not None and val != "auto":
                tr = _obj(val, p)
                _keys(tr, ("workflow_name", "group_id", "metadata"), p)
            out[key] = copy.deepcopy(val)
        elif key == "truncation":
            if isinstance(val, str):
                out[key] = _enum(val, p, ("auto", "disabled"))
            else:
                tr = _obj(val, p)
                _keys(tr, ("type", "retention_ratio"), p)
                _enum(tr.get("type"), f"{p}.type", ("retention_ratio",))
                _num(tr.get("retention_ratio"), f"{p}.retention_ratio", 0.0, 1.0)
                out[key] = dict(tr)
        elif key == "prompt":
            if val is not None:
                pr = _obj(val, p)
                _keys(pr, ("id", "variables", "version"), p)
                _str(pr.get("id"), f"{p}.id")
            out[key] = copy.deepcopy(val)
        elif key == "include":
            if val is not None:
                if not isinstance(val, list):
                    raise invalid_type(p, "an array", val)
                for i, v in enumerate(val):
                    _enum(v, f"{p}[{i}]", ("item.input_audio_transcription.logprobs",))
            out[key] = copy.deepcopy(val)
    return out


RESPONSE_FIELDS = (
    "output_modalities",
    "instructions",
    "audio",
    "tools",
    "tool_choice",
    "max_output_tokens",
    "conversation",
    "input",
    "metadata",
    "prompt",
)


def check_response_overrides(value: Any, *, voice_locked: bool, voice: str) -> dict[str, Any]:
    """Validate ``response.create``'s ``response`` object (input items are checked by the
    caller, which knows the conversation). Returns a shallow copy."""
    path = "response"
    r = _obj(value, path)
    _keys(r, RESPONSE_FIELDS, path)
    out = dict(r)
    for key, val in r.items():
        p = f"{path}.{key}"
        if key == "output_modalities":
            out[key] = check_modalities(val, p)
        elif key == "instructions":
            _str(val, p)
        elif key == "audio":
            audio = _obj(val, p)
            _keys(audio, ("output",), p)
            ao = _obj(audio.get("output", {}), f"{p}.output")
            _keys(ao, ("format", "voice"), f"{p}.output")
            if "format" in ao:
                check_format(ao["format"], f"{p}.output.format")
            if "voice" in ao:
                v = check_voice(ao["voice"], f"{p}.output.voice")
                if voice_locked and v != voice:
                    raise ProtocolError(
                        "cannot_update_voice",
                        "Cannot update a conversation's voice if assistant audio is present.",
                        f"{p}.output.voice",
                    )
        elif key == "tools":
            out[key] = check_tools(val, p)
        elif key == "tool_choice":
            out[key] = check_tool_choice(val, p)
        elif key == "max_output_tokens":
            out[key] = check_max_output_tokens(val, p)
        elif key == "conversation":
            _enum(val, p, ("auto", "none"))
        elif key == "input":
            if not isinstance(val, list):
                raise invalid_type(p, "an array", val)
        elif key == "metadata":
            if val is not None:
                md = _obj(val, p)
                if len(md) > 16:
                    raise invalid_value(p, "at most 16 keys.")
                for k, v in md.items():
                    _str(v, f"{p}.{k}")
        elif key == "prompt" and val is not None:
            _obj(val, p)
    return out
