"""Conversation items as the local server keeps them, and parsing of client items."""

from __future__ import annotations

import base64
import binascii
import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voicecli.server.errors import ProtocolError, invalid_type, invalid_value, missing_parameter
from voicecli.server.errors import unknown_parameter as _unknown
from voicecli.server.synth import Pcm, audio_ms, new_id

_CONTENT_TYPES = {
    "user": ("input_text", "input_audio", "input_image"),
    "system": ("input_text",),
    "assistant": ("output_text",),
}
"""Content a client may give each role. Assistant ``output_audio`` is refused: the live
service rejects assistant audio items from the client, so a replay must send what the
assistant said as ``output_text`` (``/work/shared/realtime-protocol.md``)."""


@dataclass
class Item:
    """One conversation item. ``content`` is the wire form without audio bytes; the audio
    (user input or assistant output so far) lives in ``audio``."""

    id: str
    type: str
    role: str | None = None
    content: list[dict[str, Any]] = field(default_factory=list)
    status: str = "completed"
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None
    audio: Pcm | None = None
    server_label: str | None = None
    """Hosted MCP items (emulated): the server they belong to."""
    approval_request_id: str | None = None
    approve: bool | None = None
    tools: list[dict[str, Any]] | None = None

    @property
    def audio_ms(self) -> float:
        return 0.0 if self.audio is None else audio_ms(len(self.audio))

    @property
    def text(self) -> str:
        """The item's words: texts and transcripts joined."""
        parts = [c.get("text") or c.get("transcript") or "" for c in self.content]
        return " ".join(p for p in parts if p)

    def wire(self) -> dict[str, Any]:
        if self.type.startswith("mcp_"):
            return self._mcp_wire()
        out: dict[str, Any] = {"id": self.id, "type": self.type, "object": "realtime.item"}
        if self.type == "message":
            out.update(status=self.status, role=self.role, content=copy.deepcopy(self.content))
        elif self.type == "function_call":
            out.update(
                status=self.status, call_id=self.call_id, name=self.name, arguments=self.arguments
            )
        else:
            out.update(call_id=self.call_id, output=self.output)
        return out

    def _mcp_wire(self) -> dict[str, Any]:
        """A hosted MCP item (emulated); the API's MCP items carry no ``object``."""
        out: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.type == "mcp_list_tools":
            out.update(server_label=self.server_label, tools=copy.deepcopy(self.tools or []))
        elif self.type == "mcp_approval_response":
            out.update(approval_request_id=self.approval_request_id, approve=self.approve)
        else:
            out.update(server_label=self.server_label, name=self.name, arguments=self.arguments)
            if self.type == "mcp_call":
                out.update(approval_request_id=self.approval_request_id, output=self.output)
        return out


def decode_audio(value: Any, path: str) -> Pcm:
    """Base64 PCM16 little-endian to samples; a clear error on anything else."""
    if not isinstance(value, str):
        raise invalid_type(path, "a base64 string", value)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(
            "invalid_value", f"Invalid '{path}': expected base64-encoded audio.", path
        ) from None
    if len(raw) % 2:
        raise ProtocolError(
            "invalid_value",
            f"Invalid '{path}': PCM16 audio must hold an even number of bytes.",
            path,
        )
    return np.frombuffer(raw, dtype="<i2").astype(np.int16)


def encode_audio(pcm: Pcm) -> str:
    return base64.b64encode(pcm.astype("<i2").tobytes()).decode("ascii")


def _check_keys(obj: dict[str, Any], allowed: tuple[str, ...], path: str) -> None:
    for key in obj:
        if key not in allowed:
            raise _unknown(f"{path}.{key}")


def parse_item(raw: Any, path: str = "item") -> Item:
    """Validate a client-supplied item (``conversation.item.create`` or ``response.input``)."""
    if not isinstance(raw, dict):
        raise invalid_type(path, "an object", raw)
    kind = raw.get("type")
    common = ("id", "type", "object", "status")
    item_id = raw.get("id")
    if item_id is not None and (not isinstance(item_id, str) or not item_id):
        raise invalid_type(f"{path}.id", "a non-empty string", item_id)
    item_id = item_id or new_id("item")
    if kind == "message":
        _check_keys(raw, (*common, "role", "content"), path)
        role = raw.get("role")
        if role not in _CONTENT_TYPES:
            raise invalid_value(f"{path}.role", f"'{role}'. Expected user, assistant or system.")
        content = raw.get("content")
        if not isinstance(content, list) or not content:
            raise missing_parameter(f"{path}.content")
        item = Item(id=item_id, type="message", role=role)
        chunks: list[Pcm] = []
        for i, part in enumerate(content):
            p = f"{path}.content[{i}]"
            if not isinstance(part, dict):
                raise invalid_type(p, "an object", part)
            ptype = part.get("type")
            if ptype not in _CONTENT_TYPES[role]:
                allowed = ", ".join(_CONTENT_TYPES[role])
                raise invalid_value(f"{p}.type", f"'{ptype}' for role {role}; use {allowed}.")
            if ptype in ("input_text", "output_text"):
                _check_keys(part, ("type", "text"), p)
                if not isinstance(part.get("text"), str):
                    raise invalid_type(f"{p}.text", "a string", part.get("text"))
                item.content.append({"type": ptype, "text": part["text"]})
            elif ptype == "input_image":
                _check_keys(part, ("type", "image_url", "detail"), p)
                item.content.append(dict(part))
            else:
                _check_keys(part, ("type", "audio", "transcript"), p)
                if "audio" in part:
                    chunks.append(decode_audio(part["audio"], f"{p}.audio"))
                transcript = part.get("transcript")
                if transcript is not None and not isinstance(transcript, str):
                    raise invalid_type(f"{p}.transcript", "a string", transcript)
                item.content.append({"type": ptype, "transcript": transcript})
        if chunks:
            item.audio = np.concatenate(chunks)
        return item
    if kind == "function_call":
        _check_keys(raw, (*common, "call_id", "name", "arguments"), path)
        for key in ("name", "arguments"):
            if not isinstance(raw.get(key), str):
                raise missing_parameter(f"{path}.{key}")
        call_id = raw.get("call_id") or new_id("call", 16)
        return Item(
            id=item_id,
            type="function_call",
            call_id=call_id,
            name=raw["name"],
            arguments=raw["arguments"],
        )
    if kind == "function_call_output":
        _check_keys(raw, (*common, "call_id", "output"), path)
        for key in ("call_id", "output"):
            if not isinstance(raw.get(key), str):
                raise missing_parameter(f"{path}.{key}")
        return Item(
            id=item_id, type="function_call_output", call_id=raw["call_id"], output=raw["output"]
        )
    if kind == "mcp_approval_response":
        _check_keys(raw, (*common, "approval_request_id", "approve", "reason"), path)
        if not isinstance(raw.get("approval_request_id"), str):
            raise missing_parameter(f"{path}.approval_request_id")
        if not isinstance(raw.get("approve"), bool):
            raise missing_parameter(f"{path}.approve")
        return Item(
            id=item_id,
            type="mcp_approval_response",
            approval_request_id=raw["approval_request_id"],
            approve=raw["approve"],
        )
    raise invalid_value(
        f"{path}.type",
        f"'{kind}'. Expected message, function_call, function_call_output"
        " or mcp_approval_response.",
    )
