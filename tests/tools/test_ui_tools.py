"""The approval modal and the transcript's tool lines, driven by a Textual pilot against
the real engine, the local server and a real MCP server."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from tests.tools.conftest import STARTUP_S, stdio_table
from tests.ui.test_pilot import SIZE, connected, make_app, received, until
from voicecli.engine import Engine
from voicecli.server import RealtimeServer
from voicecli.ui.screens.text_input import TextInputScreen
from voicecli.ui.screens.tool_approval import ToolApprovalScreen, folded, pretty_arguments
from voicecli.ui.widgets.transcript import fold


def outputs(server: RealtimeServer) -> list[str]:
    return [
        e["item"]["output"]
        for e in received(server, "conversation.item.create")
        if e["item"]["type"] == "function_call_output"
    ]


async def ask_tool(pilot: object, app: object, text: str) -> ToolApprovalScreen:
    await pilot.press("t")  # type: ignore[attr-defined]
    assert isinstance(app.screen, TextInputScreen)  # type: ignore[attr-defined]
    await pilot.press(*text, "enter")  # type: ignore[attr-defined]
    await until(pilot, lambda: isinstance(app.screen, ToolApprovalScreen), STARTUP_S)  # type: ignore[arg-type, attr-defined]
    return app.screen  # type: ignore[attr-defined, no-any-return]


async def test_the_modal_shows_the_call_and_y_runs_it(tmp_path: Path) -> None:
    async with RealtimeServer(pace=0) as server:
        app = make_app(server, tmp_path, mcp_servers={"t": stdio_table(approval="ask")})
        async with app.run_test(size=SIZE) as pilot:
            await connected(pilot)
            assert isinstance(app.engine, Engine)
            await until(pilot, lambda: app.engine._tools_ready.is_set(), STARTUP_S)  # type: ignore[union-attr]
            long = "from the modal " + "x" * 150
            screen = await ask_tool(pilot, app, f'call t__echo {{"text": "{long}"}}')
            title = str(screen.query_one("#tool-title", Static).content)
            assert "echo" in title and "on the MCP server t" in title
            args = str(screen.query_one("#tool-arguments-text", Static).content)
            assert f'"text": "{long}"' in args
            await pilot.press("y")
            reply = f"The function returned: echo: {long}"
            await until(pilot, lambda: reply in app.transcript.markdown(), 20)
            view = app.transcript
            view.flush_now()
            lines = [str(s.text).rstrip() for t in view._turns for s in t.lines]
            assert any(line.startswith("ƒ t__echo") and " done in " in line for line in lines)
            folded_line = next(line for line in lines if line.startswith("  ↳ echo: from"))
            assert folded_line.endswith("…"), lines
            # a click on the folded output shows it whole
            index = next(i for i, t in enumerate(view._turns) if "↳" in str(t.lines[0].text))
            await pilot.click(view, offset=(5, view._offsets[index] - view.scroll_offset.y))
            view.flush_now()
            whole = "".join(str(s.text).strip() for s in view._turns[index].lines)
            assert "x" * 150 in whole and "…" not in whole
            # a: approved for the session, no second prompt
            screen = await ask_tool(pilot, app, 'call t__echo {"text": "again"}')
            await pilot.press("a")
            await until(pilot, lambda: len(outputs(server)) == 2, 20)
            await pilot.press("t", *'call t__echo {"text": "third"}', "enter")
            await until(pilot, lambda: len(outputs(server)) == 3, 20)
            assert not isinstance(app.screen, ToolApprovalScreen)
    assert outputs(server) == [f"echo: {long}", "echo: again", "echo: third"]


async def test_n_declines_and_escape_declines_and_stops(tmp_path: Path) -> None:
    async with RealtimeServer(pace=0) as server:
        app = make_app(server, tmp_path, mcp_servers={"t": stdio_table(approval="ask")})
        async with app.run_test(size=SIZE) as pilot:
            await connected(pilot)
            await until(pilot, lambda: app.engine._tools_ready.is_set(), STARTUP_S)  # type: ignore[attr-defined]
            await ask_tool(pilot, app, "call t__pid")
            await pilot.press("n")
            await until(pilot, lambda: "The user declined" in app.transcript.markdown(), 20)
            creates = len(received(server, "response.create"))
            await ask_tool(pilot, app, "call t__pid")
            await pilot.press("escape")
            await until(pilot, lambda: len(outputs(server)) == 2, 20)
            await pilot.pause(0.3)
            assert len(received(server, "response.create")) == creates + 1  # only the question's
    assert outputs(server) == ["The user declined this tool call."] * 2


def test_long_arguments_are_folded() -> None:
    args = {"path": "x" * 500, "nested": [{"body": "y" * 300}], "n": 3}
    shown = folded(args)
    assert shown["path"].endswith("… (300 more characters)") and len(shown["path"]) < 240
    assert shown["nested"][0]["body"].endswith("(100 more characters)")
    assert '"n": 3' in pretty_arguments(args)
    assert fold("a\nb  c" + "z" * 200).startswith("a b cz") and len(fold("z" * 500)) == 100
