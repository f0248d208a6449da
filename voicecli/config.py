"""Typed, validated settings: built-in defaults < user config file < ``--config FILE``
< environment (``VOICECLI_URL``, ``VOICECLI_MODEL``) < command-line overrides.

Every problem becomes a :class:`ConfigError` whose message is one line naming where the
value came from (file, environment variable or command line), the key path and what was
expected. The API key is never part of a :class:`Config`: :mod:`voicecli.secrets`
resolves it when a connection needs it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import sys
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import platformdirs

from voicecli.pcm import SAMPLE_RATE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,no-redef]

APP_NAME = "voicecli"
DEFAULT_URL = "wss://api.openai.com/v1/realtime"
DEFAULT_MODEL = "gpt-realtime"

Provider = Literal["auto", "openai", "azure", "compatible"]
TurnMode = Literal["local-vad", "push-to-talk", "server-vad", "semantic-vad"]
EchoMode = Literal["auto", "aec", "guard", "half-duplex", "off"]
TURN_MODES: tuple[TurnMode, ...] = ("local-vad", "push-to-talk", "server-vad", "semantic-vad")

ENV_URL = "VOICECLI_URL"
ENV_MODEL = "VOICECLI_MODEL"


class ConfigError(Exception):
    """A configuration problem, as one line: ``source: key.path: expected ..., got ...``."""

    def __init__(self, source: str, key: str, expected: str) -> None:
        self.source = source
        self.key = key
        self.expected = expected
        parts = [p for p in (source, key) if p]
        message = ": ".join([*parts, expected])
        super().__init__(" ".join(message.split()))  # one line, whatever the input


# --- the settings -----------------------------------------------------------------------


def _meta(**kw: Any) -> dict[str, Any]:
    return kw


@dataclass(frozen=True)
class ConnectionConfig:
    """``[connection]``: where to connect and how to find the API key."""

    url: str = field(default=DEFAULT_URL, metadata=_meta(kind="url"))
    """Realtime endpoint: ``wss://``/``ws://`` (or ``https://``/``http://``, converted).
    An Azure resource may be given as ``https://RESOURCE.openai.azure.com``."""
    model: str = field(default=DEFAULT_MODEL, metadata=_meta(nonempty=True))
    """Model (OpenAI) or deployment name (Azure), sent as ``?model=``."""
    provider: Provider = "auto"
    """``auto`` guesses from the URL host; ``openai`` (Bearer header), ``azure``
    (``api-key`` header, ``/openai/v1/realtime`` path) or ``compatible`` (Bearer)."""
    insecure: bool = False
    """Allow unencrypted ``ws://`` to a host other than this machine."""
    api_key_env: str = field(default="OPENAI_API_KEY", metadata=_meta(kind="env_name"))
    """Name of the environment variable holding the API key (the name, not the key)."""
    api_key_command: str | None = None
    """Command printing the API key on stdout (e.g. ``pass show openai``); used when the
    environment variable is unset. Run without a shell, 10 s timeout."""


@dataclass(frozen=True)
class TurnDetection(Mapping[str, Any]):
    """``[session.turn_detection]``: the server's VAD knobs (server-vad / semantic-vad
    turn modes). Also a read-only mapping of its fields."""

    type: Literal["server_vad", "semantic_vad", "none"] = "server_vad"
    """Server VAD flavour; picks the turn mode when ``turn_mode`` is not set."""
    threshold: float = field(default=0.5, metadata=_meta(min=0.0, max=1.0))
    """server_vad: activation threshold, 0.0-1.0 (higher needs louder speech)."""
    prefix_padding_ms: int = field(default=300, metadata=_meta(min=0, max=10_000))
    """server_vad: audio kept before detected speech, in ms."""
    silence_duration_ms: int = field(default=500, metadata=_meta(min=0, max=10_000))
    """server_vad: silence that ends a turn, in ms."""
    idle_timeout_ms: int | None = field(default=None, metadata=_meta(min=5_000, max=30_000))
    """server_vad: prompt the model after this much silence (5000-30000 ms), or none."""
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    """semantic_vad: how eagerly the model takes its turn."""
    create_response: bool = True
    """Ask for a response automatically when a turn ends."""
    interrupt_response: bool = True
    """Cancel the running response when the user starts speaking."""

    def __getitem__(self, key: str) -> Any:
        if key not in _field_names(type(self)):
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_field_names(type(self)))

    def __len__(self) -> int:
        return len(_field_names(type(self)))


@dataclass(frozen=True)
class Transcription:
    """``[session.transcription]``: transcription of the user's speech."""

    model: str | None = "gpt-4o-mini-transcribe"
    """Transcription model, or "none" to turn transcription off."""
    language: str | None = None
    """ISO-639-1 language hint (``en``, ``fr``...), or none to auto-detect."""


