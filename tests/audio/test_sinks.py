"""Sinks without a sound card: NullSink's exact accounting (instant and real time), the
ledger behind played_ms, WavFileSink, and DeviceSink's callback driven by hand through
a fake ``sounddevice`` (DAC-time crediting, prebuffer, fades, flush, resampling)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from tests.audio.conftest import tone
from tests.audio.fake_sd import FakeSoundDevice, OutputStream
from voicecli.audio import device_sink as speaker_module
from voicecli.audio.device_sink import DeviceSink
from voicecli.audio.ledger import PlayedLedger
from voicecli.audio.sinks import AudioSink, NullSink, WavFileSink
from voicecli.audio.wav import read_wav_24k_mono

RATE = 24_000


def test_null_sink_counts_everything_played_at_once() -> None:
    sink = NullSink()
    assert isinstance(sink, AudioSink)
    sink.write(tone(440, 0.5).tobytes(), "a", 0)
    sink.write(tone(440, 0.25), "b", 1)
    sink.write(np.zeros(7, np.int16), "a", 0)  # 7 samples: 0.29 ms
    assert not sink.is_playing
    assert sink.played_ms("a", 0) == (12000 + 7) * 1000 // RATE == 500
    assert sink.played_ms("b", 1) == 250
    assert sink.played_ms("b", 0) == 0 and sink.played_ms("zzz") == 0
    assert sink.level_dbfs is None  # nothing is audible for any length of time
    sink.flush()
    assert sink.played_ms("a", 0) == 500  # flushing after the fact changes nothing


async def test_null_sink_drained_returns_at_once() -> None:
    sink = NullSink()
    sink.write(tone(440, 2.0), "a")
    await asyncio.wait_for(sink.drained(), 0.05)


def test_odd_byte_count_drops_only_the_last_byte() -> None:
    sink = NullSink()
    sink.write(b"\x00\x01" * 240 + b"\x07", "a")
    assert sink.played_ms("a") == 10


async def test_realtime_null_sink_plays_at_real_time_and_flush_stops_it() -> None:
    sink = NullSink(realtime=True)
    t0 = time.monotonic()  # before the write: the sink's clock starts there
    sink.write(tone(300, 1.0, dbfs=-6.0), "a", 0)
    assert sink.is_playing
    await asyncio.sleep(0.2)
    level = sink.level_dbfs
    assert level is not None and -12 < level < -6  # a -6 dBFS peak sine is -9 dB RMS
    sink.flush(fade=True)
    elapsed_ms = (time.monotonic() - t0) * 1000
    played = sink.played_ms("a", 0)
    assert 180 <= played <= elapsed_ms + 1
    assert not sink.is_playing and sink.level_dbfs is None
    await asyncio.sleep(0.05)
    assert sink.played_ms("a", 0) == played  # nothing plays after the flush
    # the next reply starts from the flush point and plays out exactly
    sink.write(tone(300, 0.1), "b", 0)
    await asyncio.wait_for(sink.drained(), 1.0)
    assert sink.played_ms("b", 0) == 100
    assert sink.played_ms("a", 0) == played


async def test_realtime_null_sink_drained_takes_the_audio_length() -> None:
    sink = NullSink(realtime=True)
    t0 = time.monotonic()
    for _ in range(3):
        sink.write(np.zeros(2400, np.int16), "a")
    await sink.drained()
    assert 0.29 <= time.monotonic() - t0 < 0.8
    assert sink.played_ms("a") == 300


def test_ledger_interleaved_parts_with_discards() -> None:
    led = PlayedLedger(RATE)
    led.add(0, np.zeros(100, np.int16), ("a", 0))
    led.add(100, np.zeros(50, np.int16), ("a", 1))
    led.add(150, np.zeros(100, np.int16), ("a", 0))
    led.discard(180, 250)  # flushed unplayed
    led.add(250, np.zeros(40, np.int16), ("b", 0))
    # the play position only grows
    assert led.played(("a", 0), 120) == 100
    assert led.played(("a", 1), 120) == 20
    assert led.played(("b", 0), 270) == 20
    assert led.played(("a", 0), 300) == 100 + 30
    assert led.played(("a", 1), 300) == 50
    assert led.played(("b", 0), 400) == 40
    assert led.played(("a", 0), 400) == 130  # settled totals stay


async def test_wav_file_sink_writes_what_is_played(tmp_path: Any) -> None:
    path = tmp_path / "out.wav"
    sink = WavFileSink(path)
    await sink.start()
    sink.write(tone(440, 0.1).tobytes(), "a")
    sink.write(tone(880, 0.05), "b")
    assert sink.played_ms("a") == 100 and sink.played_ms("b") == 50
    await sink.close()
    assert np.array_equal(
        read_wav_24k_mono(path), np.concatenate([tone(440, 0.1), tone(880, 0.05)])
    )


# -- DeviceSink through a fake sounddevice ---------------------------------------------


@pytest.fixture
def fake_sd(monkeypatch: pytest.MonkeyPatch) -> FakeSoundDevice:
    fake = FakeSoundDevice()
    monkeypatch.setattr(speaker_module, "sounddevice_module", lambda: fake)
    monkeypatch.setattr(speaker_module, "find_device", lambda spec, kind: None)
    monkeypatch.setattr(speaker_module, "choose_rate", lambda device, kind: RATE)
    monkeypatch.setattr(speaker_module, "START_SILENCE_BLOCKS", 0)  # see the test of it below
    return fake


def device_sink(fake: FakeSoundDevice, **kwargs: Any) -> tuple[DeviceSink, OutputStream]:
    sink = DeviceSink(None, **kwargs)
    stream = fake.streams[-1]
    assert isinstance(stream, OutputStream)
    return sink, stream


def ramp_signal(n: int) -> np.ndarray:
    return (1000 + np.arange(n) % 20000).astype(np.int16)


def test_device_sink_plays_bit_exact_and_credits_at_dac_time(fake_sd: FakeSoundDevice) -> None:
    sink, stream = device_sink(fake_sd, latency=0.2, prebuffer_ms=0)
    assert stream.kwargs["samplerate"] == RATE and stream.kwargs["latency"] == 0.2
    data = ramp_signal(4800)
    sink.write(data.tobytes(), "a", 0)
    assert stream.started and sink.is_playing
    out = [stream.pull(240, now=0.01 * k, dac_delay=0.2) for k in range(20)]
    played = np.concatenate(out)
    fade = len(sink._ramp_in)
    assert np.array_equal(played[fade:], data[fade:])  # only the fade-in differs
    assert np.all(np.abs(played[:fade].astype(int)) <= np.abs(data[:fade].astype(int)))
    # the first block reaches the DAC at 0.2 s; at 0.255 s 55 ms have been heard
    stream.time = 0.195
    assert sink.played_ms("a", 0) == 0
    stream.time = 0.255
    assert sink.played_ms("a", 0) == 55
    stream.time = 0.45
    assert sink.played_ms("a", 0) == 200
    assert not sink.is_playing


def test_device_sink_flush_fades_within_one_block_and_drops_the_rest(
    fake_sd: FakeSoundDevice,
) -> None:
    sink, stream = device_sink(fake_sd, latency=0.1, prebuffer_ms=0, fade_ms=5)
    sink.write(np.full(24_000, 10_000, np.int16), "a", 0)
    for k in range(10):  # 100 ms handed to the device
        stream.pull(240, now=0.01 * k, dac_delay=0.1)
    sink.flush(fade=True)
    block = stream.pull(240, now=0.1, dac_delay=0.1)
    fade = block[:120].astype(int)
    assert fade[0] == 10_000 and np.all(np.diff(fade) <= 0) and fade[-1] < 200
    assert np.all(block[120:] == 0)
    assert np.all(stream.pull(240, now=0.11, dac_delay=0.1) == 0)
    stream.time = 1.0
    assert sink.played_ms("a", 0) == 105  # 100 ms plus the 5 ms fade
    assert not sink.is_playing
    # a new part after the flush plays from its start
    sink.write(np.full(2400, 5000, np.int16), "b", 0)
    got = np.concatenate([stream.pull(240, now=1.0 + 0.01 * k, dac_delay=0.1) for k in range(10)])
    assert np.all(got[120:] == 5000)
    stream.time = 2.0
    assert sink.played_ms("b", 0) == 100 and sink.played_ms("a", 0) == 105


def test_device_sink_flush_without_fade_is_immediate(fake_sd: FakeSoundDevice) -> None:
    sink, stream = device_sink(fake_sd, prebuffer_ms=0)
    sink.write(np.full(4800, 7000, np.int16), "a")
    stream.pull(240, now=0.0)
    sink.flush(fade=False)
    assert np.all(stream.pull(240, now=0.01) == 0)
    stream.time = 1.0
    assert sink.played_ms("a") == 10


async def test_device_sink_drained_is_woken_by_the_callback_then_waits_for_the_dac(
    fake_sd: FakeSoundDevice,
) -> None:
    sink, stream = device_sink(fake_sd, latency=0.2, prebuffer_ms=0)
    sink.write(np.full(2400, 3000, np.int16), "a")
    task = asyncio.create_task(sink.drained())
    await asyncio.sleep(0.05)
    assert not task.done()  # the ring holds audio and no callback ran: it waits
    for k in range(10):  # the 10th callback empties the ring and wakes it
        stream.pull(240, now=0.01 * k, dac_delay=0.2)
    await asyncio.sleep(0.02)
    assert not task.done()  # the last block reaches the DAC at 0.29 s: not yet heard
    stream.time = 0.31
    await asyncio.wait_for(task, 1.5)
    assert sink.played_ms("a") == 100


async def test_device_sink_whose_callback_stops_is_lost_not_waited_for_ever(
    fake_sd: FakeSoundDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(speaker_module, "STALL_GRACE_S", 0.05)
    sink, stream = device_sink(fake_sd, latency=0.01, prebuffer_ms=0)
    sink.write(np.full(2400, 3000, np.int16), "a")  # 100 ms, due within 110 ms
    stream.pull(240, now=0.0)  # one callback, then the sound server stalls
    await asyncio.wait_for(sink.drained(), 1.0)
    assert sink.error == "the speaker stopped playing (the sound server stalled)"
    assert not sink.is_playing


def test_device_sink_waits_for_the_prebuffer_then_starts(fake_sd: FakeSoundDevice) -> None:
    sink, stream = device_sink(fake_sd, prebuffer_ms=60)
    sink.write(np.full(480, 3000, np.int16), "a")  # 20 ms < 60 ms prebuffer
    assert np.all(stream.pull(240, now=0.0) == 0)
    assert np.all(stream.pull(240, now=0.03) == 0)
    sink.write(np.full(960, 3000, np.int16), "a")  # now 60 ms: start
    first = stream.pull(240, now=0.04)
    assert first[-1] == 3000
    # a short tail never reaching the prebuffer still plays once it waited that long
    sink2, stream2 = device_sink(fake_sd, prebuffer_ms=60)
    sink2.write(np.full(240, 3000, np.int16), "t")
    assert np.all(stream2.pull(240, now=0.0) == 0)
    assert np.all(stream2.pull(240, now=0.05) == 0)
    assert stream2.pull(240, now=0.07)[-1] == 3000


def test_device_sink_level_follows_what_is_at_the_dac(fake_sd: FakeSoundDevice) -> None:
    sink, stream = device_sink(fake_sd, prebuffer_ms=0)
    sink.write(np.zeros(2400, np.int16), "a")
    sink.write(tone(500, 0.1, dbfs=-6.0), "a")
    for k in range(20):
        stream.pull(240, now=0.01 * k, dac_delay=0.2)
    stream.time = 0.25  # 50 ms into the zeros at the DAC
    assert sink.level_dbfs is None
    stream.time = 0.35  # 50 ms into the tone
    level = sink.level_dbfs
    assert level is not None and -10 < level < -8


def test_device_sink_ring_overflow_waits_on_the_loop(fake_sd: FakeSoundDevice) -> None:
    sink, stream = device_sink(fake_sd, prebuffer_ms=0, buffer_s=0.1)
    data = ramp_signal(12_000)
    sink.write(data, "a")  # 500 ms into a 100 ms ring: the rest waits
    assert len(sink._ring) == 2400 and sink._pending
    got = []
    for k in range(50):
        got.append(stream.pull(240, now=0.01 * k))
        assert sink.is_playing  # reading the state tops the ring up
    played = np.concatenate(got)
    assert np.array_equal(played[200:], data[200:])


def test_device_sink_resamples_for_a_device_without_24k(
    fake_sd: FakeSoundDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(speaker_module, "choose_rate", lambda device, kind: 48_000)
    sink, stream = device_sink(fake_sd, prebuffer_ms=0)
    assert stream.kwargs["samplerate"] == 48_000 and stream.kwargs["blocksize"] == 480
    sink.write(tone(1000, 0.5), "a")
    sink.write(tone(1000, 0.2), "b")  # a new part: the first one's tail is flushed in
    out = np.concatenate([stream.pull(480, now=0.01 * k, dac_delay=0.0) for k in range(60)])
    stream.time = 10.0
    assert abs(sink.played_ms("a") - 500) <= 10
    spectrum = np.abs(np.fft.rfft(out[4800:19200].astype(float)))
    assert abs(np.argmax(spectrum) * 48_000 / 14_400 - 1000) < 10


def test_device_sink_open_failure_is_an_oserror(
    fake_sd: FakeSoundDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(**kwargs: Any) -> None:
        raise fake_sd.PortAudioError("Invalid sample rate")

    monkeypatch.setattr(fake_sd, "OutputStream", refuse)
    with pytest.raises(OSError, match="cannot open the speaker: Invalid sample rate"):
        DeviceSink(None)


async def test_device_sink_stream_death_does_not_hang_drained(fake_sd: FakeSoundDevice) -> None:
    sink, stream = device_sink(fake_sd, prebuffer_ms=0)
    sink.write(tone(440, 1.0), "a")
    stream.pull(240, now=0.0)
    assert sink.error is None
    assert stream.finished_callback is not None
    stream.finished_callback()  # the sound server went away
    assert sink.error == "the speaker stream stopped"
    await asyncio.wait_for(sink.drained(), 0.5)
    assert not sink.is_playing
    sink.write(tone(440, 0.1), "b")  # ignored, not an error
    await sink.close()
    assert stream.closed
    assert sink.error is None  # closed on purpose: nothing to report any more


async def test_device_sink_closed_on_purpose_reports_no_error(fake_sd: FakeSoundDevice) -> None:
    sink, stream = device_sink(fake_sd, prebuffer_ms=0)
    sink.write(tone(440, 0.5), "a")
    stream.pull(240, now=0.0)
    await sink.close()
    assert stream.finished_callback is not None
    stream.finished_callback()  # PortAudio ends the stream close() aborted
    assert sink.error is None
    assert NullSink().error is None


async def test_device_sink_that_cannot_start_says_why(
    fake_sd: FakeSoundDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink, stream = device_sink(fake_sd)

    def refuse() -> None:
        raise fake_sd.PortAudioError("Device unavailable")

    monkeypatch.setattr(stream, "start", refuse)
    sink.write(tone(440, 0.1), "a")  # starts the stream off the loop
    await asyncio.wait_for(sink.drained(), 1.0)
    assert sink.error == "cannot start the speaker: Device unavailable"
    assert not sink.is_playing


def test_bookkeeping_stays_bounded_over_a_long_session() -> None:
    sink = NullSink()
    for i in range(2000):  # 200 s of audio in 100 parts
        sink.write(np.ones(2400, np.int16), f"item_{i // 20}", 0)
    assert sink.played_ms("item_99", 0) == 2000
    ledger = sink._ledger
    assert len(ledger._segments) == 0 and len(ledger._levels) == 0 and not ledger._discards


async def test_device_sink_close_lets_the_callback_end_the_stream(
    fake_sd: FakeSoundDevice,
) -> None:
    # Aborting from outside cancels PortAudio's callback thread (ALSA), which can leave
    # the GIL locked: the callback ends the stream itself, and close() waits for that.
    sink, stream = device_sink(fake_sd, prebuffer_ms=0)
    sink.write(tone(440, 0.5), "a")
    stream.pull(240, now=0.0)
    closing = asyncio.create_task(sink.close())
    await asyncio.sleep(0.05)
    assert not closing.done() and not stream.closed  # waiting for the callback
    with pytest.raises(fake_sd.CallbackAbort):
        stream.pull(240, now=0.01)
    assert stream.finished_callback is not None
    stream.finished_callback()  # PortAudio: the callback ended the stream
    await asyncio.wait_for(closing, 0.3)  # well before the fallback abort
    assert stream.closed and sink.error is None


def test_only_an_underrun_that_cuts_audio_is_counted(fake_sd: FakeSoundDevice) -> None:
    """An underrun while the speaker plays silence (at start-up, between replies) cuts
    nothing; the status bar used to show "speaker underruns 1" before any reply."""
    sink, stream = device_sink(fake_sd, latency=0.1, prebuffer_ms=0)
    sink.write(np.zeros(0, np.int16).tobytes(), "a", 0)  # starts the stream, plays nothing
    stream.pull(240, now=0.0, underflow=True)
    assert sink.underflows == 0
    sink.write(ramp_signal(2400).tobytes(), "a", 0)
    stream.pull(240, now=0.01)
    stream.pull(240, now=0.02, underflow=True)  # mid-reply: a crackle
    assert sink.underflows == 1


# -- the idle stop ---------------------------------------------------------------------


async def wait_until(check: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


@pytest.fixture
def quick_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speaker_module, "_IDLE_CHECK_S", 0.02)


async def test_an_idle_stream_stops_and_the_next_audio_starts_it_again(
    fake_sd: FakeSoundDevice, quick_idle: None
) -> None:
    sink, stream = device_sink(fake_sd, prebuffer_ms=0, idle_stop_s=0.1)
    await sink.start()
    assert stream.started and sink.running
    await wait_until(lambda: not stream.started)
    assert stream.stops == 1 and not sink.running
    assert sink.error is None  # stopped on purpose: no speaker lost
    sink.write(np.full(480, 3000, np.int16), "a")
    await wait_until(lambda: stream.started)
    assert sink.restarts == 1
    assert stream.pull(240, now=1.0)[-1] == 3000  # what was written plays
    stream.pull(240, now=1.01)
    stream.time = 2.0
    await asyncio.wait_for(sink.drained(), 1.0)
    assert sink.played_ms("a") == 20
    await wait_until(lambda: not stream.started)  # and stops again once idle
    assert stream.stops == 2
    await sink.close()
    assert stream.closed and sink.error is None


async def test_a_stream_with_audio_to_play_does_not_stop(
    fake_sd: FakeSoundDevice, quick_idle: None
) -> None:
    sink, stream = device_sink(fake_sd, prebuffer_ms=0, idle_stop_s=0.05)
    sink.write(np.full(24_000, 3000, np.int16), "a")  # 1 s, nobody pulls it
    await wait_until(lambda: stream.started)
    await asyncio.sleep(0.3)
    assert stream.started and stream.stops == 0
    await sink.close()


async def test_wake_starts_a_stopped_stream_before_any_audio(
    fake_sd: FakeSoundDevice, quick_idle: None
) -> None:
    sink, stream = device_sink(fake_sd, idle_stop_s=0.05)
    await sink.start()
    await wait_until(lambda: not stream.started)
    sink.wake()
    await wait_until(lambda: stream.started)
    assert sink.restarts == 1
    await wait_until(lambda: not stream.started)  # no audio came: it stops again
    await sink.close()


async def test_no_idle_stop_keeps_the_stream_running(
    fake_sd: FakeSoundDevice, quick_idle: None
) -> None:
    sink, stream = device_sink(fake_sd, idle_stop_s=None)
    await sink.start()
    await asyncio.sleep(0.2)
    assert stream.started and stream.stops == 0
    await sink.close()


async def test_the_far_end_reads_silence_while_the_stream_is_stopped(
    fake_sd: FakeSoundDevice, quick_idle: None
) -> None:
    """The echo canceller reads the tap by device time: after the last block the tap
    extrapolates past what was written, which reads as silence."""
    sink, stream = device_sink(fake_sd, prebuffer_ms=0, idle_stop_s=0.05)
    sink.write(np.full(480, 3000, np.int16), "a")
    await wait_until(lambda: stream.started)
    for k in range(4):
        stream.pull(240, now=0.01 * k, dac_delay=0.02)
    stream.time = 0.1  # all of it heard
    await wait_until(lambda: not stream.started)
    far = np.ones(240, np.int16)
    position = sink.tap.position_at(5.0)  # seconds after the stop
    assert position is not None
    assert sink.tap.read_into(round(position), far) == 0 and not far.any()
    await sink.close()


async def test_every_start_plays_silence_first(
    fake_sd: FakeSoundDevice, quick_idle: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first block after a start loses its beginning on PulseAudio (measured):
    the audio waits for START_SILENCE_BLOCKS of silence, after a restart too."""
    monkeypatch.setattr(speaker_module, "START_SILENCE_BLOCKS", 2)
    sink, stream = device_sink(fake_sd, prebuffer_ms=0, idle_stop_s=0.05)
    for _ in range(2):  # the first start, then a restart after an idle stop
        sink.write(np.full(960, 3000, np.int16), "a")
        await wait_until(lambda: stream.started)
        assert not stream.pull(240, now=0.0).any()
        assert not stream.pull(240, now=0.01).any()
        assert stream.pull(240, now=0.02)[-1] == 3000
        for k in range(3, 6):
            stream.pull(240, now=0.01 * k)
        stream.time = 1.0
        await wait_until(lambda: not stream.started)
    assert sink.restarts == 1
    await sink.close()


async def test_close_does_not_hang_on_a_stop_that_never_returns(
    fake_sd: FakeSoundDevice, quick_idle: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(speaker_module, "SWITCH_TIMEOUT_S", 0.1)
    sink, stream = device_sink(fake_sd, idle_stop_s=0.02)
    release = threading.Event()
    stopping = threading.Event()

    def stalled_stop(ignore_errors: bool = True) -> None:
        stopping.set()
        release.wait(5)  # a stalled sound server

    monkeypatch.setattr(stream, "stop", stalled_stop)
    await sink.start()
    await wait_until(stopping.is_set)
    try:
        await asyncio.wait_for(sink.close(), 1.0)
        assert not stream.closed  # left alone: PortAudio is still inside stop()
        assert not sink.is_playing
    finally:
        release.set()
    await asyncio.sleep(0.05)
