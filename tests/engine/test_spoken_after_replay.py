"""After a reconnect the history is replayed as text, and live models are reported to
answer in text from then on (issue 13.6): the user is told once, against the local
server's emulation of that behaviour, and the answer is asked for again with a second
of silent user audio in the history (livekit/agents' recovery), which brings speech
back."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.engine.conftest import FAST, Recorder, started, stop
from voicecli.audio.sinks import NullSink
from voicecli.config import Config
from voicecli.engine import ConnectionChanged, Engine, Notice
from voicecli.engine.outcome import RECOVER_NOTICE, TEXT_ONLY_NOTICE
from voicecli.protocol.notifications import ResponseDone
from voicecli.server import RealtimeServer
from voicecli.server.reply import Reply

ConfigFor = Callable[..., Config]


async def test_a_text_answer_is_asked_again_and_comes_spoken(
    config_for: ConfigFor, recorder: Recorder
) -> None:
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
        engine.send_text("second")
        await recorder.wait_for(completed, count=3)  # a text answer, then the spoken retry
        engine.send_text("third")
        await recorder.wait_for(completed, count=4)
        await stop(engine, task)
        notices = [n.text for n in recorder.of(Notice)]
        assert notices.count(RECOVER_NOTICE) == 1  # the text answer was asked for again
        assert TEXT_ONLY_NOTICE not in notices  # and the second try was spoken
        answers = [i for i in engine.conversation.items if i.role == "assistant"]
        # the text answer was deleted; its spoken replacement and the next answer stay
        assert [any(p.audio_bytes_received for p in i.parts) for i in answers] == [True] * 3
        deleted = [e for e in server.received if e["type"] == "conversation.item.delete"]
        assert len(deleted) == 1


async def test_a_stubborn_text_answer_is_said_once(
    config_for: ConfigFor, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When asking again brings no speech either, the user is told once, and it is not
    asked again at every answer."""
    async with RealtimeServer(pace=0) as server:
        engine = Engine(config_for(server), sink=NullSink(), backoff=FAST)
        engine.subscribe(recorder)
        task = await started(engine)

        def completed(n: object) -> bool:
            return isinstance(n, ResponseDone) and n.status == "completed"

        engine.send_text("first")
        await recorder.wait_for(completed)
        server.faults.expire_after_s = 0.0
        await recorder.wait_for(lambda n: isinstance(n, Notice) and "time limit" in n.text)
        server.faults.expire_after_s = None
        await recorder.wait_for(
            lambda n: isinstance(n, ConnectionChanged) and n.state == "connected", count=2
        )
        # a server that answers in text whatever it gets (the modality asked is audio)
        monkeypatch.setattr(Reply, "_text_only_emulated", lambda self: True)
        engine.send_text("second")
        await recorder.wait_for(completed, count=3)  # the text answer and its retry
        engine.send_text("third")
        await recorder.wait_for(completed, count=4)
        await stop(engine, task)
        notices = [n.text for n in recorder.of(Notice)]
        assert notices.count(RECOVER_NOTICE) == 1
        assert notices.count(TEXT_ONLY_NOTICE) == 1
