"""The executor on both stores: one execution per grant, recovery by asking the adapter."""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent, Tracking

from adapters.effects import (
    EffectRegistry,
    Known,
    Ledger,
    SimulatedDoorLock,
    SimulatedNotifier,
)
from adapters.locks import LeadershipLost
from bootstrap.container import Janus
from commands import models as m
from commands.executor import Executor
from commands.invocation import Invocation
from domain.effect import Effect, EffectStatus, effect_id_for
from domain.meta import Actor, ActorKind, CommandContext
from tests.servers import wait_until
from tests.support.commands import pending_confirmation
from tests.support.effects import FlakyGate
from tests.support.executor import (
    OPERATOR,
    door_ledger,
    drain,
    effect_of,
    grant,
    started_but_not_finished,
)


def test_a_grant_executes_once_even_when_the_log_is_read_again(janus: Janus) -> None:
    confirmation_id = grant(janus)
    drain(janus.executor())
    drain(janus.executor())  # a restarted executor resumes from its own position
    assert len(door_ledger(janus).executions(str(confirmation_id))) == 1
    effect = effect_of(janus, confirmation_id)
    assert effect.status is EffectStatus.SUCCEEDED
    assert effect.result == {"door": "front", "state": "unlocked"}
    assert janus.executor().position == janus.app.head()


def test_recovery_runs_an_effect_the_adapter_says_never_happened(janus: Janus) -> None:
    confirmation_id = grant(janus)
    started_but_not_finished(janus, confirmation_id)
    drain(janus.executor())
    assert len(door_ledger(janus).executions(str(confirmation_id))) == 1
    effect = effect_of(janus, confirmation_id)
    assert (effect.status, effect.attempt) == (EffectStatus.SUCCEEDED, 2)


def test_recovery_does_not_repeat_an_effect_the_adapter_saw(janus: Janus) -> None:
    confirmation_id = grant(janus)
    started_but_not_finished(janus, confirmation_id)
    door_ledger(janus).append(str(confirmation_id), "unlock_door", {}, {"state": "unlocked"})
    drain(janus.executor())
    assert len(door_ledger(janus).executions(str(confirmation_id))) == 1
    assert effect_of(janus, confirmation_id).status is EffectStatus.SUCCEEDED


def test_an_adapter_that_cannot_tell_parks_the_effect_for_an_operator(janus: Janus) -> None:
    notifier_ledger = Ledger(janus.settings.home / "world" / "notifier.sqlite")
    confirmation_id = grant(janus, action="notify")
    ctx = CommandContext("crash", "g", "crash", Actor(ActorKind.SYSTEM, "executor"), "test")
    janus.app.save(Effect.start(confirmation_id, confirmation_id, "notify", {}, ctx))
    executor = Executor(janus.app, EffectRegistry([SimulatedNotifier(notifier_ledger)]), "test")
    drain(executor)
    effect = effect_of(janus, confirmation_id)
    assert effect.status is EffectStatus.OUTCOME_UNKNOWN
    assert notifier_ledger.executions() == []

    janus.commands.reconcile_effect(
        m.ReconcileEffect(effect_id=effect.id, happened=False, note="no SMS in the gateway log"),
        OPERATOR,
    )
    reconciled = effect_of(janus, confirmation_id)
    assert (reconciled.status, reconciled.happened) == (EffectStatus.RECONCILED, False)


def test_retryable_failures_are_retried_and_recorded(janus: Janus) -> None:
    gate = FlakyGate(failures=2)
    confirmation_id = grant(janus, action="open_gate")
    drain(Executor(janus.app, EffectRegistry([gate]), "test"))
    effect = effect_of(janus, confirmation_id)
    assert (effect.status, effect.attempt) == (EffectStatus.SUCCEEDED, 3)
    kinds = [type(e.event).__name__ for e in janus.reader.iterate() if e.originator_id == effect.id]
    assert kinds.count("Failed") == 2 and kinds.count("AttemptStarted") == 2


def test_permanent_failure_is_recorded_and_not_retried(janus: Janus) -> None:
    gate = FlakyGate(failures=1, retryable=False)
    confirmation_id = grant(janus, action="open_gate")
    drain(Executor(janus.app, EffectRegistry([gate]), "test"))
    effect = effect_of(janus, confirmation_id)
    assert (effect.status, effect.retryable, len(gate.calls)) == (EffectStatus.FAILED, False, 1)


def test_an_action_nobody_handles_fails_without_touching_anything(janus: Janus) -> None:
    confirmation_id = grant(janus, action="launch_rocket")
    drain(janus.executor())
    effect = effect_of(janus, confirmation_id)
    assert effect.status is EffectStatus.FAILED
    assert "no adapter" in (effect.error or "")


