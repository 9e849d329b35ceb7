"""``janus project NAME|all``: run projectors until SIGTERM.

The feed follows the settings: JetStream when ``JANUS_NATS_URL`` is set, else the notification
log. Also runnable alone, as tests and process managers do: ``python -m cli.project NAME``.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType
from typing import Annotated

import typer

from bootstrap.container import Janus
from bootstrap.settings import Settings
from cli.common import fail
from commands.errors import StoreUnavailable
from projections.jetstream import FeedConfig, StreamMismatch
from projections.supervisor import ALL, ProjectorProcess, UnknownProjection

log = logging.getLogger("janus.projector")

# Tests and process managers wait for this line rather than guessing when feeding has begun.
READY_LINE = "projector ready"
DEFAULT_BATCH = FeedConfig().batch_size


def project(
    name: Annotated[
        str, typer.Argument(help=f"The projection to run, or '{ALL}' for every one.")
    ] = ALL,
    batch_size: Annotated[
        int,
        typer.Option(min=1, max=10_000, help="JetStream messages fetched and applied per batch."),
    ] = DEFAULT_BATCH,
) -> None:
    """Keep views current until SIGTERM: from JetStream when JANUS_NATS_URL is set, else from
    the event log. Prints 'projector ready' once every projection is being fed."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    try:
        janus = Janus.build(Settings())
    except StoreUnavailable as error:
        fail(str(error))
    try:
        _run(janus, name, FeedConfig(batch_size=batch_size))
    finally:
        janus.close()


def _run(janus: Janus, name: str, config: FeedConfig) -> None:
    try:
        process = ProjectorProcess.named(janus.projections, janus.feed_source(), name, config)
    except UnknownProjection as error:
        fail(str(error))

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signum)
        process.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    feed = "JetStream" if process.uses_jetstream else "the event log"
    log.info("projecting %s from %s", ", ".join(r.name for r in process.runners), feed)
    try:
        process.run(on_ready=lambda: print(READY_LINE, flush=True))
    except StreamMismatch as error:
        fail(str(error))


app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)
app.command()(project)


if __name__ == "__main__":
    app()
