"""Realtime function names for MCP tools: ``SERVER__TOOL``, within the API's rules.

The API takes names matching ``^[a-zA-Z0-9_-]{1,64}$``. Other characters become ``_``; a
name too long keeps its start and ends in a short hash of the whole, so two long names
stay apart; a clash (two tools that sanitize alike) gets a numbered suffix.
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 64
SEPARATOR = "__"
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_-]")
VALID_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def function_name(server: str, tool: str) -> str:
    """The function name the model sees for ``tool`` of ``server``."""
    raw = f"{server}{SEPARATOR}{tool}"
    name = _BAD_CHARS.sub("_", raw)
    if len(name) <= MAX_NAME and name == raw:
        return name
    digest = hashlib.sha1(raw.encode()).hexdigest()[:8]
    if len(name) > MAX_NAME:
        return f"{name[: MAX_NAME - 9]}_{digest}"
    return name if len(name) + 9 > MAX_NAME else f"{name}_{digest}"


def unique_name(name: str, taken: set[str] | frozenset[str]) -> str:
    """``name``, or ``name`` with the smallest numbered suffix not in ``taken``."""
    if name not in taken:
        return name
    n = 2
    while True:
        suffix = f"_{n}"
        candidate = name[: MAX_NAME - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
        n += 1


__all__ = ["MAX_NAME", "SEPARATOR", "VALID_NAME", "function_name", "unique_name"]
