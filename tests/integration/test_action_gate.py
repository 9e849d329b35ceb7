"""One gate for every action: a job cannot unlock a door that no approver confirmed.

On both stores: jobs and agent decisions ask the same gate; the catalogue decides the hazard;
every execution is an Effect in the ledger, and the door's own ledger shows each unlock once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from typer.testing import CliRunner

from adapters.clock import SystemClock
from adapters.effects import Ledger
from bootstrap.container import Janus
from bootstrap.settings import Settings
from cli.main import app
from commands import models as m
from domain.actions import POLICY_GRANTOR
from domain.api_key import Role
from domain.confirmation import Confirmation, ConfirmationStatus, HazardClass
from domain.effect import Effect, effect_id_for
from domain.errors import InvalidValue
from tests.servers import wait_until
from tests.support.api import Api, is_problem, serve_api
from tests.support.commands import as_alice
from tests.support.scheduler import executor_running

UNLOCK_JOB = {
    "name": "open up every morning",
    "trigger": {"kind": "interval", "seconds": 1},
    "action": {"name": "unlock_door", "parameters": {"door": "front"}},
}


@pytest.fixture
def live(settings: Settings) -> Iterator[Janus]:
    """Real time: APScheduler's interval triggers run on the wall clock."""
    built = Janus.build(settings, clock=SystemClock())
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def api(live: Janus) -> Iterator[Api]:
    with serve_api(live) as served:
        yield served


def door(janus: Janus) -> Ledger:
    return Ledger(janus.settings.home / "world" / "door_lock.sqlite")


def job_confirmations(janus: Janus, job_id: str) -> list[Confirmation]:
    found = []
    for logged in janus.reader.iterate():
        if isinstance(logged.event, Confirmation.Requested) and str(logged.event.job_id) == job_id:
            confirmation: Confirmation = janus.app.repository.get(logged.event.originator_id)
            found.append(confirmation)
    return found


def test_a_job_that_unlocks_a_door_waits_for_an_approver_and_then_unlocks_once(
    api: Api, live: Janus
) -> None:
    scheduled = api.post("/v1/jobs", json=UNLOCK_JOB)
    assert scheduled.status_code == 202, scheduled.text
    job_id = scheduled.json()["id"]
    live.relational.catch_up()
    ran = api.post(f"/v1/jobs/{job_id}/run", params={"min_position": live.app.head()})
    assert ran.status_code == 200, ran.text
    assert ran.json()["status"] == "waiting" and ran.json()["confirmation_id"]

    scheduler = live.scheduler()
    scheduler.start()
    try:
        with executor_running(live):
            # The interval trigger fires too: each fire asks, none unlocks.
            wait_until(lambda: len(job_confirmations(live, job_id)) >= 2, timeout=20)
            asked = job_confirmations(live, job_id)
            assert {c.hazard for c in asked} == {HazardClass.HIGH}
            assert {c.status for c in asked} == {ConfirmationStatus.PENDING}
            assert door(live).executions() == []

            first = asked[0].id
            refused = api.post(f"/v1/confirmations/{first}/grant")
            assert is_problem(refused, 403)
            granted = api.post(f"/v1/confirmations/{first}/grant", role=Role.APPROVER)
            assert granted.json()["outcome"] == "granted"
            wait_until(lambda: len(door(live).executions()) == 1, timeout=20)
            fire_id = asked[0].fire_id

            def fire_succeeded() -> bool:
                live.relational.catch_up()  # what janus run's projection thread does
                return bool(live.app.repository.get(fire_id).status.value == "succeeded")

            wait_until(fire_succeeded, timeout=20)
    finally:
        scheduler.stop()

    executions = door(live).executions()
    assert [e.key for e in executions] == [str(first)]
    # Every execution is an Effect in the ledger, keyed by the confirmation it carried out.
    effect: Effect = live.app.repository.get(effect_id_for(first))
    assert effect.status.value == "succeeded" and effect.idempotency_key == str(first)
    pending = [c for c in job_confirmations(live, job_id) if c.id != first]
    assert all(c.status is ConfirmationStatus.PENDING for c in pending)


def test_an_unknown_action_or_bad_parameters_are_refused_when_the_job_is_scheduled(
    api: Api, live: Janus
) -> None:
    head = live.app.head()
    cases = [
        ({"name": "launch_rocket"}, ["body", "action", "name"]),
        (
            {"name": "unlock_door", "parameters": {"door": 5}},
            ["body", "action", "parameters", "door"],
        ),
        (
            {"name": "unlock_door", "parameters": {"window": "x"}},
            ["body", "action", "parameters", "window"],
        ),
    ]
    for action, loc in cases:
        response = api.post("/v1/jobs", json={**UNLOCK_JOB, "action": action})
        assert is_problem(response, 422), response.text
        assert response.json()["errors"][0]["loc"] == loc
    with pytest.raises(InvalidValue, match="unknown action"):
        live.commands.schedule_job(
            m.ScheduleJob.model_validate({**UNLOCK_JOB, "action": {"name": "launch_rocket"}}),
            as_alice(),
        )
    assert live.app.head() == head


