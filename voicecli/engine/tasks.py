"""Waiting for the engine's own tasks at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


async def reap(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel ``tasks`` and wait for them all, retrieving every exception (so asyncio
    never logs "Task exception was never retrieved"); errors other than cancellation
    are logged. If the caller is cancelled meanwhile, the tasks are still awaited.

    The engine's loops stop by an explicit close first; this is the fallback for a task
    that is still waiting when its owner goes."""
    pending = [t for t in tasks if t is not None]
    for task in pending:
        task.cancel()
    if not pending:
        return
    # shield: a second cancel of the caller must not leave the tasks un-awaited
    gathered = asyncio.gather(*pending, return_exceptions=True)
    try:
        results = await asyncio.shield(gathered)
    except asyncio.CancelledError:
        await gathered
        raise
    for task, result in zip(pending, results, strict=True):
        if isinstance(result, Exception):
            log.debug("%s ended with %r", task.get_name(), result)
