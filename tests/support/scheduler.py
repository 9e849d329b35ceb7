"""Running the executor beside a scheduler under test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from bootstrap.container import Janus


@contextmanager
def executor_running(janus: Janus) -> Iterator[None]:
    """The executor of a running Janus, in a thread: it runs every granted action."""
    stop = threading.Event()
    executor = janus.executor()

    def loop() -> None:
        while not stop.is_set():
            if executor.run_once() == 0:
                stop.wait(0.05)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
