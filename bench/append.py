"""Append throughput: Janus ``submit_goal`` next to raw single-row psycopg inserts.

    .venv/bin/python -m bench.append [--commands N] [--backend postgres|sqlite|both] [--json]

Every figure comes from one run on one machine, so the ratios compare like with like. Postgres
runs in a throwaway database on the server named by JANUS_DATABASE_URL (default: the local one);
SQLite runs in a temporary JANUS_HOME. Both are removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg import sql
from rich.console import Console
from rich.table import Table

from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands.invocation import Invocation
from commands.models import SubmitGoal
from domain.meta import Actor, ActorKind

ENV_DATABASE_URL = "JANUS_DATABASE_URL"
LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# About a minute for the whole run on a 2-core machine, long enough to average out noise.
DEFAULT_COMMANDS = 20_000
CONCURRENT_CLIENTS = 16
RAW_CONNECTIONS = 4
ONE_CLIENT_TARGET = 0.5
CONCURRENT_TARGET = 1.0
JANUS_WORKLOAD = "janus submit_goal"
RAW_WORKLOAD = "raw insert"
ACTOR = Actor(ActorKind.USER, "bench")
# About what an operator types: a sentence, so the stored event has a realistic size.
GOAL_TEXT = "Reconcile yesterday's door-lock events against the access log and report any gaps."

# Same shape as eventsourcing's stored events table (including its notification_id index), so
# the baseline pays for the same index maintenance as Janus does.
RAW_TABLE = """
CREATE TABLE raw_events (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    notification_id bigserial,
    PRIMARY KEY (originator_id, originator_version)
)
"""
RAW_INDEX = "CREATE UNIQUE INDEX raw_events_notification_id_idx ON raw_events (notification_id)"
# RETURNING: an append must tell its caller the log position, as Janus's does.
RAW_INSERT = (
    "INSERT INTO raw_events (originator_id, originator_version, topic, state)"
    " VALUES (%s, 1, %s, %s) RETURNING notification_id"
)

Op = Callable[[], None]
# A worker opens a thread's own resources (say a connection), yields the operation to time,
# then closes them; opening happens before the clock starts.
Worker = Callable[[], AbstractContextManager[Op]]


@dataclass(frozen=True)
class Result:
    backend: str
    workload: str
    clients: int
    operations: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.operations / self.seconds

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "per_second": round(self.per_second, 1)}


@dataclass(frozen=True)
class Ratio:
    name: str
    janus: Result
    raw: Result
    target: float

    @property
    def value(self) -> float:
        return self.janus.per_second / self.raw.per_second

    @property
    def met(self) -> bool:
        return self.value >= self.target

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": round(self.value, 3), "target": self.target}


# -- measuring -------------------------------------------------------------------------------------


def measure(worker: Worker, operations: int, clients: int) -> tuple[float, list[float]]:
    """Run ``operations`` split over ``clients`` threads; return wall seconds and each latency."""
    shares = [operations // clients + (i < operations % clients) for i in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    finished = [0.0] * clients
    errors: list[Exception] = []
    start = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        try:
            with worker() as op:
                start.wait()
                timings = latencies[index]
                for _ in range(shares[index]):
                    began = time.perf_counter()
                    op()
                    timings.append(time.perf_counter() - began)
                finished[index] = time.perf_counter()
        except Exception as error:  # noqa: BLE001 - re-raised in the main thread below
            errors.append(error)
            start.abort()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return max(finished) - began, [t for timings in latencies for t in timings]


def run(backend: str, workload: str, worker: Worker, operations: int, clients: int) -> Result:
    # Warm up with the same concurrency: fills connection pools, caches and prepared statements.
    measure(worker, max(clients * 4, operations // 10), clients)
    seconds, latencies = measure(worker, operations, clients)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return Result(backend, workload, clients, operations, seconds, cuts[49] * 1e3, cuts[98] * 1e3)


# -- Janus -----------------------------------------------------------------------------------------


@contextmanager
def janus_on(database_url: str | None) -> Iterator[Janus]:
    with tempfile.TemporaryDirectory(prefix="janus_bench_") as home:
        janus = Janus.build(Settings(home=Path(home), database_url=database_url))
        try:
            yield janus
        finally:
            janus.close()


def submit_goal_worker(janus: Janus) -> Worker:
    def submit() -> None:
        janus.commands.submit_goal(SubmitGoal(text=GOAL_TEXT), Invocation(ACTOR))

    return lambda: nullcontext(submit)


def bench_janus(backend: str, janus: Janus, operations: int, console: Console) -> list[Result]:
    results = []
    worker = submit_goal_worker(janus)
    for clients in (1, CONCURRENT_CLIENTS):
        console.log(f"{backend}: Janus submit_goal, {clients} client(s)")
        results.append(run(backend, JANUS_WORKLOAD, worker, operations, clients))
    return results


def stored_goal_event(janus: Janus) -> StoredEvent:
    """A Goal.Submitted row exactly as Janus wrote it: the raw baseline inserts the same bytes."""
    result = janus.commands.submit_goal(SubmitGoal(text=GOAL_TEXT), Invocation(ACTOR))
    return janus.app.recorder.select_events(result.aggregate_id)[0]


# -- raw psycopg -----------------------------------------------------------------------------------


def raw_insert_worker(url: str, row: StoredEvent) -> Worker:
    @contextmanager
    def connection() -> Iterator[Op]:
        with psycopg.connect(url, autocommit=False) as conn:

            def insert() -> None:
                conn.execute(RAW_INSERT, (uuid4(), row.topic, row.state)).fetchone()
                conn.commit()

            yield insert

    return connection


def bench_raw(url: str, row: StoredEvent, operations: int, console: Console) -> list[Result]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RAW_TABLE)
        conn.execute(RAW_INDEX)
    results = []
    worker = raw_insert_worker(url, row)
    for connections in (1, RAW_CONNECTIONS):
        console.log(f"postgres: raw single-row INSERT, {connections} connection(s)")
        results.append(run("postgres", RAW_WORKLOAD, worker, operations, connections))
    return results


# -- databases -------------------------------------------------------------------------------------


def libpq_url(url: str, dbname: str | None = None) -> str:
    """The URL psycopg accepts (Settings also allows postgresql+psycopg), optionally re-aimed."""
    parts = urlsplit(url)._replace(scheme="postgresql")
    return parts._replace(path=f"/{dbname}").geturl() if dbname else parts.geturl()


@contextmanager
def throwaway_database(server_url: str) -> Iterator[str]:
    dbname = f"janus_bench_{uuid4().hex[:12]}"
    admin = libpq_url(server_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    try:
        yield libpq_url(server_url, dbname)
    finally:
        # FORCE: a pool connection Janus failed to return must not keep the database alive.
        with psycopg.connect(admin, autocommit=True) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(dbname)))


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class Report:
    commands: int
    results: list[Result] = field(default_factory=list)
    payload_bytes: int | None = None
    postgres: dict[str, str] = field(default_factory=dict)

    def ratios(self) -> list[Ratio]:
        """Janus on Postgres against the raw baseline it is judged by (when both ran)."""
        postgres = {(r.workload, r.clients): r for r in self.results if r.backend == "postgres"}
        pairs = [
            (1, 1, ONE_CLIENT_TARGET),
            (CONCURRENT_CLIENTS, RAW_CONNECTIONS, CONCURRENT_TARGET),
        ]
        found = []
        for clients, connections, target in pairs:
            janus = postgres.get((JANUS_WORKLOAD, clients))
            raw = postgres.get((RAW_WORKLOAD, connections))
            if janus and raw:
                name = f"Janus {clients} client(s) / raw {connections} connection(s)"
                found.append(Ratio(name, janus, raw, target))
        return found

    def as_json(self) -> dict[str, Any]:
        return {
            "bench": "append",
            "cpus": os.cpu_count(),
            "commands": self.commands,
            "payload_bytes": self.payload_bytes,
            "postgres": self.postgres,
            "results": [r.as_json() for r in self.results],
            "ratios": [r.as_json() for r in self.ratios()],
        }


def server_settings(url: str) -> dict[str, str]:
    """What decides the cost of a commit, so figures from different servers can be told apart."""
    names = ["server_version", "synchronous_commit", "fsync", "wal_sync_method"]
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", [names])
        return {name: setting for name, setting in rows}


def bench_postgres(report: Report, console: Console) -> None:
    server = os.environ.get(ENV_DATABASE_URL) or LOCAL_SERVER_URL
    with throwaway_database(server) as url:
        report.postgres = server_settings(url)
        with janus_on(url) as janus:
            report.results += bench_janus("postgres", janus, report.commands, console)
            row = stored_goal_event(janus)
        report.payload_bytes = len(row.state)
        report.results += bench_raw(url, row, report.commands, console)


def bench_sqlite(report: Report, console: Console) -> None:
    with janus_on(None) as janus:
        report.results += bench_janus("sqlite", janus, report.commands, console)


def results_table(report: Report) -> Table:
    caption = None
    if report.payload_bytes:
        caption = f"{report.payload_bytes} bytes of state per row; {os.cpu_count()} CPUs"
    table = Table(title="Append throughput", caption=caption)
    for column in ("backend", "workload", "clients", "ops", "ops/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column in ("backend", "workload") else "right")
    for r in report.results:
        table.add_row(
            r.backend,
            r.workload,
            str(r.clients),
            str(r.operations),
            f"{r.per_second:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
        )
    return table


def ratios_table(found: list[Ratio]) -> Table:
    table = Table(title="Janus vs raw psycopg (Postgres)")
    for column in ("ratio", "Janus ops/s", "raw ops/s", "value", "target", "met"):
        table.add_column(column, justify="left" if column == "ratio" else "right")
    for ratio in found:
        table.add_row(
            ratio.name,
            f"{ratio.janus.per_second:,.0f}",
            f"{ratio.raw.per_second:,.0f}",
            f"{ratio.value:.2f}",
            f">= {ratio.target:.1f}",
            "[green]yes[/]" if ratio.met else "[red]no[/]",
        )
    return table


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.append", description=__doc__)
    parser.add_argument("--commands", type=int, default=DEFAULT_COMMANDS, metavar="N")
    parser.add_argument("--backend", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    if args.commands < CONCURRENT_CLIENTS:
        parser.error(f"--commands must be at least {CONCURRENT_CLIENTS}")
    return args


def main() -> None:
    args = parse_args()
    report = Report(args.commands)
    progress = Console(stderr=True, quiet=args.json)
    if args.backend in ("postgres", "both"):
        bench_postgres(report, progress)
    if args.backend in ("sqlite", "both"):
        bench_sqlite(report, progress)
    if not args.json:
        # Wide enough that the tables never wrap when stdout is a file or a pipe.
        out = Console(width=max(Console().width, 100))
        out.print(results_table(report))
        if found := report.ratios():
            out.print(ratios_table(found))
    print(json.dumps(report.as_json()))


if __name__ == "__main__":
    main()
