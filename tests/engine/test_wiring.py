"""The engine's audio wiring and task hygiene: sink start/close, the conversation
recording, the echo guard between replies, a lost microphone, cancelled runs."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pytest

from tests.engine.conftest import Recorder, started, stop, utterance
from voicecli.audio.devices import AudioDeviceError, AudioDeviceLost
from voicecli.audio.dsp import rms_dbfs
from voicecli.audio.sinks import Int16Array, NullSink
from voicecli.audio.sources import BLOCK_SAMPLES
from voicecli.audio.wav import read_wav
from voicecli.config import Config
from voicecli.engine import Engine, EventLogged, Notice, StatusChanged
from voicecli.engine.engine import Backoff
from voicecli.protocol.notifications import AudioDelta, ResponseDone
from voicecli.server import RealtimeServer

ConfigFor = Callable[..., Config]


class QueueSource:
    """A live source the test feeds block by block; an exception put in the queue is
    raised from ``blocks()`` (a device lost mid-stream), None ends it."""

    realtime = True

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Int16Array | BaseException | None] = asyncio.Queue()
        self.entered = 0
        self.exited = 0

    async def __aenter__(self) -> QueueSource:
        self.entered += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.exited += 1

    async def blocks(self) -> AsyncIterator[Int16Array]:
        while True:
            item = await self.queue.get()
            try:
                if isinstance(item, BaseException):
                    raise item
                if item is None:
                    return
                yield item
            finally:
                self.queue.task_done()

    def stop(self) -> None:
        self.queue.put_nowait(None)  # blocks() returns when it reaches this

    async def feed(self, pcm: Int16Array, *, realtime: bool = False) -> None:
        """Queue ``pcm`` as 20 ms blocks and wait until the engine consumed them all;
        ``realtime``: one block every 20 ms, like a microphone."""
        start = time.monotonic()
        for k, pos in enumerate(range(0, len(pcm) - BLOCK_SAMPLES + 1, BLOCK_SAMPLES)):
            if realtime:
                await asyncio.sleep(max(0.0, start + k * 0.02 - time.monotonic()))
            self.queue.put_nowait(np.ascontiguousarray(pcm[pos : pos + BLOCK_SAMPLES]))
        await asyncio.wait_for(self.queue.join(), 10)


class SpySink(NullSink):
    """A NullSink that logs start/close and writes, can fail to start, and can pretend
    to be playing at a given level (for the echo guard)."""

    def __init__(self, fail_start: BaseException | None = None, realtime: bool = False) -> None:
        super().__init__(realtime=realtime)
        self.calls: list[str] = []
        self.fail_start = fail_start
        self.fake_level: float | None = None

    async def start(self) -> None:
        self.calls.append("start")
        if self.fail_start is not None:
            raise self.fail_start

    async def close(self) -> None:
        self.calls.append("close")

    def write(self, pcm: bytes | Int16Array, item_id: str, content_index: int = 0) -> None:
        self.calls.append("write")
        super().write(pcm, item_id, content_index)

    def wake(self) -> None:
        self.calls.append("wake")

    @property
    def is_playing(self) -> bool:
        return self.fake_level is not None or super().is_playing

    @property
    def level_dbfs(self) -> float | None:
        return self.fake_level if self.fake_level is not None else super().level_dbfs


def silence(seconds: float) -> Int16Array:
    return np.zeros(round(seconds * 24_000), dtype=np.int16)


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What reaches the loop's exception handler ("Task exception was never retrieved"
    among others)."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield errors
    loop.set_exception_handler(None)


def engine_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("voicecli-")]


async def test_cancelling_run_reaps_every_task(
    config_for: ConfigFor, loop_errors: list[dict[str, Any]]
) -> None:
    async with RealtimeServer(pace=0) as server:
        sink = SpySink()
        engine = Engine(
            config_for(server), source=QueueSource(), sink=sink, history=None, backoff=Backoff()
        )
        task = await started(engine)
        assert {t.get_name() for t in engine_tasks()} >= {"voicecli-send", "voicecli-recv"}
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert engine_tasks() == []
        assert sink.calls[-1] == "close"
    # the server is gone: a receiver left running would now end in ConnectionLost
    await asyncio.sleep(0.1)
    gc.collect()
    assert loop_errors == []


async def test_server_going_away_leaves_no_unretrieved_exception(
    config_for: ConfigFor, recorder: Recorder, loop_errors: list[dict[str, Any]]
) -> None:
    async with RealtimeServer(pace=0) as server:
        engine = Engine(
            config_for(server), sink=NullSink(), history=None, backoff=Backoff(max_attempts=0)
        )
        engine.subscribe(recorder)
        task = asyncio.create_task(engine.run())
        await asyncio.wait_for(engine.wait_connected(), 5)
    await asyncio.wait_for(task, 5)  # gives up: no reconnect allowed
    assert engine.status.connection == "failed"
    assert engine_tasks() == []
    gc.collect()
    assert loop_errors == []


async def test_run_starts_and_closes_the_sink(config_for: ConfigFor, recorder: Recorder) -> None:
    async with RealtimeServer(pace=0) as server:
        sink = SpySink()
        engine = Engine(config_for(server), sink=sink, history=None)
        engine.subscribe(recorder)
        task = await started(engine)
        assert sink.calls == ["start"]
        engine.send_text("hello")
        await recorder.wait_for(lambda n: isinstance(n, ResponseDone))
        await stop(engine, task)
    assert sink.calls[0] == "start" and sink.calls[-1] == "close"
    # a stream stopped while idle is woken at response.created, before the first delta
    assert sink.calls.index("wake") < sink.calls.index("write")


async def test_a_speaker_that_cannot_start_leaves_text_mode(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async with RealtimeServer(pace=0) as server:
        sink = SpySink(fail_start=AudioDeviceError("cannot start the speaker: gone"))
        engine = Engine(config_for(server), sink=sink, history=None)
        engine.subscribe(recorder)
        task = await started(engine)
        engine.send_text("hello")
        done = await recorder.wait_for(lambda n: isinstance(n, ResponseDone))
        await stop(engine, task)
    assert done[0].status == "completed"  # type: ignore[attr-defined]
    notices = [n.text for n in recorder.of(Notice) if n.level == "error"]
    assert any("speaker unavailable" in t and "gone" in t for t in notices), notices
    assert recorder.of(AudioDelta)  # the reply had audio...
    assert "write" not in sink.calls  # ...that went nowhere near the broken speaker
    assert sink.calls == ["start", "close"]


def appended_ms(recorder: Recorder) -> float:
    """Audio sent in appends (the log shows ``<audio N bytes>``)."""
    sent = [e["audio"] for e in recorder.sent() if e["type"] == "input_audio_buffer.append"]
    return sum(int(a.split()[1]) for a in sent) / 48


async def sent_so_far(engine: Engine, recorder: Recorder) -> list[str]:
    """Every event queued so far, once sent: a clear goes out behind them (FIFO)."""
    engine.clear_input()
    await recorder.wait_for(
        lambda n: isinstance(n, EventLogged) and n.event.get("type") == "input_audio_buffer.clear"
    )
    return recorder.sent_types()


async def echo_engine(
    server: RealtimeServer, config_for: ConfigFor, recorder: Recorder, echo_mode: str
) -> tuple[Engine, asyncio.Task[None], QueueSource, SpySink]:
    """An engine (local VAD) whose mic has warmed up and whose speaker just fell silent
    after playing at -12 dBFS."""
    config = config_for(server, turn_mode="local-vad", audio={"echo_mode": echo_mode})
    source, sink = QueueSource(), SpySink()
    engine = Engine(config, source=source, sink=sink, history=None)
    engine.subscribe(recorder)
    task = await started(engine)
    await source.feed(silence(0.6))  # endpointer warm-up
    sink.fake_level = -12.0  # the assistant speaks...
    await source.feed(silence(0.4))
    sink.fake_level = None  # ...and stops
    return engine, task, source, sink


@pytest.mark.parametrize("echo_mode", ["guard", "half-duplex"])
async def test_echo_tail_after_playback_is_not_a_turn(
    config_for: ConfigFor, recorder: Recorder, echo_mode: str
) -> None:
    """Right after the speaker falls silent its echo still reaches the mic: the guard
    must keep running between replies, so the tail does not open a turn."""
    async with RealtimeServer(pace=0) as server:
        engine, task, source, _ = await echo_engine(server, config_for, recorder, echo_mode)
        # the echo's tail: as loud as the reply, and over within the guard's window
        await source.feed(utterance(speech_s=0.2, lead_s=0.0, tail_s=0.7))
        assert "input_audio_buffer.append" not in await sent_so_far(engine, recorder)
        # once the guard's window/hold has passed, the same sound is the user's turn
        await source.feed(silence(0.5))
        await source.feed(utterance(speech_s=0.4, lead_s=0.0, tail_s=0.7))
        await recorder.wait_sent("input_audio_buffer.commit")
        await stop(engine, task)
    assert recorder.sent_types().count("input_audio_buffer.commit") == 1


@pytest.mark.parametrize("echo_mode", ["guard", "half-duplex"])
async def test_speech_outlasting_the_echo_window_is_a_turn_from_its_onset(
    config_for: ConfigFor, recorder: Recorder, echo_mode: str
) -> None:
    """The user starts talking as the reply ends: the onset is held as possible echo,
    and when the speech goes on past the guard's window the turn opens with it."""
    async with RealtimeServer(pace=0) as server:
        engine, task, source, _ = await echo_engine(server, config_for, recorder, echo_mode)
        await source.feed(utterance(speech_s=1.0, lead_s=0.0, tail_s=0.7))
        await recorder.wait_sent("input_audio_buffer.commit")
        await stop(engine, task)
    assert recorder.sent_types().count("input_audio_buffer.commit") == 1
    # all of the speech, from its onset (plus pre-roll and the silence that ended it)
    assert appended_ms(recorder) >= 1000 + 500


