"""One OpenTelemetry span per model call, with the GenAI semantic-convention attributes.

The span continues the trace of the fact that woke the goal (the submission's request, a grant),
and its own trace context is stored in the decision it produced, so a goal's story is one trace.
Spans go wherever the process's tracer provider sends them (nowhere unless one is configured).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from adapters.llm import Completion, DecisionModel

_PROPAGATOR = TraceContextTextMapPropagator()
OPERATION = "text_completion"


@dataclass
class ModelSpan:
    span: Span
    trace: dict[str, str] = field(default_factory=dict)

    def finished(self, completion: Completion) -> None:
        self.span.set_attributes(
            {
                "gen_ai.usage.input_tokens": completion.input_tokens,
                "gen_ai.usage.output_tokens": completion.output_tokens,
                "gen_ai.response.finish_reasons": [completion.finish_reason],
                "janus.model.prompt_ms": completion.prompt_ms,
                "janus.model.generation_ms": completion.generation_ms,
            }
        )

    def failed(self, error_type: str, message: str) -> None:
        self.span.set_status(StatusCode.ERROR, message)
        self.span.set_attribute("error.type", error_type)


def request_attributes(model: DecisionModel, parameters: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": OPERATION,
        "gen_ai.system": "llama.cpp" if "llama" in model.runtime else "janus",
        "gen_ai.provider.name": "llama.cpp" if "llama" in model.runtime else "janus",
        "gen_ai.request.model": model.name,
        "gen_ai.request.temperature": float(parameters.get("temperature", 0.0)),
        "gen_ai.request.top_p": float(parameters.get("top_p", 1.0)),
        "gen_ai.request.max_tokens": int(parameters.get("max_tokens", 0)),
        "gen_ai.request.seed": int(parameters.get("seed", 0)),
        "gen_ai.output.type": "json",
    }


@contextmanager
def model_span(
    tracer: Tracer | None,
    model: DecisionModel,
    parameters: Mapping[str, Any],
    parent: Mapping[str, str],
) -> Iterator[ModelSpan]:
    tracer = tracer or trace.get_tracer("janus.agent")
    context = _PROPAGATOR.extract(dict(parent))
    with tracer.start_as_current_span(
        f"{OPERATION} {model.name}",
        context=context,
        kind=SpanKind.CLIENT,
        attributes=request_attributes(model, parameters),
    ) as span:
        carrier: dict[str, str] = {}
        if span.get_span_context().is_valid:
            _PROPAGATOR.inject(carrier)
        yield ModelSpan(span, carrier or dict(parent))
