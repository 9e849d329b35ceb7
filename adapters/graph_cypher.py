"""The Cypher FalkorDB and Neo4j agree on, behind one base class for both stores.

Each node carries two labels: a base label that scopes the namespace (`JanusNode` in a FalkorDB
graph of its own; `JanusNode_<namespace>` in Neo4j, where one database holds every namespace) and
its own label. Ids are unique per base label and indexed, so `MERGE` finds a node by id in one
lookup. Labels and edge types cannot be query parameters; they are spliced in only after
`adapters.graph_model.check_name` accepted them. Everything else travels as parameters, batched
with `UNWIND`. The dialects differ in running a query, creating indexes, and in how namespaces and
aliases are kept: that lives in adapters/graph_falkordb.py and adapters/graph_neo4j.py.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.graph import GraphStore
from adapters.graph_model import (
    GraphCounts,
    GraphEdge,
    GraphNode,
    GraphPath,
    Subgraph,
    check_position,
    sort_subgraph,
    split_stored,
)

__all__ = ["BASE_PREFIX", "META_LABEL", "CypherGraphStore"]

BASE_PREFIX = "JanusNode"
META_LABEL = "JanusMeta"
Row = list[Any]


def node_rows(nodes: Sequence[GraphNode]) -> list[dict[str, Any]]:
    return [{"id": n.id, "props": n.stored()} for n in nodes]


def edge_rows(edges: Sequence[GraphEdge]) -> list[dict[str, Any]]:
    return [{"s": e.source, "t": e.target, "props": e.stored()} for e in edges]


class CypherGraphStore(GraphStore):
    @abstractmethod
    def _base(self, namespace: str) -> str:
        """The label every view node of the namespace carries."""

    @abstractmethod
    def _run(
        self, namespace: str, query: str, params: Mapping[str, Any] | None = None
    ) -> list[Row]:
        """Run one query in its own transaction; rows as lists of plain values."""

    # --- writes --------------------------------------------------------------------------------

    def _label_conflicts(self, namespace: str, nodes: Sequence[GraphNode]) -> list[str]:
        base = self._base(namespace)
        rows = [{"id": n.id, "label": n.label} for n in nodes]
        query = (
            f"UNWIND $rows AS row MATCH (n:{base} {{id: row.id}}) "
            "WHERE NOT row.label IN labels(n) RETURN n.id"
        )
        return [r[0] for r in self._run(namespace, query, {"rows": rows})]

    def _missing_ids(self, namespace: str, ids: Sequence[str]) -> list[str]:
        query = (
            f"UNWIND $ids AS x OPTIONAL MATCH (n:{self._base(namespace)} {{id: x}}) "
            "WITH x, n WHERE n IS NULL RETURN x"
        )
        return [r[0] for r in self._run(namespace, query, {"ids": list(ids)})]

    def _write_nodes(self, namespace: str, label: str, nodes: Sequence[GraphNode]) -> None:
        # `SET n = map` replaces every property, so a property an update dropped does not linger.
        query = (
            f"UNWIND $rows AS row MERGE (n:{self._base(namespace)} {{id: row.id}}) "
            f"SET n = row.props SET n:{label}"
        )
        self._run(namespace, query, {"rows": node_rows(nodes)})

    def _write_edges(self, namespace: str, edge_type: str, edges: Sequence[GraphEdge]) -> None:
        base = self._base(namespace)
        query = (
            f"UNWIND $rows AS row MATCH (a:{base} {{id: row.s}}), (b:{base} {{id: row.t}}) "
            f"MERGE (a)-[r:{edge_type}]->(b) SET r = row.props"
        )
        self._run(namespace, query, {"rows": edge_rows(edges)})

    def _delete_ids(self, namespace: str, ids: Sequence[str]) -> int:
        query = (
            f"MATCH (n:{self._base(namespace)}) WHERE n.id IN $ids "
            "WITH collect(n) AS gone UNWIND gone AS n DETACH DELETE n RETURN count(*)"
        )
        return self._count(namespace, query, {"ids": list(ids)})

    def _delete_edges(
        self, namespace: str, edge_type: str, pairs: Sequence[tuple[str, str]]
    ) -> int:
        base = self._base(namespace)
        query = (
            f"UNWIND $rows AS row MATCH (:{base} {{id: row.s}})-[r:{edge_type}]->"
            f"(:{base} {{id: row.t}}) WITH collect(r) AS gone UNWIND gone AS r DELETE r "
            "RETURN count(*)"
        )
        return self._count(namespace, query, {"rows": [{"s": s, "t": t} for s, t in pairs]})

    def _delete_orphans(self, namespace: str, label: str, via: str) -> int:
        # Counted, not `WHERE NOT ()-[:via]->(n)`: FalkorDB 4 crashes (segfault in
        # AlgebraicExpression_Dest) on that pattern predicate after a two-label MATCH.
        query = (
            f"MATCH (n:{self._base(namespace)}:{label}) OPTIONAL MATCH ()-[r:{via}]->(n) "
            "WITH n, count(r) AS refs WHERE refs = 0 "
            "WITH collect(n) AS gone UNWIND gone AS n DETACH DELETE n RETURN count(*)"
        )
        return self._count(namespace, query)

    def _count(self, namespace: str, query: str, params: Mapping[str, Any] | None = None) -> int:
        rows = self._run(namespace, query, params)
        return int(rows[0][0]) if rows else 0

    # --- reads ---------------------------------------------------------------------------------

    def _reachable(self, namespace: str, node_id: str, depth: int) -> list[str]:
        base = self._base(namespace)
        query = f"MATCH (a:{base} {{id: $id}})-[*0..{depth}]-(b:{base}) RETURN DISTINCT b.id"
        return [r[0] for r in self._run(namespace, query, {"id": node_id})]

    def _neighbours(
        self, namespace: str, ids: Sequence[str], types: Sequence[str], limit: int
    ) -> dict[str, list[str]]:
        base = self._base(namespace)
        query = (
            f"UNWIND $ids AS x MATCH (:{base} {{id: x}})-[r]-(b:{base}) WHERE type(r) IN $types "
            "WITH DISTINCT x, b.id AS n ORDER BY x, n "
            "WITH x, collect(n) AS found RETURN x, found[..$limit]"
        )
        rows = self._run(namespace, query, {"ids": list(ids), "types": list(types), "limit": limit})
        return {str(x): [str(n) for n in found] for x, found in rows}

    def _induced(self, namespace: str, ids: Sequence[str], with_edges: bool = True) -> Subgraph:
        base = self._base(namespace)
        nodes = self._run(
            namespace,
            f"MATCH (n:{base}) WHERE n.id IN $ids RETURN labels(n), properties(n)",
            {"ids": list(ids)},
        )
        if not with_edges:
            return sort_subgraph([self._node(n) for n in nodes], [])
        edges = self._run(
            namespace,
            f"MATCH (a:{base})-[r]->(b:{base}) WHERE a.id IN $ids AND b.id IN $ids "
            "RETURN a.id, type(r), b.id, properties(r)",
            {"ids": list(ids)},
        )
        return sort_subgraph([self._node(n) for n in nodes], [self._edge(e) for e in edges])

    def _shortest_paths(
        self, namespace: str, source: str, target: str, max_depth: int
    ) -> list[GraphPath]:
        base = self._base(namespace)
        query = (
            # FalkorDB needs both ends bound by an earlier clause (the WITH) before the call.
            f"MATCH (a:{base} {{id: $s}}), (b:{base} {{id: $t}}) WITH a, b "
            f"MATCH p = allShortestPaths((a)-[*..{max_depth}]-(b)) "
            "RETURN [x IN nodes(p) | [labels(x), properties(x)]], "
            "[r IN relationships(p) | [startNode(r).id, type(r), endNode(r).id, properties(r)]]"
        )
        rows = self._run(namespace, query, {"s": source, "t": target})
        return [
            GraphPath([self._node(n) for n in nodes], [self._edge(e) for e in edges])
            for nodes, edges in rows
        ]

    def counts(self, graph: str) -> GraphCounts:
        namespace = self.resolve(graph)
        base = self._base(namespace)
        labels: dict[str, int] = {}
        for node_labels, n in self._run(namespace, f"MATCH (n:{base}) RETURN labels(n), count(*)"):
            label = self._own_label(node_labels)
            labels[label] = labels.get(label, 0) + int(n)
        types = self._run(namespace, f"MATCH (:{base})-[r]->(:{base}) RETURN type(r), count(*)")
        return GraphCounts(labels, {t: int(n) for t, n in types})

    def export(self, graph: str) -> Subgraph:
        namespace = self.resolve(graph)
        base = self._base(namespace)
        nodes = self._run(namespace, f"MATCH (n:{base}) RETURN labels(n), properties(n)")
        edges = self._run(
            namespace,
            f"MATCH (a:{base})-[r]->(b:{base}) RETURN a.id, type(r), b.id, properties(r)",
        )
        return sort_subgraph([self._node(n) for n in nodes], [self._edge(e) for e in edges])

    # --- position (a meta node outside the view's base label) ----------------------------------

    def get_position(self, graph: str) -> int | None:
        namespace = self.resolve(graph)
        rows = self._run(
            namespace,
            f"MATCH (m:{META_LABEL} {{namespace: $ns}}) RETURN m.position",
            {"ns": namespace},
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def set_position(self, graph: str, position: int) -> None:
        namespace = self.resolve(graph)
        self._run(
            namespace,
            f"MERGE (m:{META_LABEL} {{namespace: $ns}}) SET m.position = $p",
            {"ns": namespace, "p": check_position(position, "position")},
        )

    # --- decoding ------------------------------------------------------------------------------

    def _own_label(self, labels: Sequence[str]) -> str:
        own = [x for x in labels if not x.startswith(BASE_PREFIX)]
        return own[0] if own else ""

    def _node(self, row: Sequence[Any]) -> GraphNode:
        labels, props = row
        event_id, position, rest = split_stored(props)
        return GraphNode(str(props["id"]), self._own_label(labels), event_id, position, rest)

    def _edge(self, row: Sequence[Any]) -> GraphEdge:
        source, edge_type, target, props = row
        event_id, position, rest = split_stored(props)
        return GraphEdge(str(source), str(edge_type), str(target), event_id, position, rest)
