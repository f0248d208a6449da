"""Audio sources: 20 ms blocks of 24 kHz mono int16 for the engine.

A source is an async context manager whose :meth:`AudioSource.blocks` yields blocks of
:data:`BLOCK_SAMPLES` samples. :class:`DeviceSource` is a microphone through PortAudio:
the callback only copies the block and hands it to the event loop; resampling to 24 kHz
happens on the loop, never in the audio thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from voicecli import aio
from voicecli.audio.devices import (
    AudioDeviceError,
    AudioDeviceLost,
    DeviceNotFound,
    choose_rate,
    close_stream,
    find_device,
    sounddevice_module,
)
from voicecli.audio.dsp import StreamResampler
from voicecli.audio.wav import read_wav_24k_mono
from voicecli.pcm import SAMPLE_RATE as RATE

BLOCK_MS = 20
BLOCK_SAMPLES = RATE * BLOCK_MS // 1000  # 480

Int16Array = np.ndarray[Any, np.dtype[np.int16]]


@runtime_checkable
class AudioSource(Protocol):
    """Where the user's audio comes from. ``realtime``: blocks arrive on the source's
    own clock (a microphone) rather than as fast as they are consumed (a file)."""

    realtime: bool

    async def __aenter__(self) -> AudioSource: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def blocks(self) -> AsyncIterator[Int16Array]:
        """20 ms blocks of 24 kHz mono int16 until the source ends or is stopped."""
        ...

    def stop(self) -> None:
        """End :meth:`blocks` at its next step, from the loop thread: the explicit stop
        that never relies on a cancellation arriving (see :mod:`voicecli.aio`)."""
        ...


@runtime_checkable
class PausableSource(Protocol):
    """A source holding a device it can release while muted (a microphone)."""

    @property
    def paused(self) -> bool: ...

    async def pause(self) -> None:
        """Release the device; blocks() waits, without reporting it lost."""
        ...

    async def resume(self) -> None:
        """Take the device back (AudioDeviceError if it cannot be opened)."""
        ...


class _Blocker:
    """Re-chunks a stream of int16 arrays into fixed-size blocks (one buffer, reused)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._buf: Int16Array = np.zeros(size, dtype=np.int16)
        self._fill = 0

    @property
    def pending(self) -> int:
        """Samples waiting for the next block."""
        return self._fill

    def push(self, samples: Int16Array) -> list[Int16Array]:
        if self._fill == 0 and len(samples) == self.size:
            return [samples]  # the device's own 20 ms block (24 kHz): nothing to re-chunk
        out: list[Int16Array] = []
        pos = 0
        while pos < len(samples):
            take = min(self.size - self._fill, len(samples) - pos)
            self._buf[self._fill : self._fill + take] = samples[pos : pos + take]
            self._fill += take
            pos += take
            if self._fill == self.size:
                out.append(self._buf.copy())
                self._fill = 0
        return out


