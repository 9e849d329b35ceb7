"""The knowledge views fed from JetStream on Postgres, as `janus project vector|objects|graph`
runs them with JANUS_NATS_URL set: the same runner, each view's own consumer and leader lock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.container import Janus
from projections.jetstream import FeedConfig
from projections.supervisor import ProjectorProcess
from tests.servers import wait_until
from tests.support.documents import ingest, retract
from tests.support.jetstream import Relay, delete_stream, jetstream_settings

CAT = "The cat sits on the mat and purrs.\n\n" * 30
MARKET = "Shares fell sharply when the market opened on Monday.\n\n" * 20


@pytest.fixture
def janus(tmp_path: Path, pg_url: str, nats_url: str) -> Iterator[Janus]:
    settings = jetstream_settings(tmp_path / "janus", pg_url, nats_url).model_copy(
        update={"embedding_model": "hashing", "chunk_size": 200, "chunk_overlap": 20}
    )
    built = Janus.build(settings)
    try:
        yield built
    finally:
        built.close()
        delete_stream(settings)


def test_the_knowledge_views_follow_the_stream(janus: Janus) -> None:
    relay = Relay(janus)
    cat, _ = ingest(janus, CAT, "file:///notes/cat.txt")
    market, _ = ingest(janus, MARKET, "file:///notes/market.txt")
    relay.publish()
    process = ProjectorProcess.named(
        janus.projections,
        janus.feed_source(),
        "all",
        FeedConfig(poll_interval=0.05, fetch_timeout=0.2),
    )
    assert process.uses_jetstream
    thread = threading.Thread(target=process.run, daemon=True)
    thread.start()
    try:
        views = janus.knowledge_views.values()
        wait_until(lambda: all(v.position == janus.reader.head() for v in views), timeout=60)
        retract(janus, cat)
        relay.publish()
        wait_until(lambda: all(v.position == janus.reader.head() for v in views), timeout=60)
    finally:
        process.stop()
        thread.join(30)
    assert not thread.is_alive()

    hits = janus.knowledge.search().search("cat on the mat", k=5)
    assert hits and {h.document_id for h in hits} == {market}
    for view in views:
        assert view.verify()[1].clean, view.name
