"""Every config key, set to a value other than its default, changes what voicecli does.

Issue #10.3: ``idle_timeout_ms`` was never sent, ``vad.min_turn_ms`` ignored and
``storage.log_events`` never read, though config.example.toml documented all three.
Each key below is set to a non-default value and an *observation* of the part that
should read it (the session on the wire, the endpoint, the mic pipeline on recorded
speech, the audio devices built, the files a short conversation leaves, the UI's key
bindings) must differ from the same observation with defaults. A key that config knows
and this table does not fails :func:`test_every_key_has_a_probe` (config.example.toml
documents every key: tests/config/test_config.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.audio.conftest import _load, noise
from tests.ui.fakes import FakeEngine
from voicecli import compose
from voicecli.audio import devices
from voicecli.audio.sinks import NullSink
from voicecli.config import Config, ConfigError, all_keys, load_config
from voicecli.connection import ConnectionFailed, auth_headers, build_endpoint
from voicecli.engine import Engine
from voicecli.engine.mic import MicPipeline
from voicecli.engine.turns import Append
from voicecli.protocol.notifications import ResponseDone
from voicecli.secrets import resolve_api_key
from voicecli.server import RealtimeServer
from voicecli.session import SessionModel
from voicecli.ui.app import VoiceApp

Probe = Callable[[Config, Path], Awaitable[Any]]


# -- observations -------------------------------------------------------------------


async def session_on_the_wire(cfg: Config, tmp: Path) -> Any:
    """The session sent at connect, then after each turn-mode switch (knobs of a mode
    not in force show when it is switched to)."""
    model = SessionModel(cfg)
    seen = [model.turn_mode, model.payload()]
    for mode in ("server-vad", "semantic-vad", "local-vad"):
        model.set_turn_mode(mode)  # type: ignore[arg-type]
        seen.append(model.payload())
    return seen


async def endpoint_and_key(cfg: Config, tmp: Path) -> Any:
    """Where the connection goes, how it authenticates, and which key it finds."""
    try:
        endpoint = build_endpoint(cfg.connection)
    except (ConfigError, ValueError, ConnectionFailed) as exc:
        return str(exc)
    key = resolve_api_key(cfg, env={"OPENAI_API_KEY": "sk-from-default", "MY_KEY": "sk-mine"})
    return endpoint.url, sorted(auth_headers(endpoint, "k", cfg.connection.auth)), key


def _mic_scenario() -> tuple[np.ndarray, np.ndarray]:
    one = _load("speech_one.wav").pcm
    two = _load("speech_two.wav").pcm
    while_playing = np.concatenate([noise(0.3), one])
    # a second of room noise at -45 dBFS: speech to a lenient VAD, not to a strict one
    quiet = np.concatenate([two, noise(0.5), noise(1.0, dbfs=-45.0, seed=3), noise(1.5)])
    return while_playing, quiet


async def mic_actions(cfg: Config, tmp: Path) -> Any:
    """What the mic pipeline does with recorded speech: first while the assistant plays
    (at -32 dBFS), then in quiet. Runs of appends are summed."""
    pipe = MicPipeline(cfg, cfg.turn_mode)
    out: list[tuple[str, int]] = []
    for part, playing in zip(_mic_scenario(), (True, False), strict=True):
        for k in range(0, len(part) - 479, 480):
            step = pipe.feed(
                part[k : k + 480], playing=playing, playback_dbfs=-32.0 if playing else None
            )
            for action in step.actions:
                name = type(action).__name__
                if isinstance(action, Append) and out and out[-1][0] == "Append":
                    out[-1] = (name, out[-1][1] + len(action.pcm))
                else:
                    out.append((name, len(action.pcm) if isinstance(action, Append) else k))
    return out


async def cancelled_speech(cfg: Config, tmp: Path) -> Any:
    """The echo canceller's output for speech over room noise (no far end): its noise
    suppression and gain control show in the level."""
    from voicecli.audio.aec import EchoCanceller

    canceller = EchoCanceller.from_config(cfg.audio)
    speech = _load("speech_one.wav").pcm.astype(np.int32)
    room = noise(len(speech) / 24_000, dbfs=-40.0, seed=5).astype(np.int32)
    signal = np.clip(speech + room, -32768, 32767).astype(np.int16)
    out = [canceller.process(signal[k : k + 480]) for k in range(0, len(signal) - 479, 480)]
    return round(float(np.sqrt(np.mean(np.concatenate(out).astype(float) ** 2))))


@dataclass
class _Device:
    """Stands in for DeviceSource/DeviceSink: records how it was built."""

    device: Any
    options: dict[str, Any] = field(default_factory=dict)

    def __init__(self, device: Any = None, **options: Any) -> None:
        self.device, self.options = device, options


async def audio_devices(cfg: Config, tmp: Path) -> Any:
    """The microphone and speaker the app builds (devices faked: no sound card needed)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(devices, "find_device", lambda spec, kind: f"{kind}:{spec}")
        mp.setattr("voicecli.audio.sources.DeviceSource", _Device)
        mp.setattr("voicecli.audio.device_sink.DeviceSink", _Device)
        source, sink, notices = compose.ui_audio(cfg)
    built = [d for d in (source, sink) if isinstance(d, _Device)]
    return [(d.device, d.options) for d in built], notices


