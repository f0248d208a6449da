"""Checking and converting config values: the schema walked from the settings'
dataclasses, each value coerced to its field's type with one-line errors, unknown keys
with a suggestion, key bindings.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover - exercised on 3.10 only
    pass  # type: ignore[import-not-found,no-redef]

from voicecli.settings import (
    DEFAULT_KEYS,
    VOICES,
    AudioConfig,
    ConfigError,
    ConnectionConfig,
    SessionConfig,
    StorageConfig,
    Transcription,
    VadConfig,
    _field_names,
)

# --- schema -----------------------------------------------------------------------------

_SECTIONS: dict[str, type[Any]] = {
    "connection": ConnectionConfig,
    "session": SessionConfig,
    "audio": AudioConfig,
    "vad": VadConfig,
    "storage": StorageConfig,
}
_TOP_LEVEL = ("turn_mode", "keys", "profiles", "mcp_servers", *_SECTIONS)


def _hints(cls: type[Any]) -> dict[str, Any]:
    return get_type_hints(cls)


def _is_table(path: tuple[str, ...]) -> bool:
    """Whether the key path names a table (a section, a nested section, keys, profiles)."""
    if len(path) == 1:
        return path[0] in (*_SECTIONS, "keys", "profiles", "mcp_servers")
    if path[0] == "mcp_servers":
        return len(path) == 2  # a later file changes one server's keys
    if path[0] == "profiles":
        if len(path) == 2:
            return True
        return _section_table(SessionConfig, path[2:])
    cls = _SECTIONS.get(path[0])
    return cls is not None and _section_table(cls, path[1:])


def _section_table(cls: type[Any], rest: tuple[str, ...]) -> bool:
    for part in rest:
        hint = _hints(cls).get(part)
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            return False
        cls = hint
    return True


def all_keys() -> list[str]:
    """Every settable key path (``profiles`` and ``keys`` entries as ``profiles.NAME``
    and ``keys.ACTION``), in declaration order."""
    out: list[str] = []

    def walk(cls: type[Any], prefix: str) -> None:
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            if isinstance(hint, type) and dataclasses.is_dataclass(hint):
                walk(hint, f"{prefix}{f.name}.")
            else:
                out.append(prefix + f.name)

    for name in _SECTIONS:
        walk(_SECTIONS[name], f"{name}.")
    out.append("turn_mode")
    out.extend(f"keys.{action}" for action in DEFAULT_KEYS)
    out.append("profiles.NAME")
    return out


def _suggest(key: str, prefix: tuple[str, ...], valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {'.'.join((*prefix, close[0]))!r}?"
    # the right name in the wrong section
    for path in all_keys():
        if path.rsplit(".", 1)[-1] == key:
            return f"; did you mean {path!r}?"
    if "key" in key.lower() and "api" in key.lower():
        return (
            "; the API key itself never goes in the config: set connection.api_key_env "
            "or connection.api_key_command"
        )
    return f" (valid: {', '.join(valid)})"


def _check_keys(data: Mapping[str, Any], source: str) -> None:
    """Unknown keys and tables-vs-values mistakes, before anything is merged."""
    for key, value in data.items():
        if key not in _TOP_LEVEL:
            raise ConfigError(source, key, "unknown key" + _suggest(key, (), list(_TOP_LEVEL)))
        if key in _SECTIONS:
            _check_section(_SECTIONS[key], value, source, (key,))
        elif key == "keys":
            _check_key_table(value, source)
        elif key == "profiles":
            if not isinstance(value, Mapping):
                raise ConfigError(source, "profiles", "expected a table of [profiles.NAME]")
            for name, prof in value.items():
                _check_section(SessionConfig, prof, source, ("profiles", str(name)))


def _check_section(cls: type[Any], value: Any, source: str, path: tuple[str, ...]) -> None:
    dotted = ".".join(path)
    if not isinstance(value, Mapping):
        raise ConfigError(source, dotted, f"expected a table [{dotted}], got {_show(value)}")
    hints = _hints(cls)
    names = list(_field_names(cls))
    for key, sub in value.items():
        if key not in hints:
            raise ConfigError(source, f"{dotted}.{key}", "unknown key" + _suggest(key, path, names))
        hint = hints[key]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if isinstance(sub, Mapping):
                _check_section(hint, sub, source, (*path, key))
            elif not (isinstance(sub, str) and sub.lower() == "none"):
                raise ConfigError(
                    source,
                    f"{dotted}.{key}",
                    f"expected a table [{dotted}.{key}], got {_show(sub)}",
                )


def _check_key_table(value: Any, source: str) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(source, "keys", f"expected a table [keys], got {_show(value)}")
    actions = list(DEFAULT_KEYS)
    for action in value:
        if action not in DEFAULT_KEYS:
            raise ConfigError(
                source, f"keys.{action}", "unknown action" + _suggest(action, ("keys",), actions)
            )


_SECRETISH = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|[A-Za-z0-9_\-+/=]{32,})")


def _show(value: Any) -> str:
    """A value for an error message: short, and never something that looks like a key."""
    if isinstance(value, str) and _SECRETISH.search(value):
        return "a value that looks like a secret (not shown)"
    if isinstance(value, Mapping):
        return "a table"
    text = json.dumps(value, default=str) if not isinstance(value, bool) else str(value).lower()
    return text if len(text) <= 60 else text[:57] + "..."


class _Bad(Exception):
    """A value does not fit its field; the message says what was expected."""


def _choices(values: tuple[Any, ...]) -> str:
    return ", ".join(json.dumps(v) for v in values)


def _build_section(cls: type[Any], data: Mapping[str, Any], path: tuple[str, ...], src: Any) -> Any:
    kwargs = _validate_partial(cls, data, path, src, build=True)
    return cls(**kwargs)


def _validate_partial(
    cls: type[Any],
    data: Mapping[str, Any],
    path: tuple[str, ...],
    src: Any,
    build: bool = False,
) -> dict[str, Any]:
    """Validate the keys present in ``data`` against ``cls``; nested dataclasses are built
    (``build``) or validated as partial dicts (profiles)."""
    hints = _hints(cls)
    out: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, value in data.items():
        dotted = ".".join((*path, name))
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if isinstance(value, str) and value.lower() == "none" and hint is Transcription:
                value = {"model": "none"}
            if not isinstance(value, Mapping):
                raise ConfigError(src(dotted), dotted, f"expected a table, got {_show(value)}")
            if build:
                out[name] = _build_section(hint, value, (*path, name), src)
            else:
                out[name] = _validate_partial(hint, value, (*path, name), src)
            continue
        try:
            out[name] = _coerce(value, hint, fields[name].metadata)
        except _Bad as exc:
            raise ConfigError(src(dotted), dotted, f"expected {exc}, got {_show(value)}") from None
    if build:
        for name, hint in hints.items():
            if name not in out and isinstance(hint, type) and dataclasses.is_dataclass(hint):
                out[name] = hint()
    return out


def _coerce(value: Any, hint: Any, meta: Mapping[str, Any]) -> Any:
    """Check (and lightly convert) one value against a field's type; raise _Bad."""
    options = _union_args(hint)
    nullable = type(None) in options
    options = [o for o in options if o is not type(None)]
    if nullable and isinstance(value, str) and value.strip().lower() in ("none", ""):
        return None
    kind = meta.get("kind")
    for option in options:
        try:
            return _coerce_one(value, option, meta, kind)
        except _Bad:
            continue
    expected = " or ".join(_describe(o, meta, kind) for o in options)
    if nullable:
        expected += ' or "none"'
    raise _Bad(expected)


