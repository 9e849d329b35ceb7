"""Export and import of the log, on SQLite and on Postgres: exact restores (positions and holes
included), idempotent imports, damaged or forged files that write nothing, a trust model for
non-empty stores, signatures, and imported history that never executes anything."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from bootstrap.container import Janus
from bootstrap.history import open_store
from bootstrap.settings import Settings
from cli.events import app as events_app
from commands import models as m
from commands.invocation import Invocation
from commands.keys import CreateApiKey, KeyService
from domain.api_key import Role
from domain.effect import EffectStatus, effect_id_for
from domain.imports import IMPORT_LOG_ID, ImportLog
from domain.meta import Actor, ActorKind
from replay.exchange import ExchangeError, ImportRefused, export_events, import_events
from replay.exchange_file import checksum
from replay.store import Store
from tests.servers import create_database, database_url
from tests.support.commands import pending_confirmation
from tests.support.executor import (
    door_ledger,
    drain,
    effect_of,
    grant,
    started_but_not_finished,
)
from tests.support.time_travel import ALICE, log_of, tell_story

KEY = "a test key of at least sixteen bytes"
Damage = Callable[[list[bytes]], list[bytes]]


def _empty_settings(request: pytest.FixtureRequest, settings: Settings, home: Path) -> Settings:
    if settings.database_url is None:
        return Settings(home=home, database_url=None, poll_interval_seconds=0.05)
    server: str = request.getfixturevalue("pg_server_url")
    databases: list[str] = request.getfixturevalue("_pg_session_databases")
    name = create_database(server)
    databases.append(name)
    return Settings(home=home, database_url=database_url(server, name), poll_interval_seconds=0.05)


@pytest.fixture
def target_settings(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Settings:
    """An empty store of the same kind as the test's own, with its own devices."""
    return _empty_settings(request, settings, tmp_path / "target")


@pytest.fixture
def target(target_settings: Settings) -> Iterator[Store]:
    store = open_store(target_settings, use_views=False)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def source(janus: Janus) -> Iterator[Store]:
    tell_story(janus)
    store = open_store(janus.settings, use_views=False)
    try:
        yield store
    finally:
        store.close()


def signed(store: Store) -> Store:
    store.settings = store.settings.model_copy(update={"export_hmac_key": SecretStr(KEY)})
    return store


def lines_of(path: Path) -> list[bytes]:
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as stream:
        return list(stream)


def write_lines(path: Path, lines: list[bytes]) -> None:
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(b"".join(lines)))
    else:
        path.write_bytes(b"".join(lines))


def positioned(store: Store, upto: int | None = None) -> list[tuple[int, str, int, str, bytes]]:
    """The log with its positions: what an exact restore must reproduce."""
    return [
        (n.id, str(n.originator_id), n.originator_version, n.topic, n.state)
        for batch in store.pages(0, upto)
        for n in batch
    ]


def import_records(store: Store) -> list[Any]:
    if IMPORT_LOG_ID not in store.app.repository:
        return []
    log: ImportLog = store.app.repository.get(IMPORT_LOG_ID)
    assert isinstance(log, ImportLog)
    return [e for e in store.app.events.get(IMPORT_LOG_ID) if isinstance(e, ImportLog.Recorded)]


def line_index(lines: list[bytes], needle: bytes) -> int:
    return next(i for i, line in enumerate(lines) if needle in line and i > 0)


# -- round trips ---------------------------------------------------------------------------------


def test_a_restore_keeps_every_position_and_hole_and_records_the_import(
    source: Store, janus: Janus, target: Store, tmp_path: Path
) -> None:
    # A hole in the source: a single-event aggregate removed from the middle of the log.
    hole = janus.commands.submit_goal(m.SubmitGoal(text="gone"), Invocation(ALICE)).position
    janus.commands.submit_goal(m.SubmitGoal(text="after the hole"), Invocation(ALICE))
    _delete_position(source, hole)
    path = tmp_path / "log.jsonl.gz"
    exported = export_events(source, path)
    imported = import_events(target, path, batch=7, actor=Actor(ActorKind.USER, "restorer"))
    assert (imported.mode, imported.written, imported.skipped) == ("restore", exported.events, 0)
    assert imported.positions_kept
    assert positioned(target, source.head()) == positioned(source)
    assert hole not in [row[0] for row in positioned(target)]
    # After the restored events only the record of the import (the log opened, one import).
    added = positioned(target)[len(positioned(source)) :]
    assert [(row[1], row[2]) for row in added] == [(str(IMPORT_LOG_ID), 1), (str(IMPORT_LOG_ID), 2)]
    [record] = import_records(target)
    assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (record.written, record.mode, record.signed) == (exported.events, "restore", False)
    assert (record.first_position, record.last_position) == (1, source.head())
    assert record.source_node == source.settings.node_id
    assert str(record.meta.actor) == "user:restorer"
    # A native append continues after the restored positions.
    other = Janus.build(target.settings)
    try:
        after = other.commands.submit_goal(m.SubmitGoal(text="new here"), Invocation(ALICE))
        assert after.position == target.head() > source.head()
    finally:
        other.close()


