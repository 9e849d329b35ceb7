"""``janus audit``, ``janus events`` and ``janus replay`` end to end on the embedded store.

Every command is run through ``CliRunner`` for its output and exit code, error paths included.
The groups are mounted here on a root like ``janus`` itself (same ``--debug`` option), so the
tests do not depend on how ``cli/main.py`` mounts them.
"""

from __future__ import annotations

import json
import os
import pydoc
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import uuid4

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner, Result

from adapters.clock import ManualClock
from bootstrap.container import Janus
from bootstrap.settings import Settings
from cli import events as events_cli
from cli.audit import app as audit_app
from cli.common import cli_errors
from cli.events import app as events_app
from cli.replay import app as replay_app
from commands import models as m
from commands.invocation import Invocation
from tests.servers import wait_until
from tests.support.time_travel import (
    ALICE,
    Told,
    decide,
    effect_of_unknown_outcome,
    request,
    tell_story,
)

root = typer.Typer(no_args_is_help=True)


@root.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Stands in for ``janus``."""


root.add_typer(audit_app, name="audit")
root.add_typer(events_app, name="events")
root.add_typer(replay_app, name="replay")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("JANUS_DATABASE_URL", "JANUS_NATS_URL", "JANUS_CRASH_AT", "JANUS_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JANUS_HOME", str(tmp_path / "janus"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "janus"


@pytest.fixture
def janus(home: Path) -> Iterator[Janus]:
    built = Janus.build(Settings(home=home))
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def told(janus: Janus) -> Told:
    return tell_story(janus)


def cli(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(root, list(args), input=input)


def ok(*args: str, input: str | None = None) -> Result:
    result = cli(*args, input=input)
    assert result.exit_code == 0, result.output
    return result


def as_json(*args: str) -> Any:
    return json.loads(ok(*args, "--json").stdout)


def json_lines(*args: str) -> list[Any]:
    return [json.loads(line) for line in ok(*args, "--json").stdout.splitlines()]


def assert_clean_failure(result: Result, *fragments: str) -> None:
    """Exit 1, one short line on stderr naming the problem, no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# -- janus audit goal ------------------------------------------------------------------------


def test_audit_goal_prints_the_causation_tree(told: Told) -> None:
    text = ok("audit", "goal", str(told.goal_id)).stdout
    for fragment in (
        f"goal {str(told.goal_id)[:8]}",
        "let the plumber in at noon",
        f"decision {str(told.decisions[0])[:8]} → unlock_door door=front",
        "model janus-rules",
        "context doc-house-rules, doc-plumber-visit",
        "denied by user:bob",
        "not before the plumber calls",
        "granted by user:bob",
        f"effect {str(told.effect)[:8]} notify",
        "reconciled: happened",
        f"job {str(told.job)[:8]}",
        f"order {str(told.order)[:8]}",
        "OutcomeUnknown by system:executor on local",
    ):
        assert fragment in text, fragment
    assert text.index("unlock_door") < text.index("denied") < text.index("notify the plumber")


def test_audit_goal_json_is_a_tree_of_nodes_and_events(told: Told) -> None:
    body = as_json("audit", "goal", str(told.goal_id)[:8])
    assert body["goal_id"] == str(told.goal_id)
    assert body["index"] in ("log", "views", "views+log")
    tree = body["tree"]
    assert set(tree) == {"kind", "id", "facts", "events", "children"}
    first, second, _order = tree["children"]
    assert first["children"][0]["facts"]["status"] == "denied"
    granted = second["children"][0]
    effect = granted["children"][0]
    assert [e["type"] for e in effect["events"]] == [
        "Effect.Started",
        "Effect.OutcomeUnknown",
        "Effect.Reconciled",
    ]
    event = effect["events"][0]
    assert set(event) == {
        "position", "event_id", "type", "timestamp", "actor", "node_id", "command_id",
        "causation_id", "summary",
    }  # fmt: skip
    assert "prompt" not in first["facts"]


