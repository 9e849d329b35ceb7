"""Replay, export and import throughput beside the raw rate of reading the same log.

    .venv/bin/python -m bench.replay [--events N] [--backend sqlite|postgres|both] [--json]

One run writes N events (goals, decisions, confirmations, effects, and one long-lived job whose
events are spread over the whole log), then times, on the same store:

- raw read: every notification, in the pages ``janus`` reads them, not decoded;
- ``replay state`` as printed (the table): the whole log indexed at position N without
  decoding, the 30 newest aggregates loaded at their versions;
- ``replay state --json``: every event decoded and folded into every aggregate;
- ``events export`` (plain JSON Lines) and ``events import`` into an empty store;
- state of the job at the head, with a snapshot near the end (taken by an application with
  snapshotting on): how many notifications and events that read, beside the log's size.

Ratios are each rate over the raw read rate of the same run (target: replay and export at
least 0.5). Postgres runs in a throwaway database on the server named by JANUS_DATABASE_URL
(default: the local one); SQLite in a temporary home. Both are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from rich.console import Console
from rich.table import Table

from bench.append import LOCAL_SERVER_URL, throwaway_database
from bootstrap.history import open_store
from bootstrap.settings import Settings
from domain.confirmation import Confirmation, HazardClass
from domain.effect import Effect
from domain.goal import Decision, Goal
from domain.job import Job, MisfirePolicy
from domain.meta import Actor, ActorKind, CommandContext
from event_store.application import JanusApplication
from replay.exchange import export_events, import_events
from replay.store import Store
from replay.time_travel import aggregate_at, replay_to, versions_at

DEFAULT_EVENTS = 1_000_000
TARGET = 0.5
SHOWN = 30
SAVE_BATCH = 600
PROMPT = (
    "You are the house agent. Goal: let the plumber in at noon and tell them where to go. "
    "Known: the front door is locked; the plumber arrives by van. Choose the next action."
)


@dataclass
class Figure:
    backend: str
    workload: str
    events: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def timed(backend: str, workload: str, events: int, run: Callable[[], Any]) -> Figure:
    started = time.perf_counter()
    run()
    return Figure(backend, workload, events, time.perf_counter() - started)


# -- the log ---------------------------------------------------------------------------------


def _ctx(goal_id: UUID, actor: Actor) -> CommandContext:
    return CommandContext(str(uuid4()), str(goal_id), str(uuid4()), actor, "bench")


def write_log(app: JanusApplication, events: int, progress: Callable[[int], None]) -> UUID:
    """About ``events`` events: stories of six events, and a job toggled every few stories."""
    agent, operator = Actor(ActorKind.AGENT, "planner"), Actor(ActorKind.USER, "bob")
    job_id = uuid4()
    job = Job.schedule(
        job_id,
        "heartbeat",
        {"kind": "interval", "seconds": 60},
        {"name": "notify", "parameters": {"to": "ops"}},
        MisfirePolicy.SKIP,
        0,
        3,
        _ctx(job_id, operator),
    )
    app.save(job)
    written, pending, stories = 1, [], 0
    while written < events:
        goal_id = uuid4()
        ctx = _ctx(goal_id, agent)
        goal = Goal.submit(goal_id, "let the plumber in at noon", "user:alice", 5, ctx)
        decision_id = uuid4()
        chosen = {"name": "unlock_door", "parameters": {"door": "front"}}
        goal.record_decision(
            Decision(
                decision_id, "SmolLM2-135M-Instruct.Q4_1.gguf", "sha256:" + "ab" * 32,
                {"seed": 7, "temperature": 0.0}, PROMPT, ["doc-1", "doc-2"],
                json.dumps(chosen), chosen, {"generate_ms": 41.0},
            ),
            ctx,
        )  # fmt: skip
        now = datetime.now(UTC)
        confirmation = Confirmation.request(
            uuid4(), goal_id, decision_id, "unlock_door", {"door": "front"}, HazardClass.HIGH,
            now, now + timedelta(minutes=15), ctx,
        )  # fmt: skip
        confirmation.grant("user:bob", now, _ctx(goal_id, operator))
        effect = Effect.start(confirmation.id, goal_id, "unlock_door", {"door": "front"}, ctx)
        effect.succeed({"unlocked": True}, ctx)
        pending += [goal, confirmation, effect]
        written += 6
        stories += 1
        if stories % 50 == 0:
            # Pause or resume: the job's events are spread over the whole log.
            (job.resume if job.status.value == "paused" else job.pause)(_ctx(job_id, operator))
            pending.append(job)
            written += 1
        if len(pending) >= SAVE_BATCH:
            app.save(*pending)
            progress(written)
            pending = []
    if pending:
        app.save(*pending)
    return job_id


# -- one backend ---------------------------------------------------------------------------------


@contextmanager
def settings_for(backend: str, name: str) -> Iterator[Settings]:
    with tempfile.TemporaryDirectory(prefix=f"janus_bench_{name}_") as home:
        if backend == "sqlite":
            yield Settings(home=Path(home))
            return
        server = os.environ.get("JANUS_DATABASE_URL") or LOCAL_SERVER_URL
        with throwaway_database(server) as url:
            yield Settings(home=Path(home), database_url=url)


def raw_read(store: Store) -> int:
    count = 0
    for batch in store.pages(0, store.head()):
        count += len(batch)
    return count


def run_backend(backend: str, events: int, console: Console) -> list[Figure]:
    figures: list[Figure] = []
    with settings_for(backend, "source") as settings, settings_for(backend, "target") as target:
        env = {**settings.eventsourcing_env(), "IS_SNAPSHOTTING_ENABLED": "y"}
        app = JanusApplication(env, name=settings.app_name)
        try:
            started = time.perf_counter()
            job_id = write_log(app, events, lambda n: None)
            console.print(
                f"[dim]{backend}: wrote {app.head():,} events in "
                f"{time.perf_counter() - started:.0f}s[/]"
            )
            job_versions: int = app.repository.get(job_id).version
            app.take_snapshot(job_id, version=max(1, job_versions - 3))
        finally:
            app.close()
        with open_store(settings, use_views=False) as store:
            head = store.head()
            figures.append(timed(backend, "raw read", head, lambda: raw_read(store)))

            def table() -> None:
                found = versions_at(store, head)
                for ident in found.newest()[-SHOWN:]:
                    found.load(store, ident)

            figures.append(timed(backend, "replay state (table)", head, table))
            figures.append(
                timed(backend, "replay state --json (fold)", head, lambda: replay_to(store, head))
            )
            path = Path(tempfile.mkdtemp(prefix="janus_bench_export_")) / "log.jsonl"
            figures.append(timed(backend, "export", head, lambda: export_events(store, path)))
            size = path.stat().st_size
            figures[-1].extra["bytes"] = size
            with open_store(target, use_views=False) as empty:
                figures.append(timed(backend, "import", head, lambda: import_events(empty, path)))
            path.unlink()
            path.parent.rmdir()
            figures.append(snapshot_read(backend, store, settings, job_id, head))
    return figures


def snapshot_read(
    backend: str, store: Store, settings: Settings, job_id: UUID, head: int
) -> Figure:
    """State of the long-lived job at the head: with its snapshot, a handful of reads."""
    env = {**settings.eventsourcing_env(), "IS_SNAPSHOTTING_ENABLED": "y"}
    app = JanusApplication(env, name=settings.app_name)
    notifications: list[int] = []
    events_read: list[int] = []
    select_notifications = app.recorder.select_notifications
    select_events = app.recorder.select_events

    def counting_notifications(*args: Any, **kwargs: Any) -> Any:
        found = select_notifications(*args, **kwargs)
        notifications.append(len(found))
        return found

    def counting_events(*args: Any, **kwargs: Any) -> Any:
        found = select_events(*args, **kwargs)
        events_read.append(len(found))
        return found

    app.recorder.select_notifications = counting_notifications  # type: ignore[method-assign]
    app.recorder.select_events = counting_events  # type: ignore[method-assign]
    try:
        snapshotting = Store(settings, app, store.reader, type(store.table)(app), None)
        started = time.perf_counter()
        job = aggregate_at(snapshotting, job_id, head)
        seconds = time.perf_counter() - started
    finally:
        app.close()
    return Figure(
        backend,
        "job state at head (snapshot)",
        1,
        seconds,
        {
            "job_version": job.version if job is not None else 0,
            "notifications_read": sum(notifications),
            "events_read_after_snapshot": sum(events_read),
            "log_events": head,
        },
    )


# -- report --------------------------------------------------------------------------------------


def ratios(figures: list[Figure]) -> dict[str, float]:
    raw = {f.backend: f.rate for f in figures if f.workload == "raw read"}
    return {
        f"{f.backend}:{f.workload}": round(f.rate / raw[f.backend], 2)
        for f in figures
        if f.workload not in ("raw read", "job state at head (snapshot)") and raw.get(f.backend)
    }


def print_report(figures: list[Figure], console: Console) -> None:
    table = Table(title="Replay, export and import vs raw read (same run)")
    for column in ("backend", "workload", "events", "seconds", "events/s", "vs raw"):
        table.add_column(column, justify="right" if column != "workload" else "left")
    ratio = ratios(figures)
    for f in figures:
        if f.workload == "job state at head (snapshot)":
            continue
        key = f"{f.backend}:{f.workload}"
        shown = f"{ratio[key]:.2f}" if key in ratio else "1.00"
        table.add_row(
            f.backend, f.workload, f"{f.events:,}", f"{f.seconds:.2f}", f"{f.rate:,.0f}", shown
        )
    console.print(table)
    for f in figures:
        if f.workload == "job state at head (snapshot)":
            console.print(
                f"{f.backend}: job v{f.extra['job_version']} at the head of a "
                f"{f.extra['log_events']:,}-event log in {f.seconds * 1000:.1f} ms: "
                f"{f.extra['notifications_read']} notifications and "
                f"{f.extra['events_read_after_snapshot']} events read (after its snapshot)"
            )
    for key, value in ratio.items():
        if "replay state" in key or "export" in key:
            verdict = "meets" if value >= TARGET else "below"
            console.print(f"{key}: {value:.2f} of raw read ({verdict} the {TARGET} target)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__)
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, metavar="N")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    console = Console(stderr=args.json)
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    figures: list[Figure] = []
    for backend in backends:
        figures += run_backend(backend, args.events, console)
    if args.json:
        body = {
            "figures": [{**asdict(f), "rate": round(f.rate)} for f in figures],
            "ratios": ratios(figures),
        }
        print(json.dumps(body))
        return
    print_report(figures, console)


if __name__ == "__main__":
    main()
