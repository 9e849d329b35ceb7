"""Export and import of the log, on SQLite and on Postgres: identical logs, idempotent imports,
and corrupt files that stop at their first bad line with nothing half written."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands import models as m
from commands.invocation import Invocation
from replay.audit import Store
from replay.exchange import ExchangeError, checksum, export_events, import_events
from tests.integration.test_time_travel import ALICE, log_of, tell_story
from tests.servers import create_database, database_url


@pytest.fixture
def target_settings(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Settings:
    """An empty store of the same kind as the test's own."""
    if settings.database_url is None:
        return Settings(home=tmp_path / "target", database_url=None)
    server: str = request.getfixturevalue("pg_server_url")
    databases: list[str] = request.getfixturevalue("_pg_session_databases")
    name = create_database(server)
    databases.append(name)
    return Settings(home=tmp_path / "target", database_url=database_url(server, name))


@pytest.fixture
def target(target_settings: Settings) -> Iterator[Store]:
    store = Store.open(target_settings, use_views=False)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def source(janus: Janus) -> Iterator[Store]:
    tell_story(janus)
    store = Store.open(janus.settings, use_views=False)
    try:
        yield store
    finally:
        store.close()


def lines_of(path: Path) -> list[bytes]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as stream:
        return list(stream)


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def test_export_then_import_into_an_empty_store_gives_an_identical_log(
    source: Store, target: Store, tmp_path: Path
) -> None:
    path = tmp_path / "log.jsonl"
    exported = export_events(source, path)
    assert exported.events == source.head()
    imported = import_events(target, path)
    assert (imported.events, imported.written, imported.skipped) == (
        exported.events,
        exported.events,
        0,
    )
    assert log_of(target.app) == log_of(source.app)
    # And the imported log reads back into the same aggregates.
    for event_id, originator, _, _, _ in log_of(source.app)[:5]:
        assert event_id
        ident = source.table.ids_with_prefix(originator)[0]
        assert source.app.repository.get(ident).__dict__.keys() == (
            target.app.repository.get(ident).__dict__.keys()
        )


def test_importing_the_same_file_twice_adds_nothing(
    source: Store, target: Store, tmp_path: Path
) -> None:
    path = tmp_path / "log.jsonl.gz"
    export_events(source, path)
    import_events(target, path)
    head = target.head()
    again = import_events(target, path)
    assert (again.written, again.skipped) == (0, again.events)
    assert target.head() == head
    assert log_of(target.app) == log_of(source.app)


def test_a_gz_name_writes_gzip_with_a_header_and_a_trailer(source: Store, tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl.gz"
    export_events(source, path)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    lines = lines_of(path)
    header, trailer = json.loads(lines[0]), json.loads(lines[-1])
    assert header["janus_export"] == 1
    assert header["source_node"] == source.settings.node_id
    assert (header["after_position"], header["upto_position"]) == (0, source.head())
    assert trailer == {
        "janus_export_end": 1,
        "events": source.head(),
        "last_position": source.head(),
    }
    first = json.loads(lines[1])
    assert first["position"] == 1
    assert first["topic"] == "domain.goal:Goal.Submitted"
    assert not (tmp_path / "log.jsonl.gz.partial").exists()


def test_a_range_exports_only_its_events_and_cannot_start_an_empty_store(
    source: Store, target: Store, tmp_path: Path
) -> None:
    path = tmp_path / "part.jsonl"
    part = export_events(source, path, after=3, upto=8)
    positions = [json.loads(line)["position"] for line in lines_of(path)[1:-1]]
    assert positions == [4, 5, 6, 7, 8]
    assert part.events == 5
    # Event 4 continues an aggregate whose earlier events are not in this empty store.
    with pytest.raises(ExchangeError, match=r"line 2:.*follows nothing"):
        import_events(target, path)
    assert target.head() == 0
    # With the beginning imported first, the rest follows on.
    export_events(source, tmp_path / "start.jsonl", upto=3)
    import_events(target, tmp_path / "start.jsonl")
    import_events(target, path)
    assert log_of(target.app) == log_of(source.app)[:8]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda line: line[: len(line) // 2] + b"\n", "not JSON"),
        (lambda line: line.replace(b"plumber", b"burglar", 1), "checksum mismatch"),
        (lambda line: line.replace(b'"topic":"domain.', b'"topic":"nowhere.', 1), "checksum"),
        (lambda line: b'{"position": 1}\n', "missing"),
    ],
)
def test_a_corrupt_line_stops_the_import_at_its_line_and_nothing_after_it_is_written(
    source: Store, target: Store, tmp_path: Path, damage: object, message: str
) -> None:
    path = tmp_path / "log.jsonl"
    export_events(source, path)
    lines = lines_of(path)
    bad = next(i for i, line in enumerate(lines) if b"plumber" in line and i > 3)
    lines[bad] = damage(lines[bad])  # type: ignore[operator]
    write_lines(path, lines)
    with pytest.raises(ExchangeError, match=f"line {bad + 1}: {message}"):
        import_events(target, path)
    # Line 1 is the header, so lines 2..bad are events 1..bad-1: all of them, nothing more.
    assert log_of(target.app) == log_of(source.app)[: bad - 1]


def test_a_file_cut_short_keeps_its_whole_lines_and_says_so(
    source: Store, target: Store, tmp_path: Path
) -> None:
    path = tmp_path / "log.jsonl"
    export_events(source, path)
    whole = lines_of(path)
    write_lines(path, whole[:6])
    with pytest.raises(ExchangeError, match="cut short after 5 events"):
        import_events(target, path)
    assert target.head() == 5
    write_lines(path, whole)
    finished = import_events(target, path)
    assert (finished.written, finished.skipped) == (len(whole) - 7, 5)
    assert log_of(target.app) == log_of(source.app)


def test_an_event_that_collides_with_a_different_one_stops_the_import(
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
        with Store.open(target_settings, use_views=False) as target:
            with pytest.raises(ExchangeError, match=r"line 2:.*already holds another event"):
                import_events(target, path)
            assert target.head() == 1
    finally:
        other.close()


def test_check_only_reads_the_whole_file_and_writes_nothing(
    source: Store, target: Store, tmp_path: Path
) -> None:
    path = tmp_path / "log.jsonl"
    export_events(source, path)
    checked = import_events(target, path, check_only=True)
    assert checked.events == source.head()
    assert checked.written == 0
    assert target.head() == 0


def test_a_file_that_is_not_an_export_is_refused_at_line_one(target: Store, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("dear diary\n")
    with pytest.raises(ExchangeError, match="line 1: not a Janus export"):
        import_events(target, path)
    garbage = tmp_path / "garbage.jsonl.gz"
    garbage.write_bytes(b"this is not gzip at all")
    with pytest.raises(ExchangeError, match="damaged or unreadable"):
        import_events(target, garbage)
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
    crc = checksum(identity, body)
    lines[3] = renamed.replace(b'"crc32":%d' % data["crc32"], b'"crc32":%d' % crc, 1)
    write_lines(path, lines)
    with pytest.raises(ExchangeError, match="line 4: event cannot be decoded"):
        import_events(target, path)
    assert log_of(target.app) == log_of(source.app)[:2]
