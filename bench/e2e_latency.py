"""End-to-end latency: a command accepted to the moment its effect is visible in the relational
view, through the relay and JetStream, at a steady rate.

    .venv/bin/python -m bench.e2e_latency [--rate 100] [--seconds 30] [--json]

The full-stack path, each hop its own process as in production: this process submits goals
(``submit_goal``, Postgres); ``janus relay`` publishes the log to a fresh JetStream stream;
``janus project relational`` applies it to the views. Commands are sent open-loop at ``--rate``
per second (command i is due at start + i / rate, so a slow one does not thin the load). A
watcher thread reads the view's stored position every millisecond; the position commits in the
same transaction as the view rows, so a command is visible exactly when that position reaches
the command's own. Latency = the first read that sees it - the moment ``submit_goal`` returned.

Raw baseline, same run and rate: a nats-py JetStream publish of a same-size payload until a pull
consumer in another thread has fetched it, the floor of the transport hop alone.

Target: p99 under 100 ms. Postgres is a throwaway database on JANUS_DATABASE_URL's server
(default: the local one), NATS is JANUS_NATS_URL (default nats://127.0.0.1:4222); both cleaned
up at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import nats
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from bench.append import ENV_DATABASE_URL, LOCAL_SERVER_URL, throwaway_database
from bench.relay import ENV_NATS_URL, LOCAL_NATS_URL, streams_deleted
from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands.invocation import Invocation
from commands.models import SubmitGoal
from domain.meta import Actor, ActorKind
from projections.runner import projection_positions

TARGET_P99_MS = 100.0
WATCH_INTERVAL = 0.001
READY_TIMEOUT = 60.0
SETTLE_TIMEOUT = 60.0
AGENT = Invocation(Actor(ActorKind.AGENT, "bench"))


@dataclass
class Latencies:
    name: str
    seconds: list[float] = field(default_factory=list)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": len(self.seconds),
            "p50_ms": round(self.quantile(0.50), 2),
            "p99_ms": round(self.quantile(0.99), 2),
            "max_ms": round(max(self.seconds) * 1000, 2),
            "mean_ms": round(statistics.fmean(self.seconds) * 1000, 2),
        }


# -- the Janus path -------------------------------------------------------------------------------


@contextmanager
def janus_process(args: list[str], env: dict[str, str], ready_line: str) -> Iterator[None]:
    """A ``janus`` subcommand in its own process, waited for until it says it is ready."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        assert proc.stdout is not None
        for line in proc.stdout:
            if ready_line in line:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"janus {args[0]} did not get ready")
        else:
            raise RuntimeError(f"janus {args[0]} exited with {proc.wait()}")
        yield
    finally:
        proc.terminate()
        proc.wait(30)


class ViewWatcher:
    """Reads the view's stored position in a loop; records when each awaited position appears."""

    def __init__(self, janus: Janus) -> None:
        self.engine = janus.views_engine
        self.awaited: dict[int, float] = {}  # position -> accepted at
        self.seen = Latencies("janus: accepted -> visible in the view")
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="watcher", daemon=True)
        self.position = 0

    def expect(self, position: int, accepted_at: float) -> None:
        with self.lock:
            self.awaited[position] = accepted_at

    def _run(self) -> None:
        query = select(projection_positions.c.position).where(
            projection_positions.c.name == "relational"
        )
        with self.engine.connect() as conn:
            while not self.stop.is_set():
                self.position = int(conn.execute(query).scalar_one())
                conn.rollback()  # a fresh snapshot for the next read
                now = time.perf_counter()
                with self.lock:
                    due = [p for p in self.awaited if p <= self.position]
                    for p in due:
                        self.seen.seconds.append(now - self.awaited.pop(p))
                self.stop.wait(WATCH_INTERVAL)

    def pending(self) -> int:
        with self.lock:
            return len(self.awaited)


def drive(
    janus: Janus, watcher: ViewWatcher, rate: float, seconds: float, console: Console
) -> None:
    total = int(rate * seconds)
    console.log(f"submitting {total:,} goals at {rate:g}/s")
    began = time.perf_counter()
    for i in range(total):
        due = began + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)  # open-loop pacing of the load generator
        result = janus.commands.submit_goal(SubmitGoal(text=f"goal {i}"), AGENT)
        watcher.expect(result.position, time.perf_counter())
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while watcher.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    if watcher.pending():
        raise RuntimeError(f"{watcher.pending()} commands never became visible")


