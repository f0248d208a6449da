"""The API key never reaches a file or an output: ``voicecli ask`` runs against the local
server (which requires the key) with --debug, a transcript, an answer WAV and a history,
including runs whose connection drops (mid-answer, mid-question), that get malformed
frames, that record the conversation to a WAV, whose session expires, and a wrong key;
every file written under the private HOME
and XDG directories, plus stdout and stderr, is searched for the key."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.cli.helpers import private_env, voicecli, write_question
from voicecli.server import BackgroundServer, Faults

KEY = "sk-test-SECRET123"


def _all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_key_is_never_written_anywhere(tmp_path: Path) -> None:
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    question = write_question(work / "q.wav")
    outputs: list[str] = []
    faults = Faults()
    with BackgroundServer(api_key=KEY, faults=faults, pace=0, record=False) as srv:
        env = private_env(home, OPENAI_API_KEY=KEY)

        def ask(name: str, *extra: str, env: dict[str, str] = env) -> int:
            done = voicecli(
                "--debug",
                "--url",
                srv.url,
                *extra,
                "ask",
                str(question),
                "--out",
                str(work / f"{name}.wav"),
                "--transcript",
                str(work / f"{name}.jsonl"),
                env=env,
                cwd=work,
            )
            outputs.extend((done.stdout, done.stderr))
            return done.returncode

        # 1. the key from the environment; a full exchange
        assert ask("env") == 0, outputs[-1]
        # 2. the key from api_key_command, through a config file
        config = home / "xdg_config_home" / "voicecli" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f'[connection]\napi_key_env = "UNSET_KEY_VAR"\n'
            f'api_key_command = "{sys.executable} -c \'print(\\"{KEY}\\")\'"\n',
            encoding="utf-8",
        )
        config.chmod(0o600)
        assert ask("command") == 0, outputs[-1]
        config.unlink()
        # 3. the connection drops in the middle of the answer
        faults.drop_after_audio_deltas = 1
        assert ask("drop") == 1, outputs[-1]
        faults.drop_after_audio_deltas = None
        # 4. the connection drops while the question is being sent
        faults.drop_on_append = 1
        assert ask("drop_append") == 1, outputs[-1]
        faults.drop_on_append = None
        # 5. malformed frames before the answer, the conversation recorded to a WAV
        config.write_text(f'[audio]\nrecord = "{work / "recording.wav"}"\n', encoding="utf-8")
        config.chmod(0o600)
        faults.malformed_before_reply = ("text", "binary", "unknown_type", "missing_fields")
        assert ask("malformed") == 0, outputs[-1]
        faults.malformed_before_reply = ()
        # 6. the session expires at once
        faults.expire_after_s = 0.0
        ask("expired")
        faults.expire_after_s = None
        config.unlink()
        # 7. a wrong key
        assert ask("wrong", env={**env, "OPENAI_API_KEY": "sk-test-WRONG-0000"}) == 1

    files = _all_files(home) + _all_files(work)
    sessions = [p for p in files if p.suffix == ".jsonl" and "sessions" in p.parts]
    assert sessions, "ask wrote no history: nothing was checked"
    assert (work / "env.jsonl").stat().st_size > 0
    assert (work / "recording.wav").stat().st_size > 44  # the recording was written
    leaks = [str(p) for p in files if KEY.encode() in p.read_bytes()]
    assert leaks == []
    for text in outputs:
        assert KEY not in text
    # the debug log did log the handshake, with the key replaced
    assert any("[REDACTED]" in text for text in outputs)
