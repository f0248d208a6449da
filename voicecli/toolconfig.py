"""``[mcp_servers.NAME]``: the MCP servers whose tools the model may call.

Parsed here, separately from the rest of the config (which only calls
:func:`parse_mcp_servers`), into frozen :class:`McpServer` values. A bad table raises
:class:`ToolConfigError` naming the key; the config layer turns it into its one-line
``ConfigError`` with the file it came from.

A server is either a child process speaking MCP on stdio (``command``, ``args``,
``env``, ``cwd``) or a streamable-HTTP endpoint (``url``, ``headers``). Header values
may name environment variables (``"Bearer ${MY_TOKEN}"``, or ``bearer_token_env =
"MY_TOKEN"``) so that no secret sits in the file; they are read when the server starts.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

Approval = Literal["ask", "auto", "never"]
APPROVALS: tuple[Approval, ...] = get_args(Approval)
SERVER_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,40}")
"""A server name becomes the prefix of its tools' names (``NAME__TOOL``)."""
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_KEYS = (
    "command",
    "args",
    "env",
    "cwd",
    "url",
    "headers",
    "bearer_token_env",
    "enabled",
    "approval",
    "startup_timeout_s",
    "tool_timeout_s",
    "hosted",
    "allowed_tools",
    "tools",
)
INSTALL_HINT = "MCP servers need the mcp extra: pip install 'voicecli[mcp]'"


class ToolConfigError(ValueError):
    """A bad ``[mcp_servers...]`` value: ``key`` is the dotted key, ``expected`` says what
    was wanted."""

    def __init__(self, key: str, expected: str) -> None:
        self.key = key
        self.expected = expected
        super().__init__(f"{key}: {expected}")


class MissingEnvironment(LookupError):
    """A header names an environment variable that is not set."""


@dataclass(frozen=True)
class McpServer:
    """One ``[mcp_servers.NAME]`` table."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}))
    cwd: Path | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}))
    bearer_token_env: str | None = None
    enabled: bool = True
    approval: Approval = "ask"
    tool_approval: Mapping[str, Approval] = field(
        default_factory=lambda: types.MappingProxyType({})
    )
    """``[mcp_servers.NAME.tools.TOOL] approval = ...``: per-tool overrides."""
    startup_timeout_s: float = 10.0
    tool_timeout_s: float = 60.0
    hosted: bool = False
    """A ``url`` server the Realtime service calls itself (a Realtime ``mcp`` tool)."""
    allowed_tools: tuple[str, ...] | None = None
    """A hosted server's tools the model may see (None: all of them)."""

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "stdio" if self.command is not None else "http"

    def approval_for(self, tool: str) -> Approval:
        return self.tool_approval.get(tool, self.approval)

    def resolved_headers(self, env: Mapping[str, str] = os.environ) -> dict[str, str]:
        """The HTTP headers with ``${VAR}`` references and ``bearer_token_env`` filled
        in from ``env``; raises :class:`MissingEnvironment` naming an unset variable."""

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise MissingEnvironment(f"environment variable {name} is not set")
            return env[name]

        out = {key: _ENV_REF_RE.sub(fill, value) for key, value in self.headers.items()}
        if self.bearer_token_env is not None:
            if self.bearer_token_env not in env:
                raise MissingEnvironment(f"environment variable {self.bearer_token_env} is not set")
            out["Authorization"] = f"Bearer {env[self.bearer_token_env]}"
        return out


