"""Command services on both stores: idempotency, invariants, conflicts and failures."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from uuid import uuid4

import psycopg
import pytest
from pydantic import ValidationError

from adapters.clock import ManualClock
from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands import models as m
from commands.errors import IdempotencyConflict, NotFound, StoreUnavailable
from commands.invocation import CommandResult, Invocation
from domain.confirmation import Confirmation, ConfirmationStatus
from domain.errors import ConfirmationExpired, InvalidTransition, Overfill
from domain.meta import Actor, ActorKind
from tests.servers import free_port
from tests.support.commands import (
    AGENT,
    as_alice,
    pending_confirmation,
)


def test_same_key_same_payload_returns_the_first_result_and_writes_nothing(janus: Janus) -> None:
    first = janus.commands.submit_goal(m.SubmitGoal(text="water plants"), as_alice("k-1"))
    head = janus.app.head()
    again = janus.commands.submit_goal(m.SubmitGoal(text="water plants"), as_alice("k-1"))
    assert again.replayed and not again.changed
    assert again.aggregate_id == first.aggregate_id
    assert again.position >= first.position
    assert janus.app.head() == head


def test_same_key_different_payload_is_a_conflict(janus: Janus) -> None:
    janus.commands.submit_goal(m.SubmitGoal(text="water plants"), as_alice("k-2"))
    head = janus.app.head()
    with pytest.raises(IdempotencyConflict, match="k-2"):
        janus.commands.submit_goal(m.SubmitGoal(text="feed the cat"), as_alice("k-2"))
    assert janus.app.head() == head


def test_concurrent_retries_of_one_key_record_once(janus: Janus) -> None:
    results: list[CommandResult] = []

    def submit() -> None:
        results.append(janus.commands.submit_goal(m.SubmitGoal(text="once"), as_alice("k-3")))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r.aggregate_id for r in results}) == 1
    assert sum(r.changed for r in results) == 1
    janus.relational.catch_up()
    assert len(janus.views.goals()) == 1


def test_grant_twice_is_one_grant_with_the_same_answer(janus: Janus) -> None:
    confirmation_id = pending_confirmation(janus)
    first = janus.commands.grant_confirmation(
        m.GrantConfirmation(confirmation_id=confirmation_id), as_alice()
    )
    head = janus.app.head()
    second = janus.commands.grant_confirmation(
        m.GrantConfirmation(confirmation_id=confirmation_id),
        Invocation(Actor(ActorKind.USER, "bob")),
    )
    assert (first.outcome, second.outcome) == ("granted", "already_granted")
    assert not second.changed
    assert janus.app.head() == head
    confirmation: Confirmation = janus.app.repository.get(confirmation_id)
    assert confirmation.decided_by == "user:alice"


def test_concurrent_grants_record_one_grant(janus: Janus) -> None:
    confirmation_id = pending_confirmation(janus)
    outcomes: list[str] = []

    def grant(name: str) -> None:
        invocation = Invocation(Actor(ActorKind.USER, name))
        cmd = m.GrantConfirmation(confirmation_id=confirmation_id)
        outcomes.append(janus.commands.grant_confirmation(cmd, invocation).outcome)

    threads = [threading.Thread(target=grant, args=(f"op{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["already_granted"] * 5 + ["granted"]
    grants = [e for e in janus.reader.iterate() if type(e.event).__name__ == "Granted"]
    assert len(grants) == 1


def test_grant_after_the_deadline_is_refused_and_writes_nothing(
    janus: Janus, clock: ManualClock
) -> None:
    confirmation_id = pending_confirmation(janus, ttl=30)
    clock.advance(timedelta(seconds=31))
    head = janus.app.head()
    with pytest.raises(ConfirmationExpired):
        janus.commands.grant_confirmation(
            m.GrantConfirmation(confirmation_id=confirmation_id), as_alice()
        )
    assert janus.app.head() == head


def test_expiry_sweep_records_deadlines_that_passed(janus: Janus, clock: ManualClock) -> None:
    soon = pending_confirmation(janus, ttl=10)
    later = pending_confirmation(janus, ttl=3600)
    clock.advance(timedelta(seconds=11))
    janus.relational.catch_up()
    assert janus.expiry().sweep() == 1
    janus.relational.catch_up()
    assert janus.expiry().sweep() == 0
    expired: Confirmation = janus.app.repository.get(soon)
    pending: Confirmation = janus.app.repository.get(later)
    assert expired.status is ConfirmationStatus.EXPIRED
    assert pending.status is ConfirmationStatus.PENDING


def test_unknown_ids_are_not_found_and_write_nothing(janus: Janus) -> None:
    head = janus.app.head()
    with pytest.raises(NotFound, match="no confirmation"):
        janus.commands.grant_confirmation(m.GrantConfirmation(confirmation_id=uuid4()), as_alice())
    goal = janus.commands.submit_goal(m.SubmitGoal(text="x"), as_alice())
    with pytest.raises(NotFound, match="no decision"):
        janus.commands.request_confirmation(
            m.RequestConfirmation(
                goal_id=goal.aggregate_id,
                decision_id=uuid4(),
                action=m.Action(name="unlock_door"),
                hazard="high",
            ),
            AGENT,
        )
    with pytest.raises(NotFound, match="no confirmation"):
        janus.commands.grant_confirmation(
            m.GrantConfirmation(confirmation_id=goal.aggregate_id), as_alice()
        )
    assert janus.app.head() == head + 1


def test_invalid_commands_name_the_field() -> None:
    with pytest.raises(ValidationError) as bad_cron:
        m.ScheduleJob(
            name="x", trigger={"kind": "cron", "expression": "61 * * * *"}, action={"name": "n"}
        )
    assert bad_cron.value.errors()[0]["loc"] == ("trigger", "cron", "expression")
    with pytest.raises(ValidationError) as negative:
        m.ProposeOrder(symbol="ACME", side="buy", quantity=-1)
    assert negative.value.errors()[0]["loc"] == ("quantity",)
    with pytest.raises(ValidationError) as oversized:
        m.SubmitGoal(text="x" * 8_001)
    assert oversized.value.errors()[0]["loc"] == ("text",)
    with pytest.raises(ValidationError):
        m.RequestConfirmation(
            goal_id=uuid4(),
            decision_id=uuid4(),
            action=m.Action(name="a", parameters={"blob": "x" * 70_000}),
            hazard="high",
        )


def test_domain_refusals_write_nothing(janus: Janus) -> None:
    order = janus.commands.propose_order(
        m.ProposeOrder(symbol="ACME", side="buy", quantity=5), as_alice()
    )
    oid = order.aggregate_id
    janus.commands.record_risk_check(m.RecordRiskCheck(order_id=oid, passed=True), as_alice())
    janus.commands.submit_order(m.SubmitOrder(order_id=oid, broker_order_id="B1"), as_alice())
    janus.commands.record_fill(
        m.RecordFill(order_id=oid, fill_id="f1", quantity=3, price=10), as_alice()
    )
    head = janus.app.head()
    with pytest.raises(Overfill):
        janus.commands.record_fill(
            m.RecordFill(order_id=oid, fill_id="f2", quantity=3, price=10), as_alice()
        )
    with pytest.raises(InvalidTransition):
        janus.commands.submit_order(m.SubmitOrder(order_id=oid, broker_order_id="B2"), as_alice())
    assert janus.app.head() == head


def test_a_database_that_is_down_gives_a_clear_error_quickly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(
        home=tmp_path, database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    )
    started = time.monotonic()
    with pytest.raises(
        StoreUnavailable, match=r"at postgresql://postgres@127\.0\.0\.1.*connection refused"
    ):
        Janus.build(settings)
    assert time.monotonic() - started < 30


def test_a_lock_held_too_long_gives_a_clear_error_not_a_hang(pg_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    janus = Janus.build(Settings(home=tmp_path, database_url=pg_url, lock_timeout_seconds=1))
    try:
        with psycopg.connect(pg_url) as blocker:
            blocker.execute("LOCK TABLE janus_events IN EXCLUSIVE MODE")  # a stuck writer
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="lock timeout"):
                janus.commands.submit_goal(m.SubmitGoal(text="blocked"), as_alice())
            assert time.monotonic() - started < 40
    finally:
        janus.close()


def test_a_fork_continues_the_original_at_a_version_that_existed(janus: Janus) -> None:
    original = janus.commands.submit_goal(m.SubmitGoal(text="unlock"), as_alice())
    janus.commands.record_plan(
        m.RecordPlan(goal_id=original.aggregate_id, steps=["ask"]), as_alice()
    )
    with pytest.raises(NotFound, match="goal version"):
        janus.commands.fork_goal(
            m.ForkGoal(original_id=original.aggregate_id, original_version=3, at_position=9),
            as_alice(),
        )
    fork_id = uuid4()
    cmd = m.ForkGoal(
        original_id=original.aggregate_id,
        original_version=1,
        at_position=original.position,
        goal_id=fork_id,
    )
    assert janus.commands.fork_goal(cmd, as_alice()).outcome == "forked"
    assert janus.commands.fork_goal(cmd, as_alice()).outcome == "already_forked"
    fork = janus.app.repository.get(fork_id)
    assert (fork.forked_from, fork.forked_at_position) == (original.aggregate_id, original.position)
