"""The vector view's port: collections of points (id, vector, payload) searched by similarity.

The target is not transactional with the log, so a projector writes idempotently: point ids are
deterministic (see adapters/chunking.py), upserts go first and the position after, in the target
itself (collection metadata). A crash between the two replays some events into the same points.
Blue/green: a rebuild fills a new collection, `set_alias` switches readers to it atomically, and
the old collection is dropped.

`QdrantVectorIndex` runs on a Qdrant server (URL) or embedded (a local folder). Embedded Qdrant
allows one process per folder; a second one gets `IndexLocked`, naming the folder and the holder.
One contract suite (tests/integration/test_vector_contract.py) runs on both modes.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from uuid import UUID

from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import UnexpectedResponse

__all__ = [
    "Between",
    "CollectionNotFound",
    "CollectionSpec",
    "Distance",
    "IndexLocked",
    "InvalidVector",
    "QdrantVectorIndex",
    "SearchHit",
    "VectorIndex",
    "VectorIndexError",
    "VectorPoint",
]

DOCUMENT_FIELD = "document_id"
POSITION_KEY = "janus_position"
SCROLL_PAGE = 256
LOCK_MARKER = "already accessed by another instance"
PROC_LOCKS = Path("/proc/locks")


class Distance(StrEnum):
    COSINE = "cosine"
    DOT = "dot"
    EUCLID = "euclid"


QDRANT_DISTANCE = {
    Distance.COSINE: qm.Distance.COSINE,
    Distance.DOT: qm.Distance.DOT,
    Distance.EUCLID: qm.Distance.EUCLID,
}


class VectorIndexError(Exception):
    """The vector index refused or failed an operation."""


class CollectionNotFound(VectorIndexError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no vector collection {name!r}")
        self.name = name


class InvalidVector(VectorIndexError, ValueError):
    pass


class IndexLocked(VectorIndexError):
    """An embedded index folder is held by another process (or another client in this one)."""


@dataclass(frozen=True)
class CollectionSpec:
    name: str
    dim: int
    distance: Distance


@dataclass(frozen=True)
class VectorPoint:
    id: UUID
    vector: Sequence[float]
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchHit:
    id: UUID
    score: float
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class Between:
    """A numeric range condition for `search` filters (inclusive ends; None = open)."""

    gte: float | None = None
    lte: float | None = None


# Payload field -> exact value, any of a list of values, or a numeric range.
FilterValue = str | int | bool | UUID | Between | Sequence[str | int]
Filter = Mapping[str, FilterValue]


class VectorIndex(ABC):
    @abstractmethod
    def ensure_collection(self, name: str, dim: int, distance: Distance = Distance.COSINE) -> bool:
        """Create the collection if missing (True); an existing one must match dim and distance."""

    @abstractmethod
    def spec(self, name: str) -> CollectionSpec:
        """Dimension and distance of a collection (or of the one an alias points at)."""

    @abstractmethod
    def collections(self) -> list[str]:
        """Collection names, sorted (aliases are not collections)."""

    @abstractmethod
    def drop(self, name: str) -> bool:
        """Delete a collection and the aliases pointing at it; False when it did not exist."""

    @abstractmethod
    def upsert(self, name: str, points: Sequence[VectorPoint]) -> None:
        """Insert or replace points by id; all vectors are checked before anything is written."""

    @abstractmethod
    def delete(self, name: str, ids: Sequence[UUID]) -> None:
        """Remove points by id; ids that are not there are ignored, so retries are safe."""

    @abstractmethod
    def delete_by_document(self, name: str, document_id: UUID | str) -> None:
        """Remove every point whose payload `document_id` matches (a retraction)."""

    @abstractmethod
    def search(
        self, name: str, vector: Sequence[float], k: int = 10, where: Filter | None = None
    ) -> list[SearchHit]:
        """The `k` nearest points, best first, among those matching every `where` condition."""

    @abstractmethod
    def points(self, name: str, with_vectors: bool = False) -> Iterator[VectorPoint]:
        """Every point (for verify), paged; vectors are empty unless asked for."""

    @abstractmethod
    def count(self, name: str) -> int: ...

    @abstractmethod
    def get_position(self, name: str) -> int | None:
        """The log position the collection's content reflects; None before any was set."""

    @abstractmethod
    def set_position(self, name: str, position: int) -> None:
        """Record the position; call only after the upserts it covers succeeded."""

    @abstractmethod
    def set_alias(self, alias: str, name: str) -> None:
        """Point `alias` at collection `name` in one atomic switch (blue/green)."""

    @abstractmethod
    def alias_target(self, alias: str) -> str | None: ...

    def close(self) -> None:  # noqa: B027 (optional hook: most indexes hold nothing)
        """Release the connection or the embedded folder's lock."""


def _check_vector(vector: Sequence[float], dim: int) -> list[float]:
    values = [float(x) for x in vector]
    if len(values) != dim:
        raise InvalidVector(f"vector has {len(values)} dimensions, the collection {dim}")
    if not all(math.isfinite(x) for x in values):
        raise InvalidVector("vector has a NaN or infinite component")
    return values


