"""Finishing goals from the CLI, and the lines that say when nothing is running to act."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from adapters.role_status import RoleBoard, RoleState
from bootstrap.container import build_views_engine
from bootstrap.settings import Settings
from tests.support.cli import (
    as_json,
    assert_clean_failure,
    cli,
    ok,
    pending_confirmation,
    schedule_every,
    submit_goal,
)


@contextmanager
def runtime_reporting(home: Path, role: str) -> Iterator[None]:
    """As a runtime process does: the role says ``running`` on the board, then ``stopped``."""
    engine = build_views_engine(Settings(home=home))
    board = RoleBoard(engine, "test-runtime", heartbeat_seconds=60)
    board.write({role: RoleState("running", None, datetime.now(UTC))})
    try:
        yield
    finally:
        board.write({role: RoleState("stopped", None, datetime.now(UTC))})
        engine.dispose()


def test_goals_are_completed_failed_and_cancelled_once(home: Path) -> None:
    done, failed = submit_goal(), submit_goal()
    assert (
        f"goal {done}: completed" in ok("goals", "complete", done[:8], "--summary", "open").stdout
    )
    assert f"goal {failed}: failed" in ok("goals", "fail", failed, "--reason", "jammed").stdout
    assert_clean_failure(cli("goals", "cancel", done), "already completed")
    statuses = {g["id"]: (g["status"], g["outcome"]) for g in as_json("goals", "list")}
    assert statuses == {done: ("completed", "open"), failed: ("failed", "jammed")}


def test_cancelling_a_goal_withdraws_its_pending_confirmations(home: Path) -> None:
    confirmation_id = pending_confirmation()
    [row] = as_json("confirmations", "list")
    result = ok("goals", "cancel", row["goal_id"], "--reason", "moved out")
    assert f"goal {row['goal_id']}: cancelled" in result.stdout
    assert f"confirmation {confirmation_id}: cancelled" in result.stdout
    assert as_json("confirmations", "list") == []
    assert_clean_failure(cli("confirmations", "grant", confirmation_id), "cancelled")


def test_a_grant_with_no_executor_running_says_it_is_queued(home: Path) -> None:
    alone = ok("confirmations", "grant", pending_confirmation()).stdout
    assert "queued: no executor is running" in alone
    with runtime_reporting(home, "executor"):
        served = ok("confirmations", "grant", pending_confirmation()).stdout
    assert "queued" not in served and served.strip().endswith(": granted")


def test_fires_of_a_job_with_no_scheduler_running_say_so(home: Path) -> None:
    job_id = schedule_every()
    assert "no fires yet; no scheduler is running" in ok("jobs", "fires", job_id).stdout
    with runtime_reporting(home, "scheduler"):
        assert "no scheduler" not in ok("jobs", "fires", job_id).stdout
    assert "no scheduler is running" in ok("jobs", "fires", job_id).stdout
