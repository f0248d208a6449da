"""VoiceApp settles the heap when the speaker is quiet: survivors frozen, a periodic
full collect; never a collection while a reply plays (it would starve the speaker)."""

from __future__ import annotations

import dataclasses
import gc
import weakref

import pytest

from tests.ui.fakes import FakeEngine
from voicecli.engine.notifications import StatusChanged
from voicecli.engine.status import ResponseState
from voicecli.protocol.notifications import ResponseDone
from voicecli.ui import app as app_module
from voicecli.ui.app import VoiceApp


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def set_response(engine: FakeEngine, response: ResponseState) -> None:
    engine.status = dataclasses.replace(engine.status, response=response)
    engine.publish(StatusChanged(engine.status))


def reply_over(engine: FakeEngine) -> None:
    set_response(engine, "playing")
    engine.publish(ResponseDone("resp", "completed", None, None))
    set_response(engine, "idle")


@pytest.mark.parametrize(("every", "freed"), [(3, True), (1000, False)])
async def test_a_reply_ending_freezes_survivors_and_thaws_periodically(
    monkeypatch: pytest.MonkeyPatch, every: int, freed: bool
) -> None:
    monkeypatch.setattr(app_module, "UNFREEZE_EVERY", every)
    engine = FakeEngine()
    app = VoiceApp(engine, None, run_engine=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert gc.get_freeze_count() > 0  # the laid-out history, frozen on mount
        node = Node()
        ref = weakref.ref(node)
        reply_over(engine)  # settle 2
        await pilot.pause()
        del node  # dies inside the frozen generation
        reply_over(engine)  # settle 3: thaws when every == 3
        await pilot.pause()
        assert (ref() is None) is freed
        assert gc.get_freeze_count() > 0


async def test_no_settle_while_the_reply_still_plays(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = FakeEngine()
    app = VoiceApp(engine, None, run_engine=False)
    settles: list[str] = []
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        settle = app._settle_heap

        def counted() -> None:
            settles.append(engine.status.response)
            settle()

        monkeypatch.setattr(app, "_settle_heap", counted)
        set_response(engine, "playing")
        await pilot.pause()
        # the server is done long before the speaker: audio arrives faster than real time
        engine.publish(ResponseDone("resp_1", "completed", None, None))
        set_response(engine, "playing")
        await pilot.pause()
        assert settles == []
        set_response(engine, "idle")
        await pilot.pause()
        assert settles == ["idle"]
        set_response(engine, "generating")
        set_response(engine, "idle")  # no reply ended since: nothing to settle
        await pilot.pause()
        assert len(settles) == 1
        # a text-only reply: the speaker was quiet all along
        engine.publish(ResponseDone("resp_2", "completed", None, None))
        await pilot.pause()
        assert len(settles) == 2
