"""Function calls: the model asks, the user approves, a tool runs, the model hears back.

The engine hands this part every server event (after the conversation folded it) and
every ``response.done``. A ``function_call`` item whose arguments are done
(``response.function_call_arguments.done``, or the item done in ``response.done``) is
started at once, in a task of its own:

1. parse the arguments (a JSON object);
2. check approval: ``auto`` runs, ``never`` declines, ``ask`` asks the
   :data:`Approver` the front end installed (the TUI's modal, ``ask``'s flag); without
   one, the call is declined;
3. run the tool through the :class:`~voicecli.tools.runner.ToolRunner` (its timeout);
4. send ``conversation.item.create`` with a ``function_call_output``: the tool's text,
   or a short error or "declined" text, so the model always gets an answer.

When every call of a response is answered and that response is done, one
``response.create`` is asked for through the outbox (one response at a time), unless
the user cancelled at the approval prompt. A call whose item a reconnect removed (the
response was cut off and will be asked again) is not answered.

Hosted MCP servers (``hosted = true``) are called by the service itself; this part
only answers their ``mcp_approval_request`` items (the same approval as a function
call, by the server's ``approval`` for that tool), with an ``mcp_approval_response``
item and then, like a function call, one ``response.create`` once the asking response
is done (the response that asked ends with the request; nothing else continues it).
Their progress (``mcp_list_tools.*``, ``response.mcp_call.*``) becomes
:class:`ToolCallChanged` notes keyed by item id, for the transcript.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from voicecli.engine.notifications import ToolCallChanged
from voicecli.engine.tasks import reap
from voicecli.protocol.client_events import ClientEvents, JsonEvent
from voicecli.protocol.conversation import Conversation
from voicecli.protocol.items import Item
from voicecli.protocol.notifications import Notification
from voicecli.tools.runner import ToolRunner, ToolSpec

log = logging.getLogger(__name__)

Decision = Literal["approve", "always", "decline", "cancel"]
"""The user's answer: run it; run it and every later call of this tool; don't run it;
don't run it and stop the response."""

DECLINED = "The user declined this tool call."
NOT_ALLOWED = "The user's settings do not allow this tool (approval = never)."
NO_APPROVER = "The tool call needs the user's approval and nobody could be asked: declined."


@dataclass(frozen=True)
class ApprovalRequest:
    """One call waiting for the user's decision."""

    call_id: str
    name: str
    """The function name the model called (``SERVER__TOOL``)."""
    server: str
    tool: str
    arguments: Mapping[str, Any]


Approver = Callable[[ApprovalRequest], Awaitable[Decision]]


@dataclass
class _Batch:
    """The calls of one response."""

    calls: set[str] = field(default_factory=set)
    unanswered: set[str] = field(default_factory=set)
    done: bool = False
    cancelled: bool = False