class DeviceSource:
    """A microphone through PortAudio, as 20 ms 24 kHz mono int16 blocks.

    ``device``: an index, a name substring or None (the default input); resolved when
    the source is entered. The native rate is 24 kHz when the device accepts it, else
    the device's default rate, resampled on the event loop. At most ``max_queue_blocks``
    blocks wait for the consumer; beyond that the oldest are dropped (``dropped``).
    ``overflows`` counts every loss: PortAudio input overflows plus dropped blocks.
    When the device stops delivering (unplugged, sound server gone) for
    ``stall_timeout_s`` (the first block may take ``start_timeout_s``), iteration raises
    :class:`AudioDeviceLost` instead of waiting forever.
    """

    realtime = True

    def __init__(
        self,
        device: int | str | None = None,
        *,
        block_ms: int = BLOCK_MS,
        max_queue_blocks: int = 100,
        start_timeout_s: float = 5.0,
        stall_timeout_s: float = 2.0,
    ) -> None:
        if block_ms <= 0 or max_queue_blocks <= 0:
            raise ValueError("block_ms and max_queue_blocks must be positive")
        self.device = device
        self.block_ms = block_ms
        self.max_queue_blocks = max_queue_blocks
        self.start_timeout_s = start_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.rate = 0  # the device's rate, known once entered
        self.input_overflows = 0  # PortAudio's input overflow flags
        self.dropped = 0  # blocks dropped because the consumer fell behind
        self.callbacks = 0  # PortAudio callbacks so far (the first one means audio flows)
        self._stream: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: deque[tuple[Int16Array, float]] = deque()
        self.block_adc_time: float | None = None
        """When the first sample of the block last yielded was captured (PortAudio stream
        time: the clock the speaker's DAC times use), for the echo canceller."""
        self._ready = asyncio.Event()
        self._finished = False
        self._resampler: StreamResampler | None = None
        self._first_callback = asyncio.Event()
        self._ending = False  # set by _close_stream: the callback ends the stream
        self._ended = threading.Event()  # the stream's finished callback ran
        self._callback_abort: type[BaseException] = Exception
        self._stopped = False  # stop(): blocks() returns at its next step
        self._paused = False  # pause(): the stream is closed until resume()
        self._generation = 0  # streams opened so far (a finished callback names its own)
        self._index: int | None = None

    @property
    def overflows(self) -> int:
        """Occasions audio was lost: PortAudio overflows plus dropped blocks."""
        return self.input_overflows + self.dropped

    async def __aenter__(self) -> DeviceSource:
        sd = sounddevice_module()
        try:
            self._index = find_device(self.device, kind="input")
        except DeviceNotFound as exc:
            raise AudioDeviceError(f"microphone: {exc}") from None
        self.rate = choose_rate(self._index, "input")
        self._loop = asyncio.get_running_loop()
        self._queue.clear()
        self._ready = asyncio.Event()
        self._first_callback = asyncio.Event()
        self._stopped = False
        self._paused = False
        self._callback_abort = sd.CallbackAbort
        self._resampler = StreamResampler(self.rate, RATE) if self.rate != RATE else None
        await self._open_stream()
        return self

    async def _open_stream(self) -> None:
        sd = sounddevice_module()
        self._generation += 1
        generation, ended = self._generation, threading.Event()
        self._ended, self._ending, self._finished = ended, False, False

        def open_and_start() -> Any:
            # raw: the callback gets the bytes, not a numpy view sounddevice would build
            # for every block (measured: a bare callback 1.6 -> 1.3 % of a core here)
            stream = sd.RawInputStream(
                device=self._index,
                samplerate=self.rate,
                channels=1,
                dtype="int16",
                blocksize=self.rate * self.block_ms // 1000,
                latency="low",
                callback=self._callback,
                finished_callback=lambda: self._finished_callback(generation, ended),
            )
            try:
                stream.start()
            except BaseException:
                stream.close()
                raise
            return stream

        try:
            # opening a device can take 100 ms or more (a sound server starting): not
            # on the loop that also runs the UI and the speaker pump
            self._stream = await asyncio.to_thread(open_and_start)
        except sd.PortAudioError as exc:
            raise AudioDeviceError(f"cannot open the microphone: {exc}") from None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close_stream()

    async def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        self._ending = True
        # a few ms, or longer on a dying server: not on the loop
        await asyncio.to_thread(close_stream, stream, self._ended)

    async def pause(self) -> None:
        """Close the device until :meth:`resume` (muted: the microphone is released,
        so the system's mic-in-use indicator goes off and nothing runs per block);
        :meth:`blocks` waits meanwhile instead of reporting a lost device."""
        if self._paused or self._stream is None:
            return
        self._paused = True
        await self._close_stream()

    async def resume(self) -> None:
        """Open the device again after :meth:`pause` (about as long as the first open).
        Raises :class:`AudioDeviceError` if it cannot be opened: :meth:`blocks` then
        reports the device lost."""
        if not self._paused or self._stopped:
            return
        try:
            await self._open_stream()
        except AudioDeviceError:
            self._finished = True  # blocks() reports it: the mic is gone
            raise
        finally:
            self._paused = False
            self._ready.set()

    @property
    def paused(self) -> bool:
        """Closed by :meth:`pause`."""
        return self._paused

    # -- PortAudio thread ------------------------------------------------------------

    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        if self._ending:
            raise self._callback_abort  # the stream ends from its own thread (close)
        if status.input_overflow:
            self.input_overflows += 1
        # ~1 KB of mono int16; copied because PortAudio reuses indata after we return
        block = np.frombuffer(indata, dtype=np.int16).copy()
        adc = time_info.inputBufferAdcTime
        if adc <= 0.0:  # the host API does not report it: about when the block ended
            adc = time_info.currentTime - frames / self.rate
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed under us
                loop.call_soon_threadsafe(self._deliver, block, adc)

    def _finished_callback(self, generation: int, ended: threading.Event) -> None:
        ended.set()
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_finished, generation)

    # -- event loop ------------------------------------------------------------------

    def _deliver(self, block: Int16Array, adc_time: float) -> None:
        self.callbacks += 1
        self._first_callback.set()
        if len(self._queue) >= self.max_queue_blocks:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append((block, adc_time))
        self._ready.set()

    def _on_finished(self, generation: int) -> None:
        if generation != self._generation or self._paused:
            return  # a stream paused (or replaced since) ended: the device is not lost
        self._finished = True
        self._ready.set()

    def stop(self) -> None:
        """End :meth:`blocks` now (the stream itself closes on leaving ``async with``)."""
        self._stopped = True
        self._ready.set()

    async def wait_started(self, timeout: float | None = None) -> None:
        """Wait for the first PortAudio callback (audio is flowing)."""
        async with aio.timeout(timeout):
            await self._first_callback.wait()

    async def blocks(self) -> AsyncIterator[Int16Array]:
        """20 ms 24 kHz blocks; raises :class:`AudioDeviceLost` if the device goes away."""
        if self._stream is None:
            raise RuntimeError("DeviceSource.blocks() outside 'async with'")
        blocker = _Blocker(BLOCK_SAMPLES)
        watchdog = _StallWatchdog(self)
        try:
            while not self._stopped:
                while not self._queue:
                    if self._stopped:
                        return
                    if not self._paused:  # paused: resume() wakes us; no stall counts
                        if self._finished or self._stream is None:
                            raise AudioDeviceLost("the microphone stopped (device lost)")
                        if watchdog.stalled is not None:
                            raise AudioDeviceLost(watchdog.stalled)
                    self._ready.clear()
                    await self._ready.wait()
                raw, adc = self._queue.popleft()
                samples = self._resampler.process(raw) if self._resampler is not None else raw
                start = adc - blocker.pending / RATE  # the next block began that much earlier
                for k, block in enumerate(blocker.push(samples)):
                    if self._stopped:
                        return
                    self.block_adc_time = start + k * BLOCK_SAMPLES / RATE
                    yield block
        finally:
            watchdog.cancel()


