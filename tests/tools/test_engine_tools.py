"""The whole tool path: the engine against the local server (which emulates a model's
function calls) and a real MCP server. Every client event sent is validated by the
``openai`` SDK's types."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.engine.conftest import Recorder, config_for, history_records, recorder, stop
from tests.engine.test_reconnect import FAST, text_engine
from tests.sdk_strict import validate_client_event, validate_server_event
from tests.tools.conftest import STARTUP_S, alive, gone, stdio_table
from voicecli.config import Config
from voicecli.engine import Engine
from voicecli.engine.notifications import Notice, ToolCallChanged
from voicecli.engine.toolcalls import (
    DECLINED,
    NO_APPROVER,
    NOT_ALLOWED,
    ApprovalRequest,
    Decision,
)
from voicecli.protocol.notifications import ResponseDone
from voicecli.server import RealtimeServer

ConfigFor = Callable[..., Config]
__all__ = ["config_for", "recorder"]  # fixtures shared with tests/engine


async def tool_engine(
    config: Config, recorder: Recorder, **kwargs: Any
) -> tuple[Engine, asyncio.Task[None]]:
    engine, task = await text_engine(config, recorder, **kwargs)
    await asyncio.wait_for(engine.wait_tools(), STARTUP_S)
    await recorder.wait_sent("session.update")
    return engine, task


def received(server: RealtimeServer, kind: str) -> list[dict[str, Any]]:
    return [e for e in server.received if e["type"] == kind]


def outputs(server: RealtimeServer) -> list[dict[str, Any]]:
    return [
        e["item"]
        for e in received(server, "conversation.item.create")
        if e["item"]["type"] == "function_call_output"
    ]


def last_reply(engine: Engine) -> str:
    return [i.text for i in engine.conversation.items if i.role == "assistant"][-1]


async def replies(recorder: Recorder, n: int, timeout: float = 30) -> None:
    await recorder.wait_for(
        lambda x: isinstance(x, ResponseDone) and x.status == "completed", count=n, timeout=timeout
    )


async def test_an_auto_tool_runs_and_the_reply_quotes_it(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async with RealtimeServer(pace=0) as server:
        config = config_for(server, mcp_servers={"t": stdio_table()})
        engine, task = await tool_engine(config, recorder)
        session = received(server, "session.update")[-1]["session"]
        assert "t__echo" in [t["name"] for t in session["tools"]]
        assert session["tool_choice"] == "auto"
        engine.send_text('please call t__echo {"text": "hello tools"}')
        await replies(recorder, 2)
        await stop(engine, task)
    for event in server.received:
        validate_client_event(event)
    for event in server.sent:
        validate_server_event(event)  # the emulated function calls too
    assert [o["output"] for o in outputs(server)] == ["echo: hello tools"]
    kinds = [e["type"] for e in server.received]
    after_output = kinds[kinds.index("conversation.item.create", kinds.index("response.create")) :]
    assert after_output.count("response.create") == 1
    assert last_reply(engine) == "The function returned: echo: hello tools"
    done = [n for n in recorder.of(ToolCallChanged) if n.status == "done"]
    assert [(n.name, n.output) for n in done] == [("t__echo", "echo: hello tools")]
    assert not [e for e in server.sent if e["type"] == "error"]
    turns = history_records(config.data_dir)
    calls = [t for t in turns if t["type"] == "function_call"]
    results = [t for t in turns if t["type"] == "function_call_output"]
    assert calls and calls[0]["name"] == "t__echo"
    assert results and results[0]["output"] == "echo: hello tools"


async def test_several_calls_in_one_response_are_answered_with_one_response_create(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async with RealtimeServer(pace=0) as server:
        config = config_for(server, mcp_servers={"t": stdio_table(tool_timeout_s=2)})
        engine, task = await tool_engine(config, recorder)
        engine.send_text(
            'call t__add {"a": 2, "b": 3} call t__sleep {"seconds": 30} '
            'call t__fail {"message": "no"}'
        )
        await replies(recorder, 2)
        await stop(engine, task)
    for event in server.received:
        validate_client_event(event)
    got = sorted(o["output"] for o in outputs(server))
    assert got[0] == "5"
    assert "no" in got[1] and got[1].startswith("error:")
    assert got[2] == "error: the tool timed out after 2 s"
    assert len(received(server, "response.create")) == 2
    kinds = [e["type"] for e in server.received]
    last_create = len(kinds) - 1 - kinds[::-1].index("response.create")
    assert kinds[:last_create].count("conversation.item.create") == 4  # the text + 3 outputs
    assert last_reply(engine).count("The function returned:") == 3


async def test_approval_ask_decline_always_and_never(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    table = stdio_table(approval="ask", tools={"pid": {"approval": "never"}})
    answers: list[Decision] = ["decline", "always"]
    asked: list[ApprovalRequest] = []

    async def approver(request: ApprovalRequest) -> Decision:
        asked.append(request)
        return answers.pop(0)

    async with RealtimeServer(pace=0) as server:
        engine, task = await tool_engine(config_for(server, mcp_servers={"t": table}), recorder)
        engine.tools.approver = approver
        engine.send_text('call t__echo {"text": "one"}')
        await replies(recorder, 2)
        engine.send_text('call t__echo {"text": "two"}')
        await replies(recorder, 4)
        engine.send_text('call t__echo {"text": "three"}')  # approved for the session
        await replies(recorder, 6)
        engine.send_text("call t__pid")
        await replies(recorder, 8)
        await stop(engine, task)
    assert [(r.name, r.server, r.tool, dict(r.arguments)) for r in asked] == [
        ("t__echo", "t", "echo", {"text": "one"}),
        ("t__echo", "t", "echo", {"text": "two"}),
    ]
    assert [o["output"] for o in outputs(server)] == [
        DECLINED,
        "echo: two",
        "echo: three",
        NOT_ALLOWED,
    ]
    statuses = [n.status for n in recorder.of(ToolCallChanged)]
    assert statuses.count("waiting") == 2 and statuses.count("declined") == 2


async def test_without_an_approver_a_call_needing_approval_is_declined(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async with RealtimeServer(pace=0) as server:
        config = config_for(server, mcp_servers={"t": stdio_table(approval="ask")})
        engine, task = await tool_engine(config, recorder)
        engine.send_text('call t__echo {"text": "x"}')
        await replies(recorder, 2)

        async def broken(request: ApprovalRequest) -> Decision:
            raise RuntimeError("the prompt failed")

        engine.tools.approver = broken  # a failing prompt declines too
        engine.send_text('call t__echo {"text": "y"}')
        await replies(recorder, 4)
        await stop(engine, task)
    assert [o["output"] for o in outputs(server)] == [NO_APPROVER, NO_APPROVER]
    assert "echo: x" not in json.dumps(server.received)


async def test_cancel_at_the_prompt_declines_and_asks_for_no_response(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    async def approver(request: ApprovalRequest) -> Decision:
        return "cancel"

    async with RealtimeServer(pace=0) as server:
        config = config_for(server, mcp_servers={"t": stdio_table(approval="ask")})
        engine, task = await tool_engine(config, recorder)
        engine.tools.approver = approver
        engine.send_text('call t__echo {"text": "x"}')
        await recorder.wait_for(
            lambda n: isinstance(n, ToolCallChanged) and n.status == "declined", timeout=10
        )
        await recorder.wait_sent("conversation.item.create")
        await asyncio.sleep(0.3)
        await stop(engine, task)
    assert [o["output"] for o in outputs(server)] == [DECLINED]
    assert len(received(server, "response.create")) == 1


async def test_a_reconnect_mid_call_answers_after_the_replay_and_resends_the_tools(
    config_for: ConfigFor, recorder: Recorder
) -> None:
    gate = asyncio.Event()

    async def approver(request: ApprovalRequest) -> Decision:
        await gate.wait()
        return "approve"

    async with RealtimeServer(pace=0) as server:
        config = config_for(server, mcp_servers={"t": stdio_table(approval="ask")})
        engine, task = await tool_engine(config, recorder, backoff=FAST)
        engine.tools.approver = approver
        engine.send_text('call t__echo {"text": "across"}')
        await recorder.wait_for(lambda n: isinstance(n, ToolCallChanged) and n.status == "waiting")
        await recorder.wait_for(lambda n: isinstance(n, ResponseDone))
        server.sessions[-1].ws.transport.abort()  # a network failure
        await recorder.wait_for(lambda n: isinstance(n, Notice) and "reconnecting" in n.text)
        await asyncio.wait_for(engine.wait_connected(), 10)
        gate.set()
        await replies(recorder, 2)
        await stop(engine, task)
    for event in server.received:
        validate_client_event(event)
    updates = [e["session"] for e in received(server, "session.update")]
    assert sum(1 for u in updates if "t__echo" in json.dumps(u.get("tools", []))) >= 2
    assert [o["output"] for o in outputs(server)] == ["echo: across"]
    replayed = [
        e["item"] for e in server.sessions[-1].received if e["type"] == "conversation.item.create"
    ]
    assert [i["type"] for i in replayed][:2] == ["message", "function_call"]  # the replay
    assert replayed[1]["name"] == "t__echo" and replayed[2]["type"] == "function_call_output"
    assert last_reply(engine) == "The function returned: echo: across"
    assert not [e for e in server.sent if e["type"] == "error"]


async def test_closing_while_a_server_starts_ends_it(
    config_for: ConfigFor, recorder: Recorder, tmp_path: Path
) -> None:
    """A server still starting when voicecli quits is stopped too (no orphan)."""
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    slow = {"command": sys.executable, "args": ["-c", code], "startup_timeout_s": 60}
    async with RealtimeServer(pace=0) as server:
        engine, task = await text_engine(config_for(server, mcp_servers={"slow": slow}), recorder)
        for _ in range(400):
            if pid_file.exists() and pid_file.read_text():
                break
            await asyncio.sleep(0.05)
        pid = int(pid_file.read_text())
        assert alive(pid)
        started = asyncio.get_running_loop().time()
        await stop(engine, task)
        assert asyncio.get_running_loop().time() - started < 5
    assert await gone(pid, within=5)
