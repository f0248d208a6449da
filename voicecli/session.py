"""The session model: the one place that knows the Realtime session's shape.

Config, the session editor, the turn-mode key, tool declarations and the server's
``session.updated`` all meet here. The model keeps the *wanted* session (what a
reconnect or a rotation re-sends) and the client's turn mode, derived together so they
never disagree:

* ``turn_detection`` and ``transcription`` are always sent as whole objects (the live
  service rejects a partial one, and a rejected ``session.update`` is rejected as a
  whole);
* the turn mode follows ``turn_detection``: ``server_vad`` / ``semantic_vad`` mean the
  server ends turns, ``None`` one of the client's modes (local VAD or push-to-talk);
* the knobs of both server VAD flavours are kept while another mode is in force, so a
  threshold of 0.7 survives switching away and back, and every reconnect;
* when the server's answer disagrees with what it was asked (an update it rejected), the
  client follows the server's turn detection, so exactly one side commits turns.

Sans-I/O: methods return the ``session`` object to send; the engine sends it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from voicecli.config import AUTO_TRANSCRIPTION_MODEL, Config, TurnMode
from voicecli.pcm import SAMPLE_RATE

CLIENT_MODES: frozenset[TurnMode] = frozenset({"push-to-talk", "local-vad"})
"""Turn modes in which the client decides when a turn ends (no server turn detection)."""
_SERVER_TYPE: dict[TurnMode, str] = {"server-vad": "server_vad", "semantic-vad": "semantic_vad"}
_MODE_OF_TYPE: dict[str, TurnMode] = {v: k for k, v in _SERVER_TYPE.items()}
_KNOBS: dict[str, tuple[str, ...]] = {
    "server_vad": (
        "threshold",
        "prefix_padding_ms",
        "silence_duration_ms",
        "idle_timeout_ms",
        "create_response",
        "interrupt_response",
    ),
    "semantic_vad": ("eagerness", "create_response", "interrupt_response"),
}
"""The fields of each turn detection type (GA ``RealtimeAudioInputTurnDetection``)."""


_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Rejection:
    """What a refused ``session.update`` means: the ``field`` the server named (dotted,
    None: not known) and the rest of the update to send again (None: nothing)."""

    field: str | None
    resend: dict[str, Any] | None


_WHOLE = ("turn_detection", "transcription", "noise_reduction", "format", "tracing", "prompt")
"""Objects sent and refused as a whole: a field inside one names the object."""


def field_path(param: str | None) -> list[str]:
    """The session field an ``error.param`` names: ``session.audio.input.transcription
    .model`` -> ``[audio, input, transcription]`` (cut at a whole object),
    ``session.tools[0].name`` -> ``[tools]``."""
    if not param:
        return []
    parts = param.split(".")
    if parts[0] == "session":
        parts = parts[1:]
    out: list[str] = []
    for part in parts:
        name = part.split("[", 1)[0]
        if not name:
            break
        out.append(name)
        if name in _WHOLE or "[" in part:
            break
    return out


def _has(data: Mapping[str, Any], path: Sequence[str]) -> bool:
    node: Any = data
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return False
        node = node[key]
    return True


def _without(data: Mapping[str, Any], path: Sequence[str]) -> dict[str, Any]:
    """A copy of ``data`` without ``path``, and without the mappings that leaves empty."""
    out = copy.deepcopy(dict(data))
    if len(path) == 1:
        out.pop(path[0], None)
        return out
    child = out.get(path[0])
    if isinstance(child, Mapping):
        rest = _without(child, path[1:])
        if rest:
            out[path[0]] = rest
        else:
            del out[path[0]]
    return out


class SessionShapeError(ValueError):
    """A session change that cannot be turned into a valid whole session."""


def deep_merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``changes``, merging nested mappings (None replaces)."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def changed_fields(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of ``wanted`` that differ from ``current`` (nested mappings compared
    field by field), so a ``session.update`` carries only what changes."""
    out: dict[str, Any] = {}
    for key, value in wanted.items():
        have = current.get(key)
        if isinstance(value, Mapping) and isinstance(have, Mapping):
            sub = changed_fields(have, value)
            if sub:
                out[key] = sub
        elif have != value or key not in current:
            out[key] = copy.deepcopy(value)
    return out


