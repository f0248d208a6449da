"""The journal: finished turns to the session's history, through the writer thread.

A turn is final when nothing will change it any more: a typed message at once, spoken
input when its transcript is in (or at once without transcription), an assistant turn
when its response is done and it was heard to its end or cut (its truncation settled).
Each final turn is appended (and fsynced) by the :class:`~voicecli.writer.DiskWriter`,
and :class:`~voicecli.engine.notifications.TurnLogged` is published only once the write
is done, so "logged" in the UI means "on disk". With ``storage.log_events`` every wire
event (audio elided, secrets redacted) also goes to ``<session>.events.jsonl``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from voicecli.engine.notifications import Notice, TurnLogged
from voicecli.history import SessionLog
from voicecli.protocol.conversation import Conversation
from voicecli.protocol.items import Item
from voicecli.protocol.notifications import Notification, ResponseDone
from voicecli.secrets import redact
from voicecli.writer import DiskWriter


def turn_record(item: Item, done: ResponseDone | None) -> dict[str, Any]:
    """The history line of one finished turn."""
    record: dict[str, Any] = {
        "item_id": item.id,
        "type": item.type,
        "role": item.role or "",
        "text": item.text,
    }
    if item.type == "function_call" or item.type == "mcp_call":
        record.update(name=item.name, call_id=item.call_id, arguments=item.arguments)
    if item.type == "mcp_call":
        record.update(output=item.output)
    if item.type == "function_call_output":
        record.update(call_id=item.call_id, output=item.output)
    if item.truncated_at_ms is not None:
        record.update(
            truncated_at_ms=item.truncated_at_ms,
            heard=item.heard_text,
            unheard=item.unheard_text,
        )
    if done is not None:
        record.update(response_id=done.response_id, status=done.status, reason=done.reason)
        if done.error is not None:
            record["error"] = error_record(done)
        if done.usage is not None:
            u = done.usage
            record["usage"] = {
                "input_tokens": u.input_tokens,
                "output_tokens": u.output_tokens,
                "input_audio_tokens": u.input_audio_tokens,
                "input_text_tokens": u.input_text_tokens,
                "input_cached_tokens": u.input_cached_tokens,
                "output_audio_tokens": u.output_audio_tokens,
                "output_text_tokens": u.output_text_tokens,
            }
    return record


def error_record(done: ResponseDone) -> dict[str, str | None]:
    """``status_details.error`` of a failed response, as the history keeps it."""
    error = done.error
    assert error is not None
    return {"type": error.type, "code": error.code, "message": error.message}


class Journal:
    """See the module docstring. ``publish`` runs on the loop (after each write)."""

    def __init__(
        self,
        conversation: Conversation,
        writer: DiskWriter,
        publish: Callable[[Notification], None],
    ) -> None:
        self._conversation = conversation
        self._writer = writer
        self._publish = publish
        self.history: SessionLog | None = None
        self._events: IO[str] | None = None
        self._logged: set[str] = set()
        self._deferred: dict[str, ResponseDone] = {}  # item_id -> its response's end
        self._write_failed = False

    # -- files ---------------------------------------------------------------------------

    def open_events(self, history: SessionLog) -> None:
        """Keep the wire events beside the session's log (``storage.log_events``)."""
        path = history.path.with_suffix(".events.jsonl")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            self._publish(Notice("error", f"cannot keep the event log: {exc}"))
            return
        self._events = os.fdopen(fd, "a", encoding="utf-8")

    @property
    def events_path(self) -> Path | None:
        return Path(self._events.name) if self._events is not None else None

    def log_event(self, direction: str, event: Mapping[str, Any]) -> None:
        """One sanitized wire event (already without audio or secrets)."""
        file = self._events
        if file is None:
            return
        line = redact(json.dumps({"dir": direction, **event}, ensure_ascii=False, default=str))

        def write() -> None:
            file.write(line + "\n")
            file.flush()

        self._writer.submit(write)

    def close(self, *, history: bool = True) -> None:
        """Queue the closing of the files after every pending write (``history`` False:
        only the event log's; the session log belongs to whoever opened it)."""
        log = self.history
        if history:
            self.history = None
        events, self._events = self._events, None
        if history and log is not None:
            self._writer.submit(log.close)
        if events is not None:
            self._writer.submit(events.close)

    # -- turns ---------------------------------------------------------------------------

    def item_added(self, item_id: str, *, transcribed: bool) -> None:
        """A new item: log it now if it is final already (a typed message, a tool's
        output, spoken input when no transcript will come: ``transcribed`` False)."""
        item = self._conversation.item(item_id)
        if item is None:
            return
        if item.type == "function_call_output":
            self.log(item.id)
        elif item.role == "user":
            typed = any(p.type == "input_text" for p in item.parts)
            if typed or not transcribed:
                self.log(item.id)

    def response_done(self, done: ResponseDone, unsettled: set[str]) -> None:
        """Log the response's items; those in ``unsettled`` (still playing, or waiting
        for their truncation) wait for :meth:`flush_settled`."""
        for item in self._conversation.items:
            if item.response_id != done.response_id:
                continue
            if item.id in unsettled:
                self.defer(item.id, done)
            else:
                self.log(item.id, done)

    def defer(self, item_id: str, done: ResponseDone) -> None:
        """An assistant turn whose response is done but which still plays (or waits for
        its truncation): logged by :meth:`flush_settled`."""
        if item_id not in self._logged:
            self._deferred[item_id] = done

    def flush_settled(self, unsettled: set[str]) -> None:
        """Log the deferred turns that are not in ``unsettled`` any more."""
        for item_id in [i for i in self._deferred if i not in unsettled]:
            self.log(item_id, self._deferred.pop(item_id))

    def flush_item(self, item_id: str) -> None:
        """The truncation of ``item_id`` settled (confirmed or refused)."""
        done = self._deferred.pop(item_id, None)
        if done is not None:
            self.log(item_id, done)

    def log(self, item_id: str, done: ResponseDone | None = None) -> None:
        """Append a finished turn (once) and announce it once it is on disk."""
        if item_id in self._logged:
            return
        item = self._conversation.item(item_id)
        if item is None:
            return
        self._logged.add(item_id)
        self._deferred.pop(item_id, None)
        note = TurnLogged(item.id, item.role or item.type, item.text)
        history = self.history
        if history is None:
            self._publish(note)
            return
        record = turn_record(item, done)

        def written(result: object) -> None:
            # told once: a full disk fails every turn
            if isinstance(result, BaseException) and not self._write_failed:
                self._write_failed = True
                self._publish(Notice("error", f"could not write the history: {result}"))
            self._publish(note)

        self._writer.submit(lambda: history.append_turn(record), written)

    def log_failure(self, done: ResponseDone) -> None:
        """A response that failed: a ``note`` record says why (it may have no turn)."""
        history = self.history
        if history is None or done.error is None:
            return
        record = {
            "type": "response_failed",
            "response_id": done.response_id,
            "status": done.status,
            "error": error_record(done),
        }
        self._writer.submit(lambda: history.append(record))


__all__ = ["Journal", "error_record", "turn_record"]
