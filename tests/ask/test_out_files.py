"""Files named on the command line (``ask --out``, ``--transcript``): written without
harm (issue #14 item 1). Unit level: :mod:`voicecli.files` and ``write_wav``."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

from voicecli.audio.wav import read_wav_24k_mono, write_wav
from voicecli.files import check_writable, open_private, write_file

PCM = np.arange(-2400, 2400, dtype=np.int16)


def char_device(tmp_path: Path) -> Path | None:
    """A null character device in ``tmp_path`` (root on a filesystem that allows
    device nodes), else None."""
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        with open(node, "wb") as f:  # a nodev mount makes the node but refuses to open it
            f.write(b"")
    except OSError:
        return None
    return node


def test_a_character_device_is_written_through_never_replaced(tmp_path: Path) -> None:
    node = char_device(tmp_path)
    if node is None:  # not root, or a nodev mount: the FIFO test below covers write-through
        node = tmp_path / "fifo"
        os.mkfifo(node)
        got = bytearray()
        reader = threading.Thread(target=lambda: got.extend(node.read_bytes()), daemon=True)
        reader.start()
        write_wav(node, PCM)
        reader.join(10)
        assert stat.S_ISFIFO(os.stat(node).st_mode)
        assert bytes(got[:4]) == b"RIFF"
        return
    check_writable(node)
    write_wav(node, PCM)
    assert stat.S_ISCHR(os.stat(node).st_mode), "the device was replaced by a regular file"
    assert os.stat(node).st_rdev == os.makedev(1, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["null"]  # no temporary file left


def test_a_fifo_is_written_through(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    check_writable(fifo)  # never opens it (that would block without a reader)
    got = bytearray()
    reader = threading.Thread(target=lambda: got.extend(fifo.read_bytes()), daemon=True)
    reader.start()
    write_wav(fifo, PCM)
    reader.join(10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    out = tmp_path / "copy.wav"
    out.write_bytes(bytes(got))
    assert np.array_equal(read_wav_24k_mono(out), PCM)


def test_a_symlink_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "answers" / "a.wav"
    real.parent.mkdir()
    real.write_bytes(b"old")
    real.chmod(0o640)
    link = tmp_path / "latest.wav"
    link.symlink_to(real)
    check_writable(link)
    write_wav(link, PCM)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert np.array_equal(read_wav_24k_mono(real), PCM)
    assert stat.S_IMODE(real.stat().st_mode) == 0o640  # an existing file keeps its mode
    # a dangling link: its target is created
    dangling = tmp_path / "next.wav"
    dangling.symlink_to(tmp_path / "answers" / "b.wav")
    write_wav(dangling, PCM)
    assert dangling.is_symlink() and (tmp_path / "answers" / "b.wav").is_file()


def test_a_regular_file_is_replaced_atomically_with_the_mode_asked(tmp_path: Path) -> None:
    path = tmp_path / "t.md"
    write_file(path, b"one", new_mode=0o600)
    assert path.read_bytes() == b"one" and stat.S_IMODE(path.stat().st_mode) == 0o600
    inode = path.stat().st_ino
    write_file(path, b"two")
    assert path.read_bytes() == b"two" and path.stat().st_ino != inode
    assert [p.name for p in tmp_path.iterdir()] == ["t.md"]


def test_writable_checks_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        check_writable(tmp_path / "no" / "such" / "a.wav")
    assert missing.value.filename == str(tmp_path / "no" / "such" / "a.wav")
    with pytest.raises(IsADirectoryError):
        check_writable(tmp_path)
    check_writable(tmp_path / "new.wav")
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing


def test_open_private_makes_new_files_private(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with open_private(path) as f:
        f.write("{}\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
