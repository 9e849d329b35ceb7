"""How the role board summarises what the processes last reported (pure, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapters.role_status import _Row, summarise

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def row(state: str, age: float = 0.0, detail: str | None = None, instance: str = "a") -> _Row:
    updated = NOW - timedelta(seconds=age)
    return _Row(instance, state, detail, updated - timedelta(minutes=5), updated, age < 15)


def test_a_role_is_up_while_a_fresh_row_says_running() -> None:
    summary = summarise("executor", [row("running"), row("standby", instance="b")])
    assert summary.ok and summary.text == "running on a, 1 standby"


def test_a_killed_leader_shows_as_stopped_since_its_last_heartbeat() -> None:
    summary = summarise("executor", [row("running", age=60)])
    assert not summary.ok and summary.state == "stopped"
    assert summary.text == "stopped since 2026-12-07 11:59:00 UTC"


def test_a_failing_duty_says_why_and_a_lone_standby_is_not_running() -> None:
    failing = summarise("scheduler", [row("failing", detail="OperationalError: refused")])
    assert not failing.ok and failing.text.endswith(": OperationalError: refused")
    waiting = summarise("executor", [row("standby"), row("running", age=60, instance="b")])
    assert not waiting.ok and waiting.text.startswith("not running: waiting for its leader lock")