@pytest.mark.parametrize(("margin_db", "heard"), [(6.0, True), (20.0, False)])
async def test_the_configured_echo_margin_decides_if_speech_over_playback_is_heard(
    config_for: ConfigFor, recorder: Recorder, margin_db: float, heard: bool
) -> None:
    """``audio.echo_margin_db`` reaches the guard: speech about 13 dB above the level
    being played interrupts with a 6 dB margin and is taken for echo with 20 dB."""
    async with RealtimeServer(pace=0) as server:
        config = config_for(
            server,
            turn_mode="local-vad",
            audio={"echo_mode": "guard", "echo_margin_db": margin_db},
        )
        source, sink = QueueSource(), SpySink()
        engine = Engine(config, source=source, sink=sink, history=None)
        engine.subscribe(recorder)
        task = await started(engine)
        await source.feed(silence(0.6))  # endpointer warm-up
        sink.fake_level = -25.0  # the assistant speaks throughout
        speech = utterance(speech_s=0.6, lead_s=0.0, tail_s=0.8)
        assert 13.0 < rms_dbfs(speech[: int(0.6 * 24_000)]) + 25.0 < 14.0
        await source.feed(speech)
        types = await sent_so_far(engine, recorder)
        await stop(engine, task)
    assert ("input_audio_buffer.commit" in types) is heard, types


