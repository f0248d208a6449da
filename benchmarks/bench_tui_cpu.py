"""TUI CPU benchmark (prints, asserts nothing): the real app in tmux, per state.

Runs ``voicecli`` (the real app, engine and audio) in a private tmux server against
``voicecli serve`` with virtual audio (a private PulseAudio, scripts/virtual-audio-start),
drives it with keys, and for each state reads the app process's CPU time from
``/proc/PID/stat`` over a window (30 s by default):

    listening, silence (local VAD)   the mic live, nobody speaking
    playing a reply                  a long typed message answered aloud
    idle after a reply               the reply over, the mic live
    streaming silence (server VAD)   every mic block sent, nobody speaking
    streaming speech (server VAD)    espeak-ng speech played into the virtual mic
    muted, idle                      the mic muted

Run: ``python benchmarks/bench_tui_cpu.py [--seconds 30] [--echo-mode guard]`` (the
default ``auto`` runs the echo canceller when the ``aec`` extra is installed). Needs
tmux, pulseaudio, paplay and espeak-ng (scripts/_setup.sh installs them). The machine's
load average is printed with each window: other processes slow this one down, so
compare runs made under similar load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from local_stack import Stack, local_stack

TMUX_SOCKET = f"voicecli-bench-{os.getpid()}"
SIZE = (120, 40)
SPEECH = (
    "The keeper of the lighthouse climbed the spiral stairs every evening, "
    "wound the clockwork, trimmed the wick and watched the ships pass in the dark. "
) * 6
LONG_MESSAGE = " ".join(["ships"] * 150)
"""Typed; the local server answers "You said: …", one 220 ms note per word (~33 s)."""


def tmux(*args: str) -> str:
    out = subprocess.run(
        ["tmux", "-L", TMUX_SOCKET, *args], check=True, capture_output=True, text=True
    )
    return out.stdout


def screen() -> str:
    return tmux("capture-pane", "-p", "-t", "bench")


def until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"bench_tui_cpu: timed out waiting for {what}; the screen:\n{screen()}")
        time.sleep(0.2)


def keys(*names: str, literal: bool = False) -> None:
    tmux("send-keys", "-t", "bench", *(["-l"] if literal else []), *names)
    time.sleep(0.3)


def _ticks(stat: Path) -> int:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def cpu_seconds(pid: int) -> float:
    return _ticks(Path(f"/proc/{pid}/stat")) / os.sysconf("SC_CLK_TCK")


def thread_ticks(pid: int) -> dict[int, tuple[str, int]]:
    """CPU ticks per thread, with its kind: the interpreter's main thread (UI, engine,
    the canceller), PulseAudio's client threads, and the rest (PortAudio's callbacks,
    the disk writer, thread pools)."""
    out: dict[int, tuple[str, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            ticks, name = _ticks(task / "stat"), (task / "comm").read_text().strip()
        except OSError:
            continue  # the thread ended
        kind = "main" if task.name == str(pid) else "pulse" if name == "threaded-ml" else "other"
        out[int(task.name)] = (kind, ticks)
    return out


def split_by_kind(
    before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]]
) -> dict[str, int]:
    """Ticks used per kind between two snapshots; a thread that ended meanwhile (a
    speaker stream stopped while idle) is left out, its last ticks unknown."""
    used = {"main": 0, "pulse": 0, "other": 0}
    for tid, (kind, ticks) in after.items():
        used[kind] += ticks - before.get(tid, (kind, 0))[1]
    return used


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def measure(pid: int, seconds: float) -> tuple[float, str, str, str]:
    """CPU % of one core over ``seconds``, the load average before and after, and the
    split by thread kind (threads that end meanwhile are not counted there)."""
    load_before = loadavg()
    start_cpu, start, start_threads = cpu_seconds(pid), time.monotonic(), thread_ticks(pid)
    time.sleep(seconds)
    used, wall = cpu_seconds(pid) - start_cpu, time.monotonic() - start
    used_by_kind = split_by_kind(start_threads, thread_ticks(pid))
    hz = os.sysconf("SC_CLK_TCK")
    split = " ".join(
        f"{kind} {100 * ticks / hz / wall:.1f}" for kind, ticks in used_by_kind.items()
    )
    return 100 * used / wall, load_before, loadavg(), split


def app_pid(shell_pid: int) -> int:
    """The voicecli process started by the tmux pane's shell."""
    for _ in range(100):
        out = subprocess.run(
            ["pgrep", "-P", str(shell_pid), "-f", "voicecli"], capture_output=True, text=True
        ).stdout.split()
        if out:
            return int(out[0])
        time.sleep(0.1)
    sys.exit("bench_tui_cpu: voicecli did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="window per state")
    parser.add_argument(
        "--echo-mode", default="auto", help="audio.echo_mode (auto, aec, guard, off, ...)"
    )
    args = parser.parse_args()
    for tool in ("tmux", "pulseaudio", "paplay", "espeak-ng"):
        if shutil.which(tool) is None:
            sys.exit(f"bench_tui_cpu: {tool} is missing (scripts/_setup.sh installs it)")
    with local_stack("voicecli-cpu-") as stack:
        run(stack, args.seconds, args.echo_mode)


def run(stack: Stack, seconds: float, echo_mode: str) -> None:
    """Drive the app through the states and print the CPU of each."""
    work, env = stack.work, stack.env
    speech = work / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), SPEECH], check=True)
    config = work / "config.toml"
    config.write_text(
        f'[storage]\ndata_dir = "{work / "data"}"\n\n[audio]\necho_mode = "{echo_mode}"\n'
    )
    command = (
        f"{sys.executable} -m voicecli --config {config} --url {stack.url} --turn-mode local-vad"
    )
    try:
        tmux(
            "new-session", "-d", "-s", "bench", "-x", str(SIZE[0]), "-y", str(SIZE[1]),
            "-e", f"PULSE_SERVER={env['PULSE_SERVER']}", command,
        )  # fmt: skip
        shell = int(tmux("display-message", "-p", "-t", "bench", "#{pane_pid}").strip())
        pid = shell if "voicecli" in Path(f"/proc/{shell}/cmdline").read_text() else app_pid(shell)
        until(lambda: "● connected" in screen(), "the connection")
        time.sleep(3)  # start-up settles (session.update, first status)
        results: list[tuple[str, tuple[float, str, str, str]]] = []

        def window(name: str) -> None:
            results.append((name, measure(pid, seconds)))
            print(f"{name:34s} {results[-1][1][0]:6.2f} %", flush=True)

        window("listening, silence (local VAD)")

        keys("t")
        keys(LONG_MESSAGE, literal=True)
        keys("Enter")
        until(lambda: "response playing" in screen(), "the reply to play")
        window("playing a reply")
        until(lambda: "response idle" in screen(), "the reply to end", timeout=120)
        time.sleep(2)
        window("idle after a reply")

        keys("v")  # local VAD -> server VAD
        until(lambda: "mode server-vad" in screen(), "server VAD")
        time.sleep(2)
        window("streaming silence (server VAD)")

        player = subprocess.Popen(
            ["paplay", "--device=mic_feed", str(speech)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)
        window("streaming speech (server VAD)")
        player.terminate()
        player.wait()

        keys("m")
        until(lambda: "mic muted" in screen(), "the mute")
        time.sleep(2)
        window("muted, idle")

        keys("q")
        print()
        print(
            f"{'state':34s} {'CPU %':>7s}  by thread (main, pulse, other)  "
            f"load avg before → after ({os.cpu_count()} CPUs)"
        )
        for name, (percent, before, after, split) in results:
            print(f"{name:34s} {percent:7.2f}  {split:30s} {before} → {after}")
    finally:
        subprocess.run(["tmux", "-L", TMUX_SOCKET, "kill-server"], capture_output=True)


if __name__ == "__main__":
    main()
