"""The status bar: connection, turn mode, mic, VAD, response, latency, cost, time left."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual.widgets import Static

from voicecli.engine.status import EngineStatus

SESSION_LIMIT_S = 60 * 60
BARS = " ▁▂▃▄▅▆▇█"

CONNECTION_STYLE = {
    "connected": "green",
    "connecting": "yellow",
    "reconnecting": "yellow",
    "offline": "red",
    "closed": "dim",
    "failed": "bold red",
}
MIC_STYLE = {
    "live": "green",
    "sending": "bold green",
    "muted": "red",
    "off": "dim",
    "unavailable": "dim",
}
RESPONSE_STYLE = {"idle": "dim", "generating": "yellow", "playing": "green", "cancelled": "red"}


def level_meter(level: float, width: int = 8) -> str:
    """``level`` 0..1 as a bar of block characters."""
    level = min(max(level, 0.0), 1.0)
    filled = level * width
    out = []
    for i in range(width):
        part = min(max(filled - i, 0.0), 1.0)
        out.append(BARS[round(part * (len(BARS) - 1))])
    return "".join(out)


def format_left(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def render_status(status: EngineStatus, now: float, started_at: float, ack: str) -> Text:
    """The two status lines as Rich text (line two starts with ``ack``)."""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append("● ", style=CONNECTION_STYLE.get(status.connection, ""))
    t.append(status.connection, style=CONNECTION_STYLE.get(status.connection, ""))
    t.append(f" {status.endpoint}", style="dim")
    t.append("  │ mode ")
    t.append(status.turn_mode, style="bold")
    t.append("  │ mic ")
    t.append(status.mic, style=MIC_STYLE.get(status.mic, ""))
    if status.mic in ("live", "sending"):
        t.append(" " + level_meter(status.mic_level), style="green")
    t.append("  │ vad ")
    t.append(status.vad, style="bold green" if status.vad == "speech" else "dim")
    if status.echo_mode:  # which echo handling is in force (aec, guard, half-duplex, off)
        t.append(f"  │ echo {status.echo_mode}", style="bold" if status.echo_mode == "aec" else "")
    t.append("\n")
    # the answer to the last key comes first: it must stay visible in a narrow
    # terminal and to the left of the notification toasts
    if ack:
        t.append(ack, style="bold")
        t.append("  │ ")
    t.append("response ")
    t.append(status.response, style=RESPONSE_STYLE.get(status.response, ""))
    latency = "—" if status.last_latency_ms is None else f"{status.last_latency_ms:.0f} ms"
    t.append(f"  │ latency {latency}")
    t.append(f"  │ tokens {status.input_tokens}↑ {status.output_tokens}↓ ≈ ${status.cost_usd:.4f}")
    expires = status.expires_at if status.expires_at is not None else started_at + SESSION_LIMIT_S
    left = expires - now
    t.append("  │ left ")
    t.append(format_left(left), style="bold red" if left < 300 else "")
    if status.overflows or status.dropped_audio_ms:
        t.append(
            f"  │ overflows {status.overflows} dropped {status.dropped_audio_ms:.0f} ms",
            style="red",
        )
    if status.underruns:
        t.append(f"  │ speaker underruns {status.underruns}", style="red")
    return t


class StatusBar(Static):
    """Shows the newest :class:`EngineStatus` and the server's answer to the last action."""

    DEFAULT_CSS = """
    StatusBar {
        height: 2; background: $panel; padding: 0 1;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    """

    def __init__(
        self, status: EngineStatus, *, clock: Callable[[], float] = time.time, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self._clock = clock
        self.status = status
        self.ack = ""
        self._started_at = clock()
        self._redraw()

    def on_mount(self) -> None:
        self.set_interval(1.0, self._redraw, name="status-clock")

    def show(self, status: EngineStatus) -> None:
        self.status = status
        self._redraw()

    def acknowledge(self, text: str) -> None:
        """The server's answer to the last action (``input cleared`` …)."""
        self.ack = text
        self._redraw()

    def _redraw(self) -> None:
        self.update(render_status(self.status, self._clock(), self._started_at, self.ack))
