"""Self-test of the server harness in tests/conftest.py and tests/servers.py."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import nats
import psycopg
import pytest
from nats.js.api import AccountInfo, StorageType

from tests.servers import NatsServer, port_answers, unique_name

_seen_pg_urls: set[str] = set()


@pytest.mark.parametrize("run", [1, 2])
def test_pg_url_is_a_fresh_distinct_database(pg_url: str, pg_server_url: str, run: int) -> None:
    dbname = urlsplit(pg_url).path.lstrip("/")
    assert dbname.startswith("janus_t_")
    assert pg_url not in _seen_pg_urls
    _seen_pg_urls.add(pg_url)
    with psycopg.connect(pg_url, connect_timeout=5) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (dbname,)
        # A reused database would already hold the table the other run created.
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchone() == (0,)
        conn.execute("CREATE TABLE marker (run int)")
    with psycopg.connect(pg_server_url, connect_timeout=5) as admin:
        found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
        assert found.fetchone() == (1,)


def test_nats_url_has_jetstream(nats_url: str) -> None:
    async def account_info() -> AccountInfo:
        nc = await nats.connect(nats_url, connect_timeout=5, allow_reconnect=False)
        try:
            return await nc.jetstream().account_info()
        finally:
            await nc.close()

    assert isinstance(asyncio.run(account_info()), AccountInfo)


async def _publish(url: str, stream: str, payloads: list[bytes]) -> None:
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream}.>"], storage=StorageType.FILE)
        for payload in payloads:
            await js.publish(f"{stream}.evt", payload)
    finally:
        await nc.close()


async def _stored(url: str, stream: str) -> list[bytes]:
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    try:
        js = nc.jetstream()
        count = (await js.stream_info(stream)).state.messages
        return [(await js.get_msg(stream, seq)).data or b"" for seq in range(1, count + 1)]
    finally:
        await nc.close()


def test_nats_server_control_restart_keeps_file_stream(nats_server_control: NatsServer) -> None:
    server = nats_server_control
    stream = unique_name("harness")
    payloads = [b"one", b"two", b"three"]
    asyncio.run(_publish(server.url, stream, payloads))
    url_before = server.url

    server.stop()
    assert not port_answers(server.host, server.port)
    server.start()

    assert server.url == url_before
    assert asyncio.run(_stored(server.url, stream)) == payloads


def test_nats_server_control_kill_then_start(nats_server_control: NatsServer) -> None:
    server = nats_server_control
    server.kill()
    assert not server.running
    assert not port_answers(server.host, server.port)
    server.start()
    assert server.running
    assert port_answers(server.host, server.port)