def test_the_cli_refuses_an_unknown_action_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("JANUS_DATABASE_URL", "JANUS_NATS_URL", "JANUS_CRASH_AT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JANUS_HOME", str(tmp_path / "janus"))
    result = CliRunner().invoke(
        app, ["jobs", "schedule", "x", "--every", "5", "--action", "launch_rocket"]
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown action 'launch_rocket'" in lines[0]


def test_the_cli_refuses_an_unknown_action_before_recording_the_decision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("JANUS_DATABASE_URL", "JANUS_NATS_URL", "JANUS_CRASH_AT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JANUS_HOME", str(tmp_path / "janus"))
    runner = CliRunner()
    submitted = runner.invoke(app, ["goals", "submit", "open the hatch", "--json"])
    goal_id = json.loads(submitted.stdout)["goal_id"]
    argv = ["goals", "decide", goal_id, "--action", "open_hatch", "--hazard", "high"]
    result = runner.invoke(app, argv)
    assert result.exit_code == 1 and "unknown action 'open_hatch'" in result.stderr
    settings = Settings(home=tmp_path / "janus", database_url=None)
    janus = Janus.build(settings)
    try:
        assert janus.app.head() == 1  # only the goal: no decision was recorded
    finally:
        janus.close()


def _decision(janus: Janus, action: str, parameters: dict[str, str]) -> tuple[UUID, UUID]:
    goal = janus.commands.submit_goal(m.SubmitGoal(text=f"please {action}"), as_alice())
    chosen = m.Action(name=action, parameters=parameters)
    decision = janus.commands.record_decision(
        m.RecordDecision(
            goal_id=goal.aggregate_id,
            decision_id=uuid4(),
            model="scripted",
            prompt=action,
            raw_output="{}",
            action=chosen,
        ),
        as_alice(),
    )
    return goal.aggregate_id, decision.aggregate_id


def test_a_low_hazard_is_granted_by_policy_and_runs_as_an_effect(janus: Janus) -> None:
    goal_id, decision_id = _decision(janus, "notify", {"to": "ops"})
    result = janus.commands.request_action(
        m.RequestAction(
            goal_id=goal_id,
            decision_id=decision_id,
            action=m.Action(name="notify", parameters={"to": "ops"}),
        ),
        as_alice(),
    )
    assert result.outcome == "granted"
    confirmation: Confirmation = janus.app.repository.get(result.aggregate_id)
    assert (confirmation.status, confirmation.decided_by) == (
        ConfirmationStatus.GRANTED,
        POLICY_GRANTOR,
    )
    executor = janus.executor()
    while executor.run_once():
        pass
    effect: Effect = janus.app.repository.get(effect_id_for(result.aggregate_id))
    assert effect.status.value == "succeeded"
    notifier = Ledger(janus.settings.home / "world" / "notifier.sqlite")
    assert [e.key for e in notifier.executions()] == [str(result.aggregate_id)]


def test_a_caller_may_raise_a_hazard_but_never_lower_it(janus: Janus) -> None:
    goal_id, decision_id = _decision(janus, "unlock_door", {"door": "front"})
    lowered = janus.commands.request_action(
        m.RequestAction(
            goal_id=goal_id,
            decision_id=decision_id,
            action=m.Action(name="unlock_door", parameters={"door": "front"}),
            hazard=HazardClass.LOW,
        ),
        as_alice(),
    )
    assert lowered.outcome == "requested"
    confirmation: Confirmation = janus.app.repository.get(lowered.aggregate_id)
    assert (confirmation.hazard, confirmation.status) == (
        HazardClass.HIGH,
        ConfirmationStatus.PENDING,
    )
    goal_id, decision_id = _decision(janus, "notify", {"to": "ops"})
    raised = janus.commands.request_action(
        m.RequestAction(
            goal_id=goal_id,
            decision_id=decision_id,
            action=m.Action(name="notify", parameters={"to": "ops"}),
            hazard=HazardClass.HIGH,
        ),
        as_alice(),
    )
    asked: Confirmation = janus.app.repository.get(raised.aggregate_id)
    assert (asked.hazard, asked.status) == (HazardClass.HIGH, ConfirmationStatus.PENDING)


def test_confirmations_and_jobs_stored_before_the_gate_read_back_as_before(janus: Janus) -> None:
    """Version 1 events (no job_id/fire_id, no overlap) are upcast on read."""
    goal_id, decision_id = _decision(janus, "unlock_door", {"door": "front"})
    requested = janus.commands.request_confirmation(
        m.RequestConfirmation(
            goal_id=goal_id,
            decision_id=decision_id,
            action=m.Action(name="unlock_door", parameters={"door": "front"}),
            hazard=HazardClass.HIGH,
        ),
        as_alice(),
    )
    job_id = janus.commands.schedule_job(
        m.ScheduleJob.model_validate(UNLOCK_JOB), as_alice()
    ).aggregate_id
    mapper = janus.app.mapper
    for aggregate_id, dropped in (
        (requested.aggregate_id, ("job_id", "fire_id")),
        (job_id, ("overlap",)),
    ):
        (stored,) = janus.app.recorder.select_events(aggregate_id, limit=1)
        state = mapper.transcoder.decode(stored.state)
        assert state.pop("class_version") == 2
        for name in dropped:
            state.pop(name)
        old = type(stored)(
            originator_id=stored.originator_id,
            originator_version=stored.originator_version,
            topic=stored.topic,
            state=mapper.transcoder.encode(state),
        )
        event = mapper.to_domain_event(old)
        if aggregate_id == job_id:
            assert event.overlap == "skip"  # type: ignore[attr-defined]
        else:
            assert (event.job_id, event.fire_id) == (None, None)  # type: ignore[attr-defined]
            assert event.goal_id == goal_id  # type: ignore[attr-defined]
