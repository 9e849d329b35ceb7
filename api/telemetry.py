"""OpenTelemetry for the API: a span per request, its traceparent stored in the events it caused.

Spans are always recorded (so every event carries a real trace context); where they go is the
exporter setting: nowhere, the console, or OTLP when its exporter package is installed.
"""

from __future__ import annotations

from time import perf_counter

from opentelemetry import context, trace
from opentelemetry.metrics import Counter, Meter, MeterProvider, NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_PROPAGATOR = TraceContextTextMapPropagator()


class ExporterMissing(RuntimeError):
    pass


def _otlp_exporter() -> SpanExporter:
    try:
        # Optional package, needed only when JANUS_API_TRACE_EXPORTER=otlp asks for it.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )
    except ImportError:
        raise ExporterMissing(
            "JANUS_API_TRACE_EXPORTER=otlp needs the opentelemetry-exporter-otlp-proto-http "
            "package; install it or choose console or none"
        ) from None
    exporter: SpanExporter = OTLPSpanExporter()
    return exporter


def tracer_provider(exporter: str, node_id: str) -> TracerProvider:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "janus-api", "janus.node_id": node_id})
    )
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter()))
    return provider


def meter_provider(exporter: str) -> MeterProvider:
    if exporter == "console":
        reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), 60_000)
        return SdkMeterProvider(metric_readers=[reader])
    # Only the console exports metrics. An SDK provider without a reader can never be read (a
    # reader cannot be added later), yet it would aggregate every measurement of every request.
    return NoOpMeterProvider()


def current_trace_context() -> dict[str, str]:
    """The W3C traceparent (and tracestate) of the current span: the request's span."""
    carrier: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        _PROPAGATOR.inject(carrier)
    return carrier


def auth_denials(meter: Meter) -> Counter:
    return meter.create_counter(
        "janus.api.auth.denied",
        unit="{request}",
        description="Requests refused for missing or bad credentials (401) or role (403).",
    )


_TRACE_HEADERS = (b"traceparent", b"tracestate")


class RequestSpans:
    """A server span per request (the caller's traceparent as its parent), and its duration.

    Kept lean on purpose: it runs for every request, and FastAPI's own instrumentation costs
    several times more per request than the rest of a goal submission's HTTP handling.
    """

    def __init__(self, app: ASGIApp, tracer: Tracer, meter: Meter) -> None:
        self.app = app
        self.tracer = tracer
        self.duration = meter.create_histogram(
            "http.server.request.duration", unit="s", description="Duration of HTTP requests."
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _TRACE_HEADERS
        }
        parent = _PROPAGATOR.extract(carrier) if carrier else None
        method = scope["method"]
        span = self.tracer.start_span(method, context=parent, kind=SpanKind.SERVER)
        token = context.attach(trace.set_span_in_context(span, parent))
        status = 500
        started = perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or ""
            attributes = {
                "http.request.method": method,
                "http.route": route,
                "http.response.status_code": status,
            }
            if route:
                span.update_name(f"{method} {route}")
            span.set_attributes(attributes)
            if status >= 500:
                span.set_status(StatusCode.ERROR)
            span.end()
            context.detach(token)
            self.duration.record(perf_counter() - started, attributes)