async def a_short_conversation(cfg: Config, tmp: Path) -> Any:
    """A typed exchange with the local server: the files it leaves (relative to the
    test's folder, with whether they have content) and the outbox's audio bound."""
    before = {p for p in tmp.rglob("*") if p.is_file()}
    async with RealtimeServer(pace=0) as server:
        cfg = dataclasses.replace(
            cfg, connection=dataclasses.replace(cfg.connection, url=server.url)
        )
        engine = Engine(cfg, sink=NullSink())
        done = asyncio.Event()
        engine.subscribe(lambda n: done.set() if isinstance(n, ResponseDone) else None)
        task = asyncio.create_task(engine.run())
        await asyncio.wait_for(engine.wait_connected(), 5)
        engine.send_text("hello")
        await asyncio.wait_for(done.wait(), 10)
        await engine.close()
        await asyncio.wait_for(task, 5)
    files = sorted(
        (str(p.relative_to(tmp).parent), p.suffix, p.stat().st_size > 0)
        for p in tmp.rglob("*")
        if p.is_file() and p not in before
    )
    return files, engine._outbox.max_backlog_ms


def _app(cfg: Config, tmp: Path) -> VoiceApp:
    return VoiceApp(FakeEngine(), cfg, run_engine=False, save_dir=tmp / "saved")  # type: ignore[arg-type]


async def ui_bindings(cfg: Config, tmp: Path) -> Any:
    """The keys bound on the main screen, and to what."""
    app = _app(cfg, tmp)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        return sorted((key, b.binding.action) for key, b in app.screen.active_bindings.items())


async def editor_profiles(cfg: Config, tmp: Path) -> Any:
    """Whether the session editor offers profiles to load."""
    app = _app(cfg, tmp)
    async with app.run_test(size=(120, 40)) as pilot:
        app.action_session()
        await pilot.pause()
        return type(app.screen).__name__, bool(app.screen.query("#profile"))


# -- the table ----------------------------------------------------------------------

REMOTE_WS = {"connection": {"url": "ws://voice.example.com/v1/realtime"}}


@dataclass(frozen=True)
class Case:
    value: Any
    probe: Probe
    context: dict[str, Any] = field(default_factory=dict)
    """Settings both configs share, where the key only matters in some setting."""


