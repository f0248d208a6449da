"""``voicecli ask``: one spoken (or recorded) question, one answer, headless.

Drives the same :class:`~voicecli.engine.Engine` as the TUI: a WAV file (or the
microphone with ``--mic``) is the source, a null sink (or the speaker with ``--play``)
the sink. Prints ``you: ...`` and ``assistant: ...`` to stdout, writes the reply audio
to ``--out`` and every wire event (audio elided) to ``--transcript``. Exit status 0
when the response completed (or the user interrupted it by speaking); 2 when the input
WAV or an audio device cannot be used; otherwise 1. Failures print one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from voicecli.audio.devices import AudioDeviceError, DeviceNotFound, PortAudioMissing
from voicecli.audio.sinks import AudioSink, NullSink
from voicecli.audio.sources import AudioSource, WavFileSource
from voicecli.audio.wav import WavError, read_wav_24k_mono, write_wav
from voicecli.config import Config
from voicecli.engine import Engine, EventLogged, Notice, StatusChanged, TurnLogged
from voicecli.engine.engine import Backoff
from voicecli.engine.status import TurnMode
from voicecli.engine.toolcalls import headless_approver
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

_INTERRUPTIONS = ("response.cancel", "conversation.item.truncate")
WAIT_TRANSCRIPT_S = 5.0
"""How long to wait, after the response, for the user's transcript and the history."""


class AskFailed(Exception):
    """One clear line for stderr."""


class DeviceFailed(AskFailed):
    """The microphone or the speaker cannot be used (exit status 2)."""


def _one_line(text: object) -> str:
    """PortAudio messages may span lines; stderr gets exactly one."""
    return " ".join(str(text).split())


class _Ask:
    """Collects what the engine reports and decides when the ask is over."""

    def __init__(self, engine: Engine, transcript: IO[str] | None, text_only: bool) -> None:
        self.engine = engine
        self.transcript = transcript
        self.text_only = text_only
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
            if note.code not in ("session_expired", "response_cancel_not_active"):
                self.fail(f"server error: {note.message}")
        elif isinstance(note, Notice):
            if note.level == "error" or (self.mic_failed and note.level == "warning"):
                self.fail(note.text)
        elif isinstance(note, (TranscriptDone, TranscriptFailed)):
            pass
        elif isinstance(note, StatusChanged):
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

    async def wait_until(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait (on notifications, not by polling) until ``predicate()`` or a failure."""

        async def waiter() -> None:
            while not predicate() and self.failure is None:
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(waiter(), timeout)
        except asyncio.TimeoutError:
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


def _session_changes(config: Config, args: argparse.Namespace) -> Config:
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


async def _run(config: Config, args: argparse.Namespace, api_key: str | None) -> int:
    from voicecli.history import SessionLog

    source: AudioSource
    sink: AudioSink
    if args.mic:
        from voicecli.audio.devices import find_device
        from voicecli.audio.sources import DeviceSource

        find_device(config.audio.input_device, kind="input")  # fail fast: no such mic
        source = DeviceSource(config.audio.input_device)
    else:
        source = WavFileSource(Path(args.input), realtime=False)
    if args.play:
        from voicecli.audio.sinks import DeviceSink

        try:
            device_sink = DeviceSink(
                config.audio.output_device, latency=config.audio.output_latency
            )
        except (PortAudioMissing, DeviceNotFound, AudioDeviceError):
            raise
        except Exception as exc:  # sounddevice's own PortAudioError (no default device...)
            raise DeviceFailed(f"cannot open the speaker: {exc}") from None
        try:
            await device_sink.start()
        except BaseException:
            await device_sink.close()
            raise
        sink = device_sink
    else:
        sink = NullSink()

    transcript: IO[str] | None = None
    if args.transcript:
        # line-buffered: a watcher (or a crash) sees whole lines
        transcript = open(args.transcript, "w", encoding="utf-8", buffering=1)  # noqa: SIM115
    history = SessionLog.create(config.data_dir, kind="ask")
    engine = Engine(
        _session_changes(config, args),
        source=source,
        sink=sink,
        api_key=api_key,
        history=history,
        backoff=Backoff(max_attempts=0),
        max_turns=1,
    )
    say = functools.partial(print, "voicecli ask:", file=sys.stderr)
    engine.tools.approver = headless_approver(getattr(args, "approve_tools", False), say)
    ask = _Ask(engine, transcript, args.text_only)
    engine.subscribe(ask.on_note)
    if not args.mic:
        engine.push_to_talk()  # the whole file is one turn; end of file commits it
    task = asyncio.create_task(engine.run())
    try:
        await ask.wait_until(lambda: ask.response is not None or task.done())
        if ask.response is not None and ask.failure is None:
            await ask.wait_until(ask.settled, WAIT_TRANSCRIPT_S)
            if args.play:
                await sink.drained()
    finally:
        await engine.close()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        history.close()
        if transcript is not None:
            transcript.close()

    if args.out and not args.text_only:
        pcm = np.frombuffer(b"".join(ask.audio), dtype=np.int16)
        write_wav(Path(args.out), pcm)
    if ask.response is None:
        if ask.mic_failed:
            raise DeviceFailed(ask.failure or "the microphone is unavailable")
        raise AskFailed(ask.failure or "the connection closed before a response")
    _print_transcript(engine, ask, sys.stdout)
    status = ask.response.status
    if status == "completed" or (status == "cancelled" and ask.interrupted):
        return EXIT_OK
    reason = f" ({ask.response.reason})" if ask.response.reason else ""
    raise AskFailed(ask.failure or f"the response ended {status}{reason}")


def run(config: Config, args: argparse.Namespace) -> int:
    """Entry point for ``voicecli ask``; returns the exit status."""
    from voicecli.secrets import resolve_api_key

    server = None
    try:
        if not args.mic:
            if not args.input:
                raise AskFailed("ask needs INPUT.wav (or --mic)")
            read_wav_24k_mono(Path(args.input))  # fail fast, with the WAV's own message
        if args.local:
            from voicecli.server import BackgroundServer

            # record=False: the server must not keep every event of the session
            server = BackgroundServer(host="127.0.0.1", port=0, record=False)
            config = dataclasses.replace(
                config,
                connection=dataclasses.replace(config.connection, url=server.url),
            )
            api_key = None
        else:
            api_key = resolve_api_key(config)
        return asyncio.run(_run(config, args, api_key))
    except DeviceFailed as exc:
        print(f"voicecli ask: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except AskFailed as exc:
        print(f"voicecli ask: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except (PortAudioMissing, DeviceNotFound, AudioDeviceError) as exc:
        # their messages name the device (or what to install)
        print(f"voicecli ask: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except WavError as exc:
        print(f"voicecli ask: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    finally:
        if server is not None:
            server.close()
