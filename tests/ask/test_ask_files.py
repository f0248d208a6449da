"""``voicecli ask`` and the files it is told to write (issue #14 items 1 and 10, issue
#10 item 9): end to end, in a subprocess, against the local server or a closed port."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.ask.test_out_files import char_device
from tests.cli.helpers import private_env, voicecli
from voicecli.audio.wav import read_wav_24k_mono

STDOUT = ("--out", "/dev/stdout")


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"ws://127.0.0.1:{port}/v1/realtime"


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("voicecli"), stderr
    return lines[0]


def test_a_failed_ask_leaves_an_existing_answer_intact(tmp_path: Path, speech_wav: Path) -> None:
    out = tmp_path / "answer.wav"
    out.write_bytes(b"a good answer from yesterday")
    env = private_env(tmp_path, OPENAI_API_KEY="sk-test-x")
    done = voicecli("ask", str(speech_wav), "--url", closed_port_url(), "--out", str(out), env=env)
    assert done.returncode == 1
    assert "refused" in one_line(done.stderr)
    assert out.read_bytes() == b"a good answer from yesterday"


@pytest.mark.parametrize(
    ("flag", "where", "expect"),
    [
        ("--transcript", "no/such/dir/t.jsonl", "No such file or directory"),
        ("--out", "no/such/dir/a.wav", "No such file or directory"),
        ("--out", ".", "Is a directory"),
    ],
)
def test_unusable_files_fail_before_connecting(
    tmp_path: Path, speech_wav: Path, flag: str, where: str, expect: str
) -> None:
    env = private_env(tmp_path, OPENAI_API_KEY="sk-test-x")
    path = tmp_path / where
    # a closed port: had it connected first, the line would say "refused"
    done = voicecli("ask", str(speech_wav), "--url", closed_port_url(), flag, str(path), env=env)
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert f"cannot write {flag} {path}" in line and expect in line


def test_out_text_only_is_refused_before_connecting(tmp_path: Path, speech_wav: Path) -> None:
    env = private_env(tmp_path, OPENAI_API_KEY="sk-test-x")
    out = tmp_path / "a.wav"
    url = closed_port_url()
    done = voicecli("ask", str(speech_wav), "--url", url, "--text-only", "--out", str(out), env=env)
    assert done.returncode == 2 and "--text-only" in one_line(done.stderr)
    assert not out.exists()


@pytest.mark.slow
def test_out_dev_stdout_is_the_answer_and_the_lines_go_to_stderr(
    tmp_path: Path, speech_wav: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "voicecli", "ask", "--local", str(speech_wav), *STDOUT],
        env=private_env(tmp_path),
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout[:4] == b"RIFF"
    copy = tmp_path / "copy.wav"
    copy.write_bytes(done.stdout)
    # the local server echoes the question
    assert np.array_equal(read_wav_24k_mono(copy), read_wav_24k_mono(speech_wav))
    assert b"assistant:" in done.stderr


@pytest.mark.slow
def test_out_special_files_and_links_end_to_end(tmp_path: Path, speech_wav: Path) -> None:
    env = private_env(tmp_path)
    node = char_device(tmp_path)
    got = bytearray()
    reader: threading.Thread | None = None
    if node is None:  # no device nodes here: a FIFO is written through the same way
        node = tmp_path / "fifo"
        os.mkfifo(node)
        target = node
        reader = threading.Thread(target=lambda: got.extend(target.read_bytes()), daemon=True)
        reader.start()
    kind = stat.S_IFMT(os.stat(node).st_mode)
    done = voicecli("ask", "--local", str(speech_wav), "--out", str(node), env=env)
    assert done.returncode == 0, done.stderr
    assert stat.S_IFMT(os.stat(node).st_mode) == kind, "the special file was replaced"
    if reader is not None:
        reader.join(10)
        assert bytes(got[:4]) == b"RIFF"

    real = tmp_path / "answers" / "latest.wav"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "a.wav"
    link.symlink_to(real)
    done = voicecli("ask", "--local", str(speech_wav), "--out", str(link), env=env)
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and read_wav_24k_mono(real).size > 0


@pytest.mark.slow
def test_an_unusable_data_dir_gives_one_notice_and_the_answer(
    tmp_path: Path, speech_wav: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("", encoding="utf-8")
    env = private_env(tmp_path, XDG_DATA_HOME=str(blocker))  # data dir below a file
    transcript = tmp_path / "t.jsonl"
    done = voicecli("ask", "--local", str(speech_wav), "--transcript", str(transcript), env=env)
    assert done.returncode == 0, done.stderr
    line = one_line(done.stderr)
    assert line.startswith("voicecli ask: no session history (Not a directory")
    assert line.endswith("going on without it")
    assert "assistant:" in done.stdout
    assert stat.S_IMODE(transcript.stat().st_mode) == 0o600  # like the session logs


def test_anything_else_left_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("", encoding="utf-8")
    # --debug makes the UI open its debug log in the data dir, below a file here
    done = voicecli("--debug", env=private_env(tmp_path, XDG_DATA_HOME=str(blocker)))
    assert done.returncode == 1
    assert one_line(done.stderr).startswith("voicecli: Not a directory")
