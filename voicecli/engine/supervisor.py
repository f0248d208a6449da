"""The supervisor: keeps a connection up. Backoff between attempts, the user's say over
reconnecting (retry now, stop trying), and rotation before the session's time limit.

It owns no protocol state: it dials, hands each open connection to ``serve`` and acts
on why that ended. The engine decides what a connection carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from voicecli.connection import Connection, ConnectionFailed, FatalServerError, preview_notice
from voicecli.engine.status import ConnectionState
from voicecli.engine.tasks import reap

ROTATE = "rotate"
"""What ``serve`` returns when it ended the connection to renew the session."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: ``initial * 2**attempt`` capped at ``cap``, times a jitter in
    [0.5, 1]; ``max_attempts`` failed attempts in a row end the engine (None: never)."""

    initial: float = 0.5
    cap: float = 30.0
    max_attempts: int | None = None

    def delay(self, attempt: int, rng: random.Random) -> float:
        growth: float = 2.0 ** min(max(0, attempt - 1), 30)  # no overflow in long outages
        return min(self.cap, self.initial * growth) * rng.uniform(0.5, 1.0)


class Supervisor:
    """See the module docstring.

    ``serve(conn, first)`` pumps one open connection and returns why it ended: None
    when closing, :data:`ROTATE`, ``"fatal"`` or a reason for the user. ``connected``
    is called with each new connection before ``serve``; ``lost(reason)`` after an
    unplanned end. ``fail(message)`` ends the engine for good."""

    def __init__(
        self,
        factory: Callable[[], Connection],
        serve: Callable[[Connection, bool], Awaitable[str | None]],
        *,
        backoff: Backoff,
        rng: random.Random,
        set_connection: Callable[[ConnectionState, str], None],
        state: Callable[[], ConnectionState],
        warn: Callable[[str], None],
        lost: Callable[[str], None],
        fail: Callable[[str], None],
        endpoint: str,
    ) -> None:
        self._factory = factory
        self._serve = serve
        self._backoff = backoff
        self._rng = rng
        self._set_connection = set_connection
        self._state_of = state
        self._warn = warn
        self._lost = lost
        self._fail = fail
        self._endpoint = endpoint
        self.connection: Connection | None = None
        self.closing = asyncio.Event()
        self.rotate_now = asyncio.Event()
        self.failed = False
        self._retry_now = asyncio.Event()
        self._stay_offline = False
        self._expiry_timer: asyncio.TimerHandle | None = None

    def _state(self, state: ConnectionState, detail: str) -> None:
        self._set_connection(state, detail)

    # -- the user's say -------------------------------------------------------------------

    def reconnect_now(self) -> bool:
        """Skip the backoff wait (also resumes after :meth:`stop_reconnecting`)."""
        if self._state_of() not in ("reconnecting", "offline"):
            return False
        self._stay_offline = False
        self._retry_now.set()
        return True

    def stop_reconnecting(self) -> bool:
        """Stop the attempts until :meth:`reconnect_now`."""
        if self._state_of() != "reconnecting":
            return False
        self._stay_offline = True
        self._retry_now.set()
        return True

    def close(self) -> None:
        self.closing.set()
        self.cancel_expiry_check()

    def check_expiry_at(
        self, expires_at: float | None, margin_s: float, check: Callable[[], None]
    ) -> None:
        """Call ``check`` when the ``margin_s`` before ``expires_at`` begins (replaces
        the previous timer; None: no timer)."""
        self.cancel_expiry_check()
        if expires_at is None:
            return
        delay = max(0.0, expires_at - margin_s - time.time())
        self._expiry_timer = asyncio.get_running_loop().call_later(delay, check)

    def cancel_expiry_check(self) -> None:
        """Drop the timer :meth:`check_expiry_at` set (the engine stops)."""
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None

    def expiring(self, expires_at: float | None, margin_s: float, quiet: bool) -> bool:
        """Rotate now when the session ends within ``margin_s`` and nothing is going on;
        True when a rotation was asked for."""
        if expires_at is None or self.rotate_now.is_set() or not quiet:
            return False
        if expires_at - time.time() > margin_s:
            return False
        self.rotate_now.set()
        return True

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Until closed or failed."""
        attempt = 0
        first = True
        while not self.closing.is_set():
            if attempt:
                limit = self._backoff.max_attempts
                if limit is not None and attempt > limit:
                    self._fail("could not reconnect: giving up")
                    return
                if await self._backoff_wait(attempt):
                    attempt = 0  # the user asked: a failure starts the backoff over
                if self.closing.is_set():
                    return
            else:
                self._state("connecting" if first else "reconnecting", "")
            conn = self._factory()
            try:
                await conn.connect()
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await conn.close()
                raise
            except Exception as exc:
                # one classification (voicecli.protocol.failures): a refusal that the
                # same settings would meet again (HTTP 400/401/403/404, a bad key or
                # model) ends here, after one attempt; the rest backs off and retries
                if isinstance(exc, FatalServerError) or (
                    isinstance(exc, ConnectionFailed) and not exc.retriable
                ):
                    self._fail(str(exc))
                    return
                attempt += 1  # refused, DNS, TLS, HTTP 408/429/5xx...
                if first and self._backoff.max_attempts == 0:
                    self._fail(f"cannot connect to {self._endpoint}: {exc}")
                    return
                if attempt == 1:  # once per outage, not once per attempt
                    self._warn(f"connection failed: {exc}")
                continue
            if first and (notice := preview_notice(conn.endpoint)) is not None:
                self._warn(notice)  # once: the first connection only
            self.connection = conn
            attempt = 0
            self._retry_now.clear()  # asked while the attempt was already succeeding
            self._stay_offline = False
            try:
                reason = await self._serve(conn, first)
            finally:  # also when cancelled: the socket goes too
                self.connection = None
                with contextlib.suppress(Exception):
                    await conn.close()
            first = False
            if reason is None or self.failed:
                return
            if reason == ROTATE:
                self.rotate_now.clear()
                continue
            attempt = 1
            self._lost(reason)

    async def _backoff_wait(self, attempt: int) -> bool:
        """Wait before attempt ``attempt``: the backoff delay, cut short by
        :meth:`reconnect_now`; after :meth:`stop_reconnecting`, until resumed. True when
        resumed by the user, False on a plain timeout."""
        delay = self._backoff.delay(attempt, self._rng)
        self._state("reconnecting", f"attempt {attempt} in {delay:.1f}s")
        # a retry/stop asked during the previous attempt counts now (not cleared first)
        if not await self._closing_or_retry(delay):
            return False
        if self._stay_offline:
            self._retry_now.clear()
            self._state("offline", "reconnecting stopped")
            await self._closing_or_retry(None)
        self._retry_now.clear()
        if not self.closing.is_set():
            self._state("reconnecting", "now")
        return True

    async def _closing_or_retry(self, timeout: float | None) -> bool:
        """Until closing or a user's retry/stop (True), or the timeout (False)."""
        waits = [
            asyncio.create_task(self.closing.wait()),
            asyncio.create_task(self._retry_now.wait()),
        ]
        try:
            done, _ = await asyncio.wait(
                waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            await reap(waits)
        return bool(done)


__all__ = ["ROTATE", "Backoff", "Supervisor"]
