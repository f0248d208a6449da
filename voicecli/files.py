"""Files the user names on the command line (``ask --out``, ``--transcript``,
``export --out``): checked before any work is done, and written without harm.

* A regular file (or a new one) is replaced atomically: a temporary file beside it,
  fsync'd, then renamed over it, so a reader never sees half of it. A symlink is
  followed: its target is replaced and the link stays a link. An existing file keeps
  its mode.
* Anything else (``/dev/null``, ``/dev/stdout``, a FIFO, a terminal) is written
  through: opened and written like ``cat > PATH`` would, never replaced (as root,
  renaming over ``/dev/null`` would break every program on the machine).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO

__all__ = ["check_writable", "open_private", "reason", "write_file"]

PRIVATE = 0o600
"""The mode of files that hold a conversation (session logs, saved transcripts)."""


def reason(exc: OSError) -> str:
    """An OSError as a short phrase ("No such file or directory")."""
    return exc.strerror or str(exc) or type(exc).__name__


def _stat(path: Path) -> os.stat_result | None:
    """``path``'s status through symlinks (None: nothing there, or a dangling link)."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _replaceable(path: Path, st: os.stat_result | None) -> Path | None:
    """Where an atomic replace of ``path`` goes: the symlink's real target for a regular
    (or new) file, None when ``path`` must be written through."""
    if st is not None and not stat.S_ISREG(st.st_mode):
        return None
    target = Path(os.path.realpath(path))
    if st is None:
        return target
    try:
        # /dev/stdout or /proc/self/fd/N to a deleted file: realpath names no such file
        same = os.path.samestat(st, os.stat(target))
    except OSError:
        same = False
    return target if same else None


def check_writable(path: str | Path) -> None:
    """Raise OSError (``filename`` set) unless :func:`write_file` can write ``path``:
    a special file must be writable; a regular or new file needs a directory that
    takes a new file. Creates nothing that outlives the check."""
    p = Path(path)
    st = _stat(p)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(21, os.strerror(21), str(p))
    target = _replaceable(p, st)
    if target is None:
        if not os.access(p, os.W_OK):
            raise PermissionError(13, os.strerror(13), str(p))
        return
    if st is not None and not os.access(target, os.W_OK):
        raise PermissionError(13, os.strerror(13), str(p))
    parent = target.parent
    if not parent.is_dir():
        raise FileNotFoundError(2, os.strerror(2), str(p))
    # the real test (root passes os.access; a read-only mount does not): make the
    # temporary file write_file would make
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    os.unlink(tmp)


def write_file(path: str | Path, data: bytes, *, new_mode: int | None = None) -> None:
    """Write ``data`` to ``path`` as described in the module docstring. ``new_mode``:
    the mode of a newly created file (default ``0o666`` less the umask)."""
    p = Path(path)
    st = _stat(p)
    target = _replaceable(p, st)
    if target is None:
        with open(p, "wb") as f:
            f.write(data)
        return
    if st is not None:
        mode = stat.S_IMODE(st.st_mode)
    elif new_mode is not None:
        mode = new_mode
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def open_private(path: str | Path) -> IO[str]:
    """Open ``path`` for writing text, line-buffered (a watcher sees whole lines): a new
    file is created private to the user (:data:`PRIVATE`); an existing one keeps its
    mode and is truncated; a special file (a FIFO, ``/dev/stdout``) is written through."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
    return os.fdopen(fd, "w", encoding="utf-8", buffering=1)
