"""Leadership locks: one active executor, scheduler or relay per log.

Both implementations are released by the operating system when the holder dies, so a SIGKILLed
leader never blocks its successor.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path

import psycopg


class LeaderLock(ABC):
    @abstractmethod
    def try_acquire(self) -> bool:
        """Take the lock if free; never blocks."""

    @abstractmethod
    def release(self) -> None: ...

    @property
    @abstractmethod
    def held(self) -> bool: ...

    def acquire(self, timeout: float, stop: threading.Event | None = None) -> bool:
        stop = stop or threading.Event()
        deadline = time.monotonic() + timeout
        while not self.try_acquire():
            if time.monotonic() >= deadline or stop.wait(0.2):
                return False
        return True


class FileLeaderLock(LeaderLock):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


class PostgresLeaderLock(LeaderLock):
    """A session-level advisory lock on a dedicated connection."""

    def __init__(self, conninfo: str, name: str, connect_timeout: int = 3) -> None:
        self._conninfo = conninfo
        self._key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        self._connect_timeout = connect_timeout
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def try_acquire(self) -> bool:
        if self._conn is not None and not self._conn.closed:
            return True
        conn = psycopg.connect(
            self._conninfo, autocommit=True, connect_timeout=self._connect_timeout
        )
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
        if not row or not row[0]:
            conn.close()
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # closing the session releases the lock
            self._conn = None

    @property
    def held(self) -> bool:
        if self._conn is None or self._conn.closed:
            return False
        try:
            self._conn.execute("SELECT 1")
        except psycopg.OperationalError:
            self._conn = None
            return False
        return True
