"""Textual messages carrying engine notifications onto the UI's message queue.

The engine calls :meth:`VoiceApp._forward_note` on the asyncio loop the app runs on;
that callback only posts one of these. Status snapshots replace each other while queued
(``can_replace``), so a busy level meter never backs the queue up.
"""

from __future__ import annotations

from textual.message import Message

from voicecli.engine.status import EngineStatus
from voicecli.protocol.notifications import Notification


class EngineNote(Message):
    """Any protocol or engine notification except status snapshots."""

    def __init__(self, note: Notification) -> None:
        super().__init__()
        self.note = note


class StatusUpdate(Message):
    """The newest :class:`EngineStatus`; a queued older one is dropped."""

    def __init__(self, status: EngineStatus) -> None:
        super().__init__()
        self.status = status

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StatusUpdate)


class EngineStopped(Message):
    """The engine's :meth:`run` returned (closed or failed)."""

    def __init__(self, error: str | None = None) -> None:
        super().__init__()
        self.error = error
