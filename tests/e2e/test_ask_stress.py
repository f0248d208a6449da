"""Issue #10.1: ``ask --mic --play`` exits after its reply on a busy machine.

Before the fix, 2 of 6 runs beside two CPU-bound processes never exited: the mic loop
swallowed its cancellation (``asyncio.wait_for``, CPython gh-86296) and ran on. Here 20
runs (5 rounds of 4 at once, all hearing the same utterance on the virtual mic) must
each answer and exit, with two busy processes beside them the whole time.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_real_audio import reaped, speak, start_ask, wait_event

pytestmark = [pytest.mark.audio, pytest.mark.slow]

ROUNDS = 5
AT_ONCE = 4
EXIT_WITHIN_S = 40


@pytest.fixture
def busy_machine() -> Iterator[None]:
    """Two CPU-bound processes for the duration of the test."""
    spin = [sys.executable, "-c", "while True: pass"]
    with contextlib.ExitStack() as stack:
        for _ in range(2):
            stack.enter_context(reaped(subprocess.Popen(spin)))
        yield


@pytest.mark.timeout(400)  # 20 runs; each round ends or fails by EXIT_WITHIN_S
def test_twenty_asks_beside_two_busy_processes_all_exit(
    audio_env: None, busy_machine: None, tmp_path: Path
) -> None:
    utt = speak("Hello there, how are you?", tmp_path / "q.wav")
    failures: list[str] = []
    for round_no in range(ROUNDS):
        with contextlib.ExitStack() as stack:
            runs = []
            for k in range(AT_ONCE):
                run_dir = tmp_path / f"r{round_no}-{k}"
                run_dir.mkdir()
                runs.append(stack.enter_context(start_ask(run_dir)))
            for _, transcript, _ in runs:
                wait_event(transcript, "session.created", timeout=30)
            time.sleep(1.0)  # an idle null sink delivers nothing to a new stream for a moment
            subprocess.run(["paplay", "--device=mic_feed", str(utt)], check=True, timeout=20)
            deadline = time.monotonic() + EXIT_WITHIN_S
            for k, (proc, _, _) in enumerate(runs):
                try:
                    _, stderr = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    failures.append(f"run {round_no}-{k} still running after {EXIT_WITHIN_S} s")
                    continue
                if proc.returncode != 0:
                    failures.append(f"run {round_no}-{k} exited {proc.returncode}: {stderr[-300:]}")
    assert not failures, failures