def test_audit_goal_full_shows_whole_prompts_and_outputs(told: Told) -> None:
    text = ok("audit", "goal", str(told.goal_id), "--full").stdout
    assert "Goal: let the plumber in. Next step? unlock the front door" in text
    assert '{"name": "notify", "parameters": {"to": "operator"}}' in text
    body = as_json("audit", "goal", str(told.goal_id), "--full")
    assert body["tree"]["children"][0]["facts"]["raw_output"].startswith('{"name"')


def test_audit_goal_gives_the_same_tree_with_or_without_the_views(janus: Janus, told: Told) -> None:
    scanned = as_json("audit", "goal", str(told.goal_id), "--scan")
    janus.relational.catch_up()
    indexed = as_json("audit", "goal", str(told.goal_id))
    assert (scanned["index"], indexed["index"]) == ("log", "views")
    assert scanned["tree"] == indexed["tree"]


def test_audit_goal_errors_are_one_line(told: Told) -> None:
    missing = str(uuid4())
    assert_clean_failure(cli("audit", "goal", missing), f"no goal with id {missing}")
    assert_clean_failure(cli("audit", "goal", "not-a-goal"), "neither a UUID nor a prefix")
    # An effect's id is not a goal's.
    assert_clean_failure(cli("audit", "goal", str(told.effect)), "no goal with id")


def test_an_ambiguous_prefix_fails_cleanly(janus: Janus) -> None:
    for suffix in ("1", "2"):
        goal_id = f"abcd0000-0000-4000-8000-00000000000{suffix}"
        janus.commands.submit_goal(m.SubmitGoal(text="twin", goal_id=goal_id), Invocation(ALICE))
    assert_clean_failure(cli("audit", "goal", "abcd"), "ambiguous")
    ok("audit", "goal", "abcd0000-0000-4000-8000-000000000001")


def test_debug_shows_the_traceback(told: Told) -> None:
    result = cli("--debug", "audit", "goal", str(uuid4()))
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert "NotFound" in result.stderr


# -- janus audit search ----------------------------------------------------------------------


def test_search_finds_by_text_kind_actor_and_hazard(told: Told) -> None:
    found = as_json("audit", "search", "plumber")["results"]
    kinds = {(r["kind"], r["id"]) for r in found}
    assert ("goal", str(told.goal_id)) in kinds
    assert ("decision", str(told.decisions[1])) in kinds
    assert ("confirmation", str(told.denied)) in kinds  # its reason names the plumber
    only = as_json("audit", "search", "--kind", "confirmation", "--actor", "bob")["results"]
    assert {r["id"] for r in only} == {str(told.denied), str(told.granted)}
    high = as_json("audit", "search", "--hazard", "high")["results"]
    assert [r["id"] for r in high] == [str(told.denied)]
    assert as_json("audit", "search", "--node", "elsewhere")["results"] == []
    table = ok("audit", "search", "plumber").stdout
    assert str(told.decisions[1])[:8] in table


@pytest.mark.parametrize("views", [False, True], ids=["log", "views"])
def test_a_confirmation_is_found_by_the_text_of_its_goal(janus: Janus, views: bool) -> None:
    """The README's example: `audit search "front door" --hazard high`."""
    goal = janus.commands.submit_goal(m.SubmitGoal(text="unlock the front door"), Invocation(ALICE))
    other = janus.commands.submit_goal(m.SubmitGoal(text="water the plants"), Invocation(ALICE))
    wanted = request(
        janus, goal.aggregate_id, decide(janus, goal.aggregate_id, "unlock it"), "high"
    )
    request(janus, other.aggregate_id, decide(janus, other.aggregate_id, "unlock it"), "high")
    if views:
        janus.relational.catch_up()
    found = as_json("audit", "search", "front door", "--hazard", "high", "--since", "2026-11-01")
    assert [(r["kind"], r["id"]) for r in found["results"]] == [("confirmation", str(wanted))]
    assert as_json("audit", "search", "back door", "--hazard", "high")["results"] == []


