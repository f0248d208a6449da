from __future__ import annotations

from collections.abc import Sequence

import pytest

from voicecli.engine.turns import Append, BargeIn, Clear, Commit, TurnController

BLOCK = bytes(960)  # 20 ms of PCM16 at 24 kHz


def appended_ms(actions: Sequence[object]) -> float:
    return sum(len(a.pcm) / 48 for a in actions if isinstance(a, Append))


def test_local_vad_sends_nothing_before_speech_then_preroll_and_blocks_then_commits() -> None:
    tc = TurnController("local-vad")
    assert tc.client_decides
    assert tc.block(BLOCK) == []
    acts = tc.speech_start(bytes(300 * 48))
    assert acts[0] == BargeIn()
    assert appended_ms(acts) == 300
    for _ in range(10):
        assert appended_ms(tc.block(BLOCK)) == 20
    assert tc.speech_end() == [Commit(respond=True)]
    assert tc.block(BLOCK) == []
    assert tc.speech_end() == []


def test_local_vad_short_blip_is_cleared_not_committed() -> None:
    tc = TurnController("local-vad", min_turn_ms=100)
    tc.speech_start(bytes(40 * 48))
    tc.block(BLOCK)
    tc.block(BLOCK)  # 80 ms in all
    assert tc.speech_end() == [Clear()]


def test_exactly_min_turn_is_committed() -> None:
    tc = TurnController("local-vad", min_turn_ms=100)
    tc.speech_start(bytes(60 * 48))
    tc.block(BLOCK)
    tc.block(BLOCK)
    assert tc.speech_end() == [Commit()]


def test_muted_sends_nothing_in_any_mode_and_mute_mid_turn_clears() -> None:
    for mode in ("local-vad", "push-to-talk", "server-vad", "semantic-vad"):
        tc = TurnController(mode)  # type: ignore[arg-type]
        tc.set_muted(True)
        assert tc.block(BLOCK) == []
        assert tc.speech_start(BLOCK) == []
        assert tc.push_to_talk() == []
    tc = TurnController("local-vad")
    tc.speech_start(bytes(200 * 48))
    assert tc.set_muted(True) == [Clear()]
    assert not tc.in_turn


def test_push_to_talk_sends_only_between_presses() -> None:
    tc = TurnController("push-to-talk")
    assert tc.block(BLOCK) == []
    assert tc.speech_start(BLOCK) == []  # local VAD does not open turns here
    assert tc.push_to_talk() == [BargeIn()]
    for _ in range(6):
        assert tc.block(BLOCK) == [Append(BLOCK)]
    assert tc.push_to_talk() == [Commit()]
    assert tc.block(BLOCK) == []


def test_push_to_talk_quick_double_press_clears() -> None:
    tc = TurnController("push-to-talk")
    tc.push_to_talk()
    tc.block(BLOCK)
    assert tc.push_to_talk() == [Clear()]


def test_enter_commits_open_push_to_talk_turn() -> None:
    tc = TurnController("push-to-talk")
    tc.push_to_talk()
    for _ in range(5):
        tc.block(BLOCK)
    assert tc.commit() == [Commit()]
    assert tc.commit() == []


@pytest.mark.parametrize("mode", ["server-vad", "semantic-vad"])
def test_server_modes_stream_continuously(mode: str) -> None:
    tc = TurnController(mode)  # type: ignore[arg-type]
    assert not tc.client_decides
    assert tc.block(b"\x01\x00" * 480) == [Append(b"\x01\x00" * 480)]
    assert tc.speech_start(BLOCK) == []
    assert tc.speech_end() == []


def test_server_mode_sends_silence_when_echo_guard_rejects_mic() -> None:
    tc = TurnController("server-vad", echo_mode="guard")
    loud = b"\x00\x40" * 480
    tc.playing = True
    assert tc.block(loud, echo_ok=False) == [Append(bytes(960))]
    assert tc.block(loud, echo_ok=True) == [Append(loud)]
    tc.echo_mode = "half-duplex"
    assert tc.block(loud, echo_ok=True) == [Append(bytes(960))]
    tc.echo_mode = "off"
    assert tc.block(loud, echo_ok=False) == [Append(loud)]
    tc.playing = False
    tc.echo_mode = "half-duplex"
    assert tc.block(loud, echo_ok=False) == [Append(loud)]


