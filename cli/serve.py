"""``janus serve``: the HTTP API, with the in-process runtime in the embedded default.

Also ``python -m api``. What it serves is wired in ``bootstrap/api.py`` (the node, the runtime,
the API's parts); the server itself (uvicorn, the ready line) is ``api/serve.py``.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from api.settings import ApiSettings, UnsafeBinding
from api.telemetry import ExporterMissing
from bootstrap.api import serve
from bootstrap.settings import Settings
from cli.common import fail
from commands.errors import StoreUnavailable


def serve_command(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default 127.0.0.1; JANUS_API_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default 8000; 0 picks one; JANUS_API_PORT).")
    ] = None,
    auth: Annotated[
        str | None,
        typer.Option(help="keys, off (embedded on 127.0.0.1 only) or auto (JANUS_API_AUTH)."),
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            help="on, off or auto: run views, executor, expiry and scheduler in this process "
            "(JANUS_API_RUNTIME)."
        ),
    ] = None,
) -> None:
    """Serve the HTTP API; in the embedded default also run views, executor, expiry, scheduler."""
    overrides: dict[str, Any] = {
        k: v
        for k, v in {"host": host, "port": port, "auth": auth, "runtime": runtime}.items()
        if v is not None
    }
    try:
        api_settings = ApiSettings(**overrides)
        serve(Settings(), api_settings)
    except (ValidationError, UnsafeBinding, ExporterMissing, StoreUnavailable) as error:
        fail(_one_line(error))


def _one_line(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
    return str(error)


def main() -> None:
    """``python -m api``: the same command, alone."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    typer.run(serve_command)
