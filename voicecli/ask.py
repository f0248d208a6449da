"""``voicecli ask``: one spoken (or recorded) question, one answer, headless.

:mod:`voicecli.compose` builds the :class:`~voicecli.engine.Engine` (a WAV file, or the
microphone with ``--mic``, as the source; a null sink, or the speaker with ``--play``)
and hands it to :func:`run`, which drives it to one answer. Prints ``you: ...`` and
``assistant: ...`` to stdout, writes the reply audio to ``--out`` and every wire event
(audio elided) to ``--transcript``. Every file named is checked by :func:`prepare`
before connecting, and ``--out`` is written only when there is an answer.

Exit status (:attr:`AskFailed.exit_status`): 0 when the response completed (or the user
interrupted it by speaking); 2 when the input WAV, a file to write or an audio device
cannot be used; 3 when ``--mic`` heard no speech within ``--timeout``; otherwise 1.
Failures print one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from voicecli import aio
from voicecli.audio.sources import AudioSource, Int16Array, WavFileSource
from voicecli.audio.wav import read_wav_24k_mono, write_wav
from voicecli.config import Config
from voicecli.engine import Engine, EventLogged, Notice, StatusChanged, TurnLogged
from voicecli.engine.status import EngineStatus, TurnMode
from voicecli.engine.toolcalls import headless_approver
from voicecli.files import check_writable, open_private, reason
from voicecli.pcm import SAMPLE_RATE
from voicecli.protocol.notifications import (
    AudioDelta,
    Notification,
    ResponseDone,
    ServerError,
    TranscriptDone,
    TranscriptFailed,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_SPEECH = 3

_INTERRUPTIONS = ("response.cancel", "conversation.item.truncate")
WAIT_TRANSCRIPT_S = 5.0
"""How long to wait, after the response, for the user's transcript and the history."""
NO_SPEECH_TIMEOUT_S = 60.0
"""``--mic``: give up when no speech starts this long after the mic is live."""
LONG_QUESTION_S = 20.0
"""A question WAV at least this long shows a progress bar (on a terminal)."""
LISTENING = "listening… (speak; Ctrl+C to stop)"


_EXCHANGE_EVENTS = frozenset(
    {"input_audio_buffer.commit", "conversation.item.create", "response.create"}
)
"""Client events without which there is no question or no answer."""
_HANDLED_ERRORS = frozenset(
    {"session_expired", "response_cancel_not_active", "conversation_already_has_active_response"}
)
"""Codes the engine handles itself: expiry rotates, a late cancel is moot, a second
``response.create`` waits in the outbox for the active response to end."""


def ends_the_exchange(error: ServerError) -> bool:
    """Whether an ``error`` event leaves the ask without its exchange: it rejected one of
    the events that make the question or ask for the answer. An error tied to no client
    event (a transient ``server_error``) or to another one is reported and the ask goes
    on; a fatal one (a bad key) closes the connection and ends the ask that way."""
    if error.code in _HANDLED_ERRORS:
        return False
    return error.client_event_type in _EXCHANGE_EVENTS


class AskFailed(Exception):
    """One clear line for stderr, and the exit status."""

    exit_status = EXIT_FAILED


class DeviceFailed(AskFailed):
    """The microphone or the speaker cannot be used."""

    exit_status = EXIT_USAGE


class UsageFailed(AskFailed):
    """A file named on the command line cannot be used (checked before connecting)."""

    exit_status = EXIT_USAGE


class NoSpeech(AskFailed):
    """``--mic`` heard no speech within ``--timeout``."""

    exit_status = EXIT_NO_SPEECH


def _one_line(text: object) -> str:
    """PortAudio messages may span lines; stderr gets exactly one."""
    return " ".join(str(text).split())


def say(text: object) -> None:
    """One line on stderr, as every ask message."""
    sys.stderr.write(f"voicecli ask: {_one_line(text)}\n")
    sys.stderr.flush()


