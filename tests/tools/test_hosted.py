"""Hosted MCP servers (``hosted = true``): declared as Realtime ``mcp`` tools, their
approval requests answered like function calls, their progress shown, their header
values kept out of every log. The engine runs against the local server, which emulates
a hosted round (:mod:`voicecli.server.hostedmcp`); every event is validated by the
``openai`` SDK's types."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.engine.conftest import Recorder, config_for, recorder, stop
from tests.sdk_strict import validate_client_event, validate_server_event
from tests.tools.test_engine_tools import last_reply, received, replies, tool_engine
from voicecli.config import Config
from voicecli.engine.eventlog import sanitize
from voicecli.engine.notifications import EventLogged, ToolCallChanged
from voicecli.engine.toolcalls import ApprovalRequest, Decision, headless_approver
from voicecli.protocol.conversation import Conversation
from voicecli.protocol.notifications import UnhandledEvent
from voicecli.server import RealtimeServer
from voicecli.toolconfig import (
    MissingEnvironment,
    ToolConfigError,
    hosted_declaration,
    parse_mcp_servers,
)
from voicecli.tools import ToolRunner

ConfigFor = Callable[..., Config]
__all__ = ["config_for", "recorder"]

TOKEN = "sk-hosted-test-token-5f1e"
URL = "https://mcp.example.com/mcp"


def server(**table: Any) -> Any:
    return parse_mcp_servers({"remote": {"url": URL, "hosted": True, **table}})["remote"]


def session_update(tools: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "session.update", "session": {"type": "realtime", "tools": tools}}


# -- config and the session's shape ------------------------------------------------------


def test_a_hosted_server_is_an_mcp_tool_the_sdk_accepts() -> None:
    remote = server(
        bearer_token_env="REMOTE_TOKEN",
        headers={"X-Team": "${TEAM}"},
        allowed_tools=["search", "fetch"],
        approval="auto",
    )
    tool = hosted_declaration(remote, {"REMOTE_TOKEN": TOKEN, "TEAM": "blue"})
    assert tool == {
        "type": "mcp",
        "server_label": "remote",
        "server_url": URL,
        "headers": {"X-Team": "blue", "Authorization": f"Bearer {TOKEN}"},
        "allowed_tools": ["search", "fetch"],
        "require_approval": "never",
    }
    validate_client_event(session_update([tool]))


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({}, "always"),
        ({"approval": "ask"}, "always"),
        ({"approval": "never"}, "always"),  # asked, then declined by the client
        ({"approval": "auto"}, "never"),
        (
            {"approval": "ask", "tools": {"read": {"approval": "auto"}}},
            {"never": {"tool_names": ["read"]}},
        ),
        (
            {"approval": "auto", "tools": {"rm": {"approval": "ask"}, "ls": {"approval": "auto"}}},
            {"always": {"tool_names": ["rm"]}, "never": {"tool_names": ["ls"]}},
        ),
    ],
)
def test_approval_becomes_require_approval(table: dict[str, Any], expected: Any) -> None:
    tool = hosted_declaration(server(**table), {})
    assert tool["require_approval"] == expected
    assert "headers" not in tool and "allowed_tools" not in tool
    validate_client_event(session_update([tool]))


@pytest.mark.parametrize(
    ("table", "key", "expected"),
    [
        ({"url": URL, "allowed_tools": ["a"]}, "allowed_tools", "only to a hosted = true"),
        ({"url": URL, "hosted": True, "allowed_tools": "a"}, "allowed_tools", "list of tool"),
        ({"url": URL, "hosted": True, "allowed_tools": [""]}, "allowed_tools", "list of tool"),
        ({"command": "x", "hosted": True}, "hosted", "only to a server with url"),
    ],
)
def test_a_bad_hosted_table_names_its_key(table: dict[str, Any], key: str, expected: str) -> None:
    with pytest.raises(ToolConfigError) as caught:
        parse_mcp_servers({"s": table})
    assert caught.value.key == f"mcp_servers.s.{key}"
    assert expected in caught.value.expected


def test_an_unset_header_variable_is_one_notice_and_the_server_is_left_out() -> None:
    with pytest.raises(MissingEnvironment):
        hosted_declaration(server(bearer_token_env="NOPE_UNSET"), {})
    warnings: list[str] = []
    runner = ToolRunner(
        parse_mcp_servers({"remote": {"url": URL, "hosted": True, "bearer_token_env": "NOPE"}}),
        warnings.append,
        env={},
    )
    assert runner.hosted_declarations() == []
    assert warnings == ["MCP server 'remote' is off: environment variable NOPE is not set"]


def test_header_values_are_redacted_from_logged_events() -> None:
    runner = ToolRunner(
        parse_mcp_servers({"remote": {"url": URL, "hosted": True, "headers": {"X-Key": TOKEN}}}),
        lambda _text: None,
    )
    [tool] = runner.hosted_declarations()
    logged = json.dumps(sanitize(session_update([tool])))
    assert TOKEN not in logged
    assert "remote" in logged


def test_hosted_mcp_events_are_not_unhandled() -> None:
    conversation = Conversation()
    events: list[dict[str, Any]] = [
        {"type": "mcp_list_tools.in_progress", "event_id": "e1", "item_id": "l1"},
        {"type": "mcp_list_tools.completed", "event_id": "e2", "item_id": "l1"},
        {"type": "mcp_list_tools.failed", "event_id": "e3", "item_id": "l2"},
        {
            "type": "response.mcp_call_arguments.delta",
            "event_id": "e4",
            "item_id": "m1",
            "output_index": 0,
            "response_id": "r1",
            "delta": "{}",
        },
        {
            "type": "response.mcp_call_arguments.done",
            "event_id": "e5",
            "item_id": "m1",
            "output_index": 0,
            "response_id": "r1",
            "arguments": "{}",
        },
        {
            "type": "response.mcp_call.in_progress",
            "event_id": "e6",
            "item_id": "m1",
            "output_index": 0,
        },
        {
            "type": "response.mcp_call.completed",
            "event_id": "e7",
            "item_id": "m1",
            "output_index": 0,
        },
        {"type": "response.mcp_call.failed", "event_id": "e8", "item_id": "m2", "output_index": 0},
    ]
    for event in events:
        validate_server_event(event)
        notes = conversation.apply(event)
        assert not [n for n in notes if isinstance(n, UnhandledEvent)], event["type"]


# -- a round against the local server -----------------------------------------------------


def hosted_config(config_for: ConfigFor, rt: RealtimeServer, approval: str = "ask") -> Config:
    table = {"url": URL, "hosted": True, "bearer_token_env": "VOICECLI_HOSTED_TEST_TOKEN"}
    return config_for(rt, mcp_servers={"remote": {**table, "approval": approval}})


def check_wire(rt: RealtimeServer, recorder: Recorder) -> None:
    for event in rt.received:
        validate_client_event(event)
    for event in rt.sent:
        validate_server_event(event)
    assert not recorder.of(UnhandledEvent)
    assert TOKEN not in json.dumps([dict(n.event) for n in recorder.of(EventLogged)])


async def test_an_approved_hosted_call_runs_and_the_reply_quotes_it(
    config_for: ConfigFor, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOICECLI_HOSTED_TEST_TOKEN", TOKEN)
    asked: list[ApprovalRequest] = []

    async def approver(request: ApprovalRequest) -> Decision:
        asked.append(request)
        return "approve"

    async with RealtimeServer(pace=0) as rt:
        engine, task = await tool_engine(hosted_config(config_for, rt), recorder)
        engine.tools.approver = approver
        [mcp] = [t for t in received(rt, "session.update")[-1]["session"]["tools"]]
        assert mcp["type"] == "mcp" and mcp["require_approval"] == "always"
        assert mcp["headers"] == {"Authorization": f"Bearer {TOKEN}"}
        engine.send_text("ask the remote server")
        await replies(recorder, 2)
        await stop(engine, task)
        check_wire(rt, recorder)
    [request] = asked
    assert (request.name, request.server, request.tool) == ("remote__lookup", "remote", "lookup")
    [answer] = [
        e["item"]
        for e in received(rt, "conversation.item.create")
        if e["item"]["type"] == "mcp_approval_response"
    ]
    assert answer["approve"] is True
    assert "emulated result of remote.lookup" in last_reply(engine)
    statuses = [(n.name, n.status) for n in recorder.of(ToolCallChanged)]
    assert ("remote.list tools", "done") in statuses
    assert ("remote__lookup", "waiting") in statuses
    assert ("remote__lookup", "approved") in statuses
    assert ("remote.lookup", "done") in statuses
    assert len(received(rt, "response.create")) == 2  # the text's, then one after approval


@pytest.mark.parametrize("headless", [False, True])
async def test_a_hosted_call_is_declined_headless_or_without_an_approver(
    config_for: ConfigFor, recorder: Recorder, monkeypatch: pytest.MonkeyPatch, headless: bool
) -> None:
    monkeypatch.setenv("VOICECLI_HOSTED_TEST_TOKEN", TOKEN)
    said: list[str] = []
    async with RealtimeServer(pace=0) as rt:
        engine, task = await tool_engine(hosted_config(config_for, rt), recorder)
        if headless:  # voicecli ask without --approve-tools
            engine.tools.approver = headless_approver(False, said.append)
        engine.send_text("ask the remote server")
        await replies(recorder, 2)
        await stop(engine, task)
        check_wire(rt, recorder)
    answers = [
        e["item"]
        for e in received(rt, "conversation.item.create")
        if e["item"]["type"] == "mcp_approval_response"
    ]
    assert [a["approve"] for a in answers] == [False]
    if headless:
        assert said == [
            "tool remote__lookup needs approval: declined (--approve-tools would allow it)"
        ]
    assert "declined" in last_reply(engine)
    assert not [t for t in engine.conversation.items if t.type == "mcp_call"]


async def test_an_auto_hosted_server_calls_without_asking(
    config_for: ConfigFor, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOICECLI_HOSTED_TEST_TOKEN", TOKEN)
    async with RealtimeServer(pace=0) as rt:
        engine, task = await tool_engine(hosted_config(config_for, rt, "auto"), recorder)
        engine.send_text("ask the remote server")
        await replies(recorder, 1)
        await stop(engine, task)
        check_wire(rt, recorder)
    assert "emulated result of remote.lookup" in last_reply(engine)
    items = [e["item"]["type"] for e in received(rt, "conversation.item.create")]
    assert items == ["message"]  # no approval asked, none answered
    assert len(received(rt, "response.create")) == 1


def test_hosted_items_are_one_line_each_in_the_transcript() -> None:
    from voicecli.protocol.items import Item
    from voicecli.ui.widgets.transcript import render_item, transcript_markdown

    call = Item("m1", type="mcp_call", name="lookup", arguments='{"q": 1}', output="found it")
    request = Item("r1", type="mcp_approval_request", name="lookup", arguments="{}")
    listed = Item("l1", type="mcp_list_tools")
    assert str(render_item(call, ("done", 0.0))).startswith('⇄ MCP lookup {"q": 1}')
    assert "→ found it" in str(render_item(call))
    assert "waiting for approval" in str(render_item(request, ("waiting", 0.0)))
    assert str(render_item(listed)).startswith("⇄ MCP tools listed")
    markdown = transcript_markdown([listed, request, call])
    assert "`lookup`" in markdown and "found it" in markdown and "tools listed" not in markdown


async def test_a_request_a_reconnect_removed_is_not_answered() -> None:
    import asyncio

    from voicecli.engine.toolcalls import ToolCalls
    from voicecli.protocol.client_events import ClientEvents

    conversation = Conversation()
    sent: list[dict[str, Any]] = []
    requested: list[bool] = []
    calls = ToolCalls(
        conversation,
        ClientEvents(),
        send=sent.append,
        request_response=lambda: requested.append(True),
        cancel=lambda: None,
        publish=lambda _note: None,
    )
    release = asyncio.Event()

    async def approver(request: ApprovalRequest) -> Decision:
        await release.wait()
        return "approve"

    calls.approver = approver
    item = {
        "id": "mcpr_1",
        "type": "mcp_approval_request",
        "server_label": "remote",
        "name": "lookup",
        "arguments": "{}",
    }
    for event in (
        {"type": "response.created", "response": {"id": "r1", "object": "realtime.response"}},
        {
            "type": "response.output_item.added",
            "response_id": "r1",
            "output_index": 0,
            "item": item,
        },
    ):
        conversation.apply(event)
        calls.on_event(event)
    await asyncio.sleep(0)
    conversation.apply({"type": "conversation.item.deleted", "item_id": "mcpr_1"})
    calls.response_done("r1")
    release.set()
    for _ in range(5):
        await asyncio.sleep(0)  # the approval task finishes (aclose would cancel it)
    assert not calls._tasks
    assert sent == [] and requested == []
    await calls.aclose()
