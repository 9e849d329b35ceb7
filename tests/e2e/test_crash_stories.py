"""Story tests: the central promise under SIGKILL, with real processes, on SQLite and Postgres.

A pending hazardous confirmation survives any restart, and an approved hazardous action runs
exactly once or never twice. Each story kills a process at one dangerous point and checks what
the world (the simulated device's own ledger) and the log say afterwards.
"""

from __future__ import annotations

import concurrent.futures
import signal
from collections import Counter
from datetime import UTC, datetime
from uuid import UUID

from adapters.effects import Ledger
from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands import models as m
from commands.invocation import Invocation
from domain.confirmation import Confirmation, ConfirmationStatus
from domain.effect import Effect, EffectStatus, effect_id_for
from domain.meta import Actor, ActorKind
from tests.e2e.procs import JanusProcess, grant_elsewhere
from tests.servers import wait_until
from tests.support.commands import pending_confirmation

KILLED = -signal.SIGKILL
DANA = Invocation(Actor(ActorKind.USER, "dana", role="approver"))


def start(
    processes: list[JanusProcess], settings: Settings, crash_at: str | None = None
) -> JanusProcess:
    proc = JanusProcess(settings, crash_at).start()
    processes.append(proc)
    return proc


def ledger(janus: Janus, device: str = "door_lock") -> Ledger:
    return Ledger(janus.settings.home / "world" / f"{device}.sqlite")


def effect(janus: Janus, confirmation_id: UUID) -> Effect | None:
    effect_id = effect_id_for(confirmation_id)
    if effect_id not in janus.app.repository:
        return None
    found: Effect = janus.app.repository.get(effect_id)
    return found


def settled(janus: Janus, confirmation_id: UUID, status: EffectStatus) -> bool:
    found = effect(janus, confirmation_id)
    return found is not None and found.status is status


def executor_caught_up(janus: Janus) -> bool:
    return janus.app.tracked_position("executor") >= janus.app.head()


def grant(janus: Janus, confirmation_id: UUID, key: str | None = None) -> str:
    invocation = Invocation(DANA.actor, idempotency_key=key)
    cmd = m.GrantConfirmation(confirmation_id=confirmation_id)
    return janus.commands.grant_confirmation(cmd, invocation).outcome


def test_pending_confirmation_survives_sigkill_and_runs_once_when_granted(
    janus: Janus, settings: Settings, processes: list[JanusProcess]
) -> None:
    first = start(processes, settings)
    confirmation_id = pending_confirmation(janus, ttl=600)
    first.kill()

    start(processes, settings)
    janus.relational.catch_up()
    pending = [UUID(r["id"]) for r in janus.views.confirmations(status="pending")]
    assert pending == [confirmation_id]

    assert grant(janus, confirmation_id) == "granted"
    wait_until(lambda: settled(janus, confirmation_id, EffectStatus.SUCCEEDED), timeout=30)
    assert grant(janus, confirmation_id) == "already_granted"
    wait_until(lambda: executor_caught_up(janus), timeout=30)
    assert len(ledger(janus).executions(str(confirmation_id))) == 1


def test_operator_killed_before_the_grant_is_saved_leaves_it_pending(
    janus: Janus, settings: Settings, processes: list[JanusProcess]
) -> None:
    start(processes, settings)
    confirmation_id = pending_confirmation(janus, ttl=600)
    client = grant_elsewhere(
        settings, confirmation_id, "op", crash_at="command.GrantConfirmation.before_save"
    )
    assert client.returncode == KILLED, client.stderr
    wait_until(lambda: executor_caught_up(janus), timeout=30)
    confirmation: Confirmation = janus.app.repository.get(confirmation_id)
    assert confirmation.status is ConfirmationStatus.PENDING
    assert ledger(janus).executions() == []

    assert grant(janus, confirmation_id) == "granted"
    wait_until(lambda: settled(janus, confirmation_id, EffectStatus.SUCCEEDED), timeout=30)
    assert len(ledger(janus).executions(str(confirmation_id))) == 1