def _terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Ask:
    """Collects what the engine reports and decides when the ask is over."""

    def __init__(
        self,
        engine: Engine,
        transcript: IO[str] | None,
        text_only: bool,
        *,
        speech_timeout_s: float | None = None,
    ) -> None:
        self.engine = engine
        self.transcript = transcript
        self.text_only = text_only
        self.speech_timeout_s = speech_timeout_s
        """``--mic``: how long the live mic may hear no speech (None: no limit)."""
        self.heard_speech = False
        self.no_speech = False
        self._speech_timer: asyncio.TimerHandle | None = None
        self.audio: list[bytes] = []
        self.failure: str | None = None
        self.response: ResponseDone | None = None
        self.logged: set[str] = set()
        self.interrupted = False
        """The user spoke over the reply (a cancel or truncate was sent)."""
        self.committed = False
        """The question was sent in full (its commit went out)."""
        self.mic_failed = False
        """The microphone could not be opened, or was lost before the question ended."""
        self.changed = asyncio.Event()

    def on_note(self, note: Notification) -> None:
        if isinstance(note, EventLogged):
            if note.direction == "sent" and note.event.get("type") in _INTERRUPTIONS:
                self.interrupted = True
            if note.direction == "sent" and note.event.get("type") == "input_audio_buffer.commit":
                self.committed = True
            if self.transcript is not None:
                self.transcript.write(json.dumps({"direction": note.direction, **note.event}))
                self.transcript.write("\n")
        elif isinstance(note, AudioDelta):
            if not self.text_only:
                self.audio.append(note.pcm)
        elif isinstance(note, ResponseDone):
            if self.response is None and not self.engine.tools.continues(note.response_id):
                self.response = note  # the answer (not a response that called tools)
        elif isinstance(note, TurnLogged):
            self.logged.add(note.item_id)
        elif isinstance(note, ServerError):
            if ends_the_exchange(note):
                self.fail(f"server error: {note.message}")
            elif note.code not in _HANDLED_ERRORS:
                # the live service keeps the session open after most errors: say it, go on
                say(f"server error: {note.message} (going on)")
        elif isinstance(note, Notice):
            if note.level == "error" or (self.mic_failed and note.level == "warning"):
                self.fail(note.text)
        elif isinstance(note, (TranscriptDone, TranscriptFailed)):
            pass
        elif isinstance(note, StatusChanged):
            self._listening(note.status)
            if note.status.mic != "unavailable" or self.committed or self.mic_failed:
                return
            # without a question there is nothing to wait for (the engine's notice,
            # published right after, says why)
            self.mic_failed = True
        else:
            return
        self.changed.set()

    def fail(self, text: str) -> None:
        if self.failure is None:
            self.failure = text

    def _listening(self, status: EngineStatus) -> None:
        """``--mic``: once the mic is live, say so (on a terminal) and start the no-speech
        timer; the first speech stops it."""
        if self.speech_timeout_s is None or self.heard_speech:
            return
        if status.vad == "speech" or self.committed:
            self.heard_speech = True
            if self._speech_timer is not None:
                self._speech_timer.cancel()
            return
        if status.mic == "live" and self._speech_timer is None:
            if _terminal(sys.stderr):
                sys.stderr.write(LISTENING + "\n")
                sys.stderr.flush()
            if self.speech_timeout_s > 0:
                loop = asyncio.get_running_loop()
                self._speech_timer = loop.call_later(self.speech_timeout_s, self._heard_nothing)

    def stop_timer(self) -> None:
        if self._speech_timer is not None:
            self._speech_timer.cancel()

    def _heard_nothing(self) -> None:
        self.no_speech = True
        self.fail(f"no speech heard in {self.speech_timeout_s:g} s (--timeout)")
        self.changed.set()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait (on notifications, not by polling) until ``predicate()`` or a failure."""

        async def waiter() -> None:
            while not predicate() and self.failure is None:
                self.changed.clear()
                await self.changed.wait()

        try:
            async with aio.timeout(timeout):
                await waiter()
        except TimeoutError:
            return False
        return self.failure is None

    def settled(self) -> bool:
        """The response is done and its turns (and the user's) are in the history."""
        if self.response is None:
            return False
        conv = self.engine.conversation
        for item in conv.items:
            if item.response_id == self.response.response_id and item.id not in self.logged:
                return False
            if item.role == "user" and item.transcript_pending:
                return False
        return True


def session_config(config: Config, args: argparse.Namespace) -> Config:
    """The config for this ask: turn mode and modalities from the flags."""
    mode: TurnMode = "local-vad" if args.mic else "push-to-talk"
    changes: dict[str, Any] = {"turn_mode": mode}
    if args.text_only:
        changes["session"] = dataclasses.replace(config.session, output_modalities=("text",))
    return dataclasses.replace(config, **changes)


def _print_transcript(engine: Engine, ask: _Ask, out: IO[str]) -> None:
    conv = engine.conversation
    for item in conv.items:
        if item.type != "message":
            continue
        if item.role == "user":
            text = item.text.strip() or "(no transcript)"
            out.write(f"you: {text}\n")
        elif item.role == "assistant":
            if item.truncated_at_ms is not None:
                out.write(f"assistant: {item.heard_text.strip()} [interrupted]\n")
            else:
                out.write(f"assistant: {item.text.strip()}\n")
    out.flush()


# -- the files named on the command line, checked before connecting ----------------------


@dataclass
class AskFiles:
    """What :func:`prepare` checked: the question's length, where the answer goes."""

    question_s: float | None
    """The input WAV's length (None: ``--mic``)."""
    out: Path | None
    transcript: IO[str] | None
    """``--transcript``, open (line-buffered: a watcher, or a crash, sees whole lines)."""
    out_is_stdout: bool = False
    """``--out /dev/stdout``: the you/assistant lines then go to stderr."""

    def close(self) -> None:
        if self.transcript is not None:
            self.transcript.close()

    def __enter__(self) -> AskFiles:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _same_as_stdout(path: Path) -> bool:
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):  # not there yet; stdout without an fd
        return False