def test_local_vad_onset_during_playback_needs_echo_guard() -> None:
    tc = TurnController("local-vad", echo_mode="guard")
    tc.playing = True
    assert tc.speech_start(BLOCK, echo_ok=False) == []
    assert not tc.in_turn
    assert tc.speech_start(BLOCK, echo_ok=True)[0] == BargeIn()


def test_server_commit_resets_buffer_and_manual_commit_of_short_buffer_clears() -> None:
    tc = TurnController("server-vad")
    for _ in range(20):
        tc.block(BLOCK)
    tc.server_committed()
    assert tc.buffered_ms == 0
    tc.block(BLOCK)
    assert tc.commit() == [Clear()]
    for _ in range(10):
        tc.block(BLOCK)
    assert tc.commit() == [Commit()]


def test_switching_mode_mid_turn_discards_it() -> None:
    tc = TurnController("local-vad")
    tc.speech_start(bytes(500 * 48))
    assert tc.set_mode("server-vad") == [Clear()]
    assert tc.mode == "server-vad"
    assert tc.set_mode("server-vad") == []


def test_clear_discards_open_turn() -> None:
    tc = TurnController("push-to-talk")
    tc.push_to_talk()
    tc.block(BLOCK)
    assert tc.clear() == [Clear()]
    assert not tc.in_turn
    assert tc.block(BLOCK) == []


def test_max_turns_keeps_barge_in_but_opens_no_more_turns() -> None:
    tc = TurnController("local-vad", max_turns=1)
    tc.speech_start(bytes(300 * 48))
    assert tc.speech_end() == [Commit()]
    assert tc.speech_start(bytes(300 * 48)) == [BargeIn()]
    assert not tc.in_turn
    assert tc.block(BLOCK) == []
    assert tc.speech_end() == []


def test_local_vad_speech_held_as_echo_opens_the_turn_once_it_passes_the_guard() -> None:
    tc = TurnController("local-vad", echo_mode="guard")
    tc.playing = True
    assert tc.speech_start(bytes(300 * 48), echo_ok=False) == []
    assert tc.block(BLOCK, echo_ok=False) == []
    assert tc.block(BLOCK, echo_ok=True, voiced=False) == []  # quiet: proves nothing
    acts = tc.block(BLOCK, echo_ok=True)
    assert acts[0] == BargeIn() and tc.in_turn
    assert appended_ms(acts) == 300 + 3 * 20  # everything since the onset
    assert appended_ms(tc.block(BLOCK, echo_ok=False)) == 20  # in the turn: all sent
    assert tc.speech_end() == [Commit(respond=True)]


def test_local_vad_held_speech_that_never_passes_is_forgotten() -> None:
    tc = TurnController("local-vad", echo_mode="half-duplex")
    tc.playing = True
    assert tc.speech_start(bytes(300 * 48), echo_ok=True) == []  # half-duplex: gated
    assert tc.block(BLOCK, echo_ok=True) == []
    assert tc.speech_end() == []
    tc.playing = False
    assert tc.block(BLOCK, echo_ok=True) == []  # nothing held any more
    assert not tc.in_turn


def test_local_vad_held_speech_is_bounded() -> None:
    tc = TurnController("local-vad", echo_mode="guard", max_held_ms=100)
    tc.playing = True
    tc.speech_start(bytes(60 * 48), echo_ok=False)
    for _ in range(20):
        tc.block(BLOCK, echo_ok=False)
    acts = tc.block(BLOCK, echo_ok=True)
    assert 80 <= appended_ms(acts) <= 100


def test_local_vad_held_speech_with_max_turns_reached_only_interrupts() -> None:
    tc = TurnController("local-vad", echo_mode="guard", max_turns=0)
    tc.playing = True
    tc.speech_start(bytes(300 * 48), echo_ok=False)
    assert tc.block(BLOCK, echo_ok=True) == [BargeIn()]
    assert not tc.in_turn