def test_search_finds_effects_of_unknown_outcome_with_one_flag(janus: Janus, told: Told) -> None:
    assert as_json("audit", "search", "--outcome-unknown")["results"] == []
    reconciled = as_json("audit", "search", "--kind", "effect", "--status", "reconciled")
    assert [r["id"] for r in reconciled["results"]] == [str(told.effect)]
    # A second effect, still unknown.
    second = decide(janus, told.goal_id, "notify the plumber again")
    confirmation = request(janus, told.goal_id, second, "low")
    janus.commands.grant_confirmation(
        m.GrantConfirmation(confirmation_id=confirmation), Invocation(ALICE)
    )
    effect = effect_of_unknown_outcome(janus, confirmation)
    found = as_json("audit", "search", "--outcome-unknown")["results"]
    assert [r["id"] for r in found] == [str(effect)]
    janus.relational.catch_up()
    assert as_json("audit", "search", "--outcome-unknown")["results"] == found


def test_search_finds_expired_confirmations_with_one_flag(home: Path, told: Told) -> None:
    clock = ManualClock()
    late = Janus.build(Settings(home=home), clock=clock)
    try:
        decision = decide(late, told.goal_id, "unlock the back door")
        confirmation = request(late, told.goal_id, decision, "high")
        clock.advance(timedelta(hours=1))
        late.commands.expire_confirmation(
            m.ExpireConfirmation(confirmation_id=confirmation), Invocation(ALICE)
        )
    finally:
        late.close()
    found = as_json("audit", "search", "--expired")["results"]
    assert [(r["kind"], r["id"], r["status"]) for r in found] == [
        ("confirmation", str(confirmation), "expired")
    ]


def test_search_by_time_range(told: Told) -> None:
    everything = as_json("audit", "search", "--limit", "100")["results"]
    oldest = min(r["created_at"] for r in everything)
    assert as_json("audit", "search", "--until", "2000-01-01T00:00:00Z")["results"] == []
    since = as_json("audit", "search", "--since", oldest, "--limit", "100")["results"]
    assert len(since) == len(everything)


def test_search_errors_are_one_line(home: Path) -> None:
    assert_clean_failure(cli("audit", "search", "--hazard", "extreme"), "--hazard")
    assert_clean_failure(cli("audit", "search", "--since", "last tuesday"), "--since")
    assert_clean_failure(cli("audit", "search", "--since", "12"), "ISO-8601")
    assert_clean_failure(cli("audit", "search", "--kind", "robot"), "unknown kind")
    assert_clean_failure(
        cli("audit", "search", "--outcome-unknown", "--expired"), "different kinds"
    )


# -- janus events tail / show ----------------------------------------------------------------


def test_tail_shows_the_latest_events_oldest_first(told: Told) -> None:
    lines = json_lines("events", "tail", "-n", "3")
    assert [e["type"] for e in lines][-1] == "TradeOrder.Proposed"
    positions = [e["position"] for e in lines]
    assert positions == sorted(positions)
    assert len(lines) == 3
    text = ok("events", "tail").stdout
    assert "TradeOrder.Proposed" in text
    assert "user:bob · " in text  # one node: not repeated on every line
    assert "user:bob@local" in ok("events", "tail", "--wide").stdout


