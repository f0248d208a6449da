"""The transcript follows the newest line while the user is at the bottom (issue 14.2).

Before the fix, the first flush that made the transcript overflow could not scroll
(Textual permits a scroll only once a layout has shown the scrollbar), and the view
never followed again: after 30 turns at 80x24 it still showed the first screenful.
"""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from tests.ui.fakes import FakeEngine, FakeItem
from tests.ui.test_pilot import until
from voicecli.ui.app import VoiceApp
from voicecli.ui.widgets.transcript import NEW_MARKER, TranscriptView

SIZE = (80, 24)
NOW = 1_000_000.0


def make_app() -> tuple[VoiceApp, FakeEngine]:
    engine = FakeEngine()
    return VoiceApp(engine, None, run_engine=False, clock=lambda: NOW), engine


async def add_turns(pilot: Pilot[Any], engine: FakeEngine, first: int, count: int) -> None:
    """``count`` exchanges, each shown by the view's own frame timer (as in the app)."""
    app = pilot.app
    assert isinstance(app, VoiceApp)
    view = app.transcript
    for n in range(first, first + count):
        for role in ("user", "assistant"):
            words = "lighthouse keeper counting ships " * (3 if role == "user" else 5)
            engine.conversation.items.append(
                FakeItem(f"{role}{n}", role, body=f"turn {n}: {words}".strip())
            )
        view.structure_changed()
        repaints = view.repaints
        while view.repaints == repaints:
            await pilot.pause(0.01)
        await pilot.pause()


def bottom_text(view: TranscriptView) -> str:
    """The text of the view's visible lines."""
    return "\n".join(view.render_line(y).text for y in range(view.size.height))


async def test_thirty_turns_at_80x24_stay_in_view() -> None:
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await add_turns(pilot, engine, 0, 30)
        view = app.transcript
        assert view.max_scroll_y > 100
        assert view.scroll_offset.y == view.max_scroll_y
        assert "turn 29" in bottom_text(view)
        assert view.following and not view.unseen


async def test_scrolling_up_stops_following_and_marks_new_lines() -> None:
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await add_turns(pilot, engine, 0, 10)
        view = app.transcript
        await pilot.press("pageup")
        await pilot.pause()
        held = view.scroll_offset.y
        assert held < view.max_scroll_y
        assert not view.following

        await add_turns(pilot, engine, 10, 2)
        assert view.scroll_offset.y == held  # the user's place is kept
        assert view.unseen
        assert NEW_MARKER.strip() in view.render_line(view.size.height - 1).text

        await pilot.press("end")
        await until(pilot, lambda: view.following and not view.unseen)  # End animates
        assert NEW_MARKER.strip() not in bottom_text(view)
        await add_turns(pilot, engine, 12, 1)
        assert view.scroll_offset.y == view.max_scroll_y
        assert "turn 12" in bottom_text(view)


async def test_a_streamed_delta_below_the_view_marks_new_lines() -> None:
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await add_turns(pilot, engine, 0, 10)
        view = app.transcript
        await pilot.press("pageup", "pageup")
        await pilot.pause()
        last = engine.conversation.items[-1]
        last.body += " and one more"  # same line count: only the content changed
        view.item_changed(last.id)
        view.flush_now()
        assert view.unseen


async def test_a_resize_while_scrolled_up_is_not_new() -> None:
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await add_turns(pilot, engine, 0, 10)
        view = app.transcript
        await pilot.press("pageup", "pageup")
        await pilot.pause()
        await pilot.resize_terminal(100, 24)
        await pilot.pause()
        assert not view.unseen


def test_snapshot_thirty_turns_80x24(snap_compare: Any) -> None:
    app, engine = make_app()

    async def run_before(pilot: Pilot[Any]) -> None:
        await add_turns(pilot, engine, 0, 30)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_snapshot_scrolled_up_with_new_marker(snap_compare: Any) -> None:
    app, engine = make_app()

    async def run_before(pilot: Pilot[Any]) -> None:
        await add_turns(pilot, engine, 0, 10)
        await pilot.press("pageup")
        await pilot.pause()
        await add_turns(pilot, engine, 10, 1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_snapshot_streamed_deltas_repaint_their_lines(snap_compare: Any) -> None:
    """Deltas repaint only their turn's lines (``refresh_lines``): the screen must still
    show every word, including lines the stream wrapped onto."""
    app, engine = make_app()

    async def run_before(pilot: Pilot[Any]) -> None:
        await add_turns(pilot, engine, 0, 3)
        last = engine.conversation.items[-1]
        for n in range(12):
            last.body += f" delta{n} more words"
            app.transcript.item_changed(last.id)
            repaints = app.transcript.repaints
            while app.transcript.repaints == repaints:
                await pilot.pause(0.01)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
