"""Waiting for the engine's own tasks at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)


async def reap(tasks: Iterable[asyncio.Task[Any] | None], *, grace: float = 0.0) -> None:
    """Wait for ``tasks`` to end, retrieving every exception (so asyncio never logs
    "Task exception was never retrieved"); errors other than cancellation are logged.
    If the caller is cancelled meanwhile, the tasks are still awaited.

    The engine's loops stop by an explicit close first: ``grace`` seconds are theirs to
    end on their own. Whatever still runs then is cancelled, the fallback for a task
    that is still waiting when its owner goes."""
    pending = [t for t in tasks if t is not None]
    if not pending:
        return
    # shield: a cancel of the caller must not leave the tasks un-awaited
    gathered = asyncio.gather(*pending, return_exceptions=True)
    try:
        if grace > 0:
            await asyncio.wait([gathered], timeout=grace)
        for task in pending:
            task.cancel()
        results = await asyncio.shield(gathered)
    except asyncio.CancelledError:
        for task in pending:
            task.cancel()
        await gathered
        raise
    for task, result in zip(pending, results, strict=True):
        if isinstance(result, Exception):
            log.debug("%s ended with %r", task.get_name(), result)


async def run_to_end(*steps: Callable[[], Awaitable[Any]]) -> None:
    """Run shutdown ``steps`` in order, each to its end even when the caller is
    cancelled meanwhile (an app tearing its workers down), then re-raise that
    cancellation: a cancel must not skip the steps after the one it interrupted (closing
    the tools' log files, the speaker, the history)."""
    cancelled = False
    for step in steps:
        task = asyncio.ensure_future(step())
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                cancelled = True
        if not task.cancelled() and task.exception() is not None:
            log.warning("a shutdown step failed", exc_info=task.exception())
    if cancelled:
        raise asyncio.CancelledError
