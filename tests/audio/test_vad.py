"""Endpointer on real (espeak-ng) speech with known boundaries: onset and end times,
pre-roll, blips, warm-up, the caller's send protocol."""

from __future__ import annotations

import numpy as np
import pytest

from tests.audio.conftest import RATE, Speech, blocks, noise, tone
from voicecli.audio.vad import Endpointer, SpeechEnd, SpeechStart

Event = SpeechStart | SpeechEnd


def run(ep: Endpointer, pcm: np.ndarray, size: int = 480) -> list[tuple[Event, float]]:
    """Feed ``pcm`` in blocks; each event with the stream time (ms) when it came out."""
    out: list[tuple[Event, float]] = []
    for block in blocks(pcm, size):
        out.extend((ev, ep.stream_ms) for ev in ep.feed(block))
    return out


def with_tail(speech: Speech, seconds: float = 1.0) -> np.ndarray:
    return np.concatenate([speech.pcm, noise(seconds, seed=7)])


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
@pytest.mark.parametrize("aggressiveness", [0, 1, 2, 3])
def test_onset_and_end_match_the_known_boundaries(
    speech_one: Speech, aggressiveness: int, frame_ms: int
) -> None:
    ep = Endpointer(aggressiveness=aggressiveness, frame_ms=frame_ms)
    events = run(ep, with_tail(speech_one))
    (start, started_at), (end, ended_at) = events
    assert isinstance(start, SpeechStart) and isinstance(end, SpeechEnd)
    onset, offset = speech_one.spans_ms[0]
    # onset: the 10 ms slice holding the first speech sample; end: the slice holding
    # the last one (webrtcvad's own hangover is not counted)
    assert onset - 10 <= start.t_ms <= onset + frame_ms, start
    assert offset - frame_ms <= end.t_ms <= offset + 10, end
    assert end.speech_ms == end.t_ms - start.t_ms
    # a start is confirmed once start_frames * frame_ms of speech is heard, plus up to
    # a frame, a block and the resampler's lag (40 ms)
    assert started_at - start.t_ms <= 3 * frame_ms + frame_ms + 20 + 40
    # the end comes silence_ms after the speech, with the same slack
    assert 500 <= ended_at - end.t_ms <= 500 + frame_ms + 20 + 40
    assert not ep.in_speech


def test_two_utterances_are_two_turns(speech_two: Speech) -> None:
    events = [ev for ev, _ in run(Endpointer(), with_tail(speech_two))]
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd, SpeechStart, SpeechEnd]
    pairs = zip(events[::2], events[1::2], strict=True)
    for (start, end), (onset, offset) in zip(pairs, speech_two.spans_ms, strict=True):
        assert onset - 10 <= start.t_ms <= onset + 30
        assert offset - 30 <= end.t_ms <= offset + 10


def test_a_pause_shorter_than_silence_ms_does_not_end_the_turn(speech_two: Speech) -> None:
    # the fixture's utterances are 900 ms apart
    events = [ev for ev, _ in run(Endpointer(silence_ms=1200), with_tail(speech_two, 1.5))]
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]
    assert events[1].t_ms == pytest.approx(speech_two.spans_ms[1][1], abs=30)


@pytest.mark.parametrize("block", [160, 480, 1111, 4800])
def test_preroll_then_later_blocks_reproduce_the_audio_exactly(
    speech_one: Speech, block: int
) -> None:
    pcm = with_tail(speech_one)
    ep = Endpointer(prefix_ms=300)
    sent: list[np.ndarray] = []
    start: SpeechStart | None = None
    for chunk in blocks(pcm, block):
        events = ep.feed(chunk)
        if start is not None and not any(isinstance(e, SpeechEnd) for e in events):
            sent.append(chunk)  # the caller streams every block after the start
        for ev in events:
            if isinstance(ev, SpeechStart):
                start = ev
                sent.append(ev.preroll)
        if any(isinstance(e, SpeechEnd) for e in events):
            sent.append(chunk)
            break
    assert start is not None
    first = (start.t_ms - 300) * RATE // 1000
    joined = np.concatenate(sent)
    # nothing lost, nothing doubled: one contiguous stretch from onset - prefix_ms
    assert np.array_equal(joined, pcm[first : first + len(joined)])
    assert first <= speech_one.spans_ms[0][0] * RATE / 1000 - 300 * RATE / 1000 + 10 * RATE / 1000


