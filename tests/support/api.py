"""The API served for real (uvicorn on a loopback port, in a thread) over a test's own Janus.

Shared by the API integration tests; holds no tests itself. Every request goes over HTTP, so
headers, streaming and status codes are what a client sees.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import httpx
import uvicorn
from fastapi import FastAPI
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.app import create_app
from api.settings import ApiSettings
from bootstrap.api import api_parts
from bootstrap.container import Janus
from commands import models as m
from commands.invocation import Invocation
from commands.keys import CreateApiKey, KeyService
from domain.api_key import Role
from domain.meta import Actor, ActorKind
from tests.servers import unique_name, wait_until

AGENT = Invocation(Actor(ActorKind.AGENT, "planner"))
ADMIN_CLI = Invocation(Actor(ActorKind.USER, "root", role="admin"))


class ServerThread:
    """uvicorn on 127.0.0.1:<free port> in a daemon thread; stopped like a SIGTERM would."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.url = ""

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=20, message="uvicorn started")
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)


@dataclass
class Api:
    janus: Janus
    app: FastAPI
    url: str
    client: httpx.Client
    keys: KeyService
    tokens: dict[Role, str]
    names: dict[Role, str]
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    extra_tokens: list[str] = field(default_factory=list)

    def auth(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def new_key(self, role: Role) -> tuple[str, str]:
        name = unique_name(role.value).replace("_", "-")
        token = self.keys.create_key(CreateApiKey(name=name, role=role), ADMIN_CLI).token
        self.extra_tokens.append(token)
        return name, token

    def get(self, path: str, role: Role = Role.VIEWER, **kwargs: Any) -> httpx.Response:
        return self.client.get(
            path, headers={**self.auth(role), **kwargs.pop("headers", {})}, **kwargs
        )

    def post(self, path: str, role: Role = Role.OPERATOR, **kwargs: Any) -> httpx.Response:
        return self.client.post(
            path, headers={**self.auth(role), **kwargs.pop("headers", {})}, **kwargs
        )

    def delete(self, path: str, role: Role = Role.OPERATOR, **kwargs: Any) -> httpx.Response:
        return self.client.delete(
            path, headers={**self.auth(role), **kwargs.pop("headers", {})}, **kwargs
        )

    def submit_goal(self, text: str = "water the plants", **headers: str) -> dict[str, Any]:
        response = self.post("/v1/goals", json={"text": text}, headers=headers)
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        return body


@contextmanager
def serve_api(janus: Janus, settings: ApiSettings | None = None) -> Iterator[Api]:
    spans = InMemorySpanExporter()
    traces = TracerProvider()
    traces.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    keys = KeyService(janus.commands.runner)
    tokens, names = {}, {}
    for role in Role:
        name = unique_name(role.value).replace("_", "-")
        tokens[role] = keys.create_key(CreateApiKey(name=name, role=role), ADMIN_CLI).token
        names[role] = name
    app = create_app(
        api_parts(janus),
        settings or ApiSettings(read_wait_seconds=10),
        auth=True,
        drive_views=True,
        traces=traces,
        metrics=MeterProvider(metric_readers=[reader]),
    )
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield Api(janus, app, server.url, client, keys, tokens, names, spans, reader)


def view_status(listed: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """One view's entry in a GET /v1/projections answer (which lists every registered one)."""
    [found] = [view for view in listed if view["name"] == name]
    return found


# The catalogue decides the hazard (a caller may only raise it): pick an action whose class is
# at most the one asked for (lock_door is low; asked as medium it is raised to medium). Both door
# actions land in the door lock's own ledger, which the tests count.
ACTION_OF_HAZARD = {"high": "unlock_door", "medium": "lock_door", "low": "lock_door"}


def request_confirmation(
    janus: Janus, hazard: str = "high", ttl: int = 600, action: str | None = None
) -> tuple[UUID, UUID]:
    """The agent's part: a goal, a decision, and a confirmation request. (goal id, conf. id)"""
    action = action or ACTION_OF_HAZARD[hazard]
    parameters = {"to": "ops"} if action == "notify" else {"door": "front"}
    goal = janus.commands.submit_goal(m.SubmitGoal(text=f"please {action}"), AGENT)
    chosen = m.Action(name=action, parameters=parameters)
    decision = janus.commands.record_decision(
        m.RecordDecision(
            goal_id=goal.aggregate_id,
            decision_id=uuid4(),
            model="scripted",
            prompt=f"{action}?",
            raw_output="{}",
            action=chosen,
        ),
        AGENT,
    )
    confirmation = janus.commands.request_confirmation(
        m.RequestConfirmation(
            goal_id=goal.aggregate_id,
            decision_id=decision.aggregate_id,
            action=chosen,
            hazard=hazard,
            ttl_seconds=ttl,
        ),
        AGENT,
    )
    return goal.aggregate_id, confirmation.aggregate_id


def is_problem(response: httpx.Response, status: int, code: str | None = None) -> bool:
    body = response.json()
    return (
        response.status_code == status
        and response.headers["content-type"] == "application/problem+json"
        and body["status"] == status
        and (code is None or body["type"] == f"urn:janus:problem:{code}")
        and bool(body["detail"])
    )


@dataclass(frozen=True)
class Endpoint:
    """One operation and the least role that may call it (None: public)."""

    method: str
    path: str
    role: Role | None
    body: dict[str, Any] | None = None
    query: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


JOB_BODY: dict[str, Any] = {
    "name": "heartbeat",
    "trigger": {"kind": "interval", "seconds": 3600},
    "action": {"name": "notify", "parameters": {"to": "ops"}},
}

DECISION_BODY: dict[str, Any] = {
    "model": "external-agent",
    "prompt": "Goal: unlock the front door. Tools: unlock_door(door).",
    "raw_output": '{"action": "unlock_door", "parameters": {"door": "front"}}',
    "action": {"name": "unlock_door", "parameters": {"door": "front"}},
}

ENDPOINTS = [
    Endpoint("POST", "/v1/goals", Role.OPERATOR, {"text": "water the plants"}),
    Endpoint("GET", "/v1/goals", Role.VIEWER),
    Endpoint("GET", "/v1/goals/{goal_id}", Role.VIEWER),
    Endpoint("POST", "/v1/goals/{goal_id}/cancel", Role.OPERATOR),
    Endpoint("POST", "/v1/goals/{goal_id}/decisions", Role.OPERATOR, DECISION_BODY),
    Endpoint("POST", "/v1/goals/{goal_id}/complete", Role.OPERATOR, {"summary": "done"}),
    Endpoint("POST", "/v1/goals/{goal_id}/fail", Role.OPERATOR, {"reason": "no water"}),
    Endpoint("POST", "/v1/goals/{goal_id}/answer", Role.OPERATOR, {"answer": "the back door"}),
    Endpoint("GET", "/v1/goals/{goal_id}/timeline", Role.VIEWER),
    Endpoint("GET", "/v1/goals/{goal_id}/graph", Role.VIEWER, query={"format": "mermaid"}),
    Endpoint("GET", "/v1/confirmations", Role.VIEWER, query={"status": "pending"}),
    Endpoint("GET", "/v1/confirmations/{confirmation_id}", Role.VIEWER),
    Endpoint("POST", "/v1/confirmations/{confirmation_id}/grant", Role.OPERATOR),
    Endpoint("POST", "/v1/confirmations/{confirmation_id}/deny", Role.OPERATOR, {"reason": "no"}),
    Endpoint("DELETE", "/v1/confirmations/{confirmation_id}", Role.OPERATOR),
    Endpoint("GET", "/v1/effects", Role.VIEWER, query={"outcome": "unknown"}),
    Endpoint("POST", "/v1/effects/{effect_id}/reconcile", Role.APPROVER, {"happened": True}),
    Endpoint("POST", "/v1/jobs", Role.OPERATOR, JOB_BODY),
    Endpoint("GET", "/v1/jobs", Role.VIEWER),
    Endpoint("GET", "/v1/jobs/{job_id}", Role.VIEWER),
    Endpoint("POST", "/v1/jobs/{job_id}/pause", Role.OPERATOR),
    Endpoint("POST", "/v1/jobs/{job_id}/resume", Role.OPERATOR),
    Endpoint("POST", "/v1/jobs/{job_id}/run", Role.OPERATOR),
    Endpoint("DELETE", "/v1/jobs/{job_id}", Role.OPERATOR),
    Endpoint("POST", "/v1/documents", Role.OPERATOR),
    Endpoint("GET", "/v1/documents", Role.VIEWER),
    Endpoint("GET", "/v1/documents/{document_id}", Role.VIEWER),
    Endpoint("GET", "/v1/documents/{document_id}/content", Role.VIEWER),
    Endpoint("POST", "/v1/documents/{document_id}/retract", Role.OPERATOR, {"reason": "stale"}),
    Endpoint("GET", "/v1/events", Role.VIEWER),
    Endpoint("GET", "/v1/events/stream", Role.VIEWER, query={"follow": "false"}),
    Endpoint("GET", "/v1/keys", Role.ADMIN),
    Endpoint("DELETE", "/v1/keys/{key_id}", Role.ADMIN),
    Endpoint("GET", "/v1/projections", Role.VIEWER),
    Endpoint("GET", "/v1/edges", Role.VIEWER),
    Endpoint("GET", "/v1/edges/requests", Role.VIEWER),
    Endpoint("POST", "/v1/edges/{node}/confirmations/{confirmation_id}/grant", Role.OPERATOR),
    Endpoint(
        "POST",
        "/v1/edges/{node}/confirmations/{confirmation_id}/deny",
        Role.OPERATOR,
        {"reason": "no"},
    ),
    Endpoint("POST", "/v1/search", Role.VIEWER, {"query": "front door"}),
    Endpoint("GET", "/healthz", None),
    Endpoint("GET", "/readyz", None),
]
