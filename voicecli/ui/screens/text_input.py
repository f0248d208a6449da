"""A one-line modal for typing a message to the assistant."""

from __future__ import annotations

from textual import events
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

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_key(self, event: events.Key) -> None:
        if not self.query_one(Input).has_focus:
            self.take_stray_key(event)

    def take_stray_key(self, event: events.Key) -> None:
        """Put a printable key that missed the input into it.

        Letters typed in the same burst as the key that opened this screen were sent
        on to the main screen's focused widget before this screen existed; they come
        back to the app unhandled (the input stops every key it takes, so the app
        passes it here) or reach this screen before its input has focus. They belong
        in the message.
        """
        field = self.query_one(Input)
        if not event.is_printable or event.character is None:
            return
        event.stop()
        event.prevent_default()
        field.insert_text_at_cursor(event.character)
        field.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_dismiss_empty(self) -> None:
        self.dismiss(None)
