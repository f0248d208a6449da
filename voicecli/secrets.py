"""The API key: where it comes from, and keeping it out of every output.

The key is read from the environment variable named by ``connection.api_key_env`` or,
when that is unset, printed by ``connection.api_key_command``. It is never stored in
the :class:`~voicecli.config.Config`; every key resolved here is remembered (in this
process only) so :class:`RedactingFilter` can scrub it from log records.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import stat
import subprocess
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from voicecli.config import Config, ConfigError, ConnectionConfig

REDACTED = "[REDACTED]"
COMMAND_TIMEOUT_S = 10.0
MIN_SECRET_LEN = 4
"""Shorter strings are not redacted (they would blank out ordinary words)."""

_known: set[str] = set()
_known_lock = threading.Lock()


class ApiKeyError(ConfigError):
    """``api_key_command`` failed; the message never includes what it printed."""

    def __init__(self, expected: str) -> None:
        super().__init__("", "connection.api_key_command", expected)


def register_secret(value: str | None) -> None:
    """Remember ``value`` so every :class:`RedactingFilter` scrubs it."""
    if value and len(value) >= MIN_SECRET_LEN:
        with _known_lock:
            _known.add(value)


def known_secrets() -> tuple[str, ...]:
    """The secrets registered so far, longest first (so a key containing another is
    replaced whole)."""
    with _known_lock:
        return tuple(sorted(_known, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every occurrence of each secret (and each registered one) replaced
    by ``[REDACTED]``."""
    values = {s for s in secrets if s and len(s) >= MIN_SECRET_LEN} | set(known_secrets())
    for secret in sorted(values, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from the message, its arguments and any
    exception text. Attach it to handlers (it then covers every logger)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the raw message
            message = str(record.msg)
        record.msg = redact(message, self._secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._secrets)
        return True


def _connection(cfg: Config | ConnectionConfig) -> ConnectionConfig:
    return cfg.connection if isinstance(cfg, Config) else cfg


def resolve_api_key(
    cfg: Config | ConnectionConfig, env: Mapping[str, str] = os.environ
) -> str | None:
    """The API key from ``$api_key_env``, else from ``api_key_command`` (first
    non-empty line of its stdout, stripped), else None. Raises :class:`ApiKeyError`
    when the command fails."""
    conn = _connection(cfg)
    value = env.get(conn.api_key_env, "").strip()
    if value:
        register_secret(value)
        return value
    if conn.api_key_command:
        key = _run_key_command(conn.api_key_command)
        register_secret(key)
        return key
    return None


def _run_key_command(command: str) -> str:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ApiKeyError(f"cannot parse the command ({exc})") from None
    if not argv:
        raise ApiKeyError("the command is empty")
    program = os.path.basename(argv[0])  # never the arguments: they may hold a token
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise ApiKeyError(f"{program!r} was not found") from None
    except PermissionError:
        raise ApiKeyError(f"{program!r} is not executable") from None
    except subprocess.TimeoutExpired:
        raise ApiKeyError(f"{program!r} did not finish within {COMMAND_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise ApiKeyError(f"{program!r} could not run ({exc.strerror or 'error'})") from None
    if done.returncode != 0:
        raise ApiKeyError(
            f"{program!r} exited with status {done.returncode} (its output is not shown)"
        )
    try:
        text = done.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiKeyError(f"{program!r} printed something that is not UTF-8 text") from None
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    raise ApiKeyError(f"{program!r} printed nothing on stdout")


_KEYISH = re.compile(
    r"sk-[A-Za-z0-9_\-]{16,}"
    r"|(?i:(api[_-]?key|token|secret|password))\s*=\s*[\"'][^\"'\s]{16,}[\"']"
)


def config_file_warning(path: Path) -> str | None:
    """One line when ``path`` seems to hold an API key and other users can read it."""
    try:
        mode = path.stat().st_mode
        if not mode & (stat.S_IRGRP | stat.S_IROTH):
            return None
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if not _KEYISH.search(text):
        return None
    return (
        f"warning: {path} seems to hold a secret and other users can read it: "
        f"run chmod 600 {shlex.quote(str(path))}"
    )
