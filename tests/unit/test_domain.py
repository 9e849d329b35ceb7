"""Invariants of the aggregates, exercised through their public methods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest

from domain.confirmation import Confirmation, ConfirmationStatus, HazardClass
from domain.document import Document, content_key, document_id_for, title_from
from domain.effect import Effect, EffectStatus, effect_id_for
from domain.errors import (
    AlreadyDecided,
    ConfirmationExpired,
    InvalidTransition,
    InvalidValue,
    Overfill,
)
from domain.goal import Decision, DecisionReplay, Goal, GoalStatus
from domain.job import FireStatus, Job, JobFire, MisfirePolicy, fire_id_for
from domain.meta import CommandContext
from domain.trade import OrderStatus, Side, TradeOrder

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def a_confirmation(ctx: CommandContext, ttl: timedelta = timedelta(minutes=5)) -> Confirmation:
    return Confirmation.request(
        uuid4(),
        uuid4(),
        uuid4(),
        "unlock_door",
        {"door": "front"},
        HazardClass.HIGH,
        T0,
        T0 + ttl,
        ctx,
    )


def test_every_event_carries_its_own_id_and_the_command_provenance(ctx: CommandContext) -> None:
    goal = Goal.submit(uuid4(), "unlock the front door", "alice", 5, ctx)
    goal.record_plan(["check", "unlock"], ctx)
    first, second = goal.collect_events()
    assert first.meta.event_id != second.meta.event_id
    assert first.meta.command_id == "cmd-1"
    assert first.meta.correlation_id == "goal-1"
    assert str(first.meta.actor) == "user:alice"
    assert first.meta.node_id == "test"


def test_goal_rejects_empty_and_oversized_text_and_bad_priority(ctx: CommandContext) -> None:
    with pytest.raises(InvalidValue, match="text must not be empty"):
        Goal.submit(uuid4(), "  ", "alice", 5, ctx)
    with pytest.raises(InvalidValue, match="limit is 8000"):
        Goal.submit(uuid4(), "x" * 8_001, "alice", 5, ctx)
    with pytest.raises(InvalidValue, match="priority"):
        Goal.submit(uuid4(), "ok", "alice", 10, ctx)


def test_a_finished_goal_takes_no_more_decisions(ctx: CommandContext) -> None:
    goal = Goal.submit(uuid4(), "water the plants", "alice", 5, ctx)
    goal.complete("done", ctx)
    assert goal.status is GoalStatus.COMPLETED
    decision = Decision(uuid4(), "m", "", {}, "p", [], "{}", {"name": "noop"}, {})
    with pytest.raises(InvalidTransition):
        goal.record_decision(decision, ctx)
    with pytest.raises(InvalidTransition):
        goal.cancel("too late", ctx)


def test_decision_needs_an_action_and_is_recorded_once(ctx: CommandContext) -> None:
    goal = Goal.submit(uuid4(), "unlock", "alice", 5, ctx)
    with pytest.raises(InvalidValue, match="action needs a name"):
        goal.record_decision(Decision(uuid4(), "m", "", {}, "p", [], "{}", {}, {}), ctx)
    decision = Decision(uuid4(), "m", "", {}, "p", [], "{}", {"name": "unlock_door"}, {})
    goal.record_decision(decision, ctx)
    with pytest.raises(InvalidTransition, match="already recorded"):
        goal.record_decision(decision, ctx)


def test_a_fork_is_a_new_goal_linked_to_its_original_in_the_same_save(
    ctx: CommandContext,
) -> None:
    original = Goal.submit(uuid4(), "unlock", "alice", 7, ctx)
    with pytest.raises(InvalidValue, match="id of its own"):
        Goal.fork(original.id, original, 3, "bob", ctx)
    with pytest.raises(InvalidValue, match="log position"):
        Goal.fork(uuid4(), original, 0, "bob", ctx)
    fork = Goal.fork(uuid4(), original, 3, "bob", ctx)
    assert [type(e).__name__ for e in fork.collect_events()] == ["Submitted", "Forked"]
    assert (fork.text, fork.priority, fork.submitted_by) == ("unlock", 7, "bob")
    assert (fork.forked_from, fork.forked_at_position) == (original.id, 3)
    assert original.forked_from is None


def test_a_decision_replay_needs_the_decision_and_is_allowed_after_the_end(
    ctx: CommandContext,
) -> None:
    goal = Goal.submit(uuid4(), "unlock", "alice", 5, ctx)
    decision = Decision(uuid4(), "m", "", {}, "p", [], "{}", {"name": "unlock_door"}, {})
    goal.record_decision(decision, ctx)
    goal.complete("done", ctx)
    replay = DecisionReplay(decision.decision_id, "m2", "d", "{}", None, False, {})
    with pytest.raises(InvalidValue, match="no decision"):
        goal.record_decision_replay(DecisionReplay(uuid4(), "m2", "d", "", None, False, {}), ctx)
    goal.record_decision_replay(replay, ctx)
    assert goal.replays == [replay]


def test_granting_twice_records_one_grant(ctx: CommandContext) -> None:
    confirmation = a_confirmation(ctx)
    assert confirmation.grant("bob", T0, ctx) is True
    assert confirmation.grant("carol", T0, ctx) is False
    events = confirmation.collect_events()
    assert [type(e).__name__ for e in events] == ["Requested", "Granted"]
    assert confirmation.decided_by == "bob"


def test_cannot_grant_at_or_after_the_deadline(ctx: CommandContext) -> None:
    confirmation = a_confirmation(ctx, ttl=timedelta(seconds=30))
    with pytest.raises(ConfirmationExpired):
        confirmation.grant("bob", T0 + timedelta(seconds=30), ctx)
    assert confirmation.status is ConfirmationStatus.PENDING


def test_a_decided_confirmation_cannot_be_decided_otherwise(ctx: CommandContext) -> None:
    confirmation = a_confirmation(ctx)
    confirmation.deny("bob", "not now", T0, ctx)
    with pytest.raises(AlreadyDecided):
        confirmation.grant("carol", T0, ctx)
    with pytest.raises(AlreadyDecided):
        confirmation.expire(T0 + timedelta(hours=1), ctx)


def test_expiry_only_after_the_deadline_and_only_once(ctx: CommandContext) -> None:
    confirmation = a_confirmation(ctx, ttl=timedelta(seconds=10))
    with pytest.raises(InvalidTransition, match="does not expire until"):
        confirmation.expire(T0 + timedelta(seconds=9), ctx)
    assert confirmation.expire(T0 + timedelta(seconds=10), ctx) is True
    assert confirmation.expire(T0 + timedelta(seconds=11), ctx) is False
    assert confirmation.status is ConfirmationStatus.EXPIRED


def test_request_needs_a_deadline_in_the_future(ctx: CommandContext) -> None:
    with pytest.raises(InvalidValue, match="expires_at"):
        Confirmation.request(
            uuid4(), uuid4(), uuid4(), "unlock_door", {}, HazardClass.LOW, T0, T0, ctx
        )


def test_effect_id_is_derived_from_the_confirmation(ctx: CommandContext) -> None:
    confirmation_id = uuid4()
    effect = Effect.start(confirmation_id, uuid4(), "unlock_door", {}, ctx)
    assert effect.id == effect_id_for(confirmation_id)
    assert effect.idempotency_key == str(confirmation_id)


def test_effect_outcome_is_recorded_once_and_unknown_needs_an_operator(
    ctx: CommandContext,
) -> None:
    effect = Effect.start(uuid4(), uuid4(), "notify", {}, ctx)
    effect.mark_outcome_unknown("crashed", ctx)
    with pytest.raises(InvalidTransition):
        effect.succeed({}, ctx)
    effect.reconcile(True, "operator:dana", "saw it in the SMS log", ctx)
    assert effect.status is EffectStatus.RECONCILED
    assert effect.happened is True
    with pytest.raises(InvalidTransition):
        effect.reconcile(False, "operator:dana", "changed my mind", ctx)


def test_permanent_failure_cannot_be_retried(ctx: CommandContext) -> None:
    effect = Effect.start(uuid4(), uuid4(), "unlock_door", {}, ctx)
    effect.fail("jammed", False, ctx)
    with pytest.raises(InvalidTransition, match="permanently"):
        effect.retry(ctx)


def test_job_validation(ctx: CommandContext) -> None:
    action = {"name": "notify"}
    with pytest.raises(InvalidValue, match="seconds > 0"):
        Job.schedule(
            uuid4(), "j", {"kind": "interval", "seconds": 0}, action, MisfirePolicy.SKIP, 0, 1, ctx
        )
    with pytest.raises(InvalidValue, match=r"trigger\.kind"):
        Job.schedule(uuid4(), "j", {"kind": "sometimes"}, action, MisfirePolicy.SKIP, 0, 1, ctx)
    with pytest.raises(InvalidValue, match="action needs a name"):
        Job.schedule(
            uuid4(), "j", {"kind": "interval", "seconds": 1}, {}, MisfirePolicy.SKIP, 0, 1, ctx
        )


def test_a_removed_job_cannot_be_resumed(ctx: CommandContext) -> None:
    job = Job.schedule(
        uuid4(),
        "j",
        {"kind": "interval", "seconds": 5},
        {"name": "notify"},
        MisfirePolicy.SKIP,
        0,
        1,
        ctx,
    )
    assert job.pause(ctx) is True
    assert job.pause(ctx) is False
    job.remove(ctx)
    with pytest.raises(InvalidTransition, match="removed"):
        job.resume(ctx)


def test_fire_id_is_the_job_and_scheduled_time(ctx: CommandContext) -> None:
    job_id = uuid4()
    fired = JobFire.fire(job_id, T0, False, ctx)
    missed = JobFire.miss(job_id, T0, "down", ctx)
    assert fired.id == missed.id == fire_id_for(job_id, T0)
    assert missed.status is FireStatus.MISSED


def test_fire_retry_cycle(ctx: CommandContext) -> None:
    fire = JobFire.fire(uuid4(), T0, False, ctx)
    fire.fail("timeout", T0 + timedelta(seconds=1), ctx)
    assert fire.status is FireStatus.RETRY_SCHEDULED
    fire.retry(ctx)
    assert (fire.status, fire.attempt) == (FireStatus.FIRED, 2)
    fire.fail("timeout again", None, ctx)
    assert fire.status is FireStatus.FAILED
    with pytest.raises(InvalidTransition):
        fire.retry(ctx)


def test_order_cannot_overfill_and_ignores_repeated_fills(ctx: CommandContext) -> None:
    order = TradeOrder.propose(uuid4(), None, "ACME", Side.BUY, Decimal(10), None, ctx)
    with pytest.raises(InvalidTransition):
        order.record_fill("f0", Decimal(1), Decimal(1), ctx)
    order.record_risk_check(True, {"vpin": 0.1}, [], ctx)
    order.submit("B-1", ctx)
    assert order.record_fill("f1", Decimal(4), Decimal("9.5"), ctx) is True
    assert order.record_fill("f1", Decimal(4), Decimal("9.5"), ctx) is False
    assert order.status is OrderStatus.PARTIALLY_FILLED
    with pytest.raises(Overfill):
        order.record_fill("f2", Decimal(7), Decimal("9.5"), ctx)
    order.record_fill("f3", Decimal(6), Decimal("9.6"), ctx)
    assert (order.status, order.filled_quantity) == (OrderStatus.FILLED, Decimal(10))


def test_order_needs_a_passed_risk_check_to_be_submitted(ctx: CommandContext) -> None:
    order = TradeOrder.propose(uuid4(), None, "ACME", Side.SELL, Decimal(1), None, ctx)
    with pytest.raises(InvalidValue, match="violations"):
        order.record_risk_check(False, {}, [], ctx)
    order.record_risk_check(False, {"wash_sale": 1.0}, ["wash sale"], ctx)
    with pytest.raises(InvalidTransition):
        order.submit("B-2", ctx)
    with pytest.raises(InvalidValue, match="quantity must be positive"):
        TradeOrder.propose(uuid4(), None, "ACME", Side.BUY, Decimal(-1), None, ctx)


def test_a_document_is_registered_once_and_retracted_once(ctx: CommandContext) -> None:
    sha = "a" * 64
    with pytest.raises(InvalidValue, match="sha256"):
        Document.register(uuid4(), "file:///a.pdf", "a", "application/pdf", "abc", 10, "k", ctx)
    document = Document.register(
        uuid4(), "file:///a.pdf", "a.pdf", "application/pdf", sha, 10, content_key(sha), ctx
    )
    document.record_entities("rules", "none", {}, [], [{"name": "ACME", "type": "ORG"}], [], ctx)
    assert document.retract("superseded", ctx) is True
    assert document.retract("again", ctx) is False
    with pytest.raises(InvalidTransition):
        document.record_entities("rules", "none", {}, [], [], [], ctx)
    assert [type(e).__name__ for e in document.collect_events()] == [
        "Registered",
        "EntitiesExtracted",
        "Retracted",
    ]


def test_a_document_id_names_its_source_and_bytes() -> None:
    assert document_id_for("file:///a", "a" * 64) == document_id_for("file:///a", "a" * 64)
    assert document_id_for("file:///a", "a" * 64) != document_id_for("file:///b", "a" * 64)
    assert title_from("s3://bucket/notes/door.md") == "door.md"
