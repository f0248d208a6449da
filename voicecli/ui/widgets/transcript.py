"""The conversation as a chat, fast with thousands of turns and a stream of deltas.

A line-API :class:`ScrollView`: every turn caches its rendered lines for the current
width; a delta only marks its turn dirty, and a ~30 fps timer re-renders the dirty
turns, fixes the line offsets and repaints once. Nothing re-renders the whole log, and
only the visible lines are painted.

The view follows the newest line while the user is at the bottom. Whether it follows is
a state of its own (:attr:`TranscriptView.following`), changed only by where the user
scrolls: it cannot be read off the scroll offset at flush time, because Textual allows
a scroll only once a layout has shown the scrollbar, so the first flush that overflows
the view could not scroll and left it "not at the end" for good.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from time import monotonic
from typing import Protocol

from rich.console import Group, RenderableType
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer

from voicecli.history import interrupted_markdown

FRAME_S = 1 / 30
TRANSCRIPT_TIMEOUT_S = 30.0
"""A user turn shows "… transcribing" this long, then "(no transcript)"."""
NEW = -1
"""A turn's width when its content changed (a delta, a new item)."""
STALE = -2
"""A turn's width when only its rendering is out of date (a resize)."""
NEW_MARKER = " ↓ new (End) "
"""Painted over the bottom-right corner while new lines wait below the view."""


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
    width: int = NEW
    """Width the lines were rendered for; :data:`NEW` or :data:`STALE` to re-render."""


ROLE_STYLE = {"user": "bold cyan", "assistant": "bold green", "system": "bold magenta"}


FOLD_AT = 100
"""Characters of a tool call's arguments or output shown on its one line."""
CALL_STATUS_STYLE = {
    "done": "green",
    "approved": "green",
    "declined": "yellow",
    "waiting": "bold magenta",
}


def fold(text: str, limit: int = FOLD_AT) -> str:
    """``text`` on one line, cut at ``limit`` characters."""
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


HOSTED_MCP_ITEMS = {
    "mcp_list_tools": ("⇄ MCP ", "tools listed"),
    "mcp_approval_request": ("⇄ MCP approval? ", "?"),
    "mcp_approval_response": ("⇄ MCP ", "approval answered"),
    "mcp_call": ("⇄ MCP ", "?"),
}
"""A hosted MCP server's items (the service calls it): each one line, its mark and the
name shown when the item has none."""


def call_status(status: str, elapsed_ms: float) -> str:
    """A call's status as shown: running / done in N ms / declined / failed..."""
    if status == "waiting":
        return "waiting for approval"
    if status in ("done", "failed", "timeout"):
        return f"{status} in {elapsed_ms:.0f} ms"
    return status