def hosted_declaration(server: McpServer, env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The Realtime ``mcp`` tool that lets the service call a ``hosted = true`` server.

    ``headers`` are resolved from ``env`` (raises :class:`MissingEnvironment`).
    ``require_approval`` follows ``approval``: ``"auto"`` is ``"never"``, ``"ask"`` (and
    ``"never"``, which the client then declines) is ``"always"``; per-tool overrides
    become the object form, naming the ``auto`` tools under ``never`` and the others
    under ``always``, while the rest follow the server's own setting on the client's
    side (an approval request for an ``auto`` tool is approved without asking).
    """
    tool: dict[str, Any] = {"type": "mcp", "server_label": server.name}
    if server.url is not None:
        tool["server_url"] = server.url
    headers = server.resolved_headers(env)
    if headers:
        tool["headers"] = headers
    if server.allowed_tools is not None:
        tool["allowed_tools"] = list(server.allowed_tools)
    default = "never" if server.approval == "auto" else "always"
    overrides = {t: a for t, a in server.tool_approval.items() if a != server.approval}
    if not overrides:
        tool["require_approval"] = default
    else:
        auto = sorted(t for t, a in server.tool_approval.items() if a == "auto")
        asked = sorted(t for t, a in server.tool_approval.items() if a != "auto")
        filters: dict[str, Any] = {}
        if asked:
            filters["always"] = {"tool_names": asked}
        if auto:
            filters["never"] = {"tool_names": auto}
        tool["require_approval"] = filters
    return tool


def parse_mcp_servers(value: Any) -> Mapping[str, McpServer]:
    """The ``mcp_servers`` table as servers by name (raises :class:`ToolConfigError`)."""
    if value is None:
        return types.MappingProxyType({})
    if not isinstance(value, Mapping):
        raise ToolConfigError("mcp_servers", "expected a table of [mcp_servers.NAME]")
    servers: dict[str, McpServer] = {}
    for name, table in value.items():
        servers[str(name)] = _server(str(name), table)
    return types.MappingProxyType(servers)


def _server(name: str, table: Any) -> McpServer:
    prefix = f"mcp_servers.{name}"
    if not SERVER_NAME_RE.fullmatch(name):
        raise ToolConfigError(prefix, "a server name is 1-40 letters, digits, _ or -")
    if not isinstance(table, Mapping):
        raise ToolConfigError(prefix, f"expected a table [{prefix}]")
    for key in table:
        if key not in _KEYS:
            raise ToolConfigError(f"{prefix}.{key}", f"unknown key (valid: {', '.join(_KEYS)})")

    def get(key: str, kind: type[Any], expected: str, default: Any = None) -> Any:
        raw = table.get(key, default)
        if raw is default:
            return raw
        if not isinstance(raw, kind) or (kind is not bool and isinstance(raw, bool)):
            raise ToolConfigError(f"{prefix}.{key}", f"expected {expected}, got {_show(raw)}")
        return raw

    command = get("command", str, "a program name or path")
    url = get("url", str, "an http:// or https:// URL")
    if (command is None) == (url is None):
        raise ToolConfigError(prefix, 'needs either command = "..." (stdio) or url = "..." (HTTP)')
    if command is not None and not command.strip():
        raise ToolConfigError(f"{prefix}.command", 'expected a program name or path, got ""')
    if url is not None and not re.fullmatch(r"https?://[^/?#\s]+\S*", url, re.IGNORECASE):
        raise ToolConfigError(
            f"{prefix}.url", f"expected an http:// or https:// URL, got {_show(url)}"
        )
    for key in ("args", "env", "cwd") if url is not None else ("headers", "bearer_token_env"):
        if key in table:
            other = "url" if url is not None else "command"
            raise ToolConfigError(f"{prefix}.{key}", f"does not apply to a server with {other}")
    args = get("args", list, "a list of strings", ())
    if not all(isinstance(a, str) for a in args):
        raise ToolConfigError(f"{prefix}.args", f"expected a list of strings, got {_show(args)}")
    env = _string_table(get("env", Mapping, "a table of strings", {}), f"{prefix}.env")
    cwd = get("cwd", str, "a directory path")
    headers = _string_table(get("headers", Mapping, "a table of strings", {}), f"{prefix}.headers")
    bearer = get("bearer_token_env", str, "the NAME of an environment variable")
    if bearer is not None and not _ENV_NAME_RE.fullmatch(bearer):
        raise ToolConfigError(
            f"{prefix}.bearer_token_env",
            "expected the NAME of an environment variable (like MY_TOKEN), not the token itself",
        )
    hosted = get("hosted", bool, "true or false", False)
    if hosted and url is None:
        raise ToolConfigError(f"{prefix}.hosted", "applies only to a server with url")
    allowed = get("allowed_tools", list, "a list of tool names")
    if allowed is not None and not hosted:
        raise ToolConfigError(f"{prefix}.allowed_tools", "applies only to a hosted = true server")
    if allowed is not None and not all(isinstance(a, str) and a for a in allowed):
        raise ToolConfigError(
            f"{prefix}.allowed_tools", f"expected a list of tool names, got {_show(allowed)}"
        )
    return McpServer(
        name=name,
        command=command,
        args=tuple(args),
        env=types.MappingProxyType(env),
        cwd=Path(os.path.expanduser(cwd)) if cwd else None,
        url=url,
        headers=types.MappingProxyType(headers),
        bearer_token_env=bearer,
        enabled=get("enabled", bool, "true or false", True),
        approval=_approval(table.get("approval", "ask"), f"{prefix}.approval"),
        tool_approval=types.MappingProxyType(_tool_approvals(table.get("tools"), prefix)),
        startup_timeout_s=_seconds(table, "startup_timeout_s", 10.0, prefix),
        tool_timeout_s=_seconds(table, "tool_timeout_s", 60.0, prefix),
        hosted=hosted,
        allowed_tools=tuple(allowed) if allowed is not None else None,
    )


def _approval(value: Any, key: str) -> Approval:
    for choice in APPROVALS:
        if value == choice:
            return choice
    raise ToolConfigError(key, f'expected one of "ask", "auto", "never", got {_show(value)}')


def _tool_approvals(value: Any, prefix: str) -> dict[str, Approval]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ToolConfigError(f"{prefix}.tools", "expected a table of [tools.TOOL]")
    out: dict[str, Approval] = {}
    for tool, table in value.items():
        key = f"{prefix}.tools.{tool}"
        if not isinstance(table, Mapping):
            raise ToolConfigError(key, f"expected a table [{key}] with approval = ...")
        for sub in table:
            if sub != "approval":
                raise ToolConfigError(f"{key}.{sub}", "unknown key (valid: approval)")
        if "approval" in table:
            out[str(tool)] = _approval(table["approval"], f"{key}.approval")
    return out


def _seconds(table: Mapping[str, Any], key: str, default: float, prefix: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
        raise ToolConfigError(
            f"{prefix}.{key}", f"expected a number of seconds from 0 to 3600, got {_show(value)}"
        )
    return float(value)


def _string_table(value: Mapping[str, Any], key: str) -> dict[str, str]:
    for name, item in value.items():
        if not isinstance(item, str):
            raise ToolConfigError(f"{key}.{name}", f"expected a string, got {_show(item)}")
    return {str(k): v for k, v in value.items()}


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a table"
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 40 else text[:37] + "..."


def mcp_available() -> bool:
    """Whether the ``mcp`` package (the ``voicecli[mcp]`` extra) is installed."""
    import importlib.util

    return importlib.util.find_spec("mcp") is not None


__all__ = [
    "APPROVALS",
    "INSTALL_HINT",
    "Approval",
    "McpServer",
    "MissingEnvironment",
    "ToolConfigError",
    "hosted_declaration",
    "mcp_available",
    "parse_mcp_servers",
]
