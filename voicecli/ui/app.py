"""The voicecli terminal UI: :class:`VoiceApp`, over an engine built by
:mod:`voicecli.compose` (``voicecli.cli`` runs it).

The engine runs as a Textual async worker on the app's own asyncio loop. Its
notifications arrive in :meth:`VoiceApp._forward_note`, which only posts Textual
messages; handlers on the UI side update the widgets. Key actions call the engine's
non-blocking action methods; what the server answers shows in the status bar.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Static

from voicecli.config import DEFAULT_KEYS
from voicecli.engine.notifications import (
    ConnectionChanged,
    EventLogged,
    Notice,
    StatusChanged,
    ToolCallChanged,
)
from voicecli.engine.status import EngineStatus, TurnMode
from voicecli.protocol.notifications import (
    InputCleared,
    InputCommitted,
    InputTimeout,
    ItemAdded,
    ItemChanged,
    ItemDeleted,
    ItemTruncated,
    Notification,
    ResponseDone,
    ServerError,
    SessionChanged,
    TranscriptDelta,
    TranscriptDone,
    TranscriptFailed,
)
from voicecli.ui.messages import EngineNote, EngineStopped, StatusUpdate
from voicecli.ui.screens.session_editor import SessionEditor
from voicecli.ui.screens.text_input import TextInputScreen
from voicecli.ui.screens.tool_approval import approval_prompt
from voicecli.ui.widgets.eventlog import EventLog
from voicecli.ui.widgets.status import StatusBar
from voicecli.ui.widgets.transcript import ConversationView, TranscriptView

if TYPE_CHECKING:
    from voicecli.config import Config
    from voicecli.session import SessionModel


class SessionConversation(ConversationView, Protocol):
    """The parts of the protocol's ``Conversation`` the app reads."""

    @property
    def session(self) -> Mapping[str, Any] | None: ...
    @property
    def assistant_has_audio(self) -> bool: ...


class EngineLike(Protocol):
    """The engine surface the UI uses (``voicecli.engine.Engine`` implements it)."""

    @property
    def conversation(self) -> SessionConversation: ...
    @property
    def status(self) -> EngineStatus: ...
    @property
    def session(self) -> SessionModel: ...
    def subscribe(self, callback: Callable[[Notification], None]) -> Callable[[], None]: ...
    async def run(self) -> None: ...
    async def close(self) -> None: ...
    def push_to_talk(self) -> None: ...
    def commit(self) -> None: ...
    def cancel(self) -> None: ...
    def reconnect_now(self) -> bool: ...
    def stop_reconnecting(self) -> bool: ...
    def clear_input(self) -> None: ...
    def toggle_mute(self) -> None: ...
    def cycle_turn_mode(self) -> TurnMode: ...
    def send_text(self, text: str, *, respond: bool = True) -> None: ...
    def update_session(self, changes: Mapping[str, Any]) -> str: ...


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


UNFREEZE_EVERY = 50
"""Heap settles (one per reply) between two full garbage collections (see
:meth:`VoiceApp._settle_heap`)."""

SENT_ACKS: Mapping[str, str] = {
    "input_audio_buffer.commit": "commit sent…",
    "response.cancel": "cancel sent…",
    "input_audio_buffer.clear": "clear sent…",
}
"""Status-bar text once the event a key asked for has really gone out."""


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