@dataclass(frozen=True)
class SessionConfig:
    """``[session]``: the Realtime session sent with ``session.update``."""

    instructions: str | None = None
    """System instructions for the model (none: the server's default)."""
    voice: str = field(default="marin", metadata=_meta(nonempty=True))
    """Output voice: alloy, ash, ballad, coral, echo, sage, shimmer, verse, marin, cedar.
    Cannot change once the assistant has spoken in a session."""
    output_modalities: tuple[str, ...] = field(
        default=("audio",), metadata=_meta(kind="modalities")
    )
    """``["audio"]`` (speech with a transcript) or ``["text"]``."""
    speed: float = field(default=1.0, metadata=_meta(min=0.25, max=1.5))
    """Speaking speed, 0.25-1.5."""
    max_output_tokens: int | Literal["inf"] | None = field(
        default=None, metadata=_meta(min=1, max=4096)
    )
    """Cap on tokens per response (1-4096 or "inf"); none: the server's default."""
    noise_reduction: Literal["near_field", "far_field"] | None = None
    """Input noise reduction: near_field (headset), far_field (laptop mic) or none."""
    turn_detection: TurnDetection = field(default_factory=TurnDetection)
    """Server-side turn detection settings."""
    transcription: Transcription = field(default_factory=Transcription)
    """User speech transcription settings."""


@dataclass(frozen=True)
class AudioConfig:
    """``[audio]``: devices, echo handling, recording and buffering."""

    input_device: int | str | None = None
    """Microphone: device index or a substring of its name; none: the system default."""
    output_device: int | str | None = None
    """Speaker: device index or a substring of its name; none: the system default."""
    headphones: bool = False
    """Headphones are in use: the mic cannot hear the assistant (echo handling off)."""
    echo_mode: EchoMode = "auto"
    """Without headphones: ``aec`` (WebRTC echo canceller, the ``aec`` extra), ``guard``
    (speech must clearly exceed what playback explains), ``half-duplex`` (mic ignored
    while the assistant speaks), ``off``; ``auto``: ``aec`` when installed, else ``guard``."""
    noise_suppression: bool = True
    """``aec``: the canceller also suppresses steady background noise."""
    high_pass_filter: bool = True
    """``aec``: the canceller also removes rumble below ~80 Hz."""
    auto_gain_control: bool = False
    """``aec``: the canceller also levels the mic's loudness (off: it pumps the level)."""
    echo_margin_db: float = field(default=10.0, metadata=_meta(min=3.0, max=30.0))
    """Guard mode: how many dB the mic must exceed the echo the playback explains (the
    learned echo path) before it counts as the user's voice."""
    record: Path | None = None
    """Also record the conversation to this WAV file; none: no recording."""
    output_latency: float = field(default=0.03, metadata=_meta(min=0.0, max=2.0))
    """Speaker buffer in seconds: audio handed to the device still plays after a
    barge-in, so this bounds how fast the assistant falls silent (0.03: about 50 ms,
    measured). Raise it if the speaker crackles (the status bar counts underruns)."""
    max_backlog_s: float = field(default=2.0, metadata=_meta(min=0.1, max=60.0))
    """When the connection stalls, mic audio older than this many seconds is dropped."""


@dataclass(frozen=True)
class VadConfig:
    """``[vad]``: the local voice activity detector (``local-vad`` turn mode)."""

    aggressiveness: int = field(default=2, metadata=_meta(min=0, max=3))
    """webrtcvad mode 0-3: higher rejects more non-speech."""
    frame_ms: Literal[10, 20, 30] = 30
    """VAD frame length: 10, 20 or 30 ms."""
    start_frames: int = field(default=3, metadata=_meta(min=1, max=50))
    """Consecutive speech frames that start a turn."""
    silence_ms: int = field(default=500, metadata=_meta(min=100, max=10_000))
    """Silence that ends a turn, in ms."""
    prefix_ms: int = field(default=300, metadata=_meta(min=0, max=2_000))
    """Audio kept from before the speech started, in ms."""
    min_turn_ms: int = field(default=100, metadata=_meta(min=0, max=10_000))
    """Shorter bursts are not sent as a turn (the server needs 100 ms at least)."""


@dataclass(frozen=True)
class StorageConfig:
    """``[storage]``: where session histories go."""

    data_dir: Path = field(default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)))
    """Directory for session histories (``sessions/*.jsonl``) and saved transcripts."""
    log_events: bool = False
    """Also keep every wire event (audio elided) in the data directory."""


DEFAULT_KEYS: Mapping[str, str] = types.MappingProxyType(
    {
        "push_to_talk": "space",
        "commit": "enter",
        "cancel": "escape",
        "clear": "ctrl+k",
        "reconnect": "ctrl+r",
        "mute": "m",
        "turn_mode": "v",
        "session": "s",
        "text": "t,slash",
        "log": "l",
        "save": "ctrl+s",
        "quit": "q,ctrl+c",
    }
)
"""Action -> key (comma-separated alternatives, Textual key names)."""


