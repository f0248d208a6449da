"""The main screen: transcript, event log, status bar and footer, with the key actions
bound from the config; the connection banner and the audio warnings above them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Static

from voicecli.config import DEFAULT_KEYS
from voicecli.engine.status import EngineStatus, TurnMode
from voicecli.ui.widgets.eventlog import EventLog
from voicecli.ui.widgets.status import StatusBar
from voicecli.ui.widgets.transcript import ConversationView, TranscriptView


class Action(NamedTuple):
    """One main-screen key action.

    ``id`` is the config's action name (``[keys]`` table, :data:`DEFAULT_KEYS`) and the
    binding id, so a keymap built from the config rebinds it; ``method`` names the
    ``action_*`` method it runs.
    """

    id: str
    method: str
    label: str
    help: str
    footer: bool = True
    """Shown in the footer (all are in the command palette)."""

    @property
    def default_keys(self) -> str:
        return DEFAULT_KEYS[self.id]


ACTIONS: tuple[Action, ...] = (
    Action("push_to_talk", "push_to_talk", "Talk", "Push-to-talk: start, or stop and commit"),
    Action("commit", "commit", "Commit", "Commit the input buffer and ask for a response"),
    Action(
        "cancel",
        "cancel",
        "Cancel",
        "Cancel the response, stop playback, truncate to the heard part",
    ),
    Action("clear", "clear", "Clear", "Clear the input buffer and the local pre-roll"),
    Action(
        "reconnect",
        "reconnect",
        "Reconnect",
        "Reconnect now (skip the wait, or resume after stopping)",
        footer=False,  # the connection banner names it when it matters
    ),
    Action("mute", "mute", "Mute", "Mute or unmute the microphone"),
    Action(
        "turn_mode",
        "cycle_turn_mode",
        "Mode",
        "Cycle turn mode (push-to-talk, local/server/semantic VAD)",
    ),
    Action("session", "session", "Session", "Open the session editor"),
    Action("text", "text", "Text", "Type a text message"),
    Action("log", "toggle_log", "Log", "Show or hide the event log"),
    Action("save", "save", "Save", "Save the transcript as Markdown"),
    Action("quit", "quit", "Quit", "Quit cleanly"),
)


FOOTER_IDS = frozenset(a.id for a in ACTIONS if a.footer)
WIDE_ONLY = frozenset({"commit", "clear", "save"})
"""Footer keys left out below :data:`COMPACT_FOOTER_BELOW` columns (all stay bound and
in the command palette)."""
COMPACT_FOOTER_BELOW = 120
"""Terminal width (columns) under which the footer drops its padding."""


class ConnectionBanner(Static):
    """Shown while the connection is not up: reconnecting (attempt n) or failed.

    It wraps rather than cut its hints in a narrow terminal."""

    DEFAULT_CSS = """
    ConnectionBanner {
        height: auto; background: $warning; color: $text; display: none; padding: 0 1;
    }
    ConnectionBanner.failed { background: $error; }
    """

    def show_state(self, state: str, detail: str, keys: Mapping[str, str]) -> None:
        """``keys``: action id -> the key to name in hints (``cancel``, ``reconnect``)."""
        if state in ("reconnecting", "offline", "failed"):
            text = f"connection {state}" + (f": {detail}" if detail else "")
            if state == "reconnecting":
                text += (
                    f"  ·  {keys['reconnect']}: retry now  ·  {keys['cancel']}: stop"
                    "  (the conversation is replayed when it is back)"
                )
            elif state == "offline":
                text += f"  ·  {keys['reconnect']}: reconnect  (typed messages wait)"
            self.update(Text(text, style="bold"))
            self.set_class(state != "reconnecting", "failed")
            self.display = True
        else:
            self.display = False


class AudioWarning(Static):
    """The start-up audio notices (no microphone, no speaker), kept on screen: a toast
    alone is gone in seconds, the missing device is not."""

    DEFAULT_CSS = """
    AudioWarning { height: auto; color: $warning; padding: 0 1; display: none; }
    """

    def show_notices(self, notices: Sequence[str]) -> None:
        self.update(Text("\n".join(f"⚠ {n}" for n in notices)))
        self.display = bool(notices)


def first_hint(mode: TurnMode, key: Callable[[str], str]) -> str:
    """The empty transcript's one line: how to talk in ``mode``, type, and get help.

    ``key(action_id)`` names the key bound to an action.
    """
    talk = {
        "push-to-talk": f"press {key('push_to_talk')} to talk, again to send",
        "local-vad": "just speak: a pause ends your turn",
        "server-vad": "just speak: the server hears when you pause",
        "semantic-vad": "just speak: the server hears when you are done",
    }[mode]
    return f"{talk} ({key('turn_mode')}: mode) · {key('text')}: type · ctrl+p: commands"


class MainScreen(Screen[None]):
    """Transcript, optional event log, status bar, footer."""

    BINDINGS = [
        Binding(
            a.default_keys,
            f"app.{a.method}",
            a.label,
            show=a.footer,
            id=a.id,
            priority=a.id == "quit",
        )
        for a in ACTIONS
    ]

    def __init__(
        self,
        conversation: ConversationView,
        status: EngineStatus,
        clock: Callable[[], float],
        *,
        show_cost: bool = True,
        keys: Mapping[str, str] | None = None,
        notices: Sequence[str] = (),
        hint: str = "",
    ) -> None:
        super().__init__()
        self._notices = notices
        self._hint = hint
        self._conversation = conversation
        self._status = status
        self._clock = clock
        self._show_cost = show_cost
        if keys:
            # Rebound here too, not only through the app's keymap: Textual drops the keys
            # a focused Input consumes *before* it applies the keymap, so with the event
            # log's filter focused a key rebound to f2 would be lost with its default v.
            self._bindings.apply_keymap(keys)

    def compose(self) -> ComposeResult:
        yield ConnectionBanner(id="banner")
        yield AudioWarning(id="audio-warning")
        with Horizontal(id="body"):
            yield TranscriptView(self._conversation, id="transcript")
            yield EventLog(id="eventlog")
        yield StatusBar(self._status, clock=self._clock, show_cost=self._show_cost, id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(EventLog).display = False
        self.query_one(AudioWarning).show_notices(self._notices)
        transcript = self.query_one(TranscriptView)
        transcript.hint = self._hint
        transcript.focus()

    def on_resize(self) -> None:
        # a narrow footer drops its padding and the keys named elsewhere (the palette,
        # the first-screen hint), so the ones a user needs stay visible at 80 columns
        narrow = self.size.width < COMPACT_FOOTER_BELOW
        self.query_one(Footer).compact = narrow
        bindings = self._bindings.key_to_bindings
        for key, bound in bindings.items():
            bindings[key] = [
                dataclasses.replace(
                    b, show=b.id in FOOTER_IDS and not (narrow and b.id in WIDE_ONLY)
                )
                if b.id in FOOTER_IDS or b.id in WIDE_ONLY
                else b
                for b in bound
            ]
        self.refresh_bindings()
