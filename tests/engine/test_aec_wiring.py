"""The echo canceller in the engine: which echo mode is in force (and shown), the mic
blocks cancelled before everything downstream (here: the recording and the appends),
the far end taken from the speaker's tap aligned by the mic's ADC times, and the
fallback to the echo guard when the module fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pytest

import voicecli.engine.mic as mic_module
from tests.audio.test_aec import echo_of, to_int16
from tests.conftest import require
from tests.engine.conftest import Recorder, started, stop
from voicecli.audio.aec import AecUnavailable, aec_available
from voicecli.audio.sinks import NullSink
from voicecli.audio.tap import FarEndTap
from voicecli.audio.wav import read_wav, read_wav_24k_mono
from voicecli.config import Config
from voicecli.engine import Engine, Notice, StatusChanged
from voicecli.engine.mic import MicPipeline
from voicecli.server import RealtimeServer

ConfigFor = Callable[..., Config]
RATE = 24_000
BLOCK = 480
FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture(autouse=True)
def _aec() -> None:
    require("the aec extra (livekit)", aec_available(), "pip install -e '.[aec]'")


class TimedSource:
    """A live mic the test feeds (block, ADC time) pairs; None ends it."""

    realtime = True

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[np.ndarray, float] | None] = asyncio.Queue()
        self.block_adc_time: float | None = None

    async def __aenter__(self) -> TimedSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def stop(self) -> None:
        self.queue.put_nowait(None)  # blocks() returns when it reaches this

    async def blocks(self) -> AsyncIterator[np.ndarray]:
        while True:
            item = await self.queue.get()
            try:
                if item is None:
                    return
                block, self.block_adc_time = item
                yield block
            finally:
                self.queue.task_done()


class TapSink(NullSink):
    """A sink with a far-end tap, as DeviceSink has (the test writes the tap)."""

    def __init__(self) -> None:
        super().__init__()
        self.tap = FarEndTap(RATE)


def config(config_for: ConfigFor, server: RealtimeServer, tmp_path: Path, **audio: Any) -> Config:
    return config_for(
        server, turn_mode="server-vad", audio={"record": str(tmp_path / "rec.wav"), **audio}
    )


def reply_audio() -> np.ndarray:
    far = np.concatenate(
        [
            read_wav_24k_mono(FIXTURES / "speech_one.wav"),
            read_wav_24k_mono(FIXTURES / "speech_two.wav"),
        ]
    ).astype(np.float64)
    return to_int16(far / np.abs(far).max() * 16000)


async def test_mic_blocks_are_cancelled_before_the_recording_and_the_server(
    config_for: ConfigFor, tmp_path: Path, recorder: Recorder
) -> None:
    far = reply_audio()
    mic = to_int16(echo_of(far))
    async with RealtimeServer(pace=0) as server:
        sink, source = TapSink(), TimedSource()
        engine = Engine(
            config(config_for, server, tmp_path), source=source, sink=sink, history=None
        )
        engine.subscribe(recorder)
        assert engine.status.echo_mode == "aec"
        task = await started(engine)
        played = 0
        for i in range(0, len(mic) - BLOCK + 1, BLOCK):
            while played < len(far) and played < i + BLOCK + 1440:  # the speaker runs ahead
                sink.tap.write(far[played : played + 240], 10.0 + played / RATE)
                played += 240
            source.queue.put_nowait((mic[i : i + BLOCK], 10.0 + i / RATE))
            await asyncio.wait_for(source.queue.join(), 5)
        source.queue.put_nowait(None)
        await asyncio.wait_for(source.queue.join(), 20)
        await stop(engine, task)
    recorded, _ = read_wav(tmp_path / "rec.wav")
    heard = recorded[:, 0].astype(np.float64)
    span = slice(3 * RATE, 6 * RATE)  # converged: the second fixture's speech
    mic_db = 10 * np.log10(np.mean(mic[span].astype(np.float64) ** 2))
    heard_db = 10 * np.log10(np.mean(heard[span] ** 2) + 1e-9)
    assert mic_db - heard_db > 20.0, (mic_db, heard_db)
    assert engine.status.echo_mode == "aec"


async def test_without_a_device_mic_the_canceller_stands_down(
    config_for: ConfigFor, tmp_path: Path, recorder: Recorder
) -> None:
    """A file source (no ADC times) or a speaker without a tap: no echo to cancel."""
    async with RealtimeServer(pace=0) as server:
        engine = Engine(config(config_for, server, tmp_path), sink=NullSink(), history=None)
        engine.subscribe(recorder)
        task = await started(engine)
        await stop(engine, task)
    assert engine.status.echo_mode == "guard"
    assert any(
        isinstance(n, StatusChanged) and n.status.echo_mode == "guard" for n in recorder.notes
    )


async def test_a_failing_canceller_falls_back_to_the_guard_with_one_notice(
    config_for: ConfigFor, tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Any, block: np.ndarray, adc_time: float | None = None) -> np.ndarray:
        raise AecUnavailable("the echo canceller failed: boom")

    monkeypatch.setattr(mic_module.EchoCanceller, "process", broken)
    async with RealtimeServer(pace=0) as server:
        sink, source = TapSink(), TimedSource()
        engine = Engine(
            config(config_for, server, tmp_path), source=source, sink=sink, history=None
        )
        engine.subscribe(recorder)
        task = await started(engine)
        for k in range(10):
            source.queue.put_nowait((np.zeros(BLOCK, np.int16), k * 0.02))
        source.queue.put_nowait(None)
        await asyncio.wait_for(source.queue.join(), 10)
        await stop(engine, task)
    notices = [n.text for n in recorder.of(Notice) if "echo canceller" in n.text]
    assert notices == ["the echo canceller failed: boom: using the echo guard"]
    assert engine.status.echo_mode == "guard"


def test_auto_is_guard_without_the_extra(
    config_for: ConfigFor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(mic_module, "aec_available", lambda: False)
    from tests.engine.conftest import make_config

    auto = MicPipeline(make_config("ws://x", tmp_path), "local-vad")
    assert (auto.echo_mode, auto.notice) == ("guard", None)
    asked = MicPipeline(make_config("ws://x", tmp_path, audio={"echo_mode": "aec"}), "local-vad")
    assert asked.echo_mode == "guard"
    assert asked.notice is not None and "pip install 'voicecli[aec]'" in asked.notice
    phones = MicPipeline(make_config("ws://x", tmp_path, audio={"headphones": True}), "local-vad")
    assert phones.echo_mode == "off" and phones.canceller is None


def test_the_residual_check_guards_the_first_second_then_lets_a_voice_through(
    tmp_path: Path,
) -> None:
    """Before the canceller converges, echo left in the cleaned signal is not the user;
    after ~1 s of reply the check has learned the (small) residual and a voice as loud
    as the echo passes."""
    from tests.engine.conftest import make_config

    pipeline = MicPipeline(make_config("ws://x", tmp_path, audio={"echo_mode": "aec"}), "local-vad")
    guard = pipeline.echo
    loud = to_int16(np.random.default_rng(1).standard_normal(BLOCK) * 3000)  # ~ -21 dBFS
    # unconverged: residual echo as loud as a voice, playback at -15 dBFS
    assert not guard.user_speaking(loud, -15.0)
    quiet = to_int16(np.random.default_rng(2).standard_normal(BLOCK) * 10)  # converged residual
    for _ in range(60):  # 1.2 s of reply
        guard.user_speaking(quiet, -15.0)
    assert guard.user_speaking(loud, -15.0)


class _StubCanceller:
    """Returns ``output`` whatever the mic; ``jump``: re-anchor on the next block."""

    def __init__(self, output: np.ndarray) -> None:
        self.output = output
        self.realigned = 1
        self.jump = False
        self.k = 0

    def process(self, block: np.ndarray, adc_time: float | None = None) -> np.ndarray:
        out = self.output[self.k * BLOCK : (self.k + 1) * BLOCK]
        self.k += 1
        if self.jump:
            self.realigned, self.jump = self.realigned + 1, False
        return out if len(out) == BLOCK else np.zeros(BLOCK, np.int16)


def converged_pipeline(tmp_path: Path, output: np.ndarray) -> tuple[MicPipeline, _StubCanceller]:
    from tests.engine.conftest import make_config

    pipeline = MicPipeline(make_config("ws://x", tmp_path, audio={"echo_mode": "aec"}), "local-vad")
    quiet = to_int16(np.random.default_rng(2).standard_normal(BLOCK) * 10)
    for _ in range(60):  # 1.2 s of reply with a well-cancelled echo
        pipeline.echo.user_speaking(quiet, -15.0)
    stub = _StubCanceller(output)
    pipeline.canceller = stub  # type: ignore[assignment]
    return pipeline, stub


def barged(pipeline: MicPipeline, mic: np.ndarray) -> bool:
    from voicecli.engine.turns import BargeIn

    for i in range(0, len(mic) - BLOCK + 1, BLOCK):
        step = pipeline.feed(mic[i : i + BLOCK], playing=True, playback_dbfs=-15.0)
        if any(isinstance(a, BargeIn) for a in step.actions):
            return True
    return False


def test_a_voice_in_the_cleaned_signal_barges_in(tmp_path: Path) -> None:
    voice = read_wav_24k_mono(FIXTURES / "speech_one.wav")
    pipeline, _ = converged_pipeline(tmp_path, voice)
    assert barged(pipeline, voice)  # the mic heard it too


def test_cleaned_audio_louder_than_the_mic_never_barges_in(tmp_path: Path) -> None:
    """The canceller subtracting an echo that broke off: its output is no one's voice."""
    voice = read_wav_24k_mono(FIXTURES / "speech_one.wav")
    pipeline, _ = converged_pipeline(tmp_path, voice)
    assert not barged(pipeline, np.zeros_like(voice))


