"""The mic loop: the source's blocks through the mic pipeline into actions.

It waits for the first connection (nothing is sent before a session exists), opens the
source, and hands each block to the :class:`~voicecli.engine.mic.MicPipeline`; the
actions it returns go to the engine's ``do``. A file source waits for the socket when
the outbox is over its backlog (a microphone cannot wait: the outbox drops its oldest
audio instead) and for the tools to be declared. The loop ends by :meth:`stop` (the
source's explicit stop), by the source's end (a file: the turn is committed) or by the
device failing (a notice; the conversation goes on in text mode).

Muting releases a device microphone (:class:`~voicecli.audio.sources.PausableSource`):
its stream closes until the unmute, so nothing runs per block and the system's
mic-in-use indicator goes off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from voicecli.audio.devices import AudioDeviceError, AudioDeviceLost, PortAudioMissing
from voicecli.audio.sources import AudioSource, PausableSource
from voicecli.engine.bus import StatusBus
from voicecli.engine.mic import MicPipeline
from voicecli.engine.notifications import Notice
from voicecli.engine.playback import PlaybackTracker
from voicecli.engine.tasks import reap
from voicecli.engine.turns import Action
from voicecli.protocol.outbox import Outbox

log = logging.getLogger(__name__)

_DEVICE_ERRORS = (OSError, LookupError, PortAudioMissing, ValueError)
"""What opening or using an audio device raises (AudioDeviceError is an OSError,
DeviceNotFound a LookupError, PortAudioMissing a RuntimeError)."""


class Microphone:
    """See the module docstring. ``live``: the source runs on its own clock."""

    def __init__(
        self,
        source: AudioSource | None,
        pipeline: MicPipeline,
        playback: PlaybackTracker,
        bus: StatusBus,
        outbox: Outbox,
        *,
        live: bool,
        end_turn_at_eof: bool,
        do: Callable[[list[Action]], None],
        commit: Callable[[], None],
    ) -> None:
        self.source = source
        self._pipeline = pipeline
        self._playback = playback
        self._bus = bus
        self._outbox = outbox
        self._live = live
        self._end_turn_at_eof = end_turn_at_eof
        self._do = do
        self._commit = commit
        self.outbox_drained = asyncio.Event()
        """Set by the engine when the outbox has room again (a file source waits on it)."""
        self._mute_changed = asyncio.Event()
        self._released = False  # what the mute follower was last asked for

    def stop(self) -> None:
        """End the loop at its next step (the source's explicit stop)."""
        if self.source is not None:
            self.source.stop()

    async def run(
        self, connected: asyncio.Event, closing: asyncio.Event, tools_ready: asyncio.Event
    ) -> None:
        if self.source is None or not await _first_of(connected, closing):
            return
        if not self._live:
            await tools_ready.wait()  # a file can wait for the tools; a mic cannot
        bus = self._bus
        left = asyncio.Event()
        follower: asyncio.Task[None] | None = None
        try:
            async with self.source as source:
                if isinstance(source, PausableSource):
                    follower = asyncio.create_task(
                        self._follow_mute(source, left), name="voicecli-mic-mute"
                    )
                try:
                    bus.set(mic="live")
                    self.refresh()
                    async for block in source.blocks():
                        if closing.is_set():
                            return
                        if not self._live and self._outbox.over_backlog:
                            # a file can wait for the socket; a microphone cannot
                            self.outbox_drained.clear()
                            await self.outbox_drained.wait()
                        self._on_block(block)
                        bus.set(overflows=int(getattr(source, "overflows", 0)))
                finally:
                    # a pause or resume under way ends before the stream closes for good
                    left.set()
                    await reap([follower], grace=5.0)
        except AudioDeviceLost as exc:
            self._lost(exc)
            return
        except Exception as exc:  # any source failure ends the mic, loudly
            if not isinstance(exc, _DEVICE_ERRORS):  # e.g. a raw PortAudioError
                log.warning("the audio source failed", exc_info=True)
            bus.set(mic="unavailable")
            bus.publish(Notice("error", f"microphone unavailable: {exc}"))
            return
        if closing.is_set():
            return
        if self._end_turn_at_eof and self._pipeline.turns.client_decides:
            self._commit()
        bus.set(mic="off")

    def refresh(self) -> None:
        """Show what the mic does now: live, sending or muted."""
        if self.source is None or self._bus.status.mic in ("unavailable", "off"):
            return
        turns = self._pipeline.turns
        if turns.muted != self._released:
            self._released = turns.muted
            self._mute_changed.set()
        if turns.muted:
            mic = "muted"
        elif turns.in_turn or not turns.client_decides:
            mic = "sending"
        else:
            mic = "live"
        if mic != self._bus.status.mic:
            self._bus.set(mic=mic)

    async def _follow_mute(self, source: PausableSource, left: asyncio.Event) -> None:
        """Release the device while muted, take it back on unmute, until ``left``."""
        while not left.is_set():
            self._mute_changed.clear()
            if self._released != source.paused:
                try:
                    await (source.pause() if self._released else source.resume())
                except AudioDeviceError:
                    return  # blocks() reports the microphone lost
                continue
            await _first_of(self._mute_changed, left)

    def _lost(self, exc: AudioDeviceLost) -> None:
        """The microphone went away mid-conversation: drop the half-said turn (it would
        be answered as if complete) and go on in text mode."""
        if self._pipeline.turns.in_turn:
            self._do(self._pipeline.turns.clear())
        self._bus.set(mic="unavailable", vad="silence", mic_level=0.0)
        self._bus.publish(Notice("warning", f"microphone lost ({exc}): continuing in text mode"))

    def _on_block(self, block: np.ndarray[Any, np.dtype[np.int16]]) -> None:
        playback = self._playback
        playback.check_speaker()
        step = self._pipeline.feed(
            block,
            playing=playback.is_playing,
            playback_dbfs=playback.sink.level_dbfs,
            adc_time=getattr(self.source, "block_adc_time", None),
        )
        # what the server gets is what is recorded: the cleaned block, with echo cancelled
        cleaned = step.block if step.block is not None else block
        playback.record_mic(cleaned, muted=self._pipeline.turns.muted)
        if step.notice is not None:  # the canceller failed: guard from now on
            self._bus.publish(Notice("warning", step.notice))
            self._bus.set(echo_mode=self._pipeline.echo_mode)
        if step.vad is not None:
            self._bus.set(vad=step.vad)
        self._bus.set(echo_learning=step.echo_learning)
        if step.turn_ended:
            playback.mark_speech_end()
        self._do(step.actions)
        playback.note_first_sample()
        self._bus.set_level(step.level)
        self.refresh()


async def _first_of(wanted: asyncio.Event, closing: asyncio.Event) -> bool:
    """True once ``wanted`` is set; False when ``closing`` is set first."""
    waits = [asyncio.create_task(wanted.wait()), asyncio.create_task(closing.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await reap(waits)
    return not closing.is_set()


__all__ = ["Microphone"]
