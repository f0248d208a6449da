"""VoiceApp settles the heap between turns: survivors frozen, a periodic full collect."""

from __future__ import annotations

import gc
import weakref

import pytest

from tests.ui.fakes import FakeEngine
from voicecli.protocol.notifications import ResponseDone
from voicecli.ui import app as app_module
from voicecli.ui.app import VoiceApp


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.mark.parametrize(("every", "freed"), [(2, True), (1000, False)])
async def test_response_done_freezes_survivors_and_thaws_periodically(
    monkeypatch: pytest.MonkeyPatch, every: int, freed: bool
) -> None:
    monkeypatch.setattr(app_module, "UNFREEZE_EVERY", every)
    engine = FakeEngine()
    app = VoiceApp(engine, None, run_engine=False)
    async with app.run_test(size=(80, 24)) as pilot:
        node = Node()
        ref = weakref.ref(node)
        engine.publish(ResponseDone("resp_1", "completed", None, None))
        await pilot.pause()
        assert gc.get_freeze_count() > 0
        del node  # dies inside the frozen generation
        engine.publish(ResponseDone("resp_2", "completed", None, None))
        await pilot.pause()
        assert (ref() is None) is freed
        assert gc.get_freeze_count() > 0
