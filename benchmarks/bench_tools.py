"""Tool call benchmarks: prints numbers, asserts nothing.

    .venv/bin/python benchmarks/bench_tools.py [--calls 200]

Against the test MCP server (tests/tools/mcp_server.py, over stdio):

1. start-up: ToolRunner.start (importing the mcp package on a thread, spawning the
   server through the death-signal launcher, initialize, tools/list), wall time;
2. one call round trip: ToolRunner.call of ``echo``, wall time, median and p95;
3. the whole tool path: a typed message naming the tool -> function_call ->
   function_call_output sent -> the follow-up response done, through the engine and the
   local server (pace 0), median and p95 of the time from send_text to the second
   response.done.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voicecli.audio.sinks import NullSink  # noqa: E402
from voicecli.config import load_config  # noqa: E402
from voicecli.engine import Engine  # noqa: E402
from voicecli.protocol.notifications import Notification, ResponseDone  # noqa: E402
from voicecli.server import RealtimeServer  # noqa: E402
from voicecli.toolconfig import parse_mcp_servers  # noqa: E402
from voicecli.tools import ToolRunner  # noqa: E402

TABLE = {
    "command": sys.executable,
    "args": ["-m", "tests.tools.mcp_server"],
    "cwd": str(ROOT),
    "approval": "auto",
    "startup_timeout_s": 120,
}


def summary(ms: list[float]) -> str:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"median {statistics.median(ms):.2f} ms, p95 {p95:.2f} ms, n={len(ms)}"


async def bench_runner(calls: int) -> None:
    runner = ToolRunner(parse_mcp_servers({"t": TABLE}), print)
    start = time.perf_counter()
    await runner.start()
    print(f"start-up (import, spawn, initialize, list): {time.perf_counter() - start:.2f} s")
    try:
        times = []
        for i in range(calls):
            t0 = time.perf_counter()
            await runner.call("t__echo", {"text": f"call {i}"})
            times.append((time.perf_counter() - t0) * 1000)
        print(f"call round trip (echo over stdio): {summary(times[5:])}")
    finally:
        await runner.aclose()


async def bench_path(turns: int) -> None:
    async with RealtimeServer(pace=0) as server:
        with tempfile.TemporaryDirectory() as data:
            config = load_config(
                env={},
                user_file=False,
                overrides={
                    "connection": {"url": server.url},
                    "data_dir": data,
                    "mcp_servers": {"t": TABLE},
                },
            )
            engine = Engine(config, sink=NullSink())
            done = asyncio.Event()
            count = 0

            def note(n: Notification) -> None:
                nonlocal count
                if isinstance(n, ResponseDone):
                    count += 1
                    if count % 2 == 0:
                        done.set()

            engine.subscribe(note)
            task = asyncio.create_task(engine.run())
            await engine.wait_connected()
            await engine.wait_tools()
            times = []
            for i in range(turns):
                done.clear()
                t0 = time.perf_counter()
                engine.send_text(f'call t__echo {{"text": "turn {i}"}}')
                await done.wait()
                times.append((time.perf_counter() - t0) * 1000)
            await engine.close()
            await task
    print(f"question -> tool -> answer (engine + local server): {summary(times[2:])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(bench_runner(args.calls))
    asyncio.run(bench_path(max(10, args.calls // 10)))


if __name__ == "__main__":
    main()