def _delete_position(store: Store, position: int) -> None:
    recorder: Any = store.app.recorder
    table = recorder.events_table_name
    if store.settings.embedded:
        with recorder.datastore.transaction(commit=True) as curs:
            curs.execute(f"DELETE FROM {table} WHERE rowid=?", [position])
        return
    with recorder.datastore.transaction(commit=True) as curs:
        curs.execute(f"DELETE FROM {table} WHERE notification_id=%s", (position,))


def test_importing_the_same_file_again_adds_only_its_record(
    source: Store, target: Store, tmp_path: Path
) -> None:
    path = tmp_path / "log.jsonl.gz"
    export_events(source, path)
    import_events(target, path)
    head = target.head()
    again = import_events(target, path)
    assert (again.mode, again.written, again.skipped) == ("append", 0, again.events)
    assert target.head() == head + 1
    assert log_of(target.app)[: source.head()] == log_of(source.app)
    assert [r.written for r in import_records(target)] == [source.head(), 0]


def test_a_gz_name_writes_gzip_with_a_header_a_chain_and_a_trailer(
    source: Store, tmp_path: Path
) -> None:
    path = tmp_path / "log.jsonl.gz"
    export_events(source, path)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    lines = lines_of(path)
    header, trailer = json.loads(lines[0]), json.loads(lines[-1])
    assert header["janus_export"] == 2
    assert header["source_node"] == source.settings.node_id
    assert (header["after_position"], header["upto_position"]) == (0, source.head())
    assert trailer == {
        "janus_export_end": 2,
        "events": source.head(),
        "last_position": source.head(),
    }
    first, second = json.loads(lines[1]), json.loads(lines[2])
    assert (first["position"], first["after"], second["after"]) == (1, 0, 1)
    assert first["topic"] == "domain.goal:Goal.Submitted"
    assert not (tmp_path / "log.jsonl.gz.partial").exists()


# -- damage: nothing is written ------------------------------------------------------------------


def _drop_granted(lines: list[bytes]) -> list[bytes]:
    return lines[:0] + [line for line in lines if b"Confirmation.Granted" not in line]


def _swap_pair(lines: list[bytes]) -> list[bytes]:
    i = line_index(lines, b"Confirmation.Granted")
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    return lines


def _non_finite(text: bytes) -> Damage:
    def damage(lines: list[bytes]) -> list[bytes]:
        i = line_index(lines, b'"priority":7')
        lines[i] = lines[i].replace(b'"priority":7', b'"priority":' + text, 1)
        return lines

    return damage


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_drop_granted, r"line \d+: .*a line is missing or out of order before line \d+"),
        (_swap_pair, r"line \d+: .*a line is missing or out of order before line \d+"),
        (_non_finite(b"1e400"), r"line 2: not JSON .*1e400 is out of range"),
        (_non_finite(b"NaN"), r"line 2: not JSON .*NaN is not a number"),
        (lambda lines: [*lines[:1], lines[1][:40] + b"\n", *lines[2:]], r"line 2: not JSON"),
        (lambda lines: lines[:-3], r"cut short after \d+ events \(nothing was written\)"),
    ],
    ids=["granted-deleted", "pair-swapped", "1e400", "nan", "half-line", "no-trailer"],
)
def test_a_damaged_file_names_its_bad_line_and_writes_nothing(
    source: Store, target: Store, tmp_path: Path, damage: Damage, message: str
) -> None:
    path = tmp_path / "log.jsonl"
    export_events(source, path)
    write_lines(path, damage(lines_of(path)))
    with pytest.raises(ExchangeError, match=message):
        import_events(target, path)
    assert target.head() == 0


