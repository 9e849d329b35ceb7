"""One contract for every VectorIndex: embedded Qdrant (always) and a Qdrant server (when set).

`VectorIndexContract` is abstract (pytest skips classes not named Test*); each implementation
subclasses it once and provides `index` and `reopen`. Collection names are unique per test, so a
shared server needs no cleanup between tests.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.vectors import (
    Between,
    CollectionNotFound,
    Distance,
    Filter,
    IndexLocked,
    InvalidVector,
    QdrantVectorIndex,
    VectorIndex,
    VectorIndexError,
    VectorPoint,
)
from tests.servers import unique_name

ENV_QDRANT_URL = "JANUS_TEST_QDRANT_URL"
REPO_ROOT = Path(__file__).resolve().parents[2]
DIM = 4


def unit(*xs: float) -> list[float]:
    norm = math.sqrt(sum(x * x for x in xs))
    return [x / norm for x in xs]


def point(doc: str, index: int, vector: list[float], **extra: object) -> VectorPoint:
    payload = {"document_id": doc, "chunk_index": index, **extra}
    return VectorPoint(uuid.uuid5(uuid.NAMESPACE_URL, f"{doc}/{index}"), vector, payload)


class VectorIndexContract:
    """Behaviour every VectorIndex must show."""

    @pytest.fixture
    def name(self) -> str:
        return unique_name("chunks")

    @pytest.fixture
    def ready(self, index: VectorIndex, name: str) -> str:
        index.ensure_collection(name, DIM, Distance.COSINE)
        return name

    def test_ensure_collection_creates_once_and_checks_the_shape(
        self, index: VectorIndex, name: str
    ) -> None:
        assert index.ensure_collection(name, DIM) is True
        assert index.ensure_collection(name, DIM) is False

        assert (index.spec(name).dim, index.spec(name).distance) == (DIM, Distance.COSINE)
        assert name in index.collections()
        with pytest.raises(VectorIndexError, match="dim"):
            index.ensure_collection(name, DIM + 1)

    def test_search_returns_nearest_first_with_payload(
        self, index: VectorIndex, ready: str
    ) -> None:
        index.upsert(
            ready,
            [
                point("d1", 0, unit(1, 0, 0, 0), text="north"),
                point("d1", 1, unit(0, 1, 0, 0), text="east"),
                point("d2", 0, unit(1, 1, 0, 0), text="north-east"),
            ],
        )

        hits = index.search(ready, unit(1, 0.1, 0, 0), k=2)

        assert [h.payload["text"] for h in hits] == ["north", "north-east"]
        assert hits[0].score > hits[1].score
        assert hits[0].id == point("d1", 0, []).id

    def test_upserting_the_same_ids_again_replaces_not_duplicates(
        self, index: VectorIndex, ready: str
    ) -> None:
        index.upsert(ready, [point("d1", 0, unit(1, 0, 0, 0), text="v1")])

        index.upsert(ready, [point("d1", 0, unit(0, 1, 0, 0), text="v2")])

        assert index.count(ready) == 1
        [hit] = index.search(ready, unit(0, 1, 0, 0), k=5)
        assert hit.payload["text"] == "v2"
        assert hit.score == pytest.approx(1.0)

    @pytest.mark.parametrize("bad", [[1.0, 0.0], [1.0, 0.0, 0.0, math.nan]])
    def test_a_bad_vector_fails_the_batch_before_any_write(
        self, index: VectorIndex, ready: str, bad: list[float]
    ) -> None:
        batch = [point("d1", 0, unit(1, 0, 0, 0)), point("d1", 1, bad)]

        with pytest.raises(InvalidVector):
            index.upsert(ready, batch)
        with pytest.raises(InvalidVector):
            index.search(ready, bad)
        assert index.count(ready) == 0

    def test_delete_by_ids_ignores_unknown_ids(self, index: VectorIndex, ready: str) -> None:
        kept, gone = point("d1", 0, unit(1, 0, 0, 0)), point("d1", 1, unit(0, 1, 0, 0))
        index.upsert(ready, [kept, gone])

        index.delete(ready, [gone.id, uuid.uuid4()])
        index.delete(ready, [gone.id])

        assert [p.id for p in index.points(ready)] == [kept.id]

    def test_delete_by_document_removes_only_that_document(
        self, index: VectorIndex, ready: str
    ) -> None:
        doc = uuid.uuid4()
        index.upsert(
            ready,
            [
                point(str(doc), 0, unit(1, 0, 0, 0)),
                point(str(doc), 1, unit(0, 1, 0, 0)),
                point("other", 0, unit(0, 0, 1, 0)),
            ],
        )

        index.delete_by_document(ready, doc)

        assert [p.payload["document_id"] for p in index.points(ready)] == ["other"]

    def test_search_filters_by_value_any_of_and_range(self, index: VectorIndex, ready: str) -> None:
        index.upsert(
            ready,
            [
                point("a", 0, unit(1, 0, 0, 0), source="s1", position=5),
                point("b", 0, unit(1, 0.1, 0, 0), source="s2", position=9),
                point("c", 0, unit(1, 0.2, 0, 0), source="s3", position=12),
            ],
        )
        query = unit(1, 0, 0, 0)

        def docs(where: Filter) -> list[str]:
            return [h.payload["document_id"] for h in index.search(ready, query, 10, where)]

        assert docs({"source": "s2"}) == ["b"]
        assert docs({"document_id": ["a", "c"]}) == ["a", "c"]
        assert docs({"position": Between(gte=6)}) == ["b", "c"]
        assert docs({"position": Between(lte=9), "source": ["s2", "s3"]}) == ["b"]
        assert docs({"source": "nowhere"}) == []

    def test_position_is_kept_in_the_target_and_survives_a_new_client(
        self, index: VectorIndex, ready: str, reopen: Callable[[], VectorIndex]
    ) -> None:
        assert index.get_position(ready) is None
        index.upsert(ready, [point("d1", 0, unit(1, 0, 0, 0))])
        index.set_position(ready, 41)
        index.set_position(ready, 42)

        again = reopen()

        assert again.get_position(ready) == 42
        assert again.count(ready) == 1

    def test_a_missing_collection_is_reported(self, index: VectorIndex, name: str) -> None:
        with pytest.raises(CollectionNotFound):
            index.upsert(name, [point("d1", 0, unit(1, 0, 0, 0))])
        with pytest.raises(CollectionNotFound):
            index.search(name, unit(1, 0, 0, 0))
        with pytest.raises(CollectionNotFound):
            index.set_position(name, 1)
        with pytest.raises(CollectionNotFound):
            index.get_position(name)
        with pytest.raises(CollectionNotFound):
            index.count(name)
        assert index.drop(name) is False

    def test_blue_green_switch_moves_readers_atomically(self, index: VectorIndex) -> None:
        alias, blue, green = unique_name("live"), unique_name("blue"), unique_name("green")
        index.ensure_collection(blue, DIM)
        index.upsert(blue, [point("d1", 0, unit(1, 0, 0, 0), model="old")])
        index.set_alias(alias, blue)
        # The rebuild fills green (another model may mean another dimension) while blue serves.
        index.ensure_collection(green, DIM + 2)
        index.upsert(green, [point("d1", 0, unit(1, 0, 0, 0, 0, 0), model="new")])

        assert index.search(alias, unit(1, 0, 0, 0))[0].payload["model"] == "old"
        index.set_alias(alias, green)
        assert index.drop(blue) is True

        assert index.alias_target(alias) == green
        assert index.search(alias, unit(1, 0, 0, 0, 0, 0))[0].payload["model"] == "new"
        assert green in index.collections()
        assert blue not in index.collections()
        assert alias not in index.collections()
        with pytest.raises(VectorIndexError, match="alias"):
            index.ensure_collection(alias, DIM + 2)

    def test_an_alias_needs_a_collection_and_a_free_name(
        self, index: VectorIndex, ready: str
    ) -> None:
        with pytest.raises(CollectionNotFound):
            index.set_alias(unique_name("live"), unique_name("missing"))
        with pytest.raises(VectorIndexError):
            index.set_alias(ready, ready)
        assert index.alias_target(unique_name("live")) is None

    def test_points_pages_through_everything(self, index: VectorIndex, ready: str) -> None:
        batch = [point("big", i, unit(1, i, 0, 1)) for i in range(300)]
        index.upsert(ready, batch)

        listed = list(index.points(ready, with_vectors=True))

        assert {p.id for p in listed} == {p.id for p in batch}
        by_id = {p.id: p for p in batch}
        assert all(p.vector == pytest.approx(by_id[p.id].vector, abs=1e-6) for p in listed)
        assert all(p.vector == [] for p in index.points(ready))


class TestEmbeddedQdrant(VectorIndexContract):
    @pytest.fixture
    def folder(self, tmp_path: Path) -> Path:
        return tmp_path / "qdrant"

    @pytest.fixture
    def index(self, folder: Path) -> Iterator[QdrantVectorIndex]:
        index = QdrantVectorIndex(path=folder)
        yield index
        index.close()

    @pytest.fixture
    def reopen(self, index: QdrantVectorIndex, folder: Path) -> Iterator[Callable[[], VectorIndex]]:
        opened: list[QdrantVectorIndex] = []

        def _reopen() -> VectorIndex:
            # Embedded mode: the folder's lock must be released before another client opens it.
            index.close()
            opened.append(QdrantVectorIndex(path=folder))
            return opened[-1]

        yield _reopen
        for again in opened:
            again.close()

    def test_a_second_client_on_the_folder_names_the_holder(
        self, index: QdrantVectorIndex, folder: Path
    ) -> None:
        with pytest.raises(IndexLocked) as raised:
            QdrantVectorIndex(path=folder)

        assert str(folder) in str(raised.value)
        assert f"process {os.getpid()}" in str(raised.value)

    def test_a_second_process_is_refused_until_the_holder_dies(self, tmp_path: Path) -> None:
        folder = tmp_path / "shared"
        holder = _hold_folder(folder)
        try:
            with pytest.raises(IndexLocked, match=f"process {holder.pid}"):
                QdrantVectorIndex(path=folder)
        finally:
            holder.kill()
            holder.wait(10)

        # The OS released the dead holder's lock: the next process just opens the folder.
        QdrantVectorIndex(path=folder).close()


def _hold_folder(folder: Path) -> subprocess.Popen[str]:
    code = (
        "import sys; from pathlib import Path; from adapters.vectors import QdrantVectorIndex;"
        f"index = QdrantVectorIndex(path=Path({str(folder)!r}));"
        "print('ready', flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert proc.stdout is not None
    # readline returns "" if the child died first, which fails the assert with no hang.
    assert proc.stdout.readline().strip() == "ready"
    return proc


class TestQdrantServer(VectorIndexContract):
    @pytest.fixture
    def url(self) -> str:
        url = os.environ.get(ENV_QDRANT_URL)
        if not url:
            pytest.skip(f"{ENV_QDRANT_URL} is not set")
        return url

    @pytest.fixture
    def index(self, url: str) -> Iterator[QdrantVectorIndex]:
        index = QdrantVectorIndex(url=url)
        yield index
        index.close()

    @pytest.fixture
    def reopen(self, url: str) -> Iterator[Callable[[], VectorIndex]]:
        opened: list[QdrantVectorIndex] = []

        def _reopen() -> VectorIndex:
            opened.append(QdrantVectorIndex(url=url))
            return opened[-1]

        yield _reopen
        for again in opened:
            again.close()
