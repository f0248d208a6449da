"""The ToolRunner against a real MCP server (tests/tools/mcp_server.py): stdio and
streamable HTTP, tool errors, timeouts, a crash, a server that cannot start, and no
server process outliving its runner (nor a ``kill -9`` of its parent)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.tools.conftest import ROOT, alive, gone, servers, stdio_table
from voicecli.tools import ToolRunner
from voicecli.tools import runner as runner_module
from voicecli.tools.names import VALID_NAME


async def test_stdio_tools_are_listed_and_called() -> None:
    warnings: list[str] = []
    runner = ToolRunner(servers(t=stdio_table(), off=stdio_table(enabled=False)), warnings.append)
    try:
        specs = await runner.start()
        names = [s.name for s in specs]
        assert names == [
            "t__echo",
            "t__add",
            "t__sleep",
            "t__fail",
            "t__crash",
            "t__pid",
            "t__hang",
        ]
        assert all(VALID_NAME.fullmatch(n) for n in names)
        echo = runner.spec("t__echo")
        assert echo is not None
        assert echo.declaration() == {
            "type": "function",
            "name": "t__echo",
            "description": "Echo the text back",
            "parameters": echo.parameters,
        }
        assert echo.parameters["required"] == ["text"]
        assert (await runner.call("t__echo", {"text": "hi"})).output == "echo: hi"
        added = await runner.call("t__add", {"a": 2, "b": 3})
        assert (added.status, added.output) == ("done", "5")
        failed = await runner.call("t__fail", {"message": "boom"})
        assert failed.status == "failed" and "boom" in failed.output
        bad = await runner.call("t__add", {"a": "x"})
        assert bad.status == "failed" and bad.output.startswith("error:")
        unknown = await runner.call("t__nope", {})
        assert unknown.status == "failed"
    finally:
        await runner.aclose()
    assert warnings == []


async def test_a_slow_tool_times_out_and_the_server_goes_on() -> None:
    runner = ToolRunner(servers(t=stdio_table(tool_timeout_s=0.5)), lambda text: None)
    try:
        await runner.start()
        slow = await runner.call("t__sleep", {"seconds": 30})
        assert (slow.status, slow.output) == ("timeout", "error: the tool timed out after 0.5 s")
        assert (await runner.call("t__echo", {"text": "still here"})).status == "done"
    finally:
        await runner.aclose()


async def test_a_crashed_server_is_one_notice_and_its_tools_answer_unavailable() -> None:
    warnings: list[str] = []
    runner = ToolRunner(servers(t=stdio_table()), warnings.append)
    try:
        await runner.start()
        pid = int((await runner.call("t__pid", {})).output)
        crashed = await runner.call("t__crash", {})
        assert crashed.status == "unavailable"
        later = await runner.call("t__echo", {"text": "x"})
        assert (later.status, later.output) == ("unavailable", "error: the t server is unavailable")
        assert await gone(pid)
    finally:
        await runner.aclose()
    assert len(warnings) == 1 and "'t' stopped" in warnings[0], warnings


async def test_a_server_that_cannot_start_is_one_notice_and_the_rest_go_on() -> None:
    warnings: list[str] = []
    runner = ToolRunner(
        servers(
            good=stdio_table(),
            missing={"command": "voicecli-no-such-server"},
            dies={"command": sys.executable, "args": ["-c", "import sys; sys.exit(2)"]},
        ),
        warnings.append,
    )
    try:
        specs = await runner.start()
    finally:
        await runner.aclose()
    assert {s.server for s in specs} == {"good"}
    assert len(warnings) == 2, warnings
    assert any("'missing'" in w and "command not found" in w for w in warnings)
    assert any("'dies' failed to start" in w for w in warnings)


async def test_closing_the_runner_ends_the_server_process() -> None:
    runner = ToolRunner(servers(t=stdio_table()), lambda text: None)
    try:
        await runner.start()
        pid = int((await runner.call("t__pid", {})).output)
        assert alive(pid)
    finally:
        await runner.aclose()
    assert await gone(pid, within=5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
async def test_a_server_dies_with_its_parent_after_kill_9(tmp_path: object) -> None:
    """The runner's process is killed outright: no close runs, and the server is wedged
    (its loop blocked, so the end of its stdin goes unnoticed); it still ends."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from tests.tools.conftest import servers, stdio_table
        from voicecli.tools import ToolRunner

        async def main():
            runner = ToolRunner(servers(t=stdio_table()), print)
            await runner.start()
            pid = (await runner.call("t__pid", {})).output
            hang = asyncio.create_task(runner.call("t__hang", {}))
            await asyncio.sleep(0.5)
            print(pid, flush=True)
            await hang

        asyncio.run(main())
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert alive(pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        assert await gone(pid), "the MCP server outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


async def test_streamable_http_server(http_server: str) -> None:
    warnings: list[str] = []
    table = {"url": http_server, "approval": "ask", "tools": {"echo": {"approval": "auto"}}}
    runner = ToolRunner(servers(web=table), warnings.append)
    try:
        specs = await runner.start()
        assert "web__echo" in [s.name for s in specs]
        assert runner.spec("web__echo").approval == "auto"  # type: ignore[union-attr]
        assert runner.spec("web__add").approval == "ask"  # type: ignore[union-attr]
        assert (await runner.call("web__echo", {"text": "over http"})).output == "echo: over http"
    finally:
        await runner.aclose()
    assert warnings == []


async def test_an_http_header_naming_an_unset_variable_is_one_notice(http_server: str) -> None:
    warnings: list[str] = []
    table = {"url": http_server, "bearer_token_env": "VOICECLI_TEST_NO_SUCH_TOKEN"}
    runner = ToolRunner(servers(web=table), warnings.append, env={})
    try:
        assert await runner.start() == []
    finally:
        await runner.aclose()
    assert warnings == [
        "MCP server 'web' failed to start: environment variable "
        "VOICECLI_TEST_NO_SUCH_TOKEN is not set"
    ]


async def test_without_the_mcp_extra_one_line_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing() -> None:
        raise ModuleNotFoundError("No module named 'mcp'")

    monkeypatch.setattr(runner_module, "_import_mcp", missing)
    warnings: list[str] = []
    runner = ToolRunner(servers(t=stdio_table()), warnings.append)
    assert await runner.start() == []
    await runner.aclose()
    assert warnings == [
        "tools are off: MCP servers need the mcp extra: pip install 'voicecli[mcp]'"
    ]
    quiet = ToolRunner(servers(t=stdio_table(enabled=False)), warnings.append)
    assert await quiet.start() == []  # nothing enabled: the package is not even looked for
    assert len(warnings) == 1


async def test_a_server_that_never_answers_times_out_and_is_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    warnings: list[str] = []
    table = {"command": sys.executable, "args": ["-c", code], "startup_timeout_s": 1.5}
    runner = ToolRunner(servers(mute=table), warnings.append)
    try:
        assert await runner.start() == []
    finally:
        await runner.aclose()
    assert warnings == ["MCP server 'mute' did not start within 1.5 s: its tools are off"]
    if pid_file.exists() and pid_file.read_text():
        assert await gone(int(pid_file.read_text()), within=5)
