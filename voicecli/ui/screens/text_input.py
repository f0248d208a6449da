"""A one-line modal for typing a message to the assistant."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class TextInputScreen(ModalScreen[str | None]):
    """Returns the typed text on enter, None on escape."""

    DEFAULT_CSS = """
    TextInputScreen { align: center bottom; }
    TextInputScreen > Vertical {
        width: 100%; height: auto; padding: 0 1; margin-bottom: 2;
        background: $panel; border-top: solid $accent;
    }
    """
    BINDINGS = [Binding("escape", "dismiss_empty", "Cancel", id="text_cancel")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Message (enter sends, escape cancels)")
            yield Input(placeholder="type a message…", id="message")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_dismiss_empty(self) -> None:
        self.dismiss(None)
