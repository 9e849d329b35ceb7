"""The threads that run the API's blocking work (the store, the views) for the event loop.

Every request hops to one of these once, so the hop is kept cheap: a job is a tuple on a
``SimpleQueue`` and its answer goes straight to the awaiting asyncio future with
``call_soon_threadsafe``. ``loop.run_in_executor`` with a ``ThreadPoolExecutor`` does the same
through a ``concurrent.futures.Future`` (a condition, locks, a semaphore, chained callbacks) and
costs the event loop, which is the API's busiest thread, several times more per hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class Workers:
    """``size`` daemon threads, started on first use; ``shutdown`` cancels what has not started."""

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.name = name
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        if not self._threads:
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, work, args))
        return await future

    def _start(self) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the API's worker threads are shut down")
            while len(self._threads) < self.size:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, future, work, args = job
            del job
            if future.cancelled():  # the request went away before its work started
                continue
            result, error = None, None
            try:
                result = work(*args)
            except BaseException as raised:  # noqa: BLE001 - re-raised in the awaiting request
                error = raised
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, future, result, error)
            del loop, future, work, args, result, error

    def shutdown(self) -> None:
        """Cancel the jobs still queued and let the threads finish the ones they are running."""
        with self._lock:
            self._closed = True
            threads, self._threads = self._threads, []
        while True:
            try:
                job = self._jobs.get_nowait()
            except Empty:
                break
            if job is not None:
                loop, future = job[0], job[1]
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(future.cancel)
        for _ in threads:
            self._jobs.put(None)