def prepare(args: argparse.Namespace) -> AskFiles:
    """Check every file the command names before connecting, so a paid exchange never
    ends in "cannot write": the input WAV is read (``WavError``), ``--out`` must be
    writable, ``--transcript`` is opened. Raises :class:`UsageFailed`."""
    question_s: float | None = None
    if not args.mic:
        if not args.input:
            raise UsageFailed("give INPUT.wav (or --mic)")
        question_s = len(read_wav_24k_mono(Path(args.input))) / SAMPLE_RATE
    out: Path | None = None
    if args.out:
        if args.text_only:
            raise UsageFailed("--out needs a spoken answer: drop --text-only")
        out = Path(args.out)
        try:
            check_writable(out)
        except OSError as exc:
            raise UsageFailed(f"cannot write --out {out}: {reason(exc)}") from None
    transcript: IO[str] | None = None
    if args.transcript:
        try:
            transcript = open_private(args.transcript)
        except OSError as exc:
            where = args.transcript
            raise UsageFailed(f"cannot write --transcript {where}: {reason(exc)}") from None
    return AskFiles(question_s, out, transcript, out is not None and _same_as_stdout(out))


def _write_answer(files: AskFiles, ask: _Ask) -> None:
    """``--out``, once there is an answer (a failed ask leaves an old file intact)."""
    if files.out is None:
        return
    if not ask.audio:
        say(f"the answer has no audio: {files.out} not written")
        return
    pcm = np.frombuffer(b"".join(ask.audio), dtype=np.int16)
    try:
        write_wav(files.out, pcm)
    except OSError as exc:
        raise AskFailed(f"cannot write --out {files.out}: {reason(exc)}") from None


# -- terminal feedback ---------------------------------------------------------------------