def _union_args(hint: Any) -> list[Any]:
    origin = get_origin(hint)
    if origin is Union or (sys.version_info >= (3, 10) and origin is types.UnionType):
        out: list[Any] = []
        for arg in get_args(hint):
            out.extend(_union_args(arg))
        return out
    return [hint]


def _coerce_one(value: Any, option: Any, meta: Mapping[str, Any], kind: Any) -> Any:
    if get_origin(option) is Literal:
        allowed = get_args(option)
        if value in allowed and type(value) in {type(a) for a in allowed}:
            return value
        raise _Bad
    if option is bool:
        if isinstance(value, bool):
            return value
        raise _Bad
    if option is int:
        if isinstance(value, bool):
            raise _Bad
        if (
            isinstance(value, str)
            and kind is None
            and value.strip().isdigit()
            and "min" not in meta
        ):
            return int(value)  # a device index typed on the command line
        if not isinstance(value, int):
            raise _Bad
        _check_range(value, meta)
        return value
    if option is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad
        _check_range(float(value), meta)
        return float(value)
    if option is str:
        if not isinstance(value, str):
            raise _Bad
        if meta.get("nonempty") and not value.strip():
            raise _Bad
        if kind == "url":
            _check_url(value)
        elif kind == "env_name" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise _Bad
        if kind == "voice":
            if value.strip().lower() not in VOICES:
                raise _Bad
            return value.strip().lower()
        return value
    if option is Path:
        if not isinstance(value, (str, Path)) or not str(value).strip():
            raise _Bad
        return Path(os.path.expanduser(str(value)))
    if get_origin(option) is tuple and kind == "modalities":
        items = [value] if isinstance(value, str) else value
        if isinstance(items, (list, tuple)) and len(items) == 1 and items[0] in ("audio", "text"):
            return (items[0],)
        raise _Bad
    raise _Bad  # pragma: no cover - every field type is handled above