def test_tail_fits_80_columns_with_short_ids_and_wide_shows_them_whole(
    told: Told, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    lines = ok("events", "tail", "-n", "100").stdout.splitlines()
    assert len(lines) > 10 and all(len(line) <= 80 for line in lines)
    goal = str(told.goal_id)
    assert goal not in "\n".join(lines)  # no id is printed whole, so none is broken
    assert any(f" {goal[:8]} v" in line for line in lines)
    assert not any(re.search(r"[0-9a-f]{9,}", line.split(" · ")[0]) for line in lines)
    wide = ok("events", "tail", "-n", "100", "--wide").stdout
    assert f"{goal} v1" in wide


def test_a_long_tail_on_a_terminal_goes_through_a_pager(
    told: Told, monkeypatch: pytest.MonkeyPatch
) -> None:
    paged: list[str] = []
    monkeypatch.setattr(pydoc, "pager", paged.append)
    monkeypatch.setattr(
        events_cli, "out", lambda: Console(force_terminal=True, height=10, width=100)
    )
    ok("events", "tail", "-n", "5")
    assert paged == []  # fits the screen
    ok("events", "tail", "-n", "100")
    assert len(paged) == 1 and "TradeOrder.Proposed" in paged[0]


def test_tail_filters_by_type_aggregate_correlation_and_range(told: Told) -> None:
    granted = json_lines("events", "tail", "--type", "Granted")
    assert [e["aggregate_id"] for e in granted] == [str(told.granted)]
    confirmations = json_lines("events", "tail", "--type", "Confirmation", "-n", "50")
    assert {e["aggregate_type"] for e in confirmations} == {"Confirmation"}
    assert len(confirmations) == 4
    effect = json_lines("events", "tail", "--aggregate", str(told.effect)[:8])
    assert [e["type"] for e in effect] == [
        "Effect.Started",
        "Effect.OutcomeUnknown",
        "Effect.Reconciled",
    ]
    correlated = json_lines("events", "tail", "--correlation", str(told.goal_id), "-n", "100")
    assert {e["correlation_id"] for e in correlated} == {str(told.goal_id)}
    ranged = json_lines("events", "tail", "--since", "2", "--until", "4", "-n", "100")
    assert [e["position"] for e in ranged] == [3, 4]


def test_tail_errors_are_one_line(told: Told) -> None:
    assert_clean_failure(cli("events", "tail", "--type", "Teleported"), "unknown event type")
    assert_clean_failure(cli("events", "tail", "--since", "soon"), "--since")
    assert_clean_failure(cli("events", "tail", "--until", "100000"), "beyond the end")
    assert_clean_failure(cli("events", "tail", "--aggregate", str(uuid4())), "no aggregate")


def test_show_an_event_by_position_by_id_and_by_prefix(told: Told) -> None:
    by_position = as_json("events", "show", "5")
    assert by_position["position"] == 5
    event_id = by_position["event_id"]
    assert as_json("events", "show", event_id) == by_position
    assert as_json("events", "show", event_id[:8]) == by_position
    assert set(by_position) >= {"actor", "node_id", "causation_id", "data", "trace_context"}
    text = ok("events", "show", "1").stdout
    assert "Goal.Submitted" in text
    assert "let the plumber in at noon" in text


def test_an_id_prefix_of_digits_only_is_found_once_it_is_past_the_log_s_end(
    janus: Janus, told: Told
) -> None:
    """One in sixteen 6-character id prefixes is all digits: they must not be read as positions
    that do not exist (a number up to the head still names a position)."""
    found: tuple[str, int] | None = None
    while found is None:
        for notification in janus.reader.read_after(0, 10_000):
            event: Any = janus.app.mapper.to_domain_event(notification)
            prefix = str(event.meta.event_id)[:6]
            if prefix.isdigit() and int(prefix) > janus.reader.head():
                found = (prefix, notification.id)
                break
        else:
            janus.commands.submit_goal(m.SubmitGoal(text="one more"), Invocation(ALICE))
    prefix, position = found

    assert as_json("events", "show", prefix)["position"] == position
    assert as_json("events", "show", "1")["position"] == 1


def test_show_errors_are_one_line(told: Told) -> None:
    assert_clean_failure(cli("events", "show", "99999"), "no event at position 99999")
    assert_clean_failure(cli("events", "show", "hello"), "neither a log position nor")
    assert_clean_failure(cli("events", "show", str(uuid4())), "no event with id")


def run_root(*args: str) -> subprocess.Popen[str]:
    code = "from tests.e2e.test_audit_cli import root; root()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "JANUS_POLL_INTERVAL_SECONDS": "0.05"},
    )


def test_follow_prints_new_events_as_they_are_written(janus: Janus, told: Told) -> None:
    proc = run_root("events", "tail", "-n", "1", "--follow", "--json", "--stop-after", "3")
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True).start()
    try:
        wait_until(lambda: len(lines) == 1, 30, message="the last event")
        for text in ("first new goal", "second new goal"):
            janus.commands.submit_goal(m.SubmitGoal(text=text), Invocation(ALICE))
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    texts = [json.loads(line)["data"].get("text") for line in lines]
    assert texts[1:] == ["first new goal", "second new goal"]


