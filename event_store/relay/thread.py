"""A relay on its own event loop in a daemon thread: for tests and all-in-one processes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

from event_store.relay.loop import Relay


class RelayThread:
    """A relay on its own event loop in a daemon thread: for tests and all-in-one processes."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="relay", daemon=True)

    def start(self) -> RelayThread:
        self._thread.start()
        self._started.wait()
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as error:  # noqa: BLE001 - kept for the owner thread to re-raise
            self.error = error
            self._started.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        await self.relay.run(self._stop, on_ready=self.ready.set)

    def wait_ready(self, timeout: float = 30.0) -> None:
        if not self.ready.wait(timeout):
            raise TimeoutError(
                f"relay not ready in {timeout}s (last error: {self.relay.last_error})"
            )

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"relay did not stop in {timeout}s")
        if self.error is not None:
            raise self.error

    def call(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        """Run a coroutine on the relay's loop (tests poke at the live relay this way)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)