@dataclass(frozen=True)
class Config:
    """All settings. Build with :func:`load_config`; never holds the API key."""

    connection: ConnectionConfig = field(default_factory=ConnectionConfig)
    """``[connection]``."""
    session: SessionConfig = field(default_factory=SessionConfig)
    """``[session]``."""
    audio: AudioConfig = field(default_factory=AudioConfig)
    """``[audio]``."""
    vad: VadConfig = field(default_factory=VadConfig)
    """``[vad]``."""
    turn_mode: TurnMode = "local-vad"
    """Who ends a turn: ``local-vad`` (this machine's VAD), ``push-to-talk``,
    ``server-vad`` or ``semantic-vad`` (the server)."""
    keys: Mapping[str, str] = field(default_factory=lambda: DEFAULT_KEYS)
    """``[keys]``: action -> key."""
    profiles: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: types.MappingProxyType({})
    )
    """``[profiles.NAME]``: named session overrides (``[session]`` keys), validated."""
    storage: StorageConfig = field(default_factory=StorageConfig)
    """``[storage]``."""
    files: tuple[Path, ...] = ()
    """The config files that were read, lowest precedence first."""

    @property
    def data_dir(self) -> Path:
        """Shortcut for ``storage.data_dir``."""
        return self.storage.data_dir

    @property
    def api_key_env(self) -> str:
        """Shortcut for ``connection.api_key_env``."""
        return self.connection.api_key_env

    @property
    def api_key_command(self) -> str | None:
        """Shortcut for ``connection.api_key_command``."""
        return self.connection.api_key_command

    def session_payload(self) -> dict[str, Any]:
        """The GA session object for ``session.update`` (``turn_detection`` is null in
        the client-decides modes, ``local-vad`` and ``push-to-talk``)."""
        s = self.session
        audio_in: dict[str, Any] = {
            "format": {"type": "audio/pcm", "rate": SAMPLE_RATE},
            "noise_reduction": {"type": s.noise_reduction} if s.noise_reduction else None,
            "transcription": _transcription_payload(s.transcription),
            "turn_detection": turn_detection_payload(self.turn_mode, s.turn_detection),
        }
        payload: dict[str, Any] = {"type": "realtime"}
        if s.instructions is not None:
            payload["instructions"] = s.instructions
        payload["output_modalities"] = list(s.output_modalities)
        payload["audio"] = {
            "input": audio_in,
            "output": {
                "format": {"type": "audio/pcm", "rate": SAMPLE_RATE},
                "voice": s.voice,
                "speed": s.speed,
            },
        }
        if s.max_output_tokens is not None:
            payload["max_output_tokens"] = s.max_output_tokens
        return payload


def _transcription_payload(t: Transcription) -> dict[str, Any] | None:
    if not t.model:
        return None
    out: dict[str, Any] = {"model": t.model}
    if t.language:
        out["language"] = t.language
    return out


def turn_detection_payload(mode: TurnMode, td: TurnDetection) -> dict[str, Any] | None:
    """``audio.input.turn_detection`` for a turn mode (None: the client decides turns)."""
    if mode == "server-vad":
        out: dict[str, Any] = {
            "type": "server_vad",
            "threshold": td.threshold,
            "prefix_padding_ms": td.prefix_padding_ms,
            "silence_duration_ms": td.silence_duration_ms,
        }
        if td.idle_timeout_ms is not None:
            out["idle_timeout_ms"] = td.idle_timeout_ms
    elif mode == "semantic-vad":
        out = {"type": "semantic_vad", "eagerness": td.eagerness}
    else:
        return None
    out["create_response"] = td.create_response
    out["interrupt_response"] = td.interrupt_response
    return out


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


def _normalize_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        path = ["storage", "data_dir"] if key == "data_dir" else str(key).split(".")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        if isinstance(value, Mapping):
            nested = _normalize_overrides(value)
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


# --- schema -----------------------------------------------------------------------------

_SECTIONS: dict[str, type[Any]] = {
    "connection": ConnectionConfig,
    "session": SessionConfig,
    "audio": AudioConfig,
    "vad": VadConfig,
    "storage": StorageConfig,
}
_TOP_LEVEL = ("turn_mode", "keys", "profiles", *_SECTIONS)


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _hints(cls: type[Any]) -> dict[str, Any]:
    return get_type_hints(cls)


def _is_table(path: tuple[str, ...]) -> bool:
    """Whether the key path names a table (a section, a nested section, keys, profiles)."""
    if len(path) == 1:
        return path[0] in (*_SECTIONS, "keys", "profiles")
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
    return Config(
        connection=sections["connection"],
        session=session,
        audio=sections["audio"],
        vad=sections["vad"],
        turn_mode=turn_mode,
        keys=types.MappingProxyType(keys),
        profiles=types.MappingProxyType(profiles),
        storage=sections["storage"],
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