def _check_range(value: float, meta: Mapping[str, Any]) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _Bad


def _check_url(value: str) -> None:
    m = re.fullmatch(r"(wss|ws|https|http)://([^/?#\s]+)([^\s]*)", value.strip(), re.IGNORECASE)
    if not m:
        raise _Bad


def _describe(option: Any, meta: Mapping[str, Any], kind: Any) -> str:
    lo, hi = meta.get("min"), meta.get("max")
    bounds = f" from {lo} to {hi}" if lo is not None and hi is not None else ""
    if get_origin(option) is Literal:
        allowed = get_args(option)
        return _choices(allowed) if len(allowed) == 1 else "one of " + _choices(allowed)
    if option is bool:
        return "true or false"
    if option is int:
        return "an integer" + bounds
    if option is float:
        return "a number" + bounds
    if kind == "url":
        return "a ws://, wss://, http:// or https:// URL"
    if kind == "env_name":
        return "the NAME of an environment variable (like OPENAI_API_KEY), not the key itself"
    if kind == "modalities":
        return '["audio"] or ["text"]'
    if kind == "voice":
        return "a voice the Realtime API knows: " + ", ".join(VOICES)
    if option is Path:
        return "a file or directory path"
    if option is str:
        return "a non-empty string" if meta.get("nonempty") else "a string"
    return str(option)  # pragma: no cover


_KEY_RE = re.compile(r"((ctrl|shift|alt|meta|super)\+)*([a-z0-9_]+|[A-Z]|[^\sA-Za-z0-9,+])")


def _build_keys(data: Mapping[str, Any], src: Any) -> dict[str, str]:
    keys = dict(DEFAULT_KEYS)
    for action, value in data.items():
        dotted = f"keys.{action}"
        parts = [p.strip() for p in value.split(",")] if isinstance(value, str) else []
        if not parts or not all(_KEY_RE.fullmatch(p) for p in parts):
            raise ConfigError(
                src(dotted),
                dotted,
                'expected a key name like "space", "m" or "ctrl+k" (comma-separated '
                f"alternatives), got {_show(value)}",
            )
        keys[str(action)] = ",".join(parts)
    owner: dict[str, str] = {}
    for action, value in keys.items():
        for key in value.split(","):
            if key in owner:
                first, second = owner[key], action
                # name the binding the user set (the other may be a default)
                culprit = second if f"keys.{second}" in _origins_of(data) else first
                other = first if culprit == second else second
                raise ConfigError(
                    src(f"keys.{culprit}"),
                    f"keys.{culprit}",
                    f"{key!r} is already bound to {other!r}: choose another key",
                )
            owner[key] = action
    return keys


def _origins_of(data: Mapping[str, Any]) -> set[str]:
    return {f"keys.{a}" for a in data}