def configured_session(config: Config) -> dict[str, Any]:
    """The GA session object that ``[session]`` asks for, but its turn detection (which
    follows the turn mode: see :meth:`SessionModel.turn_detection`). A transcription
    model of ``auto`` is off on Azure (it needs the name of a transcription deployment
    there) and :data:`AUTO_TRANSCRIPTION_MODEL` elsewhere."""
    s = config.session
    model = s.transcription.model
    if model == "auto":
        azure = config.connection.resolved_provider == "azure"
        model = None if azure else AUTO_TRANSCRIPTION_MODEL
    transcription: dict[str, Any] | None = None
    if model:
        transcription = {"model": model}
        if s.transcription.language:
            transcription["language"] = s.transcription.language
    payload: dict[str, Any] = {"type": "realtime"}
    if s.instructions is not None:
        payload["instructions"] = s.instructions
    payload["output_modalities"] = list(s.output_modalities)
    payload["audio"] = {
        "input": {
            "format": {"type": "audio/pcm", "rate": SAMPLE_RATE},
            "noise_reduction": {"type": s.noise_reduction} if s.noise_reduction else None,
            "transcription": transcription,
        },
        "output": {
            "format": {"type": "audio/pcm", "rate": SAMPLE_RATE},
            "voice": s.voice,
            "speed": s.speed,
        },
    }
    if s.max_output_tokens is not None:
        payload["max_output_tokens"] = s.max_output_tokens
    return payload


# -- reading the server's session (``session.created``/``updated``) -------------------


def _audio_input(session: Mapping[str, Any] | None) -> Mapping[str, Any]:
    audio = (session or {}).get("audio")
    audio_in = audio.get("input") if isinstance(audio, Mapping) else None
    return audio_in if isinstance(audio_in, Mapping) else {}


def server_interrupts(session: Mapping[str, Any] | None) -> bool:
    """Whether the server cancels its response when it hears the user (its turn
    detection's ``interrupt_response``; true when it does not say)."""
    td = _audio_input(session).get("turn_detection")
    return bool(td.get("interrupt_response", True)) if isinstance(td, Mapping) else True


def server_transcribes(session: Mapping[str, Any] | None) -> bool:
    """Whether the server transcribes the user's speech."""
    return bool(_audio_input(session).get("transcription"))


def server_speaks(session: Mapping[str, Any] | None) -> bool:
    """Whether the server answers in speech (``output_modalities`` is ``["audio"]``)."""
    return list((session or {}).get("output_modalities") or ["audio"]) == ["audio"]


