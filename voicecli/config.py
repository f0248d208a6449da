"""Typed, validated settings: built-in defaults < user config file < ``--config FILE``
< environment (``VOICECLI_URL``, ``VOICECLI_MODEL``) < command-line overrides.

Every problem becomes a :class:`ConfigError` whose message is one line naming where the
value came from (file, environment variable or command line), the key path and what was
expected. The API key is never part of a :class:`Config`: :mod:`voicecli.secrets`
resolves it when a connection needs it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import platformdirs

from voicecli.toolconfig import ToolConfigError, parse_mcp_servers

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,no-redef]

from voicecli.config_values import (
    _SECTIONS,
    _build_keys,
    _build_section,
    _check_keys,
    _choices,
    _is_table,
    _show,
    _validate_partial,
    all_keys,
)
from voicecli.settings import (
    APP_NAME,
    AUTO_TRANSCRIPTION_MODEL,
    AZURE_HOST_SUFFIXES,
    DEFAULT_KEYS,
    DEFAULT_MODEL,
    DEFAULT_URL,
    ENV_MODEL,
    ENV_URL,
    TURN_MODES,
    VOICES,
    AudioConfig,
    AuthMode,
    Config,
    ConfigError,
    ConnectionConfig,
    EchoMode,
    Provider,
    ResolvedProvider,
    SessionConfig,
    StorageConfig,
    Transcription,
    TurnDetection,
    TurnMode,
    VadConfig,
    detect_provider,
)

# --- loading ----------------------------------------------------------------------------


def user_config_path(env: Mapping[str, str] = os.environ) -> Path | None:
    """``$XDG_CONFIG_HOME/voicecli/config.toml`` (platformdirs' config dir when ``env``
    is the real environment); None when ``env`` names no config home."""
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / APP_NAME / "config.toml"
    if env is os.environ:
        return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"
    return None


def _default_data_dir(env: Mapping[str, str]) -> Path | None:
    xdg = env.get("XDG_DATA_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / APP_NAME
    return None


def load_config(
    config_file: Path | str | None = None,
    env: Mapping[str, str] = os.environ,
    overrides: Mapping[str, Any] | None = None,
    *,
    overrides_source: str = "command line",
    user_file: bool = True,
) -> Config:
    """Build the :class:`Config`; raises :class:`ConfigError` (one line) on any problem.

    ``overrides`` is shaped like the TOML file (``{"connection": {"url": ...}}``; dotted
    keys such as ``"connection.url"`` and a top-level ``data_dir`` also work); ``None``
    values are ignored, so unset command-line flags can be passed as they are.
    ``user_file=False`` skips the per-user config file (tests).
    """
    layers: list[tuple[str, dict[str, Any]]] = []
    files: list[Path] = []
    default_data = _default_data_dir(env)
    if default_data is not None:
        layers.append(("environment", {"storage": {"data_dir": str(default_data)}}))
    user = user_config_path(env) if user_file else None
    if user is not None and user.is_file():
        layers.append((str(user), _read_toml(user)))
        files.append(user)
    if config_file is not None:
        path = Path(config_file).expanduser()
        if not path.is_file():
            raise ConfigError(str(path), "", "no such config file")
        layers.append((str(path), _read_toml(path)))
        files.append(path)
    env_layer: dict[str, Any] = {}
    if env.get(ENV_URL):
        env_layer.setdefault("connection", {})["url"] = env[ENV_URL]
    if env.get(ENV_MODEL):
        env_layer.setdefault("connection", {})["model"] = env[ENV_MODEL]
    if env_layer:
        layers.append((f"environment ({ENV_URL}/{ENV_MODEL})", env_layer))
    if overrides:
        layers.append((overrides_source, _normalize_overrides(overrides)))

    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, data in layers:
        _check_keys(data, source)
        _merge(merged, data, source, origin, ())
    return _build(merged, origin, tuple(files), [source for source, _ in layers])


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "", "not UTF-8 text") from None
    try:
        data: dict[str, Any] = tomllib.loads(text)
        return data
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"TOML syntax error: {exc}") from None


def _normalize_overrides(overrides: Mapping[str, Any], *, top: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        # a top-level ``data_dir`` is short for storage.data_dir (the --data-dir flag)
        path = ["storage", "data_dir"] if top and key == "data_dir" else str(key).split(".")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        if isinstance(value, Mapping):
            nested = _normalize_overrides(value, top=False)
            if nested:
                existing = node.setdefault(path[-1], {})
                if isinstance(existing, dict):
                    existing.update(nested)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            node[path[-1]] = _plain(value)
        else:
            node[path[-1]] = value
    return out


def _plain(value: Any) -> Any:
    """A settings dataclass (or mapping) as plain TOML-shaped data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return list(value)
    if value is None:
        return "none"
    if isinstance(value, Path):
        return str(value)
    return value


