"""Sources without a sound card: WAV files and silence (blocks, pacing), and DeviceSource
fed from a fake PortAudio thread (resampling, drop-oldest, overflow counts, device loss)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.audio.conftest import tone
from tests.audio.fake_sd import FakeSoundDevice, stream_of
from voicecli.audio import sources
from voicecli.audio.devices import AudioDeviceError, AudioDeviceLost, DeviceNotFound
from voicecli.audio.sources import (
    BLOCK_SAMPLES,
    AudioSource,
    DeviceSource,
    NullSource,
    WavFileSource,
)
from voicecli.audio.wav import write_wav


async def collect(source: AudioSource, limit: int | None = None) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    async with source as src:
        async for block in src.blocks():
            out.append(block)
            if limit is not None and len(out) >= limit:
                break
    return out


async def test_wav_file_source_yields_padded_20ms_blocks(tmp_path: Path) -> None:
    pcm = tone(440, 0.51)  # 12240 samples: 25.5 blocks
    write_wav(tmp_path / "a.wav", pcm)
    source = WavFileSource(tmp_path / "a.wav", realtime=False)
    assert isinstance(source, AudioSource) and source.realtime is False
    got = await collect(source)
    assert [len(b) for b in got] == [BLOCK_SAMPLES] * 26
    joined = np.concatenate(got)
    assert np.array_equal(joined[: len(pcm)], pcm) and not joined[len(pcm) :].any()


async def test_wav_file_source_converts_the_rate(tmp_path: Path) -> None:
    write_wav(tmp_path / "b.wav", tone(440, 1.0, rate=16_000), rate=16_000)
    got = await collect(WavFileSource(tmp_path / "b.wav", realtime=False))
    assert len(got) == 50


async def test_wav_file_source_realtime_pacing(tmp_path: Path) -> None:
    write_wav(tmp_path / "c.wav", tone(440, 0.3))
    t0 = time.monotonic()
    got = await collect(WavFileSource(tmp_path / "c.wav"))
    elapsed = time.monotonic() - t0
    assert len(got) == 15
    assert 0.27 <= elapsed < 0.8  # block k at k x 20 ms: the last at 280 ms


async def test_null_source_silence_fast_or_paced() -> None:
    got = await collect(NullSource(0.1, realtime=False))
    assert len(got) == 5 and not any(b.any() for b in got)
    t0 = time.monotonic()
    got = await collect(NullSource(), limit=11)  # endless, paced: 11 blocks take 200 ms
    assert 0.19 <= time.monotonic() - t0 < 0.7


# -- DeviceSource through a fake sounddevice -------------------------------------------


async def test_device_source_passes_24k_blocks_through(fake_sd: FakeSoundDevice) -> None:
    signal = tone(300, 0.2)
    async with DeviceSource("mic", block_ms=20) as src:
        stream = stream_of(fake_sd)
        assert stream.started and stream.kwargs["device"] == 7
        assert stream.kwargs["blocksize"] == 480 and stream.kwargs["dtype"] == "int16"
        feeder = threading.Thread(
            target=lambda: [stream.push(signal[i : i + 480]) for i in range(0, 4800, 480)]
        )
        feeder.start()
        got: list[np.ndarray] = []
        async for block in src.blocks():
            got.append(block)
            if len(got) == 10:
                break
        feeder.join()
    assert stream.closed
    assert np.array_equal(np.concatenate(got), signal)
    assert src.overflows == 0 and src.callbacks == 10


async def test_device_source_resamples_a_48k_device(
    fake_sd: FakeSoundDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "choose_rate", lambda device, kind: 48_000)
    signal = tone(1000, 1.0, rate=48_000)
    async with DeviceSource() as src:
        stream = stream_of(fake_sd)
        assert stream.kwargs["samplerate"] == 48_000 and stream.kwargs["blocksize"] == 960
        for i in range(0, len(signal), 960):
            stream.push(signal[i : i + 960])
        got: list[np.ndarray] = []
        async for block in src.blocks():
            got.append(block)
            if len(got) == 45:
                break
    assert all(len(b) == BLOCK_SAMPLES for b in got)
    out = np.concatenate(got)[2400:].astype(float)
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 24_000 / len(out) - 1000) < 5
    expected = tone(1000, 1.0)[2400 : 2400 + len(out)].astype(float)
    assert abs(np.sqrt(np.mean(out**2)) - np.sqrt(np.mean(expected**2))) < 100


async def test_device_source_drops_oldest_and_counts_overflows(
    fake_sd: FakeSoundDevice,
) -> None:
    async with DeviceSource(max_queue_blocks=3) as src:
        stream = stream_of(fake_sd)
        for k in range(8):
            stream.push(np.full(480, k, np.int16), overflow=(k == 2))
        await asyncio.sleep(0.01)  # the loop runs the deliveries
        got: list[int] = []
        async for block in src.blocks():
            got.append(int(block[0]))
            if len(got) == 3:
                break
    assert got == [5, 6, 7]
    assert src.dropped == 5 and src.input_overflows == 1 and src.overflows == 6


async def test_device_source_lost_device_raises(fake_sd: FakeSoundDevice) -> None:
    async with DeviceSource() as src:
        stream = stream_of(fake_sd)
        stream.push(np.zeros(480, np.int16))
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, stream.finish)
        got = 0
        with pytest.raises(AudioDeviceLost, match="device lost"):
            async for _ in src.blocks():
                got += 1
        assert got == 1


async def test_device_source_silent_device_raises_instead_of_hanging(
    fake_sd: FakeSoundDevice,
) -> None:
    async with DeviceSource(start_timeout_s=0.1, stall_timeout_s=0.1) as src:
        t0 = time.monotonic()
        with pytest.raises(AudioDeviceLost, match=r"no audio for 0\.1 s"):
            async for _ in src.blocks():
                pass
        assert time.monotonic() - t0 < 0.5


async def test_device_source_unknown_device_is_an_oserror(
    fake_sd: FakeSoundDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(spec: object, kind: str) -> int:
        raise DeviceNotFound("no input device matches 'x'; input devices: 0: pulse")

    monkeypatch.setattr(sources, "find_device", missing)
    with pytest.raises(AudioDeviceError, match="microphone: no input device matches 'x'"):
        async with DeviceSource("x"):
            pass


async def test_device_source_open_failure_is_an_oserror(
    fake_sd: FakeSoundDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(**kwargs: object) -> None:
        raise fake_sd.PortAudioError("Device unavailable")

    monkeypatch.setattr(fake_sd, "RawInputStream", refuse)
    with pytest.raises(OSError, match="cannot open the microphone: Device unavailable"):
        async with DeviceSource():
            pass


async def test_blocks_outside_the_context_is_an_error(fake_sd: FakeSoundDevice) -> None:
    with pytest.raises(RuntimeError):
        async for _ in DeviceSource().blocks():
            pass


async def test_device_source_close_lets_the_callback_end_the_stream(
    fake_sd: FakeSoundDevice,
) -> None:
    # as for the speaker: no abort from outside while the callback still runs
    src = DeviceSource("mic", block_ms=20)
    await src.__aenter__()
    stream = stream_of(fake_sd)
    stream.push(tone(300, 0.02))
    closing = asyncio.create_task(src.__aexit__(None, None, None))
    await asyncio.sleep(0.05)
    assert not closing.done() and not stream.closed
    with pytest.raises(fake_sd.CallbackAbort):
        stream.push(tone(300, 0.02))
    stream.finish()
    await asyncio.wait_for(closing, 0.3)
    assert stream.closed


async def test_device_source_close_aborts_a_callback_that_no_longer_runs(
    fake_sd: FakeSoundDevice,
) -> None:
    # a stalled sound server: nobody calls the callback, so close() aborts after a wait
    async with DeviceSource("mic", block_ms=20):
        stream = stream_of(fake_sd)
        t0 = time.monotonic()
    assert stream.closed and not stream.started
    assert 0.4 < time.monotonic() - t0 < 2.0


async def test_device_source_pause_releases_the_device_and_resume_takes_it_back(
    fake_sd: FakeSoundDevice,
) -> None:
    # muted: the stream is closed (not a silent open one); the consumer waits through a
    # pause much longer than the stall timeout without calling the device lost
    async with DeviceSource(stall_timeout_s=0.1, start_timeout_s=0.1) as src:
        first = stream_of(fake_sd)
        got: list[int] = []

        async def consume() -> None:
            async for block in src.blocks():
                got.append(int(block[0]))

        consumer = asyncio.create_task(consume())
        first.push(np.full(480, 1, np.int16))
        await asyncio.sleep(0.02)
        pausing = asyncio.create_task(src.pause())
        await asyncio.sleep(0.02)
        with pytest.raises(fake_sd.CallbackAbort):  # the callback ends its own stream
            first.push(np.full(480, 2, np.int16))
        await asyncio.wait_for(pausing, 2.0)  # its finished callback is late: aborted
        assert src.paused and first.closed
        await asyncio.sleep(0.4)  # four stall timeouts
        assert not consumer.done()
        await src.resume()
        second = stream_of(fake_sd)
        assert second is not first and second.started and not src.paused
        first.finish()  # the old stream's late finished callback: not this device lost
        second.push(np.full(480, 3, np.int16))
        await asyncio.sleep(0.02)
        src.stop()
        await asyncio.wait_for(consumer, 1.0)
    assert got == [1, 3]
    assert second.closed


async def test_device_source_that_cannot_reopen_after_a_pause_is_lost(
    fake_sd: FakeSoundDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with DeviceSource() as src:
        stream_of(fake_sd).push(np.zeros(480, np.int16))
        blocks = src.blocks()
        await anext(blocks)
        await asyncio.wait_for(src.pause(), 2.0)  # nobody calls back: closed after a wait

        def refuse(**kwargs: object) -> None:
            raise fake_sd.PortAudioError("device unavailable")

        monkeypatch.setattr(fake_sd, "RawInputStream", refuse)
        with pytest.raises(AudioDeviceError, match="cannot open the microphone"):
            await src.resume()
        with pytest.raises(AudioDeviceLost, match="device lost"):
            await anext(blocks)
