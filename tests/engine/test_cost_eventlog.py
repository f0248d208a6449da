from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.engine.conftest import Recorder, started, stop
from voicecli.audio.sinks import NullSink
from voicecli.audio.sources import WavFileSource
from voicecli.config import Config
from voicecli.engine import Engine
from voicecli.engine.cost import (
    CostMeter,
    realtime_prices,
    response_cost,
    transcription_cost,
)
from voicecli.engine.eventlog import REDACTED, sanitize
from voicecli.protocol.notifications import ResponseDone, TranscriptDone, TranscriptionUsage, Usage
from voicecli.server import RealtimeServer

ConfigFor = Callable[..., Config]

M = 1_000_000


def test_each_model_has_its_prices() -> None:
    usage = Usage(
        input_tokens=M, output_tokens=2 * M, input_audio_tokens=M,
        output_audio_tokens=M, output_text_tokens=M,
    )  # fmt: skip
    full, mini = realtime_prices("gpt-realtime"), realtime_prices("gpt-realtime-mini")
    assert full is not None and mini is not None
    assert response_cost(usage, full) == pytest.approx(32 + 64 + 16)
    assert response_cost(usage, mini) == pytest.approx(10 + 20 + 2.4)
    # dated snapshots take their model's prices; unknown models (deployments) have none
    assert realtime_prices("gpt-realtime-2025-08-28") == full
    assert realtime_prices("gpt-realtime-mini-2025-10-06") == mini
    assert realtime_prices("my-azure-deployment") is None
    assert realtime_prices("gpt-realtime-max") is None


def test_cached_tokens_come_from_their_details() -> None:
    full = realtime_prices("gpt-realtime")
    assert full is not None
    usage = Usage(
        input_tokens=2 * M, input_text_tokens=M, input_audio_tokens=M,
        input_cached_tokens=M,
        input_cached_text_tokens=M // 4, input_cached_audio_tokens=3 * M // 4,
    )  # fmt: skip
    text = 0.75 * 4 + 0.25 * 0.40
    audio = 0.25 * 32 + 0.75 * 0.40
    assert response_cost(usage, full) == pytest.approx(text + audio)
    # no breakdown at all: priced as audio
    assert response_cost(Usage(input_tokens=1000, output_tokens=1000), full) == pytest.approx(0.096)


def test_transcription_is_priced_by_its_model() -> None:
    tokens = TranscriptionUsage(input_audio_tokens=M, input_text_tokens=M, output_tokens=M)
    assert transcription_cost(tokens, "gpt-4o-mini-transcribe") == pytest.approx(3 + 1.25 + 5)
    assert transcription_cost(tokens, "gpt-4o-transcribe") == pytest.approx(6 + 2.5 + 10)
    assert transcription_cost(TranscriptionUsage(seconds=120), "whisper-1") == pytest.approx(0.012)
    assert transcription_cost(tokens, "my-transcribe-deployment") is None


def test_the_meter_prices_per_model_and_never_a_local_server() -> None:
    usage = Usage(input_tokens=M, input_audio_tokens=M)
    mini = CostMeter("gpt-realtime-mini", free=False)
    assert mini.add_response(usage)["cost_usd"] == pytest.approx(10)
    local = CostMeter("gpt-realtime", free=True)
    assert local.add_response(usage) == {"input_tokens": M, "output_tokens": 0, "cost_usd": None}
    tr = TranscriptionUsage(input_audio_tokens=M)
    assert local.add_transcription(tr, "gpt-4o-mini-transcribe")["transcription_usd"] is None
    assert mini.add_transcription(tr, "gpt-4o-mini-transcribe") == {
        "transcription_tokens": M,
        "transcription_usd": pytest.approx(3),
    }
    unknown = CostMeter("my-deployment", free=False)
    assert unknown.add_response(usage)["cost_usd"] is None


def test_sanitize_elides_audio_and_redacts_secrets() -> None:
    b64 = base64.b64encode(bytes(9600)).decode()
    ev = {"type": "input_audio_buffer.append", "audio": b64, "event_id": "e1"}
    assert sanitize(ev)["audio"] == "<audio 9600 bytes>"
    assert ev["audio"] == b64  # the original is untouched
    delta = {"type": "response.output_audio.delta", "delta": base64.b64encode(b"abc").decode()}
    assert sanitize(delta)["delta"] == "<audio 3 bytes>"
    leaky = {
        "type": "error",
        "error": {"message": "bad key sk-test-SECRET given", "api_key": "x"},
        "headers": [{"Authorization": "Bearer sk-test-SECRET"}],
    }
    clean = sanitize(leaky, ("sk-test-SECRET",))
    assert "sk-test-SECRET" not in repr(clean)
    assert clean["error"]["api_key"] == REDACTED
    assert clean["headers"][0]["Authorization"] == REDACTED
    item = {
        "type": "conversation.item.create",
        "item": {"content": [{"type": "input_audio", "audio": b64}]},
    }
    assert sanitize(item)["item"]["content"][0]["audio"] == "<audio 9600 bytes>"


async def test_the_engine_counts_transcription_apart_and_prices_nothing_locally(
    server: RealtimeServer, config_for: ConfigFor, recorder: Recorder, speech_wav: Path
) -> None:
    config = config_for(server, turn_mode="local-vad")
    engine = Engine(config, source=WavFileSource(speech_wav, realtime=False), sink=NullSink())
    engine.subscribe(recorder)
    task = await started(engine)
    await recorder.wait_for(lambda n: isinstance(n, TranscriptDone) and n.role == "user")
    await recorder.wait_for(lambda n: isinstance(n, ResponseDone))
    await stop(engine, task)
    assert engine.status.transcription_tokens > 0  # tokens, as gpt-4o-mini-transcribe bills
    assert engine.status.input_tokens > 0
    assert engine.status.cost_usd is None and engine.status.transcription_usd is None
