"""A failed response says why (issue 13.3): ``status_details.error`` is kept in the
Conversation, said in a notice (the transcript's error row, ask's stderr), in the
status, and in the history."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.engine.conftest import FAST, Recorder, started, stop
from tests.engine.test_ask import SECRET, run_ask
from voicecli.audio.sinks import NullSink
from voicecli.config import Config
from voicecli.engine import Engine, Notice, TurnLogged
from voicecli.protocol.conversation import Conversation
from voicecli.protocol.notifications import ResponseDone
from voicecli.server import BackgroundServer, RealtimeServer

ConfigFor = Callable[..., Config]


def test_conversation_keeps_why_a_response_failed() -> None:
    conv = Conversation()
    conv.apply({"type": "response.created", "response": {"id": "resp_1"}})
    notes = conv.apply(
        {
            "type": "response.done",
            "response": {
                "id": "resp_1",
                "status": "failed",
                "status_details": {
                    "type": "failed",
                    "error": {
                        "type": "insufficient_quota",
                        "code": "insufficient_quota",
                        "message": "You exceeded your current quota.",
                    },
                },
                "output": [],
                "usage": None,
            },
        }
    )
    done = next(n for n in notes if isinstance(n, ResponseDone))
    assert done.error is not None and done.error.code == "insufficient_quota"
    assert done.why == "insufficient_quota: You exceeded your current quota."
    assert conv.response_errors["resp_1"] == done.error


async def test_engine_says_why_and_keeps_it(config_for: ConfigFor, recorder: Recorder) -> None:
    async with RealtimeServer(pace=0) as server:
        config = config_for(server)
        engine = Engine(config, sink=NullSink(), backoff=FAST)
        engine.subscribe(recorder)
        task = await started(engine)
        server.faults.fail_responses_with = "insufficient_quota"
        engine.send_text("hello")
        await recorder.wait_for(lambda n: isinstance(n, ResponseDone))
        await recorder.wait_for(lambda n: isinstance(n, TurnLogged))
        assert engine.status.response_error is not None
        assert engine.status.response_error.startswith("insufficient_quota")
        errors = [n.text for n in recorder.of(Notice) if n.level == "error"]
        assert errors == [
            "the response failed: insufficient_quota: You exceeded your current quota, "
            "please check your plan and billing details."
        ]
        server.faults.fail_responses_with = None
        engine.send_text("again")
        await recorder.wait_for(lambda n: isinstance(n, ResponseDone) and n.status == "completed")
        assert engine.status.response_error is None
        await stop(engine, task)
    lines = [
        json.loads(line)
        for path in Path(config.data_dir).rglob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    failures = [r for r in lines if r.get("type") == "response_failed"]
    assert len(failures) == 1
    assert failures[0]["error"]["code"] == "insufficient_quota"


def test_ask_prints_the_error_code(tmp_path: Path, speech_wav: Path) -> None:
    with BackgroundServer(api_key=SECRET) as server:
        server.server.faults.fail_responses_with = "insufficient_quota"
        done = run_ask(
            "ask",
            str(speech_wav),
            "--url",
            server.url,
            "--text-only",
            tmp_path=tmp_path,
            env={"OPENAI_API_KEY": SECRET},
        )
    assert done.returncode == 1, done.stderr
    assert "insufficient_quota" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