def test_denied_and_pending_confirmations_execute_nothing(janus: Janus) -> None:
    denied = pending_confirmation(janus)
    janus.commands.deny_confirmation(
        m.DenyConfirmation(confirmation_id=denied, reason="not today"), OPERATOR
    )
    pending_confirmation(janus)
    drain(janus.executor())
    assert door_ledger(janus).executions() == []
    lock = SimulatedDoorLock(door_ledger(janus))
    assert lock.lookup(str(denied)).known is Known.NOT_EXECUTED


def test_the_effect_continues_the_trace_of_the_grant(janus: Janus) -> None:
    confirmation_id = pending_confirmation(janus)
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    traced = Invocation(OPERATOR.actor, trace_context={"traceparent": traceparent})
    janus.commands.grant_confirmation(m.GrantConfirmation(confirmation_id=confirmation_id), traced)
    drain(janus.executor())
    effect_id = effect_of(janus, confirmation_id).id
    events = janus.app.repository.event_store.get(effect_id)
    assert [e.meta.trace_context for e in events] == [{"traceparent": traceparent}] * 2


def _as_version_1(janus: Janus, event: object) -> StoredEvent:
    """The stored form an effect event had before terms existed (no term, no class_version)."""
    stored = janus.app.mapper.to_stored_event(event)  # type: ignore[arg-type]
    state = janus.app.mapper.transcoder.decode(stored.state)
    del state["term"]
    del state["class_version"]
    return StoredEvent(
        stored.originator_id,
        stored.originator_version,
        stored.topic,
        janus.app.mapper.transcoder.encode(state),
    )


def test_an_effect_started_before_terms_existed_reads_as_term_0_and_is_recovered(
    janus: Janus,
) -> None:
    confirmation_id = grant(janus)
    ctx = CommandContext("crash", "g", "crash", Actor(ActorKind.SYSTEM, "executor"), "test")
    effect = Effect.start(confirmation_id, confirmation_id, "unlock_door", {"door": "front"}, ctx)
    effect.retry(ctx)
    janus.app.recorder.insert_events([_as_version_1(janus, e) for e in effect.collect_events()])
    assert (effect_of(janus, confirmation_id).term, effect_of(janus, confirmation_id).attempt) == (
        0,
        2,
    )

    lock = janus.leader_lock("executor")
    assert lock.try_acquire()
    executor = janus.executor(lease=lock)
    drain(executor)
    if janus.settings.database_url is not None:
        # Nothing says who ran term 0 or whether it stopped: hands off for the grace period.
        assert door_ledger(janus).executions(str(confirmation_id)) == []
        assert effect_of(janus, confirmation_id).status is EffectStatus.STARTED
        wait_until(lambda: drain(executor) or effect_of(janus, confirmation_id).term, timeout=30)
    # Embedded, the lock file proves no earlier holder is alive: recovered at once.
    assert len(door_ledger(janus).executions(str(confirmation_id))) == 1
    recovered = effect_of(janus, confirmation_id)
    assert recovered.status is EffectStatus.SUCCEEDED and recovered.term == lock.term


def test_an_executor_without_its_lock_touches_nothing(janus: Janus) -> None:
    confirmation_id = grant(janus)
    lock = janus.leader_lock("executor")
    assert lock.try_acquire()
    executor = janus.executor(lease=lock)
    lock.release()
    with pytest.raises(LeadershipLost):
        executor.run_once()
    assert door_ledger(janus).executions(str(confirmation_id)) == []
    assert effect_id_for(confirmation_id) not in janus.app.repository


class OvertakenDoor(SimulatedDoorLock):
    """Unlocks, and meanwhile an earlier term finishing its batch saves a later position."""

    def __init__(self, ledger: Ledger, janus: Janus) -> None:
        super().__init__(ledger)
        self.janus = janus

    def execute(self, key: str, action: str, parameters: dict[str, Any]) -> dict[str, Any]:
        result = super().execute(key, action, parameters)
        self.janus.app.save_tracked(tracking=Tracking(Executor.name, self.janus.app.head() + 1))
        return result


def test_an_outcome_is_recorded_even_when_the_position_was_taken_meanwhile(janus: Janus) -> None:
    confirmation_id = grant(janus)
    lock = janus.leader_lock("executor")
    assert lock.try_acquire()
    door = OvertakenDoor(door_ledger(janus), janus)
    executor = Executor(janus.app, EffectRegistry([door]), "test", lease=lock)
    assert executor.run_once() > 0  # the conflict ends the batch; it resumes from the store
    assert len(door_ledger(janus).executions(str(confirmation_id))) == 1
    effect = effect_of(janus, confirmation_id)
    assert effect.status is EffectStatus.SUCCEEDED, "not left 'started' behind the position"