def render_item(
    item: ItemView,
    call: tuple[str, float] | None = None,
    expanded: bool = False,
    *,
    transcript_given_up: bool = False,
) -> RenderableType:
    """One turn as Rich text: a role header line and the body. A function call is one
    line (``call``: its status and time, when known); its output one folded line, or
    all of it when ``expanded``. ``transcript_given_up``: the user's transcription is
    still pending but has waited longer than :data:`TRANSCRIPT_TIMEOUT_S` (the server
    may never send it)."""
    if item.type == "function_call" or item.type in HOSTED_MCP_ITEMS:
        mark, default = ("ƒ ", "?") if item.type == "function_call" else HOSTED_MCP_ITEMS[item.type]
        line = Text(mark, style="bold yellow") + Text(item.name or default, style="bold")
        line.append(f" {fold(item.arguments or '', FOLD_AT // 2)}", style="yellow")
        if call is not None:
            status, elapsed_ms = call
            style = CALL_STATUS_STYLE.get(status, "red" if status != "running" else "dim")
            line.append(f"  {call_status(status, elapsed_ms)}", style=style)
        if item.type == "mcp_call" and item.output:
            line.append(f"  → {fold(item.output, FOLD_AT // 2)}", style="yellow")
        return line
    if item.type == "function_call_output":
        output = item.output or ""
        shown = output if expanded else fold(output)
        return Text("  ↳ ", style="bold yellow") + Text(shown, style="yellow")
    role = item.role or "?"
    head = Text(role, style=ROLE_STYLE.get(role, "bold"))
    # cut off while generating (incomplete), or while playing (truncated to what was heard:
    # the response had already finished, so its status stays completed)
    if item.status == "incomplete" or (item.truncated_at_ms is not None and role == "assistant"):
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
        elif role == "user" and item.transcript_pending and transcript_given_up:
            body.append("(no transcript)", style="dim italic")
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
        self._frame: Timer | None = None
        self._error_count = 0
        self._calls: dict[str, tuple[str, float]] = {}  # call item id -> status, ms
        self._expanded: set[str] = set()  # tool outputs shown whole (a click toggles)
        self._pending_since: dict[str, float] = {}  # item id -> first shown transcribing
        self._rechecks: set[str] = set()  # item ids with a timeout timer running
        self._hint = ""
        self.following = True
        """The view scrolls to each new line; False once the user scrolls up."""
        self.unseen = False
        """New lines arrived below the view while not following (shows the marker)."""
        self.repaints = 0
        """Number of flushes that changed something (the benchmark reads it)."""

    @property
    def hint(self) -> str:
        """Shown while the conversation is empty (how to talk, type, get help)."""
        return self._hint

    @hint.setter
    def hint(self, text: str) -> None:
        self._hint = text
        self.refresh()

    def on_mount(self) -> None:
        # runs only while something waits to be shown: an idle view costs no wake-ups
        self._frame = self.set_interval(FRAME_S, self._flush, name="transcript-flush")
        if not self._dirty:
            self._frame.pause()

    def _mark(self) -> None:
        if not self._dirty:
            self._dirty = True
            if self._frame is not None:
                self._frame.resume()

    # -- input, cheap: only marks ----------------------------------------------------

    def item_changed(self, item_id: str) -> None:
        """An item's text or status changed (delta, done, truncation, transcription)."""
        turn = self._index.get(item_id)
        if turn is None:
            self._order_dirty = True
        else:
            turn.width = NEW
        self._mark()

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
        self._mark()

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
            if turn.width != NEW:
                turn.width = STALE
        self._mark()

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
            given_up = item is not None and self._transcript_given_up(item)
            renderable = (
                render_item(item, call, expanded, transcript_given_up=given_up)
                if item is not None
                else Text("")
            )
        console = self.app.console
        options = console.options.update_width(max(width, 1))
        lines = console.render_lines(renderable, options, pad=False)
        strips = [Strip(line) for line in lines]
        strips.append(Strip.blank(0))
        turn.lines = strips
        turn.width = width

    def _transcript_given_up(self, item: ItemView) -> bool:
        if not (item.role == "user" and item.transcript_pending):
            self._pending_since.pop(item.id, None)
            return False
        now = monotonic()
        left = self._pending_since.setdefault(item.id, now) + TRANSCRIPT_TIMEOUT_S - now
        if left <= 0:
            return True
        if item.id not in self._rechecks:
            # show the verdict when it is due, even if nothing else changes the turn
            self._rechecks.add(item.id)
            self.set_timer(left, lambda: self._recheck(item.id))
        return False

    def _recheck(self, item_id: str) -> None:
        self._rechecks.discard(item_id)
        self.item_changed(item_id)

    def _flush(self) -> None:
        if not self._dirty or not self.is_mounted:
            if self._frame is not None:
                self._frame.pause()
            return
        width = max(self.scrollable_content_region.width, 10)
        repaint_all = self._order_dirty
        if self._order_dirty:
            self._rebuild_order()
        offsets = [0]
        total = 0
        changed_start: int | None = None  # first line of the first re-rendered turn
        changed_end = 0  # end line of the lowest turn re-rendered for new content
        for turn in self._turns:
            if turn.width != width:
                new_content = turn.width == NEW
                if changed_start is None:
                    changed_start = total
                self._render_turn(turn, width)
                if new_content:
                    changed_end = total + len(turn.lines)
            total += len(turn.lines)
            offsets.append(total)
        bottom = self.scroll_offset.y + self.scrollable_content_region.height
        new_below = total > self._offsets[-1] or changed_end > bottom
        old_total = self._offsets[-1]
        self._offsets = offsets
        self._dirty = False
        self.repaints += 1
        self.virtual_size = Size(width, total)
        if self.following:
            # force: the scrollbar that permits scrolling appears only at the next layout
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True, force=True)
        elif new_below and not self.unseen:
            self.unseen = True
            repaint_all = True  # the marker
        if repaint_all or changed_start is None:
            self.refresh()
        else:
            # a streamed delta repaints the lines from its turn down, not the whole view
            # (a scroll that follows repaints everything by itself)
            self.refresh_lines(changed_start, max(total, old_total) - changed_start)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # only the user moves the view off the end (the flush scrolls to it); the
        # scroll that reaches the end again resumes following
        following = round(new_value) >= self.max_scroll_y
        if following != self.following:
            self.following = following
            if following:
                self.unseen = False
            self.refresh()

    def on_resize(self) -> None:
        self.refresh_all()
        self._flush()

    def render_line(self, y: int) -> Strip:
        line_no = self.scroll_offset.y + y
        offsets = self._offsets
        if not self._turns and line_no == 0 and self._hint:
            return self._hint_strip()
        if line_no >= offsets[-1] or not self._turns:
            return Strip.blank(self.size.width, self.rich_style)
        turn_no = bisect.bisect_right(offsets, line_no) - 1
        turn = self._turns[turn_no]
        strip = turn.lines[line_no - offsets[turn_no]]
        strip = strip.crop_extend(0, self.size.width, self.rich_style)
        if self.unseen and y == self.size.height - 1:
            strip = self._with_marker(strip)
        return strip

    def _hint_strip(self) -> Strip:
        text = Text(self._hint, style="dim italic", no_wrap=True, overflow="ellipsis")
        width = self.scrollable_content_region.width
        text.truncate(max(width, 1), overflow="ellipsis")
        segments = list(text.render(self.app.console))
        return Strip(segments).crop_extend(0, self.size.width, self.rich_style)

    def _with_marker(self, strip: Strip) -> Strip:
        width = self.scrollable_content_region.width  # inside the padding
        start = max(width - len(NEW_MARKER), 0)
        marker = Strip([Segment(NEW_MARKER[: width - start], Style(reverse=True, bold=True))])
        return Strip.join([strip.crop(0, start), marker, strip.crop(width)])

    # -- export ------------------------------------------------------------------------

    def markdown(self) -> str:
        """The transcript as Markdown (interrupted text marked ~~struck~~)."""
        return transcript_markdown(self.conversation.items)


def transcript_markdown(items: Iterable[ItemView]) -> str:
    out: list[str] = ["# voicecli transcript", ""]
    for item in items:
        if item.type == "function_call" or item.type == "mcp_call":
            out += [f"**function call** `{item.name}`", "", f"```json\n{item.arguments}\n```", ""]
            if item.type == "mcp_call":
                out += ["**MCP result**", "", f"```\n{item.output or ''}\n```", ""]
        elif item.type in HOSTED_MCP_ITEMS:
            continue
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