def test_operator_killed_after_the_grant_is_saved_gets_the_same_answer_on_retry(
    janus: Janus, settings: Settings, processes: list[JanusProcess]
) -> None:
    start(processes, settings)
    confirmation_id = pending_confirmation(janus, ttl=600)
    client = grant_elsewhere(
        settings, confirmation_id, "dana", "grant-1", "command.GrantConfirmation.after_save"
    )
    assert client.returncode == KILLED, client.stderr

    # The operator's retry with the same key is answered from the record: nothing new happens.
    assert grant(janus, confirmation_id, key="grant-1") == "granted"
    confirmation: Confirmation = janus.app.repository.get(confirmation_id)
    assert confirmation.decided_by == "user:dana"
    wait_until(lambda: settled(janus, confirmation_id, EffectStatus.SUCCEEDED), timeout=30)
    wait_until(lambda: executor_caught_up(janus), timeout=30)
    assert len(ledger(janus).executions(str(confirmation_id))) == 1


def test_executor_killed_after_started_runs_the_effect_once_after_restart(
    janus: Janus, settings: Settings, processes: list[JanusProcess]
) -> None:
    doomed = start(processes, settings, crash_at="executor.after_started")
    confirmation_id = pending_confirmation(janus, ttl=600)
    grant(janus, confirmation_id)
    assert doomed.wait_dead() == KILLED
    assert ledger(janus).executions() == []
    started = effect(janus, confirmation_id)
    assert started is not None and started.status is EffectStatus.STARTED

    start(processes, settings)
    wait_until(lambda: settled(janus, confirmation_id, EffectStatus.SUCCEEDED), timeout=30)
    assert len(ledger(janus).executions(str(confirmation_id))) == 1


def test_executor_killed_after_the_effect_asks_the_device_instead_of_repeating(
    janus: Janus, settings: Settings, processes: list[JanusProcess]
) -> None:
    doomed = start(processes, settings, crash_at="executor.after_effect")
    confirmation_id = pending_confirmation(janus, ttl=600)
    grant(janus, confirmation_id)
    assert doomed.wait_dead() == KILLED
    assert len(ledger(janus).executions(str(confirmation_id))) == 1

    start(processes, settings)
    wait_until(lambda: settled(janus, confirmation_id, EffectStatus.SUCCEEDED), timeout=30)
    wait_until(lambda: executor_caught_up(janus), timeout=30)
    assert len(ledger(janus).executions(str(confirmation_id))) == 1


def test_executor_killed_after_an_unverifiable_effect_reports_outcome_unknown(
    janus: Janus, settings: Settings, processes: list[JanusProcess]
) -> None:
    doomed = start(processes, settings, crash_at="executor.after_effect")
    confirmation_id = _notify_confirmation(janus)
    grant(janus, confirmation_id)
    assert doomed.wait_dead() == KILLED

    start(processes, settings)
    wait_until(lambda: settled(janus, confirmation_id, EffectStatus.OUTCOME_UNKNOWN), timeout=30)
    assert len(ledger(janus, "notifier").executions(str(confirmation_id))) == 1
    janus.relational.catch_up()
    unknown = janus.views.effects(status="outcome_unknown")
    assert [row["confirmation_id"] for row in unknown] == [str(confirmation_id)]


def _notify_confirmation(janus: Janus) -> UUID:
    goal = janus.commands.submit_goal(m.SubmitGoal(text="tell the team"), DANA)
    action = m.Action(name="notify", parameters={"to": "team"})
    decision = janus.commands.record_decision(
        m.RecordDecision(
            goal_id=goal.aggregate_id, model="scripted", prompt="", raw_output="", action=action
        ),
        DANA,
    )
    return janus.commands.request_confirmation(
        m.RequestConfirmation(
            goal_id=goal.aggregate_id,
            decision_id=decision.aggregate_id,
            action=action,
            hazard="low",
            ttl_seconds=600,
        ),
        DANA,
    ).aggregate_id


