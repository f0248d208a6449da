"""The status bus: the mic level is published in visible steps, at most 20 times a
second, and the last level always reaches the screen."""

from __future__ import annotations

import pytest

from voicecli.engine import bus as bus_module
from voicecli.engine.bus import LEVEL_INTERVAL_S, StatusBus
from voicecli.engine.notifications import StatusChanged
from voicecli.engine.status import LEVEL_STEPS, EngineStatus
from voicecli.protocol.notifications import Notification


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(bus_module.time, "monotonic", fake)
    return fake


def levels(notes: list[Notification]) -> list[float]:
    return [n.status.mic_level for n in notes if isinstance(n, StatusChanged)]


def test_a_level_that_holds_publishes_once(clock: Clock) -> None:
    bus, notes = StatusBus(EngineStatus()), []
    bus.subscribe(notes.append)
    for _ in range(100):  # two seconds of blocks at one level
        bus.set_level(0.5)
        clock.now += 0.02
    assert levels(notes) == [0.5]


def test_a_change_below_one_step_is_neither_kept_nor_published(clock: Clock) -> None:
    bus, notes = StatusBus(EngineStatus()), []
    bus.subscribe(notes.append)
    bus.set_level(0.5)
    clock.now += 1.0
    bus.set_level(0.5 + 0.4 / LEVEL_STEPS)
    assert bus.status.mic_level == 0.5 and levels(notes) == [0.5]
    bus.set_level(0.5 + 1 / LEVEL_STEPS)
    assert levels(notes) == [0.5, 0.5 + 1 / LEVEL_STEPS]


def test_the_last_level_reaches_the_screen_after_a_quick_drop(clock: Clock) -> None:
    # speech ends within one publishing interval: the meter must not stay up
    bus, notes = StatusBus(EngineStatus()), []
    bus.subscribe(notes.append)
    bus.set_level(0.75)
    clock.now += 0.02
    bus.set_level(0.0)  # kept, not yet published
    assert bus.status.mic_level == 0.0 and levels(notes) == [0.75]
    for _ in range(5):  # silence goes on: the next block past the interval publishes it
        clock.now += 0.02
        bus.set_level(0.0)
    assert levels(notes) == [0.75, 0.0]


def test_levels_are_published_at_most_every_interval(clock: Clock) -> None:
    bus, notes = StatusBus(EngineStatus()), []
    bus.subscribe(notes.append)
    for k in range(50):  # one second of a level that changes every block
        bus.set_level((k % 2) * 0.5 + 0.25)
        clock.now += 0.02
    assert len(levels(notes)) <= 1 / LEVEL_INTERVAL_S + 1


def test_setting_what_the_status_already_says_builds_nothing_and_publishes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The mic loop sets fields on every block: values that hold must cost comparisons,
    not a new status (a dataclasses.replace of ~25 fields) per block."""
    built: list[object] = []
    real_replace = bus_module.replace

    def counting_replace(obj: EngineStatus, **changes: object) -> EngineStatus:
        built.append(changes)
        return real_replace(obj, **changes)

    monkeypatch.setattr(bus_module, "replace", counting_replace)
    bus, notes = StatusBus(EngineStatus(overflows=2)), []
    bus.subscribe(notes.append)
    for _ in range(50):
        bus.set(overflows=2, echo_learning=False)
    assert not built and not notes
    bus.set(overflows=3, echo_learning=False)
    assert bus.status.overflows == 3 and len(notes) == 1 and len(built) == 1
