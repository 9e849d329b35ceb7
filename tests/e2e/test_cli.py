"""The ``janus`` CLI end to end on the embedded store: exit codes, output, JSON, and the demo."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from adapters.effects import Ledger
from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands.invocation import Invocation
from commands.models import SubmitGoal
from domain.confirmation import Confirmation
from domain.effect import Effect, effect_id_for
from domain.meta import Actor, ActorKind, CommandContext
from tests.servers import wait_until
from tests.support.cli import (
    as_json,
    assert_clean_failure,
    cli,
    ok,
    pending_confirmation,
    schedule_every,
    submit_goal,
)

DEMO_TIMEOUT = 120


def invocation() -> Invocation:
    return Invocation(Actor(ActorKind.USER, "test"))


# -- goals ---------------------------------------------------------------------------------------


def test_submit_prints_the_goal_id_and_its_log_position(home: Path) -> None:
    result = ok("goals", "submit", "water the plants", "--priority", "3")
    assert result.stdout.startswith("goal ")
    assert "submitted at position 1" in result.stdout


def test_submit_json_holds_id_and_position(home: Path) -> None:
    body = as_json("goals", "submit", "water the plants")
    assert UUID(body["goal_id"])
    assert body["position"] == 1
    assert body["outcome"] == "submitted"


def test_submit_with_the_same_idempotency_key_returns_the_same_goal(home: Path) -> None:
    first = as_json("goals", "submit", "once", "--idempotency-key", "k-1")
    again = as_json("goals", "submit", "once", "--idempotency-key", "k-1")
    assert again["goal_id"] == first["goal_id"]
    assert len(as_json("goals", "list")) == 1


def test_reusing_an_idempotency_key_for_another_goal_fails_cleanly(home: Path) -> None:
    ok("goals", "submit", "once", "--idempotency-key", "k-2")
    result = cli("goals", "submit", "something else", "--idempotency-key", "k-2")
    assert_clean_failure(result, "idempotency")


def test_submit_with_an_out_of_range_priority_names_the_field(home: Path) -> None:
    assert_clean_failure(cli("goals", "submit", "x", "--priority", "42"), "priority")


def test_goals_list_shows_submitted_goals_and_filters_by_status(home: Path) -> None:
    goal_id = submit_goal("feed the cat")
    table = ok("goals", "list").stdout
    assert goal_id[:8] in table
    assert "feed the cat" in table
    assert [g["id"] for g in as_json("goals", "list", "--status", "submitted")] == [goal_id]
    assert as_json("goals", "list", "--status", "completed") == []


def test_decide_without_hazard_records_only_the_decision(home: Path) -> None:
    goal_id = submit_goal()
    result = ok("goals", "decide", goal_id, "--action", "notify", "--param", "to=alice")
    assert "decision" in result.stdout
    assert "recorded" in result.stdout
    assert "confirmation" not in result.stdout
    assert as_json("goals", "list")[0]["latest_action"] == "notify"
    assert as_json("confirmations", "list", "--status", "all") == []


def test_decide_with_hazard_requests_a_pending_confirmation(home: Path) -> None:
    goal_id = submit_goal()
    result = ok(
        "goals",
        "decide",
        goal_id,
        "--action",
        "unlock_door",
        "--param",
        "door=front",
        "--hazard",
        "high",
        "--ttl",
        "600",
    )
    assert "requested" in result.stdout
    [row] = as_json("confirmations", "list")
    assert row["goal_id"] == goal_id
    assert (row["action"], row["parameters"], row["hazard"]) == (
        "unlock_door",
        {"door": "front"},
        "high",
    )
    assert row["status"] == "pending"
    table = ok("confirmations", "list").stdout
    assert row["id"][:8] in table
    assert "9m 5" in table  # time left on a ten-minute deadline


def test_decide_on_an_unknown_goal_fails_cleanly(home: Path) -> None:
    missing = str(uuid4())
    result = cli("goals", "decide", missing, "--action", "notify")
    assert_clean_failure(result, "not-found", missing)


def test_decide_with_a_bad_hazard_fails_and_records_nothing(home: Path) -> None:
    goal_id = submit_goal()
    result = cli("goals", "decide", goal_id, "--action", "unlock_door", "--hazard", "extreme")
    assert_clean_failure(result, "hazard")
    assert as_json("goals", "list")[0]["latest_action"] is None


def test_decide_with_a_param_that_is_not_key_value_fails_cleanly(home: Path) -> None:
    goal_id = submit_goal()
    result = cli("goals", "decide", goal_id, "--action", "notify", "--param", "nonsense")
    assert_clean_failure(result, "key=value")


def test_a_goal_id_that_is_neither_uuid_nor_prefix_fails_cleanly(home: Path) -> None:
    result = cli("goals", "decide", "not-a-uuid", "--action", "notify")
    assert_clean_failure(result, "neither a UUID nor a prefix")


def test_ids_may_be_shortened_to_a_unique_prefix(home: Path) -> None:
    confirmation_id = pending_confirmation()
    result = ok("confirmations", "grant", confirmation_id[:8])
    assert f"confirmation {confirmation_id}: granted" in result.stdout


def test_an_ambiguous_prefix_fails_cleanly(home: Path) -> None:
    store = Janus.build(Settings(home=home))
    try:
        for suffix in ("1", "2"):
            goal_id = UUID(f"abcd0000-0000-4000-8000-00000000000{suffix}")
            store.commands.submit_goal(SubmitGoal(text="twin", goal_id=goal_id), invocation())
    finally:
        store.close()
    result = cli("goals", "decide", "abcd", "--action", "notify")
    assert_clean_failure(result, "ambiguous")
    ok("goals", "decide", "abcd0000-0000-4000-8000-000000000001", "--action", "notify")


def test_a_prefix_that_matches_nothing_fails_cleanly(home: Path) -> None:
    submit_goal()
    result = cli("goals", "decide", "0000ffff", "--action", "notify")
    assert_clean_failure(result, "no goal with id 0000ffff")


# -- confirmations -------------------------------------------------------------------------------


def test_granting_twice_answers_already_granted(home: Path) -> None:
    confirmation_id = pending_confirmation()
    assert "granted" in ok("confirmations", "grant", confirmation_id, "--as", "bob").stdout
    again = ok("confirmations", "grant", confirmation_id, "--as", "bob").stdout
    assert "already_granted" in again
    [row] = as_json("confirmations", "list", "--status", "granted")
    assert row["decided_by"] == "user:bob"
    assert as_json("confirmations", "list") == []


def test_a_repeated_grant_key_replays_the_first_answer(home: Path) -> None:
    confirmation_id = pending_confirmation()
    first = ok("confirmations", "grant", confirmation_id, "--idempotency-key", "g-1").stdout
    again = ok("confirmations", "grant", confirmation_id, "--idempotency-key", "g-1").stdout
    assert first.splitlines()[0].endswith(": granted")
    assert again.splitlines()[0].endswith(": granted (replayed)")


def test_deny_records_the_reason(home: Path) -> None:
    confirmation_id = pending_confirmation()
    result = ok("confirmations", "deny", confirmation_id, "--reason", "nobody is home")
    assert "denied" in result.stdout
    [row] = as_json("confirmations", "list", "--status", "denied")
    assert row["reason"] == "nobody is home"


def test_deny_without_a_reason_is_a_usage_error(home: Path) -> None:
    result = cli("confirmations", "deny", pending_confirmation())
    assert result.exit_code == 2
    assert "--reason" in result.output


def test_granting_a_denied_confirmation_fails_cleanly(home: Path) -> None:
    confirmation_id = pending_confirmation()
    ok("confirmations", "deny", confirmation_id, "--reason", "no")
    assert_clean_failure(cli("confirmations", "grant", confirmation_id))


def test_granting_an_unknown_confirmation_fails_with_a_clear_message(home: Path) -> None:
    missing = str(uuid4())
    result = cli("confirmations", "grant", missing)
    assert_clean_failure(result, f"no confirmation with id {missing}")


def test_debug_shows_the_traceback_of_a_failure(home: Path) -> None:
    result = cli("--debug", "confirmations", "grant", str(uuid4()))
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert "NotFound" in result.stderr


# -- jobs ----------------------------------------------------------------------------------------


def test_schedule_prints_the_job_and_list_shows_its_policy_and_counts(home: Path) -> None:
    result = ok("jobs", "schedule", "heartbeat", "--every", "2", "--misfire", "skip")
    assert "scheduled" in result.stdout
    [job] = as_json("jobs", "list")
    assert job["name"] == "heartbeat"
    assert job["trigger"] == {"kind": "interval", "seconds": 2.0, "start_at": None}
    assert job["misfire_policy"] == "skip"
    assert job["fired_count"] == job["missed_count"] == 0
    table = ok("jobs", "list").stdout
    assert "every 2s" in table
    assert "0/0/0/0" in table
    assert "heartbeat" in table


def test_schedule_by_cron_and_by_date(home: Path) -> None:
    ok(
        "jobs",
        "schedule",
        "nightly",
        "--cron",
        "0 3 * * *",
        "--misfire",
        "catch_up",
        "--max-catch-up",
        "2",
        "--param",
        "to=ops",
    )
    ok("jobs", "schedule", "once", "--at", "2031-01-01T09:00:00+00:00")
    triggers = {job["name"]: job["trigger"]["kind"] for job in as_json("jobs", "list")}
    assert triggers == {"nightly": "cron", "once": "date"}


def test_an_invalid_cron_expression_fails_with_its_field_path(home: Path) -> None:
    result = cli("jobs", "schedule", "bad", "--cron", "every tuesday")
    assert_clean_failure(result, "trigger.cron.expression")


def test_a_date_without_timezone_fails_cleanly(home: Path) -> None:
    result = cli("jobs", "schedule", "naive", "--at", "2031-01-01T09:00:00")
    assert_clean_failure(result, "trigger.date.run_at")


def test_schedule_needs_exactly_one_trigger(home: Path) -> None:
    assert_clean_failure(cli("jobs", "schedule", "none"), "exactly one")
    both = cli("jobs", "schedule", "both", "--every", "5", "--cron", "* * * * *")
    assert_clean_failure(both, "exactly one")


def test_an_unknown_misfire_policy_fails_cleanly(home: Path) -> None:
    result = cli("jobs", "schedule", "x", "--every", "5", "--misfire", "sometimes")
    assert_clean_failure(result, "misfire_policy")


def test_pause_resume_and_remove_report_their_outcome(home: Path) -> None:
    job_id = schedule_every()
    assert "paused" in ok("jobs", "pause", job_id).stdout
    assert "already_paused" in ok("jobs", "pause", job_id).stdout
    assert as_json("jobs", "list")[0]["status"] == "paused"
    assert "resumed" in ok("jobs", "resume", job_id).stdout
    assert "removed" in ok("jobs", "remove", job_id).stdout
    assert as_json("jobs", "list") == []


def test_pausing_an_unknown_job_fails_cleanly(home: Path) -> None:
    missing = str(uuid4())
    assert_clean_failure(cli("jobs", "pause", missing), f"no job with id {missing}")


def test_fires_of_a_new_job_are_empty(home: Path) -> None:
    job_id = schedule_every()
    assert as_json("jobs", "fires", job_id) == []
    assert "Fires" in ok("jobs", "fires", job_id).stdout


def test_fires_of_an_unknown_or_malformed_job_fail_cleanly(home: Path) -> None:
    missing = str(uuid4())
    assert_clean_failure(cli("jobs", "fires", missing), f"no job with id {missing}")
    assert_clean_failure(cli("jobs", "fires", "not-a-uuid"), "neither a UUID")


# -- effects -------------------------------------------------------------------------------------


def effect_with_unknown_outcome(home: Path) -> str:
    """A granted notify whose executor died right after recording Started, then came back.

    The notifier cannot say whether it sent, so the recovering executor parks the effect as
    outcome-unknown: the one case an operator must reconcile.
    """
    confirmation_id = UUID(pending_confirmation("notify", "to=alice"))
    ok("confirmations", "grant", str(confirmation_id))
    store = Janus.build(Settings(home=home))
    try:
        confirmation: Confirmation = store.app.repository.get(confirmation_id)
        ctx = CommandContext(
            "test", str(confirmation.goal_id), "test", Actor.system("executor"), "t"
        )
        started = Effect.start(
            confirmation.id, confirmation.goal_id, confirmation.action, confirmation.parameters, ctx
        )
        store.app.save(started)
        store.executor().run_once()
    finally:
        store.close()
    return str(effect_id_for(confirmation_id))


def test_effects_list_is_empty_on_a_new_store(home: Path) -> None:
    assert as_json("effects", "list") == []
    assert "Effects" in ok("effects", "list").stdout


def test_an_effect_of_unknown_outcome_is_listed_and_reconciled(home: Path) -> None:
    effect_id = effect_with_unknown_outcome(home)
    [row] = as_json("effects", "list", "--status", "outcome_unknown")
    assert row["id"] == effect_id
    assert effect_id[:8] in ok("effects", "list").stdout
    result = ok("effects", "reconcile", effect_id, "--did-not-happen", "--note", "alice: no sms")
    assert "reconciled" in result.stdout
    [row] = as_json("effects", "list", "--status", "reconciled")
    assert row["happened"] is False


def test_reconciling_twice_fails_cleanly(home: Path) -> None:
    effect_id = effect_with_unknown_outcome(home)
    ok("effects", "reconcile", effect_id, "--happened")
    assert_clean_failure(cli("effects", "reconcile", effect_id, "--happened"), "conflict")


def test_reconciling_an_unknown_effect_fails_cleanly(home: Path) -> None:
    missing = str(uuid4())
    result = cli("effects", "reconcile", missing, "--happened")
    assert_clean_failure(result, f"no effect with id {missing}")


def test_reconcile_needs_a_verdict(home: Path) -> None:
    assert cli("effects", "reconcile", str(uuid4())).exit_code == 2


# -- settings ------------------------------------------------------------------------------------


def test_a_bad_database_url_fails_cleanly(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JANUS_DATABASE_URL", "mysql://nope")
    assert_clean_failure(cli("goals", "list"), "database_url")


# -- the process ---------------------------------------------------------------------------------


def test_run_serves_the_cli_and_stops_cleanly_on_sigterm(home: Path) -> None:
    confirmation_id = pending_confirmation()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True).start()
    try:
        wait_until(lambda: any(x.startswith("janus ready") for x in lines), 30, message="ready")
        ok("confirmations", "grant", confirmation_id)
        door_lock = Ledger(home / "world" / "door_lock.sqlite")
        wait_until(lambda: bool(door_lock.executions(confirmation_id)), 20, message="unlock")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.kill()
        proc.wait(10)
    assert len(door_lock.executions(confirmation_id)) == 1


# -- the demo ------------------------------------------------------------------------------------


def test_demo_runs_the_whole_story_and_the_door_unlocks_exactly_once(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JANUS_")}
    env["COLUMNS"] = "120"
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--fast", "--home", str(tmp_path / "demo")],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "already_granted" in result.stdout
    assert "executed exactly once" in result.stdout
    assert "door lock executions (grant):   1 " in result.stdout
    assert "missed" in result.stdout
    assert "demo finished" in result.stdout
    assert "decision, step 1" in result.stdout and "Goal completed" in result.stdout


def test_demo_refuses_to_wipe_a_directory_it_did_not_make(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    result = cli("demo", "--home", str(precious))
    assert result.exit_code == 1
    assert "refusing to wipe" in result.stdout
    assert (precious / "thesis.tex").exists()
