"""The voicecli terminal UI: :class:`VoiceApp` and :func:`run_app`.

The engine runs as a Textual async worker on the app's own asyncio loop. Its
notifications arrive in :meth:`VoiceApp._forward_note`, which only posts Textual
messages; handlers on the UI side update the widgets. Key actions call the engine's
non-blocking action methods; what the server answers shows in the status bar.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Static

from voicecli.engine.notifications import (
    ConnectionChanged,
    EventLogged,
    Notice,
    StatusChanged,
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
from voicecli.ui.screens.nokey import NO_KEY_EXIT, NoKeyApp
from voicecli.ui.screens.session_editor import SessionEditor
from voicecli.ui.screens.text_input import TextInputScreen
from voicecli.ui.widgets.eventlog import EventLog
from voicecli.ui.widgets.status import StatusBar
from voicecli.ui.widgets.transcript import ConversationView, TranscriptView

if TYPE_CHECKING:
    from voicecli.audio.sinks import AudioSink
    from voicecli.audio.sources import AudioSource
    from voicecli.config import Config


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
    def subscribe(self, callback: Callable[[Notification], None]) -> Callable[[], None]: ...
    async def run(self) -> None: ...
    async def close(self) -> None: ...
    def push_to_talk(self) -> None: ...
    def commit(self) -> None: ...
    def cancel(self) -> None: ...
    def clear_input(self) -> None: ...
    def toggle_mute(self) -> None: ...
    def cycle_turn_mode(self) -> TurnMode: ...
    def send_text(self, text: str, *, respond: bool = True) -> None: ...
    def update_session(self, changes: Mapping[str, Any]) -> str: ...


# (binding id == action name, default keys, footer label, palette help)
ACTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("push_to_talk", "space", "Talk", "Push-to-talk: start, or stop and commit"),
    ("commit", "enter", "Commit", "Commit the input buffer and ask for a response"),
    (
        "cancel",
        "escape",
        "Cancel",
        "Cancel the response, stop playback, truncate to the heard part",
    ),
    ("clear", "ctrl+k", "Clear", "Clear the input buffer and the local pre-roll"),
    ("mute", "m", "Mute", "Mute or unmute the microphone"),
    (
        "cycle_turn_mode",
        "v",
        "Mode",
        "Cycle turn mode (push-to-talk, local/server/semantic VAD)",
    ),
    ("session", "s", "Session", "Open the session editor"),
    ("text", "t,slash", "Text", "Type a text message"),
    ("toggle_log", "l", "Log", "Show or hide the event log"),
    ("save", "ctrl+s", "Save", "Save the transcript as Markdown"),
    ("quit", "q,ctrl+c", "Quit", "Quit cleanly"),
)


class ConnectionBanner(Static):
    """Shown while the connection is not up: reconnecting (attempt n) or failed."""

    DEFAULT_CSS = """
    ConnectionBanner { height: 1; background: $warning; color: $text; display: none; padding: 0 1; }
    ConnectionBanner.failed { background: $error; }
    """

    def show_state(self, state: str, detail: str) -> None:
        if state in ("reconnecting", "failed"):
            text = f"connection {state}" + (f": {detail}" if detail else "")
            if state == "reconnecting":
                text += "  (the conversation is replayed when it is back)"
            self.update(Text(text, style="bold"))
            self.set_class(state == "failed", "failed")
            self.display = True
        else:
            self.display = False


class MainScreen(Screen[None]):
    """Transcript, optional event log, status bar, footer."""

    BINDINGS = [
        Binding(keys, f"app.{action}", label, id=action, priority=action == "quit")
        for action, keys, label, _help in ACTIONS
    ]

    def __init__(
        self, conversation: ConversationView, status: EngineStatus, clock: Callable[[], float]
    ) -> None:
        super().__init__()
        self._conversation = conversation
        self._status = status
        self._clock = clock

    def compose(self) -> ComposeResult:
        yield ConnectionBanner(id="banner")
        with Horizontal(id="body"):
            yield TranscriptView(self._conversation, id="transcript")
            yield EventLog(id="eventlog")
        yield StatusBar(self._status, clock=self._clock, id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(EventLog).display = False
        self.query_one(TranscriptView).focus()


class VoiceApp(App[int]):
    """The terminal UI over one :class:`~voicecli.engine.Engine`.

    ``notices`` are shown at start (e.g. "no microphone: text mode"). ``run_engine``
    False leaves the engine unstarted (snapshot tests drive state themselves).
    ``clock`` feeds the session-time-left display.
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
        self.main = MainScreen(engine.conversation, engine.status, clock)
        self.last_saved: Path | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def on_mount(self) -> None:
        if self._keys:
            self.set_keymap(self._keys)
        self.push_screen(self.main)
        self._unsubscribe = self.engine.subscribe(self._forward_note)
        for text in self._notices:
            self.notify(text, severity="warning", timeout=10)
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

    def on_status_update(self, message: StatusUpdate) -> None:
        self.status_bar.show(message.status)

    def on_engine_note(self, message: EngineNote) -> None:
        note = message.note
        view = self.transcript
        if isinstance(note, (TranscriptDelta, TranscriptDone, ItemChanged, ItemTruncated)):
            view.item_changed(note.item_id)
            if isinstance(note, ItemTruncated):
                self.ack(f"truncated to {note.audio_end_ms} ms heard")
        elif isinstance(note, EventLogged):
            self.event_log.add(note.direction, note.event)
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
            self.main.query_one(ConnectionBanner).show_state(note.state, note.detail)
        elif isinstance(note, Notice):
            severity = {"info": "information", "warning": "warning", "error": "error"}[note.level]
            self.notify(note.text, severity=severity, timeout=8)  # type: ignore[arg-type]
            if note.level == "error":
                view.add_error(note.text)

    def _response_done(self, note: ResponseDone) -> None:
        self.transcript.structure_changed()
        if note.status == "cancelled":
            self.ack("response cancelled ✓")
        elif note.status == "completed":
            self.ack("response done")
        else:
            reason = f" ({note.reason})" if note.reason else ""
            self.ack(f"response {note.status}{reason}")
            self.notify(f"response {note.status}{reason}", severity="warning")

    def on_engine_stopped(self, message: EngineStopped) -> None:
        if message.error:
            self.notify(message.error, title="engine stopped", severity="error", timeout=30)
        elif not self._quitting:
            self.ack("engine stopped")

    # -- key actions ------------------------------------------------------------------

    def action_push_to_talk(self) -> None:
        self.engine.push_to_talk()
        self.ack(f"push-to-talk: mic {self.engine.status.mic}")

    def action_commit(self) -> None:
        self.engine.commit()
        self.ack("commit sent…")

    def action_cancel(self) -> None:
        self.engine.cancel()
        self.ack("cancel sent…")

    def action_clear(self) -> None:
        self.engine.clear_input()
        self.ack("clear sent…")

    def action_mute(self) -> None:
        self.engine.toggle_mute()
        self.ack(f"mic {self.engine.status.mic}")

    def action_cycle_turn_mode(self) -> None:
        mode = self.engine.cycle_turn_mode()
        self.ack(f"turn mode {mode}: session.update sent…")

    def action_session(self) -> None:
        if self._editor() is not None:
            return
        conv = self.engine.conversation
        session = conv.session
        if session is None and self.config is not None:
            session = self.config.session_payload()
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
                self.engine.send_text(text)
                self.ack("message sent…")

        self.push_screen(TextInputScreen(), send)

    def action_toggle_log(self) -> None:
        log = self.event_log
        log.display = not log.display
        if log.display:
            log.flush()

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
        yield from super().get_system_commands(screen)
        if screen is not self.main:
            return
        for action, keys, label, help_text in ACTIONS:
            callback = getattr(self, f"action_{action}")
            key = self._keys.get(action, keys).split(",")[0]
            yield SystemCommand(f"{label} ({key})", help_text, callback)


