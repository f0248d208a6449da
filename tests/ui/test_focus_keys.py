"""Keys go where the user means them (issue 14.5, 14.6): a typing burst after ``t``, the
event log's filter, the help panel, the palette, the session editor's apply key."""

from __future__ import annotations

from textual import events
from textual.widgets import Footer, Input, Static, TextArea
from textual.widgets._footer import FooterKey

from tests.ui.fakes import FakeEngine, mid_conversation
from tests.ui.test_pilot import until
from voicecli.ui.app import VoiceApp
from voicecli.ui.screens.session_editor import SessionEditor
from voicecli.ui.screens.text_input import TextInputScreen

SIZE = (120, 40)


def make_app() -> tuple[VoiceApp, FakeEngine]:
    engine = FakeEngine()
    mid_conversation(engine)
    return VoiceApp(engine, None, run_engine=False, clock=lambda: 1_000_000.0), engine


def called(engine: FakeEngine) -> set[str]:
    return {name for name, _ in engine.calls}


async def test_letters_typed_in_the_same_burst_as_t_go_into_the_message() -> None:
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        # one burst, as a fast typist or a paste delivers it: no pause between keys
        for char in "tsmv":
            app.post_message(events.Key(char, char))
        await until(pilot, lambda: isinstance(app.screen, TextInputScreen))
        await until(pilot, lambda: app.screen.query_one(Input).value == "smv")
        assert not called(engine) & {"toggle_mute", "cycle_turn_mode"}
        await pilot.press("enter")
        await pilot.pause()
        assert ("send_text", "smv") in engine.calls


async def test_the_event_log_filter_takes_the_letters_and_escape_leaves_it() -> None:
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("l")
        await pilot.pause()
        box = app.event_log.query_one("#event-filter", Input)
        assert box.has_focus
        await pilot.press("m", "v")
        assert box.value == "mv"
        await pilot.press("escape")
        await pilot.pause()
        assert app.transcript.has_focus
        assert not called(engine) & {"toggle_mute", "cycle_turn_mode", "cancel"}
        await pilot.press("l")  # the keys act again: l hides the log
        assert not app.event_log.display


async def test_escape_closes_the_help_panel_without_cancelling() -> None:
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.action_show_help_panel()
        await pilot.pause()
        assert app.screen.query("HelpPanel")
        await pilot.press("escape")
        await pilot.pause()
        assert not app.screen.query("HelpPanel")
        assert "cancel" not in called(engine)


async def test_the_palette_lists_quit_once() -> None:
    app, _ = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        titles = [c.title for c in app.get_system_commands(app.main)]
        assert len([t for t in titles if t.startswith("Quit")]) == 1


async def test_session_editor_focuses_the_first_field_and_applies_with_ctrl_s() -> None:
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("s")
        await pilot.pause()
        editor = app.screen
        assert isinstance(editor, SessionEditor)
        instructions = editor.query_one("#f-instructions", TextArea)
        assert instructions.has_focus
        await pilot.press("ctrl+a")  # in a text field: the cursor's line start, not apply
        await pilot.press(*"Be brief. ")
        await pilot.press("ctrl+s")
        await pilot.pause()
        update = dict(engine.calls)["update_session"]
        assert update["instructions"].startswith("Be brief. ")
        footer_keys = {(k.key, k.description) for k in editor.query_one(Footer).query(FooterKey)}
        assert ("ctrl+s", "Apply") in footer_keys


async def test_session_editor_says_why_vad_fields_are_greyed_out() -> None:
    app, _ = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("s")
        await pilot.pause()
        editor = app.screen
        assert isinstance(editor, SessionEditor)
        reason = str(editor.query_one("#td-reason", Static).render())
        assert "eagerness" in reason and "semantic_vad" in reason  # the session is server_vad
        assert editor.query_one("#f-eagerness").disabled


async def test_session_editor_fits_a_small_terminal_and_follows_a_resize() -> None:
    app, engine = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("s")
        await pilot.pause()
        editor = app.screen
        assert isinstance(editor, SessionEditor)
        box = editor.query_one("#editor").region
        assert box.right <= 80 and box.bottom <= 24  # was 116x38, half of it off screen
        assert not editor.query_one("#effective-pane").display
        assert editor.query_one("#f-instructions", TextArea).has_focus
        await pilot.press(*"Hi. ")
        await pilot.press("ctrl+s")  # applies from the keyboard, wherever the buttons are
        await pilot.pause()
        assert dict(engine.calls)["update_session"]["instructions"].startswith("Hi. ")
        await pilot.resize_terminal(120, 40)
        await until(pilot, lambda: bool(editor.query_one("#effective-pane").display))
        assert editor.query_one("#editor").region.width == 116
