"""Fault switches for the local server, changeable while it runs."""

from __future__ import annotations

from dataclasses import dataclass, field

#: The kinds of malformed frame :attr:`Faults.malformed_before_reply` can send.
MALFORMED_KINDS = ("text", "binary", "unknown_type", "missing_fields")


@dataclass
class Faults:
    """Misbehaviour to inject. Every field is read at the moment it matters, so a test
    can flip switches on a running server; counters count per connection.

    ``None`` / ``0`` / empty means "behave".
    """

    #: Drop the TCP connection (no close frame) after this many audio deltas of a response.
    drop_after_audio_deltas: int | None = None
    #: Drop the TCP connection on the Nth ``input_audio_buffer.append`` (1-based).
    drop_on_append: int | None = None
    #: Delay every outgoing event by this many milliseconds.
    delay_ms: float = 0.0
    #: Before each reply, send these malformed frames (see :data:`MALFORMED_KINDS`).
    malformed_before_reply: tuple[str, ...] = field(default_factory=tuple)
    #: Expire sessions this many seconds after they start (error ``session_expired``, close).
    expire_after_s: float | None = None
    #: Answer the next N WebSocket handshakes with HTTP 503 (decremented per refusal).
    refuse_connections: int = 0
    #: Stall the next connection that reads or sends: stop reading and sending for S seconds
    #: (the transport is paused, so pings go unanswered). Consumed (reset to 0) when it fires.
    stall_s: float = 0.0

    #: Emulation, not a fault: a user audio turn (the server cannot transcribe it) calls
    #: the first declared function tool (see :mod:`voicecli.server.tools`).
    call_tools_on_audio: bool = False

    def take_stall(self) -> float:
        """Return the pending stall duration and clear it."""
        s, self.stall_s = self.stall_s, 0.0
        return s
