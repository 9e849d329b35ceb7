"""What an API-only user does with a goal: an external agent records its decision, the action
waits for a human, a grant says whether anything will run it, and the goal is finished (completed,
failed or cancelled, which withdraws what is still pending). Both stores, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from adapters.role_status import RoleBoard, RoleState
from bootstrap.container import Janus
from commands import models as m
from commands.executor import Executor
from domain.api_key import Role
from domain.confirmation import HazardClass
from domain.errors import InvalidTransition
from domain.goal import Goal
from tests.support.api import (
    AGENT,
    DECISION_BODY,
    Api,
    is_problem,
    request_confirmation,
    serve_api,
)


@pytest.fixture
def api(janus: Janus) -> Iterator[Api]:
    with serve_api(janus) as served:
        yield served


def decide(api: Api, goal_id: str, **changes: Any) -> Any:
    headers = changes.pop("headers", {})
    return api.post(
        f"/v1/goals/{goal_id}/decisions", json={**DECISION_BODY, **changes}, headers=headers
    )


def test_an_agents_decision_over_http_asks_for_its_action_which_then_runs_once(
    api: Api, janus: Janus
) -> None:
    goal = api.submit_goal("unlock the front door")
    response = decide(api, goal["id"], rationale="the owner asked for it")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["outcome"] == "recorded" and body["confirmation_outcome"] == "requested"
    assert body["hazard"] == "high"
    assert response.headers["location"] == f"/v1/confirmations/{body['confirmation_id']}"

    detail = api.get(f"/v1/goals/{goal['id']}", params={"min_position": body["position"]}).json()
    assert detail["latest_decision"]["decision_id"] == body["id"]
    assert detail["latest_decision"]["model"] == "external-agent"
    [pending] = detail["pending_confirmations"]
    assert pending["id"] == body["confirmation_id"] and pending["action"] == "unlock_door"
    assert pending["parameters"] == {"door": "front"}
    recorded: Goal = janus.commands.runner.load(Goal, UUID(goal["id"]))
    assert recorded.decisions[0].rationale == "the owner asked for it"

    confirmation = f"/v1/confirmations/{body['confirmation_id']}/grant"
    assert is_problem(api.post(confirmation), 403, "forbidden")
    assert api.post(confirmation, role=Role.APPROVER).json()["outcome"] == "granted"
    Executor(janus.app, janus.effects, "test").run_once()
    door = janus.effects.for_action("unlock_door")
    assert door is not None
    assert [e.key for e in door.ledger.executions()] == [body["confirmation_id"]]  # type: ignore[attr-defined]


def test_a_repeated_decision_records_nothing_new_and_finishes_a_half_done_one(
    api: Api, janus: Janus
) -> None:
    goal = api.submit_goal()
    decision_id = uuid4()
    # A crash between the two steps: the decision is in the log, its action not yet requested.
    janus.commands.record_decision(
        m.RecordDecision.model_validate(
            {**DECISION_BODY, "goal_id": goal["id"], "decision_id": str(decision_id)}
        ),
        AGENT,
    )
    first = decide(api, goal["id"], decision_id=str(decision_id)).json()
    assert first["outcome"] == "already_recorded" and first["confirmation_outcome"] == "requested"
    again = decide(api, goal["id"], decision_id=str(decision_id)).json()
    assert again["confirmation_outcome"] == "already_requested"
    assert again["confirmation_id"] == first["confirmation_id"]

    keyed = decide(api, goal["id"], headers={"Idempotency-Key": "decide-1"})
    retried = decide(api, goal["id"], headers={"Idempotency-Key": "decide-1"})
    assert retried.json() == keyed.json() and retried.headers["idempotent-replayed"] == "true"
    changed = decide(api, goal["id"], model="other", headers={"Idempotency-Key": "decide-1"})
    assert is_problem(changed, 409)

    detail = api.get(f"/v1/goals/{goal['id']}", params={"min_position": janus.app.head()}).json()
    pending = sorted(c["id"] for c in detail["pending_confirmations"])
    assert pending == sorted([first["confirmation_id"], keyed.json()["confirmation_id"]])


def test_bad_decisions_are_problems_and_record_nothing(api: Api, janus: Janus) -> None:
    goal = api.submit_goal()
    head = janus.app.head()
    missing = api.post(f"/v1/goals/{goal['id']}/decisions", json={"model": "m", "prompt": "p"})
    assert is_problem(missing, 422, "validation-error")
    assert {tuple(e["loc"]) for e in missing.json()["errors"]} == {
        ("body", "raw_output"),
        ("body", "action"),
    }
    nameless = decide(api, goal["id"], action={"name": "", "parameters": {}})
    assert is_problem(nameless, 422) and nameless.json()["errors"][0]["loc"][:3] == [
        "body",
        "action",
        "name",
    ]
    assert is_problem(decide(api, str(uuid4())), 404, "not-found")
    assert janus.app.head() == head
    assert api.post(f"/v1/goals/{goal['id']}/fail", json={"reason": "gave up"}).status_code == 200
    assert is_problem(decide(api, goal["id"]), 409, "conflict")


def test_a_goal_is_completed_or_failed_once(api: Api, janus: Janus) -> None:
    done, failed = api.submit_goal(), api.submit_goal()
    completed = api.post(f"/v1/goals/{done['id']}/complete", json={"summary": "door open"})
    assert completed.status_code == 200 and completed.json()["outcome"] == "completed"
    assert is_problem(
        api.post(f"/v1/goals/{done['id']}/fail", json={"reason": "late"}), 409, "conflict"
    )
    assert (
        api.post(f"/v1/goals/{failed['id']}/fail", json={"reason": "jammed"}).json()["outcome"]
        == "failed"
    )
    assert is_problem(api.post(f"/v1/goals/{failed['id']}/complete", json={}), 422)
    view = {"min_position": janus.app.head()}
    first = api.get(f"/v1/goals/{done['id']}", params=view).json()
    second = api.get(f"/v1/goals/{failed['id']}", params=view).json()
    assert (first["status"], first["outcome"]) == ("completed", "door open")
    assert (second["status"], second["outcome"]) == ("failed", "jammed")
    assert is_problem(api.post(f"/v1/goals/{uuid4()}/complete", json={"summary": "x"}), 404)


def test_cancelling_a_goal_withdraws_its_pending_confirmations(api: Api, janus: Janus) -> None:
    goal = api.submit_goal()
    pending = decide(api, goal["id"]).json()["confirmation_id"]
    answered = decide(api, goal["id"]).json()["confirmation_id"]
    api.post(f"/v1/confirmations/{answered}/deny", json={"reason": "no"})

    cancelled = api.post(f"/v1/goals/{goal['id']}/cancel", json={"reason": "moved out"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["withdrawn_confirmations"] == [pending]
    row = api.get(
        f"/v1/confirmations/{pending}", params={"min_position": cancelled.json()["position"]}
    ).json()
    assert row["status"] == "cancelled" and "moved out" in row["reason"]
    granted = api.post(f"/v1/confirmations/{pending}/grant", role=Role.APPROVER)
    assert is_problem(granted, 409, "already-decided")
    assert is_problem(decide(api, goal["id"]), 409, "conflict")


def test_a_cancel_cut_short_is_finished_by_the_next_one(api: Api, janus: Janus) -> None:
    goal_id, confirmation_id = request_confirmation(janus)
    # As if the first cancel stopped after the goal's own event.
    janus.commands.cancel_goal(m.CancelGoal(goal_id=goal_id), AGENT)
    again = api.post(f"/v1/goals/{goal_id}/cancel")
    assert is_problem(again, 409, "conflict")
    row = api.get(
        f"/v1/confirmations/{confirmation_id}", params={"min_position": janus.app.head()}
    ).json()
    assert row["status"] == "cancelled"


def test_a_grant_says_when_no_executor_is_running_to_perform_it(api: Api, janus: Janus) -> None:
    _, alone = request_confirmation(janus, hazard="low")
    nobody = api.post(f"/v1/confirmations/{alone}/grant").json()
    assert nobody["outcome"] == "granted" and nobody["execution"] == "queued"
    assert nobody["executor_running"] is False
    assert "no executor is running" in nobody["detail"]

    # A runtime process says on the role board (with a heartbeat) that it runs the executor.
    board = RoleBoard(janus.views_engine, "test-runtime", heartbeat_seconds=60)
    board.write({"executor": RoleState("running", None, datetime.now(UTC))})
    _, served = request_confirmation(janus, hazard="low")
    running = api.post(f"/v1/confirmations/{served}/grant").json()
    assert running["executor_running"] is True and running["detail"] is None

    board.write({"executor": RoleState("stopped", None, datetime.now(UTC))})
    _, stopped = request_confirmation(janus, hazard="low")
    assert api.post(f"/v1/confirmations/{stopped}/grant").json()["executor_running"] is False


def test_a_finished_goal_requests_no_more_confirmations(janus: Janus) -> None:
    goal_id, _ = request_confirmation(janus)
    goal: Goal = janus.commands.runner.load(Goal, goal_id)
    decision_id = goal.decisions[0].decision_id
    janus.commands.cancel_goal(m.CancelGoal(goal_id=goal_id), AGENT)
    late = m.RequestConfirmation(
        goal_id=goal_id,
        decision_id=decision_id,
        action=m.Action(name="unlock_door", parameters={"door": "back"}),
        hazard=HazardClass.HIGH,
    )
    with pytest.raises(InvalidTransition, match="already cancelled"):
        janus.commands.request_confirmation(late, AGENT)
