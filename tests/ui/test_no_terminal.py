"""The UI refuses a stdin that is not a terminal (issue 14.3): before, Textual's input
thread spun a core at 100 % for ever on ``voicecli < /dev/null``, a cron job or a pipe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import private_env


@pytest.mark.parametrize("stdin", ["devnull", "pipe"])
def test_a_non_terminal_stdin_is_refused_with_one_line(tmp_path: Path, stdin: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "voicecli", "--local"],
        stdin=subprocess.DEVNULL if stdin == "devnull" else None,
        input="hello\n" if stdin == "pipe" else None,
        env=private_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr == "voicecli needs a terminal; for scripts use `voicecli ask`\n"
    assert done.stdout == ""