def _config_keys(config: Config | None) -> dict[str, str]:
    """``config.keys`` (action -> key, comma-separated alternatives) for known actions."""
    keys = getattr(config, "keys", None) or {}
    known = {action for action, *_ in ACTIONS}
    return {str(k): str(v) for k, v in dict(keys).items() if k in known}


def build_audio(config: Config) -> tuple[AudioSource | None, AudioSink | None, list[str]]:
    """The microphone and speaker, or None with a notice saying why (text mode)."""
    notices: list[str] = []
    source: AudioSource | None = None
    sink: AudioSink | None = None
    try:
        from voicecli.audio.devices import PortAudioMissing, find_device
        from voicecli.audio.sinks import DeviceSink
        from voicecli.audio.sources import DeviceSource
    except ImportError as exc:  # pragma: no cover - the audio layer ships with voicecli
        return None, None, [f"audio unavailable ({exc}): text mode"]
    try:
        source = DeviceSource(find_device(config.audio.input_device, kind="input"))
    except PortAudioMissing as exc:
        return None, None, [f"{exc}\nText mode: press t to type."]
    except (OSError, LookupError, ValueError) as exc:
        notices.append(f"no microphone ({exc}): text mode, press t to type")
    try:
        sink = DeviceSink(find_device(config.audio.output_device, kind="output"))
    except (OSError, LookupError, ValueError) as exc:
        notices.append(f"no speaker ({exc}): replies are shown, not played")
    return source, sink, notices


def run_app(config: Config, local: bool, debug: bool) -> int:
    """Run the UI until the user quits; returns the process exit code.

    ``local``: ``config.connection.url`` already points at a local server the caller
    started (no API key needed). Without ``local`` and without a key, a screen explains
    how to set one and the exit code is :data:`NO_KEY_EXIT`.
    """
    api_key: str | None = None
    if not local:
        from voicecli.secrets import resolve_api_key

        api_key = resolve_api_key(config)
        if not api_key:
            code = NoKeyApp(str(config.api_key_env)).run()
            return NO_KEY_EXIT if code is None else int(code)
    from voicecli.engine import Engine

    source, sink, notices = build_audio(config)
    engine = Engine(config, source=source, sink=sink, api_key=api_key)
    app = VoiceApp(engine, config, notices=notices)
    if debug:
        app.notify("debug: events are logged; press l for the event log")
    code = app.run()
    return 0 if code is None else int(code)
