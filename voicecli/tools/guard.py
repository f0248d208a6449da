"""A stdio MCP server dies with voicecli, even after ``kill -9`` of voicecli.

The ``mcp`` package starts a server in its own session (so a Ctrl-C in the terminal
does not reach it), which also means nothing kills it when voicecli dies abruptly. The
server is therefore started through a tiny launcher that asks Linux to SIGKILL it when
its parent dies (``PR_SET_PDEATHSIG``, kept across ``exec``) and then becomes the
server. Where the call does not exist (not Linux) the launcher just execs; the server
still ends on the explicit close, or when it reads end-of-file on its stdin.
"""

from __future__ import annotations

import os
import sys

PARENT_ENV = "VOICECLI_PARENT_PID"
LAUNCHER = """\
import ctypes, os, signal, sys
try:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != int(os.environ.pop("VOICECLI_PARENT_PID", os.getppid())):
    sys.exit(1)  # the parent is already gone: do not start an orphan
os.execvp(sys.argv[1], sys.argv[1:])
"""


def guarded(command: str, args: list[str]) -> tuple[str, list[str], dict[str, str]]:
    """The command, arguments and extra environment that start ``command args`` so that
    it dies with this process."""
    if not sys.platform.startswith("linux"):
        return command, args, {}
    return (
        sys.executable,
        ["-I", "-S", "-c", LAUNCHER, command, *args],
        {PARENT_ENV: str(os.getpid())},
    )


__all__ = ["guarded"]
