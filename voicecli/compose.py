"""The composition root: configuration -> endpoint and key, audio devices and session
history -> one :class:`~voicecli.engine.Engine`, handed to the terminal UI or to
``voicecli ask``. Only :mod:`voicecli.cli` calls it.

The two users differ in one policy only, and it is decided here: the UI opens whatever
is missing (no microphone: text mode; no speaker: replies shown, not played), while
``ask`` stops before connecting with one line (a device that cannot be used: exit 2).
Both go on without a history when the data directory cannot take one, saying so with the
same line (:func:`voicecli.history.open_session_log`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from voicecli.config import Config
from voicecli.engine import Engine
from voicecli.engine.supervisor import Backoff
from voicecli.history import SessionLog, open_session_log
from voicecli.secrets import resolve_api_key

if TYPE_CHECKING:
    import argparse

    from voicecli.ask import AskFiles
    from voicecli.audio.sinks import AudioSink
    from voicecli.audio.sources import AudioSource


@dataclass(frozen=True)
class Endpoint:
    """The server to talk to: ``config`` points at it; ``api_key`` (None: none sent)."""

    config: Config
    api_key: str | None
    key_missing: bool = False
    """The server needs a key (OpenAI, Azure) and none was found."""


def key_available(config: Config, env: Mapping[str, str] = os.environ) -> bool:
    """A key could be resolved (without running ``api_key_command`` yet)."""
    return bool(env.get(config.api_key_env, "").strip()) or bool(config.api_key_command)


def needs_key(config: Config) -> bool:
    """The configured server always wants a key (OpenAI, Azure)."""
    from voicecli.connection import detect_provider

    provider = config.connection.provider
    if provider == "auto":
        provider = detect_provider(config.connection.url)
    return provider in ("openai", "azure")


def with_url(config: Config, url: str) -> Config:
    return dataclasses.replace(
        config, connection=dataclasses.replace(config.connection, url=url, provider="auto")
    )


@contextlib.contextmanager
def endpoint(
    config: Config, *, local: bool, env: Mapping[str, str] = os.environ
) -> Iterator[Endpoint]:
    """The endpoint for this run. ``local``: a built-in server runs for the duration
    (no key). A compatible server (such as ``voicecli serve``) may need no key at all;
    OpenAI and Azure always do. Raises ``ApiKeyError`` when ``api_key_command`` fails."""
    if local:
        from voicecli.server import BackgroundServer

        # record=False: a long conversation must not pile up every event in memory
        with BackgroundServer(host="127.0.0.1", port=0, record=False) as srv:
            yield Endpoint(with_url(config, srv.url), None)
        return
    if not needs_key(config) and not key_available(config, env):
        yield Endpoint(config, None)
        return
    api_key = resolve_api_key(config, env)
    yield Endpoint(config, api_key, key_missing=api_key is None and needs_key(config))


# -- the terminal UI -------------------------------------------------------------------


@dataclass
class Built:
    """An engine and what was opened for it; :meth:`close` after the engine ran."""

    engine: Engine
    history: SessionLog | None
    notices: list[str] = field(default_factory=list)
    """What could not be opened, one line each (the UI shows them at start)."""

    def close(self) -> None:
        if self.history is not None:
            self.history.close()


def ui_audio(config: Config) -> tuple[AudioSource | None, AudioSink | None, list[str]]:
    """The microphone and speaker, or None with a notice saying why (text mode).

    Never raises for a missing or broken device: the UI must open in text mode anyway.
    """
    from voicecli.audio.device_sink import DeviceSink
    from voicecli.audio.devices import PortAudioMissing, find_device
    from voicecli.audio.sources import DeviceSource

    notices: list[str] = []
    source: AudioSource | None = None
    sink: AudioSink | None = None
    try:
        source = DeviceSource(find_device(config.audio.input_device, kind="input"))
    except PortAudioMissing as exc:
        return None, None, [f"{exc}. Text mode: press t to type."]
    # sounddevice's own PortAudioError (e.g. "Error querying device -1" when there is
    # no default device) derives from Exception only, hence the broad catches here.
    except Exception as exc:
        notices.append(
            f"no microphone found: {_one_line(exc)}; see `voicecli devices` "
            "(text mode: press t to type)"
        )
    try:
        sink = DeviceSink(
            find_device(config.audio.output_device, kind="output"),
            latency=config.audio.output_latency,
        )
    except Exception as exc:
        notices.append(
            f"no speaker found: {_one_line(exc)}; see `voicecli devices` "
            "(replies are shown, not played)"
        )
    return source, sink, notices


def build_ui_engine(ep: Endpoint) -> Built:
    """The engine the terminal UI drives: whatever audio there is, a new session log."""
    source, sink, notices = ui_audio(ep.config)
    history, notice = open_session_log(ep.config.data_dir, kind="session")
    if notice is not None:
        notices.append(notice)
    engine = Engine(ep.config, source=source, sink=sink, api_key=ep.api_key, history=history)
    return Built(engine, history, notices)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# -- voicecli ask ------------------------------------------------------------------------


def run_ask(config: Config, args: argparse.Namespace) -> int:
    """``voicecli ask``: check the files, build the engine, get one answer. Every
    failure ends in one line on stderr and an exit status (see :mod:`voicecli.ask`)."""
    from voicecli import ask
    from voicecli.audio.devices import AudioDeviceError, DeviceNotFound, PortAudioMissing
    from voicecli.audio.wav import WavError

    try:
        with ask.prepare(args) as files, endpoint(config, local=args.local) as ep:
            return asyncio.run(_ask(ep, args, files))
    except ask.AskFailed as exc:
        ask.say(exc)
        return exc.exit_status
    except (PortAudioMissing, DeviceNotFound, AudioDeviceError) as exc:
        ask.say(exc)  # their messages name the device (or what to install)
        return ask.EXIT_USAGE
    except WavError as exc:
        ask.say(exc)
        return ask.EXIT_USAGE


async def _ask(ep: Endpoint, args: argparse.Namespace, files: AskFiles) -> int:
    from voicecli import ask
    from voicecli.audio.sinks import NullSink

    config = ask.session_config(ep.config, args)
    source: AudioSource
    if args.mic:
        from voicecli.audio.devices import find_device
        from voicecli.audio.sources import DeviceSource

        find_device(config.audio.input_device, kind="input")  # fail fast: no such mic
        source = DeviceSource(config.audio.input_device)
    else:
        source = ask.question_source(Path(args.input), files.question_s)
    sink = await _ask_speaker(config) if args.play else NullSink()
    history, notice = open_session_log(config.data_dir, kind="ask")
    if notice is not None:
        ask.say(notice)
    engine = Engine(
        config,
        source=source,
        sink=sink,
        api_key=ep.api_key,
        history=history,
        backoff=Backoff(max_attempts=0),
        max_turns=1,
    )
    try:
        return await ask.run(engine, args, files, drained=sink.drained if args.play else None)
    finally:
        if history is not None:
            history.close()


async def _ask_speaker(config: Config) -> AudioSink:
    """The speaker, started (``ask`` fails before connecting when it cannot play)."""
    from voicecli.ask import DeviceFailed
    from voicecli.audio.device_sink import DeviceSink
    from voicecli.audio.devices import AudioDeviceError, DeviceNotFound, PortAudioMissing

    try:
        sink = DeviceSink(config.audio.output_device, latency=config.audio.output_latency)
    except (PortAudioMissing, DeviceNotFound, AudioDeviceError):
        raise
    except Exception as exc:  # sounddevice's own PortAudioError (no default device...)
        raise DeviceFailed(f"cannot open the speaker: {exc}") from None
    try:
        await sink.start()
    except BaseException:
        await sink.close()
        raise
    return sink
