"""Acoustic echo cancellation: WebRTC's audio processing module (AEC3) on the mic.

The module comes from the optional extra ``voicecli[aec]`` (the ``livekit`` wheel's
``livekit.rtc.AudioProcessingModule``; no LiveKit server or room is involved). It works
on 10 ms frames: for each one the far end (what the speaker played at that moment,
from :class:`~voicecli.audio.tap.FarEndTap`) goes through ``process_reverse_stream``
and the mic frame through ``process_stream``, which cancels the echo in place.

Alignment: a mic block captured at ADC time *T* is paired with the far end that left
the DAC at *T* + ``lead_ms`` (both times from PortAudio, on one clock). The echo then
lags the reference by the room's acoustic delay, which AEC3's own delay estimator
finds; the lead keeps the pairing causal despite jitter in the reported times, and it
is also the stream delay the module is told (``t_render - t_capture``). The read
position advances sample by sample (a continuous reference) and is re-anchored only
when the device times drift from it by more than ``realign_ms``.

While nothing plays the far end is silence, so the canceller keeps its state between
replies. Noise suppression and the high-pass filter are on by default, automatic gain
control off (it would pump the level the VAD and the echo guard judge).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

import numpy as np

from voicecli.audio.tap import FarEndTap
from voicecli.pcm import SAMPLE_RATE

Int16Array = np.ndarray[Any, np.dtype[np.int16]]
EchoSetting = Literal["auto", "aec", "guard", "half-duplex", "off"]
"""``audio.echo_mode`` as configured."""
EchoInForce = Literal["aec", "guard", "half-duplex", "off"]
"""The echo handling actually running."""

FRAME = SAMPLE_RATE // 100
"""Samples per 10 ms frame: the module's unit."""
EXTRA_HINT = "install the aec extra: pip install 'voicecli[aec]'"


class AecUnavailable(RuntimeError):
    """The echo canceller cannot run here (extra missing, or the module failed)."""


class AecSettings(Protocol):
    """What :meth:`EchoCanceller.from_config` reads (``config.audio`` has these)."""

    @property
    def noise_suppression(self) -> bool: ...
    @property
    def high_pass_filter(self) -> bool: ...
    @property
    def auto_gain_control(self) -> bool: ...


def _livekit_module() -> Callable[..., Any]:
    try:
        from livekit.rtc import AudioProcessingModule
    except ImportError:
        raise AecUnavailable(f"no echo canceller: {EXTRA_HINT}") from None
    return AudioProcessingModule  # type: ignore[no-any-return]


def aec_available() -> bool:
    """The extra is installed (the module imports)."""
    try:
        _livekit_module()
    except AecUnavailable:
        return False
    return True


def resolve_echo_mode(
    setting: EchoSetting, *, headphones: bool, available: bool
) -> tuple[EchoInForce, str | None]:
    """The echo handling to run and, when it differs from what was asked, one line
    saying why. ``auto``: ``aec`` when the extra is installed, else ``guard``;
    headphones turn every mode off."""
    if headphones:
        return "off", None
    if setting == "auto":
        return ("aec" if available else "guard"), None
    if setting == "aec" and not available:
        return "guard", f'audio.echo_mode = "aec" needs the echo canceller: {EXTRA_HINT}'
    return setting, None


