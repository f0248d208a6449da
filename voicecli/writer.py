"""One ordered writer thread for disk I/O, so the event loop never waits for a disk."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_STOP = object()


class DiskWriter:
    """One daemon thread that runs disk jobs in submission order."""

    def __init__(self, name: str = "voicecli-writer") -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False  # the thread starts with the first job

    def submit(
        self,
        job: Callable[[], T],
        on_done: Callable[[T | BaseException], None] | None = None,
    ) -> None:
        """Queue ``job``; ``on_done`` (if given) runs on the event loop that called
        submit (``call_soon_threadsafe``) with the job's result or the exception it
        raised. Never blocks. After :meth:`close` the job runs at once, here."""
        loop: asyncio.AbstractEventLoop | None = None
        if on_done is not None:
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
        with self._lock:
            if not self._closed:
                if not self._started:
                    self._started = True
                    self._thread.start()
                self._jobs.put((job, on_done, loop))
                return
        _finish(job, on_done, None)

    async def drain(self) -> None:
        """Until every job submitted so far has run."""
        done = asyncio.get_running_loop().create_future()

        def mark(_: object) -> None:
            if not done.done():
                done.set_result(None)

        self.submit(lambda: None, mark)
        await done

    def close(self) -> None:
        """Finish the queued jobs and stop the thread (idempotent; blocks)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if not self._started:
                return
            self._jobs.put(_STOP)
        if self._thread is not threading.current_thread():
            self._thread.join()

    async def aclose(self) -> None:
        """:meth:`close` off the loop."""
        await asyncio.to_thread(self.close)

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is _STOP:
                return
            job, on_done, loop = item
            _finish(job, on_done, loop)


def _finish(
    job: Callable[[], Any],
    on_done: Callable[[Any], None] | None,
    loop: asyncio.AbstractEventLoop | None,
) -> None:
    result: Any
    try:
        result = job()
    except BaseException as exc:  # handed to on_done, never lost
        result = exc
    if on_done is None:
        return
    if loop is None:
        on_done(result)
        return
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
        loop.call_soon_threadsafe(on_done, result)


__all__ = ["DiskWriter"]
