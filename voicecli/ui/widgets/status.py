"""The status bar: connection, turn mode, mic, VAD, response, latency, cost, time left.

Two lines built from parts with a priority each: when a line does not fit the terminal,
the least important parts go first (the endpoint, the token count, the latency), so at
80 columns the VAD state, the time left and any audio trouble stay visible.

It repaints only when what it shows changed, at most :data:`MAX_REPAINT_HZ` times a
second (a level meter the eye can follow), and never asks for a layout (its size is
fixed). The countdown ticks once a second while connected and stops while not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual.timer import Timer
from textual.widget import Widget

from voicecli.engine.status import EngineStatus

SESSION_LIMIT_S = 60 * 60
BARS = " ▁▂▃▄▅▆▇█"
MAX_REPAINT_HZ = 15
"""Level-meter changes repaint at most this often; the countdown once a second."""

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
SEPARATOR = "  │ "
NARROW_SEPARATOR = " │ "


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


@dataclass(frozen=True)
class Part:
    """One piece of a status line; ``priority`` 0 is kept longest."""

    text: Text
    priority: int


def _part(priority: int, *pieces: tuple[str, str]) -> Part:
    text = Text()
    for content, style in pieces:
        text.append(content, style=style)
    return Part(text, priority)


def status_parts(
    status: EngineStatus, left_s: float, ack: str, *, show_cost: bool = True
) -> tuple[list[Part], list[Part]]:
    """The two status lines as parts in display order (line two starts with ``ack``)."""
    conn_style = CONNECTION_STYLE.get(status.connection, "")
    first = [
        _part(0, ("● ", conn_style), (status.connection, conn_style)),
        _part(9, (status.endpoint, "dim")),
        _part(3, ("mode ", ""), (status.turn_mode, "bold")),
    ]
    mic = [("mic ", ""), (status.mic, MIC_STYLE.get(status.mic, ""))]
    if status.mic in ("live", "sending"):
        mic.append((" " + level_meter(status.mic_level), "green"))
    first.append(_part(1, *mic))
    first.append(
        _part(2, ("vad ", ""), (status.vad, "bold green" if status.vad == "speech" else "dim"))
    )
    if status.echo_mode:  # which echo handling is in force (aec, guard, half-duplex, off)
        echo_style = "bold" if status.echo_mode == "aec" else ""
        echo = [("echo ", ""), (status.echo_mode, echo_style)]
        if status.echo_learning:  # only a voice louder than the reply interrupts yet
            echo.append((" (learning)", "yellow"))
        first.append(_part(5, *echo))
    # the answer to the last key comes first: it must stay visible in a narrow
    # terminal and to the left of the notification toasts
    second = [_part(0, (ack, "bold"))] if ack else []
    response = [("response ", ""), (status.response, RESPONSE_STYLE.get(status.response, ""))]
    if status.response_error:  # why the last response failed, until one completes
        response.append((f" (failed: {status.response_error.split(':', 1)[0]})", "bold red"))
    second.append(_part(1, *response))
    latency = "—" if status.last_latency_ms is None else f"{status.last_latency_ms:.0f} ms"
    second.append(_part(6, (f"latency {latency}", "")))
    tokens = f"tokens {status.input_tokens}↑ {status.output_tokens}↓"
    if show_cost and status.cost_usd is not None:  # None: no price known for the model
        tokens += f" ≈ ${status.cost_usd:.4f}"
        if status.transcription_usd:
            tokens += f" + transcription ${status.transcription_usd:.4f}"
    second.append(_part(7, (tokens, "")))
    left_style = "bold red" if left_s < 300 else ("dim" if status.connection != "connected" else "")
    second.append(_part(2, ("left ", ""), (format_left(left_s), left_style)))
    if status.overflows or status.dropped_audio_ms:
        trouble = f"overflows {status.overflows} dropped {status.dropped_audio_ms:.0f} ms"
        second.append(_part(4, (trouble, "red")))
    if status.underruns:
        second.append(_part(3, (f"speaker underruns {status.underruns}", "red")))
    return first, second


def fit_line(parts: list[Part], width: int | None) -> Text:
    """``parts`` joined; the least important dropped until the line fits ``width``
    (narrower separators before dropping one more part)."""
    kept = list(parts)
    if width is None:
        return Text(SEPARATOR).join(p.text for p in kept)
    while True:
        for separator in (SEPARATOR, NARROW_SEPARATOR):
            line = Text(separator).join(p.text for p in kept)
            if line.cell_len <= width:
                return line
        if len(kept) == 1:
            break
        kept.remove(max(kept, key=lambda p: p.priority))
    line.truncate(max(width, 1), overflow="ellipsis")
    return line


def render_status(
    status: EngineStatus,
    now: float,
    started_at: float,
    ack: str,
    *,
    width: int | None = None,
    show_cost: bool = True,
) -> Text:
    """The two status lines as Rich text, each fitted to ``width`` (None: no limit)."""
    expires = status.expires_at if status.expires_at is not None else started_at + SESSION_LIMIT_S
    first, second = status_parts(status, expires - now, ack, show_cost=show_cost)
    return Text("\n").join([fit_line(first, width), fit_line(second, width)])


class StatusBar(Widget):
    """Shows the newest :class:`EngineStatus` and the server's answer to the last action.

    ``show_cost``: False when no API key was sent (a local server bills nothing).
    """

    DEFAULT_CSS = """
    StatusBar { height: 2; background: $panel; padding: 0 1; }
    """

    def __init__(
        self,
        status: EngineStatus,
        *,
        clock: Callable[[], float] = time.time,
        show_cost: bool = True,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self._clock = clock
        self._show_cost = show_cost
        self.status = status
        self.ack = ""
        self._started_at = clock()
        # until the first connection the session's full time is shown, standing still
        self._frozen_left: float | None = (
            None if status.connection == "connected" else float(SESSION_LIMIT_S)
        )
        self._shown = Text()
        self._last_paint = 0.0
        self._paint_timer: Timer | None = None
        self._tick: Timer | None = None
        self.repaints = 0
        """How often the bar was repainted (the tests and the CPU benchmark read it)."""

    def on_mount(self) -> None:
        self._tick = self.set_interval(1.0, self._changed, name="status-clock")
        if self.status.connection != "connected":
            self._tick.pause()
        self._paint()

    def on_resize(self) -> None:
        self._paint()

    def show(self, status: EngineStatus) -> None:
        was_connected = self.status.connection == "connected"
        self.status = status
        connected = status.connection == "connected"
        if connected != was_connected:
            self._connection_changed(connected)
        self._changed()

    def _connection_changed(self, connected: bool) -> None:
        # the countdown is the server session's: it stops while there is none, and a
        # reconnect opens a new session with its own full time
        if connected:
            self._started_at = self._clock()
            self._frozen_left = None
            if self._tick is not None:
                self._tick.resume()
        else:
            self._frozen_left = self.time_left()
            if self._tick is not None:
                self._tick.pause()

    def time_left(self) -> float:
        """Seconds left in the server session (frozen while not connected)."""
        status = self.status
        if self._frozen_left is not None and status.connection != "connected":
            return self._frozen_left
        if status.expires_at is not None:
            return status.expires_at - self._clock()
        return self._started_at + SESSION_LIMIT_S - self._clock()

    def acknowledge(self, text: str) -> None:
        """The server's answer to the last action (``input cleared`` …)."""
        self.ack = text
        self._changed()

    def _text(self) -> Text:
        width = self.content_size.width if self.is_mounted else None
        first, second = status_parts(
            self.status, self.time_left(), self.ack, show_cost=self._show_cost
        )
        return Text("\n").join([fit_line(first, width), fit_line(second, width)])

    def _changed(self) -> None:
        """Something shown may have changed: repaint now, or once the rate allows."""
        if not self.is_mounted or self._paint_timer is not None:
            return
        if self._text() == self._shown:
            return
        wait = self._last_paint + 1 / MAX_REPAINT_HZ - time.monotonic()
        if wait <= 0:
            self._paint()
        else:
            self._paint_timer = self.set_timer(wait, self._paint, name="status-repaint")

    def _paint(self) -> None:
        self._paint_timer = None
        self._shown = self._text()
        self._last_paint = time.monotonic()
        self.repaints += 1
        self.refresh()

    def render(self) -> Text:
        return self._shown

    @property
    def text(self) -> str:
        """What the bar shows, as plain text."""
        return self._shown.plain
