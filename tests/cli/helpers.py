"""Running ``python -m voicecli`` in a private environment (HOME and XDG dirs in tmp)."""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
import wave
from pathlib import Path

PRIVATE_VARS = ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME")


def private_env(root: Path, **extra: str) -> dict[str, str]:
    """os.environ without any API key or voicecli setting, every per-user directory
    under ``root``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("VOICECLI_") and k not in ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY")
    }
    for name in PRIVATE_VARS:
        path = root / name.lower()
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    env.update(extra)
    return env


def voicecli(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voicecli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def write_question(path: Path, seconds: float = 1.0, rate: int = 24_000) -> Path:
    """A mono 16-bit WAV of a warbling tone (a stand-in for speech)."""
    frames = bytearray()
    for i in range(int(seconds * rate)):
        t = i / rate
        value = 0.3 * math.sin(2 * math.pi * (220 + 80 * math.sin(2 * math.pi * 3 * t)) * t)
        frames += struct.pack("<h", int(value * 32767))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return path
