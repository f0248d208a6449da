"""``kill -9`` a real session at random moments: every turn the engine reported as
done (``TurnLogged``, what the UI shows as done) is in the session's JSONL log, and the
log parses line by line (only a torn last line, never reported, may be skipped).

The child process runs the real engine against the local server (in-process, instant
replies) in text mode, one message after another, and prints each logged turn's id.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from voicecli.history import read_session

ROOT = Path(__file__).resolve().parents[2]

SESSION = """
import asyncio, sys
from voicecli.config import load_config
from voicecli.engine import Engine, TurnLogged
from voicecli.protocol.notifications import ResponseDone
from voicecli.server import RealtimeServer

async def main(data_dir):
    async with RealtimeServer(pace=0, record=False) as server:
        config = load_config(config_file=None, env={}, overrides={
            "connection": {"url": server.url, "model": "gpt-realtime"},
            "data_dir": data_dir,
        })
        engine = Engine(config)
        turn = 0

        def on_note(note):
            nonlocal turn
            if isinstance(note, TurnLogged):
                print(note.item_id, flush=True)
            elif isinstance(note, ResponseDone):
                turn += 1
                engine.send_text(f"message {turn} " + "é—x" * (turn * 37 % 400))

        engine.subscribe(on_note)
        task = asyncio.create_task(engine.run())
        await engine.wait_connected()
        print("ready", flush=True)
        engine.send_text("message 0")
        await task

asyncio.run(main(sys.argv[1]))
"""

RUNS = 12


def test_kill_minus_9_of_a_session_keeps_every_turn_shown_as_done(tmp_path: Path) -> None:
    seed = int(time.time())
    rng = random.Random(seed)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    shown_per_run: list[int] = []
    for run in range(RUNS):
        data_dir = tmp_path / f"run{run}"
        proc = subprocess.Popen(
            [sys.executable, "-c", SESSION, str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            first = proc.stdout.readline().strip()
            assert first == "ready", proc.stderr.read()
            time.sleep(rng.uniform(0.0, 0.6))  # a random moment of the conversation
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            shown = proc.stdout.read().split()  # everything printed before the kill
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        logs = list((data_dir / "sessions").glob("*.jsonl"))
        assert len(logs) == 1, f"seed {seed}: {logs}"
        record = read_session(logs[0])
        lines = logs[0].read_bytes().split(b"\n")
        assert record.skipped_lines <= 1, f"seed {seed}"
        if record.skipped_lines:  # only the last line, torn by the kill
            assert lines[-1] != b"", f"seed {seed}"
        logged = [str(t["item_id"]) for t in record.turns]
        missing = [item for item in shown if item not in logged]
        assert missing == [], f"seed {seed}, run {run}: shown as done but not in the log"
        # order kept, and the turns of one exchange alternate user/assistant
        assert logged[: len(shown)] == shown, f"seed {seed}"
        roles = [t["role"] for t in record.turns]
        assert all(r in ("user", "assistant") for r in roles), roles
        shown_per_run.append(len(shown))
    low, high = min(shown_per_run), max(shown_per_run)
    print(f"kill -9 of a session: {RUNS} runs, turns shown {low}-{high}")
    assert high > 0, f"seed {seed}: no run got to finish a turn"
