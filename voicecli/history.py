"""Session history: one JSONL file per session under ``DATA_DIR/sessions/``.

The first line is a header (``{"kind": "header", "session_id", "started", "endpoint",
"model", ...}``); each finished turn adds one line, written with flush and ``fsync``
before :meth:`SessionLog.append_turn` returns. A crash (even ``kill -9``) therefore
leaves every completed turn on disk and the file valid line by line; a torn last line
is ignored when reading.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

from voicecli.secrets import redact

SESSIONS_DIR = "sessions"
SUFFIX = ".jsonl"
ExportFormat = Literal["md", "json"]


class HistoryError(Exception):
    """A history problem, as one line (no such session, ambiguous prefix...)."""


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


class SessionLog:
    """Append-only, crash-safe log of one session. Create with :meth:`create`."""

    def __init__(self, path: Path, session_id: str, file: IO[str]) -> None:
        self.path = path
        self.session_id = session_id
        self._file: IO[str] | None = file
        self._lock = threading.Lock()
        self.turns = 0
        """Turns appended so far."""

    def __repr__(self) -> str:
        return f"<SessionLog {self.session_id} turns={self.turns}>"

    @classmethod
    def create(
        cls,
        data_dir: Path | str,
        *,
        kind: str = "session",
        endpoint: str | None = None,
        model: str | None = None,
        extra: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> SessionLog:
        """A new log ``DATA_DIR/sessions/<UTC stamp>_<id>.jsonl`` (private to the user)
        with its header line already on disk. Raises OSError."""
        started = time.time() if now is None else now
        session_id = secrets.token_hex(4)
        directory = Path(data_dir).expanduser() / SESSIONS_DIR
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / f"{_stamp(started)}_{session_id}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        file = os.fdopen(fd, "a", encoding="utf-8", newline="\n")
        log = cls(path, session_id, file)
        header: dict[str, Any] = {
            "kind": "header",
            "session_id": session_id,
            "type": kind,
            "started": _iso(started),
            "endpoint": endpoint,
            "model": model,
        }
        if extra:
            header.update(extra)
        log._write(header)
        _fsync_dir(directory)  # the new file's name must survive a crash too
        return log

    def append_turn(self, record: Mapping[str, Any]) -> None:
        """Append one finished turn (``role``, ``item_id``, ``text``, ``heard`` /
        ``unheard`` when truncated, ``usage``...; ``time`` is added when missing).
        Returns once it is on disk."""
        line = {"kind": "turn", **record}
        line.setdefault("time", _iso(time.time()))
        self._write(line)

    def append(self, record: Mapping[str, Any]) -> None:
        """Append any other record (``kind`` defaults to ``"note"``), durably."""
        line = {"kind": "note", **record}
        line.setdefault("time", _iso(time.time()))
        self._write(line)

    def _write(self, record: Mapping[str, Any]) -> None:
        text = redact(json.dumps(record, ensure_ascii=False, default=str))
        data = memoryview((text + "\n").encode("utf-8"))
        with self._lock:
            if self._file is None:
                raise ValueError(f"session log {self.session_id} is closed")
            # one write(2) of the whole line, bypassing the text layer's 8 KiB chunks: a
            # kill -9 then tears at most this (unreported) line, and rarely
            fd = self._file.fileno()
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
            if record.get("kind") == "turn":
                self.turns += 1

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> SessionLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_session_log(
    data_dir: Path | str, *, kind: str = "session", **header: Any
) -> tuple[SessionLog | None, str | None]:
    """A new session log, or None and why, as the one line the UI and ``ask`` both show
    before going on without a history (a read-only or full data directory)."""
    try:
        return SessionLog.create(data_dir, kind=kind, **header), None
    except OSError as exc:
        where = exc.filename or Path(data_dir) / SESSIONS_DIR
        return None, f"no session history ({exc.strerror or exc}: {where}); going on without it"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


# --- reading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRecord:
    """One session file, read back."""

    path: Path
    header: Mapping[str, Any]
    turns: tuple[Mapping[str, Any], ...]
    skipped_lines: int = 0
    """Lines that were not valid JSON objects (normally only a torn last line)."""

    @property
    def session_id(self) -> str:
        return str(self.header.get("session_id") or session_name(self.path).split("_")[-1])

    @property
    def name(self) -> str:
        """The file name without ``.jsonl``: ``<stamp>_<id>``."""
        return session_name(self.path)

    @property
    def started(self) -> str:
        return str(self.header.get("started") or "")


def session_name(path: Path) -> str:
    return path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.stem


def read_session(path: Path) -> SessionRecord:
    """Read a session file; undecodable lines (a torn last line) are skipped."""
    header: dict[str, Any] = {}
    turns: list[Mapping[str, Any]] = []
    skipped = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                skipped += 1
                continue
            if not isinstance(line, dict):
                skipped += 1
                continue
            if line.get("kind") == "header" and not header:
                header = line
            elif line.get("kind", "turn") == "turn":
                turns.append(line)
    return SessionRecord(path, header, tuple(turns), skipped)


class History:
    """The sessions stored under one data directory."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir).expanduser()

    @property
    def sessions_dir(self) -> Path:
        return self.data_dir / SESSIONS_DIR

    def paths(self) -> list[Path]:
        """Session files, newest first (names start with a UTC stamp)."""
        if not self.sessions_dir.is_dir():
            return []
        files = [p for p in self.sessions_dir.iterdir() if p.name.endswith(SUFFIX)]
        return sorted(files, key=lambda p: (p.name, p.stat().st_mtime), reverse=True)

    def list_sessions(self) -> list[SessionRecord]:
        """Every readable session, newest first."""
        out: list[SessionRecord] = []
        for path in self.paths():
            try:
                out.append(read_session(path))
            except OSError:
                continue
        return out

    def find(self, session: str) -> SessionRecord:
        """The session whose id, or file name, starts with ``session``; raises
        :class:`HistoryError` when none or several match."""
        wanted = session.strip()
        if not wanted:
            raise HistoryError("no session given")
        matches = []
        for path in self.paths():
            name = session_name(path)
            session_id = name.rsplit("_", 1)[-1]
            if name == wanted or session_id == wanted:
                return read_session(path)
            if name.startswith(wanted) or session_id.startswith(wanted):
                matches.append(path)
        if not matches:
            raise HistoryError(
                f"no session matches {wanted!r} in {self.sessions_dir} (see: voicecli history)"
            )
        if len(matches) > 1:
            names = ", ".join(session_name(p) for p in matches[:5])
            more = "..." if len(matches) > 5 else ""
            raise HistoryError(f"{wanted!r} matches {len(matches)} sessions: {names}{more}")
        return read_session(matches[0])

    def export(self, session: str, fmt: ExportFormat = "md") -> str:
        """The session as Markdown (``md``) or JSON (``json``: header and turns)."""
        record = self.find(session)
        if fmt == "json":
            return to_json(record)
        if fmt == "md":
            return to_markdown(record)
        raise HistoryError(f"unknown export format {fmt!r}: use md or json")


