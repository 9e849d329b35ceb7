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
written, so bad input changes nothing. The values, errors and checks live in adapters/graph_model.py
and are re-exported here: callers import the graph view's names from this module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from adapters.graph_model import (
    DEFAULT_BATCH_SIZE,
    MAX_BATCH_SIZE,
    MAX_DEPTH,
    EdgeKey,
    GraphCounts,
    GraphEdge,
    GraphNode,
    GraphPath,
    GraphStoreError,
    InvalidGraphInput,
    LabelConflict,
    MissingEndpoints,
    NamespaceNotFound,
    NodeNotFound,
    Scalar,
    Subgraph,
    batches,
    by_label,
    by_type,
    check_batch_size,
    check_depth,
    check_edges,
    check_id,
    check_name,
    check_nodes,
    check_position,
)

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
