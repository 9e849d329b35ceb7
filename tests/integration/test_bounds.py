"""Bounds: a value a command accepted never stalls a view, and positions past int4 work.

Each test runs on SQLite and on Postgres (only Postgres enforces varchar lengths and int4).
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from bootstrap.container import Janus
from bootstrap.settings import Settings
from cli.main import app
from commands import models as m
from commands.errors import CommandError
from commands.invocation import Invocation
from domain.errors import DomainError
from domain.meta import Actor, ActorKind
from tests.support.api import Api, is_problem, serve_api

INT4_MAX = 2**31 - 1
AGENT = Invocation(Actor(ActorKind.AGENT, "planner"))


@pytest.fixture
def api(janus: Janus) -> Iterator[Api]:
    with serve_api(janus) as served:
        yield served


def healthy(janus: Janus) -> None:
    """The relational view has applied everything and is not stalled."""
    janus.relational.catch_up()
    status = janus.relational.status()
    assert status.state == "running", status.error
    assert status.position >= janus.app.head() or status.lag == 0


# -- break 8: positions past int4 ------------------------------------------------------------------


def test_timeline_after_a_position_past_int4_is_an_empty_page_not_a_500(api: Api) -> None:
    goal = api.submit_goal()
    response = api.get(
        f"/v1/goals/{goal['id']}/timeline",
        params={"after": INT4_MAX + 1, "min_position": goal["position"]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["entries"] == []


def test_events_at_positions_past_int4_reach_the_views(api: Api, settings: Settings) -> None:
    if settings.database_url is None:
        pytest.skip("SQLite's integers are 64-bit; only Postgres had int4 columns")
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('janus_events', 'notification_id'), %s)",
            (INT4_MAX + 10,),
        )
    goal = api.submit_goal()
    assert goal["position"] > INT4_MAX
    detail = api.get(f"/v1/goals/{goal['id']}", params={"min_position": goal["position"]})
    assert detail.status_code == 200, detail.text
    timeline = api.get(f"/v1/goals/{goal['id']}/timeline", params={"after": INT4_MAX}).json()
    assert [e["position"] for e in timeline["entries"]] == [goal["position"]]
    healthy(api.janus)


# -- break 5: bounds through the API ---------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 100, 101, 200])
def test_any_idempotency_key_the_api_accepts_keeps_the_views_running(api: Api, length: int) -> None:
    key = ("k" * length)[:length]
    goal = api.submit_goal("a goal with a long key", **{"Idempotency-Key": key})
    detail = api.get(f"/v1/goals/{goal['id']}", params={"min_position": goal["position"]})
    assert detail.status_code == 200, detail.text
    healthy(api.janus)


def test_an_idempotency_key_over_the_bound_is_refused_and_changes_nothing(api: Api) -> None:
    head = api.janus.app.head()
    response = api.post(
        "/v1/goals", json={"text": "too long a key"}, headers={"Idempotency-Key": "k" * 201}
    )
    assert is_problem(response, 422)
    assert api.janus.app.head() == head


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.text(st.sampled_from(string.printable[:94]), min_size=1, max_size=200),
    text=st.text(min_size=1, max_size=300),
    name=st.text(min_size=1, max_size=220),
)
def test_fuzzed_requests_either_fail_clearly_or_leave_the_views_healthy(
    api: Api, key: str, text: str, name: str
) -> None:
    key = f"{uuid4().hex[:8]}{key}"[:200]  # unique per example: a replay is not the point here
    goal = api.post("/v1/goals", json={"text": text}, headers={"Idempotency-Key": key})
    job = api.post(
        "/v1/jobs",
        json={
            "name": name,
            "trigger": {"kind": "interval", "seconds": 3600},
            "action": {"name": name, "parameters": {name: text}},
        },
        headers={"Idempotency-Key": key[::-1]},
    )
    for response in (goal, job):
        assert response.status_code in (201, 202, 422), response.text
        if response.status_code == 422:
            assert is_problem(response, 422)
    healthy(api.janus)
    if goal.status_code == 202:
        accepted = goal.json()
        read = api.get(f"/v1/goals/{accepted['id']}", params={"min_position": accepted["position"]})
        assert read.status_code == 200 and read.json()["text"] == text


# -- break 5: bounds through the commands (every entry point goes through them) --------------------

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=260)


def _attempt(run: Any) -> Any:
    """Run a command; a refusal must be a clear error, never anything else."""
    try:
        return run()
    except (ValidationError, DomainError, CommandError):
        return None


@hypothesis_settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(actor=ANY_TEXT, key=ANY_TEXT, text=ANY_TEXT, name=ANY_TEXT, value=ANY_TEXT)
def test_every_value_a_command_accepts_is_one_the_views_can_store(
    janus: Janus, actor: str, key: str, text: str, name: str, value: str
) -> None:
    def invocation() -> Invocation:
        who = Actor(ActorKind.USER, m.actor_name(actor))
        return Invocation(who, idempotency_key=m.idempotency_key(f"{uuid4().hex}{key}"[:200]))

    goal = _attempt(lambda: janus.commands.submit_goal(m.SubmitGoal(text=text), invocation()))
    goal = goal or janus.commands.submit_goal(m.SubmitGoal(text="fallback"), AGENT)
    action = {"name": name, "parameters": {value: [value, 1.5]}}
    decision_id = uuid4()
    _attempt(
        lambda: janus.commands.record_decision(
            m.RecordDecision.model_validate(
                {
                    "goal_id": goal.aggregate_id,
                    "decision_id": decision_id,
                    "model": name,
                    "prompt": text,
                    "raw_output": value,
                    "action": action,
                    "context_ids": [value],
                }
            ),
            AGENT,
        )
    )
    confirmation = _attempt(
        lambda: janus.commands.request_confirmation(
            m.RequestConfirmation.model_validate(
                {
                    "goal_id": goal.aggregate_id,
                    "decision_id": decision_id,
                    "action": action,
                    "hazard": "low",
                }
            ),
            AGENT,
        )
    )
    if confirmation is not None:
        _attempt(
            lambda: janus.commands.deny_confirmation(
                m.DenyConfirmation(confirmation_id=confirmation.aggregate_id, reason=text),
                invocation(),
            )
        )
    _attempt(
        lambda: janus.commands.register_document(
            m.RegisterDocument(
                source_uri=text, content_type=name, sha256="0" * 64, size_bytes=2**40
            ),
            AGENT,
        )
    )
    healthy(janus)


@pytest.mark.parametrize(
    "trigger",
    [
        {"kind": "interval", "seconds": 366 * 24 * 3600, "start_at": "9999-12-31T00:00:00+00:00"},
        {"kind": "interval", "seconds": 60, "start_at": "2030-01-01T00:00:00"},
        {"kind": "date", "run_at": "0001-01-01T00:00:00+00:00"},
        {"kind": "cron", "expression": "* * * * *", "timezone": "Not/AZone"},
        {"kind": "cron", "expression": "* * * * *", "timezone": "../../etc/passwd"},
    ],
)
def test_a_trigger_the_scheduler_cannot_compute_is_refused_where_it_enters(
    trigger: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError):
        m.ScheduleJob.model_validate(
            {"name": "edge", "trigger": trigger, "action": {"name": "notify"}}
        )


@pytest.mark.parametrize(
    "parameters",
    [{"x": float("nan")}, {"x": float("inf")}, {"x": "a\x00b"}, {"\ud800": 1}],
)
def test_action_parameters_a_view_cannot_store_are_refused(parameters: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        m.Action(name="notify", parameters=parameters)


def test_a_document_size_past_bigint_is_refused_and_a_large_one_is_stored(janus: Janus) -> None:
    with pytest.raises(ValidationError):
        m.RegisterDocument(
            source_uri="s3://x", content_type="text/plain", sha256="0" * 64, size_bytes=2**63
        )
    cmd = m.RegisterDocument(
        source_uri="s3://x", content_type="text/plain", sha256="0" * 64, size_bytes=2**40
    )
    janus.commands.register_document(cmd, AGENT)
    healthy(janus)


# -- break 5: bounds through the CLI ---------------------------------------------------------------


def _cli(settings: Settings, *args: str) -> Any:
    env = {"JANUS_HOME": str(settings.home), "JANUS_DATABASE_URL": settings.database_url or ""}
    return CliRunner().invoke(app, list(args), env=env)


def test_cli_keys_and_actors_at_the_bound_work_and_past_it_fail_in_one_line(
    janus: Janus, settings: Settings
) -> None:
    ok = _cli(settings, "goals", "submit", "front door", "--idempotency-key", "k" * 200, "--json")
    assert ok.exit_code == 0, ok.output
    over = _cli(settings, "goals", "submit", "front door", "--idempotency-key", "k" * 201)
    assert over.exit_code == 1 and len(over.output.strip().splitlines()) == 1, over.output
    assert "idempotency key" in over.output

    goal = janus.commands.submit_goal(m.SubmitGoal(text="unlock"), AGENT)
    decided = _cli(
        settings, "goals", "decide", str(goal.aggregate_id), "--action", "notify",
        "--hazard", "low", "--as", "a" * 100, "--json",
    )  # fmt: skip
    assert decided.exit_code == 0, decided.output
    confirmation = json.loads(decided.output)["confirmation_id"]
    too_long = _cli(settings, "confirmations", "grant", confirmation, "--as", "a" * 101)
    assert too_long.exit_code == 1 and "actor name" in too_long.output, too_long.output
    granted = _cli(settings, "confirmations", "grant", confirmation, "--as", "b" * 100)
    assert granted.exit_code == 0, granted.output
    healthy(janus)
    assert janus.views.confirmations(None)[0]["decided_by"] == "user:" + "b" * 100


def test_the_views_keep_an_actor_and_a_command_id_at_their_bounds(janus: Janus) -> None:
    # What the API makes of a 200-character key: "api:<key id>:<key>", 237 characters.
    who = Invocation(Actor(ActorKind.USER, "x" * m.MAX_ACTOR_NAME), idempotency_key="k" * 237)
    janus.commands.submit_goal(m.SubmitGoal(text="long provenance"), who)
    healthy(janus)
    assert janus.views.goals()[0]["submitted_by"] == "user:" + "x" * m.MAX_ACTOR_NAME


def test_one_decision_id_on_two_goals_keeps_the_views_running(api: Api) -> None:
    """Decision ids are unique within a goal; a client may use one again on another goal."""
    janus, decision_id = api.janus, uuid4()
    goals = []
    for action in ("unlock_door", "notify"):
        goal = janus.commands.submit_goal(m.SubmitGoal(text=f"please {action}"), AGENT)
        janus.commands.record_decision(
            m.RecordDecision(
                goal_id=goal.aggregate_id,
                decision_id=decision_id,
                model="scripted",
                prompt="?",
                raw_output="{}",
                action=m.Action(name=action),
            ),
            AGENT,
        )
        goals.append((goal.aggregate_id, action))
    healthy(janus)
    for goal_id, action in goals:
        detail = api.get(f"/v1/goals/{goal_id}", params={"min_position": janus.app.head()})
        assert detail.json()["latest_decision"]["action"]["name"] == action
