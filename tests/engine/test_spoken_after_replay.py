"""After a reconnect the history is replayed as text, and live models are reported to
answer in text from then on (issue 13.6): the user is told once, against the local
server's emulation of that behaviour."""

from __future__ import annotations

from collections.abc import Callable

from tests.engine.conftest import FAST, Recorder, started, stop
from voicecli.audio.sinks import NullSink
from voicecli.config import Config
from voicecli.engine import ConnectionChanged, Engine, Notice
from voicecli.engine.outcome import TEXT_ONLY_NOTICE
from voicecli.protocol.notifications import ResponseDone
from voicecli.server import RealtimeServer

ConfigFor = Callable[..., Config]


async def test_a_text_only_answer_is_said_once(config_for: ConfigFor, recorder: Recorder) -> None:
    async with RealtimeServer(pace=0) as server:
        server.faults.text_only_after_text_history = True
        engine = Engine(config_for(server), sink=NullSink(), backoff=FAST)
        engine.subscribe(recorder)
        task = await started(engine)

        def completed(n: object) -> bool:
            return isinstance(n, ResponseDone) and n.status == "completed"

        engine.send_text("first")
        await recorder.wait_for(completed)
        assert not [n for n in recorder.of(Notice) if n.text == TEXT_ONLY_NOTICE]
        # the session ends; the new one gets the conversation back as text
        server.faults.expire_after_s = 0.0
        await recorder.wait_for(lambda n: isinstance(n, Notice) and "time limit" in n.text)
        server.faults.expire_after_s = None
        await recorder.wait_for(
            lambda n: isinstance(n, ConnectionChanged) and n.state == "connected", count=2
        )
        for count, text in enumerate(("second", "third"), start=2):
            engine.send_text(text)
            await recorder.wait_for(completed, count=count)
        await stop(engine, task)
        told = [n for n in recorder.of(Notice) if n.text == TEXT_ONLY_NOTICE]
        assert len(told) == 1  # once, not at every answer
        answers = [i for i in engine.conversation.items if i.role == "assistant"]
        assert [any(p.audio_bytes_received for p in i.parts) for i in answers] == [
            True,
            False,
            False,
        ]
