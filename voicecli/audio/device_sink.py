"""The speaker: a sink that plays through PortAudio.

The engine's writes go to a bounded ring buffer, the callback copies from the ring (no
allocation) and notes which ring positions it handed to the device and when they reach
the DAC (``outputBufferDacTime``), so a sample counts as played once its DAC time has
passed. The stream stops after ``IDLE_STOP_S`` with nothing to play and starts again,
off the loop, on the next audio or :meth:`DeviceSink.wake`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from typing import Any

import numpy as np

from voicecli import aio
from voicecli.audio.devices import (
    AudioDeviceError,
    choose_rate,
    close_stream,
    find_device,
    sounddevice_module,
)
from voicecli.audio.dsp import StreamResampler
from voicecli.audio.ledger import PlayedLedger
from voicecli.audio.ring import RingBuffer
from voicecli.audio.sinks import Int16Array, Key, as_samples
from voicecli.audio.tap import FarEndTap
from voicecli.pcm import SAMPLE_RATE as RATE

_STREAM_STOPPED = "the speaker stream stopped"
_STREAM_STALLED = "the speaker stopped playing (the sound server stalled)"

STALL_GRACE_S = 2.0
"""How long past its due time audio may sit unplayed before the speaker counts as lost."""
IDLE_STOP_S = 3.0
"""A speaker stream that has played nothing for this long stops (a running stream costs
about 2 % of a core writing silence); the next audio, or :meth:`DeviceSink.wake`,
starts it again."""
_IDLE_CHECK_S = 1.0  # how often a running stream looks whether it is idle
SWITCH_TIMEOUT_S = 2.0
"""How long :meth:`DeviceSink.close` waits for a start or stop under way."""
START_SILENCE_BLOCKS = 2
"""Callbacks that play silence after every start of the stream. Through PortAudio,
ALSA's pulse plugin and PulseAudio, the first block after a start lost its first ~8 ms
in every run here (3 of 3); with one block of silence first, nothing was lost (6 of 6).
Two for margin: 20 ms, once per start."""

log = logging.getLogger(__name__)


class DeviceSink:
    """Plays through a PortAudio output device.

    ``device``: an index, a name substring or None (the default output), resolved now:
    a missing device raises :class:`~voicecli.audio.devices.DeviceNotFound`, a device
    that cannot be opened :class:`~voicecli.audio.devices.AudioDeviceError` and no
    PortAudio :class:`~voicecli.audio.devices.PortAudioMissing`. ``latency``: seconds
    of device buffer (PortAudio's suggested latency); audio already handed to the device
    is not recalled, so a flush is silent after about that long. (Aborting the stream
    would drop it at once, but aborting and restarting a PulseAudio output stream while
    the input stream runs made the input stall in about one quit in three here.) The
    callback needs the GIL every ``block_ms``: at a small latency a long GIL hold (a
    full garbage collection of a big heap) makes it underrun (``underflows``).
    ``prebuffer_ms``:
    after silence, playback waits for this much audio (or this long) so network jitter
    does not underrun. ``buffer_s``: the ring the callback reads; more waits on the
    event loop. ``rate``: force a device rate (default: 24 kHz if accepted, else the
    device's own, resampled on the event loop).

    The stream starts (off the event loop) on :meth:`start`, :meth:`wake` or the first
    write, and stops again once nothing has played for ``idle_stop_s`` (None: never).
    Stopped, the far-end tap gets nothing, which reads as silence (see
    :class:`~voicecli.audio.tap.FarEndTap`).
    """

    def __init__(
        self,
        device: int | str | None = None,
        *,
        latency: float = 0.03,
        prebuffer_ms: float = 60.0,
        buffer_s: float = 2.0,
        block_ms: float = 10.0,
        fade_ms: float = 5.0,
        rate: int | None = None,
        idle_stop_s: float | None = IDLE_STOP_S,
    ) -> None:
        sd = sounddevice_module()
        self.device = find_device(device, kind="output")
        self.rate = rate or choose_rate(self.device, "output")
        self.latency = latency
        self.block = max(1, round(self.rate * block_ms / 1000))
        self._resampler = StreamResampler(RATE, self.rate) if self.rate != RATE else None
        self._resampled_key: Key | None = None
        self._ring = RingBuffer(max(self.block * 4, round(buffer_s * self.rate)))
        self._pending: deque[tuple[Int16Array, Key]] = deque()
        self._ledger = PlayedLedger(self.rate)
        self._timer: asyncio.TimerHandle | None = None
        self._started = False  # the stream runs (its callback is called)
        self._want_running = False
        self._switch: asyncio.Task[None] | None = None  # a start or stop under way
        self._pausing = False  # our own stop: its end is no error
        self.idle_stop_s = idle_stop_s
        self._idle_timer: asyncio.TimerHandle | None = None
        self._quiet_since: float | None = None
        self._was_stopped = False
        self._warm_left = 0  # callbacks of silence still due after a start
        self.restarts = 0
        """Times the stream started again after an idle stop."""
        self._dead: str | None = None  # why nothing plays any more
        self._closing = False  # close() stops the stream: its end is no error
        self._ended = threading.Event()  # the stream's finished callback ran
        self._callback_abort = sd.CallbackAbort
        # drained(): the callback wakes it once when the ring runs dry
        self._dry = asyncio.Event()
        self._dry_loop: asyncio.AbstractEventLoop | None = None
        self._want_dry = False
        self.underflows = 0  # PortAudio output underflow flags (a glitch, not a death)
        self.tap = FarEndTap(self.rate)
        """Every block handed to the device, with its DAC time (the echo canceller's far end)."""

        # shared with the callback; every access holds _lock (a few µs at most)
        self._lock = threading.Lock()
        cap = 1024
        self._rec_dac = np.zeros(cap, dtype=np.float64)
        self._rec_start = np.zeros(cap, dtype=np.int64)
        self._rec_n = np.zeros(cap, dtype=np.int64)
        self._rec_head = 0
        self._rec_count = 0
        self._credited = 0  # ring position up to which everything was heard (or dropped)
        self._out_end = 0  # ring position after the last sample handed to the device
        self._cb_discards: list[tuple[int, int]] = []
        self._flush_at = 0  # the callback drops ring samples before this position
        self._flush_fade = True

        # callback-only state
        self._idle = True
        self._wait_since = -1.0
        self._prebuffer = round(self.rate * prebuffer_ms / 1000)
        self._prebuffer_s = prebuffer_ms / 1000
        fade = max(1, round(self.rate * fade_ms / 1000))
        self._ramp_in = np.linspace(0.0, 1.0, fade, endpoint=False, dtype=np.float32)
        self._ramp_out = (1.0 - self._ramp_in).astype(np.float32)  # 1 -> 1/fade

        self._channels = 1
        self._stream: Any = None
        last: Exception | None = None
        for channels in (1, 2):
            try:
                self._stream = sd.OutputStream(
                    device=self.device,
                    samplerate=self.rate,
                    channels=channels,
                    dtype="int16",
                    blocksize=self.block,
                    latency=latency,
                    callback=self._callback,
                    finished_callback=self._finished,
                )
                self._channels = channels
                break
            except (sd.PortAudioError, ValueError) as exc:
                last = exc
        if self._stream is None:
            raise AudioDeviceError(f"cannot open the speaker: {last}")

    # -- PortAudio thread --------------------------------------------------------------

    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        if self._closing:
            raise self._callback_abort  # the stream ends from its own thread (close())
        if status.output_underflow and not self._idle:
            # the device ran out while audio played (a crackle); out of silence, nobody
            # hears it (the stream starting up on a busy machine, say)
            self.underflows += 1
            self.tap.glitches += 1
        out = outdata[:, 0]
        now = time_info.currentTime

        dac = time_info.outputBufferDacTime
        if dac <= 0.0:  # the host API does not report it
            dac = now + self.latency
        ring = self._ring
        start = ring.total_read
        n = 0
        flush_at = self._flush_at
        if start < flush_at:
            if self._flush_fade and not self._idle:
                n = ring.read_into(out, limit=min(len(self._ramp_out), flush_at - start))
                seg = out[:n]
                np.multiply(seg, self._ramp_out[:n], out=seg, casting="unsafe")
            ring.discard_until(flush_at)
            self._idle = True
            with self._lock:
                self._cb_discards.append((start + n, flush_at))
        else:
            available = len(ring)
            if self._warm_left > 0:  # the stream just started: silence first
                self._warm_left -= 1
                available = 0
            if self._idle and available < self._prebuffer and available > 0:
                if self._wait_since < 0:
                    self._wait_since = now
                if now - self._wait_since < self._prebuffer_s:
                    available = 0  # keep waiting for the prebuffer
            if available > 0:
                n = ring.read_into(out)
                if self._idle:
                    k = min(n, len(self._ramp_in))
                    seg = out[:k]
                    np.multiply(seg, self._ramp_in[:k], out=seg, casting="unsafe")
                    self._idle = False
                    self._wait_since = -1.0
                if n < frames:
                    self._idle = True  # ran dry: the next audio fades in again
        if n < frames:
            out[n:] = 0
        self.tap.write(out, dac)
        if self._want_dry and len(ring) == 0:
            self._want_dry = False
            self._wake_dry()
        if self._channels > 1:
            outdata[:, 1:] = outdata[:, :1]
        with self._lock:
            cap = len(self._rec_dac)
            # credit records whose audio has fully left the DAC
            while self._rec_count:
                h = self._rec_head
                end_t = self._rec_dac[h] + self._rec_n[h] / self.rate
                if end_t > now and self._rec_count < cap:
                    break
                self._credited = int(self._rec_start[h] + self._rec_n[h])
                self._rec_head = (h + 1) % cap
                self._rec_count -= 1
            if n:
                i = (self._rec_head + self._rec_count) % cap
                self._rec_dac[i] = dac
                self._rec_start[i] = start
                self._rec_n[i] = n
                self._rec_count += 1
                self._out_end = start + n

    def _wake_dry(self) -> None:
        """PortAudio thread: wake :meth:`drained` (a closed loop is ignored)."""
        loop = self._dry_loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._dry.set)

    def _finished(self) -> None:
        # PortAudio thread: the stream ended (device unplugged, sound server gone)
        # without close() asking; a constant string, nothing allocated here
        if self._pausing:
            return  # stopped for being idle (stop() returns after this)
        if self._dead is None and not self._closing:
            self._dead = _STREAM_STOPPED
        self._ended.set()
        self._wake_dry()  # nothing more will play: drained() must not wait for it

    # -- event loop --------------------------------------------------------------------

    def _position(self) -> int:
        """Ring position heard so far (at the DAC), with flushes folded into the ledger."""
        now = 0.0
        if self._stream is not None and self._started:
            with contextlib.suppress(Exception):  # a dead stream has no clock: credited only
                now = float(self._stream.time)
        with self._lock:
            pos = self._credited
            cap = len(self._rec_dac)
            for j in range(self._rec_count):
                i = (self._rec_head + j) % cap
                dac = float(self._rec_dac[i])
                if dac > now:
                    break
                heard = min(int(self._rec_n[i]), int((now - dac) * self.rate))
                pos = int(self._rec_start[i]) + heard
            discards, self._cb_discards = self._cb_discards, []
        for a, b in discards:
            self._ledger.discard(a, b)
        return pos

    def _pump(self) -> None:
        """Move waiting audio into the ring as space allows."""
        while self._pending:
            samples, key = self._pending[0]
            at = self._ring.total_written
            n = self._ring.write(samples)
            self._ledger.add(at, samples[:n], key)
            if n < len(samples):
                self._pending[0] = (samples[n:], key)
                break
            self._pending.popleft()
        if self._pending and self._timer is None:
            with contextlib.suppress(RuntimeError):  # no running loop: pumped on next call
                loop = asyncio.get_running_loop()
                delay = self._ring.capacity / self.rate / 4
                self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._pump()

    def _start_stream(self) -> None:
        """Blocking (off the loop, except without one): start the stream."""
        if self._started or self._dead is not None or self._stream is None:
            return
        sd = sounddevice_module()
        self._warm_left = START_SILENCE_BLOCKS
        try:
            self._stream.start()
        except sd.PortAudioError as exc:
            self._dead = f"cannot start the speaker: {exc}"
            log.error("%s", self._dead)
            return
        self._started = True

    def _stop_stream(self) -> None:
        """Blocking, off the loop: stop the idle stream (PortAudio plays out what the
        device holds, silence, and ends the callback thread by itself)."""
        stream = self._stream
        if not self._started or stream is None or self._closing:
            return
        if self._want_running or len(self._ring) or self._pending:
            return  # audio came meanwhile
        sd = sounddevice_module()
        self._pausing = True
        try:
            stream.stop(ignore_errors=True)
        except sd.PortAudioError as exc:
            log.warning("stopping the idle speaker stream failed: %s", exc)
        finally:
            self._pausing = False
        self._started = False
        self._was_stopped = True
        with self._lock:  # nothing is left at the DAC: credit it all
            self._credited = self._out_end
            self._rec_count = 0

    def _run(self, running: bool) -> None:
        """On the loop: make the stream run (or stop), off the loop; no loop: now."""
        self._want_running = running
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if running:
                self._start_stream()
            return
        if running:
            self._quiet_since = None
            if self._idle_timer is None and self.idle_stop_s is not None:
                self._idle_timer = loop.call_later(_IDLE_CHECK_S, self._check_idle)
        if self._switch is None and running != self._started:
            self._switch = loop.create_task(self._switching(), name="voicecli-speaker-switch")

    async def _switching(self) -> None:
        """Start or stop the stream until it is as wanted (one switch at a time)."""
        try:
            while self._want_running != self._started and self._dead is None:
                if self._closing:
                    return
                if self._want_running:
                    await asyncio.to_thread(self._start_stream)
                    if self._started and self._was_stopped:
                        self.restarts += 1
                else:
                    await asyncio.to_thread(self._stop_stream)
                    if self._started:  # audio came meanwhile: it runs on
                        self._want_running = True
        finally:
            self._switch = None

    def _check_idle(self) -> None:
        """Loop timer while the stream runs: stop it once idle for ``idle_stop_s``."""
        self._idle_timer = None
        if self._closing or self._dead is not None or self.idle_stop_s is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._want_running and self.is_playing:
            self._quiet_since = None
        elif self._quiet_since is None:
            self._quiet_since = now
        if self._quiet_since is not None and now - self._quiet_since >= self.idle_stop_s:
            self._quiet_since = None
            self._run(False)
            return
        wait = _IDLE_CHECK_S
        if self._quiet_since is not None:
            wait = min(wait, self._quiet_since + self.idle_stop_s - now)
        self._idle_timer = loop.call_later(max(wait, 0.01), self._check_idle)

    def wake(self) -> None:
        """Audio is coming (a response started): start the stream now, so the first
        delta does not wait for the device."""
        if self._dead is None and not self._closing:
            self._run(True)

    @property
    def running(self) -> bool:
        """The stream runs (False: stopped while idle, or not started yet)."""
        return self._started

    @property
    def is_playing(self) -> bool:
        """Audio is waiting, in the ring, or in the device buffer not yet heard."""
        if self._dead is not None:
            return False
        self._pump()
        return bool(self._pending) or len(self._ring) > 0 or self._position() < self._out_end

    @property
    def error(self) -> str | None:
        """Why the speaker stopped: the stream ended by itself (device or sound server
        gone) or could not start; None while it works and after :meth:`close`."""
        return None if self._closing else self._dead

    @property
    def level_dbfs(self) -> float | None:
        """The level of what is at the speaker now (20 ms resolution); None: silent."""
        pos = self._position()
        return self._ledger.level(pos) if pos < self._out_end else None

    def write(self, pcm: bytes | Int16Array, item_id: str, content_index: int = 0) -> None:
        """Queue audio (starting the stream if needed). Never blocks."""
        if self._dead is not None:
            return
        samples = as_samples(pcm)
        key = (item_id, content_index)
        if self._resampler is not None:
            if self._resampled_key is not None and key != self._resampled_key:
                tail = self._resampler.flush()
                if len(tail):
                    self._pending.append((tail, self._resampled_key))
            self._resampled_key = key
            samples = self._resampler.process(samples)
        if len(samples):
            self._pending.append((samples, key))
        self._run(True)
        self._pump()
        self._ledger.settle(self._position())

    def flush(self, fade: bool = True) -> None:
        """Drop everything not handed to the device yet; the callback fades out over at
        most ``fade_ms`` of its next block. What the device already holds still plays
        (and is counted when heard)."""
        self._pending.clear()
        if self._resampler is not None:
            self._resampler.reset()
            self._resampled_key = None
        with self._lock:
            self._flush_fade = fade
            self._flush_at = self._ring.total_written

    async def drained(self) -> None:
        """Wait until everything written has been heard (or flushed).

        No polling: while the ring holds audio this waits for the callback to say it ran
        dry (one ``call_soon_threadsafe``); then it sleeps until the last sample handed
        to the device has left the DAC, and looks again (more may have been written)."""
        while self.is_playing:
            if (
                self._resampler is not None
                and self._resampled_key is not None
                and not self._pending
                and len(self._ring) == 0
            ):
                tail = self._resampler.flush()  # end of the part: its last few ms
                if len(tail):
                    self._pending.append((tail, self._resampled_key))
                self._resampled_key = None
                self._pump()
            if self._pending or len(self._ring):
                await self._ran_dry()
            else:
                await asyncio.sleep(self._until_quiet())

    async def _ran_dry(self) -> None:
        """Until the callback finds the ring empty (or the stream stops).

        A stream whose callback stops being called without PortAudio ending it (a
        stalled sound server) would leave this waiting for ever: when the ring has not
        moved for longer than it holds plus :data:`STALL_GRACE_S`, the speaker counts
        as lost (:attr:`error`), so callers end instead of hanging."""
        if self._switch is not None:  # the stream is starting: the callback will run
            await asyncio.shield(self._switch)
        self._dry.clear()
        self._dry_loop = asyncio.get_running_loop()
        self._want_dry = True
        if len(self._ring) == 0 or not self._started or self._dead is not None:
            self._want_dry = False  # already so: the callback may never say it
            return
        read_before = self._ring.total_read
        patience = len(self._ring) / self.rate + self.latency + STALL_GRACE_S
        try:
            async with aio.timeout(patience):
                await self._dry.wait()
        except TimeoutError:
            if self._ring.total_read == read_before and self._dead is None:
                self._dead = _STREAM_STALLED
                log.error("%s", self._dead)

    def _until_quiet(self) -> float:
        """Seconds until the last sample handed to the device has been played."""
        now = 0.0
        with contextlib.suppress(Exception):
            now = float(self._stream.time)
        with self._lock:
            if not self._rec_count:
                return 0.001
            last = (self._rec_head + self._rec_count - 1) % len(self._rec_dac)
            end_t = float(self._rec_dac[last]) + float(self._rec_n[last]) / self.rate
        return min(max(end_t - now, 0.001), 1.0)

    def played_ms(self, item_id: str, content_index: int = 0) -> int:
        """Milliseconds of the part heard at the speaker so far."""
        played = self._ledger.played((item_id, content_index), self._position())
        return played * 1000 // self.rate

    async def start(self) -> None:
        """Start the stream (silence until audio is written), off the loop: this checks
        the device works. It stops again when idle."""
        self._run(True)
        if self._switch is not None:
            await asyncio.shield(self._switch)
        if self._dead is not None:
            raise AudioDeviceError(self._dead)

    async def close(self) -> None:
        """Stop the stream; what was not yet heard is not counted."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._switch is not None:  # let a start or stop under way finish
            try:
                async with aio.timeout(SWITCH_TIMEOUT_S):
                    await asyncio.shield(self._switch)
            except TimeoutError:
                # PortAudio still starting or stopping it (a stalled sound server):
                # calling into the same stream from a second thread is not safe
                log.warning("the speaker stream did not start or stop in time: left open")
                self._stream = None
        self._closing = True
        stream, self._stream = self._stream, None
        if stream is None:
            self._dead = "closed"
            self._pending.clear()
            self._dry.set()
            return
        self._position()  # fold the last flushes in while the clock is readable
        await asyncio.to_thread(close_stream, stream, self._ended)
        self._dead = "closed"
        self._pending.clear()
        self._dry.set()