def _plain(vector: Any) -> list[float]:
    # One unnamed dense vector per point is all this port creates; None when not asked for.
    if isinstance(vector, list) and all(isinstance(x, float | int) for x in vector):
        return [float(x) for x in vector]
    return []


def _condition(key: str, value: FilterValue) -> qm.FieldCondition:
    if isinstance(value, Between):
        return qm.FieldCondition(key=key, range=qm.Range(gte=value.gte, lte=value.lte))
    if isinstance(value, UUID):
        value = str(value)
    if isinstance(value, str | int | bool):
        return qm.FieldCondition(key=key, match=qm.MatchValue(value=value))
    return qm.FieldCondition(key=key, match=qm.MatchAny(any=[str(v) for v in value]))


def _qdrant_filter(where: Filter | None) -> qm.Filter | None:
    if not where:
        return None
    return qm.Filter(must=[_condition(key, value) for key, value in where.items()])


def lock_holder(path: Path) -> str:
    """Which process holds the flock on `path`, read from /proc/locks (Linux), for the message."""
    try:
        st = path.stat()
        lines = PROC_LOCKS.read_text().splitlines()
    except OSError:
        return "an unknown process"
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 00:2f:1234 0 EOF"; blocked waiters are marked "->".
        if len(fields) >= 6 and "->" not in fields and fields[5] == device:
            pid = fields[4]
            return f"process {pid} ({_cmdline(pid)})"
    return "an unknown process"


def _cmdline(pid: str) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "gone"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:200]


