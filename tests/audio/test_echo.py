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


# -- the learned echo path (guard mode) ----------------------------------------------


def reply_of(speech_one: Speech, speech_two: Speech, seconds: float) -> np.ndarray:
    """A long reply: the fixtures back to back, at about -12 to -17 dBFS per block."""
    one = np.concatenate([speech_one.pcm, speech_two.pcm])
    n = round(seconds * 24_000)
    return scaled(np.tile(one, n // len(one) + 1)[:n], 9.0)


def mix(*parts: np.ndarray) -> np.ndarray:
    n = max(len(p) for p in parts)
    out = np.zeros(n, np.int32)
    for p in parts:
        out[: len(p)] += p
    return out.clip(-32768, 32767).astype(np.int16)


def audible_blocks(x: np.ndarray) -> list[bool]:
    return [rms_dbfs(b) > -65 for b in blocks(x, BLOCK)]


def echo_blocks(echo: np.ndarray, playback: np.ndarray) -> list[bool]:
    """Blocks where the echo is audible and playback the guard must explain was audible
    in its 400 ms window (the fixtures' pauses play their -61 dBFS noise: below the
    guard's -60 dBFS floor, taken as nothing played)."""
    played = [rms_dbfs(b) for b in blocks(playback, BLOCK)]
    return [
        a and max(played[max(0, i - 20) : i + 1]) > -60 for i, a in enumerate(audible_blocks(echo))
    ]


@pytest.mark.parametrize("delay_ms", [0, 60, 150, 300])
@pytest.mark.parametrize("coupling_db", [-40.0, -30.0, -20.0, -10.0, 0.0])
def test_guard_learns_the_echo_path_and_never_takes_echo_for_the_user(
    speech_one: Speech, speech_two: Speech, delay_ms: int, coupling_db: float
) -> None:
    playback = reply_of(speech_one, speech_two, 20.0)
    echo = delayed(scaled(playback, coupling_db), delay_ms)
    mic = mix(echo, noise(20.0))
    guard = EchoGuard("guard")
    verdicts = judge(guard, mic, playback)
    audible = echo_blocks(echo, playback)
    taken = [i for i, (v, a) in enumerate(zip(verdicts, audible, strict=True)) if v and a]
    assert sum(audible) > 400 and not taken, f"echo blocks taken for the user: {taken}"
    # learned: near the real coupling (reverb-free echo: at most the real one)
    assert coupling_db - 3.0 <= guard.coupling_db <= coupling_db + 0.5, guard.coupling_db


@pytest.mark.parametrize("delay_ms", [40, 200])
def test_guard_accepts_a_normal_voice_over_playback_once_learned(
    speech_one: Speech, speech_two: Speech, delay_ms: int
) -> None:
    # the colleague's measurement: playback about -12 dBFS, the user at the mic -29
    # dBFS; a laptop-like echo path of -30 dB
    playback = reply_of(speech_one, speech_two, 14.0)
    echo = delayed(scaled(playback, -30.0), delay_ms)
    user = np.concatenate([np.zeros(6 * 24_000, np.int16), scaled(speech_two.pcm, -5.0)])
    mic = mix(echo, user, noise(14.0))
    guard = EchoGuard("guard", margin_db=10.0)
    verdicts = judge(guard, mic, playback)
    played = [rms_dbfs(b) for b in blocks(playback, BLOCK)]
    clear = 0
    for i, block in enumerate(blocks(user, BLOCK)):
        if i < 6 * 50 or not len(block):
            continue
        recent = max(played[max(0, i - 21) : i + 1])  # the guard's 400 ms window
        if rms_dbfs(block) > recent - 30.0 + 10.0 + 3.0:  # clearly above echo + margin
            assert verdicts[i], (i, rms_dbfs(block), recent)
            clear += 1
    assert clear > 40  # the case really occurred (all rejected with a 0 dB coupling)
    guarded = echo_blocks(echo, playback)
    assert not any(v for v, g in zip(verdicts[: 6 * 50], guarded, strict=False) if g)


def test_soft_user_speech_while_learning_never_lets_echo_through_later(
    speech_one: Speech, speech_two: Speech
) -> None:
    playback = reply_of(speech_one, speech_two, 12.0)
    echo = delayed(scaled(playback, -30.0), 100)
    # soft: about 8 dB below what the initial 0 dB coupling lets through, taken for echo
    soft = np.concatenate([np.full(24_000, 0, np.int16), scaled(speech_one.pcm, -4.0)])
    mic = mix(echo, soft, noise(12.0))
    guard = EchoGuard("guard")
    learned = []
    verdicts = []
    for i, block in enumerate(blocks(mic, BLOCK)):
        level = rms_dbfs(playback[i * BLOCK : (i + 1) * BLOCK])
        verdicts.append(guard.user_speaking(block, level))
        learned.append(guard.coupling_db)
    guarded = echo_blocks(mic, playback)
    taken = [i for i, (v, g) in enumerate(zip(verdicts, guarded, strict=True)) if v and g]
    assert sum(guarded) > 300 and not taken, taken
    raised = max(learned[2 * 50 : len(soft) // BLOCK])
    assert raised > -25.0  # the soft voice was taken for echo and raised the coupling...
    assert learned[-1] < -29.0  # ...and was forgotten once learn_ms had passed


def test_the_learned_coupling_is_bounded() -> None:
    guard = EchoGuard("guard", min_coupling_db=-40.0)
    silent = np.zeros(BLOCK, np.int16)
    for _ in range(200):  # 4 s of playback the mic does not hear at all
        assert not guard.user_speaking(silent, -12.0)
    assert guard.coupling_db == -40.0
    loud = scaled(np.full(BLOCK, 8000, np.int16), 0.0)  # rms -12.3 dBFS
    guard = EchoGuard("guard", coupling_db=0.0, max_coupling_db=3.0)
    for _ in range(200):  # 8 dB above playback: below 0 + margin 10, taken for echo
        assert not guard.user_speaking(loud, -20.0)
    assert guard.coupling_db == 3.0
    with pytest.raises(ValueError, match="coupling_db"):
        EchoGuard("guard", coupling_db=-50.0)


def test_the_learned_coupling_persists_across_replies(
    speech_one: Speech, speech_two: Speech
) -> None:
    playback = reply_of(speech_one, speech_two, 5.0)
    echo = delayed(scaled(playback, -30.0), 100)
    guard = EchoGuard("guard")
    judge(guard, mix(echo, noise(5.0)), playback)
    learned = guard.coupling_db
    silence = np.zeros(5 * 24_000, np.int16)
    assert all(judge(guard, noise(5.0), silence)[20:])  # a pause: the echo window ends
    guard.reset()
    assert guard.coupling_db == learned < -29.0
    # the next reply: the user is heard from its first blocks
    user = scaled(speech_one.pcm, 3.0)[: 2 * 24_000]
    mic = mix(echo[: len(user)], user)
    guarded = echo_blocks(mic, playback[: len(user)])
    learned_verdicts = judge(guard, mic, playback[: len(user)])
    fresh_verdicts = judge(EchoGuard("guard"), mic, playback[: len(user)])
    assert sum(v for v, g in zip(learned_verdicts, guarded, strict=True) if g) > 20
    assert not any(v for v, g in zip(fresh_verdicts, guarded, strict=True) if g)


def _noise_block(dbfs: float, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(BLOCK)
    return scaled(x / np.sqrt(np.mean(x**2)) * 32768, dbfs)


def test_with_a_canceller_what_it_removed_is_echo_however_loud() -> None:
    """``removed_db``: a block the canceller took ``cancelled_db`` out of is echo (its
    residual is learned); a block it kept is judged by level only."""
    guard = EchoGuard("guard", learn_ms=1000, min_coupling_db=-40.0, cancelled_db=10.0)
    for k in range(60):  # 1.2 s of a well-cancelled echo: residual 60 dB below playback
        assert not guard.user_speaking(_noise_block(-75.0, k), -15.0, removed_db=50.0)
    assert guard.coupling_db == -40.0
    loud = _noise_block(-20.0, 99)  # 5 dB below the playback: far above the threshold
    assert not guard.user_speaking(loud, -15.0, removed_db=12.0)  # cancelled: echo
    assert guard.user_speaking(loud, -15.0, removed_db=3.0)  # kept: the user


def test_with_a_canceller_a_kept_voice_below_the_threshold_is_not_learned() -> None:
    """A quiet voice the canceller kept (below the threshold) must not raise the
    threshold: the next, slightly louder word would not pass either."""
    guard = EchoGuard("guard", learn_ms=1000, min_coupling_db=-40.0, cancelled_db=10.0)
    for k in range(60):
        guard.user_speaking(_noise_block(-75.0, k), -15.0, removed_db=50.0)
    for k in range(50):  # 1 s of a voice 32 dB below the playback (threshold: -30 dB)
        assert not guard.user_speaking(_noise_block(-47.0, k), -15.0, removed_db=2.0)
    assert guard.coupling_db == -40.0
    without = EchoGuard("guard", learn_ms=1000, min_coupling_db=-40.0)
    for k in range(60):
        without.user_speaking(_noise_block(-75.0, k), -15.0)
    for k in range(50):
        without.user_speaking(_noise_block(-47.0, k), -15.0)
    assert without.coupling_db > -40.0  # the level test alone learns it as echo


def test_learning_until_the_window_was_learned_once_and_again_after_relearn() -> None:
    """``learning`` (shown in the status bar while a reply plays): the guard still holds
    its safe initial coupling."""
    guard = EchoGuard("guard", learn_ms=1000, min_coupling_db=-40.0, cancelled_db=10.0)
    assert guard.learning
    for k in range(25):  # 0.5 s of echo the canceller removed
        guard.user_speaking(_noise_block(-75.0, k), -15.0, removed_db=50.0)
    assert guard.learning
    for k in range(20):  # silence plays: nothing to learn from
        guard.user_speaking(_noise_block(-75.0, k), None)
    assert guard.learning
    for k in range(25):  # the second half
        guard.user_speaking(_noise_block(-75.0, k), -15.0, removed_db=50.0)
    assert not guard.learning
    guard.relearn()  # the far end jumped: the canceller must find the echo again
    assert guard.learning
    assert not EchoGuard("half-duplex").learning and not EchoGuard("off").learning