class ToolCalls:
    """See the module docstring. ``send`` queues a client event, ``request_response``
    asks the outbox for one response, ``cancel`` stops the assistant (barge-in)."""

    def __init__(
        self,
        conversation: Conversation,
        events: ClientEvents,
        *,
        send: Callable[[JsonEvent], None],
        request_response: Callable[[], None],
        cancel: Callable[[], None],
        publish: Callable[[Notification], None],
    ) -> None:
        self._conversation = conversation
        self._ev = events
        self._send = send
        self._request_response = request_response
        self._cancel = cancel
        self._publish = publish
        self.runner: ToolRunner | None = None
        self.approver: Approver | None = None
        self._always: set[str] = set()
        self._started: set[str] = set()
        self._batches: dict[str, _Batch] = {}
        self._continued: set[str] = set()  # responses whose calls ask for another
        self._tasks: set[asyncio.Task[None]] = set()
        self._labels: dict[str, str] = {}  # hosted MCP item id -> its server's label

    # -- what the engine feeds in --------------------------------------------------------

    def on_event(self, event: Mapping[str, Any]) -> None:
        """A server event, already folded into the conversation."""
        kind = event.get("type")
        if kind == "response.function_call_arguments.done":
            item = self._conversation.item(str(event.get("item_id")))
            if item is not None:
                self._start(item)
        elif kind in _ITEM_EVENTS and isinstance(event.get("item"), Mapping):
            self._hosted_item(event["item"], event.get("response_id"))
        elif isinstance(kind, str) and kind in _HOSTED_PROGRESS:
            self._hosted_progress(str(event.get("item_id")), _HOSTED_PROGRESS[kind])

    def response_done(self, response_id: str) -> None:
        """``response.done``: start calls whose arguments event never came; once all are
        answered, the next response is asked for."""
        for item in list(self._conversation.items):
            if item.response_id == response_id and item.status == "completed":
                self._start(item)
        batch = self._batches.get(response_id)
        if batch is not None:
            batch.done = True
            self._maybe_respond(response_id)

    def continues(self, response_id: str) -> bool:
        """Whether the response's calls will be followed by another response."""
        return response_id in self._continued

    async def start(self) -> list[dict[str, Any]]:
        """Start the MCP servers; returns the session's tool declarations (function
        tools, then the hosted servers' ``mcp`` tools)."""
        if self.runner is None:
            return []
        functions = [spec.declaration() for spec in await self.runner.start()]
        return functions + self.runner.hosted_declarations()

    async def aclose(self) -> None:
        """Stop the running calls (their answers are not sent), then the servers."""
        await reap(list(self._tasks))
        if self.runner is not None:
            await self.runner.aclose()

    # -- one call ------------------------------------------------------------------------

    def _start(self, item: Item) -> None:
        call_id = item.call_id
        if item.type != "function_call" or not call_id or call_id in self._started:
            return
        if item.response_id is None:
            return  # a replayed call of our own: answered already
        self._started.add(call_id)
        self._continued.add(item.response_id)
        batch = self._batches.setdefault(item.response_id, _Batch())
        batch.calls.add(call_id)
        batch.unanswered.add(call_id)
        task = asyncio.create_task(self._run(item), name=f"voicecli-tool-{call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, item: Item) -> None:
        assert item.call_id is not None and item.response_id is not None
        name = item.name or "?"
        raw = item.arguments or ""

        def changed(status: str, output: str = "", elapsed_ms: float = 0.0) -> None:
            self._publish(
                ToolCallChanged(item.call_id or "", item.id, name, status, raw, output, elapsed_ms)
            )

        spec = self.runner.spec(name) if self.runner is not None else None
        arguments, error = _parse_arguments(raw)
        if error is None and spec is None:
            error = f"error: there is no tool named {name}"
        if error is not None or spec is None:
            changed("failed", error or "")
            self._answer(item, error or "error")
            return
        decision = await self._approval(spec, item, arguments, changed)
        if decision in ("decline", "cancel", "never", "nobody"):
            text = {"never": NOT_ALLOWED, "nobody": NO_APPROVER}.get(decision, DECLINED)
            changed("declined", text)
            if decision == "cancel":
                self._batches[item.response_id].cancelled = True
                self._continued.discard(item.response_id)
                self._cancel()
            self._answer(item, text)
            return
        changed("running")
        assert self.runner is not None
        outcome = await self.runner.call(name, arguments)
        changed(outcome.status, outcome.output, outcome.elapsed_ms)
        self._answer(item, outcome.output)

    async def _approval(
        self,
        spec: ToolSpec,
        item: Item,
        arguments: dict[str, Any],
        changed: Callable[[str], None],
    ) -> str:
        if spec.approval == "never":
            return "never"
        if spec.approval == "auto" or spec.name in self._always:
            return "approve"
        if self.approver is None:
            return "nobody"
        changed("waiting")
        request = ApprovalRequest(item.call_id or "", spec.name, spec.server, spec.tool, arguments)
        try:
            decision = await self.approver(request)
        except Exception:  # a broken prompt must not leave the model without an answer
            log.exception("asking for approval of %s failed", spec.name)
            return "nobody"
        if decision == "always":
            self._always.add(spec.name)
        return decision

    def _answer(self, item: Item, output: str) -> None:
        assert item.call_id is not None and item.response_id is not None
        batch = self._batches[item.response_id]
        batch.unanswered.discard(item.call_id)
        if self._conversation.item(item.id) is not None:
            event = self._ev.function_call_output(item.call_id, output)
            event["item"]["id"] = f"item_{secrets.token_hex(8)}"
            self._send(event)
        else:
            batch.calls.discard(item.call_id)  # cut off by a reconnect: asked again anyway
        self._maybe_respond(item.response_id)

    def _maybe_respond(self, response_id: str) -> None:
        batch = self._batches.get(response_id)
        if batch is None or not batch.done or batch.unanswered:
            return
        del self._batches[response_id]
        if batch.calls and not batch.cancelled:
            self._request_response()

    # -- hosted MCP ------------------------------------------------------------------------

    def _hosted_item(self, data: Mapping[str, Any], response_id: Any) -> None:
        item_id = data.get("id")
        if not isinstance(item_id, str):
            return
        label = data.get("server_label")
        if isinstance(label, str):
            self._labels[item_id] = label
        kind = data.get("type")
        if kind == "mcp_call" and (data.get("output") is not None or data.get("error")):
            error = data.get("error")
            failed = error is not None
            text = str(data.get("output") or "") if not failed else f"error: {_error_text(error)}"
            self._hosted_progress(item_id, "failed" if failed else "done", text)
        elif kind == "mcp_approval_request" and item_id not in self._started:
            self._started.add(item_id)
            known = self._conversation.item(item_id)
            owner = known.response_id if known is not None else None
            owner = owner or (response_id if isinstance(response_id, str) else None)
            if owner is not None:
                batch = self._batches.setdefault(owner, _Batch())
                batch.calls.add(item_id)
                batch.unanswered.add(item_id)
                self._continued.add(owner)
            task = asyncio.create_task(
                self._approve_hosted(item_id, str(label), data, owner),
                name=f"voicecli-mcp-approval-{item_id}",
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _hosted_progress(self, item_id: str, status: str, output: str = "") -> None:
        item = self._conversation.item(item_id)
        label = self._labels.get(item_id, "mcp")
        tool = (item.name if item is not None else None) or "list tools"
        arguments = (item.arguments if item is not None else None) or ""
        self._publish(
            ToolCallChanged(item_id, item_id, f"{label}.{tool}", status, arguments, output)
        )

    async def _approve_hosted(
        self, item_id: str, label: str, data: Mapping[str, Any], response_id: str | None
    ) -> None:
        tool = str(data.get("name") or "?")
        raw = str(data.get("arguments") or "")
        name = f"{label}__{tool}"
        server = self.runner.hosted.get(label) if self.runner is not None else None
        approval = server.approval_for(tool) if server is not None else "ask"
        spec = ToolSpec(name, label, tool, "", {}, approval)
        arguments, _ = _parse_arguments(raw)

        def changed(status: str, output: str = "") -> None:
            self._publish(ToolCallChanged(item_id, item_id, name, status, raw, output))

        request = Item(item_id, type="mcp_approval_request", call_id=item_id)
        decision = await self._approval(spec, request, arguments, changed)
        approve = decision in ("approve", "always")
        changed("approved" if approve else "declined")
        if decision == "cancel" and response_id is not None:
            self._batches[response_id].cancelled = True
            self._continued.discard(response_id)
            self._cancel()
        if self._conversation.item(item_id) is None:
            # cut off by a reconnect: the new session never saw the request
            if response_id is not None:
                self._batches[response_id].calls.discard(item_id)
                self._batches[response_id].unanswered.discard(item_id)
                self._maybe_respond(response_id)
            return
        event = self._ev.mcp_approval_response(f"item_{secrets.token_hex(8)}", item_id, approve)
        self._send(event)
        if response_id is None:
            if decision != "cancel":
                self._request_response()
            return
        self._batches[response_id].unanswered.discard(item_id)
        self._maybe_respond(response_id)


_ITEM_EVENTS = frozenset(
    {
        "conversation.item.added",
        "conversation.item.done",
        "response.output_item.added",
        "response.output_item.done",
    }
)
_HOSTED_PROGRESS = {
    "mcp_list_tools.in_progress": "running",
    "mcp_list_tools.completed": "done",
    "mcp_list_tools.failed": "failed",
    "response.mcp_call.in_progress": "running",
    "response.mcp_call.failed": "failed",
}
"""Hosted MCP progress events and the status each shows (a call's ``done`` comes with
its item, which holds the output)."""


def _error_text(error: Any) -> str:
    if isinstance(error, Mapping):
        return str(error.get("message") or error.get("type") or "failed")
    return str(error)


def headless_approver(approve_all: bool, say: Callable[[str], None]) -> Approver:
    """The approver of a run nobody watches (``voicecli ask``): approves every call when
    ``approve_all`` (``--approve-tools``), else declines it and says so in one line."""

    async def approver(request: ApprovalRequest) -> Decision:
        if approve_all:
            return "approve"
        say(f"tool {request.name} needs approval: declined (--approve-tools would allow it)")
        return "decline"

    return approver


def _parse_arguments(raw: str) -> tuple[dict[str, Any], str | None]:
    """The call's arguments as an object, or an error text for the model."""
    try:
        value = json.loads(raw or "{}")
    except ValueError as exc:
        return {}, f"error: the arguments are not valid JSON ({exc})"
    if not isinstance(value, dict):
        return {}, "error: the arguments must be a JSON object"
    return value, None


__all__ = ["ApprovalRequest", "Approver", "Decision", "ToolCalls", "headless_approver"]
