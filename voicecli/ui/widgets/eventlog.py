"""The event log pane: every wire event, newest last, filterable, expandable to JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

MAX_ENTRIES = 5000
SECRET_KEYS = re.compile(r"(api[_-]?key|authorization|secret|token_value|client_secret)", re.I)
SECRET_VALUE = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|ek_[A-Za-z0-9_\-]{8,})")


def redact(value: Any) -> Any:
    """A copy with secret-looking keys and values masked (the engine redacts too)."""
    if isinstance(value, Mapping):
        return {
            k: ("<redacted>" if SECRET_KEYS.search(str(k)) and isinstance(v, str) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return SECRET_VALUE.sub("<redacted>", value)
    return value


def summarize(event: Mapping[str, Any]) -> str:
    """One line describing an event beyond its type."""
    kind = str(event.get("type", "?"))
    if kind == "error":
        err = event.get("error") or {}
        return f"{err.get('code') or err.get('type')}: {err.get('message', '')}"
    if "delta" in event and isinstance(event["delta"], str):
        return repr(event["delta"][:60])
    if kind.startswith("session."):
        session = event.get("session") or {}
        return ", ".join(sorted(k for k in session if k != "type"))[:80]
    if "item" in event and isinstance(event["item"], Mapping):
        item = event["item"]
        return f"{item.get('type', '')} {item.get('role', '') or ''} {item.get('id', '')}".strip()
    if "response" in event and isinstance(event["response"], Mapping):
        resp = event["response"]
        return f"{resp.get('id', '')} {resp.get('status', '')}".strip()
    for key in ("item_id", "response_id", "audio"):
        if key in event:
            return f"{key}={event[key]}"
    return ""


def _text_delta(event: Mapping[str, Any]) -> str:
    delta = event.get("delta")
    return delta if isinstance(delta, str) and not delta.startswith("<audio") else ""


@dataclass
class Entry:
    direction: str
    event: dict[str, Any]
    count: int = 1
    merged_text: str = ""

    @property
    def type(self) -> str:
        return str(self.event.get("type", "?"))

    def merge_key(self) -> tuple[str, str, Any] | None:
        if not self.type.endswith(".delta"):
            return None
        return (self.direction, self.type, self.event.get("item_id"))

    def line(self) -> Text:
        arrow = "→" if self.direction == "sent" else "←"
        style = "cyan" if self.direction == "sent" else "green"
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f"{arrow} ", style=style)
        t.append(self.type, style="bold red" if self.type == "error" else style)
        if self.count > 1:
            t.append(f" x{self.count}", style="yellow")
            if self.merged_text:
                t.append(f"  {self.merged_text[-60:]!r}", style="dim")
        else:
            t.append(f"  {summarize(self.event)}", style="dim")
        return t

    def matches(self, needle: str) -> bool:
        return not needle or needle in self.type.lower() or needle in self.direction

    def pretty(self) -> str:
        body = json.dumps(self.event, indent=2, ensure_ascii=False, default=str)
        if self.count > 1:
            body += f"\n(+{self.count - 1} merged deltas; text so far: {self.merged_text!r})"
        return body


class EventLog(Vertical):
    """Filter box, one line per event (consecutive deltas of one item merged), JSON detail."""

    DEFAULT_CSS = """
    EventLog { width: 40%; border-left: solid $primary; }
    EventLog > Input { height: 3; }
    EventLog > OptionList { height: 2fr; }
    EventLog > #event-detail { height: 1fr; overflow-y: auto; border-top: solid $primary; }
    """

    BINDINGS = [Binding("escape", "leave", "Back", id="eventlog_leave")]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.entries: list[Entry] = []
        self._shown: list[int] = []
        self._needle = ""
        self._pending: list[tuple[str, Mapping[str, Any]]] = []
        self._batch: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter events (type, sent, received)", id="event-filter")
        yield OptionList(id="event-list")
        yield Static("select an event to see its JSON", id="event-detail")

    def on_mount(self) -> None:
        # runs only while the log is shown and events wait: a hidden log costs nothing
        self._batch = self.set_interval(0.1, self.flush, name="eventlog-flush")
        self._batch.pause()

    def focus_filter(self) -> None:
        self.query_one("#event-filter", Input).focus()

    def action_leave(self) -> None:
        """Escape in the log: back to the transcript, where the keys act again."""
        self.screen.query_one("#transcript").focus()

    def add(self, direction: str, event: Mapping[str, Any]) -> None:
        """Queue one event; :meth:`flush` (10 per second, while shown) renders the batch."""
        self._pending.append((direction, event))
        if len(self._pending) > MAX_ENTRIES:
            del self._pending[: MAX_ENTRIES // 10]
        if self.display and self._batch is not None:
            self._batch.resume()

    def flush(self) -> None:
        """Merge queued events into entries and add their lines in one batch."""
        if not self._pending or not self.display or not self.is_mounted:
            if self._batch is not None:
                self._batch.pause()
            return
        pending, self._pending = self._pending, []
        olist = self.query_one(OptionList)
        first_new = len(self.entries)
        last_changed = False
        for direction, event in pending:
            entry = Entry(direction, redact(dict(event)))
            last = self.entries[-1] if self.entries else None
            key = entry.merge_key()
            if last is not None and key is not None and last.merge_key() == key:
                if last.count == 1:
                    last.merged_text = _text_delta(last.event)
                last.count += 1
                last.merged_text += _text_delta(entry.event)
                if len(self.entries) - 1 < first_new:
                    last_changed = True
                continue
            self.entries.append(entry)
        if len(self.entries) > MAX_ENTRIES:
            del self.entries[: len(self.entries) - MAX_ENTRIES]
            self._refilter()
            return
        at_end = olist.highlighted is None or olist.highlighted >= olist.option_count - 1
        if last_changed and self._shown and self._shown[-1] == first_new - 1:
            olist.replace_option_prompt_at_index(
                len(self._shown) - 1, self.entries[first_new - 1].line()
            )
        new = [
            i for i in range(first_new, len(self.entries)) if self.entries[i].matches(self._needle)
        ]
        self._shown.extend(new)
        olist.add_options([Option(self.entries[i].line()) for i in new])
        if at_end and olist.option_count:
            olist.scroll_end(animate=False)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "event-filter":
            self._needle = event.value.strip().lower()
            self._refilter()

    def _refilter(self) -> None:
        self._shown = [i for i, e in enumerate(self.entries) if e.matches(self._needle)]
        olist = self.query_one(OptionList)
        olist.clear_options()
        olist.add_options([Option(self.entries[i].line()) for i in self._shown])

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._show_detail(event.option_index)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self._show_detail(event.option_index)

    def _show_detail(self, index: int) -> None:
        if 0 <= index < len(self._shown):
            detail = self.query_one("#event-detail", Static)
            detail.update(Text(self.entries[self._shown[index]].pretty()))
