"""The voicecli terminal UI: :class:`VoiceApp`, over an engine built by
:mod:`voicecli.compose` (``voicecli.cli`` runs it).

The engine runs as a Textual async worker on the app's own asyncio loop. Its
notifications arrive in :meth:`VoiceApp._forward_note`, which only posts Textual
messages; handlers on the UI side update the widgets. Key actions call the engine's
non-blocking action methods; what the server answers shows in the status bar.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from textual import events, work
from textual.app import App, SystemCommand
from textual.screen import Screen

from voicecli.config import DEFAULT_KEYS
from voicecli.engine.notifications import (
    ConnectionChanged,
    EventLogged,
    Notice,
    StatusChanged,
    ToolCallChanged,
)
from voicecli.engine.status import EngineStatus, TurnMode
from voicecli.files import PRIVATE, write_file
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
from voicecli.ui.screens.main import (
    ACTIONS,
    Action,
    AudioWarning,
    ConnectionBanner,
    MainScreen,
    first_hint,
)
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


UNFREEZE_EVERY = 50
"""Heap settles (one per reply) between two full garbage collections (see
:meth:`VoiceApp._settle_heap`)."""

SENT_ACKS: Mapping[str, str] = {
    "input_audio_buffer.commit": "commit sent…",
    "response.cancel": "cancel sent…",
    "input_audio_buffer.clear": "clear sent…",
}
"""Status-bar text once the event a key asked for has really gone out."""


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
            # private, like the session logs: a transcript is a conversation
            write_file(path, self.transcript.markdown().encode("utf-8"), new_mode=PRIVATE)
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


__all__ = [
    "ACTIONS",
    "Action",
    "AudioWarning",
    "ConnectionBanner",
    "EngineLike",
    "MainScreen",
    "VoiceApp",
    "first_hint",
    "release_heap",
]