class _StallWatchdog:
    """Notices a device that stopped delivering: ``stalled`` becomes the reason and the
    source's consumer wakes. One timer a fraction of the timeout apart, instead of a
    timeout armed and cancelled around every 20 ms wait."""

    CHECKS_PER_TIMEOUT = 4

    def __init__(self, source: DeviceSource) -> None:
        self._source = source
        self._loop = asyncio.get_running_loop()
        self._seen = source.callbacks
        self._since = self._loop.time()
        self.stalled: str | None = None
        self._handle = self._loop.call_later(self._period(), self._check)

    def _timeout(self) -> float:
        source = self._source
        return source.stall_timeout_s if source.callbacks else source.start_timeout_s

    def _period(self) -> float:
        shortest = min(self._source.stall_timeout_s, self._source.start_timeout_s)
        return shortest / self.CHECKS_PER_TIMEOUT

    def _check(self) -> None:
        now, source = self._loop.time(), self._source
        if source.callbacks != self._seen or source.paused:
            self._seen, self._since = source.callbacks, now  # paused: nothing is due
        elif now - self._since >= self._timeout():
            timeout = self._timeout()
            self.stalled = f"the microphone delivered no audio for {timeout:g} s (device lost?)"
            source._ready.set()
            return
        self._handle = self._loop.call_later(self._period(), self._check)

    def cancel(self) -> None:
        self._handle.cancel()


class WavFileSource:
    """A WAV file as 20 ms 24 kHz blocks (any rate/channels, converted on open).

    ``realtime``: paced like a microphone (block *k* at start + *k* x 20 ms); otherwise
    as fast as consumed. The last block is padded with silence to full length.
    """

    def __init__(self, path: Path | str, realtime: bool = True) -> None:
        self.path = Path(path)
        self.realtime = realtime
        self._samples: Int16Array | None = None
        self._stopped = False

    async def __aenter__(self) -> WavFileSource:
        self._samples = read_wav_24k_mono(self.path)
        self._stopped = False
        return self

    def stop(self) -> None:
        """End :meth:`blocks` at its next block."""
        self._stopped = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._samples = None

    async def blocks(self) -> AsyncIterator[Int16Array]:
        """The file's blocks; see the class docstring for pacing."""
        samples = self._samples if self._samples is not None else read_wav_24k_mono(self.path)
        start = time.monotonic()
        for k, pos in enumerate(range(0, len(samples), BLOCK_SAMPLES)):
            if self._stopped:
                return
            block = samples[pos : pos + BLOCK_SAMPLES]
            if len(block) < BLOCK_SAMPLES:
                block = np.concatenate([block, np.zeros(BLOCK_SAMPLES - len(block), np.int16)])
            if self.realtime:
                delay = start + k * BLOCK_MS / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif k % 50 == 49:
                await asyncio.sleep(0)  # let the socket tasks run between seconds of audio
            yield np.ascontiguousarray(block)


class NullSource:
    """Silence: ``seconds`` of it (None: until closed), paced in real time unless
    ``realtime`` is False (then as fast as consumed)."""

    def __init__(self, seconds: float | None = None, *, realtime: bool = True) -> None:
        self.seconds = seconds
        self.realtime = realtime
        self.overflows = 0
        self._stopped = False

    async def __aenter__(self) -> NullSource:
        self._stopped = False
        return self

    def stop(self) -> None:
        """End :meth:`blocks` at its next block."""
        self._stopped = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def blocks(self) -> AsyncIterator[Int16Array]:
        """Blocks of zeros (a fresh array each: consumers may keep them)."""
        total = None if self.seconds is None else round(self.seconds * 1000 / BLOCK_MS)
        start = time.monotonic()
        k = 0
        while (total is None or k < total) and not self._stopped:
            if self.realtime:
                delay = start + k * BLOCK_MS / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif k % 50 == 49:
                await asyncio.sleep(0)
            yield np.zeros(BLOCK_SAMPLES, dtype=np.int16)
            k += 1