def bench_janus(settings: Settings, rate: float, seconds: float, console: Console) -> Latencies:
    env = {
        **os.environ,
        "JANUS_HOME": str(settings.home),
        "JANUS_DATABASE_URL": str(settings.database_url),
        "JANUS_NATS_URL": str(settings.nats_url),
        "JANUS_STREAM_NAME": settings.stream_name,
        "JANUS_SUBJECT_PREFIX": settings.subject_prefix,
        "JANUS_STREAM_MAX_BYTES": str(settings.stream_max_bytes),
    }
    janus = Janus.build(settings)
    watcher = ViewWatcher(janus)
    try:
        janus.commands.submit_goal(SubmitGoal(text="warm-up"), AGENT)
        with (
            janus_process(["relay"], env, "relay ready"),
            janus_process(["project", "relational"], env, "projector ready"),
        ):
            watcher.thread.start()
            drive(janus, watcher, rate, seconds, console)
    finally:
        watcher.stop.set()
        janus.close()
    return watcher.seen


# -- the raw transport floor ---------------------------------------------------------------------


async def raw_jetstream(
    nats_url: str, stream: str, rate: float, seconds: float, size: int
) -> Latencies:
    nc = await nats.connect(nats_url)
    latencies = Latencies("raw: JetStream publish -> fetched")
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream}.>"], max_bytes=64 * 1024**2)
        sub = await js.pull_subscribe(f"{stream}.>", durable="raw")
        total = int(rate * seconds)
        sent: dict[int, float] = {}
        payload = b"x" * size

        async def consume() -> None:
            while len(latencies.seconds) < total:
                try:
                    msgs = await sub.fetch(100, timeout=1.0)
                except nats.errors.TimeoutError:
                    continue
                now = time.perf_counter()
                for msg in msgs:
                    index = int((msg.headers or {})["i"])
                    latencies.seconds.append(now - sent.pop(index))
                    await msg.ack()

        consumer = asyncio.create_task(consume())
        began = time.perf_counter()
        for i in range(total):
            wait = began + i / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            sent[i] = time.perf_counter()
            await js.publish(f"{stream}.m", payload, headers={"i": str(i)})
        await asyncio.wait_for(consumer, SETTLE_TIMEOUT)
    finally:
        await nc.close()
    return latencies


# -- the run --------------------------------------------------------------------------------------


def table(results: list[Latencies]) -> Table:
    out = Table(title="command accepted -> visible")
    for column in ("path", "count", "p50 ms", "p99 ms", "max ms", "mean ms"):
        out.add_column(column, justify="left" if column == "path" else "right")
    for result in results:
        row = result.as_json()
        out.add_row(
            row["name"],
            f"{row['count']:,}",
            f"{row['p50_ms']:.1f}",
            f"{row['p99_ms']:.1f}",
            f"{row['max_ms']:.1f}",
            f"{row['mean_ms']:.1f}",
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="commands per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to send")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    console = Console(stderr=True)
    server = os.environ.get(ENV_DATABASE_URL) or LOCAL_SERVER_URL
    nats_url = os.environ.get(ENV_NATS_URL) or LOCAL_NATS_URL
    stream = f"janus_bench_{uuid4().hex[:12]}"
    raw_stream = f"janus_raw_{uuid4().hex[:12]}"
    with (
        throwaway_database(server) as url,
        tempfile.TemporaryDirectory(prefix="janus_bench_") as home,
        streams_deleted(nats_url, [stream, raw_stream]),
    ):
        settings = Settings(
            home=Path(home),
            database_url=url,
            nats_url=nats_url,
            stream_name=stream,
            subject_prefix=f"{stream}.events",
            stream_max_bytes=256 * 1024**2,
        )
        janus = bench_janus(settings, args.rate, args.seconds, console)
        console.log("raw JetStream publish -> fetch at the same rate")
        raw = asyncio.run(raw_jetstream(nats_url, raw_stream, args.rate, args.seconds, 700))
    p99 = janus.quantile(0.99)
    report = {
        "rate": args.rate,
        "seconds": args.seconds,
        "results": [janus.as_json(), raw.as_json()],
        "target_p99_ms": TARGET_P99_MS,
        "met": p99 < TARGET_P99_MS,
        "p99_over_raw_p99": round(p99 / raw.quantile(0.99), 2),
    }
    if not args.json:
        out = Console()
        out.print(table([janus, raw]))
        verdict = "met" if report["met"] else "NOT met"
        out.print(
            f"janus p99 {p99:.1f} ms (target < {TARGET_P99_MS:.0f} ms: {verdict}); "
            f"{report['p99_over_raw_p99']}x the raw transport's p99"
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
