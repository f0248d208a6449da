"""Hosted MCP servers, emulated: what the local server does for a ``{"type": "mcp"}`` tool.

The live service connects to a hosted MCP server itself, lists its tools and calls them.
The local server has no network and no model; it emulates one round just well enough to
drive a client's approval path offline (``voicecli --local``) and in tests:

* a user message whose text names a declared server's ``server_label`` starts a round:
  ``mcp_list_tools.in_progress``/``completed`` with an ``mcp_list_tools`` item listing
  one made-up tool (the first of ``allowed_tools``, else ``lookup``);
* when ``require_approval`` is ``"never"`` (or names the tool under ``never``), the
  ``mcp_call`` follows at once; otherwise the response ends with an
  ``mcp_approval_request`` item;
* the response after the client's ``mcp_approval_response`` makes the ``mcp_call``
  (``response.mcp_call_arguments.*``, ``response.mcp_call.in_progress``/``completed``)
  with a made-up output, then a reply quoting it; a declined request gets a reply saying
  so.

This is emulation: no MCP server is contacted, and the output is invented.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from voicecli.server.items import Item
from voicecli.server.synth import new_id

EXAMPLE_TOOL = "lookup"
EXAMPLE_ARGUMENTS = json.dumps({"query": "example"})


@dataclass(frozen=True)
class Round:
    """What this response does for a hosted server."""

    step: Literal["ask", "call", "declined"]
    server_label: str
    tool: str
    arguments: str
    approval_request_id: str | None = None


def output_for(server_label: str, tool: str) -> str:
    """The made-up output of an emulated call."""
    return f"emulated result of {server_label}.{tool}"


def plan_round(tools: Sequence[dict[str, Any]], context: Sequence[Item]) -> Round | None:
    """The hosted-MCP round a response to ``context`` makes (None: none)."""
    servers = {t["server_label"]: t for t in tools if t.get("type") == "mcp"}
    if not servers or not context:
        return None
    last = context[-1]
    if last.type == "mcp_approval_response":
        request = next((i for i in context if i.id == last.approval_request_id), None)
        label = request.server_label if request is not None else None
        if request is None or label is None or label not in servers:
            return None
        return Round(
            "call" if last.approve else "declined",
            label,
            request.name or EXAMPLE_TOOL,
            request.arguments or "{}",
            request.id,
        )
    if last.type != "message" or last.role != "user":
        return None
    text = last.text.lower()
    for label, tool in servers.items():
        if label.lower() in text:
            allowed = tool.get("allowed_tools")
            name = allowed[0] if isinstance(allowed, list) and allowed else EXAMPLE_TOOL
            asks = _needs_approval(tool.get("require_approval"), name)
            return Round("ask" if asks else "call", label, name, EXAMPLE_ARGUMENTS)
    return None


def _needs_approval(setting: Any, tool: str) -> bool:
    if setting == "never":
        return False
    if isinstance(setting, dict):
        never = (setting.get("never") or {}).get("tool_names") or ()
        return tool not in never
    return True  # "always", or the API's default


class _Reply(Protocol):
    """The parts of :class:`~voicecli.server.reply.Reply` a round uses."""

    output: list[Item]

    async def _add_output_item(self, item: Item) -> str | None: ...
    async def _finish_output_item(self, item: Item, previous: str | None) -> None: ...


Send = Callable[..., Awaitable[Any]]


async def run_round(reply: _Reply, send: Send, response_id: str, plan: Round) -> str | None:
    """Send the round's events; returns the reply text to say after it (None: the
    response ends here, waiting for the client's approval)."""
    if plan.step == "declined":
        return f"The call of {plan.server_label}.{plan.tool} was declined."
    if plan.approval_request_id is None:
        await _list_tools(reply, send, plan)
    if plan.step == "ask":
        item = Item(
            id=new_id("mcpr"),
            type="mcp_approval_request",
            server_label=plan.server_label,
            name=plan.tool,
            arguments=plan.arguments,
        )
        previous = await reply._add_output_item(item)
        await reply._finish_output_item(item, previous)
        return None
    output = output_for(plan.server_label, plan.tool)
    call = Item(
        id=new_id("mcp"),
        type="mcp_call",
        server_label=plan.server_label,
        name=plan.tool,
        arguments="",
        approval_request_id=plan.approval_request_id,
    )
    previous = await reply._add_output_item(call)
    ids = {"item_id": call.id, "output_index": len(reply.output) - 1}
    await send("response.mcp_call.in_progress", **ids)
    await send(
        "response.mcp_call_arguments.delta", response_id=response_id, delta=plan.arguments, **ids
    )
    await send(
        "response.mcp_call_arguments.done", response_id=response_id, arguments=plan.arguments, **ids
    )
    call.arguments, call.output = plan.arguments, output
    await send("response.mcp_call.completed", **ids)
    await reply._finish_output_item(call, previous)
    return f"The MCP tool returned: {output}"


async def _list_tools(reply: _Reply, send: Send, plan: Round) -> None:
    item = Item(
        id=new_id("mcpl"),
        type="mcp_list_tools",
        server_label=plan.server_label,
        tools=[
            {
                "name": plan.tool,
                "description": "An emulated tool of the local server.",
                "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
            }
        ],
    )
    await send("mcp_list_tools.in_progress", item_id=item.id)
    previous = await reply._add_output_item(item)
    await send("mcp_list_tools.completed", item_id=item.id)
    await reply._finish_output_item(item, previous)


__all__ = ["EXAMPLE_TOOL", "Round", "output_for", "plan_round", "run_round"]
