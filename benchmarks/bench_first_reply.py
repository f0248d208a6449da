"""First-reply benchmark (prints, asserts nothing): is the app's first reply clean?

Each run is a fresh start of the real app against ``voicecli serve`` with virtual audio
(a private PulseAudio, scripts/virtual-audio-start) while ``parec`` records the
speaker's monitor:

    tui   the TUI in a private tmux: as soon as it shows "connected", a typed message;
          the local server answers "You said: <text>" in its tone voice (exactly
          ``tone_voice`` of that text, so the sent audio is known)
    ask   ``voicecli ask --play --out reply.wav question.wav``: the server echoes the
          question; ``--out`` holds exactly the audio it sent

For each run it prints the app's own underrun count (the TUI's status bar; ask shows
none) and, from the recording: the correlation of the recorded reply with the sent
audio at the best lag, and the glitches heard: silent runs (>= 3 ms near zero) that the
sent audio does not have, the extra silence in ms, and the change in the reply's length
(a dropout inserts or loses time). With ``--idle-cpu S`` the last TUI run also reports
the app's CPU over S seconds, muted and idle after its reply (``/proc/PID/stat``).

Run: ``python benchmarks/bench_first_reply.py [--runs 20] [--ask-runs 5] [--idle-cpu 20]``.
Needs tmux, pulseaudio, parec and espeak-ng (scripts/_setup.sh installs them). The load
average is printed with every run: other processes slow the app's start-up down.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from local_stack import PAREC_SPEAKER, Stack, local_stack  # noqa: E402

from voicecli.server.synth import tone_voice  # noqa: E402

TMUX_SOCKET = f"voicecli-first-{os.getpid()}"
SIZE = (200, 50)  # wide: the status bar shows "speaker underruns N" in full
MESSAGE = "the keeper of the lighthouse climbed the stairs every evening to wind the clock"
SECOND = "ships passed in the dark while gulls slept on the rocks below the old tower"
"""The second reply (``--second``): other words, so another tone pattern."""
QUESTION = "What time does the lighthouse keeper wind the clockwork every evening?"
QUIET = 4  # |sample| at or below this counts as silence
MIN_GAP = 72  # samples (3 ms): a shorter quiet run is a zero crossing, not a gap
LOUD = 200  # the reply's span runs from its first to its last sample above this


def tmux(*args: str) -> str:
    out = subprocess.run(
        ["tmux", "-L", TMUX_SOCKET, *args], check=True, capture_output=True, text=True
    )
    return out.stdout


def screen(target: str) -> str:
    return tmux("capture-pane", "-p", "-t", target)


def until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            print(f"  timed out waiting for {what}", flush=True)
            return False
        time.sleep(0.05)
    return True


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_wav(path: Path) -> np.ndarray[Any, np.dtype[np.int16]]:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


# -- analysis ----------------------------------------------------------------------------


@dataclass
class Heard:
    correlation: float
    extra_gaps: int
    extra_silence_ms: float
    length_change_ms: float
    found: bool = True


def _quiet_runs(x: np.ndarray[Any, Any]) -> tuple[int, int]:
    """(count, samples) of quiet runs of at least MIN_GAP samples."""
    quiet = np.abs(x.astype(np.int32)) <= QUIET
    if not quiet.any():
        return 0, 0
    edges = np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = ends - starts
    long = lengths >= MIN_GAP
    return int(long.sum()), int(lengths[long].sum())


def _span(x: np.ndarray[Any, Any]) -> tuple[int, int]:
    loud = np.flatnonzero(np.abs(x.astype(np.int32)) > LOUD)
    return (int(loud[0]), int(loud[-1]) + 1) if len(loud) else (0, 0)


def analyse(recorded: np.ndarray[Any, Any], sent: np.ndarray[Any, Any]) -> Heard:
    """Compare the recording with the sent reply (see the module docstring)."""
    rec = recorded.astype(np.float64)
    ref = sent.astype(np.float64)
    if len(rec) < len(ref) // 2 or not np.any(np.abs(rec) > LOUD):
        return Heard(0.0, 0, 0.0, 0.0, found=False)
    size = 1 << (len(rec) + len(ref)).bit_length()
    corr = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(ref, size)), size)
    lag = int(np.argmax(corr[: len(rec)]))
    seg = rec[lag : lag + len(ref)]
    if len(seg) < len(ref):
        seg = np.concatenate([seg, np.zeros(len(ref) - len(seg))])
    correlation = float(np.corrcoef(seg, ref)[0, 1])
    r0, r1 = _span(sent)
    lo = max(0, lag - len(ref) // 4)
    s0, s1 = _span(recorded[lo : lag + len(ref) + len(ref) // 4])
    s0, s1 = s0 + lo, s1 + lo
    ref_runs, ref_quiet = _quiet_runs(sent[r0:r1])
    rec_runs, rec_quiet = _quiet_runs(recorded[s0:s1])
    return Heard(
        correlation,
        rec_runs - ref_runs,
        (rec_quiet - ref_quiet) / 24,
        ((s1 - s0) - (r1 - r0)) / 24,
    )


# -- one run -----------------------------------------------------------------------------


class Recorder:
    """``parec`` on the speaker's monitor, 24 kHz mono s16le, into a file."""

    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path = path
        self._file = path.open("wb")
        self._proc = subprocess.Popen(
            PAREC_SPEAKER,
            stdout=self._file,
            env=env,
        )
        time.sleep(0.3)

    def stop(self) -> np.ndarray[Any, np.dtype[np.int16]]:
        time.sleep(0.3)
        self._proc.terminate()
        self._proc.wait(5)
        self._file.close()
        raw = self.path.read_bytes()
        return np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2")