def test_preroll_is_cut_at_the_stream_start() -> None:
    pcm = np.concatenate([noise(0.35), tone(200, 0.3, dbfs=-20), noise(1.0)])
    ep = Endpointer(prefix_ms=1000)
    starts = [ev for ev, _ in run(ep, pcm) if isinstance(ev, SpeechStart)]
    assert len(starts) == 1
    # the whole stream up to the start, from sample 0
    assert np.array_equal(starts[0].preroll, pcm[: len(starts[0].preroll)])


@pytest.mark.parametrize("blip_ms", [20, 40, 60])
def test_short_blips_do_not_start_a_turn(speech_one: Speech, blip_ms: int) -> None:
    onset, offset = speech_one.spans_ms[0]
    started = 0
    offsets = range(int(onset) + 50, int(offset) - 100, 37)
    for at in offsets:
        cut = speech_one.pcm[at * 24 : (at + blip_ms) * 24]
        pcm = np.concatenate([noise(1.0, seed=3), cut, noise(1.0, seed=4)])
        started += any(isinstance(e, SpeechStart) for e, _ in run(Endpointer(), pcm))
    assert started == 0, f"{started} of {len(offsets)} {blip_ms} ms blips started a turn"


def test_a_300ms_word_does_start_a_turn(speech_one: Speech) -> None:
    # the same cuts, long enough to be speech: every one starts a turn
    onset, offset = speech_one.spans_ms[0]
    for at in range(int(onset), int(offset) - 400, 150):
        cut = speech_one.pcm[at * 24 : (at + 300) * 24]
        pcm = np.concatenate([noise(1.0, seed=3), cut, noise(1.0, seed=4)])
        assert any(isinstance(e, SpeechStart) for e, _ in run(Endpointer(), pcm)), at


def test_background_noise_at_the_stream_start_is_not_speech() -> None:
    # webrtcvad alone calls the first ~100 ms of this noise speech (see vad.py)
    for dbfs in (-60.0, -45.0, -30.0):
        for agg in (0, 2, 3):
            assert run(Endpointer(aggressiveness=agg), noise(3.0, dbfs=dbfs, seed=9)) == []


def test_start_frames_sets_how_much_speech_starts_a_turn(speech_one: Speech) -> None:
    pcm = with_tail(speech_one)
    confirmed = []
    for n in (1, 3, 10):
        (start, at), _ = run(Endpointer(start_frames=n), pcm)
        assert start.t_ms == pytest.approx(speech_one.spans_ms[0][0], abs=10)
        confirmed.append(at)
    assert confirmed[0] < confirmed[1] < confirmed[2]
    assert confirmed[2] - confirmed[1] >= 7 * 30 - 30


def test_reset_restarts_the_clock_and_state(speech_one: Speech) -> None:
    ep = Endpointer()
    pcm = with_tail(speech_one)
    first = [ev for ev, _ in run(ep, pcm[: len(pcm) // 2])]
    assert ep.in_speech and isinstance(first[0], SpeechStart)
    ep.reset()
    assert not ep.in_speech and ep.stream_ms == 0
    again = [ev for ev, _ in run(ep, pcm)]
    assert [type(e) for e in again] == [SpeechStart, SpeechEnd]
    assert again[0].t_ms == first[0].t_ms


def test_bytes_input_and_empty_blocks(speech_one: Speech) -> None:
    ep = Endpointer()
    assert ep.feed(b"") == [] and ep.feed(np.zeros(0, np.int16)) == []
    events = []
    for chunk in blocks(with_tail(speech_one), 480):
        events.extend(ep.feed(chunk.tobytes()))
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"aggressiveness": 4}, "aggressiveness"),
        ({"frame_ms": 25}, "frame_ms"),
        ({"start_frames": 0}, "start_frames"),
        ({"silence_ms": 0}, "silence_ms"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Endpointer(**kwargs)
