"""EchoCanceller (WebRTC AEC3 through the ``aec`` extra) on a synthetic echo, and the
far-end tap that aligns it by device times.

The echo path: the far end delayed 40 ms, -6 dB, with two reflections (7 and 19 ms
later), plus quiet room noise. The far end is written into a :class:`FarEndTap` as a
speaker callback would (10 ms blocks with their DAC times), the mic is fed in 20 ms
blocks with their ADC times, on one clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.audio.conftest import Speech, noise
from tests.conftest import require
from voicecli.audio.aec import (
    AecUnavailable,
    EchoCanceller,
    aec_available,
    resolve_echo_mode,
)
from voicecli.audio.tap import FarEndTap

RATE = 24_000
BLOCK = 480


@pytest.fixture(autouse=True)
def _aec() -> None:
    require("the aec extra (livekit)", aec_available(), "pip install -e '.[aec]'")


def echo_of(far: np.ndarray, delay_ms: float = 40.0, gain_db: float = -6.0) -> np.ndarray:
    x = far.astype(np.float64)
    g = 10 ** (gain_db / 20)
    y = np.zeros_like(x)
    for extra_ms, rel in ((0.0, 1.0), (7.0, 0.3), (19.0, -0.15)):
        d = int(RATE * (delay_ms + extra_ms) / 1000)
        y[d:] += g * rel * x[: len(x) - d]
    return y


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def run(
    far: np.ndarray,
    mic: np.ndarray,
    *,
    tap_offset_s: float = 0.0,
    canceller: EchoCanceller | None = None,
) -> np.ndarray:
    """Play ``far`` through a tap (DAC time of sample i: i / RATE + ``tap_offset_s``)
    while the mic delivers ``mic`` (ADC time of sample i: i / RATE); the speaker runs
    60 ms ahead of the mic, as a device buffer does."""
    tap = FarEndTap(RATE)
    aec = canceller or EchoCanceller(noise_suppression=False, high_pass_filter=False)
    aec.attach(tap)
    out = []
    played = 0
    for i in range(0, len(mic) - BLOCK + 1, BLOCK):
        while played < len(far) and played / RATE + tap_offset_s < (i + BLOCK) / RATE + 0.06:
            tap.write(far[played : played + 240], played / RATE + tap_offset_s)
            played += 240
        out.append(aec.process(mic[i : i + BLOCK], i / RATE))
    return np.concatenate(out)


def erle_db(mic: np.ndarray, out: np.ndarray, start_s: float, end_s: float) -> float:
    a, b = int(start_s * RATE), int(end_s * RATE)
    m = float(np.mean(mic[a:b].astype(np.float64) ** 2))
    o = float(np.mean(out[a:b].astype(np.float64) ** 2)) + 1e-9
    return 10 * np.log10(m / o)


def best_corr(x: np.ndarray, ref: np.ndarray, max_lag: int = 480) -> float:
    best = -1.0
    for lag in range(max_lag):
        n = len(ref) - lag
        best = max(best, float(np.corrcoef(x[lag : lag + n], ref[:n])[0, 1]))
    return best


@pytest.fixture(scope="module")
def far(speech_one: Speech, speech_two: Speech) -> np.ndarray:
    """About 11 s of a reply: the two fixtures, twice over, at -6 dBFS peak."""
    x = np.concatenate([speech_one.pcm, speech_two.pcm, speech_one.pcm]).astype(np.float64)
    return to_int16(x / np.abs(x).max() * 16000)


def test_cancels_a_synthetic_echo_by_25_db_within_2_s(far: np.ndarray) -> None:
    mic = to_int16(echo_of(far) + noise(len(far) / RATE, seed=3))
    out = run(far, mic)
    # far-end speech spans: speech_one's 0.6-2.7 s, then speech_two at 3.7 s + 0.5 s...
    assert erle_db(mic, out, 1.6, 2.7) >= 25.0
    assert erle_db(mic, out, 4.2, 5.0) >= 25.0
    assert erle_db(mic, out, 8.2, 10.3) >= 25.0


def test_a_far_end_misaligned_by_the_clock_is_found_again(far: np.ndarray) -> None:
    """The tap says the speaker plays 300 ms later than it does: the canceller reads
    the far end by device time, so it still pairs the right samples."""
    mic = to_int16(echo_of(far) + noise(len(far) / RATE, seed=3))
    shifted = np.concatenate([np.zeros(int(0.3 * RATE), np.int16), far])
    out = run(shifted, mic, tap_offset_s=-0.3)
    assert erle_db(mic, out, 8.2, 10.3) >= 25.0


def test_double_talk_keeps_the_near_voice(far: np.ndarray, speech_two: Speech) -> None:
    """A voice as loud as the echo over the reply comes through, still correlated
    with the voice alone, and far louder than the echo left around it."""
    echo = echo_of(far)
    voice = speech_two.pcm[::-1].astype(np.float64)  # another talker: time-reversed speech
    at = int(6.0 * RATE)
    span = slice(at, at + len(voice))
    voice *= np.sqrt(np.mean(echo[span] ** 2) / np.mean(voice**2))  # as loud as the echo
    near = np.zeros_like(echo)
    near[span] = voice
    room = noise(len(far) / RATE, seed=3)
    mic = to_int16(echo + near + room)
    out = run(far, mic)
    alone = run(np.zeros_like(far), to_int16(near + room))  # the module with no echo
    cleaned = out[span].astype(np.float64)
    level_db = 10 * np.log10(np.mean(cleaned**2) / np.mean(voice**2))
    assert level_db > -6.0, "the near voice was suppressed"
    corr = best_corr(cleaned, voice)
    transparency = best_corr(alone[span].astype(np.float64), voice)
    # the module alters even a voice alone (see the README): judge against that
    assert corr >= 0.75 * transparency
    assert corr > best_corr(mic[span].astype(np.float64) - voice, voice) + 0.2


def test_silence_as_far_end_keeps_a_lone_voice(speech_one: Speech) -> None:
    mic = speech_one.pcm
    aec = EchoCanceller()
    out = np.concatenate(
        [aec.process(mic[i : i + BLOCK]) for i in range(0, len(mic) - BLOCK + 1, BLOCK)]
    )
    span = slice(int(0.7 * RATE), int(2.6 * RATE))
    ratio = np.mean(out[span].astype(np.float64) ** 2) / np.mean(mic[span].astype(np.float64) ** 2)
    assert 0.5 < ratio < 2.0


def test_blocks_must_be_whole_frames() -> None:
    with pytest.raises(ValueError, match="10 ms"):
        EchoCanceller().process(np.zeros(300, np.int16))


def test_a_module_that_fails_raises_one_line() -> None:
    class Broken:
        def __init__(self, **_: Any) -> None:
            pass

        def process_reverse_stream(self, frame: Any) -> None:
            raise RuntimeError("apm exploded\nwith detail")

    aec = EchoCanceller(module_factory=Broken)
    with pytest.raises(AecUnavailable, match="the echo canceller failed: apm exploded"):
        aec.process(np.zeros(BLOCK, np.int16))


def test_a_module_that_cannot_start_raises_one_line() -> None:
    def refuse(**_: Any) -> Any:
        raise OSError("no ffi")

    with pytest.raises(AecUnavailable, match="did not start: no ffi"):
        EchoCanceller(module_factory=refuse)


@pytest.mark.parametrize(
    ("setting", "headphones", "available", "mode", "notice"),
    [
        ("auto", False, True, "aec", None),
        ("auto", False, False, "guard", None),
        ("aec", False, False, "guard", "needs the echo canceller"),
        ("aec", True, True, "off", None),
        ("guard", False, True, "guard", None),
        ("half-duplex", False, True, "half-duplex", None),
        ("off", False, True, "off", None),
    ],
)
def test_resolve_echo_mode(
    setting: Any, headphones: bool, available: bool, mode: str, notice: str | None
) -> None:
    got, why = resolve_echo_mode(setting, headphones=headphones, available=available)
    assert got == mode
    if notice is None:
        assert why is None
    else:
        assert why is not None and notice in why and "\n" not in why


# -- the tap ------------------------------------------------------------------------------


def test_tap_maps_device_time_to_ring_position() -> None:
    tap = FarEndTap(RATE, seconds=1.0)
    assert tap.position_at(1.0) is None
    for k in range(10):
        tap.write(np.full(240, k, np.int16), 5.0 + k * 0.01)
    assert tap.position_at(5.0) == pytest.approx(0.0)
    assert tap.position_at(5.035) == pytest.approx(840.0)
    out = np.empty(480, np.int16)
    assert tap.read_into(240 * 3, out) == 480
    assert list(out[:240]) == [3] * 240 and list(out[240:]) == [4] * 240


def test_tap_reads_silence_where_nothing_was_played_or_it_was_overwritten() -> None:
    tap = FarEndTap(1000, seconds=1.0)
    tap.write(np.arange(1, 1501, dtype=np.int16), 0.0)  # 1.5 s into a 1 s ring
    out = np.empty(100, np.int16)
    assert tap.read_into(450, out) == 50  # 450..499 are gone
    assert not out[:50].any() and list(out[50:]) == list(range(501, 551))
    assert tap.read_into(1480, out) == 20  # beyond the newest: silence
    assert list(out[:20]) == list(range(1481, 1501)) and not out[20:].any()


def test_canceller_follows_a_jump_of_the_device_clock(far: np.ndarray) -> None:
    """After a speaker underrun the DAC timeline jumps: the read position re-anchors."""
    tap = FarEndTap(RATE)
    aec = EchoCanceller(module_factory=_NullModule)
    aec.attach(tap)
    tap.write(far[:2400], 0.0)
    aec.process(np.zeros(BLOCK, np.int16), 0.02)
    assert aec.realigned == 1
    tap.write(far[2400:4800], 0.2)  # 100 ms later than the stream of samples suggests
    aec.process(np.zeros(BLOCK, np.int16), 0.04)
    aec.process(np.zeros(BLOCK, np.int16), 0.25)
    assert aec.realigned == 2


class _NullModule:
    """Stands in for the WebRTC module where only the alignment is under test."""

    def __init__(self, **_: Any) -> None:
        pass

    process_reverse_stream: Callable[[Any], None] = staticmethod(lambda frame: None)
    process_stream: Callable[[Any], None] = staticmethod(lambda frame: None)
    set_stream_delay_ms: Callable[[int], None] = staticmethod(lambda ms: None)


def test_a_speaker_underrun_re_anchors_the_far_end(far: np.ndarray) -> None:
    tap = FarEndTap(RATE)
    aec = EchoCanceller(module_factory=_NullModule)
    aec.attach(tap)
    tap.write(far[:4800], 0.0)
    aec.process(np.zeros(BLOCK, np.int16), 0.02)
    aec.process(np.zeros(BLOCK, np.int16), 0.04)
    assert aec.realigned == 1
    tap.glitches += 1  # what DeviceSink's callback does on an output underflow
    aec.process(np.zeros(BLOCK, np.int16), 0.06)
    assert aec.realigned == 2
