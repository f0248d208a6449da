"""Function calling, emulated: which declared tools the local server "decides" to call.

The local server has no model. It emulates one just well enough to drive a client's
whole tool path offline (``voicecli --local``) and in tests:

* a user message that contains ``call NAME {json}`` calls NAME with those arguments
  (several such phrases: several calls in one response);
* otherwise a message whose text (or transcript) names declared tools calls each of
  them, with arguments made up from the tool's JSON schema (example values);
* with :attr:`~voicecli.server.faults.Faults.call_tools_on_audio` set, a user audio turn
  (which the server cannot transcribe) calls the first declared tool;
* ``tool_choice`` ``required`` or ``{"type": "function", "name": ...}`` forces a call;
* the response after ``function_call_output`` items quotes them
  (:func:`quote_outputs`).

This is emulation, not a model: its choices are string matches.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from voicecli.server.items import Item

_CALL_RE = re.compile(r"\bcall\s+([A-Za-z0-9_-]+)\s*")


def calls_for(
    tools: Sequence[dict[str, Any]],
    tool_choice: Any,
    source: Item | None,
    *,
    on_audio: bool = False,
) -> list[tuple[dict[str, Any], str]]:
    """The (tool, arguments JSON) calls a response to ``source`` makes (maybe none)."""
    functions = [t for t in tools if t.get("type", "function") == "function"]
    if not functions or tool_choice == "none":
        return []
    if source is not None and source.type == "function_call_output":
        return []
    by_name = {t["name"]: t for t in functions}
    text = source.text if source is not None else ""
    calls: list[tuple[dict[str, Any], str]] = []
    for match in _CALL_RE.finditer(text):
        tool = by_name.get(match.group(1))
        if tool is not None:
            calls.append((tool, _json_at(text, match.end()) or example_arguments(tool)))
    if not calls:
        lowered = text.lower()
        calls = [(t, example_arguments(t)) for t in functions if t["name"].lower() in lowered]
    if not calls and on_audio and source is not None and source.audio is not None:
        calls = [(functions[0], example_arguments(functions[0]))]
    if calls:
        return calls
    if isinstance(tool_choice, dict):
        tool = by_name.get(tool_choice.get("name", ""))
        return [(tool, example_arguments(tool))] if tool is not None else []
    if tool_choice == "required":
        return [(functions[0], example_arguments(functions[0]))]
    return []


def _json_at(text: str, index: int) -> str | None:
    """The JSON object that starts at ``text[index]``, re-encoded (None: none there)."""
    try:
        value, _ = json.JSONDecoder().raw_decode(text, index)
    except ValueError:
        return None
    return json.dumps(value) if isinstance(value, dict) else None


def example_arguments(tool: dict[str, Any]) -> str:
    """Arguments that fit the tool's schema, as JSON (required properties only)."""
    schema = tool.get("parameters") or {}
    props = schema.get("properties") or {}
    required = schema.get("required")
    names = required if isinstance(required, list) else list(props)
    return json.dumps({name: example_value(props.get(name) or {}) for name in names})


def example_value(schema: dict[str, Any]) -> Any:
    """An example value of a JSON schema."""
    if "default" in schema:
        return schema["default"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return True
    if kind == "array":
        return [example_value(schema.get("items") or {})]
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: example_value(v) for k, v in props.items() if k in schema.get("required", ())}
    return "example"


def quote_outputs(context: Sequence[Item]) -> str | None:
    """The reply after function call outputs: each output quoted (None: no outputs
    since the last message)."""
    outputs: list[str] = []
    for item in reversed(context):
        if item.type == "function_call_output":
            outputs.append(item.output or "")
        elif item.type != "function_call":
            break
    if not outputs:
        return None
    return " ".join(f"The function returned: {out}" for out in reversed(outputs))


__all__ = ["calls_for", "example_arguments", "example_value", "quote_outputs"]
