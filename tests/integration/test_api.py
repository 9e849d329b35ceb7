"""The HTTP API over real HTTP, on both stores: what a client sees for each behaviour."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import delete

from adapters.clock import ManualClock
from api.idempotency import api_responses
from bootstrap.container import Janus
from commands.executor import Executor
from domain.api_key import Role
from domain.effect import Effect
from domain.meta import Actor, ActorKind, CommandContext
from tests.support.api import Api, is_problem, request_confirmation, serve_api


@pytest.fixture
def api(janus: Janus) -> Iterator[Api]:
    with serve_api(janus) as served:
        yield served


JOB = {
    "name": "heartbeat",
    "trigger": {"kind": "interval", "seconds": 3600},
    "action": {"name": "notify", "parameters": {"to": "ops"}},
}


def _nested(depth: int) -> Any:
    return {"a": _nested(depth - 1)} if depth else 1


def sse_events(text: str) -> list[dict[str, str]]:
    """Parse a text/event-stream body into its messages (comments dropped)."""
    messages = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
        if fields:
            messages.append(fields)
    return messages


# -- goals ---------------------------------------------------------------------------------------


def test_a_submitted_goal_is_readable_at_the_position_the_submit_returned(api: Api) -> None:
    response = api.post("/v1/goals", json={"text": "water the plants", "priority": 7})
    assert response.status_code == 202
    accepted = response.json()
    assert response.headers["location"] == f"/v1/goals/{accepted['id']}"
    assert accepted["outcome"] == "submitted" and accepted["position"] > 0

    goal = api.get(f"/v1/goals/{accepted['id']}", params={"min_position": accepted["position"]})
    assert goal.status_code == 200, goal.text
    body = goal.json()
    assert body["text"] == "water the plants" and body["priority"] == 7
    assert body["submitted_by"] == f"user:{api.names[Role.OPERATOR]}"
    assert body["latest_decision"] is None and body["pending_confirmations"] == []


def test_goal_detail_shows_the_latest_decision_and_the_pending_confirmations(
    api: Api, janus: Janus
) -> None:
    goal_id, confirmation_id = request_confirmation(janus, hazard="medium")
    detail = api.get(f"/v1/goals/{goal_id}", params={"min_position": janus.app.head()}).json()
    assert detail["latest_action"] == "lock_door"
    assert detail["latest_decision"]["action"]["name"] == "lock_door"
    assert [c["id"] for c in detail["pending_confirmations"]] == [str(confirmation_id)]
    assert detail["pending_confirmations"][0]["hazard"] == "medium"


def test_goals_filter_by_status_and_page_by_cursor_without_gaps_or_repeats(api: Api) -> None:
    submitted = [api.submit_goal(f"goal {i}") for i in range(5)]
    cancelled = api.post(f"/v1/goals/{submitted[0]['id']}/cancel", json={"reason": "no need"})
    assert cancelled.status_code == 200 and cancelled.json()["outcome"] == "cancelled"

    seen: list[str] = []
    params: dict[str, Any] = {
        "status": "submitted",
        "limit": 2,
        "min_position": cancelled.json()["position"],
    }
    while True:
        page = api.get("/v1/goals", params=params).json()
        seen += [goal["id"] for goal in page["items"]]
        if page["next_cursor"] is None:
            break
        params = {"status": "submitted", "limit": 2, "cursor": page["next_cursor"]}
    assert sorted(seen) == sorted(g["id"] for g in submitted[1:])
    only_cancelled = api.get("/v1/goals", params={"status": "cancelled"}).json()["items"]
    assert [g["id"] for g in only_cancelled] == [submitted[0]["id"]]


def test_cancelling_a_goal_twice_is_a_conflict_problem(api: Api) -> None:
    goal = api.submit_goal()
    assert api.post(f"/v1/goals/{goal['id']}/cancel").status_code == 200
    again = api.post(f"/v1/goals/{goal['id']}/cancel")
    assert is_problem(again, 409, "conflict")


def test_unknown_ids_are_404_problems(api: Api) -> None:
    unknown = uuid4()
    for path in (f"/v1/goals/{unknown}", f"/v1/confirmations/{unknown}", f"/v1/jobs/{unknown}"):
        assert is_problem(api.get(path), 404, "not-found"), path
    assert is_problem(api.post(f"/v1/confirmations/{unknown}/grant"), 404, "not-found")
    assert is_problem(api.post(f"/v1/goals/{unknown}/cancel"), 404, "not-found")


def test_invalid_requests_are_422_problems_naming_every_refused_field(api: Api) -> None:
    response = api.post("/v1/goals", json={"text": "", "priority": 12, "extra": True})
    assert is_problem(response, 422, "validation-error")
    locations = {tuple(error["loc"]) for error in response.json()["errors"]}
    assert locations == {("body", "text"), ("body", "priority"), ("body", "extra")}
    nul = api.post("/v1/goals", json={"text": "a\u0000b"})
    assert is_problem(nul, 422) and nul.json()["errors"][0]["loc"] == ["body", "text"]
    bad_cursor = api.get("/v1/goals", params={"cursor": "not-a-cursor"})
    assert is_problem(bad_cursor, 422) and bad_cursor.json()["errors"][0]["loc"] == [
        "query",
        "cursor",
    ]


POISON = [
    {"text": "lone \ud800 surrogate"},
    {"text": "x" * 8_001},
]
POISON_JOBS = [
    {"action": {"name": "notify", "parameters": {"x": float("nan")}}},
    {"action": {"name": "notify", "parameters": {"x": 1e309}}},
    {"action": {"name": "notify", "parameters": {"\u0000": 1}}},
    {"action": {"name": "notify", "parameters": {"deep": _nested(40)}}},
    {"trigger": {"kind": "interval", "seconds": 1e-300}},
    {"trigger": {"kind": "date", "run_at": "9999-12-31T23:59:59+00:00"}},
    {"trigger": {"kind": "date", "run_at": "2030-01-01T00:00:00"}},
    {"trigger": {"kind": "cron", "expression": "0 * * * *", "timezone": "../../etc/passwd"}},
]


def test_values_that_could_poison_a_view_or_the_scheduler_are_refused(
    api: Api, janus: Janus
) -> None:
    head = janus.app.head()
    for body in POISON:
        response = api.client.post(
            "/v1/goals",
            content=json.dumps(body).encode(),
            headers={**api.auth(Role.OPERATOR), "Content-Type": "application/json"},
        )
        assert is_problem(response, 422), body
    for change in POISON_JOBS:
        response = api.client.post(
            "/v1/jobs",
            content=json.dumps({**JOB, **change}).encode(),
            headers={**api.auth(Role.OPERATOR), "Content-Type": "application/json"},
        )
        assert is_problem(response, 422), change
    assert janus.app.head() == head


def test_a_body_over_the_size_limit_is_refused_with_413(api: Api, janus: Janus) -> None:
    head = janus.app.head()
    response = api.post("/v1/goals", content=b'{"text": "' + b"x" * 300_000 + b'"}')
    assert is_problem(response, 413, "content-too-large")
    assert janus.app.head() == head


def test_a_read_waiting_for_a_position_beyond_the_log_is_refused(api: Api, janus: Janus) -> None:
    response = api.get("/v1/goals", params={"min_position": janus.app.head() + 1000})
    assert is_problem(response, 422) and response.json()["errors"][0]["loc"] == [
        "query",
        "min_position",
    ]


# -- confirmations -------------------------------------------------------------------------------


def test_pending_confirmations_show_hazard_action_parameters_deadline_and_time_left(
    api: Api, janus: Janus
) -> None:
    _, confirmation_id = request_confirmation(janus, hazard="high", ttl=600)
    page = api.get(
        "/v1/confirmations", params={"status": "pending", "min_position": janus.app.head()}
    ).json()
    (row,) = [c for c in page["items"] if c["id"] == str(confirmation_id)]
    assert row["hazard"] == "high" and row["action"] == "unlock_door"
    assert row["parameters"] == {"door": "front"}
    assert row["time_left_seconds"] == pytest.approx(600, abs=1)
    assert row["expires_at"].startswith("2030-01-01T00:10:00")
    one = api.get(f"/v1/confirmations/{confirmation_id}").json()
    assert one == row


def test_an_operator_grants_medium_hazards_but_a_high_hazard_needs_an_approver(
    api: Api, janus: Janus
) -> None:
    _, medium = request_confirmation(janus, hazard="medium")
    _, high = request_confirmation(janus, hazard="high")
    assert api.post(f"/v1/confirmations/{medium}/grant").json()["outcome"] == "granted"
    refused = api.post(f"/v1/confirmations/{high}/grant")
    assert is_problem(refused, 403, "forbidden")
    granted = api.post(f"/v1/confirmations/{high}/grant", role=Role.APPROVER)
    assert granted.status_code == 200 and granted.json()["outcome"] == "granted"
    again = api.post(f"/v1/confirmations/{high}/grant", role=Role.ADMIN)
    assert again.status_code == 200 and again.json()["outcome"] == "already_granted"
    row = api.get(f"/v1/confirmations/{high}", params={"min_position": janus.app.head()}).json()
    assert row["status"] == "granted" and row["decided_by"] == f"user:{api.names[Role.APPROVER]}"
    assert row["time_left_seconds"] is None


def test_granting_after_the_deadline_is_410_gone(
    api: Api, janus: Janus, clock: ManualClock
) -> None:
    _, confirmation_id = request_confirmation(janus, hazard="low", ttl=60)
    clock.advance(timedelta(seconds=61))
    assert is_problem(api.post(f"/v1/confirmations/{confirmation_id}/grant"), 410, "expired")


def test_a_denied_confirmation_cannot_be_granted_and_says_who_denied_it(
    api: Api, janus: Janus
) -> None:
    _, confirmation_id = request_confirmation(janus, hazard="low")
    denied = api.post(f"/v1/confirmations/{confirmation_id}/deny", json={"reason": "not today"})
    assert denied.json()["outcome"] == "denied"
    assert is_problem(
        api.post(f"/v1/confirmations/{confirmation_id}/grant"), 409, "already-decided"
    )
    missing_reason = api.post(f"/v1/confirmations/{confirmation_id}/deny", json={})
    assert is_problem(missing_reason, 422)
    row = api.get(
        f"/v1/confirmations/{confirmation_id}", params={"min_position": janus.app.head()}
    ).json()
    assert row["status"] == "denied" and row["reason"] == "not today"


def test_deleting_a_pending_confirmation_cancels_it(api: Api, janus: Janus) -> None:
    _, confirmation_id = request_confirmation(janus, hazard="low")
    cancelled = api.delete(f"/v1/confirmations/{confirmation_id}", params={"reason": "moot"})
    assert cancelled.json()["outcome"] == "cancelled"
    row = api.get(
        f"/v1/confirmations/{confirmation_id}",
        params={"min_position": cancelled.json()["position"]},
    ).json()
    assert row["status"] == "cancelled" and row["reason"] == "moot"


# -- idempotency ---------------------------------------------------------------------------------


def test_a_retry_with_the_same_key_returns_the_first_response_and_records_nothing(
    api: Api, janus: Janus
) -> None:
    first = api.post("/v1/goals", json={"text": "once"}, headers={"Idempotency-Key": "k-1"})
    head = janus.app.head()
    retry = api.post("/v1/goals", json={"text": "once"}, headers={"Idempotency-Key": "k-1"})
    assert (retry.status_code, retry.content) == (first.status_code, first.content)
    assert retry.headers["location"] == first.headers["location"]
    assert retry.headers["idempotent-replayed"] == "true"
    assert janus.app.head() == head


def test_the_same_key_with_a_different_body_is_a_409(api: Api, janus: Janus) -> None:
    api.post("/v1/goals", json={"text": "once"}, headers={"Idempotency-Key": "k-2"})
    head = janus.app.head()
    other = api.post("/v1/goals", json={"text": "twice"}, headers={"Idempotency-Key": "k-2"})
    assert is_problem(other, 409, "idempotency-conflict")
    assert janus.app.head() == head


def test_idempotency_keys_are_scoped_to_the_api_key_that_sent_them(api: Api) -> None:
    _, other_token = api.new_key(Role.OPERATOR)
    mine = api.post("/v1/goals", json={"text": "x"}, headers={"Idempotency-Key": "shared"})
    theirs = api.client.post(
        "/v1/goals",
        json={"text": "x"},
        headers={"Idempotency-Key": "shared", "Authorization": f"Bearer {other_token}"},
    )
    assert theirs.status_code == 202 and theirs.json()["id"] != mine.json()["id"]


def test_a_lost_response_is_answered_from_the_command_record_with_the_same_outcome(
    api: Api, janus: Janus
) -> None:
    _, confirmation_id = request_confirmation(janus, hazard="low")
    key = {"Idempotency-Key": "grant-once"}
    first = api.post(f"/v1/confirmations/{confirmation_id}/grant", headers=key).json()
    with janus.views_engine.begin() as conn:  # as if the server died before keeping the answer
        conn.execute(delete(api_responses))
    head = janus.app.head()
    retry = api.post(f"/v1/confirmations/{confirmation_id}/grant", headers=key).json()
    assert (retry["id"], retry["outcome"]) == (first["id"], "granted")
    assert retry["position"] >= first["position"]
    assert janus.app.head() == head


# -- effects -------------------------------------------------------------------------------------


def _unknown_effect(janus: Janus) -> UUID:
    goal_id, confirmation_id = request_confirmation(janus, hazard="low", action="notify")
    ctx = CommandContext(
        command_id="test",
        correlation_id=str(goal_id),
        causation_id="test",
        actor=Actor(ActorKind.SYSTEM, "executor"),
        node_id="test",
    )
    effect = Effect.start(confirmation_id, goal_id, "notify", {}, ctx)
    effect.mark_outcome_unknown("the process died mid-call", ctx)
    janus.app.save(effect)
    return effect.id


def test_an_effect_of_unknown_outcome_is_listed_and_reconciled_by_an_approver(
    api: Api, janus: Janus
) -> None:
    effect_id = _unknown_effect(janus)
    unknown = api.get(
        "/v1/effects", params={"outcome": "unknown", "min_position": janus.app.head()}
    ).json()["items"]
    assert [e["id"] for e in unknown] == [str(effect_id)]
    body = {"happened": True, "note": "the team got the message"}
    assert is_problem(api.post(f"/v1/effects/{effect_id}/reconcile", json=body), 403)
    done = api.post(f"/v1/effects/{effect_id}/reconcile", json=body, role=Role.APPROVER)
    assert done.status_code == 200 and done.json()["outcome"] == "reconciled"
    reconciled = api.get(
        "/v1/effects", params={"outcome": "reconciled", "min_position": done.json()["position"]}
    ).json()["items"]
    assert reconciled[0]["happened"] is True
    again = api.post(f"/v1/effects/{effect_id}/reconcile", json=body, role=Role.APPROVER)
    assert is_problem(again, 409)


# -- jobs ----------------------------------------------------------------------------------------


def test_a_job_is_scheduled_paused_resumed_run_now_and_removed(api: Api, janus: Janus) -> None:
    scheduled = api.post("/v1/jobs", json=JOB)
    assert scheduled.status_code == 202
    job_id, position = scheduled.json()["id"], scheduled.json()["position"]
    job = api.get(f"/v1/jobs/{job_id}", params={"min_position": position}).json()
    assert job["status"] == "active" and job["trigger"]["seconds"] == 3600

    assert api.post(f"/v1/jobs/{job_id}/pause").json()["outcome"] == "paused"
    resumed = api.post(f"/v1/jobs/{job_id}/resume").json()
    assert resumed["outcome"] == "resumed"

    fired = api.post(f"/v1/jobs/{job_id}/run", params={"min_position": resumed["position"]})
    assert fired.status_code == 200, fired.text
    fire = fired.json()
    # notify is a low hazard: the gate granted it by policy; the executor runs it as an effect.
    assert fire["manual"] is True and fire["status"] == "waiting"
    detail = api.get(f"/v1/jobs/{job_id}", params={"min_position": janus.app.head()}).json()
    assert [f["id"] for f in detail["recent_fires"]] == [fire["fire_id"]]
    assert detail["recent_fires"][0]["manual"] is True

    events = api.get("/v1/events", params={"after": position, "limit": 1000}).json()["items"]
    (fired_event,) = [e for e in events if e["type"] == "JobFire.Fired"]
    assert fired_event["meta"]["actor"] == {
        "kind": "user",
        "id": api.names[Role.OPERATOR],
        "role": "operator",
    }

    removed = api.delete(f"/v1/jobs/{job_id}")
    assert removed.json()["outcome"] == "removed"
    listed = api.get("/v1/jobs", params={"min_position": removed.json()["position"]}).json()
    assert job_id not in [j["id"] for j in listed["items"]]
    with_removed = api.get("/v1/jobs", params={"include_removed": "true"}).json()["items"]
    assert job_id in [j["id"] for j in with_removed]
    refused = api.post(f"/v1/jobs/{job_id}/run", params={"min_position": janus.app.head()})
    assert is_problem(refused, 409)


def test_a_job_with_an_unknown_time_zone_or_a_bad_crontab_is_refused(api: Api) -> None:
    bad_zone = {**JOB, "trigger": {"kind": "cron", "expression": "0 * * * *", "timezone": "Mars"}}
    response = api.post("/v1/jobs", json=bad_zone)
    assert is_problem(response, 422)
    assert response.json()["errors"][0]["loc"][:3] == ["body", "trigger", "cron"]
    bad_cron = {**JOB, "trigger": {"kind": "cron", "expression": "61 * * * *"}}
    assert is_problem(api.post("/v1/jobs", json=bad_cron), 422)


# -- audit and events ----------------------------------------------------------------------------


def test_the_timeline_holds_every_event_of_the_goal_with_its_causes(api: Api, janus: Janus) -> None:
    goal_id, confirmation_id = request_confirmation(janus, hazard="low")
    api.post(f"/v1/confirmations/{confirmation_id}/grant")
    Executor(janus.app, janus.effects, "test").run_once()
    timeline = api.get(
        f"/v1/goals/{goal_id}/timeline", params={"min_position": janus.app.head()}
    ).json()
    types = [entry["type"] for entry in timeline["entries"]]
    assert types == [
        "Goal.Submitted",
        "Goal.DecisionRecorded",
        "Confirmation.Requested",
        "Confirmation.Granted",
        "Effect.Started",
        "Effect.Succeeded",
    ]
    by_type = {entry["type"]: entry for entry in timeline["entries"]}
    granted, started = by_type["Confirmation.Granted"], by_type["Effect.Started"]
    assert started["causation_id"] == granted["event_id"]
    assert started["caused_by_position"] == granted["position"]
    assert granted["actor"] == f"user:{api.names[Role.OPERATOR]}"


def test_events_page_in_log_order_and_never_show_a_key_hash(api: Api, janus: Janus) -> None:
    api.submit_goal("one")
    api.submit_goal("two")
    first = api.get("/v1/events", params={"after": 0, "limit": 3}).json()
    rest = api.get("/v1/events", params={"after": first["next_after"], "limit": 1000}).json()
    positions = [e["position"] for e in first["items"] + rest["items"]]
    assert positions == sorted(positions) and len(positions) == len(set(positions))
    assert positions[-1] == janus.app.head()
    key_events = [e for e in first["items"] + rest["items"] if e["type"] == "ApiKey.Created"]
    assert key_events and all("key_hash" not in e["data"] for e in key_events)
    shown = json.dumps([first, rest])
    assert all(api.tokens[r] not in shown for r in Role)


def test_the_request_span_trace_context_is_stored_in_the_events_it_caused(
    api: Api, janus: Janus
) -> None:
    trace_id = uuid4().hex
    parent = f"00-{trace_id}-{uuid4().hex[:16]}-01"
    accepted = api.post("/v1/goals", json={"text": "traced"}, headers={"traceparent": parent})
    events = api.get("/v1/events", params={"after": accepted.json()["position"] - 1}).json()
    (submitted,) = [e for e in events["items"] if e["type"] == "Goal.Submitted"]
    stored = submitted["meta"]["trace_context"]["traceparent"]
    (span,) = [
        s
        for s in api.spans.get_finished_spans()
        if s.name == "POST /v1/goals" and format(s.context.trace_id, "032x") == trace_id
    ]
    assert stored.split("-")[1:3] == [trace_id, format(span.context.span_id, "016x")]


def test_the_event_stream_resumes_after_last_event_id(api: Api) -> None:
    for i in range(3):
        api.submit_goal(f"streamed {i}")
    everything = sse_events(api.get("/v1/events/stream?after=0&follow=false").text)
    ids = [int(m["id"]) for m in everything]
    assert ids == sorted(ids) and len(ids) >= 3
    middle = ids[len(ids) // 2]
    resumed = api.get(
        "/v1/events/stream",
        params={"after": 0, "follow": "false"},
        headers={"Last-Event-ID": str(middle)},
    )
    assert resumed.headers["content-type"].startswith("text/event-stream")
    assert [int(m["id"]) for m in sse_events(resumed.text)] == [i for i in ids if i > middle]
    assert sse_events(resumed.text)[0]["event"] in {"Goal.Submitted", "ApiKey.Created"}


# -- operations ----------------------------------------------------------------------------------


def test_health_readiness_and_projection_status(api: Api, janus: Janus) -> None:
    assert api.client.get("/healthz").json() == {"status": "alive"}
    api.get("/v1/goals", params={"min_position": janus.app.head()})
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    # The knowledge views have not started on this node: listed, but not counted for readiness.
    assert {c["name"] for c in ready.json()["checks"]} == {"store", "view:relational"}
    listed = {p["name"]: p for p in api.get("/v1/projections").json()}
    assert set(listed) == {"relational", "objects", "vector", "graph"}
    assert {listed[name]["state"] for name in ("objects", "vector", "graph")} == {"not started"}
    relational = listed["relational"]
    assert relational["state"] == "running"
    assert relational["lag"] == relational["head"] - relational["position"]


def test_a_started_knowledge_view_counts_for_readiness(api: Api, janus: Janus) -> None:
    vector = janus.knowledge_views["vector"]
    vector.setup()  # started at position 0, behind the log: counted, and within the bound
    api.submit_goal("count the views")

    ready = api.client.get("/readyz").json()

    checks = {c["name"]: c for c in ready["checks"]}
    assert "view:vector" in checks and "view:graph" not in checks
    assert checks["view:vector"]["detail"].startswith("running, position 0")


# -- security ------------------------------------------------------------------------------------


def _denials(api: Api) -> dict[str, int]:
    counts: dict[str, int] = {}
    data = api.metrics.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "janus.api.auth.denied":
                    for point in metric.data.data_points:
                        reason = str(point.attributes["reason"])
                        counts[reason] = counts.get(reason, 0) + int(point.value)
    return counts


def test_refused_requests_are_counted_in_metrics_and_recorded_nowhere(
    api: Api, janus: Janus
) -> None:
    head = janus.app.head()
    assert is_problem(api.client.get("/v1/goals"), 401, "unauthorized")
    bad = api.client.get("/v1/goals", headers={"Authorization": "Bearer jns_nonsense"})
    assert is_problem(bad, 401) and bad.headers["www-authenticate"].startswith("Bearer")
    assert is_problem(api.post("/v1/goals", json={"text": "x"}, role=Role.VIEWER), 403)
    assert janus.app.head() == head
    assert _denials(api) == {"missing": 1, "malformed": 1, "forbidden": 1}


def test_a_key_revoked_through_the_api_stops_working_at_once(api: Api) -> None:
    name, token = api.new_key(Role.OPERATOR)
    as_it = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/v1/goals", headers=as_it).status_code == 200
    (listed,) = [k for k in api.get("/v1/keys", role=Role.ADMIN).json() if k["name"] == name]
    assert set(listed) == {"id", "name", "role", "status", "created_at", "revoked_at"}
    revoked = api.delete(f"/v1/keys/{listed['id']}", role=Role.ADMIN)
    assert revoked.json()["outcome"] == "revoked"
    assert is_problem(api.client.get("/v1/goals", headers=as_it), 401)
