"""A real MCP server for the tests, built with the ``mcp`` package.

Run as ``python -m tests.tools.mcp_server [stdio|http PORT]``. Its tools:

* ``echo(text)``: returns ``echo: TEXT``;
* ``add(a, b)``: returns the sum;
* ``sleep(seconds)``: waits, then returns ``slept`` (timeouts);
* ``fail(message)``: a tool error (``is_error``);
* ``crash()``: the server process exits at once (a crashed server);
* ``pid()``: the server's process id (tests check that it dies with voicecli);
* ``hang()``: blocks the server's event loop (it no longer notices its stdin closing).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("voicecli-test", log_level="CRITICAL")


@server.tool(description="Echo the text back")
def echo(text: str) -> str:
    return f"echo: {text}"


@server.tool(description="Add two integers")
def add(a: int, b: int) -> str:
    return str(a + b)


@server.tool(description="Sleep for some seconds")
async def sleep(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


@server.tool(description="Always fails")
def fail(message: str) -> str:
    raise ToolError(message)


@server.tool(description="Exit the server process at once")
def crash() -> str:
    os._exit(3)


@server.tool(description="The server's process id")
def pid() -> str:
    return str(os.getpid())


@server.tool(description="Block the server's event loop")
async def hang() -> str:
    time.sleep(600)  # on purpose: stdin's end of file goes unnoticed
    return "woke"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
