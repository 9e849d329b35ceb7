"""``janus edge``: run an edge node, ingest edges into the cloud, and show how each edge stands."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from bootstrap.container import Janus
from bootstrap.edge import (
    build_command_consumer,
    build_ingester,
    edge_node_settings,
    edge_request_statuses,
    edge_requests,
    edge_status,
    local_edge_server,
)
from bootstrap.process import JanusProcess
from bootstrap.relay import build_relay
from bootstrap.settings import Settings
from cli.common import (
    ActorName,
    BadInput,
    JsonFlag,
    RequireSignature,
    cli_errors,
    export_size_hint,
    open_store,
    operator,
    print_json,
    progress_bar,
)
from commands.edge_requests import SendEdgeRequest
from commands.invocation import Invocation
from domain.edge_requests import EdgeRequest, RequestKind
from domain.meta import Actor, ActorKind
from event_store.edge_sync import EdgeStatus
from event_store.relay.thread import RelayThread
from replay.edge_repair import EdgeImport, import_edge_export

app = typer.Typer(no_args_is_help=True, help="Edge nodes: offline work synced to the cloud.")

NodeOption = Annotated[
    list[str] | None,
    typer.Option("--node", help="An edge node id to ingest (repeat; default $JANUS_EDGE_NODES)."),
]


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """The CLI's one boundary; the edge's parts refuse bad configuration (a hub URL that is not
    nats-leaf://, no nodes, no JANUS_NATS_URL) with a ValueError, which is the operator's to fix."""
    with cli_errors(files=True):
        try:
            yield
        except ValidationError:
            raise
        except ValueError as error:
            raise BadInput(str(error)) from error


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )


@app.command("status")
def status(
    as_json: JsonFlag = False,
) -> None:
    """Each edge the cloud has heard from: origin sequence, lag, link, last contact, gaps."""
    with _one_line_errors():
        janus = Janus.for_cli()
        try:
            statuses = edge_status(janus)
        finally:
            janus.close()
    if as_json:
        typer.echo(json.dumps([_as_dict(s) for s in statuses], indent=2))
        return
    if not statuses:
        typer.echo("no edge has synced yet")
        return
    table = Table(
        "node", "origin seq", "lag", "lag s", "link", "last contact", "gaps", "parked", "conflicts"
    )
    for s in statuses:
        table.add_row(
            s.node,
            str(s.origin_sequence),
            "?" if s.lag_events is None else str(s.lag_events),
            "?" if s.lag_seconds is None else f"{s.lag_seconds:.1f}",
            s.link,
            s.last_contact.isoformat(timespec="seconds") if s.last_contact else "never",
            f"{sum(1 for g in s.gaps if not g.get('repaired_at'))}/{len(s.gaps)}",
            str(s.parked),
            str(len(s.conflicts)),
        )
    Console(highlight=False, width=160).print(table)
    for s in statuses:
        for gap in s.gaps:
            if gap.get("repaired_at"):
                continue
            typer.echo(
                f"GAP {s.node}: expected origin sequence {gap['expected']}, found "
                f"{gap['found']} ({gap['reason']}); repair with `janus events export FILE` on "
                "the edge and `janus edge import FILE` here"
            )


def _as_dict(s: EdgeStatus) -> dict[str, Any]:
    return {
        "node": s.node,
        "origin_sequence": s.origin_sequence,
        "lag_events": s.lag_events,
        "lag_seconds": s.lag_seconds,
        "link": s.link,
        "last_contact": s.last_contact.isoformat() if s.last_contact else None,
        "gaps": s.gaps,
        "parked": s.parked,
        "conflicts": s.conflicts,
    }


@app.command("ingest")
def ingest(node: NodeOption = None) -> None:
    """Append every edge's events from the hub stream into this (cloud) store until stopped.

    Idempotent by event id; resumes from each edge's cursor. Prints "edge ingest ready".
    """
    _logging()
    with _one_line_errors():
        janus = Janus.build(Settings())
        ingester = build_ingester(janus, node)
    try:
        asyncio.run(_until_signal(ingester.run, "edge ingest ready"))
    finally:
        janus.close()


