"""``janus edge``: run an edge node, ingest edges into the cloud, and show how each edge stands."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from bootstrap.container import Janus
from bootstrap.edge import (
    build_ingester,
    edge_node_settings,
    edge_status,
    local_edge_server,
)
from bootstrap.process import JanusProcess
from bootstrap.relay import build_relay
from bootstrap.settings import Settings
from cli.common import BadInput, JsonFlag, cli_errors
from event_store.edge_sync import EdgeStatus
from event_store.relay import RelayThread

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
    table = Table("node", "origin seq", "lag", "lag s", "link", "last contact", "gaps", "conflicts")
    for s in statuses:
        table.add_row(
            s.node,
            str(s.origin_sequence),
            "?" if s.lag_events is None else str(s.lag_events),
            "?" if s.lag_seconds is None else f"{s.lag_seconds:.1f}",
            s.link,
            s.last_contact.isoformat(timespec="seconds") if s.last_contact else "never",
            str(len(s.gaps)),
            str(len(s.conflicts)),
        )
    Console(highlight=False, width=160).print(table)
    for s in statuses:
        for gap in s.gaps:
            typer.echo(
                f"GAP {s.node}: expected origin sequence {gap['expected']}, found "
                f"{gap['found']} ({gap['reason']}); repair with `janus events export` on the edge "
                "and `janus events import` here"
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


def _run_edge(janus: Janus) -> None:
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    process = JanusProcess(janus)
    relay = RelayThread(build_relay(janus)).start()
    process.start()
    try:
        relay.wait_ready()
        print(
            f"edge ready node={janus.settings.node_id} nats={janus.settings.nats_url}", flush=True
        )
        stopped.wait()
    finally:
        process.stop_event.set()
        process.stop()
        relay.stop()
