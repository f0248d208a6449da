"""Fault switches for the local server, changeable while it runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    #: Expire sessions this many seconds after they start (error ``session_expired``, then
    #: close 1001 with the live text; see ``RealtimeSession._expiry_watchdog``).
    expire_after_s: float | None = None
    #: At expiry, close without the ``session_expired`` error event first (only the close
    #: 1001 "Your session hit the maximum duration of 60 minutes.", as also seen live).
    expire_without_error: bool = False
    #: Answer the next N WebSocket handshakes with HTTP 503 (decremented per refusal).
    refuse_connections: int = 0
    #: Answer every WebSocket handshake with this HTTP status (400, 401, 403, 404...) and
    #: a JSON body shaped like the live service's (see ``errors.HANDSHAKE_REFUSALS``), until
    #: cleared. Azure answers 400 ``OperationNotSupported`` for a deployment that cannot
    #: do realtime and 404 ``DeploymentNotFound`` for a wrong deployment name.
    refuse_handshake_with: int | None = None
    #: End every response ``failed`` with this error code (``insufficient_quota``,
    #: ``server_error``...) in ``status_details.error``, before any output (see
    #: ``reply.FAILURES``).
    fail_responses_with: str | None = None
    #: Emulate live models that answer in text only once the history they are given is
    #: text: audio asked for, but every assistant message in the context is text.
    text_only_after_text_history: bool = False
    #: Stall the next connection that reads or sends: stop reading and sending for S seconds
    #: (the transport is paused, so pings go unanswered). Consumed (reset to 0) when it fires.
    stall_s: float = 0.0
    #: Send one ``error`` event of type ``server_error`` tied to no client event after this
    #: many audio deltas of a response, which then goes on and completes: the live service
    #: keeps a session open after such an error.
    error_after_audio_deltas: int | None = None

    #: Emulation, not a fault: a user audio turn (the server cannot transcribe it) calls
    #: the first declared function tool (see :mod:`voicecli.server.tools`).
    call_tools_on_audio: bool = False

    _watchers: list[Callable[[], None]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if not name.startswith("_"):
            for watcher in list(getattr(self, "_watchers", ())):
                watcher()

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` after any switch is set (from any thread); returns the
        function that stops watching. Lets a session wait for a switch instead of
        polling it."""
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback)

    def take_stall(self) -> float:
        """Return the pending stall duration and clear it."""
        s, self.stall_s = self.stall_s, 0.0
        return s
