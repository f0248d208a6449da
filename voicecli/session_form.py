"""The session as the editor's flat fields, and back.

The form is a flat mapping of field name -> string (:func:`form_from_session`);
:func:`changes_from_form` turns the fields the user changed into the nested GA session
shape (``turn_detection`` and ``transcription`` whole), so Apply sends only what
changed; :func:`field_for_param` maps a server error's ``param`` to its field. Beside
the session model because it is the session's shape; no UI here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from voicecli.config import VOICES

TD_TYPES = ("none", "server_vad", "semantic_vad")
EAGERNESS = ("auto", "low", "medium", "high")
NOISE = ("off", "near_field", "far_field")
MODALITIES = ("audio", "text")
TEXT_FIELDS = (
    "speed",
    "threshold",
    "prefix_padding_ms",
    "silence_duration_ms",
    "transcription_model",
    "language",
    "max_output_tokens",
)
SELECT_FIELDS = {
    "voice": VOICES,
    "modality": MODALITIES,
    "td_type": TD_TYPES,
    "eagerness": EAGERNESS,
    "noise_reduction": NOISE,
}


def _get(mapping: Mapping[str, Any] | None, *path: str) -> Any:
    cur: Any = mapping
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(value)
    return str(value)


def form_from_session(session: Mapping[str, Any] | None) -> dict[str, str]:
    """The editor's flat field values for a GA session object."""
    td = _get(session, "audio", "input", "turn_detection")
    tr = _get(session, "audio", "input", "transcription")
    nr = _get(session, "audio", "input", "noise_reduction")
    modalities = _get(session, "output_modalities") or ["audio"]
    return {
        "instructions": str(_get(session, "instructions") or ""),
        "voice": str(_get(session, "audio", "output", "voice") or "alloy"),
        "speed": _num(_get(session, "audio", "output", "speed") or 1.0),
        "modality": str(modalities[0]) if modalities else "audio",
        "td_type": str(td.get("type")) if isinstance(td, Mapping) else "none",
        "threshold": _num(_get(td, "threshold") if isinstance(td, Mapping) else None) or "0.5",
        "prefix_padding_ms": _num(_get(td, "prefix_padding_ms")) or "300",
        "silence_duration_ms": _num(_get(td, "silence_duration_ms")) or "500",
        "eagerness": str(_get(td, "eagerness") or "auto"),
        "transcription_model": str(_get(tr, "model") or "") if isinstance(tr, Mapping) else "",
        "language": str(_get(tr, "language") or "") if isinstance(tr, Mapping) else "",
        "noise_reduction": str(_get(nr, "type")) if isinstance(nr, Mapping) else "off",
        "max_output_tokens": str(_get(session, "max_output_tokens") or "inf"),
    }


def validate_form(values: Mapping[str, str]) -> dict[str, str]:
    """Field -> error message for every invalid field (empty when all are valid)."""
    errors: dict[str, str] = {}

    def number(name: str, lo: float, hi: float, integer: bool = False) -> None:
        raw = values.get(name, "").strip()
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            errors[name] = f"must be {'an integer' if integer else 'a number'}"
            return
        if not lo <= value <= hi:
            errors[name] = f"must be between {lo:g} and {hi:g}"

    number("speed", 0.25, 1.5)
    if values.get("td_type") == "server_vad":
        number("threshold", 0.0, 1.0)
        number("prefix_padding_ms", 0, 10_000, integer=True)
        number("silence_duration_ms", 0, 10_000, integer=True)
    if values.get("max_output_tokens", "").strip() != "inf":
        number("max_output_tokens", 1, 4096, integer=True)
    if len(values.get("instructions", "")) > 32_000:
        errors["instructions"] = "too long (32 000 characters at most)"
    lang = values.get("language", "").strip()
    if lang and not (2 <= len(lang) <= 3 and lang.isalpha()):
        errors["language"] = "an ISO-639-1 code such as en or fr"
    if lang and not values.get("transcription_model", "").strip():
        errors["language"] = "needs a transcription model"
    for name, options in SELECT_FIELDS.items():
        if values.get(name) not in options:
            errors[name] = f"one of {', '.join(options)}"
    return errors


