"""The audio engine: mic -> turn-taking -> protocol -> connection, and back to the speaker.

Never imports textual; the TUI and ``voicecli ask`` both drive it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from voicecli.engine.notifications import (
    ConnectionChanged,
    EventLogged,
    Notice,
    StatusChanged,
    TurnLogged,
)
from voicecli.engine.status import TURN_MODES, EngineStatus, TurnMode

if TYPE_CHECKING:
    from voicecli.engine.engine import Engine

__all__ = [
    "TURN_MODES",
    "ConnectionChanged",
    "Engine",
    "EngineStatus",
    "EventLogged",
    "Notice",
    "StatusChanged",
    "TurnLogged",
    "TurnMode",
]


def __getattr__(name: str) -> Any:
    # Engine pulls in the connection and audio layers; importing the status and
    # notification types alone (as the UI's widgets do) should not.
    if name == "Engine":
        from voicecli.engine.engine import Engine

        return Engine
    raise AttributeError(name)