CASES: dict[str, Case] = {
    "connection.url": Case("wss://voice.example.com/v1/realtime", endpoint_and_key),
    "connection.model": Case("gpt-realtime-mini", endpoint_and_key),
    "connection.provider": Case("azure", endpoint_and_key),
    "connection.auth": Case("api-key", endpoint_and_key),
    "connection.insecure": Case(True, endpoint_and_key, REMOTE_WS),
    "connection.api_key_env": Case("MY_KEY", endpoint_and_key),
    "connection.api_key_command": Case(
        "echo sk-from-command", endpoint_and_key, {"connection": {"api_key_env": "UNSET_KEY"}}
    ),
    "session.instructions": Case("Be brief.", session_on_the_wire),
    "session.voice": Case("cedar", session_on_the_wire),
    "session.output_modalities": Case(["text"], session_on_the_wire),
    "session.speed": Case(1.2, session_on_the_wire),
    "session.max_output_tokens": Case(512, session_on_the_wire),
    "session.noise_reduction": Case("far_field", session_on_the_wire),
    "session.turn_detection.type": Case("semantic_vad", session_on_the_wire),
    "session.turn_detection.threshold": Case(0.7, session_on_the_wire),
    "session.turn_detection.prefix_padding_ms": Case(100, session_on_the_wire),
    "session.turn_detection.silence_duration_ms": Case(900, session_on_the_wire),
    "session.turn_detection.idle_timeout_ms": Case(8000, session_on_the_wire),
    "session.turn_detection.eagerness": Case("high", session_on_the_wire),
    "session.turn_detection.create_response": Case(False, session_on_the_wire),
    "session.turn_detection.interrupt_response": Case(False, session_on_the_wire),
    "session.transcription.model": Case("gpt-4o-transcribe", session_on_the_wire),
    "session.transcription.language": Case("fr", session_on_the_wire),
    "turn_mode": Case("push-to-talk", session_on_the_wire),
    "audio.input_device": Case("USB", audio_devices),
    "audio.output_device": Case(3, audio_devices),
    "audio.output_latency": Case(0.2, audio_devices),
    "audio.headphones": Case(True, mic_actions),
    "audio.echo_mode": Case("half-duplex", mic_actions),
    "audio.echo_margin_db": Case(30.0, mic_actions),
    "audio.noise_suppression": Case(False, cancelled_speech),
    "audio.auto_gain_control": Case(True, cancelled_speech),
    "vad.aggressiveness": Case(3, mic_actions),
    "vad.frame_ms": Case(10, mic_actions),
    "vad.start_frames": Case(20, mic_actions),
    "vad.silence_ms": Case(1500, mic_actions),
    "vad.prefix_ms": Case(0, mic_actions),
    "vad.min_turn_ms": Case(2000, mic_actions),
    "audio.record": Case("conversation.wav", a_short_conversation),
    "audio.max_backlog_s": Case(5.0, a_short_conversation),
    "storage.data_dir": Case("elsewhere", a_short_conversation),
    "storage.log_events": Case(True, a_short_conversation),
    **{
        f"keys.{action}": Case(f"f{n}", ui_bindings)
        for n, action in enumerate(
            (
                "push_to_talk",
                "commit",
                "cancel",
                "clear",
                "reconnect",
                "mute",
                "turn_mode",
                "session",
                "text",
                "log",
                "save",
                "quit",
            ),
            start=1,
        )
    },
    "profiles.NAME": Case({"voice": "cedar"}, editor_profiles),
}

PATHS = {"audio.record", "storage.data_dir"}
"""Keys whose value is a path under the test's folder."""


def _overrides(key: str, value: Any, tmp: Path) -> dict[str, Any]:
    if key in PATHS:
        value = str(tmp / value)
    if key == "profiles.NAME":
        return {"profiles": {"calm": value}}
    *tables, leaf = key.split(".")
    out: dict[str, Any] = {leaf: value}
    for table in reversed(tables):
        out = {table: out}
    return out


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _config(tmp: Path, overrides: dict[str, Any]) -> Config:
    return load_config(
        env={"XDG_DATA_HOME": str(tmp / "xdg")}, overrides=overrides, user_file=False
    )


_DEFAULTS_SEEN: dict[tuple[str, str], Any] = {}


async def _default_seen(case: Case, default: Config, where: Path) -> Any:
    """The probe's observation with defaults, once per probe and context (the UI and
    conversation probes take a second or more each)."""
    key = (case.probe.__name__, repr(case.context))
    if key not in _DEFAULTS_SEEN:
        _DEFAULTS_SEEN[key] = await case.probe(default, where)
    return _DEFAULTS_SEEN[key]


def test_every_key_has_a_probe() -> None:
    assert sorted(CASES) == sorted(all_keys())


@pytest.mark.parametrize("key", sorted(CASES))
async def test_a_non_default_value_has_an_effect(key: str, tmp_path: Path) -> None:
    case = CASES[key]
    default_dir, changed_dir = tmp_path / "default", tmp_path / "changed"
    default_dir.mkdir()
    changed_dir.mkdir()
    default = _config(default_dir, case.context)
    changed = _config(changed_dir, _merge(case.context, _overrides(key, case.value, changed_dir)))
    assert default != changed, f"{key}: the value {case.value!r} is its default"
    seen_default = await _default_seen(case, default, default_dir)
    seen_changed = await case.probe(changed, changed_dir)
    assert seen_default != seen_changed, f"{key} = {case.value!r} changed nothing"
