"""``janus relay``: publish the event log to NATS JetStream until stopped.

Also runnable alone, as ``python -m cli.relay`` (the crash tests start it that way).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from bootstrap.container import Janus
from bootstrap.relay import build_relay
from bootstrap.settings import Settings
from cli.common import fail
from commands.errors import StoreUnavailable
from event_store.relay import Relay


def relay(
    nats_url: Annotated[
        str | None, typer.Option(help="nats://host:port (default: $JANUS_NATS_URL).")
    ] = None,
    max_in_flight: Annotated[
        int | None,
        typer.Option(help="Most unacknowledged publishes (default: $JANUS_RELAY_MAX_IN_FLIGHT)."),
    ] = None,
) -> None:
    """Relay the event log to NATS JetStream until SIGTERM or Ctrl-C; one active relay per log.

    Resumes from its saved position; a second relay on the same log waits until the first stops.
    Prints "relay ready" once it holds the lock, is connected and the stream exists.
    """
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    overrides: dict[str, Any] = {"nats_url": nats_url, "relay_max_in_flight": max_in_flight}
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
        if not settings.nats_url:
            raise typer.BadParameter("no NATS server: pass --nats-url or set JANUS_NATS_URL")
        janus = Janus.build(settings)
    except (ValidationError, StoreUnavailable, typer.BadParameter) as error:
        fail(str(error))
    try:
        asyncio.run(_run(build_relay(janus)))
    finally:
        janus.close()


async def _run(relay: Relay) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def ready() -> None:
        # Tests and supervisors wait for this line instead of guessing when the relay is up.
        print(f"relay ready {relay.name}", flush=True)

    await relay.run(stop, on_ready=ready)


if __name__ == "__main__":
    typer.run(relay)
