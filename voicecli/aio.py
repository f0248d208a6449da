"""asyncio helpers that cannot swallow a cancellation.

``asyncio.wait_for`` on Python 3.10/3.11 returns the awaited result when a cancellation
arrives in the same loop iteration as the result (CPython gh-86296): the cancelled task
then runs on. :func:`timeout` is ``asyncio.timeout`` where it exists (3.11+) and an
equivalent for 3.10 built on the task's own cancel, so a cancellation always propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

if sys.version_info >= (3, 11):

    def timeout(seconds: float | None) -> asyncio.Timeout:
        """Raise ``TimeoutError`` if the block takes longer than ``seconds``."""
        return asyncio.timeout(seconds)

else:  # pragma: no cover - exercised on 3.10 only

    @contextlib.asynccontextmanager
    async def timeout(seconds: float | None) -> AsyncIterator[None]:
        """Raise ``TimeoutError`` if the block takes longer than ``seconds``."""
        if seconds is None:
            yield
            return
        task = asyncio.current_task()
        assert task is not None
        fired = False

        def expire() -> None:
            nonlocal fired
            fired = True
            task.cancel()

        handle = asyncio.get_running_loop().call_later(max(0.0, seconds), expire)
        try:
            yield
        except asyncio.CancelledError:
            if fired:
                raise TimeoutError from None
            raise
        finally:
            handle.cancel()


__all__ = ["timeout"]