class EchoCanceller:
    """Cancels the speaker's echo in 24 kHz mic blocks; see the module docstring.

    ``module_factory``: builds the WebRTC module (default: the ``livekit`` one; raises
    :class:`AecUnavailable` when the extra is missing). ``tap``: the speaker's far-end
    tap (None: the far end is silence; :meth:`attach` sets it later)."""

    def __init__(
        self,
        *,
        noise_suppression: bool = True,
        high_pass_filter: bool = True,
        auto_gain_control: bool = False,
        tap: FarEndTap | None = None,
        lead_ms: float = 10.0,
        realign_ms: float = 20.0,
        module_factory: Callable[..., Any] | None = None,
    ) -> None:
        factory = module_factory if module_factory is not None else _livekit_module()
        from livekit.rtc import AudioFrame  # the factory's import succeeded: so does this

        try:
            self._apm = factory(
                echo_cancellation=True,
                noise_suppression=noise_suppression,
                high_pass_filter=high_pass_filter,
                auto_gain_control=auto_gain_control,
            )
        except Exception as exc:
            raise AecUnavailable(f"the echo canceller did not start: {exc}") from None
        self.lead_ms = lead_ms
        self.realign_ms = realign_ms
        self.tap = tap
        # two preallocated frames; the module processes them in place
        self._near_buf = bytearray(FRAME * 2)
        self._far_buf = bytearray(FRAME * 2)
        self._near_frame = AudioFrame(self._near_buf, SAMPLE_RATE, 1, FRAME)
        self._far_frame = AudioFrame(self._far_buf, SAMPLE_RATE, 1, FRAME)
        self._near: Int16Array = np.frombuffer(self._near_buf, dtype=np.int16)
        self._far: Int16Array = np.frombuffer(self._far_buf, dtype=np.int16)
        self._cursor: int | None = None  # next tap position to feed as far end
        self._glitches = 0  # the tap's underrun count last seen
        self._drift = 0.0  # smoothed (device-time position - cursor), in tap samples
        self._scratch: Int16Array = np.zeros(FRAME, dtype=np.int16)
        self.realigned = 0
        """Times the far-end read position was (re-)anchored to the device clocks: at
        the start, after a speaker underrun, or when the clocks drifted apart."""
        self.far_ms = 0.0
        """Milliseconds of audible far end processed so far (how long it has learned)."""

    @classmethod
    def from_config(cls, audio: AecSettings, tap: FarEndTap | None = None) -> EchoCanceller:
        """Build from ``config.audio``; raises :class:`AecUnavailable` (one line)."""
        return cls(
            noise_suppression=audio.noise_suppression,
            high_pass_filter=audio.high_pass_filter,
            auto_gain_control=audio.auto_gain_control,
            tap=tap,
        )

    def attach(self, tap: FarEndTap | None) -> None:
        """Take the far end from ``tap`` (the speaker's) from now on."""
        self.tap = tap
        self._cursor = None
        self._glitches = tap.glitches if tap is not None else 0

    def process(self, block: Int16Array, adc_time: float | None = None) -> Int16Array:
        """Cancel the echo in ``block`` (24 kHz int16, a whole number of 10 ms frames)
        captured at ``adc_time`` (PortAudio stream time; None: unknown, the far end is
        read on from where it was). Returns a new array. Raises :class:`AecUnavailable`
        when the module fails."""
        n = len(block)
        if n % FRAME:
            raise ValueError(f"blocks must be whole 10 ms frames ({FRAME} samples), got {n}")
        out = np.empty(n, dtype=np.int16)
        self._align(adc_time)
        delay = round(self.lead_ms)
        try:
            for i in range(0, n, FRAME):
                self._read_far()
                self._apm.process_reverse_stream(self._far_frame)
                self._near[:] = block[i : i + FRAME]
                self._apm.set_stream_delay_ms(delay)
                self._apm.process_stream(self._near_frame)
                out[i : i + FRAME] = self._near
        except Exception as exc:
            raise AecUnavailable(f"the echo canceller failed: {exc}") from None
        return out

    # -- the far end ---------------------------------------------------------------------

    def _align(self, adc_time: float | None) -> None:
        tap = self.tap
        if tap is None or adc_time is None:
            return
        target = tap.position_at(adc_time + self.lead_ms / 1000.0)
        if target is None:
            return
        if tap.glitches != self._glitches:  # the speaker underran: re-anchor now
            self._glitches = tap.glitches
            self._cursor = None
        if tap.rate != SAMPLE_RATE:
            target = target * SAMPLE_RATE / tap.rate  # the cursor counts 24 kHz samples
        if (
            self._cursor is None
            or abs(target - self._cursor) > self.realign_ms * SAMPLE_RATE / 1000
        ):
            self._cursor = round(target)
            self._drift = 0.0
            self.realigned += 1
            return
        # reported times jitter by a few ms; only a lasting offset moves the cursor
        self._drift += 0.05 * ((target - self._cursor) - self._drift)
        if abs(self._drift) >= SAMPLE_RATE / 1000:  # 1 ms
            step = round(self._drift)
            self._cursor += step
            self._drift -= step

    def _read_far(self) -> None:
        tap, far = self.tap, self._far
        if tap is None or self._cursor is None:
            far[:] = 0
            return
        if tap.rate == SAMPLE_RATE:
            tap.read_into(self._cursor, far)
        else:  # a device at another rate: pick the matching samples (nearest)
            start = self._cursor * tap.rate / SAMPLE_RATE
            count = int(np.ceil(FRAME * tap.rate / SAMPLE_RATE)) + 1
            if len(self._scratch) < count:
                self._scratch = np.zeros(count, dtype=np.int16)
            tap.read_into(int(start), self._scratch[:count])
            idx = (np.arange(FRAME) * tap.rate / SAMPLE_RATE + (start - int(start))).astype(int)
            far[:] = self._scratch[np.minimum(idx, count - 1)]
        self._cursor += FRAME
        if np.abs(far).max() > 32:  # about -60 dBFS
            self.far_ms += 10.0


__all__ = [
    "EXTRA_HINT",
    "FRAME",
    "AecSettings",
    "AecUnavailable",
    "EchoCanceller",
    "EchoInForce",
    "EchoSetting",
    "aec_available",
    "resolve_echo_mode",
]