def test_ctrl_c_stops_a_follow_cleanly(told: Told) -> None:
    proc = run_root("events", "tail", "-n", "1", "--follow")
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True).start()
    try:
        wait_until(lambda: any("TradeOrder" in line for line in lines), 30, message="a line")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    finally:
        proc.kill()


def test_ctrl_c_anywhere_else_is_one_line_and_exit_130() -> None:
    app = typer.Typer()

    @app.command()
    def interrupted() -> None:
        with cli_errors():
            raise KeyboardInterrupt

    result = CliRunner().invoke(app, [])
    assert result.exit_code == 130
    assert result.stderr.strip() == "error: interrupted"


# -- janus events export / import -----------------------------------------------------------


def test_export_and_import_round_trip_and_import_is_idempotent(
    told: Told, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log.jsonl.gz"
    exported = as_json("events", "export", str(path))
    assert exported["events"] == exported["upto_position"] == exported["last_position"]
    assert "exported" in ok("events", "export", str(tmp_path / "again.jsonl")).stdout
    monkeypatch.setenv("JANUS_HOME", str(tmp_path / "other"))
    first = as_json("events", "import", str(path))
    assert (first["written"], first["already_present"]) == (exported["events"], 0)
    again = ok("events", "import", str(path)).stdout
    assert f"0 written, {exported['events']} already present" in again
    assert as_json("audit", "goal", str(told.goal_id))["tree"]["facts"]["text"].startswith(
        "let the plumber in"
    )


def test_an_export_since_a_position_past_the_end_is_empty_and_says_so(
    told: Told, janus: Janus, tmp_path: Path
) -> None:
    """The README's `events export --since 1000 backup.jsonl.gz && events import ...` on a
    log shorter than that."""
    head = janus.app.head()
    path = tmp_path / "backup.jsonl.gz"
    exported = ok("events", "export", "--since", "1000", str(path)).stdout
    assert f"nothing after position 1000: the log ends at position {head}" in exported
    assert "exported 0 events to" in exported
    assert "0 written, 0 already present" in ok("events", "import", str(path)).stdout
    # Nothing but the import's own record (who, when, digest, count) was written.
    written = janus.app.recorder.select_notifications(head + 1, 100)
    assert written and all("ImportLog" in n.topic for n in written)


def test_export_and_import_errors_are_one_line(told: Told, tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    ok("events", "export", str(path))
    assert_clean_failure(cli("events", "export", str(path)), "already exists")
    ok("events", "export", str(path), "--force")
    assert_clean_failure(cli("events", "export", str(tmp_path / "no" / "such" / "dir.jsonl")))
    assert_clean_failure(cli("events", "import", str(tmp_path / "missing.jsonl")), "no such file")
    lines = path.read_bytes().splitlines(keepends=True)
    lines[4] = b"{this is not json\n"
    path.write_bytes(b"".join(lines))
    assert_clean_failure(cli("events", "import", str(path)), "line 5: not JSON")
    assert_clean_failure(cli("events", "import", str(path), "--check"), "line 5: not JSON")


# -- janus replay state --------------------------------------------------------------------


def test_state_at_a_position_lists_what_existed_then(told: Told) -> None:
    body = as_json("replay", "state", "--at", "4")
    assert body["position"] == 4
    assert body["events_replayed"] == 4
    assert [a["type"] for a in body["aggregates"]] == ["Goal", "Confirmation"]
    text = ok("replay", "state", "--at", "4").stdout
    assert "1 Confirmation, 1 Goal" in text
    assert str(told.denied)[:8] in text
    goals = as_json("replay", "state", "--at", "4", "--type", "Goal")
    assert [a["id"] for a in goals["aggregates"]] == [str(told.goal_id)]


def test_state_of_one_aggregate_at_a_position_and_at_a_time(told: Told) -> None:
    requested = json_lines("events", "tail", "--aggregate", str(told.granted))
    denied_pos, granted_pos = (
        4,
        next(e["position"] for e in json_lines("events", "tail", "--type", "Granted")),
    )
    before = as_json(
        "replay", "state", "--at", str(granted_pos - 1), "--aggregate", str(told.granted)
    )
    after = as_json("replay", "state", "--at", str(granted_pos), "--aggregate", str(told.granted))
    assert before["aggregate"]["state"]["status"] == "pending"
    assert after["aggregate"]["state"]["status"] == "granted"
    stamp = json_lines("events", "tail", "--type", "Granted")[0]["timestamp"]
    by_time = as_json("replay", "state", "--at", stamp, "--aggregate", str(told.granted)[:8])
    assert by_time["aggregate"] == after["aggregate"]
    assert requested  # the aggregate's events were there to find
    absent = as_json("replay", "state", "--at", str(denied_pos), "--aggregate", str(told.effect))
    assert absent["aggregate"] is None
    assert (
        "did not exist yet"
        in ok("replay", "state", "--at", "1", "--aggregate", str(told.effect)).stdout
    )
    assert (
        "granted"
        in ok("replay", "state", "--at", str(granted_pos), "--aggregate", str(told.granted)).stdout
    )


def test_state_diff_between_two_points(told: Told) -> None:
    body = as_json("replay", "state", "--diff", "3", "5")
    assert body["from_position"] == 3
    # 4: the first confirmation was denied; 5: the goal recorded its second decision.
    assert [c["id"] for c in body["changed"]] == [str(told.denied), str(told.goal_id)]
    assert body["changed"][0]["changes"]["status"] == {"from": "pending", "to": "denied"}
    assert body["created"] == []
    text = ok("replay", "state", "--diff", "3", "5").stdout
    assert "status: pending → denied" in text
    assert "decisions: [1 item] → [2 items]" in text


def test_state_view_rebuilds_the_relational_view_at_a_point(told: Told, tmp_path: Path) -> None:
    body = as_json("replay", "state", "--at", "5", "--view")
    assert [c["status"] for c in body["confirmations"]] == ["denied"]
    assert body["effects"] == []
    scratch = tmp_path / "scratch.sqlite"
    text = ok("replay", "state", "--at", "5", "--view", "--scratch", str(scratch)).stdout
    assert "The relational view as of position 5" in text
    assert scratch.exists()
    assert_clean_failure(
        cli("replay", "state", "--at", "5", "--view", "--scratch", str(scratch)), "already exists"
    )


def test_state_errors_are_one_line(told: Told) -> None:
    assert_clean_failure(cli("replay", "state"), "either --at")
    assert_clean_failure(cli("replay", "state", "--at", "1", "--diff", "1", "2"), "either --at")
    assert_clean_failure(cli("replay", "state", "--at", "yesterday"), "--at 'yesterday'")
    assert_clean_failure(cli("replay", "state", "--at", "100000"), "beyond the end of the log")
    assert_clean_failure(cli("replay", "state", "--diff", "5", "3"), "must not be after")
    assert_clean_failure(cli("replay", "state", "--at", "3", "--type", "Robot"), "unknown event")
    assert_clean_failure(
        cli("replay", "state", "--at", "3", "--aggregate", str(uuid4())), "no aggregate"
    )


# -- janus replay goal ---------------------------------------------------------------------


def test_replay_goal_steps_through_every_event(told: Told) -> None:
    text = ok("replay", "goal", str(told.goal_id), "--no-input").stdout
    assert "step 1/" in text
    assert "Confirmation.Granted" in text
    steps = json_lines("replay", "goal", str(told.goal_id))
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))
    granted = next(s for s in steps if s["event"]["type"] == "Confirmation.Granted")
    assert granted["changes"]["status"] == {"from": "pending", "to": "granted"}