class DyingSink(SpySink):
    """A speaker whose stream ends by itself on the first audio written."""

    def __init__(self) -> None:
        super().__init__()
        self.dead: str | None = None

    def write(self, pcm: bytes | Int16Array, item_id: str, content_index: int = 0) -> None:
        super().write(pcm, item_id, content_index)
        self.dead = "the speaker stream stopped"

    @property
    def error(self) -> str | None:
        return self.dead


async def test_a_speaker_lost_mid_session_is_reported_once_and_the_session_goes_on(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async with RealtimeServer(pace=0) as server:
        config = config_for(server, turn_mode="local-vad")
        source, sink = QueueSource(), DyingSink()
        engine = Engine(config, source=source, sink=sink, history=None)
        engine.subscribe(recorder)
        task = await started(engine)
        engine.send_text("first")
        await recorder.wait_for(lambda n: isinstance(n, ResponseDone))
        await source.feed(silence(0.2))  # the mic task looks again: no second notice
        engine.send_text("second")
        await recorder.wait_for(lambda n: len(recorder.of(ResponseDone)) == 2)
        await stop(engine, task)
    assert not task.cancelled() and task.exception() is None
    assert sink.calls.count("write") >= 2  # audio of both replies reached the sink
    lost = [n.text for n in recorder.of(Notice) if "speaker" in n.text]
    assert lost == ["speaker lost: the speaker stream stopped, continuing without sound"]
    assert [n.status for n in recorder.of(ResponseDone)] == ["completed", "completed"]


class CracklingSink(SpySink):
    """A speaker that underruns twice on every write (as a starved callback would)."""

    def __init__(self) -> None:
        super().__init__()
        self.underflows = 0

    def write(self, pcm: bytes | Int16Array, item_id: str, content_index: int = 0) -> None:
        super().write(pcm, item_id, content_index)
        self.underflows += 2


async def test_speaker_underruns_show_in_the_status_and_are_explained_once(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async with RealtimeServer(pace=0) as server:
        config = config_for(server, turn_mode="local-vad")
        sink = CracklingSink()
        engine = Engine(config, source=QueueSource(), sink=sink, history=None)
        engine.subscribe(recorder)
        task = await started(engine)
        engine.send_text("first")
        await recorder.wait_for(lambda n: isinstance(n, ResponseDone))
        engine.send_text("second")
        await recorder.wait_for(lambda n: len(recorder.of(ResponseDone)) == 2)
        await stop(engine, task)
    assert engine.status.underruns == sink.underflows >= 4
    told = [n.text for n in recorder.of(Notice) if "output_latency" in n.text]
    assert len(told) == 1, told
    assert "raise audio.output_latency (now 0.03 s)" in told[0]


async def test_a_lost_microphone_leaves_the_engine_in_text_mode(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async with RealtimeServer(pace=0) as server:
        config = config_for(server, turn_mode="local-vad")
        source = QueueSource()
        engine = Engine(config, source=source, sink=NullSink(), history=None)
        engine.subscribe(recorder)
        task = await started(engine)
        # mid-utterance: a turn is open when the device goes away
        await source.feed(np.concatenate([silence(0.6), utterance(0.5, 0.0, 0.0)]))
        await recorder.wait_for(
            lambda n: (
                isinstance(n, EventLogged) and n.event.get("type") == "input_audio_buffer.append"
            )
        )
        source.queue.put_nowait(AudioDeviceLost("the microphone stopped (device lost)"))
        await recorder.wait_for(lambda n: isinstance(n, Notice) and "microphone lost" in n.text)
        assert engine.status.mic == "unavailable"
        assert source.exited == 1
        engine.send_text("still here?")
        done = await recorder.wait_for(lambda n: isinstance(n, ResponseDone))
        await stop(engine, task)
    assert not task.cancelled() and task.exception() is None
    assert done[0].status == "completed"  # type: ignore[attr-defined]
    types = recorder.sent_types()
    # the half-said turn is dropped, not answered as if it were complete
    assert "input_audio_buffer.commit" not in types
    assert "input_audio_buffer.clear" in types
    notice = next(n for n in recorder.of(Notice) if "microphone lost" in n.text)
    assert notice.level == "warning" and "text mode" in notice.text
    mic_states = [n.status.mic for n in recorder.of(StatusChanged)]
    assert mic_states[-1] == "unavailable"


class PortAudioError(Exception):
    """Like sounddevice's own error: not one of the audio layer's exceptions."""


@pytest.mark.parametrize("error", [AudioDeviceError, PortAudioError])
async def test_a_microphone_that_cannot_open_is_reported(
    config_for: ConfigFor, recorder: Recorder, error: type[Exception]
) -> None:
    class Broken(QueueSource):
        async def __aenter__(self) -> QueueSource:
            raise error("microphone: no input device matches 'usb'")

    async with RealtimeServer(pace=0) as server:
        engine = Engine(config_for(server), source=Broken(), sink=NullSink(), history=None)
        engine.subscribe(recorder)
        task = await started(engine)
        await recorder.wait_for(lambda n: isinstance(n, Notice) and "microphone" in n.text)
        assert engine.status.connection == "connected"
        await stop(engine, task)
    notice = next(n for n in recorder.of(Notice) if "microphone" in n.text)
    assert notice.level == "error" and "usb" in notice.text
    assert engine.status.mic == "unavailable"


async def test_recording_holds_the_mic_and_the_heard_reply(
    config_for: ConfigFor, recorder: Recorder, tmp_path: Path
) -> None:
    path = tmp_path / "rec.wav"
    async with RealtimeServer(pace=0) as server:
        config = config_for(server, turn_mode="local-vad", audio={"record": str(path)})
        source, sink = QueueSource(), NullSink(realtime=True)
        engine = Engine(config, source=source, sink=sink, history=None)
        engine.subscribe(recorder)
        task = await started(engine)
        mic = np.concatenate([silence(0.6), utterance(0.8, 0.0, 0.7)])
        await source.feed(mic)
        await recorder.wait_for(lambda n: isinstance(n, ResponseDone))
        reply = np.frombuffer(b"".join(n.pcm for n in recorder.of(AudioDelta)), np.int16)
        # the mic clock runs on (in real time) while the reply plays out
        await source.feed(silence(len(reply) / 24_000 + 0.3), realtime=True)
        await stop(engine, task)
    frames, info = read_wav(path)
    assert info.channels == 2 and info.rate == 24_000
    fed = len(mic) // BLOCK_SAMPLES * BLOCK_SAMPLES
    assert np.array_equal(frames[:fed, 0], mic[:fed])  # left: the microphone, exactly
    right = frames[:, 1]
    assert len(reply) > 24_000
    # right: the reply, whole and without gaps, after the question
    assert np.array_equal(np.trim_zeros(right), np.trim_zeros(reply))
    first = int(np.flatnonzero(right)[0])
    assert first >= fed


async def test_recording_keeps_only_what_was_heard_of_an_interrupted_reply(
    config_for: ConfigFor, recorder: Recorder, tmp_path: Path
) -> None:
    path = tmp_path / "rec.wav"
    async with RealtimeServer(pace=0) as server:
        config = config_for(server, audio={"record": str(path)})
        engine = Engine(config, sink=NullSink(realtime=True), history=None)
        engine.subscribe(recorder)
        task = await started(engine)
        engine.send_text("tell me a long story " * 10)
        await recorder.wait_for(lambda n: isinstance(n, ResponseDone))
        await asyncio.sleep(0.3)
        engine.cancel()
        await recorder.wait_for(
            lambda n: (
                isinstance(n, EventLogged) and n.event.get("type") == "conversation.item.truncate"
            )
        )
        await stop(engine, task)
    truncate = next(e for e in recorder.sent() if e["type"] == "conversation.item.truncate")
    reply = b"".join(n.pcm for n in recorder.of(AudioDelta))
    frames, _ = read_wav(path)
    recorded_ms = len(frames) / 24
    assert len(reply) / 48 > recorded_ms + 500  # most of the reply was never heard
    assert truncate["audio_end_ms"] <= recorded_ms <= truncate["audio_end_ms"] + 1


class LatentSink(NullSink):
    """A real-time NullSink that, like a device, still plays what its buffer holds
    (``hold_ms``) after a flush."""

    def __init__(self, hold_ms: int) -> None:
        super().__init__(realtime=True)
        self.hold = hold_ms * 24
        self.quiet_at: int | None = None

    def flush(self, fade: bool = True) -> None:
        pos = self._position()
        self.quiet_at = min(self._written, pos + self.hold)
        self._ledger.discard(self.quiet_at, self._written)

    async def drained(self) -> None:
        while self._position() < (self.quiet_at if self.quiet_at is not None else self._written):
            await asyncio.sleep(0.005)


async def test_truncate_counts_what_the_device_still_played_after_the_flush(
    config_for: ConfigFor, recorder: Recorder, tmp_path: Path
) -> None:
    path = tmp_path / "rec.wav"
    async with RealtimeServer(pace=0) as server:
        sink = LatentSink(hold_ms=150)
        engine = Engine(config_for(server, audio={"record": str(path)}), sink=sink, history=None)
        engine.subscribe(recorder)
        task = await started(engine)
        engine.send_text("tell me a long story " * 10)
        await recorder.wait_for(lambda n: isinstance(n, ResponseDone))
        item = recorder.of(AudioDelta)[0].item_id
        await asyncio.sleep(0.3)
        at_cancel = sink.played_ms(item)
        engine.cancel()
        await recorder.wait_for(
            lambda n: (
                isinstance(n, EventLogged) and n.event.get("type") == "conversation.item.truncate"
            )
        )
        heard = sink.played_ms(item)
        await stop(engine, task)
    assert recorder.sent_types().count("conversation.item.truncate") == 1
    truncate = next(e for e in recorder.sent() if e["type"] == "conversation.item.truncate")
    assert heard >= at_cancel + 140  # the device played on...
    assert truncate["audio_end_ms"] == heard  # ...and the truncate says so
    frames, _ = read_wav(path)
    assert heard <= len(frames) / 24 <= heard + 1  # the recording holds what was heard
