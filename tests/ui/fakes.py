"""A scripted engine for the snapshot tests and the benchmark (deterministic content).

Everything else in tests/ui drives the real :class:`voicecli.engine.Engine` against the
real local server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from voicecli.config import Config
from voicecli.engine.status import TURN_MODES, EngineStatus, TurnMode, next_turn_mode
from voicecli.protocol.notifications import Notification
from voicecli.session import SessionModel


@dataclass
class FakeItem:
    id: str
    role: str | None
    type: str = "message"
    status: str | None = "completed"
    name: str | None = None
    arguments: str | None = None
    output: str | None = None
    truncated_at_ms: int | None = None
    body: str = ""
    cut: int | None = None  # index where the heard text ends, when truncated
    pending: bool = False

    @property
    def text(self) -> str:
        return self.body

    @property
    def heard_text(self) -> str:
        return self.body if self.cut is None else self.body[: self.cut]

    @property
    def unheard_text(self) -> str:
        return "" if self.cut is None else self.body[self.cut :]

    @property
    def transcript_pending(self) -> bool:
        return self.pending


@dataclass
class FakeConversation:
    items: list[FakeItem] = field(default_factory=list)
    session: Mapping[str, Any] | None = None
    assistant_has_audio: bool = False

    def item(self, item_id: str) -> FakeItem | None:
        for it in reversed(self.items):
            if it.id == item_id:
                return it
        return None


class FakeEngine:
    """Records the actions called; publishes what a test tells it to."""

    def __init__(self, status: EngineStatus | None = None) -> None:
        self.conversation = FakeConversation()
        self.session = SessionModel(Config())
        self.status = status or EngineStatus(
            connection="connected", endpoint="ws://127.0.0.1:8765/v1/realtime"
        )
        self.calls: list[tuple[str, Any]] = []
        self._subs: list[Callable[[Notification], None]] = []
        self.updates = 0

    def subscribe(self, callback: Callable[[Notification], None]) -> Callable[[], None]:
        self._subs.append(callback)
        return lambda: self._subs.remove(callback)

    def publish(self, note: Notification) -> None:
        for cb in list(self._subs):
            cb(note)

    async def run(self) -> None:
        return None

    async def close(self) -> None:
        self.calls.append(("close", None))

    def push_to_talk(self) -> None:
        self.calls.append(("push_to_talk", None))

    def commit(self) -> None:
        self.calls.append(("commit", None))

    def cancel(self) -> None:
        self.calls.append(("cancel", None))

    def clear_input(self) -> None:
        self.calls.append(("clear_input", None))

    def reconnect_now(self) -> bool:
        self.calls.append(("reconnect_now", None))
        return self.status.connection in ("reconnecting", "offline")

    def stop_reconnecting(self) -> bool:
        self.calls.append(("stop_reconnecting", None))
        return self.status.connection == "reconnecting"

    def toggle_mute(self) -> None:
        self.calls.append(("toggle_mute", None))

    def cycle_turn_mode(self) -> TurnMode:
        mode = next_turn_mode(self.status.turn_mode)
        self.calls.append(("cycle_turn_mode", mode))
        return mode

    def send_text(self, text: str, *, respond: bool = True) -> None:
        self.calls.append(("send_text", text))

    def update_session(self, changes: Mapping[str, Any]) -> str:
        self.updates += 1
        self.calls.append(("update_session", dict(changes)))
        return f"evt_update_{self.updates}"


SESSION: dict[str, Any] = {
    "type": "realtime",
    "id": "sess_fixed",
    "model": "gpt-realtime",
    "instructions": "You are a helpful, concise assistant.",
    "output_modalities": ["audio"],
    "max_output_tokens": "inf",
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "noise_reduction": None,
            "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": 300,
                "silence_duration_ms": 500,
                "create_response": True,
                "interrupt_response": True,
            },
        },
        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0},
    },
}


def mid_conversation(engine: FakeEngine) -> None:
    """A fixed conversation: two exchanges, an interrupted reply, a pending transcript."""
    conv = engine.conversation
    conv.session = SESSION
    conv.assistant_has_audio = True
    conv.items = [
        FakeItem("item_u1", "user", body="What's the weather like on Mars today?"),
        FakeItem(
            "item_a1",
            "assistant",
            body="Cold and dusty: about minus sixty degrees Celsius, with thin winds.",
        ),
        FakeItem("item_f1", None, type="function_call", name="get_time", arguments='{"tz": "UTC"}'),
        FakeItem("item_f2", None, type="function_call_output", output='{"time": "12:00"}'),
        FakeItem("item_u2", "user", body="Tell me a long story about a lighthouse keeper."),
        FakeItem(
            "item_a2",
            "assistant",
            status="incomplete",
            truncated_at_ms=2400,
            body="Once upon a time, a keeper named Ada tended the light on a rocky island, "
            "and every night she counted the ships that passed.",
            cut=75,
        ),
        FakeItem("item_u3", "user", body="", pending=True),
    ]
    engine.status = EngineStatus(
        connection="connected",
        endpoint="ws://127.0.0.1:8765/v1/realtime",
        turn_mode=TURN_MODES[2],
        mic="live",
        mic_level=0.55,
        vad="speech",
        response="idle",
        last_latency_ms=412.0,
        input_tokens=1234,
        output_tokens=567,
        cost_usd=0.0421,
        expires_at=1_000_000.0 + 3000.0,
    )
