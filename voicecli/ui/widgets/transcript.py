"""The conversation as a chat, fast with thousands of turns and a stream of deltas.

A line-API :class:`ScrollView`: every turn caches its rendered lines for the current
width; a delta only marks its turn dirty, and a ~30 fps timer re-renders the dirty
turns, fixes the line offsets and repaints once. Nothing re-renders the whole log, and
only the visible lines are painted.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from rich.console import Group, RenderableType
from rich.text import Text
from textual import events
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from voicecli.history import interrupted_markdown

FRAME_S = 1 / 30


class ItemView(Protocol):
    """What the view reads from a conversation item (the protocol's ``Item``)."""

    id: str
    type: str
    role: str | None
    status: str | None
    name: str | None
    arguments: str | None
    output: str | None
    truncated_at_ms: int | None

    @property
    def text(self) -> str: ...
    @property
    def heard_text(self) -> str: ...
    @property
    def unheard_text(self) -> str: ...
    @property
    def transcript_pending(self) -> bool: ...


class ConversationView(Protocol):
    """What the view reads from the conversation (the protocol's ``Conversation``)."""

    @property
    def items(self) -> Sequence[ItemView]: ...
    def item(self, item_id: str) -> ItemView | None: ...


@dataclass
class _Turn:
    key: str
    error: str | None = None  # set for inline error rows
    lines: list[Strip] = field(default_factory=list)
    width: int = -1  # width the lines were rendered for; -1 = dirty


ROLE_STYLE = {"user": "bold cyan", "assistant": "bold green", "system": "bold magenta"}


FOLD_AT = 100
"""Characters of a tool call's arguments or output shown on its one line."""
CALL_STATUS_STYLE = {"done": "green", "declined": "yellow", "waiting": "bold magenta"}


def fold(text: str, limit: int = FOLD_AT) -> str:
    """``text`` on one line, cut at ``limit`` characters."""
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


def call_status(status: str, elapsed_ms: float) -> str:
    """A call's status as shown: running / done in N ms / declined / failed..."""
    if status == "waiting":
        return "waiting for approval"
    if status in ("done", "failed", "timeout"):
        return f"{status} in {elapsed_ms:.0f} ms"
    return status


def render_item(
    item: ItemView, call: tuple[str, float] | None = None, expanded: bool = False
) -> RenderableType:
    """One turn as Rich text: a role header line and the body. A function call is one
    line (``call``: its status and time, when known); its output one folded line, or
    all of it when ``expanded``."""
    if item.type == "function_call":
        line = Text("ƒ ", style="bold yellow") + Text(item.name or "?", style="bold")
        line.append(f" {fold(item.arguments or '', FOLD_AT // 2)}", style="yellow")
        if call is not None:
            status, elapsed_ms = call
            style = CALL_STATUS_STYLE.get(status, "red" if status != "running" else "dim")
            line.append(f"  {call_status(status, elapsed_ms)}", style=style)
        return line
    if item.type == "function_call_output":
        output = item.output or ""
        shown = output if expanded else fold(output)
        return Text("  ↳ ", style="bold yellow") + Text(shown, style="yellow")
    role = item.role or "?"
    head = Text(role, style=ROLE_STYLE.get(role, "bold"))
    if item.status == "incomplete":
        head.append("  (interrupted)", style="italic red")
    body = Text()
    if item.truncated_at_ms is not None and role == "assistant":
        body.append(item.heard_text)
        unheard = item.unheard_text
        if unheard:
            body.append(unheard, style="dim strike")
    else:
        text = item.text
        if text:
            body.append(text)
        elif role == "user" and item.transcript_pending:
            body.append("… transcribing", style="dim italic")
        elif role == "assistant" and item.status == "in_progress":
            body.append("…", style="dim")
        elif role == "user":
            body.append("(audio)", style="dim italic")
    return Group(head, body)


class TranscriptView(ScrollView, can_focus=True):
    """The chat log. Feed it notifications via :meth:`item_changed` and friends."""

    DEFAULT_CSS = """
    TranscriptView { height: 1fr; }
    """

    def __init__(
        self, conversation: ConversationView, *, name: str | None = None, id: str | None = None
    ) -> None:
        super().__init__(name=name, id=id)
        self.conversation = conversation
        self._turns: list[_Turn] = []
        self._index: dict[str, _Turn] = {}
        self._errors: dict[str | None, list[_Turn]] = {}  # anchor item id -> error rows
        self._offsets: list[int] = [0]  # first line of each turn, plus the total
        self._order_dirty = True
        self._dirty = True
        self._error_count = 0
        self._calls: dict[str, tuple[str, float]] = {}  # call item id -> status, ms
        self._expanded: set[str] = set()  # tool outputs shown whole (a click toggles)
        self.repaints = 0
        """Number of flushes that changed something (the benchmark reads it)."""

    def on_mount(self) -> None:
        self.set_interval(FRAME_S, self._flush, name="transcript-flush")

    # -- input, cheap: only marks ----------------------------------------------------

    def item_changed(self, item_id: str) -> None:
        """An item's text or status changed (delta, done, truncation, transcription)."""
        turn = self._index.get(item_id)
        if turn is None:
            self._order_dirty = True
        else:
            turn.width = -1
        self._dirty = True

    def tool_call_changed(self, item_id: str, status: str, elapsed_ms: float) -> None:
        """A function call's status changed (waiting, running, done in N ms...)."""
        self._calls[item_id] = (status, elapsed_ms)
        self.item_changed(item_id)

    def toggle_output(self, item_id: str) -> bool:
        """Show a tool output whole, or folded again; False when it is not one."""
        item = self.conversation.item(item_id)
        if item is None or item.type != "function_call_output":
            return False
        self._expanded.symmetric_difference_update({item_id})
        self.item_changed(item_id)
        return True

    def item_at(self, y: int) -> str | None:
        """The id of the item drawn at row ``y`` of the view (None: none, or an error)."""
        line_no = self.scroll_offset.y + y
        if not self._turns or not 0 <= line_no < self._offsets[-1]:
            return None
        turn = self._turns[bisect.bisect_right(self._offsets, line_no) - 1]
        return None if turn.error is not None else turn.key

    def on_click(self, event: events.Click) -> None:
        item_id = self.item_at(event.y)
        if item_id is not None:
            self.toggle_output(item_id)

    def structure_changed(self) -> None:
        """Items were added, deleted or reordered."""
        self._order_dirty = True
        self._dirty = True

    def add_error(self, message: str) -> None:
        """An error row right after the newest item."""
        items = self.conversation.items
        anchor = items[-1].id if items else None
        self._error_count += 1
        self._errors.setdefault(anchor, []).append(
            _Turn(key=f"error-{self._error_count}", error=message)
        )
        self.structure_changed()

    def refresh_all(self) -> None:
        for turn in self._turns:
            turn.width = -1
        self._dirty = True

    def flush_now(self) -> None:
        """Apply pending changes immediately (tests and save)."""
        self._flush()

    # -- the frame ---------------------------------------------------------------------

    def _rebuild_order(self) -> None:
        turns: list[_Turn] = []
        index: dict[str, _Turn] = {}
        turns.extend(self._errors.get(None, ()))
        for item in self.conversation.items:
            turn = self._index.get(item.id) or _Turn(key=item.id)
            turns.append(turn)
            index[item.id] = turn
            turns.extend(self._errors.get(item.id, ()))
        self._turns = turns
        self._index = index
        self._order_dirty = False

    def _render_turn(self, turn: _Turn, width: int) -> None:
        renderable: RenderableType
        if turn.error is not None:
            renderable = Text("⚠ " + turn.error, style="bold red")
        else:
            item = self.conversation.item(turn.key)
            call = self._calls.get(item.id) if item is not None else None
            expanded = turn.key in self._expanded
            renderable = render_item(item, call, expanded) if item is not None else Text("")
        console = self.app.console
        options = console.options.update_width(max(width, 1))
        lines = console.render_lines(renderable, options, pad=False)
        strips = [Strip(line) for line in lines]
        strips.append(Strip.blank(0))
        turn.lines = strips
        turn.width = width

    def _flush(self) -> None:
        if not self._dirty or not self.is_mounted:
            return
        width = max(self.scrollable_content_region.width, 10)
        at_end = self.scroll_offset.y >= self.max_scroll_y - 1
        if self._order_dirty:
            self._rebuild_order()
        offsets = [0]
        total = 0
        for turn in self._turns:
            if turn.width != width:
                self._render_turn(turn, width)
            total += len(turn.lines)
            offsets.append(total)
        self._offsets = offsets
        self._dirty = False
        self.repaints += 1
        self.virtual_size = Size(width, total)
        if at_end:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.refresh()

    def on_resize(self) -> None:
        self.refresh_all()
        self._flush()

    def render_line(self, y: int) -> Strip:
        line_no = self.scroll_offset.y + y
        offsets = self._offsets
        if line_no >= offsets[-1] or not self._turns:
            return Strip.blank(self.size.width, self.rich_style)
        turn_no = bisect.bisect_right(offsets, line_no) - 1
        turn = self._turns[turn_no]
        strip = turn.lines[line_no - offsets[turn_no]]
        return strip.crop_extend(0, self.size.width, self.rich_style)

    # -- export ------------------------------------------------------------------------

    def markdown(self) -> str:
        """The transcript as Markdown (interrupted text marked ~~struck~~)."""
        return transcript_markdown(self.conversation.items)


def transcript_markdown(items: Iterable[ItemView]) -> str:
    out: list[str] = ["# voicecli transcript", ""]
    for item in items:
        if item.type == "function_call":
            out += [f"**function call** `{item.name}`", "", f"```json\n{item.arguments}\n```", ""]
        elif item.type == "function_call_output":
            out += ["**function result**", "", f"```\n{item.output}\n```", ""]
        else:
            role = (item.role or "?").capitalize()
            if item.truncated_at_ms is not None and item.role == "assistant":
                body = interrupted_markdown(item.heard_text, item.unheard_text)
            else:
                body = item.text or ("_(transcribing)_" if item.transcript_pending else "_(audio)_")
            out += [f"**{role}:** {body}", ""]
    return "\n".join(out)


__all__ = ["ConversationView", "ItemView", "TranscriptView", "render_item", "transcript_markdown"]
