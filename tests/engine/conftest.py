"""Fixtures for engine tests: a local server per test, configs pointing at it, test
signals that webrtcvad and the server's energy VAD both hear as speech."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicecli.audio.wav import write_wav
from voicecli.config import Config, load_config
from voicecli.engine import Engine, EventLogged
from voicecli.engine.engine import Backoff
from voicecli.protocol.notifications import Notification
from voicecli.server import RealtimeServer

RATE = 24_000


def utterance(speech_s: float = 1.0, lead_s: float = 0.5, tail_s: float = 1.2) -> np.ndarray:
    """Silence, a voiced-like harmonic burst, silence. A periodic signal counts as
    speech for webrtcvad (see audio-testing/README.md) and is loud for the server's VAD."""
    t = np.arange(int(speech_s * RATE)) / RATE
    voiced = sum(np.sin(2 * np.pi * f0 * t) / (k + 1) for k, f0 in enumerate((180, 360, 540, 720)))
    voiced = voiced / np.max(np.abs(voiced)) * 0.5
    pcm = np.concatenate([np.zeros(int(lead_s * RATE)), voiced, np.zeros(int(tail_s * RATE))])
    return (pcm * 32767).astype(np.int16)


@pytest.fixture
async def server() -> AsyncIterator[RealtimeServer]:
    srv = RealtimeServer(pace=0)
    async with srv:
        yield srv


def make_config(url: str, tmp_path: Path, **overrides: Any) -> Config:
    base: dict[str, Any] = {
        "connection": {"url": url, "model": "gpt-realtime"},
        "data_dir": str(tmp_path / "data"),
    }
    base.update(overrides)
    return load_config(config_file=None, env={}, overrides=base)


@pytest.fixture
def config_for(tmp_path: Path) -> Callable[..., Config]:
    def build(srv: RealtimeServer, **overrides: Any) -> Config:
        return make_config(srv.url, tmp_path, **overrides)

    return build


@pytest.fixture
def speech_wav(tmp_path: Path) -> Path:
    path = tmp_path / "speech.wav"
    write_wav(path, utterance())
    return path


class Recorder:
    """Collects notifications and lets a test await one (no polling)."""

    def __init__(self) -> None:
        self.notes: list[Notification] = []
        self._changed = asyncio.Event()

    def __call__(self, note: Notification) -> None:
        self.notes.append(note)
        self._changed.set()

    def of(self, kind: type[Any]) -> list[Any]:
        return [n for n in self.notes if isinstance(n, kind)]

    async def wait_for(
        self, predicate: Callable[[Notification], bool], timeout: float = 10.0, count: int = 1
    ) -> list[Notification]:
        async def waiter() -> list[Notification]:
            while True:
                hits = [n for n in self.notes if predicate(n)]
                if len(hits) >= count:
                    return hits
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(waiter(), timeout)

    def sent(self) -> list[dict[str, Any]]:
        return [dict(n.event) for n in self.of(EventLogged) if n.direction == "sent"]

    async def wait_sent(self, kind: str, timeout: float = 10.0) -> None:
        """Until the engine has sent an event of type ``kind``."""
        await self.wait_for(
            lambda n: (
                isinstance(n, EventLogged) and n.direction == "sent" and n.event.get("type") == kind
            ),
            timeout,
        )

    def sent_types(self) -> list[str]:
        return [str(e["type"]) for e in self.sent()]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


async def started(engine: Engine) -> asyncio.Task[None]:
    task = asyncio.create_task(engine.run())
    await asyncio.wait_for(engine.wait_connected(), 5)
    return task


async def stop(engine: Engine, task: asyncio.Task[None]) -> None:
    await engine.close()
    await asyncio.wait_for(task, 5)


FAST = Backoff(initial=0.02, cap=0.1)


def history_records(data_dir: Path) -> list[dict[str, Any]]:
    """The turn records of every session log under ``data_dir`` (headers left out)."""
    out: list[dict[str, Any]] = []
    for path in sorted(data_dir.rglob("*.jsonl")):
        records = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
        out.extend(r for r in records if r.get("kind") == "turn")
    return out
