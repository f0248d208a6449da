"""Notifications the engine adds to the protocol's (:mod:`voicecli.protocol.notifications`).

Subscribers of :meth:`Engine.subscribe` receive both kinds through one callback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from voicecli.engine.status import ConnectionState, EngineStatus
from voicecli.protocol.notifications import Notification


@dataclass(frozen=True, slots=True)
class StatusChanged(Notification):
    """The status snapshot changed (mic level updates are coalesced to ~20 per second)."""

    status: EngineStatus


@dataclass(frozen=True, slots=True)
class EventLogged(Notification):
    """One wire event, sent or received.

    ``event`` is a copy safe to show or store: audio payloads are replaced by a size
    marker (``"<audio 9600 bytes>"``) and secrets are redacted.
    """

    direction: Literal["sent", "received"]
    event: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Notice(Notification):
    """A human-readable message for the user (reconnecting, dropped audio, fatal error...)."""

    level: Literal["info", "warning", "error"]
    text: str


@dataclass(frozen=True, slots=True)
class ConnectionChanged(Notification):
    """The connection state changed; ``detail`` says why (attempt number, close reason)."""

    state: ConnectionState
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TurnLogged(Notification):
    """A finished turn was appended (and fsync'd) to the session history.

    Published only after the write, so a UI that shows a turn as done on this
    notification never shows a turn that a crash could lose.
    """

    item_id: str
    role: str
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallChanged(Notification):
    """A function call moved on: ``status`` is ``waiting`` (for approval), ``running``,
    ``done``, ``failed``, ``timeout``, ``unavailable`` or ``declined``; ``output`` is
    what the model gets (set once the call is over)."""

    call_id: str
    item_id: str
    name: str
    status: str
    arguments: str
    output: str = ""
    elapsed_ms: float = 0.0