def test_replay_goal_interactively_goes_forward_back_and_quits(told: Told) -> None:
    result = ok("replay", "goal", str(told.goal_id), "--interactive", input="\n\nb\nq\n")
    text = result.stdout
    # 1, enter: 2, enter: 3, back: 2 again, quit.
    assert text.count("step 1/") == 1
    assert text.count("step 2/") == 2
    assert text.count("step 3/") == 1
    assert "step 4/" not in text


def test_replay_goal_errors_are_one_line(told: Told) -> None:
    assert_clean_failure(cli("replay", "goal", str(uuid4()), "--no-input"), "no goal")


# -- janus replay decisions ----------------------------------------------------------------


def test_replay_decisions_with_the_same_model_agree(told: Told) -> None:
    body = as_json("replay", "decisions", "--goal", str(told.goal_id), "--model", "rules")
    assert (body["agreed"], body["total"]) == (2, 2)
    assert body["model"]["name"] == "janus-rules"
    assert [d["decision_id"] for d in body["decisions"]] == [str(d) for d in told.decisions]
    text = ok("replay", "decisions", "--goal", str(told.goal_id)[:8], "--model", "rules").stdout
    assert "2 of 2 decisions agree" in text


def test_replay_decisions_without_a_model_says_so(told: Told, tmp_path: Path) -> None:
    assert_clean_failure(cli("replay", "decisions", "--goal", str(told.goal_id)), "no model")
    missing = tmp_path / "nothing.gguf"
    assert_clean_failure(
        cli("replay", "decisions", "--goal", str(told.goal_id), "--model", str(missing)),
        "does not exist",
    )
    assert_clean_failure(
        cli("replay", "decisions", "--goal", str(uuid4()), "--model", "rules", "--record")
    )


