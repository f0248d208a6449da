"""EchoGuard: the assistant's voice coming back through the mic is not the user's."""

from __future__ import annotations

import numpy as np
import pytest

from tests.audio.conftest import Speech, blocks, noise
from voicecli.audio.dsp import rms_dbfs
from voicecli.audio.echo import EchoGuard

BLOCK = 480  # 20 ms at 24 kHz, as the mic delivers


def scaled(x: np.ndarray, gain_db: float) -> np.ndarray:
    return np.clip(np.rint(x * 10 ** (gain_db / 20)), -32768, 32767).astype(np.int16)


def delayed(x: np.ndarray, ms: int) -> np.ndarray:
    return np.concatenate([np.zeros(ms * 24, np.int16), x])[: len(x)]


def judge(guard: EchoGuard, mic: np.ndarray, playback: np.ndarray | None) -> list[bool]:
    """Run the guard as the engine does: per mic block, with the level being played."""
    out = []
    for i, block in enumerate(blocks(mic, BLOCK)):
        level = None
        if playback is not None:
            played = playback[i * BLOCK : (i + 1) * BLOCK]
            level = rms_dbfs(played) if played.size else None
        out.append(guard.user_speaking(block, level))
    return out


@pytest.mark.parametrize("delay_ms", [0, 60, 150, 300])
@pytest.mark.parametrize("coupling_db", [-20.0, -6.0, 0.0])
def test_guard_rejects_the_echo_of_playback(
    speech_one: Speech, delay_ms: int, coupling_db: float
) -> None:
    playback = scaled(speech_one.pcm, -6.0)
    echo = delayed(scaled(playback, coupling_db), delay_ms)
    mic = (echo + noise(len(playback) / 24_000)).astype(np.int16)
    verdicts = judge(EchoGuard("guard"), mic, playback)
    audible = [rms_dbfs(b) > -65 for b in blocks(echo, BLOCK)]
    taken = [i for i, (v, a) in enumerate(zip(verdicts, audible, strict=True)) if v and a]
    assert sum(audible) > 80 and not taken, f"echo blocks taken for the user: {taken}"


def test_guard_accepts_the_user_talking_over_playback(
    speech_one: Speech, speech_two: Speech
) -> None:
    n = min(len(speech_one.pcm), len(speech_two.pcm))
    playback = scaled(speech_one.pcm[:n], -26.0)  # the assistant at low volume
    echo = delayed(scaled(playback, -6.0), 100)
    user = speech_two.pcm[:n]  # the user, close to the mic
    mic = (echo.astype(np.int32) + user).clip(-32768, 32767).astype(np.int16)
    verdicts = judge(EchoGuard("guard", margin_db=10.0), mic, playback)
    played = [rms_dbfs(b) for b in blocks(playback, BLOCK)]
    louder = silent = 0
    for i, block in enumerate(blocks(user, BLOCK)):
        recent = max(played[max(0, i - 21) : i + 1])  # the guard's 400 ms window
        if rms_dbfs(block) > recent + 10 + 2:  # clearly above echo + margin
            assert verdicts[i], i
            louder += 1
        elif rms_dbfs(block) < -60 and recent > -60:  # only echo reaches the mic
            assert not verdicts[i], i
            silent += 1
    assert louder > 40 and silent > 10  # both cases really occurred


def test_guard_with_nothing_played_lets_everything_through(speech_one: Speech) -> None:
    guard = EchoGuard("guard")
    assert all(judge(guard, speech_one.pcm, None))
    quiet = np.full(len(speech_one.pcm), 3, np.int16)  # playing, but inaudible
    assert all(judge(EchoGuard("guard"), speech_one.pcm, quiet))


def test_guard_remembers_playback_for_the_echo_delay() -> None:
    guard = EchoGuard("guard", window_ms=400)
    loud = np.full(BLOCK, 8000, np.int16)
    assert not guard.user_speaking(loud, -10.0)
    # playback stopped: its echo may still arrive for window_ms
    for _ in range(400 // 20 - 1):
        assert not guard.user_speaking(loud, None)
    later = [guard.user_speaking(loud, None) for _ in range(3)]
    assert later[-1]


def test_half_duplex_ignores_the_mic_while_playing_and_for_the_tail(speech_one: Speech) -> None:
    shout = np.full(len(speech_one.pcm), 20_000, np.int16)  # however loud the user is
    verdicts = judge(EchoGuard("half-duplex"), shout, speech_one.pcm)
    played = [rms_dbfs(b) for b in blocks(speech_one.pcm, BLOCK)]
    assert not any(v for v, level in zip(verdicts, played, strict=True) if level > -60)
    guard = EchoGuard("half-duplex", hold_ms=300)
    loud = np.full(BLOCK, 20_000, np.int16)
    assert not guard.user_speaking(loud, -10.0)
    after = [guard.user_speaking(loud, None) for _ in range(20)]
    # 300 ms hold = 15 blocks of 20 ms, then the user is heard again
    assert after == [False] * 15 + [True] * 5


def test_off_always_listens(speech_one: Speech) -> None:
    assert all(judge(EchoGuard("off"), speech_one.pcm, speech_one.pcm))


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="echo mode"):
        EchoGuard("loud")  # type: ignore[arg-type]
