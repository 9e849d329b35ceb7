"""Finishing goals from the CLI, and the lines that say when nothing is running to act."""

from __future__ import annotations

from pathlib import Path

from adapters.locks import FileLeaderLock
from tests.e2e.test_cli import (
    as_json,
    assert_clean_failure,
    cli,
    home,
    ok,
    pending_confirmation,
    schedule_every,
    submit_goal,
)

__all__ = ["home"]  # the fixture, shared with test_cli


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
    executor = FileLeaderLock(home / "executor.lock")
    assert executor.try_acquire()
    try:
        served = ok("confirmations", "grant", pending_confirmation()).stdout
    finally:
        executor.release()
    assert "queued" not in served and served.strip().endswith(": granted")


def test_fires_of_a_job_with_no_scheduler_running_say_so(home: Path) -> None:
    job_id = schedule_every()
    assert "no fires yet; no scheduler is running" in ok("jobs", "fires", job_id).stdout
    scheduler = FileLeaderLock(home / "scheduler.lock")
    assert scheduler.try_acquire()
    try:
        assert "no scheduler" not in ok("jobs", "fires", job_id).stdout
    finally:
        scheduler.release()