def test_re_anchoring_makes_the_residual_check_safe_again(tmp_path: Path) -> None:
    voice = read_wav_24k_mono(FIXTURES / "speech_one.wav")
    pipeline, stub = converged_pipeline(tmp_path, voice)
    stub.jump = True  # a speaker underrun: the echo must be found again
    assert pipeline.echo.coupling_db <= -30
    pipeline.feed(voice[:BLOCK], playing=True, playback_dbfs=-15.0)
    assert pipeline.echo.coupling_db == 0.0


def test_the_pipeline_says_while_a_reply_plays_that_the_check_still_learns(
    tmp_path: Path,
) -> None:
    """``echo_learning`` (the status bar's "(learning)"): only while playing, until the
    check has learned the echo, and again after a re-anchoring."""
    from tests.engine.conftest import make_config

    pipeline = MicPipeline(make_config("ws://x", tmp_path, audio={"echo_mode": "aec"}), "local-vad")
    quiet = to_int16(np.random.default_rng(2).standard_normal(BLOCK) * 10)
    assert not pipeline.feed(quiet, playing=False, playback_dbfs=None).echo_learning
    stub = _StubCanceller(np.zeros(80 * BLOCK, np.int16))
    pipeline.canceller = stub  # type: ignore[assignment]
    steps = [pipeline.feed(quiet, playing=True, playback_dbfs=-15.0) for _ in range(60)]
    assert steps[0].echo_learning and not steps[-1].echo_learning  # learned within 1.2 s
    stub.jump = True
    assert pipeline.feed(quiet, playing=True, playback_dbfs=-15.0).echo_learning