def test_replay_decisions_writes_nothing_unless_asked(janus: Janus, told: Told) -> None:
    head = janus.app.head()
    ok("replay", "decisions", "--goal", str(told.goal_id), "--model", "rules")
    assert janus.app.head() == head


def test_recorded_comparisons_are_events_on_the_goal_and_recorded_once(
    janus: Janus, told: Told
) -> None:
    body = as_json(
        "replay", "decisions", "--goal", str(told.goal_id), "--model", "rules", "--record"
    )
    head = janus.app.head()
    assert body["recorded_position"] == head
    again = as_json(
        "replay", "decisions", "--goal", str(told.goal_id), "--model", "rules", "--record"
    )
    assert again["recorded_position"] == head and janus.app.head() == head
    goal = janus.app.repository.get(told.goal_id)
    assert [r.decision_id for r in goal.replays] == list(told.decisions)
    assert all(r.agrees and r.model == "janus-rules" for r in goal.replays)
    decisions = as_json("audit", "goal", str(told.goal_id))["tree"]["children"][:2]
    assert [len(d["facts"]["replays"]) for d in decisions] == [1, 1]
    assert "agrees" in ok("audit", "goal", str(told.goal_id)).stdout


def test_the_configured_model_is_the_default(told: Told, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JANUS_MODEL_PATH", "rules")
    body = as_json("replay", "decisions", "--goal", str(told.goal_id))
    assert (body["model"]["name"], body["agreed"]) == ("janus-rules", 2)


# -- janus replay fork ---------------------------------------------------------------------


def test_fork_starts_a_new_goal_linked_to_the_original(told: Told) -> None:
    body = as_json("replay", "fork", str(told.goal_id), "--from", "2")
    assert body["forked_from"] == str(told.goal_id)
    assert (body["forked_at_position"], body["decisions_copied"]) == (2, 1)
    tree = as_json("audit", "goal", body["fork_id"])["tree"]
    assert tree["facts"]["forked_from"] == str(told.goal_id)
    assert tree["facts"]["forked_at_position"] == 2
    assert [c["kind"] for c in tree["children"]] == ["decision"]
    text = ok("replay", "fork", str(told.goal_id)[:8], "--from", "1").stdout
    assert "forked from" in text


def test_fork_errors_are_one_line(janus: Janus, told: Told) -> None:
    assert_clean_failure(cli("replay", "fork", str(told.goal_id), "--from", "0"), "did not exist")
    assert_clean_failure(cli("replay", "fork", str(told.goal_id), "--from", "x"), "--from")
    janus.commands.complete_goal(
        m.CompleteGoal(goal_id=told.goal_id, summary="done"), Invocation(ALICE)
    )
    head = str(janus.app.head())
    assert_clean_failure(cli("replay", "fork", str(told.goal_id), "--from", head), "completed")


def test_every_group_lists_its_commands(home: Path) -> None:
    assert "goal" in ok("audit", "--help").stdout
    assert "tail" in ok("events", "--help").stdout
    assert "fork" in ok("replay", "--help").stdout
