"""First run without an API key: how to set one, or use the offline local server."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static

NO_KEY_EXIT = 2
"""Exit code of ``voicecli`` when no key was found (the UI explains how to set one)."""


def no_key_text(env_name: str) -> Text:
    t = Text()
    t.append("No OpenAI API key found\n\n", style="bold red")
    t.append("voicecli talks to the OpenAI Realtime API and needs a key. Either:\n\n")
    t.append(f"  • export {env_name}=sk-…", style="bold")
    t.append("   (in your shell profile)\n")
    t.append("  • set ")
    t.append('api_key_command = "pass show openai"', style="bold")
    t.append(" in ~/.config/voicecli/config.toml\n\n")
    t.append("Or try everything offline against the built-in local server:\n\n")
    t.append("  voicecli --local", style="bold green")
    t.append("\n\nPress q to quit.", style="dim")
    return t


class NoKeyScreen(Screen[int]):
    """Explains how to provide a key; q exits with :data:`NO_KEY_EXIT`."""

    DEFAULT_CSS = """
    NoKeyScreen { align: center middle; }
    NoKeyScreen Vertical {
        width: 80; max-width: 100%; height: auto; max-height: 100%;
        border: round $error; padding: 1 2;
    }
    """
    BINDINGS = [
        Binding("q", "quit_no_key", "Quit", id="quit"),
        Binding("escape", "quit_no_key", "Quit", show=False, id="quit_escape"),
    ]

    def __init__(self, env_name: str = "OPENAI_API_KEY") -> None:
        super().__init__()
        self.env_name = env_name

    def compose(self) -> ComposeResult:
        with Center(), Vertical():
            yield Static(no_key_text(self.env_name), id="no-key-text")
        yield Footer()

    def action_quit_no_key(self) -> None:
        self.app.exit(NO_KEY_EXIT)


class NoKeyApp(App[int]):
    """A tiny app that shows only :class:`NoKeyScreen`."""

    TITLE = "voicecli"

    def __init__(self, env_name: str = "OPENAI_API_KEY") -> None:
        super().__init__()
        self.env_name = env_name

    def on_mount(self) -> None:
        self.push_screen(NoKeyScreen(self.env_name))