def test_a_deleted_granted_line_is_named_at_the_line_after_it(
    source: Store, target: Store, tmp_path: Path
) -> None:
    path = tmp_path / "log.jsonl"
    export_events(source, path)
    lines = lines_of(path)
    gone = line_index(lines, b"Confirmation.Granted")
    write_lines(path, lines[:gone] + lines[gone + 1 :])
    with pytest.raises(ExchangeError, match=f"line {gone + 1}: .*before line {gone + 1}"):
        import_events(target, path)
    assert target.head() == 0


def test_a_swapped_pair_is_named_at_its_first_line(
    source: Store, target: Store, tmp_path: Path
) -> None:
    path = tmp_path / "log.jsonl"
    export_events(source, path)
    lines = lines_of(path)
    i = line_index(lines, b"Confirmation.Granted")
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    write_lines(path, lines)
    with pytest.raises(ExchangeError, match=f"line {i + 1}: .*out of order before line {i + 1}"):
        import_events(target, path)
    assert target.head() == 0


def test_a_truncated_gz_names_the_line_and_writes_nothing(
    source: Store, target: Store, tmp_path: Path
) -> None:
    path = tmp_path / "log.jsonl.gz"
    export_events(source, path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(ExchangeError, match=r"line \d+: .*(truncated|cut short)"):
        import_events(target, path)
    assert target.head() == 0


def test_an_altered_line_is_a_checksum_mismatch_and_writes_nothing(
    source: Store, target: Store, tmp_path: Path
) -> None:
    path = tmp_path / "log.jsonl"
    export_events(source, path)
    lines = lines_of(path)
    bad = line_index(lines, b"plumber")
    lines[bad] = lines[bad].replace(b"plumber", b"burglar", 1)
    write_lines(path, lines)
    with pytest.raises(ExchangeError, match=f"line {bad + 1}: checksum mismatch"):
        import_events(target, path)
    assert target.head() == 0


def test_an_event_this_version_cannot_decode_is_a_corrupt_line(
    source: Store, target: Store, tmp_path: Path
) -> None:
    """A file from a newer Janus, with an event type this one does not know: intact, unusable."""
    path = tmp_path / "log.jsonl"
    export_events(source, path)
    lines = lines_of(path)
    raw = lines[3]
    data = json.loads(raw)
    body = raw.rstrip(b"\n")[raw.find(b',"state":') + len(b',"state":') : -1]
    topic = "domain.goal:Goal.Teleported"
    renamed = raw.replace(json.dumps(data["topic"]).encode(), json.dumps(topic).encode(), 1)
    identity = renamed[: renamed.find(b',"crc32":')]
    lines[3] = renamed.replace(
        b'"crc32":%d' % data["crc32"], b'"crc32":%d' % checksum(identity, body), 1
    )
    write_lines(path, lines)
    with pytest.raises(ExchangeError, match="line 4: event cannot be decoded"):
        import_events(target, path)
    assert target.head() == 0


def test_a_file_that_is_not_an_export_is_refused_at_line_one(target: Store, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("dear diary\n")
    with pytest.raises(ExchangeError, match="line 1: not a Janus export"):
        import_events(target, path)
    garbage = tmp_path / "garbage.jsonl.gz"
    garbage.write_bytes(b"this is not gzip at all")
    with pytest.raises(ExchangeError, match="damaged or truncated"):
        import_events(target, garbage)
    assert target.head() == 0


# -- the store: conflicts, trust, continuation -------------------------------------------------


def test_same_aggregate_version_with_other_contents_is_a_conflict_per_line(
    source: Store, target_settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "log.jsonl"
    export_events(source, path)
    other = Janus.build(target_settings)
    try:
        # The same goal id, but another event: a different history for the same aggregate.
        first = json.loads(lines_of(path)[1])
        other.commands.submit_goal(
            m.SubmitGoal(text="someone else's goal", goal_id=first["originator_id"]),
            Invocation(ALICE),
        )
        with open_store(target_settings, use_views=False) as target:
            checked = import_events(target, path, check_only=True)
            assert checked.problems[0][0] == 2
            assert "conflict" in checked.problems[0][1]
            with pytest.raises(ImportRefused, match=r"line 2: conflict") as refused:
                import_events(target, path)
            assert "already present" not in str(refused.value)
            assert target.head() == 1
    finally:
        other.close()


def test_a_forged_grant_for_a_pending_confirmation_is_refused_and_nothing_runs(
    janus: Janus, target_settings: Settings, tmp_path: Path
) -> None:
    """The target restored the source while a confirmation was pending; the source's grant,
    arriving in a file, would change that confirmation: refused, whole file unwritten."""
    confirmation = pending_confirmation(janus)
    with open_store(janus.settings, use_views=False) as source:
        export_events(source, tmp_path / "before.jsonl")
        upto = source.head()
        janus.commands.grant_confirmation(
            m.GrantConfirmation(confirmation_id=confirmation), Invocation(ALICE)
        )
        export_events(source, tmp_path / "grant.jsonl", after=upto)
    with open_store(target_settings, use_views=False) as target:
        import_events(target, tmp_path / "before.jsonl")
        head = target.head()
        checked = import_events(target, tmp_path / "grant.jsonl", check_only=True)
        assert any("would change Confirmation" in text for _, text in checked.problems)
        with pytest.raises(ImportRefused, match="would change Confirmation"):
            import_events(target, tmp_path / "grant.jsonl")
        assert target.head() == head
    other = Janus.build(target_settings)
    try:
        drain(other.executor())
        assert door_ledger(other).executions() == []
        assert effect_id_for(confirmation) not in other.app.repository
    finally:
        other.close()


def test_an_imported_new_confirmation_with_its_grant_is_history_and_never_executes(
    janus: Janus, target_settings: Settings, tmp_path: Path
) -> None:
    """New aggregates may be added to a non-empty store, but an imported grant is not an order."""
    other = Janus.build(target_settings)
    try:
        native = grant(other)  # the target has a life of its own, and an executor
        drain(other.executor())
        forged = grant(janus)  # the file: a whole confirmation, requested and granted
        with open_store(janus.settings, use_views=False) as source:
            export_events(source, tmp_path / "forged.jsonl")
        with open_store(target_settings, use_views=False) as target:
            imported = import_events(target, tmp_path / "forged.jsonl")
        assert (imported.mode, imported.grants) == ("append", 1)
        later = grant(other)  # a grant made here after the import still runs
        drain(other.executor())
        executed = {e.key for e in door_ledger(other).executions()}
        assert executed == {str(native), str(later)}
        assert effect_id_for(forged) not in other.app.repository
    finally:
        other.close()


def test_a_restore_into_an_empty_store_runs_no_effect_again(
    janus: Janus, target_settings: Settings, tmp_path: Path
) -> None:
    done = grant(janus)
    drain(janus.executor())  # executed at the source
    waiting = grant(janus)  # granted, but the source's executor never got to it
    in_flight = grant(janus)  # started at the source, which died before the outcome
    started_but_not_finished(janus, in_flight)
    with open_store(janus.settings, use_views=False) as source:
        export_events(source, tmp_path / "backup.jsonl.gz")
    with open_store(target_settings, use_views=False) as target:
        restored = import_events(target, tmp_path / "backup.jsonl.gz")
    assert restored.grants == 3
    other = Janus.build(target_settings)
    try:
        drain(other.executor())
        drain(other.executor())  # a restarted executor decides the same
        assert door_ledger(other).executions() == []  # the restored node's own device
        other.relational.catch_up()  # the views take the restored log and the import record
        assert other.relational.position == other.app.head()
        assert effect_of(other, done).status is EffectStatus.SUCCEEDED
        assert effect_id_for(waiting) not in other.app.repository
        # Nobody here can tell whether the in-flight one happened: an operator decides.
        assert effect_of(other, in_flight).status is EffectStatus.OUTCOME_UNKNOWN
        other.commands.reconcile_effect(
            m.ReconcileEffect(effect_id=effect_id_for(in_flight), happened=False, note="checked"),
            Invocation(ALICE),
        )
        drain(other.executor())
        assert door_ledger(other).executions() == []
    finally:
        other.close()
    assert len(door_ledger(janus).executions(str(done))) == 1
    assert door_ledger(janus).executions(str(in_flight)) == []


def test_a_range_continues_a_store_only_when_signed_and_extended(
    source: Store, target: Store, tmp_path: Path
) -> None:
    signed(source), signed(target)
    path = tmp_path / "part.jsonl"
    export_events(source, path, after=3, upto=8)
    positions = [json.loads(line)["position"] for line in lines_of(path)[1:-1]]
    assert positions == [4, 5, 6, 7, 8]
    # Event 4 continues an aggregate whose earlier events are not in this empty store.
    with pytest.raises(ImportRefused, match=r"line 2:.*follows nothing"):
        import_events(target, path)
    assert target.head() == 0
    export_events(source, tmp_path / "start.jsonl", upto=3)
    import_events(target, tmp_path / "start.jsonl")
    # The rest changes aggregates the store holds: refused by default...
    with pytest.raises(ImportRefused, match="would change Goal"):
        import_events(target, path)
    # ...accepted from a file this store's key verifies, when the operator says so. The store's
    # head is past the file's first position (the first import's record), so they shift.
    rest = import_events(target, path, extend=True, require_signature=True)
    assert (rest.signature, rest.positions_kept) == ("signature verified", False)
    imported = [row for row in log_of(target.app) if row[1] != str(IMPORT_LOG_ID)]
    assert imported == log_of(source.app)[:8]


def test_signatures_are_verified_and_can_be_required(
    source: Store, target: Store, tmp_path: Path
) -> None:
    plain = tmp_path / "plain.jsonl"
    export_events(source, plain)
    signed(source)
    path = tmp_path / "signed.jsonl"
    assert export_events(source, path).signed
    assert KEY.encode() not in path.read_bytes()
    with pytest.raises(ExchangeError, match="needs JANUS_EXPORT_HMAC_KEY"):
        import_events(target, path, require_signature=True)
    signed(target)
    with pytest.raises(ExchangeError, match="not signed with this store's key"):
        import_events(target, plain, require_signature=True)
    # An attacker without the key edits a line and fixes its checksum: the signature fails.
    lines = lines_of(path)
    i = line_index(lines, b"plumber")
    data = json.loads(lines[i])
    raw = lines[i].replace(b"plumber", b"burglar", 1)
    body = raw.rstrip(b"\n")[raw.find(b',"state":') + len(b',"state":') : -1]
    crc = checksum(raw[: raw.find(b',"crc32":')], body)
    lines[i] = raw.replace(b'"crc32":%d' % data["crc32"], b'"crc32":%d' % crc, 1)
    write_lines(path, lines)
    with pytest.raises(ExchangeError, match="signature does not match"):
        import_events(target, path)
    assert target.head() == 0
    export_events(source, path, upto=None)
    restored = import_events(target, path, require_signature=True)
    assert restored.signature == "signature verified"
    assert import_records(target)[0].signed is True


def test_check_only_compares_with_the_store_and_writes_nothing(
    source: Store, target: Store, tmp_path: Path
) -> None:
    path = tmp_path / "log.jsonl"
    export_events(source, path)
    checked = import_events(target, path, check_only=True)
    assert (checked.events, checked.written, checked.problems) == (source.head(), source.head(), [])
    assert target.head() == 0
    import_events(target, path)
    again = import_events(target, path, check_only=True)
    assert (again.written, again.skipped) == (0, source.head())


def test_imported_ids_are_in_the_log_exactly_once(
    source: Store, target: Store, tmp_path: Path
) -> None:
    path = tmp_path / "log.jsonl"
    export_events(source, path)
    import_events(target, path)
    ids = [row[0] for row in log_of(target.app)]
    assert len(ids) == len(set(ids))
    assert {UUID(i) for i in ids} >= {UUID(row[0]) for row in log_of(source.app)}


def test_the_cli_lists_each_refused_line_and_exits_non_zero(
    source: Store, target_settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "log.jsonl"
    export_events(source, path)
    other = Janus.build(target_settings)
    try:
        first = json.loads(lines_of(path)[1])
        other.commands.submit_goal(
            m.SubmitGoal(text="someone else's goal", goal_id=first["originator_id"]),
            Invocation(ALICE),
        )
    finally:
        other.close()
    env = {
        "JANUS_HOME": str(target_settings.home),
        "JANUS_DATABASE_URL": target_settings.database_url or "",
    }
    checked = CliRunner().invoke(events_app, ["import", str(path), "--check"], env=env)
    assert checked.exit_code == 1
    assert "line 2: conflict" in checked.stdout
    refused = CliRunner().invoke(events_app, ["import", str(path)], env=env)
    assert refused.exit_code == 1
    assert "line 2: conflict" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    with open_store(target_settings, use_views=False) as target:
        assert target.head() == 1


def test_a_job_from_a_file_is_not_scheduled_in_a_non_empty_store_unless_signed_and_extended(
    source: Store, target_settings: Settings, tmp_path: Path
) -> None:
    """The scheduler runs every job in the view: an imported job would be an order, not history."""
    other = Janus.build(target_settings)
    try:
        pending_confirmation(other)
    finally:
        other.close()
    path = tmp_path / "story.jsonl"
    export_events(signed(source), path)
    with open_store(target_settings, use_views=False) as target:
        head = target.head()
        with pytest.raises(ImportRefused, match="the scheduler here would run") as refused:
            import_events(target, path)
        assert [text for _, text in refused.value.problems if "would add Job" in text]
        assert target.head() == head
        imported = import_events(signed(target), path, extend=True)
        assert imported.written == source.head()


def test_an_api_key_from_a_file_is_refused_in_a_non_empty_store(
    janus: Janus, target_settings: Settings, tmp_path: Path
) -> None:
    """A forged key would be a way in: only a restore or a signed, extended file brings keys."""
    issued = KeyService(janus.commands.runner).create_key(
        CreateApiKey(name="intruder", role=Role.ADMIN), Invocation(ALICE)
    )
    other = Janus.build(target_settings)
    try:
        pending_confirmation(other)
    finally:
        other.close()
    path = tmp_path / "key.jsonl"
    with open_store(janus.settings, use_views=False) as source:
        export_events(source, path)
    with open_store(target_settings, use_views=False) as target:
        head = target.head()
        with pytest.raises(ImportRefused, match=r"would add ApiKey .* into the API"):
            import_events(target, path)
        assert target.head() == head
    other = Janus.build(target_settings)
    try:
        assert KeyService(other.commands.runner).authenticate(issued.token) is None
    finally:
        other.close()


def test_a_format_1_file_without_the_chain_still_imports(
    source: Store, target: Store, tmp_path: Path
) -> None:
    """Files written before the chain of positions: same checks, but for the chain."""
    path = tmp_path / "old.jsonl"
    export_events(source, path)
    lines = lines_of(path)
    old = [lines[0].replace(b'"janus_export": 2', b'"janus_export": 1')]
    for line in lines[1:-1]:
        data = json.loads(line)
        raw = line.replace(b',"after":%d' % data["after"], b"", 1)
        body = raw.rstrip(b"\n")[raw.find(b',"state":') + len(b',"state":') : -1]
        crc = checksum(raw[: raw.find(b',"crc32":')], body)
        old.append(raw.replace(b'"crc32":%d' % data["crc32"], b'"crc32":%d' % crc, 1))
    old.append(lines[-1].replace(b'"janus_export_end": 2', b'"janus_export_end": 1'))
    write_lines(path, old)
    imported = import_events(target, path)
    assert (imported.header.format, imported.written) == (1, source.head())
    assert positioned(target, source.head()) == positioned(source)


def test_a_writer_between_the_check_and_the_write_makes_the_import_write_nothing(
    janus: Janus, target_settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "log.jsonl"
    grant(janus)
    with open_store(janus.settings, use_views=False) as source:
        export_events(source, path)
    first = json.loads(lines_of(path)[1])
    other = Janus.build(target_settings)
    try:
        pending_confirmation(other)  # a non-empty store: the file's aggregates are all new

        raced: list[int] = []

        def meanwhile(_: int) -> None:
            # After the check has passed the file's first goal, another writer creates it.
            if not raced:
                raced.append(1)
                other.commands.submit_goal(
                    m.SubmitGoal(text="raced in", goal_id=first["originator_id"]),
                    Invocation(ALICE),
                )

        with open_store(target_settings, use_views=False) as target:
            head = target.head()
            with pytest.raises(ImportRefused, match="line 2: conflict"):
                import_events(target, path, progress=meanwhile)
            assert target.head() == head + 1  # only the other writer's goal
            assert import_records(target) == []
    finally:
        other.close()


def test_a_merge_ignores_the_source_s_own_import_records(
    request: pytest.FixtureRequest,
    settings: Settings,
    janus: Janus,
    target: Store,
    tmp_path: Path,
) -> None:
    grant(janus)
    with open_store(janus.settings, use_views=False) as source:
        export_events(source, tmp_path / "a.jsonl")
        events = source.head()
    import_events(target, tmp_path / "a.jsonl")
    export_events(target, tmp_path / "b.jsonl")  # now with the target's ImportLog in it
    third_settings = _empty_settings(request, settings, tmp_path / "third")
    third = Janus.build(third_settings)
    try:
        pending_confirmation(third)
    finally:
        third.close()
    with open_store(third_settings, use_views=False) as store:
        merged = import_events(store, tmp_path / "b.jsonl")
        assert (merged.mode, merged.written, merged.ignored) == ("append", events, 2)
        [record] = import_records(store)
        assert record.written == events
        assert (record.first_position, record.last_position) == (
            merged.first_position,
            merged.last_position,
        )