def session_alive(target: str) -> bool:
    return (
        subprocess.run(
            ["tmux", "-L", TMUX_SOCKET, "has-session", "-t", target], capture_output=True
        ).returncode
        == 0
    )


def app_pid(target: str) -> int | None:
    shell = int(tmux("display-message", "-p", "-t", target, "#{pane_pid}").strip())
    if "voicecli" in Path(f"/proc/{shell}/cmdline").read_text():
        return shell
    out = subprocess.run(
        ["pgrep", "-P", str(shell), "-f", "voicecli"], capture_output=True, text=True
    ).stdout.split()
    return int(out[0]) if out else None


def underruns_on(text: str) -> int:
    for line in text.splitlines():
        if "speaker underruns" in line:
            tail = line.split("speaker underruns", 1)[1].split()
            if tail and tail[0].isdigit():
                return int(tail[0])
    return 0


Result = tuple[Heard, int, str]  # what was heard, the app's underrun count, load average


def say(target: str, text: str) -> None:
    tmux("send-keys", "-t", target, "t")
    time.sleep(0.2)
    tmux("send-keys", "-t", target, "-l", text)
    tmux("send-keys", "-t", target, "Enter")


def tui_run(
    n: int,
    work: Path,
    env: dict[str, str],
    command: str,
    idle_cpu: float,
    cwd: Path = REPO,
    second: float | None = None,
) -> tuple[Result, Result | None]:
    target = f"run{n}"
    load = loadavg()
    rec = Recorder(work / f"tui{n}.raw", env)
    tmux(
        "new-session",
        "-d",
        "-s",
        target,
        "-x",
        str(SIZE[0]),
        "-y",
        str(SIZE[1]),
        "-c",
        str(cwd),
        "-e",
        f"PULSE_SERVER={env['PULSE_SERVER']}",
        command,
    )
    underruns = later = -1
    load2 = ""
    try:
        if until(lambda: "● connected" in screen(target), "the connection"):
            say(target, MESSAGE)
            until(lambda: "You said" in screen(target), "the reply")
            until(lambda: "response idle" in screen(target), "the reply to end", timeout=30)
            time.sleep(0.5)
            shown = screen(target)
            (work / f"tui{n}.screen").write_text(shown)
            underruns = underruns_on(shown)
            if second is not None:
                time.sleep(second)
                load2 = loadavg()
                say(target, SECOND)
                time.sleep(len(tone_voice(f"You said: {SECOND}")) / 24_000 + 2.0)
                until(lambda: "response idle" in screen(target), "the reply to end", timeout=30)
                later = underruns_on(screen(target)) - underruns
            if idle_cpu > 0:
                pid = app_pid(target)
                tmux("send-keys", "-t", target, "m")
                time.sleep(5)  # past the speaker's idle stop
                if pid is not None:
                    before, t0, load0 = cpu_seconds(pid), time.monotonic(), loadavg()
                    time.sleep(idle_cpu)
                    percent = 100 * (cpu_seconds(pid) - before) / (time.monotonic() - t0)
                    print(
                        f"  muted and idle after the reply: {percent:.2f} %"
                        f" of a core over {idle_cpu:g} s (load {load0} -> {loadavg()})",
                        flush=True,
                    )
        tmux("send-keys", "-t", target, "q")
        until(lambda: not session_alive(target), "the quit", 10)
    finally:
        subprocess.run(
            ["tmux", "-L", TMUX_SOCKET, "kill-session", "-t", target], capture_output=True
        )
        recorded = rec.stop()
    first = analyse(recorded, tone_voice(f"You said: {MESSAGE}")), underruns, load
    if second is None:
        return first, None
    return first, (analyse(recorded, tone_voice(f"You said: {SECOND}")), later, load2)