async def _until_signal(run: Any, ready_line: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run(stop, on_ready=lambda: print(ready_line, flush=True))


@app.command("start")
def start(
    hub: Annotated[str, typer.Option(help="The hub's leafnode URL, nats-leaf://host:port.")],
    node: Annotated[str, typer.Option(help="This edge's node id (names its domain and stream).")],
    port: Annotated[int, typer.Option(help="Port of the edge's own nats-server.")] = 4250,
) -> None:
    """Run an edge: its own nats-server (leaf of the hub), the relay and the runtime.

    Works with no link to the hub; everything reaches the cloud when the link is back.
    """
    _logging()
    with _one_line_errors():
        base = Settings()
        server = local_edge_server(base.home, node, hub, port)
        settings = edge_node_settings(base, node, server.url)
        server.start()
    try:
        with _one_line_errors():
            janus = Janus.build(settings)
        try:
            _run_edge(janus)
        finally:
            janus.close()
    finally:
        server.stop()


def _in_thread(run: Callable[[asyncio.Event], Any]) -> Callable[[], None]:
    """Run a ``run(stop)`` coroutine on its own loop; returns what stops and joins it."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(run(stop),), daemon=True)
    thread.start()

    def halt() -> None:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)

    return halt


def _run_edge(janus: Janus) -> None:
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    process = JanusProcess(janus)
    relay = RelayThread(build_relay(janus)).start()
    process.start()
    # The cloud's requests (grant, deny) wait on the hub and are applied here, by the owner.
    stop_requests = _in_thread(build_command_consumer(janus).run)
    try:
        relay.wait_ready()
        print(
            f"edge ready node={janus.settings.node_id} nats={janus.settings.nats_url}", flush=True
        )
        stopped.wait()
    finally:
        stop_requests()
        process.stop_event.set()
        process.stop()
        relay.stop()


CLOUD_OPERATOR = Invocation(Actor(ActorKind.USER, "operator"))
ConfirmationArg = Annotated[UUID, typer.Argument(help="The edge's confirmation id.")]


def _send(confirmation_id: UUID, kind: RequestKind, reason: str | None) -> None:
    with _one_line_errors():
        janus = Janus.for_cli()
        try:
            sent = edge_requests(janus).send(
                SendEdgeRequest(confirmation_id=confirmation_id, kind=kind, reason=reason),
                CLOUD_OPERATOR,
            )
        finally:
            janus.close()
    typer.echo(f"request {sent.aggregate_id} {sent.outcome}: {kind.value} {confirmation_id}")


@app.command("grant")
def grant(confirmation_id: ConfirmationArg) -> None:
    """Ask the edge that owns a pending confirmation to grant it (it applies it, or conflicts)."""
    _send(confirmation_id, RequestKind.GRANT, None)


@app.command("deny")
def deny(
    confirmation_id: ConfirmationArg,
    reason: Annotated[str, typer.Option(help="Why, as the edge will record it.")],
) -> None:
    """Ask the edge that owns a pending confirmation to deny it."""
    _send(confirmation_id, RequestKind.DENY, reason)


@app.command("requests")
def requests(as_json: JsonFlag = False) -> None:
    """The requests this node sent to edges: sent, applied, or conflicted (and why)."""
    with _one_line_errors():
        janus = Janus.for_cli()
        try:
            found = edge_request_statuses(janus)
        finally:
            janus.close()
    rows = [_request_dict(r) for r in found]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no request sent to an edge")
        return
    table = Table("request", "node", "confirmation", "kind", "status", "conflict")
    for row in rows:
        table.add_row(
            *(str(row[k] or "") for k in ("id", "node", "confirmation_id", "kind")),
            row["status"],
            row["conflict"] or "",
        )
    Console(highlight=False, width=200).print(table)


def _request_dict(r: EdgeRequest) -> dict[str, Any]:
    return {
        "id": str(r.id),
        "node": r.node,
        "confirmation_id": str(r.confirmation_id),
        "kind": r.kind.value,
        "status": r.status.value,
        "conflict": r.conflict,
        "requested_by": r.requested_by,
    }


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="The edge's `janus events export` file (.gz read as gzip).")
    ],
    require_signature: RequireSignature = False,
    actor_name: ActorName = None,
    as_json: JsonFlag = False,
) -> None:
    """Repair an edge's gap here in the cloud with the edge's own export.

    Checks the whole file, then in one transaction appends the edge events the cloud lacks (in
    the edge's order), and the events that waited for them; a later delivery of any of them is
    a no-op. A gap the file covers is recorded as repaired. Refused whole, never in part.
    --json prints {"node", "events", "sha256", "signature", "written", "already_present",
    "released", "gaps_closed", "gaps_open", "parked"}.
    """
    with (
        cli_errors(ctx, files=True),
        open_store(scan=True) as store,
        progress_bar("checking", export_size_hint(file)) as progress,
    ):
        result = import_edge_export(store, file, operator(actor_name), progress, require_signature)
    if as_json:
        print_json(result.json())
        return
    _print_repair(result)


def _print_repair(result: EdgeImport) -> None:
    typer.echo(
        f"imported {result.events} events from edge {result.node} ({result.signature}): "
        f"{result.written} written, {result.duplicates} already here, {result.released} "
        "released from waiting"
    )
    for gap in result.closed:
        typer.echo(f"gap closed: origin sequences {gap['expected']}..{gap['found'] - 1}")
    for gap in result.still_open:
        typer.echo(
            f"GAP still open: expected {gap['expected']}, found {gap['found']} ({gap['reason']})"
        )
    if result.parked:
        typer.echo(f"{result.parked} event(s) still wait for earlier versions of their aggregate")