def _merge(
    into: dict[str, Any],
    data: Mapping[str, Any],
    source: str,
    origin: dict[str, str],
    prefix: tuple[str, ...],
) -> None:
    for key, value in data.items():
        path = (*prefix, key)
        dotted = ".".join(path)
        if isinstance(value, Mapping) and _is_table(path):
            sub = into.setdefault(key, {})
            if not isinstance(sub, dict):  # pragma: no cover - _check_keys forbids it
                sub = into[key] = {}
            _merge(sub, value, source, origin, path)
        else:
            into[key] = value
            origin[dotted] = source


def _build(
    merged: dict[str, Any], origin: dict[str, str], files: tuple[Path, ...], order: list[str]
) -> Config:
    def src(path: str) -> str:
        return origin.get(path, "defaults")

    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        sections[name] = _build_section(cls, merged.get(name, {}), (name,), src)

    session: SessionConfig = sections["session"]
    turn_mode = _resolve_turn_mode(merged, session, src, order)
    if turn_mode in ("server-vad", "semantic-vad"):
        wanted: Literal["server_vad", "semantic_vad"] = (
            "server_vad" if turn_mode == "server-vad" else "semantic_vad"
        )
        if session.turn_detection.type != wanted:
            session = dataclasses.replace(
                session, turn_detection=dataclasses.replace(session.turn_detection, type=wanted)
            )
            sections["session"] = session

    keys = _build_keys(merged.get("keys", {}), src)
    profiles: dict[str, Mapping[str, Any]] = {}
    for name, prof in (merged.get("profiles") or {}).items():
        profiles[str(name)] = types.MappingProxyType(
            _validate_partial(SessionConfig, prof, ("profiles", str(name)), src)
        )
    try:
        mcp_servers = parse_mcp_servers(merged.get("mcp_servers"))
    except ToolConfigError as exc:
        server = ".".join(exc.key.split(".")[:2])  # the file that set this server's keys
        where = next((s for k, s in origin.items() if f"{k}.".startswith(f"{server}.")), "?")
        raise ConfigError(where, exc.key, exc.expected) from None
    return Config(
        connection=sections["connection"],
        session=session,
        audio=sections["audio"],
        vad=sections["vad"],
        turn_mode=turn_mode,
        keys=types.MappingProxyType(keys),
        profiles=types.MappingProxyType(profiles),
        storage=sections["storage"],
        mcp_servers=mcp_servers,
        files=files,
    )


def _resolve_turn_mode(
    merged: dict[str, Any], session: SessionConfig, src: Any, order: list[str]
) -> TurnMode:
    """``turn_mode``, or the mode ``session.turn_detection.type`` implies; when both are
    set and disagree, the one from the later source wins (same source: an error)."""
    td = (merged.get("session") or {}).get("turn_detection", {})
    td_type = td.get("type") if isinstance(td, Mapping) else None
    implied: TurnMode = {"server_vad": "server-vad", "semantic_vad": "semantic-vad"}.get(
        session.turn_detection.type, "local-vad"
    )  # type: ignore[assignment]
    raw = merged.get("turn_mode")
    if raw is None:
        return "local-vad" if td_type is None else implied
    if raw not in TURN_MODES:
        raise ConfigError(
            src("turn_mode"),
            "turn_mode",
            f"expected one of {_choices(TURN_MODES)}, got {_show(raw)}",
        )
    mode: TurnMode = raw
    server_side = {"server-vad": "server_vad", "semantic-vad": "semantic_vad"}
    if (
        td_type is None
        or mode not in server_side
        or session.turn_detection.type == server_side[mode]
    ):
        return mode
    mode_src, type_src = src("turn_mode"), src("session.turn_detection.type")
    rank = {name: i for i, name in enumerate(order)}
    if rank.get(mode_src, -1) == rank.get(type_src, -1):
        raise ConfigError(
            type_src,
            "session.turn_detection.type",
            f"is {session.turn_detection.type!r} but turn_mode is {mode!r}: set only one of them",
        )
    return mode if rank.get(mode_src, -1) > rank.get(type_src, -1) else implied


__all__ = [
    "APP_NAME",
    "AUTO_TRANSCRIPTION_MODEL",
    "AZURE_HOST_SUFFIXES",
    "DEFAULT_KEYS",
    "DEFAULT_MODEL",
    "DEFAULT_URL",
    "ENV_MODEL",
    "ENV_URL",
    "TURN_MODES",
    "VOICES",
    "AudioConfig",
    "AuthMode",
    "Config",
    "ConfigError",
    "ConnectionConfig",
    "EchoMode",
    "Provider",
    "ResolvedProvider",
    "SessionConfig",
    "StorageConfig",
    "Transcription",
    "TurnDetection",
    "TurnMode",
    "VadConfig",
    "all_keys",
    "detect_provider",
    "load_config",
    "user_config_path",
]
