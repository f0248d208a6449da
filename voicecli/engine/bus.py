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
from voicecli.engine.status import LEVEL_STEPS, ConnectionState, EngineStatus
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
        self._published_level = status.mic_level

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
        """Change status fields; publishes when anything changed. Called on every mic
        block, so values that hold cost comparisons, not a new status."""
        status = self.status
        if all(getattr(status, name) == value for name, value in changes.items()):
            return
        self.status = replace(status, **changes)
        self._publish_status()

    def set_level(self, level: float) -> None:
        """The mic level, in steps of ``1 / LEVEL_STEPS``: kept at once, published at
        most every LEVEL_INTERVAL_S. Called on every mic block, so a level that holds
        costs a comparison; a change kept between publications goes out with the next
        call (the next block) once the interval has passed."""
        level = round(level * LEVEL_STEPS) / LEVEL_STEPS
        if level != self.status.mic_level:
            self.status = replace(self.status, mic_level=level)
        if level == self._published_level:
            return
        if time.monotonic() - self._last_publish >= LEVEL_INTERVAL_S:
            self._publish_status()

    def _publish_status(self) -> None:
        self._last_publish = time.monotonic()
        self._published_level = self.status.mic_level
        self.publish(StatusChanged(self.status))

    def set_connection(self, state: ConnectionState, detail: str) -> None:
        self.set(connection=state)
        self.publish(ConnectionChanged(state, detail))


__all__ = ["LEVEL_INTERVAL_S", "StatusBus", "Subscriber"]
