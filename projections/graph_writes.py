"""The graph view's buffered writes and its drift report (see projections/graph.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from adapters.graph import GraphEdge, GraphNode, GraphStore, Subgraph

__all__ = ["GraphDrift", "GraphWrites"]


@dataclasses.dataclass(frozen=True)
class GraphDrift:
    """Node ids and edge keys the log implies but the view lacks, the reverse, and those whose
    label, properties, event id or position differ."""

    missing_nodes: list[str]
    unexpected_nodes: list[str]
    changed_nodes: list[str]
    missing_edges: list[tuple[str, str, str]]
    unexpected_edges: list[tuple[str, str, str]]
    changed_edges: list[tuple[str, str, str]]

    @property
    def clean(self) -> bool:
        return not any(dataclasses.astuple(self))

    @classmethod
    def between(cls, expected: Subgraph, actual: Subgraph) -> GraphDrift:
        want_n = {n.id: n for n in expected.nodes}
        have_n = {n.id: n for n in actual.nodes}
        want_e = {e.key: e for e in expected.edges}
        have_e = {e.key: e for e in actual.edges}
        return cls(
            sorted(want_n.keys() - have_n.keys()),
            sorted(have_n.keys() - want_n.keys()),
            sorted(i for i in want_n.keys() & have_n.keys() if want_n[i] != have_n[i]),
            sorted(want_e.keys() - have_e.keys()),
            sorted(have_e.keys() - want_e.keys()),
            sorted(k for k in want_e.keys() & have_e.keys() if want_e[k] != have_e[k]),
        )


@dataclasses.dataclass(frozen=True)
class _OptionalEdge:
    """An edge to the first candidate node that exists, or none: each candidate with whether it
    was already buffered when its event ran (the others are looked up in the store at flush,
    which no write has touched since that event, so the outcome is the same as looking then)."""

    candidates: tuple[tuple[str, bool], ...]
    edge: Callable[[str], GraphEdge]


class GraphWrites:
    """Nodes and edges waiting to be merged, last write per id (or edge key) winning."""

    def __init__(self) -> None:
        self.nodes: dict[str, GraphNode] = {}
        self.edges: dict[tuple[str, str, str], GraphEdge] = {}
        self.optional: list[_OptionalEdge] = []

    def node(self, node: GraphNode) -> None:
        self.nodes[node.id] = node

    def edge(self, edge: GraphEdge) -> None:
        self.edges[edge.key] = edge

    def edge_to_first(self, candidates: Sequence[str], edge: Callable[[str], GraphEdge]) -> None:
        """Link to the first of `candidates` the graph holds by now; to none if it holds none."""
        known = tuple((c, c in self.nodes) for c in candidates)
        self.optional.append(_OptionalEdge(known, edge))

    def _resolve(self, store: GraphStore, namespace: str) -> None:
        # One look-up for the whole batch instead of one per event; before any merge, so the
        # store is as every buffered event saw it.
        unknown = {c for o in self.optional for c, buffered in o.candidates if not buffered}
        absent = set(store.missing(namespace, sorted(unknown))) if unknown else set()
        for optional in self.optional:
            found = [c for c, buffered in optional.candidates if buffered or c not in absent]
            if found:
                self.edge(optional.edge(found[0]))

    def flush(self, store: GraphStore, namespace: str) -> None:
        if self.optional:
            self._resolve(store, namespace)
        if self.nodes:
            store.merge_nodes(namespace, list(self.nodes.values()))
        if self.edges:
            store.merge_edges(namespace, list(self.edges.values()))
        self.nodes.clear()
        self.edges.clear()
        self.optional.clear()
