"""A local, GA-protocol OpenAI Realtime server for tests and offline demos.

It speaks the wire protocol event for event (see ``/work/shared/realtime-protocol.md``)
but has no speech recognition and no language model: the assistant echoes the user's
last committed audio (exact samples) and says "You said N.N seconds of audio."; a text
message gets "You said: <text>" voiced by a soft tone pattern. Input transcription, if
enabled, is synthetic ("(1.8 s of speech)").
"""

from __future__ import annotations

from voicecli.server.connection import RealtimeSession
from voicecli.server.faults import MALFORMED_KINDS, Faults
from voicecli.server.server import BackgroundServer, RealtimeServer, ServerStartError, serve_forever

__all__ = [
    "MALFORMED_KINDS",
    "BackgroundServer",
    "Faults",
    "RealtimeServer",
    "RealtimeSession",
    "ServerStartError",
    "serve_forever",
]
