"""The session editor: edit, validate and apply session fields in one ``session.update``.

The form's fields and their mapping to the GA session live in
:mod:`voicecli.session_form`; Apply sends only what changed. The editor then shows the
effective session from ``session.updated``, and a server error for the update on the
field it concerns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Select, Static, TextArea

from voicecli.protocol.notifications import ServerError
from voicecli.session_form import (
    SELECT_FIELDS,
    TEXT_FIELDS,
    changes_from_form,
    field_for_param,
    form_from_session,
    profile_session,
    validate_form,
)

TD_REASONS = {
    "server_vad": "eagerness is greyed out: it applies to semantic_vad only",
    "semantic_vad": "threshold, padding and silence are greyed out: they apply to "
    "server_vad only (semantic_vad judges the end of a turn by meaning)",
    "none": "the VAD fields are greyed out: without turn detection the client ends "
    "each turn (push-to-talk or local VAD)",
}
"""Why fields are greyed out, by turn-detection type."""
TD_FIELDS = ("td_type", "threshold", "prefix_padding_ms", "silence_duration_ms", "eagerness")
LABELS = {
    "instructions": "Instructions",
    "voice": "Voice",
    "speed": "Speed (0.25-1.5)",
    "modality": "Output modality",
    "td_type": "Turn detection",
    "threshold": "VAD threshold (0-1)",
    "prefix_padding_ms": "Prefix padding ms",
    "silence_duration_ms": "Silence duration ms",
    "eagerness": "Eagerness (semantic)",
    "transcription_model": "Transcription model (empty: off)",
    "language": "Transcription language",
    "noise_reduction": "Noise reduction",
    "max_output_tokens": "Max output tokens (1-4096 or inf)",
}


NARROW_WIDTH = 100
"""Below this many columns the editor shows the form alone (the server's effective
session beside it would be a sliver)."""


class SessionEditor(ModalScreen[None]):
    """Edit the session; ``apply(changes) -> event_id`` sends one ``session.update``.
    It fits the terminal: smaller ones scroll the form, narrow ones leave out the
    effective session."""

    DEFAULT_CSS = """
    SessionEditor { align: center middle; }
    SessionEditor > #editor {
        width: 116; height: 38; max-width: 100%; max-height: 100%;
        background: $panel; border: round $accent;
    }
    SessionEditor #form { width: 64; padding: 0 1; }
    SessionEditor.-narrow #form { width: 1fr; }
    SessionEditor.-narrow #effective-pane { display: none; }
    SessionEditor #effective-pane { width: 1fr; padding: 0 1; border-left: solid $primary; }
    SessionEditor .row { height: auto; }
    SessionEditor .row Label.name { width: 22; padding-top: 1; }
    SessionEditor .row Input, SessionEditor .row Select { width: 1fr; }
    SessionEditor TextArea { height: 5; }
    SessionEditor .error { color: $error; height: auto; padding-left: 22; }
    SessionEditor #voice-reason { color: $warning; padding-left: 22; height: auto; }
    SessionEditor #td-reason { color: $text-muted; padding-left: 22; height: auto; }
    SessionEditor #buttons { height: 3; align-horizontal: right; }
    SessionEditor #editor-status { height: auto; }
    """
    BINDINGS = [
        Binding("escape", "close", "Close", id="editor_close"),
        # ctrl+s: text fields keep ctrl+a (line start) for themselves; priority, so a
        # focused TextArea or Input cannot swallow it
        Binding("ctrl+s", "apply", "Apply", id="editor_apply", priority=True),
    ]

    def __init__(
        self,
        session: Mapping[str, Any] | None,
        apply: Callable[[dict[str, Any]], str],
        *,
        voice_locked: bool = False,
        profiles: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.session: Mapping[str, Any] | None = session
        self.initial = form_from_session(session)
        self._apply = apply
        self.voice_locked = voice_locked
        self.profiles = dict(profiles or {})
        self.pending_event_id: str | None = None
        self.last_changes: dict[str, Any] | None = None

    # -- layout --------------------------------------------------------------------------

    def _row(self, name: str) -> ComposeResult:
        value = self.initial[name]
        with Horizontal(classes="row"):
            yield Label(LABELS[name], classes="name")
            if name in SELECT_FIELDS:
                yield Select(
                    [(o, o) for o in SELECT_FIELDS[name]],
                    value=value if value in SELECT_FIELDS[name] else SELECT_FIELDS[name][0],
                    allow_blank=False,
                    id=f"f-{name}",
                )
            else:
                yield Input(value, id=f"f-{name}")
        yield Static("", classes="error", id=f"e-{name}")

    def compose(self) -> ComposeResult:
        with Horizontal(id="editor"):
            with VerticalScroll(id="form"):
                yield Label("[b]Session[/b]  (ctrl+s applies, escape closes)")
                if self.profiles:
                    with Horizontal(classes="row"):
                        yield Label("Profile", classes="name")
                        yield Select(
                            [(n, n) for n in self.profiles], prompt="load a profile…", id="profile"
                        )
                yield Label(LABELS["instructions"])
                yield TextArea(self.initial["instructions"], id="f-instructions")
                yield Static("", classes="error", id="e-instructions")
                yield from self._row("voice")
                yield Static(
                    "voice is fixed: the assistant has already spoken" if self.voice_locked else "",
                    id="voice-reason",
                )
                for name in (
                    "speed",
                    "modality",
                    "td_type",
                    "threshold",
                    "prefix_padding_ms",
                    "silence_duration_ms",
                    "eagerness",
                    "transcription_model",
                    "language",
                    "noise_reduction",
                    "max_output_tokens",
                ):
                    yield from self._row(name)
                    if name == "td_type":
                        yield Static("", id="td-reason")
                yield Static("", id="editor-status")
                with Horizontal(id="buttons"):
                    yield Button("Apply", variant="primary", id="apply")
                    yield Button("Close", id="close")
            with VerticalScroll(id="effective-pane"):
                yield Label("[b]Effective session[/b] (from the server)")
                yield Static(self._effective_text(), id="effective")

        yield Footer()

    def on_mount(self) -> None:
        self.set_class(self.size.width < NARROW_WIDTH, "-narrow")
        self.query_one("#f-voice", Select).disabled = self.voice_locked
        self._sync_td_fields()
        first = "#profile" if self.profiles else "#f-instructions"
        self.query_one(first).focus()

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width < NARROW_WIDTH, "-narrow")

    def _effective_text(self) -> Text:
        if not self.session:
            return Text("(no session.updated yet)", style="dim")
        return Text(json.dumps(self.session, indent=1, ensure_ascii=False, default=str))

    # -- values --------------------------------------------------------------------------

    def values(self) -> dict[str, str]:
        """The current form values."""
        out: dict[str, str] = {"instructions": self.query_one("#f-instructions", TextArea).text}
        for name in SELECT_FIELDS:
            value = self.query_one(f"#f-{name}", Select).value
            out[name] = "" if value is Select.BLANK else str(value)
        for name in TEXT_FIELDS:
            out[name] = self.query_one(f"#f-{name}", Input).value.strip()
        return out

    def set_values(self, values: Mapping[str, str]) -> None:
        for name, value in values.items():
            if name == "instructions":
                self.query_one("#f-instructions", TextArea).text = value
            elif name in SELECT_FIELDS:
                if value in SELECT_FIELDS[name] and not (name == "voice" and self.voice_locked):
                    self.query_one(f"#f-{name}", Select).value = value
            elif name in TEXT_FIELDS:
                self.query_one(f"#f-{name}", Input).value = value
        self._sync_td_fields()

    def _sync_td_fields(self) -> None:
        kind = self.query_one("#f-td_type", Select).value
        for name in ("threshold", "prefix_padding_ms", "silence_duration_ms"):
            self.query_one(f"#f-{name}", Input).disabled = kind != "server_vad"
        self.query_one("#f-eagerness", Select).disabled = kind != "semantic_vad"
        self.query_one("#td-reason", Static).update(TD_REASONS.get(str(kind), ""))

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "f-td_type":
            self._sync_td_fields()
        elif event.select.id == "profile" and event.value is not Select.BLANK:
            self.load_profile(str(event.value))

    def load_profile(self, name: str) -> None:
        """Fill the form from ``config.profiles[name]`` (applied only on Apply)."""
        overrides = self.profiles.get(name)
        if overrides is None:
            return
        merged = form_from_session(profile_session(overrides))
        wanted = {k: v for k, v in merged.items() if _profile_sets(overrides, k)}
        self.set_values(wanted)
        self._status(f"profile {name!r} loaded: Apply to send it", "")

    # -- apply ---------------------------------------------------------------------------

    def _status(self, text: str, style: str) -> None:
        self.query_one("#editor-status", Static).update(Text(text, style=style))

    def _clear_errors(self) -> None:
        for err in self.query(".error").results(Static):
            err.update("")

    def action_apply(self) -> None:
        self._clear_errors()
        values = self.values()
        errors = validate_form(values)
        if errors:
            for name, message in errors.items():
                self.query_one(f"#e-{name}", Static).update(message)
            self._status("fix the marked fields", "bold red")
            return
        changes = changes_from_form(self.initial, values, self.session)
        if not changes:
            self._status("nothing changed", "dim")
            return
        self.last_changes = changes
        self.pending_event_id = self._apply(changes)
        self._status("sent session.update… waiting for session.updated", "yellow")

    def action_close(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "apply":
            self.action_apply()
        elif event.button.id == "close":
            self.action_close()

    # -- server answers (forwarded by the app) -----------------------------------------

    def session_updated(self, session: Mapping[str, Any]) -> None:
        self.session = session
        self.query_one("#effective", Static).update(self._effective_text())
        if self.pending_event_id is not None:
            self.pending_event_id = None
            self.initial = form_from_session(session)
            self._status("applied: session.updated received", "bold green")

    def server_error(self, error: ServerError) -> None:
        if self.pending_event_id is None or error.client_event_id not in (
            None,
            self.pending_event_id,
        ):
            return
        self.pending_event_id = None
        name = field_for_param(error.param)
        if name is not None:
            self.query_one(f"#e-{name}", Static).update(error.message)
        self._status(f"server rejected the update: {error.code or ''} {error.message}", "bold red")


def _profile_sets(overrides: Mapping[str, Any], field: str) -> bool:
    """Whether a profile mentions the setting behind ``field`` (the rest stays as is)."""
    flat = json.dumps(overrides, default=str)
    keys = {
        "instructions": ("instructions",),
        "voice": ("voice",),
        "speed": ("speed",),
        "modality": ("output_modalities",),
        "td_type": ("turn_detection",),
        "threshold": ("threshold",),
        "prefix_padding_ms": ("prefix_padding_ms",),
        "silence_duration_ms": ("silence_duration_ms",),
        "eagerness": ("eagerness",),
        "transcription_model": ("transcription",),
        "language": ("language",),
        "noise_reduction": ("noise_reduction",),
        "max_output_tokens": ("max_output_tokens",),
    }[field]
    return any(f'"{k}"' in flat for k in keys)
