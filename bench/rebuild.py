"""Rebuild throughput: the relational views rebuilt from the log, next to reading and decoding it.

    .venv/bin/python -m bench.rebuild [--events N] [--backend postgres|sqlite|both] [--json]

Each backend gets a fresh store filled with N realistic events (goals with plans, decisions,
confirmations, effects and outcomes; job fires; trade orders with fills; documents), written
straight through the recorder in large batches. Then, in the same run, it times:

- raw: ``select_notifications`` + ``mapper.to_domain_event`` over the whole log, the floor any
  projection pays;
- rebuild: ``projections.rebuild.rebuild(janus.projections, "relational")``, the whole
  blue/green rebuild (build, switch, drop).

The ratio rebuild/raw is the figure judged (target >= 0.3). Postgres runs in a throwaway
database on the server named by JANUS_DATABASE_URL (default: the local one); SQLite in a
temporary JANUS_HOME.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

from eventsourcing.domain import Aggregate
from rich.console import Console
from rich.table import Table

from bench.append import ENV_DATABASE_URL, LOCAL_SERVER_URL, throwaway_database
from bootstrap.container import Janus
from bootstrap.settings import Settings
from domain.confirmation import Confirmation, HazardClass
from domain.document import Document, content_key
from domain.effect import Effect
from domain.goal import Decision, Goal
from domain.job import Job, JobFire, MisfirePolicy
from domain.meta import Actor, ActorKind, CommandContext
from domain.trade import Side, TradeOrder
from projections.rebuild import rebuild, rich_progress

DEFAULT_EVENTS = 100_000
WRITE_BATCH = 5_000
READ_BATCH = 5_000
TARGET = 0.3
JOBS = 20
AGENT = Actor(ActorKind.AGENT, "planner")
USER = Actor(ActorKind.USER, "operator")
PROMPT = (
    "You are the home agent. Goal: make sure the front door is locked for the night. "
    "Context: door sensor reports open at 22:41; last unlock by alice at 18:02. Next action?"
)


# -- a realistic log -------------------------------------------------------------------------------


def _ctx(correlation: str, actor: Actor = AGENT) -> CommandContext:
    return CommandContext(
        command_id=str(uuid4()),
        correlation_id=correlation,
        causation_id=correlation,
        actor=actor,
        node_id="bench",
    )


def goal_story(index: int, now: datetime) -> list[Aggregate]:
    """Submitted, planned, decided, confirmed, executed, completed: eight events."""
    gid = uuid4()
    ctx = _ctx(str(gid))
    goal = Goal.submit(gid, f"lock the front door, night {index}", "alice", 5, _ctx(str(gid), USER))
    goal.record_plan(["check the door sensor", "lock the door"], ctx)
    parameters: dict[str, Any] = {"door": "front"}
    action: dict[str, Any] = {"name": "lock_door", "parameters": parameters}
    decision = Decision(
        decision_id=uuid4(),
        model="llama-3.1-8b-instruct.Q4_K_M.gguf",
        model_digest="sha256:" + "ab" * 32,
        parameters={"seed": 7, "temperature": 0.2},
        prompt=PROMPT,
        context_ids=["sensor:door:front", "log:unlock:18:02"],
        raw_output=json.dumps(action),
        action=action,
        timings={"prompt_ms": 212.0, "generate_ms": 840.0},
    )
    goal.record_decision(decision, ctx)
    confirmation = Confirmation.request(
        uuid4(),
        gid,
        decision.decision_id,
        "lock_door",
        parameters,
        HazardClass.HIGH,
        now,
        now + timedelta(minutes=15),
        ctx,
    )
    confirmation.grant("alice", now, _ctx(str(gid), USER))
    effect = Effect.start(confirmation.id, gid, "lock_door", parameters, ctx)
    effect.succeed({"locked": True}, ctx)
    goal.complete("the front door is locked", ctx)
    return [goal, confirmation, effect]


def job_fire(job: Job, index: int, now: datetime) -> JobFire:
    fire = JobFire.fire(job.id, now + timedelta(seconds=index), False, _ctx(str(job.id)))
    fire.succeed({"sent": True}, _ctx(str(job.id)))
    return fire


def trade(index: int) -> TradeOrder:
    oid = uuid4()
    ctx = _ctx(str(oid))
    side = Side.BUY if index % 3 else Side.SELL
    order = TradeOrder.propose(oid, None, f"SYM{index % 7}", side, Decimal(10), None, ctx)
    order.record_risk_check(True, {"exposure": 0.1}, [], ctx)
    order.submit(f"broker-{oid.hex[:8]}", ctx)
    order.record_fill(f"fill-{oid.hex[:8]}", Decimal(10), Decimal("101.25") + index % 5, ctx)
    return order


def document(index: int) -> Document:
    did = uuid4()
    ctx = _ctx(str(did))
    sha = "a" * 64
    source = f"file:///inbox/{index}.pdf"
    doc = Document.register(
        did, source, f"{index}.pdf", "application/pdf", sha, 1, content_key(sha), ctx
    )
    entities = [{"type": "person", "name": "alice", "chunks": [0]}]
    doc.record_entities("extractor-v1", "bench", {}, [], entities, [], ctx)
    return doc


def aggregates(events: int, now: datetime) -> Iterator[list[Aggregate]]:
    """Stories until ``events`` events are pending, in groups that save together."""
    jobs = [
        Job.schedule(
            uuid4(),
            f"heartbeat {i}",
            {"kind": "interval", "seconds": 60},
            {"name": "notify"},
            MisfirePolicy.SKIP,
            0,
            3,
            _ctx("jobs"),
        )
        for i in range(JOBS)
    ]
    yield list(jobs)
    produced, index = JOBS, 0
    while produced < events:
        story: list[Aggregate] = [*goal_story(index, now), job_fire(jobs[index % JOBS], index, now)]
        if index % 5 == 0:
            story.append(trade(index))
        if index % 10 == 0:
            story.append(document(index))
        produced += sum(len(a.pending_events) for a in story)
        index += 1
        yield story


def fill(janus: Janus, events: int) -> int:
    """Write the log through the recorder in big batches; returns how many events it holds."""
    mapper, recorder = janus.app.mapper, janus.app.recorder
    pending: list[Any] = []
    now = datetime.now(UTC)
    for story in aggregates(events, now):
        for aggregate in story:
            pending += [mapper.to_stored_event(e) for e in aggregate.collect_events()]
        if len(pending) >= WRITE_BATCH:
            recorder.insert_events(pending)
            pending = []
    if pending:
        recorder.insert_events(pending)
    return janus.app.head()


# -- measuring -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    backend: str
    workload: str
    events: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.events / self.seconds

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "per_second": round(self.per_second, 1)}


def read_and_decode(janus: Janus) -> int:
    recorder, mapper = janus.app.recorder, janus.app.mapper
    position, count = 0, 0
    while True:
        page = recorder.select_notifications(
            start=position, limit=READ_BATCH, inclusive_of_start=False
        )
        if not page:
            return count
        for notification in page:
            mapper.to_domain_event(notification)
        count += len(page)
        position = page[-1].id


def measure(backend: str, janus: Janus, events: int, console: Console) -> list[Result]:
    console.log(f"{backend}: writing {events:,} events")
    stored = fill(janus, events)
    console.log(f"{backend}: reading and decoding the log")
    began = time.perf_counter()
    decoded = read_and_decode(janus)
    raw = Result(backend, "read + decode", decoded, time.perf_counter() - began)
    console.log(f"{backend}: rebuilding the relational views")
    with rich_progress(console, f"{backend} rebuild") as progress:
        rebuilt = rebuild(janus.projections, "relational", progress=progress)
    assert rebuilt.position == stored, (rebuilt.position, stored)
    return [raw, Result(backend, "rebuild", rebuilt.events, rebuilt.seconds)]


@contextmanager
def janus_on(database_url: str | None) -> Iterator[Janus]:
    with tempfile.TemporaryDirectory(prefix="janus_bench_") as home:
        janus = Janus.build(Settings(home=Path(home), database_url=database_url))
        try:
            yield janus
        finally:
            janus.close()


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class Report:
    events: int
    results: list[Result] = field(default_factory=list)

    def ratios(self) -> dict[str, float]:
        by = {(r.backend, r.workload): r for r in self.results}
        return {
            backend: by[(backend, "rebuild")].per_second / by[(backend, "read + decode")].per_second
            for backend, workload in by
            if workload == "rebuild" and (backend, "read + decode") in by
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "bench": "rebuild",
            "cpus": os.cpu_count(),
            "events": self.events,
            "results": [r.as_json() for r in self.results],
            "ratios": {k: round(v, 3) for k, v in self.ratios().items()},
            "target": TARGET,
        }


def results_table(report: Report) -> Table:
    table = Table(title="Rebuild throughput", caption=f"{os.cpu_count()} CPUs")
    for column in ("backend", "workload", "events", "seconds", "events/s", "ratio", "target"):
        table.add_column(column, justify="left" if column in ("backend", "workload") else "right")
    ratios = report.ratios()
    for r in report.results:
        ratio = ratios.get(r.backend) if r.workload == "rebuild" else None
        met = ratio is not None and ratio >= TARGET
        table.add_row(
            r.backend,
            r.workload,
            f"{r.events:,}",
            f"{r.seconds:.2f}",
            f"{r.per_second:,.0f}",
            f"[{'green' if met else 'red'}]{ratio:.2f}[/]" if ratio is not None else "",
            f">= {TARGET}" if ratio is not None else "",
        )
    return table


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.rebuild", description=__doc__)
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, metavar="N")
    parser.add_argument("--backend", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    if args.events < 100:
        parser.error("--events must be at least 100")
    return args


def main() -> None:
    args = parse_args()
    report = Report(args.events)
    console = Console(stderr=True, quiet=args.json)
    if args.backend in ("postgres", "both"):
        server = os.environ.get(ENV_DATABASE_URL) or LOCAL_SERVER_URL
        with throwaway_database(server) as url, janus_on(url) as janus:
            report.results += measure("postgres", janus, args.events, console)
    if args.backend in ("sqlite", "both"):
        with janus_on(None) as janus:
            report.results += measure("sqlite", janus, args.events, console)
    if not args.json:
        Console(width=max(Console().width, 100)).print(results_table(report))
    print(json.dumps(report.as_json()))


if __name__ == "__main__":
    main()