def to_json(record: SessionRecord) -> str:
    data = {"header": dict(record.header), "turns": [dict(t) for t in record.turns]}
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


_ROLE_NAMES = {"user": "You", "assistant": "Assistant", "system": "System"}


def to_markdown(record: SessionRecord) -> str:
    h = record.header
    lines = [f"# voicecli session {record.name}", ""]
    for key in ("started", "endpoint", "model"):
        if h.get(key):
            lines.append(f"- {key}: {h[key]}")
    lines.append("")
    for turn in record.turns:
        role = str(turn.get("role") or turn.get("type") or "turn")
        who = _ROLE_NAMES.get(role, role.capitalize())
        when = _clock(turn.get("time"))
        text = str(turn.get("text") or "").strip()
        if turn.get("type") == "function_call":
            text = f"`{turn.get('name')}({turn.get('arguments') or ''})`"
        heard = turn.get("heard")
        if heard is not None:
            text = interrupted_markdown(str(heard), str(turn.get("unheard") or ""))
        lines.append(f"**{who}**{when}: {text or '*(no transcript)*'}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def interrupted_markdown(heard: str, unheard: str) -> str:
    """An assistant turn the user cut off, as Markdown: what was heard, what was not
    (struck through), and the mark. The one format for ``export`` and the UI's saved
    transcript."""
    text = heard.strip()
    if unheard.strip():
        text += f" ~~{unheard.strip()}~~"
    return f"{text} *(interrupted)*".lstrip()


def _clock(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    try:
        return f" ({datetime.fromisoformat(value).strftime('%H:%M:%S')})"
    except ValueError:
        return ""


def summary(record: SessionRecord) -> dict[str, Any]:
    """A short description for listings: name, started, model, turns, first user line."""
    first = next((str(t.get("text") or "") for t in record.turns if t.get("role") == "user"), "")
    usage = [t.get("usage") for t in record.turns if isinstance(t.get("usage"), Mapping)]
    return {
        "name": record.name,
        "session_id": record.session_id,
        "started": record.started,
        "type": record.header.get("type", ""),
        "model": record.header.get("model") or "",
        "turns": len(record.turns),
        "tokens": sum(
            int(u.get("input_tokens") or 0) + int(u.get("output_tokens") or 0) for u in usage if u
        ),
        "first": " ".join(first.split())[:60],
    }
