"""Issue #14 item 11, the command-line parts: interrupted text marked the same way in a
saved transcript and in ``export``; ``history`` hides sessions without turns unless
``--all``; exported transcripts are private (0600); ``devices`` shows the default
sample rate. And item 9's global options after the subcommand."""

from __future__ import annotations

import stat
from pathlib import Path

from tests.cli.helpers import private_env, voicecli
from tests.ui.fakes import FakeItem
from voicecli import cli
from voicecli.audio.devices import DeviceInfo
from voicecli.history import SessionLog, SessionRecord, to_markdown
from voicecli.ui.widgets.transcript import transcript_markdown


def test_interrupted_text_is_marked_the_same_when_saved_and_exported() -> None:
    item = FakeItem(
        "item_a", "assistant", status="incomplete", truncated_at_ms=900, body="One two three", cut=7
    )
    saved = transcript_markdown([item])
    # what the journal logs for that item (engine/journal.py turn_record)
    turn = {"role": "assistant", "text": item.text, "heard": item.heard_text}
    turn["unheard"] = item.unheard_text
    exported = to_markdown(SessionRecord(Path("s.jsonl"), {}, (turn,)))
    mark = "One two ~~three~~ *(interrupted)*"
    assert mark in saved and mark in exported
    # cut at the very end: nothing unheard, still marked in both
    whole = FakeItem("b", "assistant", truncated_at_ms=5, body="Done.", cut=5)
    turn = {"role": "assistant", "text": "Done.", "heard": "Done.", "unheard": ""}
    assert "Done. *(interrupted)*" in transcript_markdown([whole])
    assert "Done. *(interrupted)*" in to_markdown(SessionRecord(Path("s"), {}, (turn,)))


def _data_dir(env: dict[str, str]) -> Path:
    return Path(env["XDG_DATA_HOME"]) / "voicecli"


def test_history_hides_sessions_without_turns_unless_all(tmp_path: Path) -> None:
    env = private_env(tmp_path)
    empty = SessionLog.create(_data_dir(env), now=1_764_000_000)
    empty.close()
    done = voicecli("history", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("no sessions with turns") and "--all" in done.stdout
    spoken = SessionLog.create(_data_dir(env), now=1_764_000_060)
    spoken.append_turn({"role": "user", "item_id": "u", "text": "hello there"})
    spoken.close()
    lines = voicecli("history", env=env).stdout.splitlines()
    assert len(lines) == 2 and lines[1].endswith("hello there")
    every = voicecli("history", "--all", env=env).stdout.splitlines()
    assert len(every) == 3 and every[2].startswith(empty.path.name[:-6])


def test_export_out_is_private_like_the_session_logs(tmp_path: Path) -> None:
    env = private_env(tmp_path)
    log = SessionLog.create(_data_dir(env), now=1_764_000_000)
    log.append_turn({"role": "user", "item_id": "u", "text": "a secret plan"})
    log.close()
    out = tmp_path / "t.md"
    done = voicecli("export", log.session_id, "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == stat.S_IMODE(log.path.stat().st_mode) == 0o600
    assert "a secret plan" in out.read_text(encoding="utf-8")


def test_devices_shows_the_default_sample_rate() -> None:
    found = [
        DeviceInfo(0, "USB mic", "ALSA", 1, 0, 44100.0, True, False),
        DeviceInfo(1, "pulse", "ALSA", 32, 32, 48000.0, False, True),
    ]
    lines = cli.format_devices(found).splitlines()
    assert lines[0].split() == ["#", "in", "out", "rate", "default", "name"]
    assert lines[1].split()[:4] == ["0", "1", "0", "44100"]
    assert lines[2].split()[:5] == ["1", "32", "32", "48000", "output"]


def test_global_options_work_before_or_after_the_subcommand(tmp_path: Path) -> None:
    parser = cli.build_parser()
    after = "--debug --voice ash --model m --url ws://h/x --config c.toml --turn-mode server-vad"
    args = parser.parse_args(["ask", "q.wav", *after.split(), "--headphones", "--insecure"])
    assert args.debug and args.voice == "ash" and args.model == "m" and args.url == "ws://h/x"
    assert args.config == Path("c.toml") and args.turn_mode == "server-vad"
    assert args.headphones and args.insecure
    before = parser.parse_args(["--voice", "cedar", "--debug", "history"])
    assert before.voice == "cedar" and before.debug and not before.all
    # a value before the subcommand survives one that is not repeated after it
    assert parser.parse_args(["--voice", "cedar", "ask", "q.wav", "--local"]).voice == "cedar"
    # and in a real run: --config after the subcommand is read
    bad = tmp_path / "bad.toml"
    bad.write_text("[session\n", encoding="utf-8")
    done = voicecli("history", "--config", str(bad), env=private_env(tmp_path))
    assert done.returncode == 2 and "TOML syntax error" in done.stderr
