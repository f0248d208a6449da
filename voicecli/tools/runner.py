"""The MCP servers' tools, started, listed and called (the ``mcp`` package, 2.x).

:class:`ToolRunner` starts every enabled ``[mcp_servers.NAME]`` server at once, each in
a task of its own that holds its connection open (the SDK's context managers must be
entered and left in one task) until :meth:`ToolRunner.aclose`. A server that cannot
start or list its tools is one notice; the others go on. Each tool becomes a
:class:`ToolSpec`: the Realtime function declaration (``SERVER__TOOL``, description,
input schema) and the approval that applies to it.

:meth:`ToolRunner.call` runs one call with the server's ``tool_timeout_s`` and always
returns a :class:`ToolOutcome` whose ``output`` is text for the model: the tool's text
content, or a short error (a tool error, a timeout, a server that crashed). A crash is
one notice; later calls of that server's tools answer "unavailable" at once.

The ``mcp`` package is imported on a worker thread when the runner starts (importing
it takes seconds of CPU that must not stall the event loop). Servers started as child
processes die with voicecli (:mod:`voicecli.tools.guard`); their stderr goes to a log
file per server (Textual draws on the terminal's stderr).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from voicecli.aio import timeout
from voicecli.secrets import register_secret
from voicecli.toolconfig import (
    INSTALL_HINT,
    Approval,
    McpServer,
    MissingEnvironment,
    hosted_declaration,
)
from voicecli.tools.guard import guarded
from voicecli.tools.names import function_name, unique_name

OUTPUT_LIMIT = 16_000
"""Characters of tool output passed to the model (the rest is cut, and says so)."""

Warn = Callable[[str], None]
CallStatus = Literal["done", "failed", "timeout", "unavailable"]


@dataclass(frozen=True)
class ToolSpec:
    """One MCP tool as a Realtime function tool."""

    name: str
    """The function name the model calls (``SERVER__TOOL``, API-safe)."""
    server: str
    tool: str
    """The tool's own name on its server."""
    description: str
    parameters: Mapping[str, Any]
    approval: Approval

    def declaration(self) -> dict[str, Any]:
        """The ``tools`` entry of the session."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
        }


@dataclass(frozen=True)
class ToolOutcome:
    """The result of one call: ``output`` is what the model gets."""

    status: CallStatus
    output: str
    elapsed_ms: float = 0.0


@dataclass
class _Server:
    config: McpServer
    session: Any = None
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    listed: bool = False
    lost: bool = False
    closing: bool = False


class ToolRunner:
    """See the module docstring. ``warn`` gets one line per problem (a notice);
    ``log_dir`` holds each stdio server's stderr (None: discarded)."""

    def __init__(
        self,
        servers: Mapping[str, McpServer],
        warn: Warn,
        *,
        log_dir: Path | None = None,
        env: Mapping[str, str] = os.environ,
    ) -> None:
        self._configs = [s for s in servers.values() if s.enabled and not s.hosted]
        self.hosted = {s.name: s for s in servers.values() if s.enabled and s.hosted}
        """The ``hosted = true`` servers, by name: the service calls them itself."""
        self._warn = warn
        self._log_dir = log_dir
        self._env = env
        self._servers: dict[str, _Server] = {}
        self._specs: dict[str, ToolSpec] = {}
        self._mcp: Any = None
        self._errlogs: list[TextIO] = []

    @property
    def specs(self) -> list[ToolSpec]:
        return list(self._specs.values())

    def spec(self, name: str) -> ToolSpec | None:
        return self._specs.get(name)

    # -- starting ----------------------------------------------------------------------

    def hosted_declarations(self) -> list[dict[str, Any]]:
        """The session's ``mcp`` tools for the hosted servers. Their header values are
        registered as secrets (redacted from every log); a server whose headers name an
        unset variable is one notice and left out."""
        out: list[dict[str, Any]] = []
        for server in self.hosted.values():
            try:
                tool = hosted_declaration(server, self._env)
            except MissingEnvironment as exc:
                self._warn(f"MCP server {server.name!r} is off: {exc}")
                continue
            for value in tool.get("headers", {}).values():
                register_secret(value)
                register_secret(value.removeprefix("Bearer ").strip())
            out.append(tool)
        return out

    async def start(self) -> list[ToolSpec]:
        """Start every enabled server and list its tools; returns all the tools."""
        if not self._configs:
            return []
        try:
            self._mcp = await asyncio.to_thread(_import_mcp)
        except ImportError:
            self._warn(f"tools are off: {INSTALL_HINT}")
            return []
        results = await asyncio.gather(*(self._start_one(c) for c in self._configs))
        taken: set[str] = set()
        for config, tools in zip(self._configs, results, strict=True):
            for tool in tools:
                name = unique_name(function_name(config.name, tool.name), taken)
                taken.add(name)
                self._specs[name] = ToolSpec(
                    name=name,
                    server=config.name,
                    tool=tool.name,
                    description=(tool.description or tool.title or tool.name)[:1024],
                    parameters=tool.input_schema or {"type": "object", "properties": {}},
                    approval=config.approval_for(tool.name),
                )
        return self.specs

    async def _start_one(self, config: McpServer) -> list[Any]:
        server = _Server(config)
        ready: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        server.task = asyncio.create_task(self._hold(server, ready), name=f"mcp-{config.name}")
        self._servers[config.name] = server
        try:
            async with timeout(config.startup_timeout_s):
                return await asyncio.shield(ready)
        except TimeoutError:
            self._warn(
                f"MCP server {config.name!r} did not start within "
                f"{config.startup_timeout_s:g} s: its tools are off"
            )
        except Exception as exc:
            self._warn(f"MCP server {config.name!r} failed to start: {_describe(exc)}")
        server.lost = True
        await self._stop(server)
        return []

    async def _hold(self, server: _Server, ready: asyncio.Future[list[Any]]) -> None:
        """Open the connection, list the tools, keep it open until told to stop."""
        mcp = self._mcp
        config = server.config
        try:
            async with contextlib.AsyncExitStack() as stack:
                streams = await stack.enter_async_context(await self._transport(config))
                session = await stack.enter_async_context(mcp.ClientSession(streams[0], streams[1]))
                await session.initialize()
                tools: list[Any] = []
                cursor = None
                while True:
                    params = mcp.types.PaginatedRequestParams(cursor=cursor) if cursor else None
                    page = await session.list_tools(params=params)
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
                server.session = session
                server.listed = True
                if not ready.done():
                    ready.set_result(tools)
                await server.stop.wait()
        except asyncio.CancelledError:
            if not ready.done():
                ready.cancel()
            raise
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(_cause(exc))
            else:
                self._server_lost(server, _cause(exc))
        finally:
            server.session = None
        if server.listed:
            self._server_lost(server, None)  # the connection ended by itself

    async def _transport(self, config: McpServer) -> Any:
        mcp = self._mcp
        if config.command is not None:
            env = {**mcp.default_environment(), **config.env}
            if shutil.which(config.command, path=env.get("PATH")) is None:
                raise FileNotFoundError(f"command not found: {config.command}")
            command, args, extra = guarded(config.command, list(config.args))
            params = mcp.StdioServerParameters(
                command=command, args=args, env={**dict(config.env), **extra}, cwd=config.cwd
            )
            return mcp.stdio_client(params, errlog=await self._errlog(config.name))
        assert config.url is not None
        headers = config.resolved_headers(self._env)
        client = mcp.create_mcp_http_client(headers=headers)
        return _http_transport(mcp, config.url, client)

    async def _errlog(self, name: str) -> TextIO:
        def open_log() -> TextIO:
            if self._log_dir is None:
                errlog = open(os.devnull, "w")  # noqa: SIM115 - closed by aclose
            else:
                self._log_dir.mkdir(parents=True, exist_ok=True)
                errlog = open(self._log_dir / f"{name}.log", "a", encoding="utf-8")  # noqa: SIM115
            # kept here, in the thread: a start cancelled while the file opens must not
            # drop it unclosed (aclose closes every one)
            self._errlogs.append(errlog)
            return errlog

        return await asyncio.to_thread(open_log)

    def _server_lost(self, server: _Server, exc: BaseException | None) -> None:
        if server.lost or server.closing:
            return
        server.lost = True
        why = f": {_describe(exc)}" if exc is not None else ""
        self._warn(f"MCP server {server.config.name!r} stopped{why}; its tools are unavailable")

    # -- calling -----------------------------------------------------------------------

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolOutcome:
        """Run one call (never raises); the outcome's output is for the model."""
        spec = self._specs.get(name)
        server = self._servers.get(spec.server) if spec is not None else None
        if spec is None or server is None:
            return ToolOutcome("failed", f"error: there is no tool named {name}")
        if server.lost or server.session is None:
            return ToolOutcome("unavailable", f"error: the {spec.server} server is unavailable")
        started = time.monotonic()

        def outcome(status: CallStatus, output: str) -> ToolOutcome:
            return ToolOutcome(status, output, (time.monotonic() - started) * 1000.0)

        try:
            async with timeout(server.config.tool_timeout_s):
                result = await server.session.call_tool(spec.tool, dict(arguments))
        except TimeoutError:
            return outcome(
                "timeout", f"error: the tool timed out after {server.config.tool_timeout_s:g} s"
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            closed = getattr(exc, "code", None) == self._mcp.CONNECTION_CLOSED
            if isinstance(exc, self._mcp.MCPError) and not closed:
                return outcome("failed", f"error: {exc}")
            self._server_lost(server, exc)
            return outcome("unavailable", f"error: the {spec.server} server is unavailable")
        text = result_text(result)
        if getattr(result, "is_error", False):
            return outcome("failed", f"error: {text or 'the tool failed'}")
        return outcome("done", text)

    # -- closing -----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop every server (child processes end) and wait for it."""
        await asyncio.gather(*(self._stop(s) for s in self._servers.values()))
        for errlog in self._errlogs:
            with contextlib.suppress(OSError):
                errlog.close()
        self._errlogs.clear()

    async def _stop(self, server: _Server) -> None:
        server.closing = True
        server.stop.set()
        task = server.task
        if task is None:
            return
        if server.session is None:
            task.cancel()  # still starting: the SDK's shutdown runs shielded
        # the SDK's own shutdown is bounded (stdin closed, then a kill after 2 s)
        done, _ = await asyncio.wait({task}, timeout=10.0)
        if not done:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=5.0)
        if done and not task.cancelled():
            task.exception()  # retrieved: its failure was reported already


