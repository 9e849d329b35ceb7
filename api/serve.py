"""The HTTP API server (uvicorn) with the in-process runtime in the embedded default; the
command line around it is ``cli/serve.py`` (``janus serve``, ``python -m api``).

With NATS configured (the full stack), views, executor, expiry and scheduler run as their own
processes and this one serves the API only; ``JANUS_API_RUNTIME`` overrides either way.
"""

from __future__ import annotations

import gc
import logging
import socket

import uvicorn
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace

from api.app import create_app
from api.settings import ApiSettings, auth_required, runtime_in_process
from api.telemetry import meter_provider, tracer_provider
from bootstrap.container import Janus
from bootstrap.process import JanusProcess
from bootstrap.settings import Settings

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


def serve(settings: Settings | None = None, api_settings: ApiSettings | None = None) -> None:
    settings = settings or Settings()
    api_settings = api_settings or ApiSettings()
    required = auth_required(api_settings, settings)
    in_process = runtime_in_process(api_settings, settings)
    traces = tracer_provider(api_settings.trace_exporter, settings.node_id)
    metrics = meter_provider(api_settings.trace_exporter)
    trace.set_tracer_provider(traces)
    otel_metrics.set_meter_provider(metrics)
    janus = Janus.build(settings)
    runtime = JanusProcess(janus) if in_process else None
    app = create_app(
        janus,
        api_settings,
        auth=required,
        runtime=runtime,
        own_runtime=True,
        traces=traces,
        metrics=metrics,
    )
    if not required:
        banner = AUTH_OFF_BANNER.format(host=api_settings.host, port=api_settings.port)
        log.warning(banner)
    log.info(
        "janus api on %s:%s, store %s, runtime %s",
        api_settings.host,
        api_settings.port,
        settings.redacted_database_url(),
        "in process" if in_process else "elsewhere",
    )
    summary = f"auth {'on' if required else 'OFF'}, runtime {'on' if in_process else 'off'}"
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
    try:
        _Server(config, summary).run()
    finally:
        if runtime is None:
            janus.close()
        traces.shutdown()
