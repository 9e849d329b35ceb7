"""The graph view's port: labelled nodes and typed edges, merged idempotently, kept in namespaces.

Every node has a deterministic id (chunk ids are uuid5(document, index, model digest), see
adapters/chunking.py; other nodes use their aggregate id), one label, scalar properties, and the
event id and log position that last wrote it. An edge is identified by (source, type, target), so
merging the same edge twice leaves one. The store is not transactional with the log: a projector
merges first and stores its position in the graph after (a reserved meta node, not a view node); a
crash in between replays the batch onto the same ids.

Blue/green: a rebuild fills a new namespace beside the live one; `set_alias` switches readers to it
atomically; the old namespace is dropped. Every read and write takes a namespace or an alias name.

Implementations: `LadybugGraphStore` (embedded, adapters/graph_ladybug.py), `FalkorDBGraphStore`
(adapters/graph_falkordb.py) and `Neo4jGraphStore` (adapters/graph_neo4j.py); the last two share
their Cypher (adapters/graph_cypher.py). One contract suite
(tests/integration/test_graph_contract.py) runs on each. Input is validated whole before anything is
written, so bad input changes nothing.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar
from uuid import UUID

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MAX_DEPTH",
    "EdgeKey",
    "GraphCounts",
    "GraphEdge",
    "GraphNode",
    "GraphPath",
    "GraphStore",
    "GraphStoreError",
    "InvalidGraphInput",
    "LabelConflict",
    "MissingEndpoints",
    "NamespaceNotFound",
    "NodeNotFound",
    "Scalar",
    "Subgraph",
    "check_id",
    "check_name",
    "check_position",
]

DEFAULT_BATCH_SIZE = 500
MAX_BATCH_SIZE = 10_000
MAX_DEPTH = 6
# Labels, edge types, namespaces and aliases are spliced into Cypher (they cannot be parameters),
# so only plain identifiers pass; the `Janus` prefix is kept for the store's own bookkeeping.
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")
KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
RESERVED_PREFIX = "janus"
RESERVED_KEYS = frozenset({"id", "event_id", "position"})

Scalar = str | int | float | bool
T = TypeVar("T")
EdgeKey = tuple[str, str, str]


class GraphStoreError(Exception):
    """The graph store refused or failed an operation."""


class InvalidGraphInput(GraphStoreError, ValueError):
    """Input the store refuses; the message starts with the field path (`nodes[2].label`)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class MissingEndpoints(InvalidGraphInput):
    """Edges name nodes the namespace does not hold; nothing of the batch was written."""

    def __init__(self, ids: Sequence[str]) -> None:
        super().__init__("edges", f"unknown endpoint node ids {sorted(ids)}")
        self.ids = sorted(ids)


class LabelConflict(InvalidGraphInput):
    """A node id is already stored under another label (a node's label never changes)."""

    def __init__(self, ids: Sequence[str]) -> None:
        super().__init__("nodes", f"ids already stored with another label {sorted(ids)}")
        self.ids = sorted(ids)