class VoiceApp(App[int]):
    """The terminal UI over one :class:`~voicecli.engine.Engine`.

    ``notices`` are shown at start (e.g. "no microphone: text mode"). ``run_engine``
    False leaves the engine unstarted (snapshot tests drive state themselves).
    ``clock`` feeds the session-time-left display. ``show_cost`` False hides the cost
    estimate (no API key was sent: nothing is billed).
    """

    CSS_PATH = "voicecli.tcss"
    TITLE = "voicecli"
    ENABLE_COMMAND_PALETTE = True

    def __init__(
        self,
        engine: EngineLike,
        config: Config | None = None,
        *,
        notices: Sequence[str] = (),
        run_engine: bool = True,
        clock: Callable[[], float] = time.time,
        keys: Mapping[str, str] | None = None,
        save_dir: Path | None = None,
        show_cost: bool = True,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.config = config
        self._notices = list(notices)
        self._run_engine = run_engine
        self._clock = clock
        self._keys = dict(keys if keys is not None else _config_keys(config))
        self._save_dir = save_dir
        self._unsubscribe: Callable[[], None] | None = None
        self._quitting = False
        # False once a key unrelated to getting a reply was pressed: a response finishing
        # afterwards must not hide that key's answer in the status bar
        self._reply_ack = True
        self._responses_done = 0
        self._settle_due = False  # a reply ended; the heap is settled once it is quiet
        self._hint_mode: TurnMode = engine.status.turn_mode
        self.main = MainScreen(
            engine.conversation,
            engine.status,
            clock,
            show_cost=show_cost,
            keys=self._keys,
            notices=self._notices,
            hint=first_hint(self._hint_mode, self._key_name),
        )
        self.last_saved: Path | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def on_mount(self) -> None:
        if self._keys:
            self.set_keymap(self._keys)
        self.push_screen(self.main)
        self._unsubscribe = self.engine.subscribe(self._forward_note)
        tools = getattr(self.engine, "tools", None)  # tool calls ask through a modal
        if tools is not None:
            tools.approver = approval_prompt(self)
        for text in self._notices:
            self.notify(text, severity="warning", timeout=10)

        # the history is laid out by the first refresh: freeze it before audio plays
        self.call_after_refresh(self._settle_heap)
        if self._run_engine:
            self.run_engine()

    @work(exclusive=True, group="engine")
    async def run_engine(self) -> None:
        """The engine's run loop, on the app's asyncio loop."""
        error: str | None = None
        try:
            await self.engine.run()
        except Exception as exc:  # the engine reports its own failures; this is a last resort
            error = f"{type(exc).__name__}: {exc}"
        self.post_message(EngineStopped(error))

    def _forward_note(self, note: Notification) -> None:
        # Runs inside the engine's receive path: only hand the note to the UI queue.
        if isinstance(note, StatusChanged):
            self.post_message(StatusUpdate(note.status))
        else:
            self.post_message(EngineNote(note))

    async def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()

    # -- widgets -----------------------------------------------------------------------

    @property
    def transcript(self) -> TranscriptView:
        return self.main.query_one(TranscriptView)

    @property
    def status_bar(self) -> StatusBar:
        return self.main.query_one(StatusBar)

    @property
    def event_log(self) -> EventLog:
        return self.main.query_one(EventLog)

    def ack(self, text: str) -> None:
        """Show the server's answer to the last action in the status bar."""
        self.status_bar.acknowledge(text)

    def _editor(self) -> SessionEditor | None:
        for screen in self.screen_stack:
            if isinstance(screen, SessionEditor):
                return screen
        return None

    # -- engine notifications -----------------------------------------------------------

    def _show_hint(self, mode: TurnMode) -> None:
        self._hint_mode = mode
        self.transcript.hint = first_hint(mode, self._key_name)

    def on_status_update(self, message: StatusUpdate) -> None:
        self.status_bar.show(message.status)
        if message.status.turn_mode != self._hint_mode:
            self._show_hint(message.status.turn_mode)
        if self._settle_due and message.status.response == "idle":
            self._settle_heap()  # the reply is over and the speaker quiet

    def on_engine_note(self, message: EngineNote) -> None:
        note = message.note
        view = self.transcript
        if isinstance(note, (TranscriptDelta, TranscriptDone, ItemChanged, ItemTruncated)):
            view.item_changed(note.item_id)
            if isinstance(note, ItemTruncated):
                self.ack(f"truncated to {note.audio_end_ms} ms heard")
        elif isinstance(note, EventLogged):
            self.event_log.add(note.direction, note.event)
            if note.direction == "sent":
                self._sent(str(note.event.get("type", "")))
        elif isinstance(note, (ItemAdded, ItemDeleted)):
            view.structure_changed()
        elif isinstance(note, InputCommitted):
            view.structure_changed()
            self.ack("input committed ✓")
        elif isinstance(note, InputCleared):
            self.ack("input buffer cleared ✓")
        elif isinstance(note, InputTimeout):
            self.ack("idle timeout: input committed by the server")
        elif isinstance(note, TranscriptFailed):
            view.item_changed(note.item_id)
            self.ack(f"transcription failed: {note.message}")
        elif isinstance(note, ResponseDone):
            self._response_done(note)
        elif isinstance(note, ServerError):
            text = f"{note.code or note.type or 'error'}: {note.message}"
            view.add_error(text)
            self.ack(f"error {text}")
            self.notify(text, title="server error", severity="error", timeout=8)
            editor = self._editor()
            if editor is not None:
                editor.server_error(note)
        elif isinstance(note, SessionChanged):
            editor = self._editor()
            if editor is not None:
                editor.session_updated(note.session)
            if not note.created:
                self.ack("session updated ✓")
        elif isinstance(note, ConnectionChanged):
            hints = {a: self._key_name(a) for a in ("cancel", "reconnect")}
            self.main.query_one(ConnectionBanner).show_state(note.state, note.detail, hints)
        elif isinstance(note, ToolCallChanged):
            view.tool_call_changed(note.item_id, note.status, note.elapsed_ms)
        elif isinstance(note, Notice):
            severity = {"info": "information", "warning": "warning", "error": "error"}[note.level]
            self.notify(note.text, severity=severity, timeout=8)  # type: ignore[arg-type]
            if note.level == "error":
                view.add_error(note.text)

    def _sent(self, kind: str) -> None:
        # The engine sends an action's events only when there is something to act on
        # (no empty commit, no cancel without a response): "sent" is said once they are.
        label = SENT_ACKS.get(kind)
        if label is not None:
            self.ack(label)

    def _response_done(self, note: ResponseDone) -> None:
        self.transcript.structure_changed()
        # settled once the speaker is quiet too (a status update says when; queued
        # updates replace each other, so the engine's own status is looked at here)
        self._settle_due = True
        if self.engine.status.response == "idle":
            self._settle_heap()
        if note.status == "cancelled":
            self.ack("response cancelled ✓")
        elif note.status == "completed":
            if self._reply_ack:
                self.ack("response done")
        else:
            reason = f" ({note.why})" if note.why else ""
            self.ack(f"response {note.status}{reason}")
            if note.status != "failed":  # a failure comes as the engine's error notice
                self.notify(f"response {note.status}{reason}", severity="warning")

    def _settle_heap(self) -> None:
        """Between turns, move what survived into Python's permanent GC generation.

        A long conversation holds hundreds of thousands of long-lived objects (rendered
        lines); full collections triggered by a streamed reply would traverse them all
        and stall a frame for 60-80 ms at 2 000 turns (benchmarks/bench_ui.py). Worse,
        a collection holds the GIL, which the speaker's callback needs every 10 ms: at
        a low ``audio.output_latency`` it would underrun (crackle;
        benchmarks/bench_playback_load.py). Frozen objects are skipped, so this runs
        once the history is laid out and then whenever a reply is over and the speaker
        quiet (the settle itself is a collection). Every :data:`UNFREEZE_EVERY` settles
        everything is thawed and collected once, so cycles that died since (closed
        screens) are freed.
        """
        self._settle_due = False
        self._responses_done += 1
        if self._responses_done % UNFREEZE_EVERY == 0:
            gc.unfreeze()
        gc.collect()
        gc.freeze()

    def on_engine_stopped(self, message: EngineStopped) -> None:
        if message.error:
            self.notify(message.error, title="engine stopped", severity="error", timeout=30)
        elif not self._quitting:
            self.ack("engine stopped")

    # -- key actions ------------------------------------------------------------------

    def on_key(self, event: events.Key) -> None:
        # a key that bubbled up unhandled while the message box is open was typed in
        # the burst that opened it (see TextInputScreen.take_stray_key)
        if isinstance(self.screen, TextInputScreen):
            self.screen.take_stray_key(event)

    def action_push_to_talk(self) -> None:
        self._reply_ack = True
        self.engine.push_to_talk()
        self.ack(f"push-to-talk: mic {self.engine.status.mic}")

    def action_commit(self) -> None:
        self._reply_ack = True
        self.ack("commit requested")
        self.engine.commit()

    def action_cancel(self) -> None:
        if self.screen.query("HelpPanel"):  # escape closes the help panel first
            self.action_hide_help_panel()
            return
        self._reply_ack = False
        if self.engine.stop_reconnecting():  # nothing to cancel while the line is down
            self.ack(f"stopped reconnecting: {self._key_name('reconnect')} to try again")
            return
        self.ack("cancel requested")
        self.engine.cancel()

    def action_reconnect(self) -> None:
        self._reply_ack = False
        if self.engine.reconnect_now():
            self.ack("reconnecting now…")
        else:
            self.ack(f"nothing to reconnect: {self.engine.status.connection}")

    def _key_name(self, action_id: str) -> str:
        """The first key bound to an action, as the user would type it."""
        return (self._keys.get(action_id) or DEFAULT_KEYS[action_id]).split(",")[0]

    def action_clear(self) -> None:
        self._reply_ack = False
        self.ack("clear requested")
        self.engine.clear_input()

    def action_mute(self) -> None:
        self._reply_ack = False
        self.engine.toggle_mute()
        self.ack(f"mic {self.engine.status.mic}")

    def action_cycle_turn_mode(self) -> None:
        self._reply_ack = False
        mode = self.engine.cycle_turn_mode()
        self.ack(f"turn mode {mode}: session.update sent…")

    def action_session(self) -> None:
        if self._editor() is not None:
            return
        conv = self.engine.conversation
        session = conv.session if conv.session is not None else self.engine.session.payload()
        profiles = dict(self.config.profiles) if self.config is not None else {}
        self.push_screen(
            SessionEditor(
                session,
                self.engine.update_session,
                voice_locked=conv.assistant_has_audio,
                profiles=profiles,
            )
        )

    def action_text(self) -> None:
        def send(text: str | None) -> None:
            if text and text.strip():
                self._reply_ack = True
                self.engine.send_text(text)
                self.ack("message sent…")

        self.push_screen(TextInputScreen(), send)

    def action_toggle_log(self) -> None:
        log = self.event_log
        log.display = not log.display
        if log.display:
            log.flush()
            log.focus_filter()  # typed letters filter; they must not trigger keys
        else:
            self.transcript.focus()

    def action_save(self) -> None:
        self.transcript.flush_now()
        path = self._save_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.transcript.markdown(), encoding="utf-8")
        except OSError as exc:
            self.notify(f"cannot save the transcript: {exc}", severity="error")
            return
        self.last_saved = path
        self._reply_ack = False
        self.notify(f"transcript saved to {path}", title="saved")
        self.ack(f"saved {path.name}")

    def _save_path(self) -> Path:
        stamp = datetime.fromtimestamp(self._clock()).strftime("%Y%m%d-%H%M%S")
        name = f"transcript-{stamp}.md"
        if self._save_dir is not None:
            return self._save_dir / name
        data_dir = getattr(self.config, "data_dir", None)
        if data_dir:
            return Path(data_dir) / "transcripts" / name
        return Path.cwd() / name

    async def action_quit(self) -> None:
        """Close the engine (audio, socket, logs) and exit."""
        if self._quitting:
            return
        self._quitting = True
        self.ack("closing…")
        with contextlib.suppress(Exception):
            await self.engine.close()
        for worker in self.workers:
            if worker.group == "engine":
                with contextlib.suppress(Exception):
                    await worker.wait()
        self.exit(0)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            if command.title != "Quit" or screen is not self.main:
                yield command  # the main screen's own "Quit (q)" closes the engine first
        if screen is not self.main:
            return
        for action in ACTIONS:
            callback = getattr(self, f"action_{action.method}")
            key = self._key_name(action.id)
            yield SystemCommand(f"{action.label} ({key})", action.help, callback)


def _config_keys(config: Config | None) -> dict[str, str]:
    """``config.keys`` (action -> key, comma-separated alternatives): the app's keymap.

    Config and UI share the action names (:data:`ACTIONS`), so every entry applies; the
    config has already rejected unknown actions and clashing keys.
    """
    if config is None:
        return {}
    return {str(k): str(v) for k, v in config.keys.items()}


def release_heap() -> None:
    """Thaw and collect what :meth:`VoiceApp._settle_heap` froze, once the app is gone.

    Frozen objects are never collected, so without this the engine's soxr resamplers
    (C++ objects behind nanobind) outlive the interpreter's module teardown, and
    nanobind prints ~18 "leaked instance" lines on every quit.
    """
    gc.unfreeze()
    gc.collect()
