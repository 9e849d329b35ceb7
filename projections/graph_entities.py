"""How the graph view reads recorded extractions: entity and relation ids, mentions, relations.

Kept apart from projections/graph.py so the answers (provenance, hybrid retrieval) name entities
and relations the same way the projection writes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID, uuid5

__all__ = [
    "ENTITY_NAMESPACE",
    "entity_id",
    "join_types",
    "parse_mention",
    "parse_relation",
    "relation_id",
]

ENTITY_NAMESPACE = UUID("6f1d5c0e-1b7a-5a43-9a55-0c6f0e3b7d21")


def entity_id(kind: str, name: str) -> str:
    """One node per (kind, name) across documents: what links documents through what they name."""
    return str(uuid5(ENTITY_NAMESPACE, f"{kind.casefold()}:{name.strip().casefold()}"))


def _entity(raw: Mapping[str, Any]) -> tuple[str, str] | None:
    # Extractions are recorded as {"name", "type"}; {"text", "label"} (spaCy's words) is read
    # too. Anything without a name is not an entity.
    name = raw.get("name") or raw.get("text")
    kind = raw.get("type") or raw.get("label") or "thing"
    if not isinstance(name, str) or not name.strip():
        return None
    return name.strip(), str(kind)


@dataclasses.dataclass(frozen=True)
class _Mention:
    name: str
    kind: str
    chunks: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class _Relation:
    source: str
    target: str
    kind: str
    chunk: int


def _index(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def parse_mention(raw: object) -> _Mention | None:
    """`{"name", "type", "chunks"}` as recorded; anything without a name or chunk is skipped."""
    if not isinstance(raw, Mapping):
        return None
    found = _entity(raw)
    chunks = raw.get("chunks")
    if found is None or not isinstance(chunks, list):
        return None
    indexes = tuple(sorted({i for i in (_index(c) for c in chunks) if i is not None}))
    return _Mention(found[0], found[1], indexes) if indexes else None


def parse_relation(raw: object) -> _Relation | None:
    """`{"source", "target", "type", "chunk"}` as recorded, or None when a part is missing."""
    if not isinstance(raw, Mapping):
        return None
    source, target, kind = raw.get("source"), raw.get("target"), raw.get("type")
    chunk = _index(raw.get("chunk"))
    parts = (source, target, kind)
    if chunk is None or not all(isinstance(p, str) and p.strip() for p in parts):
        return None
    return _Relation(str(source).strip(), str(target).strip(), str(kind).strip(), chunk)


def relation_id(source: str, target: str) -> str:
    """The Relation node of an ordered entity pair: where the chunks stating it point."""
    return str(uuid5(ENTITY_NAMESPACE, f"relation:{source}:{target}"))


def join_types(types: Iterable[str]) -> str:
    """Relation types as one property: sorted, distinct, comma-separated."""
    return ", ".join(sorted({t for part in types for t in part.split(", ") if t}))