def test_the_barge_in_says_how_long_ago_the_voice_began(tmp_path: Path) -> None:
    """The endpointer is sure of speech only after ~90 ms of it (and a held start
    later still): the barge-in carries that delay, so the truncate can report what
    was played when the voice began."""
    from voicecli.engine.turns import BargeIn

    voice = read_wav_24k_mono(FIXTURES / "speech_one.wav")
    lead = np.zeros(RATE, np.int16)  # 1 s of silence, then the voice
    mic = np.concatenate([lead, voice])
    pipeline, _ = converged_pipeline(tmp_path, mic)
    frames = mic[: len(mic) // 240 * 240].astype(np.float64).reshape(-1, 240)
    onset_ms = 10 * int(np.argmax(10 * np.log10((frames**2).mean(axis=1) + 1e-9) > -45 + 90.3))
    for k in range(len(mic) // BLOCK):
        step = pipeline.feed(mic[k * BLOCK : (k + 1) * BLOCK], playing=True, playback_dbfs=-15.0)
        barge = [a for a in step.actions if isinstance(a, BargeIn)]
        if barge:
            decided_ms = (k + 1) * BLOCK * 1000 / RATE
            assert barge[0].voice_ms >= 90.0  # at least start_frames x frame_ms of speech
            assert abs((decided_ms - barge[0].voice_ms) - onset_ms) <= 30.0
            return
    raise AssertionError("no barge-in")


async def test_a_voice_barge_in_truncates_to_what_was_heard_when_the_voice_began(
    config_for: ConfigFor, recorder: Recorder, tmp_path: Path
) -> None:
    """The truncate goes back by the barge-in's ``voice_ms`` (not forward to what the
    device still played after the flush, as for a key press)."""
    from tests.engine.test_wiring import LatentSink
    from voicecli.engine import EventLogged
    from voicecli.engine.turns import BargeIn
    from voicecli.protocol.notifications import AudioDelta, ResponseDone

    async with RealtimeServer(pace=0) as server:
        sink = LatentSink(hold_ms=150)
        engine = Engine(config_for(server), sink=sink, history=None)
        engine.subscribe(recorder)
        task = await started(engine)
        engine.send_text("tell me a long story " * 10)
        await recorder.wait_for(lambda n: isinstance(n, ResponseDone))
        item = recorder.of(AudioDelta)[0].item_id
        await asyncio.sleep(0.5)
        at_barge = sink.played_ms(item)
        engine._do([BargeIn(voice_ms=300.0)])  # as the mic pipeline hands it over
        await recorder.wait_for(
            lambda n: (
                isinstance(n, EventLogged) and n.event.get("type") == "conversation.item.truncate"
            )
        )
        heard = sink.played_ms(item)
        await stop(engine, task)
    truncate = next(e for e in recorder.sent() if e["type"] == "conversation.item.truncate")
    assert heard >= at_barge + 140  # the device played on after the flush...
    assert at_barge - 301 <= truncate["audio_end_ms"] <= at_barge - 299  # ...not counted


class _ScriptedCanceller:
    """Returns the precomputed cleaned signal block by block (the module's output)."""

    realigned = 1

    def __init__(self, cleaned: np.ndarray) -> None:
        self.cleaned = cleaned
        self.k = 0

    def process(self, block: np.ndarray, adc_time: float | None = None) -> np.ndarray:
        out = self.cleaned[self.k * BLOCK : (self.k + 1) * BLOCK]
        self.k += 1
        return out


def at_dbfs(x: np.ndarray, dbfs: float) -> np.ndarray:
    x = x.astype(np.float64)
    return x / np.sqrt(np.mean(x**2)) * 32768 * 10 ** (dbfs / 20)


def test_at_minus_20_db_a_voice_as_loud_as_the_echo_counts_as_the_user(tmp_path: Path) -> None:
    """Quiet speakers (-20 dB coupling): the echo and a voice as loud as it are 20 dB
    below the playback, and the voice loses a few dB more to the canceller's
    double-talk suppression. Once the canceller has shown it removes the echo, a block
    it kept, 21.5 dB below the playback, is the user's. With the check's floor at
    -30 dB it was not (the threshold stayed at -20 dB: the bench's voice at -20 dB
    never barged in)."""
    from tests.engine.conftest import make_config

    rng = np.random.default_rng(5)
    echo = at_dbfs(rng.standard_normal(BLOCK * 81), -35.0)  # playback at -15 dBFS, -20 dB
    voice = at_dbfs(rng.standard_normal(BLOCK * 2), -35.0)  # as loud as the echo
    raw = to_int16(np.concatenate([echo[: BLOCK * 79], echo[BLOCK * 79 :] + voice]))
    # the echo cancelled by 50 dB; the voice kept, 1.5 dB lost to double-talk suppression
    cleaned = to_int16(np.concatenate([echo[: BLOCK * 79] * 10 ** (-50 / 20), voice * 0.84]))
    pipeline = MicPipeline(make_config("ws://x", tmp_path, audio={"echo_mode": "aec"}), "local-vad")
    pipeline.canceller = _ScriptedCanceller(cleaned)  # type: ignore[assignment]
    steps = [
        pipeline.feed(raw[k * BLOCK : (k + 1) * BLOCK], playing=True, playback_dbfs=-15.0)
        for k in range(81)
    ]
    assert not any(step.echo_ok for step in steps[:80])  # the echo: never the user
    assert steps[80].echo_ok  # the voice, kept (its 2nd block): 21.5 dB below the playback


def test_a_one_block_residual_burst_is_not_the_user(tmp_path: Path) -> None:
    """The canceller briefly losing the echo (a word's onset after a pause) leaves one
    loud, barely cancelled block; the user's voice passes for several in a row. Seen on
    the loopback: a burst 5.9 dB below the mic, 12 dB below the playback, 2.4 s into a
    reply, barged in (``bench_aec.py --dump``, replayed)."""
    from tests.engine.conftest import make_config

    rng = np.random.default_rng(7)
    echo = at_dbfs(rng.standard_normal(BLOCK * 84), -35.0)  # playback at -15 dBFS
    gains = np.full(84, 10 ** (-50 / 20))  # cancelled by 50 dB...
    gains[79] = 10 ** (-5.9 / 20)  # ...but one burst
    gains[81:83] = 10 ** (-3 / 20)  # then two blocks kept (as a voice would be)
    cleaned = to_int16(echo * np.repeat(gains, BLOCK))
    pipeline = MicPipeline(make_config("ws://x", tmp_path, audio={"echo_mode": "aec"}), "local-vad")
    pipeline.canceller = _ScriptedCanceller(cleaned)  # type: ignore[assignment]
    raw = to_int16(echo)
    ok = [
        pipeline.feed(raw[k * BLOCK : (k + 1) * BLOCK], playing=True, playback_dbfs=-15.0).echo_ok
        for k in range(84)
    ]
    assert not any(ok[:82])  # the burst alone, and the first kept block, are not the user
    assert ok[82]  # the second kept block in a row is
