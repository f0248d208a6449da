from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from voicecli.engine.bargein import PlayedPart, Truncate, plan_barge_in, truncate_point


def part(played: float, received_ms: float, **kw: bool) -> PlayedPart:
    return PlayedPart("item_a", 0, played, int(received_ms * 48), **kw)


def test_truncate_at_what_was_heard() -> None:
    plan = plan_barge_in([part(1234.7, 5000)], active_response_id="resp_1", playing=True)
    assert plan is not None
    assert plan.flush and plan.cancel and plan.response_id == "resp_1"
    assert plan.truncates == (Truncate("item_a", 0, 1234),)


def test_truncate_clamped_to_received() -> None:
    # The sink clock ran ahead of what arrived (should not happen, must not matter).
    plan = plan_barge_in([part(2500, 2000)], active_response_id="resp_1", playing=True)
    assert plan is not None
    assert plan.truncates == (Truncate("item_a", 0, 2000),)


def test_nothing_heard_skips_truncate_but_still_cancels() -> None:
    plan = plan_barge_in([part(0, 3000)], active_response_id="resp_1", playing=False)
    assert plan is not None
    assert plan.truncates == ()
    assert plan.cancel


def test_no_cancel_when_response_finished_but_audio_still_playing() -> None:
    plan = plan_barge_in([part(800, 4000, done=True)], active_response_id=None, playing=True)
    assert plan is not None
    assert not plan.cancel and plan.response_id is None
    assert plan.truncates == (Truncate("item_a", 0, 800),)


def test_nothing_to_interrupt() -> None:
    assert plan_barge_in([], active_response_id=None, playing=False) is None


def test_server_cancels_itself_under_server_vad() -> None:
    plan = plan_barge_in(
        [part(300, 900)], active_response_id="resp_1", playing=True, server_cancels=True
    )
    assert plan is not None and not plan.cancel


def test_fully_heard_part_and_already_truncated_part_are_skipped() -> None:
    parts = [
        part(1000.4, 1000, done=True),
        PlayedPart("item_b", 0, 200, 48_000, truncated=True),
        PlayedPart("item_c", 0, 150, 48_000),
    ]
    plan = plan_barge_in(parts, active_response_id="r", playing=True)
    assert plan is not None
    assert plan.truncates == (Truncate("item_c", 0, 150),)


@given(st.floats(-1e6, 1e7, allow_nan=False), st.integers(0, 10**9))
def test_truncate_point_never_past_received_never_negative(played: float, received: int) -> None:
    end = truncate_point(played, received)
    assert 0 <= end <= received // 48
    assert end <= max(0.0, played)