def result_text(result: Any) -> str:
    """A ``CallToolResult`` as text: its text parts, else its structured content."""
    parts: list[str] = []
    for block in getattr(result, "content", None) or ():
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(str(block.text))
        elif kind == "resource" and hasattr(getattr(block, "resource", None), "text"):
            parts.append(str(block.resource.text))
        else:
            parts.append(f"[{kind or 'content'} omitted]")
    text = "\n".join(parts)
    structured = getattr(result, "structured_content", None)
    if not text and structured is not None:
        text = json.dumps(structured, ensure_ascii=False)
    if len(text) > OUTPUT_LIMIT:
        text = text[:OUTPUT_LIMIT] + f"\n[... {len(text) - OUTPUT_LIMIT} more characters cut]"
    return text


def _import_mcp() -> Any:
    """The parts of the SDK the runner uses, as one namespace (run on a thread)."""

    class Sdk:
        pass

    sdk: Any = Sdk()
    mcp = importlib.import_module("mcp")
    stdio = importlib.import_module("mcp.client.stdio")
    http = importlib.import_module("mcp.client.streamable_http")
    httpx_utils = importlib.import_module("mcp.shared._httpx_utils")
    exceptions = importlib.import_module("mcp.shared.exceptions")
    sdk.ClientSession = mcp.ClientSession
    sdk.types = importlib.import_module("mcp.types")
    sdk.StdioServerParameters = stdio.StdioServerParameters
    sdk.stdio_client = stdio.stdio_client
    sdk.default_environment = stdio.get_default_environment
    sdk.streamable_http_client = http.streamable_http_client
    sdk.create_mcp_http_client = httpx_utils.create_mcp_http_client
    sdk.MCPError = exceptions.MCPError
    sdk.CONNECTION_CLOSED = importlib.import_module("mcp_types").CONNECTION_CLOSED
    return sdk


@contextlib.asynccontextmanager
async def _http_transport(mcp: Any, url: str, client: Any) -> Any:
    async with client, mcp.streamable_http_client(url, http_client=client) as streams:
        yield streams


def _cause(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(getattr(exc, "exceptions", None), tuple) and exc.exceptions:  # type: ignore[attr-defined]
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    return exc


def _describe(exc: BaseException | None) -> str:
    exc = _cause(exc) if exc is not None else None
    if exc is None:
        return "unknown error"
    if isinstance(exc, MissingEnvironment):
        return str(exc)
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = ["OUTPUT_LIMIT", "ToolOutcome", "ToolRunner", "ToolSpec", "result_text"]
