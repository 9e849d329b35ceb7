"""The graph view's values, errors and input checks, shared by the port and every store.

Split from adapters/graph.py (the port) so that module stays a readable contract and the stores
(adapters/graph_ladybug.py, adapters/graph_cypher.py and its dialects) import their building
blocks from one place. Callers outside adapters/ keep importing the public names from
`adapters.graph`, which re-exports them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar
from uuid import UUID

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