class QdrantVectorIndex(VectorIndex):
    """Qdrant via `qdrant-client`: `url` for a server, `path` for the embedded folder."""

    def __init__(
        self, *, url: str | None = None, path: Path | None = None, api_key: str | None = None
    ) -> None:
        if (url is None) == (path is None):
            raise ValueError("give exactly one of url (a Qdrant server) or path (embedded)")
        self.path = path
        self._specs: dict[str, CollectionSpec] = {}
        if url is not None:
            self._client = QdrantClient(url=url, api_key=api_key)
            return
        assert path is not None
        path.mkdir(parents=True, exist_ok=True)
        try:
            self._client = QdrantClient(path=str(path))
        except RuntimeError as exc:
            if LOCK_MARKER not in str(exc):
                raise
            holder = lock_holder(path / ".lock")
            raise IndexLocked(
                f"vector index folder {path} is in use by {holder}; embedded Qdrant allows one"
                " process per folder: stop that process, or use a Qdrant server URL"
            ) from None

    @property
    def embedded(self) -> bool:
        return self.path is not None

    def close(self) -> None:
        self._client.close()

    def _not_found_or(self, name: str, exc: Exception) -> Exception:
        if not self._exists(name):
            return CollectionNotFound(name)
        return VectorIndexError(f"vector collection {name!r}: {exc}")

    def _exists(self, name: str) -> bool:
        return self._client.collection_exists(name) or self.alias_target(name) is not None

    def ensure_collection(self, name: str, dim: int, distance: Distance = Distance.COSINE) -> bool:
        if dim <= 0:
            raise ValueError("dim must be positive")
        wanted = CollectionSpec(name, dim, Distance(distance))
        if self.alias_target(name) is not None:
            raise VectorIndexError(f"{name!r} is an alias, not a collection")
        if name in self.collections():
            found = self.spec(name)
            if (found.dim, found.distance) != (wanted.dim, wanted.distance):
                raise VectorIndexError(
                    f"collection {name!r} exists with dim {found.dim} and {found.distance},"
                    f" not dim {dim} and {wanted.distance}"
                )
            return False
        self._client.create_collection(
            name,
            vectors_config=qm.VectorParams(size=dim, distance=QDRANT_DISTANCE[wanted.distance]),
        )
        if not self.embedded:
            # Retractions and document filters hit this field; local mode has no payload indexes.
            self._client.create_payload_index(name, DOCUMENT_FIELD, qm.PayloadSchemaType.KEYWORD)
        self._specs[name] = wanted
        return True

    def spec(self, name: str) -> CollectionSpec:
        try:
            info = self._client.get_collection(name)
        except (ValueError, UnexpectedResponse) as exc:
            raise self._not_found_or(name, exc) from exc
        params = info.config.params.vectors
        if not isinstance(params, qm.VectorParams):
            raise VectorIndexError(f"collection {name!r} has named vectors, not one vector")
        by_qdrant = {v: k for k, v in QDRANT_DISTANCE.items()}
        return CollectionSpec(name, params.size, by_qdrant[params.distance])

    def _cached_spec(self, name: str) -> CollectionSpec:
        # Dimension checks on every upsert/search would cost a round trip each without this.
        if name not in self._specs:
            self._specs[name] = self.spec(name)
        return self._specs[name]

    def _checked(self, name: str, vectors: Sequence[Sequence[float]]) -> list[list[float]]:
        try:
            return [_check_vector(v, self._cached_spec(name).dim) for v in vectors]
        except InvalidVector:
            # An alias may have been switched (by us or another process) to a collection of
            # another dimension since we cached it: look again before refusing.
            self._specs.pop(name, None)
            return [_check_vector(v, self._cached_spec(name).dim) for v in vectors]

    def collections(self) -> list[str]:
        return sorted(c.name for c in self._client.get_collections().collections)

    def drop(self, name: str) -> bool:
        self._specs.pop(name, None)
        if name not in self.collections():
            return False
        for alias in self._aliases_of(name):
            self._client.update_collection_aliases(
                change_aliases_operations=[
                    qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias))
                ]
            )
        return bool(self._client.delete_collection(name))

    def upsert(self, name: str, points: Sequence[VectorPoint]) -> None:
        if not points:
            return
        vectors = self._checked(name, [p.vector for p in points])
        structs = [
            qm.PointStruct(id=str(p.id), vector=vector, payload=dict(p.payload))
            for p, vector in zip(points, vectors, strict=True)
        ]
        try:
            self._client.upsert(name, points=structs, wait=True)
        except (ValueError, UnexpectedResponse) as exc:
            raise self._not_found_or(name, exc) from exc

    def delete(self, name: str, ids: Sequence[UUID]) -> None:
        if not ids:
            return
        selector = qm.PointIdsList(points=[str(i) for i in ids])
        self._delete(name, selector)

    def delete_by_document(self, name: str, document_id: UUID | str) -> None:
        where = _qdrant_filter({DOCUMENT_FIELD: str(document_id)})
        assert where is not None
        self._delete(name, qm.FilterSelector(filter=where))

    def _delete(self, name: str, selector: qm.PointIdsList | qm.FilterSelector) -> None:
        try:
            self._client.delete(name, points_selector=selector, wait=True)
        except (ValueError, UnexpectedResponse) as exc:
            raise self._not_found_or(name, exc) from exc

    def search(
        self, name: str, vector: Sequence[float], k: int = 10, where: Filter | None = None
    ) -> list[SearchHit]:
        if k <= 0:
            raise ValueError("k must be positive")
        [query] = self._checked(name, [vector])
        try:
            found = self._client.query_points(
                name, query=query, limit=k, query_filter=_qdrant_filter(where), with_payload=True
            )
        except (ValueError, UnexpectedResponse) as exc:
            raise self._not_found_or(name, exc) from exc
        return [SearchHit(UUID(str(p.id)), p.score, p.payload or {}) for p in found.points]

    def points(self, name: str, with_vectors: bool = False) -> Iterator[VectorPoint]:
        self._cached_spec(name)
        offset: Any = None
        while True:
            page, offset = self._client.scroll(
                name, limit=SCROLL_PAGE, offset=offset, with_payload=True, with_vectors=with_vectors
            )
            for record in page:
                yield VectorPoint(UUID(str(record.id)), _plain(record.vector), record.payload or {})
            if offset is None:
                return

    def count(self, name: str) -> int:
        try:
            return int(self._client.count(name, exact=True).count)
        except (ValueError, UnexpectedResponse) as exc:
            raise self._not_found_or(name, exc) from exc

    def get_position(self, name: str) -> int | None:
        try:
            info = self._client.get_collection(name)
        except (ValueError, UnexpectedResponse) as exc:
            raise self._not_found_or(name, exc) from exc
        value = (info.config.metadata or {}).get(POSITION_KEY)
        return None if value is None else int(value)

    def set_position(self, name: str, position: int) -> None:
        if position < 0:
            raise ValueError("position must not be negative")
        try:
            self._client.update_collection(name, metadata={POSITION_KEY: position})
        except (ValueError, UnexpectedResponse) as exc:
            raise self._not_found_or(name, exc) from exc

    def set_alias(self, alias: str, name: str) -> None:
        # collection_exists() is true for an alias too in embedded mode: ask for real names.
        names = self.collections()
        if name not in names:
            raise CollectionNotFound(name)
        if alias in names:
            raise VectorIndexError(f"{alias!r} is a collection, it cannot become an alias")
        operations: list[qm.AliasOperations] = []
        if self.alias_target(alias) is not None:
            operations.append(
                qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias))
            )
        operations.append(
            qm.CreateAliasOperation(
                create_alias=qm.CreateAlias(collection_name=name, alias_name=alias)
            )
        )
        # One request: readers see the old collection or the new one, never no collection.
        self._client.update_collection_aliases(change_aliases_operations=operations)
        self._specs.pop(alias, None)

    def alias_target(self, alias: str) -> str | None:
        for description in self._client.get_aliases().aliases:
            if description.alias_name == alias:
                return str(description.collection_name)
        return None

    def _aliases_of(self, name: str) -> list[str]:
        return [
            d.alias_name for d in self._client.get_aliases().aliases if d.collection_name == name
        ]
