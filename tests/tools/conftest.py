"""Fixtures for the tool tests: the test MCP server (tests/tools/mcp_server.py) as a
``[mcp_servers.NAME]`` table, over stdio or streamable HTTP on localhost."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from voicecli.toolconfig import McpServer, parse_mcp_servers

ROOT = Path(__file__).resolve().parents[2]
STARTUP_S = 60.0
"""Generous: importing the mcp package takes seconds of CPU on a loaded machine."""


def stdio_table(**overrides: Any) -> dict[str, Any]:
    """The test server as a stdio ``[mcp_servers.NAME]`` table."""
    table: dict[str, Any] = {
        "command": sys.executable,
        "args": ["-m", "tests.tools.mcp_server"],
        "cwd": str(ROOT),
        "startup_timeout_s": STARTUP_S,
        "approval": "auto",
    }
    table.update(overrides)
    return table


def servers(**tables: dict[str, Any]) -> dict[str, McpServer]:
    return dict(parse_mcp_servers(tables))


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


async def gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        await asyncio.sleep(0.05)
    return not alive(pid)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    """The test server over streamable HTTP on localhost; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.tools.mcp_server", "http", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the test MCP server did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)
