"""The engine's status snapshot and its turn-taking modes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

TurnMode = Literal["push-to-talk", "local-vad", "server-vad", "semantic-vad"]
"""Who decides when the user's turn ends: a key, local webrtcvad, or the server."""

TURN_MODES: tuple[TurnMode, ...] = get_args(TurnMode)
"""Every turn mode, in the order :meth:`Engine.cycle_turn_mode` walks them."""

ConnectionState = Literal["connecting", "connected", "reconnecting", "offline", "closed", "failed"]
"""``offline``: the user stopped the reconnect attempts (:meth:`Engine.stop_reconnecting`)."""
MicState = Literal["off", "muted", "live", "sending", "unavailable"]
VadState = Literal["speech", "silence"]
ResponseState = Literal["idle", "generating", "playing", "cancelled"]


def next_turn_mode(mode: TurnMode) -> TurnMode:
    """The mode after ``mode`` in :data:`TURN_MODES`, wrapping around."""
    return TURN_MODES[(TURN_MODES.index(mode) + 1) % len(TURN_MODES)]


LEVEL_STEPS = 64
"""The mic level's resolution: 64 steps (about 1 dB) are all a meter of 8 cells of
eighths can show, so a change below one step is neither kept nor published."""


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """An immutable snapshot of everything a status bar shows.

    The engine replaces it (``dataclasses.replace``) and publishes each new one as
    :class:`~voicecli.engine.notifications.StatusChanged`.
    """

    connection: ConnectionState = "connecting"
    endpoint: str = ""
    turn_mode: TurnMode = "local-vad"
    mic: MicState = "off"
    mic_level: float = 0.0
    """Recent microphone level, 0..1 (dBFS mapped linearly from -60..0), in steps of
    ``1 / LEVEL_STEPS``."""
    vad: VadState = "silence"
    response: ResponseState = "idle"
    response_error: str | None = None
    """Why the last response failed (``insufficient_quota: ...``); None once one
    completes."""
    last_latency_ms: float | None = None
    """End of the user's speech to the first assistant sample at the speaker."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    """USD from :mod:`voicecli.engine.cost`'s price table; None: no price (a model the
    table does not know, or a server on this machine)."""
    transcription_tokens: int = 0
    transcription_usd: float | None = None
    """Input transcription, billed apart (None: nothing priced)."""
    expires_at: float | None = None
    overflows: int = 0
    """Input device overflows reported by the audio source."""
    underruns: int = 0
    """Speaker underruns (the device ran out of audio: a crackle) reported by the sink."""
    dropped_audio_ms: float = 0.0
    """Mic audio dropped because the socket stalled longer than ``max_backlog_s``."""
    echo_mode: str = ""
    """The echo handling in force: ``aec``, ``guard``, ``half-duplex`` or ``off``."""
    echo_learning: bool = False
    """A reply plays while the echo check still learns the echo path (the first second
    of the first reply with ``aec``, two with ``guard``): only a voice clearly louder
    than the playback interrupts yet."""