def _turn_detection(values: Mapping[str, str], base: Mapping[str, Any] | None) -> Any:
    kind = values["td_type"]
    if kind == "none":
        return None
    td: dict[str, Any] = {"type": kind}
    if kind == "server_vad":
        td["threshold"] = float(values["threshold"])
        td["prefix_padding_ms"] = int(values["prefix_padding_ms"])
        td["silence_duration_ms"] = int(values["silence_duration_ms"])
    else:
        td["eagerness"] = values["eagerness"]
    if isinstance(base, Mapping):
        for key in ("create_response", "interrupt_response"):
            if key in base:
                td[key] = base[key]
    return td


def changes_from_form(
    initial: Mapping[str, str],
    values: Mapping[str, str],
    session: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The nested session fields whose form value changed (call after validation)."""
    changed = {k for k in values if values[k] != initial.get(k)}
    out: dict[str, Any] = {}
    audio_in: dict[str, Any] = {}
    audio_out: dict[str, Any] = {}
    if "instructions" in changed:
        out["instructions"] = values["instructions"]
    if "modality" in changed:
        out["output_modalities"] = [values["modality"]]
    if "max_output_tokens" in changed:
        raw = values["max_output_tokens"].strip()
        out["max_output_tokens"] = "inf" if raw == "inf" else int(raw)
    if "voice" in changed:
        audio_out["voice"] = values["voice"]
    if "speed" in changed:
        audio_out["speed"] = float(values["speed"])
    kind = values["td_type"]
    relevant = {"td_type"} | (
        {"threshold", "prefix_padding_ms", "silence_duration_ms"}
        if kind == "server_vad"
        else {"eagerness"}
        if kind == "semantic_vad"
        else set()
    )
    if changed & relevant:
        base = _get(session, "audio", "input", "turn_detection")
        audio_in["turn_detection"] = _turn_detection(values, base)
    if changed & {"transcription_model", "language"}:
        model = values["transcription_model"].strip()
        if model:
            tr: dict[str, Any] = {"model": model}
            if values["language"].strip():
                tr["language"] = values["language"].strip()
            audio_in["transcription"] = tr
        else:
            audio_in["transcription"] = None
    if "noise_reduction" in changed:
        nr = values["noise_reduction"]
        audio_in["noise_reduction"] = None if nr == "off" else {"type": nr}
    if audio_in or audio_out:
        out["audio"] = {}
        if audio_in:
            out["audio"]["input"] = audio_in
        if audio_out:
            out["audio"]["output"] = audio_out
    return out


def profile_session(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A config profile (flat ``[profiles.x]`` keys or GA-shaped) as a GA session."""
    session: dict[str, Any] = {}
    audio_in: dict[str, Any] = {}
    audio_out: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in ("voice", "speed"):
            audio_out[key] = value
        elif key in ("turn_detection", "transcription"):
            audio_in[key] = value
        elif key == "noise_reduction":
            audio_in[key] = {"type": value} if isinstance(value, str) else value
        elif key == "audio" and isinstance(value, Mapping):
            audio_in.update(value.get("input") or {})
            audio_out.update(value.get("output") or {})
        else:
            session[key] = value
    session["audio"] = {"input": audio_in, "output": audio_out}
    return session


FIELD_FOR_PARAM = (
    ("voice", "voice"),
    ("speed", "speed"),
    ("instructions", "instructions"),
    ("output_modalities", "modality"),
    ("threshold", "threshold"),
    ("prefix_padding_ms", "prefix_padding_ms"),
    ("silence_duration_ms", "silence_duration_ms"),
    ("eagerness", "eagerness"),
    ("turn_detection", "td_type"),
    ("language", "language"),
    ("transcription", "transcription_model"),
    ("noise_reduction", "noise_reduction"),
    ("max_output_tokens", "max_output_tokens"),
)


def field_for_param(param: str | None) -> str | None:
    """The editor field a server error's ``param`` (``session.audio.output.voice``) names."""
    if not param:
        return None
    for needle, name in FIELD_FOR_PARAM:
        if needle in param:
            return name
    return None
