"""Local server throughput: one minute of speech appended, committed and echoed back.

Run: /tmp/venv/bin/python benchmarks/bench_server.py
Reports wall time and CPU time of the whole exchange (server and client share one process).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import numpy as np
from websockets.asyncio.client import connect

from voicecli.server import RealtimeServer

SECONDS = 60
BLOCK = 480  # 20 ms appends, as a live microphone sends them


async def main() -> None:
    rng = np.random.default_rng(0)
    speech = (rng.normal(0, 3000, SECONDS * 24000)).astype(np.int16)
    async with RealtimeServer(pace=0, record=False) as server:
        ws = await connect(server.url + "?model=gpt-realtime", max_size=None)
        try:
            await ws.recv()
            await ws.send(
                json.dumps(
                    {
                        "type": "session.update",
                        "session": {
                            "type": "realtime",
                            "audio": {"input": {"turn_detection": None}},
                        },
                    }
                )
            )
            await ws.recv()
            wall, cpu = time.perf_counter(), time.process_time()
            for i in range(0, len(speech), BLOCK):
                chunk = base64.b64encode(speech[i : i + BLOCK].tobytes()).decode()
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            append_wall = time.perf_counter() - wall
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await ws.send(json.dumps({"type": "response.create"}))
            events = 0
            while True:
                event = json.loads(await ws.recv())
                events += 1
                if event["type"] == "rate_limits.updated":
                    break
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            await ws.close()
    print(
        f"{SECONDS} s of audio: appends {append_wall * 1000:.0f} ms, whole exchange "
        f"{wall * 1000:.0f} ms wall / {cpu * 1000:.0f} ms CPU, {events} events back "
        f"({SECONDS / wall:.0f}x real time)"
    )


if __name__ == "__main__":
    asyncio.run(main())
