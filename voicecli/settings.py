"""The settings as typed objects: every key, its default and what it means.

:mod:`voicecli.config` builds a :class:`Config` from files, the environment and the
command line; :mod:`voicecli.config_values` checks and converts each value. The API key
is never part of a :class:`Config`: :mod:`voicecli.secrets` resolves it.
"""

from __future__ import annotations

import dataclasses
import sys
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs

from voicecli.toolconfig import McpServer

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover - exercised on 3.10 only
    pass  # type: ignore[import-not-found,no-redef]

APP_NAME = "voicecli"
DEFAULT_URL = "wss://api.openai.com/v1/realtime"
DEFAULT_MODEL = "gpt-realtime"

Provider = Literal["auto", "openai", "azure", "compatible"]
ResolvedProvider = Literal["openai", "azure", "compatible"]
AuthMode = Literal["auto", "api-key", "bearer"]
AZURE_HOST_SUFFIXES = (
    ".openai.azure.com",
    ".services.ai.azure.com",
    ".cognitiveservices.azure.com",
)
"""Hosts of Azure OpenAI resources (classic, AI Foundry, Cognitive Services)."""
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
"""The voices of the Realtime API (GA). A session.update with another voice is rejected
as a whole, so an unknown voice fails the config check instead."""
AUTO_TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"
"""What ``session.transcription.model = "auto"`` means outside Azure."""
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


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    """The field names of a settings dataclass, in order."""
    return tuple(f.name for f in dataclasses.fields(cls))


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
    (``api-key`` header or an Entra ID token as Bearer, ``/openai/v1/realtime`` path) or
    ``compatible`` (Bearer)."""
    insecure: bool = False
    """Allow unencrypted ``ws://`` to a host other than this machine."""
    api_key_env: str = field(default="OPENAI_API_KEY", metadata=_meta(kind="env_name"))
    """Name of the environment variable holding the API key (the name, not the key)."""
    api_key_command: str | None = None
    """Command printing the API key on stdout (e.g. ``pass show openai``); used when the
    environment variable is unset. Run without a shell, 10 s timeout."""
    auth: AuthMode = "auto"
    """How the key is sent: ``api-key`` header, ``Authorization: Bearer``, or ``auto``:
    Bearer, except on Azure, where only a JWT-shaped key (an Entra ID token) is Bearer."""

    @property
    def resolved_provider(self) -> ResolvedProvider:
        """``provider``, or for ``auto`` what the URL's host says: ``openai`` for
        api.openai.com, ``azure`` for the :data:`AZURE_HOST_SUFFIXES`, else
        ``compatible``."""
        return detect_provider(self.url) if self.provider == "auto" else self.provider


def detect_provider(url: str) -> ResolvedProvider:
    """The provider a URL's host names (see :attr:`ConnectionConfig.resolved_provider`)."""
    host = (urlsplit(url.strip()).hostname or "").lower()
    if host == "api.openai.com":
        return "openai"
    if host.endswith(AZURE_HOST_SUFFIXES):
        return "azure"
    return "compatible"


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

    model: str | None = "auto"
    """Transcription model, or "none" to turn transcription off. ``auto``:
    gpt-4o-mini-transcribe, except on Azure, where the model must be the name of a
    transcription *deployment* of the resource (an unknown one makes Azure reject the
    whole session update): off there unless set."""
    language: str | None = None
    """ISO-639-1 language hint (``en``, ``fr``...), or none to auto-detect."""


@dataclass(frozen=True)
class SessionConfig:
    """``[session]``: the Realtime session sent with ``session.update``."""

    instructions: str | None = None
    """System instructions for the model (none: the server's default)."""
    voice: str = field(default="marin", metadata=_meta(kind="voice"))
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
    mcp_servers: Mapping[str, McpServer] = field(default_factory=lambda: types.MappingProxyType({}))
    """``[mcp_servers.NAME]``: MCP servers whose tools the model may call (toolconfig)."""
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
