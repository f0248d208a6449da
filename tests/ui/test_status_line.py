"""The status line names audio trouble only when there is some."""

from __future__ import annotations

from voicecli.engine.status import EngineStatus
from voicecli.ui.widgets.status import render_status


def line(status: EngineStatus) -> str:
    return render_status(status, now=100.0, started_at=0.0, ack="").plain


def test_a_healthy_session_shows_no_audio_trouble() -> None:
    text = line(EngineStatus(connection="connected"))
    assert "underruns" not in text and "overflows" not in text


def test_speaker_underruns_and_mic_overflows_are_counted() -> None:
    text = line(EngineStatus(connection="connected", underruns=4, overflows=2))
    assert "speaker underruns 4" in text
    assert "overflows 2 dropped 0 ms" in text


def test_the_echo_mode_in_force_is_shown() -> None:
    assert "echo aec" in line(EngineStatus(connection="connected", echo_mode="aec"))
    assert "echo guard" in line(EngineStatus(connection="connected", echo_mode="guard"))
    assert "echo" not in line(EngineStatus(connection="connected"))


def test_a_reply_playing_while_the_echo_check_learns_is_marked() -> None:
    learning = EngineStatus(connection="connected", echo_mode="aec", echo_learning=True)
    assert "echo aec (learning)" in line(learning)
    assert "learning" not in line(EngineStatus(connection="connected", echo_mode="aec"))
