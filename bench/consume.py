"""Consume throughput: the relational projector fed from JetStream next to a plain pull consumer.

    .venv/bin/python -m bench.consume [--events N] [--batch B] [--rounds R] [--json]

One run writes N real events through the command service (goals, each with a decision), publishes
them to a fresh stream exactly as the relay does, then times, over those same messages, R rounds
of (interleaved, so that a busy neighbour slows all four alike; medians are reported):

* ``raw fetch+ack``: a plain nats-py durable pull consumer, explicit acks, one per message;
* ``raw fetch+ack last``: the same with ``AckPolicy.ALL``, acking the last of each batch;
* ``projector (JetStream)``: ``JetStreamFeed`` applying the relational projection to Postgres,
  from subscribed to caught up, with a new consumer each round;
* ``projector (log)``: the same projection fed from the notification log, for what the
  projection itself costs without NATS.

Each projector round writes to an empty database of its own. Before each workload is timed the
garbage collector runs, so that none pays for a collection made due by what ran before it (the
projector collects only its young garbage while it works, leaving a full collection due).

The target is projector (JetStream) / raw fetch+ack >= 0.5. Postgres is a throwaway database on
the server named by JANUS_DATABASE_URL (default: the local one); NATS is JANUS_NATS_URL (default
nats://127.0.0.1:4222). Databases and stream are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from uuid import uuid4

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine

from bench.append import ENV_DATABASE_URL, LOCAL_SERVER_URL, throwaway_database
from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands import models as m
from commands.invocation import Invocation
from domain.meta import Actor, ActorKind
from event_store.messages import headers_for, subject_for
from projections.jetstream import FeedConfig, JetStreamFeed
from projections.relational import RelationalProjection
from projections.runner import ProjectionRunner

ENV_NATS_URL = "JANUS_NATS_URL"
LOCAL_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_EVENTS = 20_000
DEFAULT_BATCH = FeedConfig().batch_size
DEFAULT_ROUNDS = 3
WRITERS = 8
PUBLISH_WINDOW = 2_000
STREAM_BYTES = 1024**3
TARGET = 0.5
# How often the clock checks whether the projector reached the head: rare enough not to compete
# with it, often enough to be a rounding error on a run of seconds.
POLL = 0.02
USER = Invocation(Actor(ActorKind.USER, "bench"))
AGENT = Invocation(Actor(ActorKind.AGENT, "bench-planner"))
GOAL_TEXT = "Reconcile yesterday's door-lock events against the access log and report any gaps."

RAW_EXPLICIT = "raw fetch+ack"
RAW_ALL = "raw fetch+ack last"
PROJECTOR = "projector (JetStream)"
FROM_LOG = "projector (log)"


@dataclass(frozen=True)
class Result:
    workload: str
    events: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.events / self.seconds


@dataclass(frozen=True)
class Summary:
    """One workload over all rounds: the median, and the spread that says how noisy it was."""

    workload: str
    events: int
    rounds: int
    per_second: float
    slowest: float
    fastest: float

    @classmethod
    def of(cls, results: list[Result]) -> Summary:
        rates = [r.per_second for r in results]
        return cls(
            results[0].workload,
            results[0].events,
            len(rates),
            statistics.median(rates),
            min(rates),
            max(rates),
        )


# -- writing and publishing ------------------------------------------------------------------------


def write_events(janus: Janus, events: int) -> None:
    """Goals, each with a decision: an insert, then an update and an insert of another row."""

    def one_goal(_: int) -> None:
        goal = janus.commands.submit_goal(m.SubmitGoal(text=GOAL_TEXT), USER)
        action = m.Action(name="unlock_door", parameters={"door": "front"})
        decision = m.RecordDecision(
            goal_id=goal.aggregate_id, model="bench", prompt="p", raw_output="{}", action=action
        )
        janus.commands.record_decision(decision, AGENT)

    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(one_goal, range(events // 2)))


async def publish_log(janus: Janus, js: JetStreamContext) -> int:
    """What the relay does, pipelined: every stored event, in log order; returns the count."""
    settings, count, position = janus.settings, 0, 0
    while page := janus.reader.read_after(position, PUBLISH_WINDOW):
        acks = [
            await js.publish_async(
                subject_for(settings.subject_prefix, n.topic),
                n.state,
                headers=headers_for(n, settings.node_id, settings.app_name),
            )
            for n in page
        ]
        await asyncio.gather(*acks)
        count, position = count + len(page), page[-1].id
    return count


# -- the measured consumers ------------------------------------------------------------------------


async def raw_consume(
    nc: NatsClient, stream: str, prefix: str, total: int, batch: int, ack_all: bool
) -> Result:
    js = nc.jetstream()
    settle()
    policy = AckPolicy.ALL if ack_all else AckPolicy.EXPLICIT
    config = ConsumerConfig(ack_policy=policy, max_ack_pending=2 * batch)
    durable = f"raw-{uuid4().hex[:8]}"
    sub = await js.pull_subscribe(f"{prefix}.>", durable=durable, stream=stream, config=config)
    seen, started = 0, time.perf_counter()
    while seen < total:
        msgs = await sub.fetch(batch, timeout=5)
        if ack_all:
            await msgs[-1].ack()
        else:
            for msg in msgs:
                await msg.ack()
        seen += len(msgs)
    await nc.flush()
    elapsed = time.perf_counter() - started
    await js.delete_consumer(stream, durable)
    return Result(RAW_ALL if ack_all else RAW_EXPLICIT, seen, elapsed)


def settle() -> None:
    """Collect all garbage before a workload is timed, so that none pays for a collection
    that what ran before it (writing the events, another workload, a database's set-up) made
    due."""
    gc.collect()


@contextmanager
def fresh_runner(janus: Janus, views_url: str, batch: int) -> Iterator[ProjectionRunner]:
    """The relational projection into empty views of its own, reading the bench's log."""
    engine = create_engine(views_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        runner = ProjectionRunner(RelationalProjection(), janus.reader, engine, batch_size=batch)
        runner.setup()
        yield runner
    finally:
        engine.dispose()


async def feed_consume(janus: Janus, runner: ProjectionRunner, batch: int) -> Result:
    """From subscribed to position == head; the feed creates its own consumer first."""
    head = janus.app.head()
    nats_url = janus.settings.nats_url
    assert nats_url is not None
    feed = JetStreamFeed(runner, nats_url, janus.settings.stream_spec(), FeedConfig(batch))
    settle()
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(feed.run(stop, ready.set))
    await ready.wait()
    started = time.perf_counter()
    while await asyncio.to_thread(lambda: runner.position) < head:
        await asyncio.sleep(POLL)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    return Result(PROJECTOR, head, elapsed)


def log_consume(janus: Janus, runner: ProjectionRunner) -> Result:
    head = janus.app.head()
    settle()
    started = time.perf_counter()
    runner.catch_up(timeout=3600)
    return Result(FROM_LOG, head, time.perf_counter() - started)


# -- the run ---------------------------------------------------------------------------------------


@contextmanager
def janus_on(database_url: str, nats_url: str) -> Iterator[Janus]:
    with tempfile.TemporaryDirectory(prefix="janus_bench_") as home:
        name = f"janus_bench_{uuid4().hex[:12]}"
        settings = Settings(
            home=Path(home),
            database_url=database_url,
            nats_url=nats_url,
            stream_name=name,
            subject_prefix=name,
            stream_max_bytes=STREAM_BYTES,
        )
        janus = Janus.build(settings)
        try:
            yield janus
        finally:
            janus.close()


async def with_stream(janus: Janus, work: Callable[[NatsClient], Awaitable[None]]) -> None:
    assert janus.settings.nats_url is not None
    nc = await nats.connect(janus.settings.nats_url)
    js = nc.jetstream()
    await js.add_stream(janus.settings.stream_spec().config())
    try:
        await work(nc)
    finally:
        await js.delete_stream(janus.settings.stream_name)
        await nc.close()


def bench(events: int, batch: int, rounds: int, console: Console) -> list[Summary]:
    server = os.environ.get(ENV_DATABASE_URL) or LOCAL_SERVER_URL
    nats_url = os.environ.get(ENV_NATS_URL) or LOCAL_NATS_URL
    results: list[Result] = []
    with throwaway_database(server) as url, janus_on(url, nats_url) as janus:
        console.log(f"writing {events:,} events")
        write_events(janus, events)

        async def measure(nc: NatsClient) -> None:
            console.log(f"publishing {janus.app.head():,} events to {janus.settings.stream_name}")
            await publish_log(janus, nc.jetstream())
            for round_ in range(1, rounds + 1):
                console.log(f"round {round_} of {rounds}")
                results.extend(await one_round(janus, nc, server, batch))

        asyncio.run(with_stream(janus, measure))
    workloads = dict.fromkeys(r.workload for r in results)
    return [Summary.of([r for r in results if r.workload == w]) for w in workloads]


async def one_round(janus: Janus, nc: NatsClient, server: str, batch: int) -> list[Result]:
    stream, prefix = janus.settings.stream_name, janus.settings.subject_prefix
    total = janus.app.head()
    found = [
        await raw_consume(nc, stream, prefix, total, batch, ack_all) for ack_all in (False, True)
    ]
    with throwaway_database(server) as views, fresh_runner(janus, views, batch) as runner:
        found.append(await feed_consume(janus, runner, batch))
    with throwaway_database(server) as views, fresh_runner(janus, views, batch) as runner:
        found.append(await asyncio.to_thread(log_consume, janus, runner))
    return found


def results_table(found: list[Summary], batch: int) -> Table:
    title = f"Consuming {found[0].events:,} events, batch {batch}, median of {found[0].rounds}"
    table = Table(title=title)
    for column in ("workload", "events/s", "slowest", "fastest"):
        table.add_column(column, justify="left" if column == "workload" else "right")
    for r in found:
        rates = (r.per_second, r.slowest, r.fastest)
        table.add_row(r.workload, *(f"{rate:,.0f}" for rate in rates))
    return table


def ratios(found: list[Summary]) -> dict[str, float]:
    rate = {r.workload: r.per_second for r in found}
    return {
        f"{PROJECTOR} / {RAW_EXPLICIT}": rate[PROJECTOR] / rate[RAW_EXPLICIT],
        # Not a target: how much of the projector's time is the feed rather than the projection.
        f"{PROJECTOR} / {FROM_LOG}": rate[PROJECTOR] / rate[FROM_LOG],
    }


def ratios_table(found: dict[str, float]) -> Table:
    table = Table(title="Ratios of the medians")
    for column in ("ratio", "value", "target", "met"):
        table.add_column(column, justify="left" if column in ("ratio", "met") else "right")
    for index, (name, value) in enumerate(found.items()):
        target = f">= {TARGET}" if index == 0 else "-"
        met = ("[green]yes[/]" if value >= TARGET else "[red]no[/]") if index == 0 else ""
        table.add_row(name, f"{value:.2f}", target, met)
    return table


def report(found: list[Summary], batch: int, console: Console, as_json: bool) -> None:
    ratio_values = ratios(found)
    if not as_json:
        console.print(results_table(found, batch))
        console.print(ratios_table(ratio_values))
    ratio = ratio_values[f"{PROJECTOR} / {RAW_EXPLICIT}"]
    line = {
        "batch": batch,
        "results": [asdict(r) for r in found],
        "ratios": {name: round(value, 3) for name, value in ratio_values.items()},
        "target": TARGET,
        "met": ratio >= TARGET,
    }
    print(json.dumps(line))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="events to write")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="messages per fetch")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="rounds to median")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    console = Console(stderr=args.json)
    found = bench(args.events, args.batch, args.rounds, console)
    report(found, args.batch, console, args.json)


if __name__ == "__main__":
    main()