class SessionModel:
    """The wanted session, the turn mode and the server's view of the session."""

    def __init__(self, config: Config) -> None:
        self._base: dict[str, Any] = configured_session(config)
        td = config.session.turn_detection
        self._vad: dict[str, dict[str, Any]] = {
            kind: {
                "type": kind,
                **{k: getattr(td, k) for k in knobs if getattr(td, k) is not None},
            }
            for kind, knobs in _KNOBS.items()
        }
        self._mode: TurnMode = config.turn_mode
        self._client_mode: TurnMode = (
            config.turn_mode if config.turn_mode in CLIENT_MODES else "local-vad"
        )
        self._tools: list[dict[str, Any]] = []
        self._updates_in_flight = 0

    # -- reading -----------------------------------------------------------------------

    @property
    def turn_mode(self) -> TurnMode:
        return self._mode

    @property
    def client_decides(self) -> bool:
        return self._mode in CLIENT_MODES

    def turn_detection(self) -> dict[str, Any] | None:
        """The whole ``audio.input.turn_detection`` object for the current mode."""
        kind = _SERVER_TYPE.get(self._mode)
        return None if kind is None else dict(self._vad[kind])

    def vad_settings(self, kind: str) -> dict[str, Any]:
        """The kept knobs of a server VAD flavour (``server_vad``/``semantic_vad``)."""
        return dict(self._vad[kind])

    @property
    def transcription(self) -> dict[str, Any] | None:
        value = self._base["audio"]["input"].get("transcription")
        return dict(value) if isinstance(value, Mapping) else None

    @property
    def tools(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._tools)

    @property
    def interrupt_response(self) -> bool:
        """Whether the server cancels a response when it hears the user (server modes)."""
        td = self.turn_detection()
        return bool(td.get("interrupt_response", True)) if td else False

    def payload(self) -> dict[str, Any]:
        """The whole session for ``session.update``: sent on every (re)connect."""
        out = copy.deepcopy(self._base)
        out["audio"]["input"]["turn_detection"] = self.turn_detection()
        if self._tools:
            out["tools"] = copy.deepcopy(self._tools)
            out["tool_choice"] = "auto"
        return out

    # -- changing (each returns the session object to send) ----------------------------

    def set_turn_mode(self, mode: TurnMode) -> dict[str, Any]:
        """Switch who ends turns; the update carries the whole turn detection."""
        self._set_mode(mode)
        return {"audio": {"input": {"turn_detection": self.turn_detection()}}}

    def edit(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a GA-shaped partial session (the editor, a profile); returns the update
        with ``turn_detection``/``transcription`` completed to whole objects. Raises
        :class:`SessionShapeError` for a change that cannot be made whole."""
        wanted: dict[str, Any] = copy.deepcopy(dict(changes))
        wanted.pop("type", None)
        before = (self._mode, self.turn_detection())
        audio = wanted.get("audio")
        audio_in = dict(audio.get("input") or {}) if isinstance(audio, Mapping) else {}
        new_mode: TurnMode | None = None
        if "turn_detection" in audio_in:
            new_mode = self._merge_turn_detection(audio_in.pop("turn_detection"))
        if "transcription" in audio_in:
            audio_in["transcription"] = self._whole_transcription(audio_in["transcription"])
        if isinstance(audio, Mapping):
            wanted["audio"] = {**audio, "input": audio_in}
            if not audio_in:
                del wanted["audio"]["input"]
        tools = wanted.pop("tools", None)
        wanted.pop("tool_choice", None)  # always "auto"
        transcription = audio_in.pop("transcription", _UNSET)
        update = changed_fields(self._base, wanted)
        self._base = deep_merge(self._base, wanted)
        if transcription is not _UNSET and transcription != self.transcription:
            self._base["audio"]["input"]["transcription"] = transcription
            update.setdefault("audio", {}).setdefault("input", {})["transcription"] = copy.deepcopy(
                transcription
            )
        if tools is not None and list(tools) != self._tools:
            update.update(self.set_tools(tools))
        if new_mode is not None:
            self._set_mode(new_mode)
        if (self._mode, self.turn_detection()) != before:
            update.setdefault("audio", {}).setdefault("input", {})["turn_detection"] = (
                self.turn_detection()
            )
        return update

    def set_tools(self, tools: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Declare the tools: function tools and hosted MCP servers (``{"type": "mcp",
        ...}``); kept, so a reconnect re-sends them."""
        self._tools = [copy.deepcopy(dict(t)) for t in tools]
        return {"tools": copy.deepcopy(self._tools), "tool_choice": "auto"}

    def _set_mode(self, mode: TurnMode) -> None:
        self._mode = mode
        if mode in CLIENT_MODES:
            self._client_mode = mode

    def _merge_turn_detection(self, value: Any) -> TurnMode:
        if value is None:
            return self._client_mode
        if not isinstance(value, Mapping):
            raise SessionShapeError("turn_detection must be an object or null")
        kind = value.get("type") or _SERVER_TYPE.get(self._mode)
        if kind in (None, "none"):
            if len(value) > (1 if "type" in value else 0):
                raise SessionShapeError("turn_detection settings need a type")
            return self._client_mode
        if kind not in _KNOBS:
            raise SessionShapeError(f"unknown turn_detection type {kind!r}")
        unknown = set(value) - {"type", *_KNOBS[kind]}
        if unknown:
            raise SessionShapeError(f"{kind} has no {', '.join(sorted(unknown))}")
        merged = {**self._vad[kind], **value, "type": kind}
        self._vad[kind] = {k: v for k, v in merged.items() if v is not None}
        return _MODE_OF_TYPE[kind]

    def _whole_transcription(self, value: Any) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise SessionShapeError("transcription must be an object or null")
        current = self._base["audio"]["input"].get("transcription") or {}
        merged = {k: v for k, v in {**current, **value}.items() if v is not None}
        if not merged.get("model"):
            raise SessionShapeError("transcription needs a model")
        return merged

    # -- the server's side ---------------------------------------------------------------

    def update_sent(self) -> None:
        """A ``session.update`` went out; its answer is pending."""
        self._updates_in_flight += 1

    def update_rejected(
        self, update: Mapping[str, Any] | None = None, param: str | None = None
    ) -> Rejection:
        """The server refused one of our updates (its ``error`` names the event), and
        with it every field of that update. ``param`` is the error's ``param``
        (``session.audio.output.voice``): that field is dropped from the wanted session
        (so no reconnect sends it again) and the rest of ``update`` comes back to be
        re-sent, so one bad field never loses the others. Without a ``param`` that names
        a field of ``update``, nothing is re-sent."""
        self._updates_in_flight = max(0, self._updates_in_flight - 1)
        path = field_path(param)
        if update is None or not path or not _has(update, path):
            return Rejection(".".join(path) if path else None, None)
        self._drop(path)
        rest = _without(update, path)
        rest.pop("type", None)
        return Rejection(".".join(path), rest or None)

    def _drop(self, path: Sequence[str]) -> None:
        if path[0] == "tools" or path[0] == "tool_choice":
            self._tools = []
            return
        if path[:3] == ["audio", "input", "turn_detection"]:
            return  # the server kept its own: session.updated makes the client follow it
        self._base = _without(self._base, path)

    def reconnected(self) -> None:
        """A new server session: nothing is pending there."""
        self._updates_in_flight = 0

    def session_updated(self, session: Mapping[str, Any]) -> TurnMode | None:
        """The server's answer to an update (the effective session itself is the
        conversation's record); returns the turn mode to follow when the server
        disagrees with ours once every update was answered (None: nothing to change)."""
        self._updates_in_flight = max(0, self._updates_in_flight - 1)
        if self._updates_in_flight:
            return None  # an answer to an older update: later ones are still coming
        audio = session.get("audio")
        audio_in = audio.get("input") if isinstance(audio, Mapping) else None
        if not isinstance(audio_in, Mapping) or "turn_detection" not in audio_in:
            return None
        td = audio_in.get("turn_detection")
        kind = td.get("type") if isinstance(td, Mapping) else None
        if kind in _KNOBS and isinstance(td, Mapping):
            known = {k: v for k, v in td.items() if k in _KNOBS[kind] and v is not None}
            self._vad[kind] = {**self._vad[kind], **known, "type": kind}
            server_mode = _MODE_OF_TYPE[kind]
            if server_mode != self._mode:
                self._set_mode(server_mode)
                return server_mode
            return None
        if td is None and not self.client_decides:
            self._set_mode(self._client_mode)
            return self._mode
        return None


__all__ = [
    "CLIENT_MODES",
    "SessionModel",
    "SessionShapeError",
    "changed_fields",
    "deep_merge",
    "server_interrupts",
    "server_speaks",
    "server_transcribes",
]
