"""The HTTP API server (uvicorn): the banner, the ready line, the process-long settings.

``bootstrap/api.py`` builds what it serves (the node, the runtime, the app) and calls
``run_server``; the command line around it is ``cli/serve.py`` (``janus serve``, ``python -m api``).
"""

from __future__ import annotations

import gc
import logging
import socket

import uvicorn
from fastapi import FastAPI

from api.settings import ApiSettings

log = logging.getLogger("janus.api")

AUTH_OFF_BANNER = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!!  AUTHENTICATION IS OFF. Anyone who can reach {host}:{port} acts as admin.
!!  Allowed only for the embedded store bound to the loopback address. Create a key with
!!  `janus keys create NAME --role admin` and set JANUS_API_AUTH=keys to turn it on.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
"""


class _Server(uvicorn.Server):
    """Prints one ready line (with the bound port, so port 0 works) once it accepts requests."""

    def __init__(self, config: uvicorn.Config, summary: str) -> None:
        super().__init__(config)
        self.summary = summary

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit:
            return
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        print(f"janus api ready on http://{host}:{port} ({self.summary})", flush=True)


def run_server(
    app: FastAPI, api_settings: ApiSettings, *, auth: bool, in_process: bool, store: str
) -> None:
    """Serve ``app`` until the process is told to stop.

    ``auth``: keys are required; ``in_process``: the app runs the runtime; ``store``: where the
    events are, as safe to log (no password).
    """
    if not auth:
        banner = AUTH_OFF_BANNER.format(host=api_settings.host, port=api_settings.port)
        log.warning(banner)
    log.info(
        "janus api on %s:%s, store %s, runtime %s",
        api_settings.host,
        api_settings.port,
        store,
        "in process" if in_process else "elsewhere",
    )
    summary = f"auth {'on' if auth else 'OFF'}, runtime {'on' if in_process else 'off'}"
    config = uvicorn.Config(
        app,
        host=api_settings.host,
        port=api_settings.port,
        log_level="info",
        access_log=api_settings.access_log,
        timeout_graceful_shutdown=3,
        server_header=False,
        lifespan="on",
    )
    # What exists now (modules, the app, its schemas, the pools) lives as long as the process.
    # Frozen, it is left out of the collector's full collections, each of which would otherwise
    # walk it all again and stall the event loop for about 100 ms.
    gc.freeze()
    _Server(config, summary).run()
