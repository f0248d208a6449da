"""The engine's status and its subscribers: one place that publishes.

Every notification (protocol and engine) goes to the subscribers in order, on the loop
thread; a subscriber that raises is logged and skipped, never stops the engine. The
status is immutable: a change publishes a :class:`StatusChanged` with the new one, and a
change of the mic level alone at most every :data:`LEVEL_INTERVAL_S`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from voicecli.engine.notifications import ConnectionChanged, StatusChanged
from voicecli.engine.status import ConnectionState, EngineStatus
from voicecli.protocol.notifications import Notification

log = logging.getLogger(__name__)

LEVEL_INTERVAL_S = 0.05
"""Mic-level-only status updates are coalesced to at most 20 per second."""

Subscriber = Callable[[Notification], None]


class StatusBus:
    """See the module docstring."""

    def __init__(self, status: EngineStatus) -> None:
        self.status = status
        self._subscribers: list[Subscriber] = []
        self._last_publish = 0.0

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Receive every notification; returns the function that unsubscribes."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, note: Notification) -> None:
        for callback in list(self._subscribers):
            try:
                callback(note)
            except Exception:  # a broken subscriber must not stop the engine
                log.exception("subscriber failed on %s", type(note).__name__)

    def set(self, **changes: Any) -> None:
        """Change status fields; publishes when anything changed."""
        new = replace(self.status, **changes)
        if new == self.status:
            return
        self.status = new
        self._last_publish = time.monotonic()
        self.publish(StatusChanged(new))

    def set_level(self, level: float) -> None:
        """The mic level: kept at once, published at most every LEVEL_INTERVAL_S."""
        if time.monotonic() - self._last_publish < LEVEL_INTERVAL_S:
            self.status = replace(self.status, mic_level=level)
            return
        self.set(mic_level=level)

    def set_connection(self, state: ConnectionState, detail: str) -> None:
        self.set(connection=state)
        self.publish(ConnectionChanged(state, detail))


__all__ = ["LEVEL_INTERVAL_S", "StatusBus", "Subscriber"]
