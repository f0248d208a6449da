"""A reply cut off while it played (its response had already completed) is marked
"(interrupted)" like one cut off while generating: found in the tmux tryout, where a
barge-in during playback truncated the reply but its turn showed no mark."""

from __future__ import annotations

from rich.console import Console

from voicecli.protocol.items import ContentPart, Item
from voicecli.ui.widgets.transcript import render_item


def assistant(status: str, truncated_at_ms: int | None) -> Item:
    part = ContentPart("output_audio", "You said 5.8 seconds of audio.", 48 * 5800, True)
    return Item(
        "item_1", role="assistant", status=status, parts=[part], truncated_at_ms=truncated_at_ms
    )


def shown(item: Item) -> str:
    console = Console(width=80, record=True, color_system=None)
    console.print(render_item(item))
    return console.export_text()


def test_a_reply_truncated_while_playing_is_marked_interrupted() -> None:
    text = shown(assistant("completed", 2475))
    assert "(interrupted)" in text and "You said 5.8" in text


def test_a_reply_heard_to_its_end_is_not_marked() -> None:
    assert "(interrupted)" not in shown(assistant("completed", None))