def ask_run(
    n: int, work: Path, env: dict[str, str], base: list[str], question: Path
) -> tuple[Heard, int, str]:
    load = loadavg()
    rec = Recorder(work / f"ask{n}.raw", env)
    out = work / f"reply{n}.wav"
    try:
        subprocess.run(
            [*base, "ask", "--play", "--out", str(out), str(question)],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
    finally:
        recorded = rec.stop()
    return analyse(recorded, read_wav(out)), -1, load


def report(name: str, rows: list[tuple[Heard, int, str]]) -> None:
    print(f"\n{name}: {len(rows)} first replies")
    print(
        f"{'run':>4s} {'underruns':>9s} {'corr':>8s} {'gaps+':>6s} {'silence+ms':>10s} "
        f"{'length+ms':>9s} {'load':>5s}"
    )
    for i, (h, u, load) in enumerate(rows):
        if not h.found:
            print(f"{i:4d} {'-' if u < 0 else u:>9} {'no reply recorded':>27s} {load:>16s}")
            continue
        print(
            f"{i:4d} {'-' if u < 0 else u:>9} {h.correlation:8.5f} {h.extra_gaps:6d} "
            f"{h.extra_silence_ms:10.1f} {h.length_change_ms:9.1f} {load:>5s}"
        )
    found = [h for h, _, _ in rows if h.found]
    if not found:
        return
    corrs = [h.correlation for h in found]
    clean = sum(
        1
        for h, u, _ in rows
        if h.found
        and h.correlation >= 0.999
        and u <= 0
        and h.extra_gaps <= 0
        and abs(h.length_change_ms) < 6
    )
    print(
        f"  correlation: min {min(corrs):.5f}, median {statistics.median(corrs):.5f}; "
        f"below 0.999: {sum(c < 0.999 for c in corrs)}; "
        f"app underruns > 0: {sum(u > 0 for _, u, _ in rows)}; "
        f"extra gaps heard > 0: {sum(h.extra_gaps > 0 for h in found)}; "
        f"clean: {clean}/{len(rows)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="fresh TUI starts")
    parser.add_argument("--ask-runs", type=int, default=5, help="fresh `ask --play` runs")
    parser.add_argument(
        "--idle-cpu",
        type=float,
        default=0.0,
        help="seconds of CPU measured muted and idle after the last TUI reply",
    )
    parser.add_argument(
        "--checkouts",
        nargs="+",
        type=Path,
        default=[REPO],
        help="TUI runs alternate between these source trees (same load)",
    )
    parser.add_argument(
        "--second",
        type=float,
        default=None,
        metavar="S",
        help="S seconds after the first reply, a second one (measured apart: the rest)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the recordings (tui<N>.raw) and screens in the work directory",
    )
    parser.add_argument("--latency", type=float, default=None, help="audio.output_latency")
    args = parser.parse_args()
    for tool in ("tmux", "pulseaudio", "parec", "espeak-ng"):
        if shutil.which(tool) is None:
            sys.exit(f"bench_first_reply: {tool} is missing (scripts/_setup.sh installs it)")
    with local_stack("voicecli-first-", keep=args.keep) as stack:
        try:
            run(stack, args)
        finally:
            subprocess.run(["tmux", "-L", TMUX_SOCKET, "kill-server"], capture_output=True)


def run(stack: Stack, args: argparse.Namespace) -> None:
    """The series the options ask for, printed as they go, then their summaries."""
    work, env = stack.work, stack.env
    config = work / "config.toml"
    text = f'[storage]\ndata_dir = "{work / "data"}"\n'
    if args.latency is not None:
        text += f"[audio]\noutput_latency = {args.latency}\n"
    config.write_text(text)
    base = [
        sys.executable,
        "-m",
        "voicecli",
        "--config",
        str(config),
        "--url",
        stack.url,
    ]
    command = " ".join([*base, "--turn-mode", "local-vad"])
    question = work / "question.wav"
    subprocess.run(["espeak-ng", "-w", str(question), QUESTION], check=True)
    print(f"load average at start: {loadavg()} ({os.cpu_count()} CPUs)", flush=True)
    time.sleep(1)  # the server listens
    tuis: dict[Path, list[Result]] = {c: [] for c in args.checkouts}
    seconds: dict[Path, list[Result]] = {c: [] for c in args.checkouts}
    done = 0
    for n in range(args.runs):
        for c, tui in tuis.items():
            idle = args.idle_cpu if n == args.runs - 1 else 0
            first, later = tui_run(done, work, env, command, idle, c.resolve(), args.second)
            tui.append(first)
            done += 1
            for name, result in [("first", first), ("second", later)]:
                if result is not None:
                    h, u, load = result
                    print(
                        f"tui {n} {c} {name}: underruns {u}, correlation "
                        f"{h.correlation:.5f}, gaps+ {h.extra_gaps}, "
                        f"length+ {h.length_change_ms:.1f} ms (load {load})",
                        flush=True,
                    )
            if later is not None:
                seconds[c].append(later)
    asks = []
    for n in range(args.ask_runs):
        asks.append(ask_run(n, work, env, base, question))
        h, _, load = asks[-1]
        print(
            f"ask {n}: correlation {h.correlation:.5f}, gaps+ {h.extra_gaps}"
            f", length+ {h.length_change_ms:.1f} ms (load {load})",
            flush=True,
        )
    for c, tui in tuis.items():
        if tui:
            report(f"tui, {c} (typed message right after connecting)", tui)
        if seconds[c]:
            report(f"tui, {c}: the second reply, {args.second:g} s after the first", seconds[c])
    if asks:
        report("ask --play", asks)
    print(f"load average at the end: {loadavg()}")


if __name__ == "__main__":
    main()
