"""A client-chosen id sent again: the same request gets the first answer, anything else a 409.

The same rule as an Idempotency-Key, for every command that takes a client id. On both stores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest

from bootstrap.container import Janus
from commands import models as m
from commands.errors import IdConflict
from commands.invocation import CommandResult, Invocation
from domain.meta import Actor, ActorKind
from tests.support.api import JOB_BODY, Api, is_problem, serve_api

ALICE = Invocation(Actor(ActorKind.USER, "alice"))
BOB = Invocation(Actor(ActorKind.USER, "bob"))


@pytest.fixture
def api(janus: Janus) -> Iterator[Api]:
    with serve_api(janus) as served:
        yield served


def _goal_with_decision(janus: Janus) -> tuple[UUID, UUID]:
    goal = janus.commands.submit_goal(m.SubmitGoal(text="unlock"), ALICE).aggregate_id
    decision = _decision(goal, uuid4(), "unlock_door")
    janus.commands.record_decision(decision, ALICE)
    return goal, decision.decision_id or uuid4()


def _decision(goal: UUID, decision_id: UUID, action: str) -> m.RecordDecision:
    return m.RecordDecision(
        goal_id=goal,
        decision_id=decision_id,
        model="scripted",
        prompt="what now?",
        raw_output="{}",
        action=m.Action(name=action, parameters={"door": "front"}),
    )


def _confirmation(goal: UUID, decision: UUID, ident: UUID, door: str) -> m.RequestConfirmation:
    # The hazard is not a difference to test: the action gate raises it to the catalogue's.
    return m.RequestConfirmation.model_validate(
        {
            "goal_id": goal,
            "decision_id": decision,
            "action": {"name": "unlock_door", "parameters": {"door": door}},
            "hazard": "high",
            "confirmation_id": ident,
        }
    )


def _job(ident: UUID, seconds: int) -> m.ScheduleJob:
    return m.ScheduleJob.model_validate(
        {**JOB_BODY, "trigger": {"kind": "interval", "seconds": seconds}, "job_id": ident}
    )


def _order(ident: UUID, quantity: str) -> m.ProposeOrder:
    return m.ProposeOrder(symbol="ACME", side="buy", quantity=Decimal(quantity), order_id=ident)


def _document(ident: UUID, size: int) -> m.RegisterDocument:
    return m.RegisterDocument(
        source_uri="s3://docs/a", content_type="text/plain", sha256="a" * 64, size_bytes=size,
        document_id=ident,
    )  # fmt: skip


Case = Callable[[Janus, UUID, bool], CommandResult]


def _cases(janus: Janus) -> dict[str, Case]:
    """name -> run(janus, client id, different body?) for every command taking a client id."""
    goal, decision = _goal_with_decision(janus)
    commands = janus.commands
    return {
        "goal": lambda j, i, other: commands.submit_goal(
            m.SubmitGoal(text="other" if other else "same", goal_id=i), BOB if other else ALICE
        ),
        "decision": lambda j, i, other: commands.record_decision(
            _decision(goal, i, "lock_door" if other else "unlock_door"), ALICE
        ),
        "confirmation": lambda j, i, other: commands.request_confirmation(
            _confirmation(goal, decision, i, "back" if other else "front"), ALICE
        ),
        "job": lambda j, i, other: commands.schedule_job(_job(i, 120 if other else 60), ALICE),
        "document": lambda j, i, other: commands.register_document(
            _document(i, 2 if other else 1), ALICE
        ),
        "order": lambda j, i, other: commands.propose_order(
            _order(i, "2" if other else "1"), ALICE
        ),
    }


@pytest.mark.parametrize("kind", ["goal", "decision", "confirmation", "job", "document", "order"])
def test_a_resubmitted_id_gets_the_first_answer_or_a_conflict(janus: Janus, kind: str) -> None:
    run = _cases(janus)[kind]
    ident = uuid4()
    first = run(janus, ident, False)
    head = janus.app.head()
    again = run(janus, ident, False)
    assert again.aggregate_id == first.aggregate_id and not again.changed
    assert again.outcome.startswith("already_")
    with pytest.raises(IdConflict, match="different body"):
        run(janus, ident, True)
    assert janus.app.head() == head  # neither the repeat nor the conflict recorded anything


@pytest.mark.parametrize("kind", ["goal", "confirmation", "job", "document", "order"])
def test_an_id_that_names_another_type_is_a_conflict(janus: Janus, kind: str) -> None:
    cases = _cases(janus)
    taken = uuid4()
    other = "job" if kind != "job" else "goal"
    cases[other](janus, taken, False)
    head = janus.app.head()
    with pytest.raises(IdConflict, match="already names a"):
        cases[kind](janus, taken, False)
    assert janus.app.head() == head


def test_a_resubmitted_fork_id_with_another_origin_is_a_conflict(janus: Janus) -> None:
    first = janus.commands.submit_goal(m.SubmitGoal(text="a"), ALICE)
    second = janus.commands.submit_goal(m.SubmitGoal(text="b"), ALICE)
    fork_id = uuid4()

    def fork(original: CommandResult) -> CommandResult:
        cmd = m.ForkGoal(
            original_id=original.aggregate_id,
            original_version=1,
            at_position=original.position,
            goal_id=fork_id,
        )
        return janus.commands.fork_goal(cmd, ALICE)

    assert fork(first).outcome == "forked"
    assert fork(first).outcome == "already_forked"
    with pytest.raises(IdConflict):
        fork(second)
    # A plain submission under a fork's id is another request too.
    with pytest.raises(IdConflict):
        janus.commands.submit_goal(m.SubmitGoal(text="a", goal_id=fork_id), ALICE)


def test_the_api_answers_a_resubmitted_goal_id_like_an_idempotency_key(api: Api) -> None:
    goal_id = str(uuid4())
    body: dict[str, Any] = {"text": "water the plants", "goal_id": goal_id}
    first = api.post("/v1/goals", json=body)
    assert first.status_code == 202, first.text
    again = api.post("/v1/goals", json=body)
    assert again.status_code == 202 and again.json()["id"] == goal_id
    different = api.post("/v1/goals", json={**body, "text": "feed the cat"})
    assert is_problem(different, 409, "id-conflict"), different.text
    job = api.post("/v1/jobs", json={**JOB_BODY, "job_id": str(uuid4())})
    assert job.status_code == 202, job.text
    taken = api.post("/v1/goals", json={**body, "goal_id": job.json()["id"]})
    assert is_problem(taken, 409, "id-conflict"), taken.text
    goal = api.get(f"/v1/goals/{goal_id}", params={"min_position": api.janus.app.head()})
    assert goal.json()["text"] == "water the plants"


def test_the_api_answers_a_resubmitted_job_id_with_another_body_with_409(api: Api) -> None:
    job_id = str(uuid4())
    first = api.post("/v1/jobs", json={**JOB_BODY, "job_id": job_id})
    assert first.status_code == 202, first.text
    assert api.post("/v1/jobs", json={**JOB_BODY, "job_id": job_id}).status_code == 202
    renamed = api.post("/v1/jobs", json={**JOB_BODY, "name": "other", "job_id": job_id})
    assert is_problem(renamed, 409, "id-conflict"), renamed.text


def test_a_resubmitted_fill_id_with_another_quantity_is_a_conflict(janus: Janus) -> None:
    order = janus.commands.propose_order(_order(uuid4(), "10"), ALICE).aggregate_id
    janus.commands.record_risk_check(m.RecordRiskCheck(order_id=order, passed=True), ALICE)
    janus.commands.submit_order(m.SubmitOrder(order_id=order, broker_order_id="b-1"), ALICE)

    def fill(quantity: str) -> CommandResult:
        cmd = m.RecordFill(
            order_id=order, fill_id="f-1", quantity=Decimal(quantity), price=Decimal("2.5")
        )
        return janus.commands.record_fill(cmd, ALICE)

    assert fill("4").outcome == "partially_filled"
    assert fill("4.0").outcome == "duplicate_fill"
    head = janus.app.head()
    with pytest.raises(IdConflict, match="fill f-1"):
        fill("5")
    assert janus.app.head() == head
