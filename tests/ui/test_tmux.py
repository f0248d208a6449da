"""Real-terminal smoke test: tmux runs ``python -m voicecli --local`` at 120x40.

Each test gets its own tmux server (``-L``), started with a clean environment: a
``COLUMNS``/``LINES`` pair inherited from the test runner (GNU readline exports the
runner's terminal size) would make Textual lay out 80x24 inside the 120x40 pane.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import require

pytestmark = [pytest.mark.tmux, pytest.mark.slow]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for the tmux server and voicecli: no terminal size overrides."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TMUX")}
    env.update(extra)
    return env


def tmux(*args: str, socket: str) -> str:
    return subprocess.run(
        ["tmux", "-L", socket, *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=10,
        env=clean_env(),
    ).stdout


def start(tmp_path: Path, command: str) -> str:
    """A new tmux server and session running ``command``; returns its name."""
    require("tmux", shutil.which("tmux") is not None, "apt-get install tmux")
    name = f"voicecli-{uuid.uuid4().hex[:8]}"
    env = {
        "HOME": str(tmp_path),
        "PATH": os.environ.get("PATH", ""),
        "TERM": "xterm-256color",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    if "PULSE_SERVER" in os.environ:  # the virtual sound card, when the run has one
        env["PULSE_SERVER"] = os.environ["PULSE_SERVER"]
    env_args = [arg for k, v in env.items() for arg in ("-e", f"{k}={v}")]
    tmux(
        "new-session",
        "-d",
        "-s",
        name,
        "-x",
        "120",
        "-y",
        "40",
        *env_args,
        command,
        socket=name,
    )
    return name


@pytest.fixture
def session(tmp_path: Path) -> Iterator[str]:
    name = start(tmp_path, f"{sys.executable} -m voicecli --local")
    try:
        yield name
    finally:
        subprocess.run(
            ["tmux", "-L", name, "kill-server"], capture_output=True, timeout=10, env=clean_env()
        )


def screen(name: str) -> str:
    return tmux("capture-pane", "-p", "-t", name, socket=name)


def wait_screen(name: str, check: Callable[[str], bool], timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = screen(name)
        if check(text):
            return text
        time.sleep(0.1)
    raise AssertionError(f"screen never matched; last screen:\n{text}")


def test_local_text_conversation_in_a_real_terminal(session: str) -> None:
    wait_screen(session, lambda s: "connected" in s)
    tmux("send-keys", "-t", session, "t", socket=session)
    wait_screen(session, lambda s: "Message" in s)
    tmux("send-keys", "-t", session, "-l", "hello tmux", socket=session)
    tmux("send-keys", "-t", session, "Enter", socket=session)
    wait_screen(session, lambda s: "You said: hello tmux" in s)
    tmux("send-keys", "-t", session, "C-k", socket=session)
    wait_screen(session, lambda s: "input buffer cleared" in s)
    tmux("send-keys", "-t", session, "Escape", socket=session)
    # the footer always says "cancel": wait for the key's own answer (the request, or
    # what it did: the reply still playing is cut and truncated at once). Pressing q
    # before Textual has decided that the ESC byte was a lone Escape would make it alt+q.
    answers = ("cancel requested", "truncated to", "response cancelled")
    wait_screen(session, lambda s: any(a in s for a in answers))
    tmux("send-keys", "-t", session, "q", socket=session)
    # the session's only process is voicecli: the session ends when it exits cleanly
    deadline = time.monotonic() + 10
    while (
        subprocess.run(
            ["tmux", "-L", session, "has-session", "-t", session],
            capture_output=True,
            env=clean_env(),
        ).returncode
        == 0
    ):
        if time.monotonic() > deadline:
            raise AssertionError(f"q did not quit voicecli; last screen:\n{screen(session)}")
        time.sleep(0.1)


def test_a_normal_quit_prints_nothing(tmp_path: Path) -> None:
    """Nothing on stderr after the UI closes (it was 18 nanobind "leaked" lines)."""
    marker = "VOICECLI-EXIT="
    name = start(tmp_path, f"{sys.executable} -m voicecli --local; echo {marker}$?; sleep 60")
    try:
        wait_screen(name, lambda s: "connected" in s)
        tmux("send-keys", "-t", name, "q", socket=name)
        text = wait_screen(name, lambda s: marker in s)
        # Textual has left the alternate screen: what remains was printed after it
        lines = [line for line in text.splitlines() if line.strip()]
        assert lines == [f"{marker}0"], text
    finally:
        subprocess.run(
            ["tmux", "-L", name, "kill-server"], capture_output=True, timeout=10, env=clean_env()
        )
