"""Relay throughput: events/s from the log to acked JetStream messages, next to raw nats-py.

    .venv/bin/python -m bench.relay [--events N] [--max-in-flight N] [--rounds N] [--json]

Stores N events straight through the recorder (big batches, no commands), then, in each round,
times (1) raw nats-py ``js.publish_async`` of the same payloads with the same subjects and headers
(message ids included) and the same in-flight bound, from memory, and (2) the relay: from ready
to the last event acknowledged, reading the log itself. Each run gets a fresh stream, so nothing
is a duplicate. Postgres: a throwaway database on JANUS_DATABASE_URL's server (default: the local
one); NATS: JANUS_NATS_URL (default nats://127.0.0.1:4222). Both are cleaned up at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import nats
import nats.js.errors
from eventsourcing.persistence import Notification, StoredEvent
from rich.console import Console
from rich.table import Table

from bench.append import ENV_DATABASE_URL, LOCAL_SERVER_URL, stored_goal_event, throwaway_database
from bootstrap.container import Janus
from bootstrap.relay import relay_config
from bootstrap.settings import Settings
from event_store.messages import H_MSG_ID, headers_for, subject_for
from event_store.relay.loop import Relay
from event_store.relay.window import H_EXPECTED_LAST_MSG_ID

ENV_NATS_URL = "JANUS_NATS_URL"
LOCAL_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_EVENTS = 100_000
INSERT_BATCH = 5_000
TARGET = 0.6
RELAY_WORKLOAD = "relay (log -> acked)"
RAW_WORKLOAD = "raw publish_async"
# What goes on the wire per event: subject, body, headers.
Wire = list[tuple[str, bytes, dict[str, str]]]


@dataclass(frozen=True)
class Result:
    workload: str
    round: int
    events: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.events / self.seconds

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "per_second": round(self.per_second, 1)}


@dataclass
class Report:
    events: int
    max_in_flight: int
    payload_bytes: int = 0
    results: list[Result] = field(default_factory=list)

    def median(self, workload: str) -> float:
        return statistics.median(r.per_second for r in self.results if r.workload == workload)

    @property
    def ratio(self) -> float:
        return self.median(RELAY_WORKLOAD) / self.median(RAW_WORKLOAD)

    def as_json(self) -> dict[str, Any]:
        return {
            "bench": "relay",
            "cpus": os.cpu_count(),
            "events": self.events,
            "max_in_flight": self.max_in_flight,
            "payload_bytes": self.payload_bytes,
            "results": [r.as_json() for r in self.results],
            "relay_per_second": round(self.median(RELAY_WORKLOAD), 1),
            "raw_per_second": round(self.median(RAW_WORKLOAD), 1),
            "ratio": round(self.ratio, 3),
            "target": TARGET,
        }


# -- the log -----------------------------------------------------------------------------------


def store_events(janus: Janus, count: int, console: Console) -> int:
    """``count`` Goal.Submitted rows (one real event's bytes, fresh aggregate ids); its size."""
    row = stored_goal_event(janus)
    for start in range(0, count - 1, INSERT_BATCH):
        size = min(INSERT_BATCH, count - 1 - start)
        batch = [StoredEvent(uuid4(), 1, row.topic, row.state) for _ in range(size)]
        janus.app.recorder.insert_events(batch)
    console.log(f"stored {janus.app.head():,} events of {len(row.state)} bytes")
    return len(row.state)


def read_log(janus: Janus) -> list[Notification]:
    notifications: list[Notification] = []
    while page := janus.reader.read_after(notifications[-1].id if notifications else 0, 10_000):
        notifications += page
    return notifications


# -- raw nats-py -------------------------------------------------------------------------------


def wire_messages(settings: Settings, notifications: list[Notification]) -> Wire:
    """What the relay sends for each event: subject, body and headers, chained the same way."""
    messages: Wire = []
    previous: str | None = None
    for n in notifications:
        meta = json.loads(n.state)["meta"]["_data_"]
        traceparent = (meta.get("trace_context") or {}).get("traceparent", "")
        headers = headers_for(
            n, settings.node_id, settings.app_name, meta["correlation_id"], traceparent
        )
        if previous is not None:
            headers[H_EXPECTED_LAST_MSG_ID] = previous
        previous = headers[H_MSG_ID]
        messages.append((subject_for(settings.subject_prefix, n.topic), n.state, headers))
    return messages


async def raw_publish(
    settings: Settings, messages: list[tuple[str, bytes, dict[str, str]]]
) -> float:
    assert settings.nats_url is not None
    nc = await nats.connect(settings.nats_url)
    try:
        js = nc.jetstream(publish_async_max_pending=settings.relay_max_in_flight)
        await js.add_stream(settings.stream_spec().config())
        began = time.perf_counter()
        for subject, body, headers in messages:
            await js.publish_async(subject, body, headers=headers)
        # An error reply would leave its future pending forever (nats-io/nats.py#985): bound it.
        await asyncio.wait_for(js.publish_async_completed(), timeout=60)
        seconds = time.perf_counter() - began
        await check_stream(js, settings, len(messages))
        return seconds
    finally:
        await nc.close()


# -- the relay ---------------------------------------------------------------------------------


async def relay_run(janus: Janus, settings: Settings, head: int) -> float:
    relay = Relay(
        janus.app,
        janus.reader,
        janus.leader_lock("relay"),
        relay_config(settings),
        janus.views_engine,
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(relay.run(stop, on_ready=ready.set))
    try:
        await asyncio.wait_for(ready.wait(), timeout=60)
        began = time.perf_counter()
        while relay.acked < head:
            if task.done():
                task.result()
                raise RuntimeError(f"relay stopped at {relay.acked}: {relay.last_error}")
            await asyncio.sleep(0.002)  # bench polling; resolution well under 1 % of a run
        seconds = time.perf_counter() - began
    finally:
        stop.set()
        await task
    assert settings.nats_url is not None
    nc = await nats.connect(settings.nats_url)
    try:
        await check_stream(nc.jetstream(), settings, head)
    finally:
        await nc.close()
    return seconds


async def check_stream(js: Any, settings: Settings, expected: int) -> None:
    messages = (await js.stream_info(settings.stream_name)).state.messages
    if messages != expected:
        raise RuntimeError(f"stream {settings.stream_name} has {messages} messages, not {expected}")


# -- the run -----------------------------------------------------------------------------------


@contextmanager
def streams_deleted(nats_url: str, names: list[str]) -> Iterator[None]:
    try:
        yield
    finally:
        asyncio.run(delete_streams(nats_url, names))


async def delete_streams(nats_url: str, names: list[str]) -> None:
    nc = await nats.connect(nats_url)
    try:
        for name in names:
            try:
                await nc.jetstream().delete_stream(name)
            except nats.js.errors.NotFoundError:
                continue  # that run never got to create it
    finally:
        await nc.close()


def fresh_stream(settings: Settings, names: list[str]) -> Settings:
    name = f"janus_bench_{uuid4().hex[:12]}"
    names.append(name)
    return settings.model_copy(update={"stream_name": name, "subject_prefix": f"{name}.events"})


def bench(report: Report, rounds: int, console: Console) -> None:
    server = os.environ.get(ENV_DATABASE_URL) or LOCAL_SERVER_URL
    nats_url = os.environ.get(ENV_NATS_URL) or LOCAL_NATS_URL
    names: list[str] = []
    with (
        throwaway_database(server) as url,
        tempfile.TemporaryDirectory(prefix="janus_bench_") as home,
        streams_deleted(nats_url, names),
    ):
        settings = Settings(
            home=Path(home),
            database_url=url,
            nats_url=nats_url,
            relay_max_in_flight=report.max_in_flight,
            stream_max_bytes=4 * 1024**3,
        )
        janus = Janus.build(settings)
        try:
            report.payload_bytes = store_events(janus, report.events, console)
            run_rounds(report, janus, settings, names, rounds, console)
        finally:
            janus.close()


def run_rounds(
    report: Report,
    janus: Janus,
    settings: Settings,
    names: list[str],
    rounds: int,
    console: Console,
) -> None:
    notifications = read_log(janus)
    head = notifications[-1].id
    for round_ in range(1, rounds + 1):
        raw = fresh_stream(settings, names)
        messages = wire_messages(raw, notifications)
        console.log(f"round {round_}: raw publish_async of {len(messages):,} messages")
        seconds = asyncio.run(raw_publish(raw, messages))
        report.results.append(Result(RAW_WORKLOAD, round_, len(messages), seconds))
        del messages
        console.log(f"round {round_}: relay from position 0 to {head:,}")
        seconds = asyncio.run(relay_run(janus, fresh_stream(settings, names), head))
        report.results.append(Result(RELAY_WORKLOAD, round_, len(notifications), seconds))


def results_table(report: Report) -> Table:
    caption = f"{report.payload_bytes} bytes per event; at most {report.max_in_flight} in flight"
    table = Table(title="Relay throughput", caption=f"{caption}; {os.cpu_count()} CPUs")
    for column in ("workload", "round", "events", "seconds", "events/s"):
        table.add_column(column, justify="left" if column == "workload" else "right")
    for r in report.results:
        table.add_row(
            r.workload, str(r.round), f"{r.events:,}", f"{r.seconds:.2f}", f"{r.per_second:,.0f}"
        )
    return table


def ratio_table(report: Report) -> Table:
    table = Table(title="Relay vs raw nats-py (medians)")
    for column in ("relay events/s", "raw events/s", "ratio", "target", "met"):
        table.add_column(column, justify="right")
    met = report.ratio >= TARGET
    table.add_row(
        f"{report.median(RELAY_WORKLOAD):,.0f}",
        f"{report.median(RAW_WORKLOAD):,.0f}",
        f"{report.ratio:.2f}",
        f">= {TARGET}",
        "[green]yes[/]" if met else "[red]no[/]",
    )
    return table


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__)
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, metavar="N")
    parser.add_argument("--max-in-flight", type=int, default=Settings().relay_max_in_flight)
    parser.add_argument("--rounds", type=int, default=1, help="median over rounds")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    if args.events < 2:
        parser.error("--events must be at least 2")
    return args


def main() -> None:
    args = parse_args()
    report = Report(args.events, args.max_in_flight)
    progress = Console(stderr=True, quiet=args.json)
    bench(report, args.rounds, progress)
    if not args.json:
        out = Console(width=max(Console().width, 100))
        out.print(results_table(report))
        out.print(ratio_table(report))
    print(json.dumps(report.as_json()))


if __name__ == "__main__":
    main()