class NamespaceNotFound(GraphStoreError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no graph namespace {name!r}")
        self.name = name


class NodeNotFound(GraphStoreError, LookupError):
    def __init__(self, namespace: str, node_id: str) -> None:
        super().__init__(f"no node {node_id!r} in graph namespace {namespace!r}")
        self.node_id = node_id


@dataclass(frozen=True)
class GraphNode:
    id: str
    label: str
    event_id: str
    position: int
    properties: Mapping[str, Scalar] = field(default_factory=dict)

    def stored(self) -> dict[str, Scalar]:
        """Every property the store keeps on the node, bookkeeping included."""
        return {
            **self.properties,
            "id": self.id,
            "event_id": self.event_id,
            "position": self.position,
        }


@dataclass(frozen=True)
class GraphEdge:
    source: str
    type: str
    target: str
    event_id: str
    position: int
    properties: Mapping[str, Scalar] = field(default_factory=dict)

    @property
    def key(self) -> EdgeKey:
        return (self.source, self.type, self.target)

    def stored(self) -> dict[str, Scalar]:
        return {**self.properties, "event_id": self.event_id, "position": self.position}


@dataclass(frozen=True)
class Subgraph:
    """Nodes sorted by id and edges sorted by (source, type, target)."""

    nodes: list[GraphNode]
    edges: list[GraphEdge]

    @property
    def node_ids(self) -> set[str]:
        return {n.id for n in self.nodes}

    @property
    def edge_keys(self) -> set[EdgeKey]:
        return {e.key for e in self.edges}


@dataclass(frozen=True)
class GraphPath:
    """One path of evidence: nodes in order from source to target, and the edge between each pair
    (edges keep their stored direction, which may run against the walk)."""

    nodes: list[GraphNode]
    edges: list[GraphEdge]

    @property
    def node_ids(self) -> list[str]:
        return [n.id for n in self.nodes]


@dataclass(frozen=True)
class GraphCounts:
    nodes: dict[str, int]
    edges: dict[str, int]


def check_name(value: object, path: str) -> str:
    """A label, edge type, namespace or alias: a plain identifier, not in the reserved prefix."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise InvalidGraphInput(path, f"{value!r} is not an identifier ([A-Za-z][A-Za-z0-9_]*)")
    if value.lower().startswith(RESERVED_PREFIX):
        raise InvalidGraphInput(path, f"{value!r} uses the reserved prefix 'Janus'")
    return value


def check_id(value: object, path: str) -> str:
    if isinstance(value, UUID):
        raise InvalidGraphInput(path, "ids are strings (pass str(uuid))")
    if not isinstance(value, str) or not value.strip():
        raise InvalidGraphInput(path, f"{value!r} is not a non-empty string")
    return value


def check_position(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidGraphInput(path, f"{value!r} is not a non-negative integer")
    return value


def _check_properties(props: object, path: str) -> None:
    if not isinstance(props, Mapping):
        raise InvalidGraphInput(path, "properties must be a mapping")
    for key, value in props.items():
        where = f"{path}.{key}"
        if not isinstance(key, str) or not KEY_RE.fullmatch(key):
            raise InvalidGraphInput(where, "property keys are identifiers")
        if key in RESERVED_KEYS:
            raise InvalidGraphInput(where, f"{key!r} is set by the store, not a property")
        if not isinstance(value, str | int | float | bool):
            raise InvalidGraphInput(where, f"{type(value).__name__} is not a str/int/float/bool")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidGraphInput(where, "NaN and infinities are not stored")


def check_nodes(nodes: Sequence[GraphNode]) -> list[GraphNode]:
    """Validate every node; the last one per id wins, and one id may not carry two labels."""
    latest: dict[str, GraphNode] = {}
    for i, node in enumerate(nodes):
        where = f"nodes[{i}]"
        if not isinstance(node, GraphNode):
            raise InvalidGraphInput(where, f"{type(node).__name__} is not a GraphNode")
        check_id(node.id, f"{where}.id")
        check_name(node.label, f"{where}.label")
        check_id(node.event_id, f"{where}.event_id")
        check_position(node.position, f"{where}.position")
        _check_properties(node.properties, f"{where}.properties")
        earlier = latest.get(node.id)
        if earlier is not None and earlier.label != node.label:
            raise InvalidGraphInput(
                f"{where}.label", f"id {node.id!r} also given as {earlier.label}"
            )
        latest[node.id] = node
    return list(latest.values())


def check_edges(edges: Sequence[GraphEdge]) -> list[GraphEdge]:
    latest: dict[EdgeKey, GraphEdge] = {}
    for i, edge in enumerate(edges):
        where = f"edges[{i}]"
        if not isinstance(edge, GraphEdge):
            raise InvalidGraphInput(where, f"{type(edge).__name__} is not a GraphEdge")
        check_id(edge.source, f"{where}.source")
        check_name(edge.type, f"{where}.type")
        check_id(edge.target, f"{where}.target")
        check_id(edge.event_id, f"{where}.event_id")
        check_position(edge.position, f"{where}.position")
        _check_properties(edge.properties, f"{where}.properties")
        latest[edge.key] = edge
    return list(latest.values())


def check_depth(depth: object, path: str = "depth", low: int = 0) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int) or not low <= depth <= MAX_DEPTH:
        raise InvalidGraphInput(path, f"{depth!r} is not an integer in {low}..{MAX_DEPTH}")
    return depth


def check_batch_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
        raise InvalidGraphInput("batch_size", f"{size!r} is not an integer in 1..{MAX_BATCH_SIZE}")
    return size


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def by_label(nodes: Sequence[GraphNode]) -> dict[str, list[GraphNode]]:
    grouped: dict[str, list[GraphNode]] = {}
    for node in nodes:
        grouped.setdefault(node.label, []).append(node)
    return grouped


def by_type(edges: Sequence[GraphEdge]) -> dict[str, list[GraphEdge]]:
    grouped: dict[str, list[GraphEdge]] = {}
    for edge in edges:
        grouped.setdefault(edge.type, []).append(edge)
    return grouped


class GraphStore(ABC):
    """Validation and batching live here; implementations write one checked batch at a time."""

    def __init__(self, batch_size: int | None = None) -> None:
        self.batch_size = check_batch_size(DEFAULT_BATCH_SIZE if batch_size is None else batch_size)

    # --- namespaces (blue/green) ---------------------------------------------------------------

    @abstractmethod
    def ensure_namespace(self, namespace: str) -> bool:
        """Create an empty namespace if missing (True); False when it already existed."""

    @abstractmethod
    def namespaces(self) -> list[str]:
        """Namespace names, sorted (aliases are not namespaces)."""

    @abstractmethod
    def drop_namespace(self, namespace: str) -> bool:
        """Delete a namespace, its content and the aliases pointing at it; False if absent."""

    @abstractmethod
    def set_alias(self, alias: str, namespace: str) -> None:
        """Point `alias` at an existing namespace in one atomic switch."""

    @abstractmethod
    def alias_target(self, alias: str) -> str | None: ...

    # --- writes --------------------------------------------------------------------------------

    def merge_nodes(
        self, graph: str, nodes: Sequence[GraphNode], batch_size: int | None = None
    ) -> int:
        """Insert or replace nodes by id (properties replaced whole); returns how many were sent."""
        size = self.batch_size if batch_size is None else check_batch_size(batch_size)
        checked = check_nodes(nodes)
        namespace = self.resolve(graph)
        if not checked:
            return 0
        conflicts = self._label_conflicts(namespace, checked)
        if conflicts:
            raise LabelConflict(conflicts)
        for label, group in by_label(checked).items():
            for batch in batches(group, size):
                self._write_nodes(namespace, label, batch)
        return len(checked)

    def merge_edges(
        self, graph: str, edges: Sequence[GraphEdge], batch_size: int | None = None
    ) -> int:
        """Insert or replace edges by (source, type, target); both ends must already exist."""
        size = self.batch_size if batch_size is None else check_batch_size(batch_size)
        checked = check_edges(edges)
        namespace = self.resolve(graph)
        if not checked:
            return 0
        ends = sorted({e.source for e in checked} | {e.target for e in checked})
        missing = self._missing_ids(namespace, ends)
        if missing:
            raise MissingEndpoints(missing)
        for edge_type, group in by_type(checked).items():
            for batch in batches(group, size):
                self._write_edges(namespace, edge_type, batch)
        return len(checked)

    def delete_nodes(self, graph: str, ids: Sequence[str]) -> int:
        """Remove nodes and their edges; unknown ids are ignored. Returns how many were removed."""
        checked = sorted({check_id(x, f"ids[{i}]") for i, x in enumerate(ids)})
        namespace = self.resolve(graph)
        return sum(
            self._delete_ids(namespace, batch) for batch in batches(checked, self.batch_size)
        )

    def delete_edges(self, graph: str, keys: Sequence[EdgeKey]) -> int:
        """Remove edges by (source, type, target); unknown ones are ignored. Returns how many."""
        checked: dict[str, set[tuple[str, str]]] = {}
        for i, key in enumerate(keys):
            if not isinstance(key, tuple) or len(key) != 3:
                raise InvalidGraphInput(f"keys[{i}]", "an edge key is (source, type, target)")
            source, edge_type, target = key
            pair = (check_id(source, f"keys[{i}][0]"), check_id(target, f"keys[{i}][2]"))
            checked.setdefault(check_name(edge_type, f"keys[{i}][1]"), set()).add(pair)
        namespace = self.resolve(graph)
        return sum(
            self._delete_edges(namespace, edge_type, batch)
            for edge_type, pairs in checked.items()
            for batch in batches(sorted(pairs), self.batch_size)
        )

    def delete_orphans(self, graph: str, label: str = "Entity", via: str = "MENTIONS") -> int:
        """Remove `label` nodes no `via` edge points at any more (entities nobody mentions)."""
        return self._delete_orphans(
            self.resolve(graph), check_name(label, "label"), check_name(via, "via")
        )

    # --- reads ---------------------------------------------------------------------------------

    def subgraph(self, graph: str, node_id: str, depth: int = 1) -> Subgraph:
        """Nodes within `depth` hops of a node (either direction) and every edge among them."""
        namespace = self.resolve(graph)
        ids = self._reachable(namespace, check_id(node_id, "node_id"), check_depth(depth))
        if not ids:
            raise NodeNotFound(namespace, node_id)
        return self._induced(namespace, ids)

    def paths(self, graph: str, source: str, target: str, max_depth: int = 4) -> list[GraphPath]:
        """Every shortest path (either direction, at most `max_depth` edges) between two nodes."""
        namespace = self.resolve(graph)
        for where, node_id in (("source", source), ("target", target)):
            if self._missing_ids(namespace, [check_id(node_id, where)]):
                raise NodeNotFound(namespace, node_id)
        if source == target:
            raise InvalidGraphInput("target", "a path needs two different nodes")
        found = self._shortest_paths(namespace, source, target, check_depth(max_depth, low=1))
        return sorted(found, key=lambda p: ([n.id for n in p.nodes], [e.key for e in p.edges]))

    def missing(self, graph: str, ids: Sequence[str]) -> list[str]:
        """Which of `ids` the namespace holds no node for, sorted."""
        checked = sorted({check_id(x, f"ids[{i}]") for i, x in enumerate(ids)})
        namespace = self.resolve(graph)
        return sorted(self._missing_ids(namespace, checked)) if checked else []

    def between(self, graph: str, ids: Sequence[str]) -> Subgraph:
        """The nodes with these ids the namespace holds, and every edge among them."""
        checked = sorted({check_id(x, f"ids[{i}]") for i, x in enumerate(ids)})
        namespace = self.resolve(graph)
        return self._induced(namespace, checked) if checked else Subgraph([], [])

    def neighbours(
        self, graph: str, ids: Sequence[str], edge_types: Sequence[str], limit: int = 20
    ) -> dict[str, list[str]]:
        """For each of `ids`, the ids of the nodes one `edge_types` edge away (either direction),
        sorted, at most `limit` of them: a bounded expansion, so a hub costs no more than a leaf.
        Nodes without such neighbours (or absent) are left out."""
        checked = sorted({check_id(x, f"ids[{i}]") for i, x in enumerate(ids)})
        types = sorted({check_name(t, f"edge_types[{i}]") for i, t in enumerate(edge_types)})
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= MAX_BATCH_SIZE
        ):
            raise InvalidGraphInput("limit", f"{limit!r} is not an integer in 1..{MAX_BATCH_SIZE}")
        namespace = self.resolve(graph)
        if not checked or not types:
            return {}
        found: dict[str, list[str]] = {}
        for batch in batches(checked, self.batch_size):
            found.update(self._neighbours(namespace, batch, types, limit))
        return {k: v for k, v in sorted(found.items()) if v}

    def nodes(self, graph: str, ids: Sequence[str]) -> list[GraphNode]:
        """The nodes with these ids the namespace holds (no edges: a lookup by id each)."""
        checked = sorted({check_id(x, f"ids[{i}]") for i, x in enumerate(ids)})
        namespace = self.resolve(graph)
        return self._induced(namespace, checked, with_edges=False).nodes if checked else []

    def node(self, graph: str, node_id: str) -> GraphNode | None:
        namespace = self.resolve(graph)
        found = self._induced(namespace, [check_id(node_id, "node_id")], with_edges=False).nodes
        return found[0] if found else None

    @abstractmethod
    def counts(self, graph: str) -> GraphCounts:
        """Nodes per label and edges per type (the meta node is not counted)."""

    @abstractmethod
    def export(self, graph: str) -> Subgraph:
        """Every node and edge (for verify), sorted."""

    @abstractmethod
    def get_position(self, graph: str) -> int | None:
        """The log position the namespace reflects; None before any was set."""

    @abstractmethod
    def set_position(self, graph: str, position: int) -> None:
        """Record the position; call only after the merges it covers succeeded."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release connections or the embedded database files."""

    # --- what implementations provide ----------------------------------------------------------

    def resolve(self, graph: str) -> str:
        """The namespace `graph` names (directly or through an alias); it must exist."""
        check_name(graph, "graph")
        # Namespace and alias names never overlap (both setters refuse it), so a known namespace
        # needs no alias lookup: writes to a concrete namespace cost no extra round trip.
        if self._exists(graph):
            return graph
        target = self.alias_target(graph)
        if target is None or not self._exists(target):
            raise NamespaceNotFound(graph)
        return target

    @abstractmethod
    def _exists(self, namespace: str) -> bool: ...

    @abstractmethod
    def _label_conflicts(self, namespace: str, nodes: Sequence[GraphNode]) -> list[str]:
        """Ids of `nodes` already stored under another label."""

    @abstractmethod
    def _missing_ids(self, namespace: str, ids: Sequence[str]) -> list[str]: ...

    @abstractmethod
    def _write_nodes(self, namespace: str, label: str, nodes: Sequence[GraphNode]) -> None: ...

    @abstractmethod
    def _write_edges(self, namespace: str, edge_type: str, edges: Sequence[GraphEdge]) -> None: ...

    @abstractmethod
    def _delete_ids(self, namespace: str, ids: Sequence[str]) -> int: ...

    @abstractmethod
    def _delete_edges(
        self, namespace: str, edge_type: str, pairs: Sequence[tuple[str, str]]
    ) -> int: ...

    @abstractmethod
    def _delete_orphans(self, namespace: str, label: str, via: str) -> int: ...

    @abstractmethod
    def _reachable(self, namespace: str, node_id: str, depth: int) -> list[str]:
        """Ids within `depth` hops, the node itself included; empty when the node is absent."""

    @abstractmethod
    def _neighbours(
        self, namespace: str, ids: Sequence[str], types: Sequence[str], limit: int
    ) -> dict[str, list[str]]:
        """Per id, its neighbours' ids over `types` edges, sorted, the first `limit`."""

    @abstractmethod
    def _induced(self, namespace: str, ids: Sequence[str], with_edges: bool = True) -> Subgraph:
        """The nodes with these ids and (unless told not to) the edges among them."""

    @abstractmethod
    def _shortest_paths(
        self, namespace: str, source: str, target: str, max_depth: int
    ) -> list[GraphPath]: ...


def sort_subgraph(nodes: Sequence[GraphNode], edges: Sequence[GraphEdge]) -> Subgraph:
    return Subgraph(sorted(nodes, key=lambda n: n.id), sorted(edges, key=lambda e: e.key))


def split_stored(props: Mapping[str, object]) -> tuple[str, int, dict[str, Scalar]]:
    """(event_id, position, the caller's properties) from what a store returned."""
    rest: dict[str, Scalar] = {}
    for key, value in props.items():
        if key not in RESERVED_KEYS and isinstance(value, str | int | float | bool):
            rest[key] = value
    position = props.get("position")
    return str(props.get("event_id")), int(position) if isinstance(position, int) else -1, rest
