"""The approval prompt for a tool call: server, tool and arguments; the user decides.

``y``/``enter`` runs the call, ``n`` declines it, ``a`` runs it and every later call of
the same tool this session, ``escape`` declines it and cancels the response. The mic
stays live meanwhile (the prompt only takes keys). :func:`approval_prompt` makes the
engine's :data:`~voicecli.engine.toolcalls.Approver` out of it: each call gets its own
prompt, stacked when several wait.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from voicecli.engine.toolcalls import ApprovalRequest, Approver, Decision

VALUE_FOLD = 200
"""A string argument longer than this is shown cut, with how much more there is."""


def folded(value: Any) -> Any:
    """``value`` with long strings cut (nested lists and objects too)."""
    if isinstance(value, str) and len(value) > VALUE_FOLD:
        return f"{value[:VALUE_FOLD]}… ({len(value) - VALUE_FOLD} more characters)"
    if isinstance(value, Mapping):
        return {k: folded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [folded(v) for v in value]
    return value


def pretty_arguments(arguments: Mapping[str, Any]) -> str:
    return json.dumps(folded(arguments), indent=2, ensure_ascii=False)


class ToolApprovalScreen(ModalScreen[Decision]):
    """Asks whether to run one tool call; dismisses with the :data:`Decision`."""

    DEFAULT_CSS = """
    ToolApprovalScreen { align: center middle; }
    ToolApprovalScreen > Vertical {
        width: 90; max-width: 95%; height: auto; max-height: 90%;
        border: round $warning; padding: 1 2; background: $surface;
    }
    ToolApprovalScreen #tool-arguments { height: auto; max-height: 20; margin: 1 0; }
    ToolApprovalScreen #tool-keys { color: $text-muted; }
    """
    BINDINGS = [
        Binding("y,enter", "decide('approve')", "Run", id="tool_approve"),
        Binding("n", "decide('decline')", "Decline", id="tool_decline"),
        Binding("a", "decide('always')", "Always for this tool", id="tool_always"),
        Binding("escape", "decide('cancel')", "Decline and stop", id="tool_cancel"),
    ]

    def __init__(self, request: ApprovalRequest) -> None:
        super().__init__()
        self.request = request

    def compose(self) -> ComposeResult:
        r = self.request
        head = Text("Run a tool?  ", style="bold")
        head.append(r.tool, style="bold yellow")
        head.append(f"  on the MCP server {r.server}", style="dim")
        with Vertical():
            yield Static(head, id="tool-title")
            with VerticalScroll(id="tool-arguments"):
                yield Static(Text(pretty_arguments(r.arguments)), id="tool-arguments-text")
            yield Static(
                "y/enter run · n decline · a always run this tool · escape decline and stop",
                id="tool-keys",
            )

    def action_decide(self, decision: str) -> None:
        self.dismiss(decision)  # type: ignore[arg-type]


def approval_prompt(app: App[Any]) -> Approver:
    """The engine's approver for the TUI: one :class:`ToolApprovalScreen` per call."""

    async def approve(request: ApprovalRequest) -> Decision:
        decided: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()

        def done(decision: Decision | None) -> None:
            if not decided.done():
                decided.set_result(decision or "decline")

        app.push_screen(ToolApprovalScreen(request), callback=done)
        return await decided

    return approve


__all__ = ["ToolApprovalScreen", "approval_prompt", "folded", "pretty_arguments"]