class ProgressBar:
    """One line on a terminal, redrawn in place at most :attr:`interval_s` apart."""

    interval_s = 0.1
    width = 30

    def __init__(self, stream: IO[str], label: str, total_s: float) -> None:
        self.stream = stream
        self.label = label
        self.total_s = max(total_s, 1e-9)
        self._drawn_at: float | None = None

    def show(self, done_s: float, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and self._drawn_at is not None and now - self._drawn_at < self.interval_s:
            return
        self._drawn_at = now
        frac = min(1.0, done_s / self.total_s)
        filled = round(self.width * frac)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {frac:4.0%}  {done_s:.0f}/{self.total_s:.0f} s")
        self.stream.flush()

    def end(self, done_s: float) -> None:
        """Draw the last state and end the line (what follows starts on its own)."""
        if self._drawn_at is not None:
            self.show(done_s, force=True)
            self.stream.write("\n")
            self.stream.flush()


class ProgressSource:
    """A question WAV whose blocks, as the engine takes them, move a :class:`ProgressBar`
    (the engine takes a file's blocks only as fast as the socket sends them, give or
    take ``audio.max_backlog_s``)."""

    def __init__(self, inner: WavFileSource, bar: ProgressBar) -> None:
        self._inner = inner
        self._bar = bar
        self._sent = 0
        self.realtime = inner.realtime

    async def __aenter__(self) -> ProgressSource:
        await self._inner.__aenter__()
        return self

    def stop(self) -> None:
        self._inner.stop()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bar.end(self._sent / SAMPLE_RATE)
        await self._inner.__aexit__(exc_type, exc, tb)

    async def blocks(self) -> AsyncIterator[Int16Array]:
        async for block in self._inner.blocks():
            yield block
            self._sent += len(block)  # the engine came back for the next one
            self._bar.show(self._sent / SAMPLE_RATE)


def question_source(path: Path, seconds: float | None) -> AudioSource:
    """The question WAV as sent as fast as the socket takes it; a long one shows its
    progress on stderr when that is a terminal."""
    source = WavFileSource(path, realtime=False)
    if seconds is None or seconds < LONG_QUESTION_S or not _terminal(sys.stderr):
        return source
    return ProgressSource(source, ProgressBar(sys.stderr, f"sending {path.name}", seconds))


# -- the exchange --------------------------------------------------------------------------


async def run(
    engine: Engine,
    args: argparse.Namespace,
    files: AskFiles,
    *,
    drained: Callable[[], Awaitable[Any]] | None = None,
) -> int:
    """Drive a built engine to one answer: returns 0, or raises :class:`AskFailed`.
    ``drained``: waits until the speaker has played everything (``--play``)."""
    speech_timeout: float | None = None
    if args.mic:
        speech_timeout = float(getattr(args, "timeout", NO_SPEECH_TIMEOUT_S))
    engine.tools.approver = headless_approver(getattr(args, "approve_tools", False), say)
    ask = _Ask(engine, files.transcript, args.text_only, speech_timeout_s=speech_timeout)
    engine.subscribe(ask.on_note)
    if not args.mic:
        engine.push_to_talk()  # the whole file is one turn; end of file commits it
    task = asyncio.create_task(engine.run())
    try:
        await ask.wait_until(lambda: ask.response is not None or task.done())
        if ask.response is not None and ask.failure is None:
            await ask.wait_until(ask.settled, WAIT_TRANSCRIPT_S)
            if drained is not None:
                await drained()
    finally:
        ask.stop_timer()
        await engine.close()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    if ask.no_speech:
        raise NoSpeech(ask.failure)
    if ask.response is None:
        if ask.mic_failed:
            raise DeviceFailed(ask.failure or "the microphone is unavailable")
        raise AskFailed(ask.failure or "the connection closed before a response")
    _print_transcript(engine, ask, sys.stderr if files.out_is_stdout else sys.stdout)
    status = ask.response.status
    if status == "completed" or (status == "cancelled" and ask.interrupted):
        _write_answer(files, ask)
        return EXIT_OK
    reason_ = f" ({ask.response.why})" if ask.response.why else ""
    raise AskFailed(ask.failure or f"the response ended {status}{reason_}")