def test_scheduler_killed_right_after_a_fire_runs_its_action_once_through_the_gate(
    janus: Janus, settings: Settings, processes: list[JanusProcess]
) -> None:
    # The fire and its request to the gate are one save; the process dies right after it.
    doomed = start(processes, settings, crash_at="scheduler.after_fire")
    job = janus.commands.schedule_job(
        m.ScheduleJob(
            name="heartbeat",
            trigger={"kind": "interval", "seconds": 0.5},
            action={"name": "notify"},
            misfire_policy="run_once",
        ),
        DANA,
    )
    assert doomed.wait_dead() == KILLED

    start(processes, settings)

    def fires() -> list[str]:
        janus.relational.catch_up()
        return [row["status"] for row in janus.views.fires(job.aggregate_id)]

    wait_until(lambda: fires().count("succeeded") >= 2, timeout=30)
    # The fire the dead scheduler recorded is not fired again; the executor ran its action.
    assert fires()[0] == "succeeded"
    per_key = Counter(e.key for e in ledger(janus, "notifier").executions())
    assert set(per_key.values()) == {1}
    effects = {row["confirmation_id"] for row in janus.views.fires(job.aggregate_id)}
    assert set(per_key) <= {str(c) for c in effects}


def test_a_deadline_that_passed_while_janus_was_down_is_recorded_on_start(
    janus: Janus, settings: Settings, processes: list[JanusProcess]
) -> None:
    first = start(processes, settings)
    confirmation_id = pending_confirmation(janus, ttl=1)
    first.kill()
    confirmation: Confirmation = janus.app.repository.get(confirmation_id)
    wait_until(lambda: datetime.now(UTC) > confirmation.expires_at, timeout=10)

    start(processes, settings)
    expired: Confirmation = janus.app.repository.get(confirmation_id)
    assert expired.status is ConfirmationStatus.EXPIRED


def test_two_operators_granting_at_once_execute_once(
    janus: Janus, settings: Settings, processes: list[JanusProcess]
) -> None:
    start(processes, settings)
    confirmation_id = pending_confirmation(janus, ttl=600)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        names = ["op-a", "op-b"]
        results = list(pool.map(lambda n: grant_elsewhere(settings, confirmation_id, n), names))
    outcomes = sorted(r.stdout.strip() for r in results)
    assert outcomes == ["already_granted", "granted"], [r.stderr for r in results]
    wait_until(lambda: settled(janus, confirmation_id, EffectStatus.SUCCEEDED), timeout=30)
    wait_until(lambda: executor_caught_up(janus), timeout=30)
    assert len(ledger(janus).executions(str(confirmation_id))) == 1


def test_two_janus_processes_share_the_work_without_doubling_it(
    janus: Janus, settings: Settings, processes: list[JanusProcess]
) -> None:
    leader = start(processes, settings)
    start(processes, settings)
    job = janus.commands.schedule_job(
        m.ScheduleJob(
            name="heartbeat",
            trigger={"kind": "interval", "seconds": 0.5},
            action={"name": "notify"},
            misfire_policy="catch_up",
        ),
        DANA,
    )
    confirmation_id = pending_confirmation(janus, ttl=600)
    grant(janus, confirmation_id)

    def succeeded() -> int:
        janus.relational.catch_up()
        return [r["status"] for r in janus.views.fires(job.aggregate_id)].count("succeeded")

    wait_until(lambda: succeeded() >= 2, timeout=30)
    leader.kill()  # the follower holds no lock yet; it must take over both duties
    before = succeeded()
    wait_until(lambda: succeeded() >= before + 2, timeout=30)

    wait_until(lambda: settled(janus, confirmation_id, EffectStatus.SUCCEEDED), timeout=30)
    assert len(ledger(janus).executions(str(confirmation_id))) == 1
    per_key = Counter(e.key for e in ledger(janus, "notifier").executions())
    assert set(per_key.values()) == {1}
