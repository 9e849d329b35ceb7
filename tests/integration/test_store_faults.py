"""Faults of the Postgres store, as callers meet them: a stuck writer, a store that is down, a
read-only database, and how many connections one CLI call opens.

Each failure must come within about JANUS_LOCK_TIMEOUT_SECONDS (1 s here; asserted loosely at
under 3x), as one error naming its cause, never the pool's "couldn't get a connection".
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from typer.testing import CliRunner

from bootstrap.container import Janus
from bootstrap.settings import Settings
from cli.main import app as cli_app
from commands import models as m
from commands.errors import StoreUnavailable
from commands.invocation import Invocation
from domain.meta import Actor, ActorKind
from event_store.faults import StoreFault
from tests.servers import EmbeddedPostgres, free_port, wait_until
from tests.support.api import is_problem, serve_api

LOCK_TIMEOUT = 1
BOUND = 3 * LOCK_TIMEOUT
ALICE = Invocation(Actor(ActorKind.USER, "alice"))


def _elapsed(call: Callable[[], object]) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        call()
    except Exception as error:  # noqa: BLE001 - the test inspects whatever came out
        return time.monotonic() - started, error
    return time.monotonic() - started, None


def _elapsed_response(call: Callable[[], httpx.Response]) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    answer = call()
    return time.monotonic() - started, answer


@pytest.fixture
def pg_janus(pg_url: str, tmp_path: Path) -> Iterator[Janus]:
    settings = Settings(home=tmp_path, database_url=pg_url, lock_timeout_seconds=LOCK_TIMEOUT)
    janus = Janus.build(settings)
    try:
        yield janus
    finally:
        janus.close()


@pytest.fixture
def stuck_writer(pg_janus: Janus, pg_url: str) -> Iterator[None]:
    pg_janus.commands.submit_goal(m.SubmitGoal(text="before the stuck writer"), ALICE)
    with psycopg.connect(pg_url) as blocker:
        blocker.execute("LOCK TABLE janus_events IN ACCESS EXCLUSIVE MODE")
        yield
        blocker.rollback()


def test_a_stuck_writer_fails_every_store_call_within_the_lock_timeout(
    pg_janus: Janus, stuck_writer: None
) -> None:
    calls: dict[str, Callable[[], object]] = {
        "submit": lambda: pg_janus.commands.submit_goal(m.SubmitGoal(text="blocked"), ALICE),
        "start-up": lambda: Janus.build(pg_janus.settings).close(),
        "head": pg_janus.reader.head,
        "read": lambda: pg_janus.reader.read_after(0, limit=10),
        "catch up": pg_janus.relational.catch_up,
    }
    for name, call in calls.items():
        took, error = _elapsed(call)
        assert error is not None, f"{name} did not fail while the table was locked"
        assert "lock timeout" in str(error), f"{name}: {error}"
        assert took < BOUND, f"{name} took {took:.1f}s"


def test_writers_queued_behind_a_stuck_lock_all_fail_within_the_bound(
    pg_janus: Janus, stuck_writer: None
) -> None:
    def submit(i: int) -> tuple[float, BaseException | None]:
        return _elapsed(
            lambda: pg_janus.commands.submit_goal(m.SubmitGoal(text=f"queued {i}"), ALICE)
        )

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(submit, range(16)))
    assert all(isinstance(error, StoreUnavailable) for _, error in results), results
    assert max(took for took, _ in results) < BOUND, results


def test_the_store_is_usable_again_once_the_stuck_writer_ends(pg_janus: Janus, pg_url: str) -> None:
    with psycopg.connect(pg_url) as blocker:
        blocker.execute("LOCK TABLE janus_events IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(StoreUnavailable, match="lock timeout"):
            pg_janus.commands.submit_goal(m.SubmitGoal(text="blocked"), ALICE)
    accepted = pg_janus.commands.submit_goal(m.SubmitGoal(text="after"), ALICE)
    assert accepted.position == pg_janus.app.head()


def _url(pg_url: str, **parts: str) -> str:
    split = urlsplit(pg_url)
    netloc = parts.get("netloc", split.netloc)
    return split._replace(netloc=netloc, path=parts.get("path", split.path)).geturl()


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        ({"netloc": "postgres@127.0.0.1:{port}"}, "connection refused"),
        ({"path": "/janus_no_such_db"}, "no such database"),
        ({"netloc": "no_such_role_janus@{host}"}, "authentication failed"),
    ],
)
def test_start_up_names_why_the_store_is_unavailable_quickly(
    pg_url: str, tmp_path: Path, change: dict[str, str], cause: str
) -> None:
    host = urlsplit(pg_url).netloc.rsplit("@", 1)[-1]
    parts = {k: v.format(port=free_port(), host=host) for k, v in change.items()}
    settings = Settings(home=tmp_path, database_url=_url(pg_url, **parts), lock_timeout_seconds=1)
    took, error = _elapsed(lambda: Janus.build(settings))
    assert isinstance(error, StoreUnavailable)
    assert cause in str(error) and "couldn't get a connection" not in str(error)
    assert took < BOUND + settings.connect_timeout_seconds


def test_a_cli_call_opens_at_most_two_connections(pg_url: str, tmp_path: Path) -> None:
    def sessions() -> int:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
        assert row is not None
        return int(row[0])

    env = {**os.environ, "JANUS_DATABASE_URL": pg_url, "JANUS_HOME": str(tmp_path)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    cli = [sys.executable, "-c", "from cli.main import main; main()"]
    subprocess.run([*cli, "goals", "list"], env=env, check=True, capture_output=True)  # schema
    before = sessions()
    done = subprocess.run(
        [*cli, "goals", "submit", "count my connections"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    opened = sessions() - before - 1  # the probe's own session
    assert opened <= 2, f"one CLI call opened {opened} connections"


def _grant_path_janus(url: str, home: Path) -> Janus:
    return Janus.build(Settings(home=home, database_url=url, lock_timeout_seconds=LOCK_TIMEOUT))


def test_a_read_only_database_is_a_named_store_error(pg_url: str, tmp_path: Path) -> None:
    janus = _grant_path_janus(pg_url, tmp_path)
    try:
        dbname = urlsplit(pg_url).path.lstrip("/")
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = on')
            # Pooled sessions keep their setting: end them so the next ones read it.
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        try:
            with pytest.raises(StoreUnavailable, match="read-only database"):
                janus.commands.submit_goal(m.SubmitGoal(text="refused"), ALICE)
        finally:
            with psycopg.connect(pg_url, autocommit=True) as admin:
                admin.execute("SET default_transaction_read_only = off")
                admin.execute(f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = off')
    finally:
        janus.close()


@pytest.fixture
def own_server() -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres() as server:
        yield server


def test_while_postgres_is_down_calls_fail_fast_and_recover_after(
    own_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    janus = _grant_path_janus(own_server.url, tmp_path)
    try:
        janus.commands.submit_goal(m.SubmitGoal(text="before"), ALICE)
        own_server.stop()
        first, error = _elapsed(janus.reader.head)
        assert isinstance(error, StoreFault) and error.cause == "connection refused", error
        assert first < BOUND + janus.settings.connect_timeout_seconds
        later = [_elapsed(janus.reader.head) for _ in range(5)]
        assert all(isinstance(e, StoreFault) for _, e in later)
        assert max(took for took, _ in later) < 0.5, later
        own_server.restart()
        wait_until(lambda: _elapsed(janus.reader.head)[1] is None, 15, message="recovery")
        janus.commands.submit_goal(m.SubmitGoal(text="after"), ALICE)
    finally:
        janus.close()


# -- the same faults through the API and the CLI ----------------------------------------------


def test_api_requests_answer_503_naming_a_stuck_writer_within_the_bound(
    pg_janus: Janus, pg_url: str
) -> None:
    with serve_api(pg_janus) as api, psycopg.connect(pg_url) as blocker:
        blocker.execute("LOCK TABLE janus_events IN ACCESS EXCLUSIVE MODE")
        took, answer = _elapsed_response(lambda: api.post("/v1/goals", json={"text": "stuck"}))
        blocker.rollback()
    assert is_problem(answer, 503, "store-unavailable"), answer.text
    assert "lock timeout" in answer.json()["detail"]
    assert took < BOUND


def test_api_requests_fail_fast_while_postgres_is_down(
    own_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    janus = _grant_path_janus(own_server.url, tmp_path)
    try:
        with serve_api(janus) as api:
            own_server.stop()
            answers = [_elapsed_response(lambda: api.get("/v1/goals")) for _ in range(6)]
            for _, answer in answers:
                assert is_problem(answer, 503, "store-unavailable"), answer.text
                assert "connection refused" in answer.json()["detail"]
            first, later = answers[0][0], [took for took, _ in answers[1:]]
            assert first < BOUND + janus.settings.connect_timeout_seconds
            assert max(later) < 1.0, later
            ready = api.client.get("/readyz")
            assert ready.status_code == 503
            (store,) = [c for c in ready.json()["checks"] if c["name"] == "store"]
            assert store["detail"] == "unavailable: connection refused"
    finally:
        janus.close()


def test_a_cli_call_against_a_stuck_writer_is_one_line_naming_it(
    pg_janus: Janus, stuck_writer: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pg_janus.settings.database_url is not None
    monkeypatch.setenv("JANUS_DATABASE_URL", pg_janus.settings.database_url)
    monkeypatch.setenv("JANUS_HOME", str(pg_janus.settings.home))
    monkeypatch.setenv("JANUS_LOCK_TIMEOUT_SECONDS", str(LOCK_TIMEOUT))
    started = time.monotonic()
    result = CliRunner().invoke(cli_app, ["goals", "submit", "stuck"])
    took = time.monotonic() - started
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "lock timeout" in lines[0], result.stderr
    assert took < BOUND
