"""What the app benchmarks share: a private PulseAudio with the virtual devices and a
``voicecli serve`` on a free port, torn down afterwards; and the ``parec`` command that
records the virtual speaker."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAREC_SPEAKER = [
    "parec", "-d", "speaker.monitor", "--raw", "--rate=24000", "--channels=1",
    "--format=s16le", "--latency-msec=10",
]  # fmt: skip
"""Records the virtual speaker's monitor: raw 24 kHz mono s16le on stdout."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Stack:
    work: Path
    """A fresh directory for the run's files."""
    env: dict[str, str]
    """The environment with PULSE_SERVER set to the private sound server."""
    url: str
    """The local server's Realtime endpoint."""


@contextmanager
def local_stack(prefix: str, *, keep: bool = False) -> Iterator[Stack]:
    """Virtual audio and a local server for the ``with`` block; ``keep``: leave the
    work directory (recordings) behind."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    audio_dir = work / "audio"
    subprocess.run(
        [str(REPO / "scripts/virtual-audio-start"), str(audio_dir)], check=True, capture_output=True
    )
    env = dict(os.environ, PULSE_SERVER=f"unix:{audio_dir}/pulse.sock")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "voicecli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield Stack(work, env, f"ws://127.0.0.1:{port}/v1/realtime")
    finally:
        server.terminate()
        server.wait()
        subprocess.run(
            [str(REPO / "scripts/virtual-audio-stop"), str(audio_dir)], capture_output=True
        )
        if keep:
            print(f"recordings kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
