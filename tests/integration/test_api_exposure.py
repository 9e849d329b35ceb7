"""What the API exposes beyond its callers' rights: to web pages (DNS rebinding, cross-site
writes), to a revoked key's open stream, to one viewer holding every stream."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from sqlalchemy import update

from api.settings import ApiSettings
from bootstrap.container import Janus
from commands.keys import RevokeApiKey
from domain.api_key import Role
from projections.runner import projection_positions
from tests.servers import wait_until
from tests.support.api import ADMIN_CLI, Api, is_problem, serve_api, view_status

STREAM_SETTINGS = ApiSettings(
    read_wait_seconds=10, key_cache_seconds=0.2, sse_poll_seconds=0.05, sse_max_streams_per_key=2
)


@pytest.fixture
def api(janus: Janus) -> Iterator[Api]:
    with serve_api(janus, STREAM_SETTINGS) as served:
        yield served


# -- DNS rebinding and cross-site writes ---------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.nip.io"])
def test_a_request_naming_a_foreign_host_is_refused_before_any_route_runs(
    api: Api, janus: Janus, host: str
) -> None:
    head = janus.app.head()
    read = api.get("/v1/goals", headers={"Host": host})
    write = api.post("/v1/goals", json={"text": "rebound"}, headers={"Host": host})
    assert is_problem(read, 400, "host-not-allowed")
    assert is_problem(write, 400, "host-not-allowed")
    assert janus.app.head() == head


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST"])
def test_loopback_host_names_are_served(api: Api, host: str) -> None:
    assert api.get("/v1/goals", headers={"Host": host}).status_code == 200


def test_configured_host_names_are_served_and_the_rest_still_refused(janus: Janus) -> None:
    settings = ApiSettings(allowed_hosts="janus.internal,*.example.com")
    with serve_api(janus, settings) as api:
        assert api.get("/v1/goals", headers={"Host": "janus.internal:8000"}).status_code == 200
        assert api.get("/v1/goals", headers={"Host": "api.example.com"}).status_code == 200
        assert is_problem(api.get("/v1/goals", headers={"Host": "localhost"}), 400)
    assert "10.1.2.3" in ApiSettings(host="10.1.2.3").host_names()  # the address bound
    assert "0.0.0.0" not in ApiSettings(host="0.0.0.0").host_names()


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost:1"},  # another port is another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_a_cross_origin_write_is_refused_and_records_nothing(
    api: Api, janus: Janus, headers: dict[str, str]
) -> None:
    head = janus.app.head()
    submitted = api.post("/v1/goals", json={"text": "from a web page"}, headers=headers)
    assert is_problem(submitted, 403, "cross-origin")
    assert is_problem(api.delete(f"/v1/goals/{'0' * 32}", headers=headers), 403, "cross-origin")
    assert janus.app.head() == head
    assert api.get("/v1/goals", headers=headers).status_code == 200  # reads are not writes


def test_same_origin_and_non_browser_writes_pass(api: Api) -> None:
    own = {"Origin": api.url, "Sec-Fetch-Site": "same-origin"}
    assert api.post("/v1/goals", json={"text": "same origin"}, headers=own).status_code == 202
    assert api.post("/v1/goals", json={"text": "curl"}).status_code == 202


def test_a_configured_origin_may_write(janus: Janus) -> None:
    settings = ApiSettings(allowed_origins="https://console.example")
    with serve_api(janus, settings) as api:
        headers = {"Origin": "https://console.example", "Sec-Fetch-Site": "cross-site"}
        assert api.post("/v1/goals", json={"text": "console"}, headers=headers).status_code == 202


# -- event streams -------------------------------------------------------------------------------


def test_an_open_stream_ends_soon_after_its_key_is_revoked_elsewhere(api: Api) -> None:
    name, token = api.new_key(Role.VIEWER)
    api.submit_goal("before the revocation")
    headers = {"Authorization": f"Bearer {token}"}
    # If the server never ended the stream, the read timeout would fail the test.
    with httpx.Client(base_url=api.url, timeout=httpx.Timeout(10.0)) as client:
        with client.stream("GET", "/v1/events/stream?after=0", headers=headers) as stream:
            lines = stream.iter_lines()
            assert next(line for line in lines if line.startswith("id:"))
            api.keys.revoke_key(RevokeApiKey(key_id=api.keys.find(name).id), ADMIN_CLI)
            revoked_at = time.monotonic()
            for _ in lines:
                pass
            assert time.monotonic() - revoked_at < 5
        assert is_problem(client.get("/v1/events/stream", headers=headers), 401)


def test_one_key_cannot_hold_more_streams_than_its_cap(api: Api) -> None:
    _, token = api.new_key(Role.VIEWER)
    mine = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api.url, timeout=10) as client:
        with (
            client.stream("GET", "/v1/events/stream?after=0", headers=mine) as first,
            client.stream("GET", "/v1/events/stream?after=0", headers=mine) as second,
        ):
            assert (first.status_code, second.status_code) == (200, 200)
            third = client.get("/v1/events/stream", headers=mine)
            assert is_problem(third, 429, "too-many-streams")
            assert third.headers["retry-after"]
            others = api.get("/v1/events/stream?follow=false")  # another key has its own slots
            assert others.status_code == 200
        # Closed streams give their slots back.
        wait_until(
            lambda: client.get("/v1/events/stream?follow=false", headers=mine).status_code == 200,
            timeout=5,
            message="the closed streams' slots to come back",
        )


# -- what a stalled view and a failing store show -------------------------------------------------

SQL_ERROR = (
    "DataError: (psycopg.errors.StringDataRightTruncation) value too long for type character "
    "varying(100) [SQL: INSERT INTO audit (position, command_id) VALUES (%(position)s, "
    "%(command_id)s)]"
)


def _stall_the_view(janus: Janus, position: int) -> None:
    with janus.views_engine.begin() as conn:
        conn.execute(
            update(projection_positions)
            .where(projection_positions.c.name == janus.relational.name)
            .values(state="stalled", error=SQL_ERROR, error_position=position)
        )


def test_a_stalled_view_shows_viewers_an_error_id_and_operators_the_details(
    api: Api, janus: Janus
) -> None:
    goal = api.submit_goal("stall me")
    _stall_the_view(janus, goal["position"])
    ident = hashlib.sha256(SQL_ERROR.encode()).hexdigest()[:12]

    seen = view_status(api.get("/v1/projections", role=Role.VIEWER).json(), "relational")
    assert seen["state"] == "stalled"
    assert "INSERT" not in seen["error"] and "audit" not in seen["error"]
    assert seen["error"] == f"DataError (error id {ident})"
    full = view_status(api.get("/v1/projections", role=Role.OPERATOR).json(), "relational")
    assert full["error"] == SQL_ERROR

    refused = api.get("/v1/goals", params={"min_position": goal["position"]})
    assert is_problem(refused, 503, "view-stalled")
    detail = refused.json()["detail"]
    assert ident in detail and str(goal["position"]) in detail
    assert "INSERT" not in refused.text and "varying" not in refused.text


def test_a_read_only_database_answers_a_write_with_a_503_naming_it(api: Api, janus: Janus) -> None:
    pg_url = janus.settings.database_url
    if pg_url is None:
        pytest.skip("a read-only database is a Postgres state")
    dbname = urlsplit(pg_url).path.lstrip("/")
    head = janus.app.head()
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = on')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    try:
        refused = api.post("/v1/goals", json={"text": "refused"}, headers={"Idempotency-Key": "k1"})
        assert is_problem(refused, 503), refused.text
        assert "read-only database" in refused.json()["detail"]
        assert "INSERT" not in refused.text
    finally:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SET default_transaction_read_only = off")
            admin.execute(f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = off')
    assert janus.app.head() == head
