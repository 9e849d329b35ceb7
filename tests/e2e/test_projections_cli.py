"""``janus projections`` end to end on both stores: status, rebuild, verify, retry, skip."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import Tracking
from sqlalchemy import update
from typer.testing import CliRunner, Result

from adapters.role_status import RoleBoard, RoleState
from bootstrap.container import Janus
from bootstrap.settings import Settings
from cli.projections import app
from commands import models as m
from projections import relational
from projections.runner import projection_positions
from tests.support.commands import as_alice
from tests.support.rebuild import goal_with_confirmation, poison


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The CLI builds its Janus from JANUS_*: point it at the test's store."""
    for name in ("JANUS_DATABASE_URL", "JANUS_NATS_URL", "JANUS_CRASH_AT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JANUS_HOME", str(settings.home))
    if settings.database_url:
        monkeypatch.setenv("JANUS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("COLUMNS", "200")
    return settings


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def ok(*args: str) -> Result:
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return result


def status(janus: Janus) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(ok("status", "--json").stdout)
    return found


def relational_status(janus: Janus) -> dict[str, Any]:
    [projection] = [p for p in status(janus)["projections"] if p["name"] == "relational"]
    return projection  # type: ignore[no-any-return]


def assert_clean_failure(result: Result, *fragments: str) -> None:
    """Exit 1, one short line on stderr naming the problem, no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.usefixtures("env")
def test_status_shows_position_head_lag_and_state(janus: Janus) -> None:
    goal_with_confirmation(janus)
    projection = relational_status(janus)
    assert (projection["position"], projection["head"], projection["lag"]) == (0, 3, 3)
    assert projection["phase"] == "running"
    assert projection["generation"] == 1
    assert projection["lag_seconds"] >= 0
    assert status(janus)["relay"] is None

    janus.relational.catch_up()
    projection = relational_status(janus)
    assert (projection["lag"], projection["lag_seconds"]) == (0, 0.0)
    table = ok("status").stdout
    assert "relational" in table
    assert "relay" not in table


@pytest.mark.usefixtures("env")
def test_status_says_stopped_since_when_no_projector_applies_the_view(
    janus: Janus, settings: Settings
) -> None:
    goal_with_confirmation(janus)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    with janus.views_engine.begin() as conn:
        conn.execute(update(projection_positions).values(updated_at=an_hour_ago))
    projection = relational_status(janus)
    assert (projection["phase"], projection["running"]) == ("running", False)
    assert projection["stopped_since"].startswith(an_hour_ago.strftime("%Y-%m-%d %H:%M"))
    table = ok("status").stdout
    assert f"stopped since {an_hour_ago:%Y-%m-%d %H:%M}" in table and " running " not in table

    if settings.embedded:  # there the runtime process applies the views and says so on its board
        board = RoleBoard(janus.views_engine, "test-runtime", heartbeat_seconds=60)
        board.write({"projections": RoleState("running", None, datetime.now(UTC))})
        assert relational_status(janus)["running"] is True
        assert "stopped" not in ok("status").stdout.split("projections:")[0]
    else:
        janus.relational.run_once()  # a projector moved it to the head: nothing says stopped
        assert relational_status(janus)["running"] is None
        assert "caught up" in ok("status").stdout


@pytest.mark.usefixtures("env")
def test_skip_on_a_view_that_is_not_stalled_says_so_plainly(janus: Janus) -> None:
    goal_with_confirmation(janus)
    result = cli("skip", "relational", "--position", "2")
    assert_clean_failure(result, "relational is not stalled", "nothing to skip")
    assert "None" not in result.stderr


@pytest.mark.usefixtures("env")
def test_status_shows_the_relay_once_it_has_recorded_a_position(
    janus: Janus, settings: Settings
) -> None:
    for text in ("a", "b", "c"):
        janus.commands.submit_goal(m.SubmitGoal(text=text), as_alice())
    name = f"relay:{settings.stream_name}"
    janus.app.save_tracked(tracking=Tracking(notification_id=1, application_name=name))

    relay = status(janus)["relay"]

    assert relay["name"] == name
    assert (relay["position"], relay["head"], relay["lag"]) == (1, 3, 2)
    assert relay["lag_seconds"] >= 0
    assert name in ok("status").stdout


@pytest.mark.usefixtures("env")
def test_rebuild_switches_to_a_new_generation_that_verify_agrees_with(janus: Janus) -> None:
    goal_with_confirmation(janus)
    janus.relational.catch_up()

    rebuilt = ok("rebuild", "relational")

    assert "relational: generation 2 is live at position 3" in rebuilt.stdout
    assert relational_status(janus)["generation"] == 2
    verified = ok("verify", "relational")
    assert "relational matches a fresh build at position 3" in verified.stdout
    report = json.loads(ok("verify", "relational", "--json").stdout)
    assert report["ok"] is True
    assert {t["table"] for t in report["tables"]} >= {"goals", "confirmations", "audit"}


@pytest.mark.usefixtures("env")
def test_verify_exits_1_and_names_the_tables_that_differ(janus: Janus) -> None:
    goal_with_confirmation(janus)
    janus.relational.catch_up()
    with janus.views_engine.begin() as conn:
        conn.execute(update(relational.goals).values(text="tampered"))

    result = cli("verify", "relational")

    assert_clean_failure(result, "relational differs from a fresh build", "goals: 1 changed")
    assert "tampered" in result.stdout
    report = json.loads(cli("verify", "relational", "--json").stdout)
    assert report["ok"] is False
    [goals] = [t for t in report["tables"] if t["table"] == "goals"]
    assert goals["changed"] == 1


@pytest.mark.usefixtures("env")
def test_retry_and_skip_take_a_stalled_view_past_its_poison_event(janus: Janus) -> None:
    goal_with_confirmation(janus)
    bad = poison(janus)
    janus.commands.submit_goal(m.SubmitGoal(text="after"), as_alice())
    assert_clean_failure(cli("retry", "relational"), "view stalled", f"stalled at {bad}")
    projection = relational_status(janus)
    assert (projection["phase"], projection["error_position"]) == ("stalled", bad)
    assert "stalled" in ok("status").stdout

    assert_clean_failure(
        cli("skip", "relational", "--position", str(bad + 1)),
        f"stalled at position {bad}, not {bad + 1}: skip --position {bad}",
    )
    skipped = ok("skip", "relational", "--position", str(bad))

    assert f"skipped the event at position {bad}" in skipped.stdout
    assert "running, at position" in ok("retry", "relational").stdout
    projection = relational_status(janus)
    assert (projection["phase"], projection["skipped"], projection["lag"]) == ("running", [bad], 0)
    assert ok("verify", "relational")


@pytest.mark.parametrize(
    "args",
    [
        ("rebuild", "nope"),
        ("verify", "nope"),
        ("retry", "nope"),
        ("skip", "nope", "--position", "1"),
    ],
)
@pytest.mark.usefixtures("env")
def test_an_unknown_projection_is_one_clear_line(args: tuple[str, ...]) -> None:
    assert_clean_failure(
        cli(*args), "unknown projection 'nope'", "known: graph, objects, relational, vector"
    )


@pytest.mark.usefixtures("env")
def test_a_second_rebuild_at_the_same_time_is_refused(janus: Janus) -> None:
    held = janus.leader_lock("projection-build.relational")
    assert held.try_acquire()
    try:
        assert_clean_failure(cli("rebuild", "relational"), "already running")
        assert_clean_failure(cli("verify", "relational"), "already running")
    finally:
        held.release()


@pytest.mark.usefixtures("env")
def test_a_rebuild_that_meets_a_poison_event_fails_cleanly(janus: Janus) -> None:
    goal_with_confirmation(janus)
    bad = poison(janus)
    assert_clean_failure(cli("rebuild", "relational"), f"position {bad} cannot be projected")
    assert relational_status(janus)["generation"] == 1


def test_an_unreachable_store_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JANUS_HOME", str(tmp_path))
    monkeypatch.setenv("JANUS_DATABASE_URL", "postgresql://janus@127.0.0.1:1/janus")
    assert_clean_failure(cli("status"), "store-unavailable")
