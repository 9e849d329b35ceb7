"""Wires the HTTP API: the parts it uses (``api/parts.py``), picked and built from a Janus, and
``serve``, the process ``janus serve`` runs.

The API never sees the container. Here its key service, its engine for kept responses, its
documents' write path and the status readers of the other roles are chosen; the API only uses
them.
"""

from __future__ import annotations

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from api.app import create_app
from api.context import WORKER_THREADS
from api.parts import ApiParts, Knowledge, NodeFacts, Statuses
from api.serve import run_server
from api.settings import ApiSettings, auth_required, runtime_in_process
from api.telemetry import meter_provider, tracer_provider
from bootstrap.agent import agent_status
from bootstrap.container import Janus
from bootstrap.documents import build_document_ingest, document_view_readers
from bootstrap.edge import edge_request_statuses, edge_requests, edge_status
from bootstrap.process import JanusProcess
from bootstrap.relay import relay_status
from bootstrap.settings import Settings
from bootstrap.status import NO_EXECUTOR, runtime_status
from commands.agent_commands import AgentCommands
from commands.ingest import DocumentIngest
from commands.keys import KeyService


def responses_engine(janus: Janus) -> Engine:
    """Kept responses share the views database. On Postgres they get their own pool, sized for
    the API's worker threads and without the views pool's pre-ping round trip, so a keyed
    write does not queue behind reads for a connection. SQLite keeps its single file's engine.

    Each statement of the response store stands alone, so the pool autocommits: one round trip
    per statement instead of BEGIN, the statement and COMMIT (or ROLLBACK on check-in).
    """
    if janus.settings.embedded:
        return janus.views_engine
    return create_engine(
        janus.settings.views_url,
        pool_size=WORKER_THREADS // 2,
        max_overflow=WORKER_THREADS // 2,
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": janus.settings.connect_timeout_seconds},
    )


def api_parts(janus: Janus) -> ApiParts:
    """What the API uses of ``janus``. Its responses pool (on Postgres) is the API's own: the
    app releases it on shutdown; everything else stays ``janus``'s to close."""
    settings = janus.settings
    responses = responses_engine(janus)

    def release() -> None:
        if responses is not janus.views_engine:
            responses.dispose()

    def documents() -> DocumentIngest:
        return build_document_ingest(settings, janus.commands)

    knowledge = janus.knowledge
    return ApiParts(
        commands=janus.commands,
        keys=KeyService(janus.commands.runner),
        agent_commands=AgentCommands(janus.commands.runner),
        edge_requests=edge_requests(janus),
        reader=janus.reader,
        views_engine=janus.views_engine,
        responses_engine=responses,
        clock=janus.clock,
        relational=janus.relational,
        # Every registered projection; /readyz counts a knowledge view once it has started.
        projections=list(janus.projections.runners.values()),
        knowledge=Knowledge(
            views=janus.knowledge_views,
            vector_search=knowledge.search,
            hybrid_search=knowledge.hybrid,
            graph=lambda: knowledge.graph,
        ),
        scheduler=janus.scheduler,
        documents=documents,
        document_views=document_view_readers,
        statuses=Statuses(
            executor_running=lambda: runtime_status(janus).executor_running,
            no_executor=NO_EXECUTOR,
            agent=lambda: agent_status(janus),
            relay=lambda: relay_status(janus),
            edges=lambda: edge_status(janus),
            edge_requests=lambda: edge_request_statuses(janus),
        ),
        node=NodeFacts(
            node_id=settings.node_id,
            embedded=settings.embedded,
            nats_configured=settings.nats_url is not None,
            agent_enabled=settings.agent_enabled,
            ingest_max_bytes=settings.ingest_max_bytes,
        ),
        release=release,
    )


def serve(settings: Settings | None = None, api_settings: ApiSettings | None = None) -> None:
    """The API server over this node's store; in the embedded default it runs the runtime too.

    With NATS configured (the full stack), views, executor, expiry and scheduler run as their
    own processes and this one serves the API only; ``JANUS_API_RUNTIME`` overrides either way.
    """
    settings = settings or Settings()
    api_settings = api_settings or ApiSettings()
    required = auth_required(api_settings, settings.embedded)
    in_process = runtime_in_process(api_settings, settings.nats_url is not None)
    traces = tracer_provider(api_settings.trace_exporter, settings.node_id)
    metrics = meter_provider(api_settings.trace_exporter)
    trace.set_tracer_provider(traces)
    otel_metrics.set_meter_provider(metrics)
    janus = Janus.build(settings)
    runtime = JanusProcess(janus) if in_process else None
    app = create_app(
        api_parts(janus),
        api_settings,
        auth=required,
        runtime=runtime,
        own_runtime=True,
        traces=traces,
        metrics=metrics,
    )
    try:
        store = settings.redacted_database_url()
        run_server(app, api_settings, auth=required, in_process=in_process, store=store)
    finally:
        if runtime is None:
            janus.close()
        traces.shutdown()
