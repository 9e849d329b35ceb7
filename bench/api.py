"""HTTP API benchmark: goal submissions over HTTP against direct command-service calls, and the
time from process start to serving the pending confirmations of a large log.

    .venv/bin/python -m bench.api [--goals N] [--clients 16] [--events 1000000]
                                  [--pending 10000] [--skip-throughput] [--skip-startup] [--json]

Throughput: one run, one throwaway Postgres database. ``direct`` is ``submit_goal`` called by
``--clients`` threads in this process; ``http`` is ``POST /v1/goals`` from as many concurrent
keep-alive connections on loopback to ``python -m api`` (uvicorn, API only, API keys on), sent by
a small asyncio client so the client costs little CPU. Each pair runs without and with an
Idempotency-Key. Target: http / direct >= 0.5.

Start-up: a second database holding ``--pending`` pending confirmations (goal, decision,
request each) and filler goals up to ``--events`` events, views caught up; then ``python -m api``
with its in-process runtime is started three times and timed from spawn to the first 200 from
GET /v1/confirmations?status=pending. Target: under 2 s (start-up must not replay the log).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
from rich.console import Console
from rich.table import Table

from bench.append import (
    ENV_DATABASE_URL,
    GOAL_TEXT,
    LOCAL_SERVER_URL,
    server_settings,
    throwaway_database,
)
from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands import models as m
from commands.invocation import Invocation
from commands.keys import CreateApiKey, KeyService
from domain.api_key import Role
from domain.confirmation import HazardClass
from domain.goal import Goal
from domain.meta import Actor, ActorKind, CommandContext

CLIENTS = 16
DEFAULT_GOALS = 5_000
DEFAULT_EVENTS = 1_000_000
DEFAULT_PENDING = 10_000
RATIO_TARGET = 0.5
STARTUP_TARGET_SECONDS = 2.0
STARTUP_RUNS = 3
FILLER_BATCH = 2_000
READY = re.compile(r"janus api ready on http://([\d.]+):(\d+)")
ACTOR = Actor(ActorKind.USER, "bench", role="operator")
BODY = json.dumps({"text": GOAL_TEXT}).encode()


@dataclass(frozen=True)
class Result:
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


def summarize(workload: str, clients: int, seconds: float, latencies: list[float]) -> Result:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return Result(workload, clients, len(latencies), seconds, cuts[49] * 1e3, cuts[98] * 1e3)


# -- direct ----------------------------------------------------------------------------------------


def direct(janus: Janus, operations: int, clients: int, keyed: bool) -> tuple[float, list[float]]:
    shares = [operations // clients + (i < operations % clients) for i in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    command = m.SubmitGoal(text=GOAL_TEXT)

    def client(index: int) -> None:
        start.wait()
        for _ in range(shares[index]):
            inv = Invocation(ACTOR, idempotency_key=f"direct:{uuid4()}" if keyed else None)
            began = time.perf_counter()
            janus.commands.submit_goal(command, inv)
            latencies[index].append(time.perf_counter() - began)

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client, i) for i in range(clients)]
        start.wait()
        began = time.perf_counter()
        for future in futures:
            future.result()
        seconds = time.perf_counter() - began
    return seconds, [t for per_client in latencies for t in per_client]


# -- http ------------------------------------------------------------------------------------------


def request_bytes(host: str, port: int, token: str, key: str | None) -> bytes:
    lines = [
        "POST /v1/goals HTTP/1.1",
        f"Host: {host}:{port}",
        f"Authorization: Bearer {token}",
        "Content-Type: application/json",
        f"Content-Length: {len(BODY)}",
    ]
    if key is not None:
        lines.append(f"Idempotency-Key: {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + BODY


async def _connection(
    host: str, port: int, token: str, count: int, keyed: bool, latencies: list[float]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    fixed = request_bytes(host, port, token, None)
    try:
        for _ in range(count):
            payload = request_bytes(host, port, token, uuid4().hex) if keyed else fixed
            began = time.perf_counter()
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - began)
            if head[9:12] != b"202":
                raise RuntimeError(f"POST /v1/goals answered {head[:12]!r}")
    finally:
        writer.close()


def http(
    host: str, port: int, token: str, operations: int, clients: int, keyed: bool
) -> tuple[float, list[float]]:
    shares = [operations // clients + (i < operations % clients) for i in range(clients)]
    latencies: list[float] = []

    async def everyone() -> float:
        began = time.perf_counter()
        await asyncio.gather(*(_connection(host, port, token, n, keyed, latencies) for n in shares))
        return time.perf_counter() - began

    return asyncio.run(everyone()), latencies


# -- the API process -------------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[str]
    host: str
    port: int
    spawned: float
    ready_line_at: float

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)


def spawn_api(database_url: str, home: Path, runtime: str, log: Path) -> Server:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JANUS_")}
    env.update(
        {
            "JANUS_HOME": str(home),
            "JANUS_DATABASE_URL": database_url,
            "JANUS_API_PORT": "0",
            "JANUS_API_AUTH": "keys",
            "JANUS_API_RUNTIME": runtime,
        }
    )
    spawned = time.perf_counter()
    with log.open("a") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
        )
    assert proc.stdout is not None
    for line in proc.stdout:
        found = READY.search(line)
        if found:
            server = Server(proc, found.group(1), int(found.group(2)), spawned, time.perf_counter())
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe empty
            return server
    raise RuntimeError(f"the API exited before it was ready; see {log}")


# -- throughput ------------------------------------------------------------------------------------


def operator_token(janus: Janus) -> str:
    keys = KeyService(janus.commands.runner)
    name = f"bench-{uuid4().hex[:8]}"
    admin = Invocation(Actor(ActorKind.USER, "bench", role="admin"))
    return keys.create_key(CreateApiKey(name=name, role=Role.OPERATOR), admin).token


def bench_throughput(server_url: str, goals: int, clients: int, console: Console) -> list[Result]:
    results: list[Result] = []
    with throwaway_database(server_url) as url, tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        janus = Janus.build(Settings(home=home / "direct", database_url=url))
        server = spawn_api(url, home / "api", "off", home / "api.log")
        try:
            token = operator_token(janus)
            for keyed in (False, True):
                label = " + Idempotency-Key" if keyed else ""
                warm = max(clients * 20, goals // 10)
                console.log(f"direct submit_goal{label}, {clients} threads")
                direct(janus, warm, clients, keyed)
                seconds, latencies = direct(janus, goals, clients, keyed)
                results.append(summarize(f"direct submit_goal{label}", clients, seconds, latencies))
                console.log(f"http POST /v1/goals{label}, {clients} connections")
                http(server.host, server.port, token, warm, clients, keyed)
                seconds, latencies = http(server.host, server.port, token, goals, clients, keyed)
                name = f"http POST /v1/goals{label}"
                results.append(summarize(name, clients, seconds, latencies))
        finally:
            server.stop()
            janus.close()
    return results


# -- start-up --------------------------------------------------------------------------------------


@dataclass
class Startup:
    events: int
    pending: int
    populate_seconds: float
    project_seconds: float
    ready_line_seconds: list[float] = field(default_factory=list)
    serving_seconds: list[float] = field(default_factory=list)
    first_page_items: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "serving_median": round(statistics.median(self.serving_seconds), 3),
            "target_seconds": STARTUP_TARGET_SECONDS,
        }


def populate(janus: Janus, events: int, pending: int, console: Console) -> None:
    agent = Invocation(Actor(ActorKind.AGENT, "bench"))

    def confirmation(_: int) -> None:
        goal = janus.commands.submit_goal(m.SubmitGoal(text=GOAL_TEXT), agent)
        action = m.Action(name="unlock_door", parameters={"door": "front"})
        decision = janus.commands.record_decision(
            m.RecordDecision(
                goal_id=goal.aggregate_id,
                model="scripted",
                prompt="unlock?",
                raw_output="{}",
                action=action,
            ),
            agent,
        )
        janus.commands.request_confirmation(
            m.RequestConfirmation(
                goal_id=goal.aggregate_id,
                decision_id=decision.aggregate_id,
                action=action,
                hazard=HazardClass.HIGH,
                ttl_seconds=30 * 24 * 3600,
            ),
            agent,
        )

    console.log(f"{pending:,} pending confirmations (3 events each)")
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(confirmation, range(pending)))
    filler = events - janus.app.head()
    console.log(f"{filler:,} filler goals, {FILLER_BATCH:,} per transaction")
    while (left := events - janus.app.head()) > 0:
        batch = []
        for _ in range(min(FILLER_BATCH, left)):
            goal_id = uuid4()
            ctx = CommandContext(
                command_id=str(goal_id),
                correlation_id=str(goal_id),
                causation_id=str(goal_id),
                actor=agent.actor,
                node_id="bench",
            )
            batch.append(Goal.submit(goal_id, GOAL_TEXT, str(agent.actor), 5, ctx))
        janus.app.save(*batch)


def first_200(host: str, port: int, token: str, deadline: float) -> tuple[float, int]:
    """Poll until GET /v1/confirmations?status=pending answers 200; (when, items on page)."""
    url = f"http://{host}:{port}/v1/confirmations"
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=5) as client:
        while time.perf_counter() < deadline:
            try:
                response = client.get(url, params={"status": "pending"}, headers=headers)
            except httpx.TransportError:
                continue
            if response.status_code == 200:
                return time.perf_counter(), len(response.json()["items"])
    raise TimeoutError("the API did not serve pending confirmations in time")


def spawn_until_serving(url: str, home: Path, token: str) -> tuple[float, float, int]:
    """(seconds to the ready line, seconds to the first 200, items on that page)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JANUS_")}
    env.update(
        {
            "JANUS_HOME": str(home),
            "JANUS_DATABASE_URL": url,
            "JANUS_API_PORT": "0",
            "JANUS_API_AUTH": "keys",
            "JANUS_API_RUNTIME": "on",
        }
    )
    spawned = time.perf_counter()
    with (home / "api.log").open("a") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
        )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if found := READY.search(line):
                ready = time.perf_counter()
                served, items = first_200(found.group(1), int(found.group(2)), token, ready + 60)
                return ready - spawned, served - spawned, items
        raise RuntimeError(f"the API exited before it was ready; see {home / 'api.log'}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)


def bench_startup(server_url: str, events: int, pending: int, console: Console) -> Startup:
    with throwaway_database(server_url) as url, tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        janus = Janus.build(Settings(home=home, database_url=url))
        try:
            began = time.perf_counter()
            populate(janus, events, pending, console)
            populated = time.perf_counter()
            console.log(f"views: catching up {janus.app.head():,} events")
            janus.relational.catch_up(timeout=7_200)
            projected = time.perf_counter()
            token = operator_token(janus)
            janus.relational.catch_up(timeout=60)
            found = len(janus.views.confirmations(status="pending", limit=pending + 1))
            head = janus.app.head()
            console.log(f"log head {head:,}, {found:,} pending in the view")
        finally:
            janus.close()
        report = Startup(head, found, populated - began, projected - populated)
        for run in range(STARTUP_RUNS):
            console.log(f"start-up run {run + 1}/{STARTUP_RUNS}")
            ready, serving, items = spawn_until_serving(url, home, token)
            report.ready_line_seconds.append(round(ready, 3))
            report.serving_seconds.append(round(serving, 3))
            report.first_page_items = items
    return report


# -- the run ---------------------------------------------------------------------------------------


def results_table(results: list[Result]) -> Table:
    table = Table(title=f"Goal submissions, Postgres, {os.cpu_count()} CPUs")
    for column in ("workload", "clients", "ops", "ops/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "workload" else "right")
    for r in results:
        table.add_row(
            r.workload,
            str(r.clients),
            str(r.operations),
            f"{r.per_second:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
        )
    return table


def ratios(results: list[Result]) -> list[dict[str, Any]]:
    found = []
    for i in range(0, len(results) - 1, 2):
        direct_result, http_result = results[i], results[i + 1]
        value = http_result.per_second / direct_result.per_second
        found.append(
            {
                "name": f"{http_result.workload} / {direct_result.workload}",
                "value": round(value, 3),
                "target": RATIO_TARGET,
                "met": value >= RATIO_TARGET,
            }
        )
    return found


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__)
    parser.add_argument("--goals", type=int, default=DEFAULT_GOALS, metavar="N")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    parser.add_argument("--pending", type=int, default=DEFAULT_PENDING)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    if args.events < args.pending * 3:
        parser.error("--events must be at least 3 x --pending")
    return args


def main() -> None:
    args = parse_args()
    progress = Console(stderr=True, quiet=args.json)
    server_url = os.environ.get(ENV_DATABASE_URL) or LOCAL_SERVER_URL
    report: dict[str, Any] = {"bench": "api", "cpus": os.cpu_count()}
    with throwaway_database(server_url) as url:
        report["postgres"] = server_settings(url)
    out = Console(width=max(Console().width, 100), quiet=args.json)
    if not args.skip_throughput:
        results = bench_throughput(server_url, args.goals, args.clients, progress)
        report["results"] = [r.as_json() for r in results]
        report["ratios"] = ratios(results)
        out.print(results_table(results))
        for ratio in report["ratios"]:
            met = "[green]met[/]" if ratio["met"] else "[red]not met[/]"
            out.print(f"{ratio['name']}: {ratio['value']:.2f} (target >= {RATIO_TARGET}) {met}")
    if not args.skip_startup:
        startup = bench_startup(server_url, args.events, args.pending, progress)
        report["startup"] = startup.as_json()
        median = statistics.median(startup.serving_seconds)
        met = "[green]met[/]" if median < STARTUP_TARGET_SECONDS else "[red]not met[/]"
        out.print(
            f"start-up with {startup.events:,} events and {startup.pending:,} pending: ready "
            f"line {startup.ready_line_seconds} s, serving {startup.serving_seconds} s "
            f"(median {median:.2f} s, target < {STARTUP_TARGET_SECONDS} s) {met}"
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
