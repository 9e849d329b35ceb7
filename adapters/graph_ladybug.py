"""`LadybugGraphStore`: the embedded graph view, in-process, needing no server configuration.

Why ladybug: the issue asks for an embedded twin that needs no server. Ladybug (the maintained fork
of the archived kuzu) is an in-process Cypher engine with MERGE, UNWIND over parameter lists, DETACH
DELETE, variable-length and ALL SHORTEST paths, and durable files (WAL + checkpoint), so the twin
runs the same kind of queries on real storage. FalkorDB needs a redis-server process; an in-memory
fake would prove nothing about durability.

Ladybug needs a declared schema, and the view's labels and properties grow with the domain, so the
schema is generic: one node table (`JanusNode`: id key, label, properties as JSON, event id,
position), one edge table (`JanusEdge`: type, properties, event id, position) and one meta table
for the position. Labels and edge types are column values here, so these queries are this dialect's
own; the port's behaviour is the same (tests/integration/test_graph_contract.py).

Layout under `root`: one folder per namespace (`<root>/<namespace>/graph.lbug`), and one file per
alias in `<root>/.aliases/`, replaced atomically (write, fsync, rename) to switch readers. A
dropped namespace is first renamed away, so a crash mid-delete never leaves a half-deleted live one.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ladybug

from adapters.graph import GraphStore
from adapters.graph_model import (
    GraphCounts,
    GraphEdge,
    GraphNode,
    GraphPath,
    GraphStoreError,
    InvalidGraphInput,
    NamespaceNotFound,
    Subgraph,
    check_name,
    check_position,
    sort_subgraph,
)

__all__ = ["LadybugGraphStore"]

DB_FILE = "graph.lbug"
ALIASES = ".aliases"
DROPPING = ".dropping-"
DEFAULT_BUFFER_POOL = 256 * 1024 * 1024
PER_NODE_EXPANSION = 32
SCHEMA = (
    "CREATE NODE TABLE IF NOT EXISTS JanusNode("
    "id STRING PRIMARY KEY, label STRING, props STRING, event_id STRING, position INT64)",
    "CREATE REL TABLE IF NOT EXISTS JanusEdge("
    "FROM JanusNode TO JanusNode, type STRING, props STRING, event_id STRING, position INT64)",
    "CREATE NODE TABLE IF NOT EXISTS JanusMeta(key STRING PRIMARY KEY, position INT64)",
)
NODE_COLUMNS = "n.id, n.label, n.props, n.event_id, n.position"
EDGE_COLUMNS = "a.id, r.type, b.id, r.props, r.event_id, r.position"
Row = list[Any]


def _dump(props: Mapping[str, Any]) -> str:
    return json.dumps(dict(props), sort_keys=True, separators=(",", ":"))


def _node(row: Sequence[Any]) -> GraphNode:
    node_id, label, props, event_id, position = row
    return GraphNode(node_id, label, event_id, int(position), json.loads(props))


def _edge(row: Sequence[Any]) -> GraphEdge:
    source, edge_type, target, props, event_id, position = row
    return GraphEdge(source, edge_type, target, event_id, int(position), json.loads(props))


class LadybugGraphStore(GraphStore):
    def __init__(
        self,
        root: str | Path,
        *,
        batch_size: int | None = None,
        buffer_pool_size: int = DEFAULT_BUFFER_POOL,
        threads: int = 2,
    ) -> None:
        super().__init__(batch_size)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.buffer_pool_size = buffer_pool_size
        self.threads = threads
        self._open: dict[str, tuple[ladybug.Database, ladybug.Connection]] = {}
        # One connection per namespace, used by one thread at a time.
        self._lock = threading.RLock()
        # A drop renames the folder away first; a crash during its delete leaves this behind.
        for leftover in self.root.glob(f"{DROPPING}*"):
            shutil.rmtree(leftover, ignore_errors=True)

    # --- files ---------------------------------------------------------------------------------

    def _folder(self, namespace: str) -> Path:
        return self.root / namespace

    def _alias_file(self, alias: str) -> Path:
        return self.root / ALIASES / alias

    def _connection(self, namespace: str) -> ladybug.Connection:
        if namespace not in self._open:
            path = self._folder(namespace) / DB_FILE
            try:
                db = ladybug.Database(
                    str(path),
                    buffer_pool_size=self.buffer_pool_size,
                    max_num_threads=self.threads,
                )
                conn = ladybug.Connection(db)
                for ddl in SCHEMA:
                    conn.execute(ddl)
            except RuntimeError as exc:
                raise GraphStoreError(f"ladybug database {path}: {exc}") from exc
            self._open[namespace] = (db, conn)
        return self._open[namespace][1]

    def _run(
        self, namespace: str, query: str, params: Mapping[str, Any] | None = None
    ) -> list[Row]:
        with self._lock:
            conn = self._connection(namespace)
            try:
                result = conn.execute(query, dict(params or {}))
            except RuntimeError as exc:
                raise GraphStoreError(f"ladybug namespace {namespace!r}: {exc}") from exc
            results = result if isinstance(result, list) else [result]
            rows: list[Row] = []
            for part in results:
                rows.extend(list(r) for r in part.get_all())
                part.close()
            return rows

    def _close_namespace(self, namespace: str) -> None:
        opened = self._open.pop(namespace, None)
        if opened is not None:
            db, conn = opened
            conn.close()
            db.close()

    # --- namespaces ----------------------------------------------------------------------------

    def _exists(self, namespace: str) -> bool:
        return self._folder(namespace).is_dir()

    def ensure_namespace(self, namespace: str) -> bool:
        check_name(namespace, "namespace")
        if self.alias_target(namespace) is not None:
            raise InvalidGraphInput("namespace", f"{namespace!r} is an alias")
        with self._lock:
            created = not self._exists(namespace)
            self._folder(namespace).mkdir(exist_ok=True)
            # Schema and meta row are idempotent, so a crash after mkdir is finished here.
            self._run(namespace, "MERGE (m:JanusMeta {key: 'position'})")
            return created

    def namespaces(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name[0].isalpha())

    def drop_namespace(self, namespace: str) -> bool:
        check_name(namespace, "namespace")
        with self._lock:
            for alias in self._aliases_of(namespace):
                self._alias_file(alias).unlink(missing_ok=True)
            self._close_namespace(namespace)
            if not self._exists(namespace):
                return False
            doomed = self.root / f"{DROPPING}{namespace}-{uuid.uuid4().hex[:8]}"
            self._folder(namespace).rename(doomed)
            shutil.rmtree(doomed)
            return True

    def _aliases_of(self, namespace: str) -> list[str]:
        folder = self.root / ALIASES
        if not folder.is_dir():
            return []
        return [
            p.name
            for p in folder.iterdir()
            if not p.name.startswith(".") and p.read_text() == namespace
        ]

    def set_alias(self, alias: str, namespace: str) -> None:
        check_name(alias, "alias")
        check_name(namespace, "namespace")
        if self._exists(alias):
            raise InvalidGraphInput("alias", f"{alias!r} is a namespace")
        if not self._exists(namespace):
            raise NamespaceNotFound(namespace)
        folder = self.root / ALIASES
        folder.mkdir(exist_ok=True)
        tmp = folder / f".{alias}.{uuid.uuid4().hex[:8]}.tmp"
        with tmp.open("w") as f:
            f.write(namespace)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._alias_file(alias))
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def alias_target(self, alias: str) -> str | None:
        check_name(alias, "alias")
        try:
            return self._alias_file(alias).read_text()
        except FileNotFoundError:
            return None

    def close(self) -> None:
        with self._lock:
            for namespace in list(self._open):
                self._close_namespace(namespace)

    # --- writes --------------------------------------------------------------------------------

    def _label_conflicts(self, namespace: str, nodes: Sequence[GraphNode]) -> list[str]:
        rows = [{"id": n.id, "label": n.label} for n in nodes]
        query = (
            "UNWIND $rows AS row MATCH (n:JanusNode {id: row.id}) "
            "WHERE n.label <> row.label RETURN n.id"
        )
        return [r[0] for r in self._run(namespace, query, {"rows": rows})]

    def _missing_ids(self, namespace: str, ids: Sequence[str]) -> list[str]:
        query = (
            "UNWIND $ids AS x OPTIONAL MATCH (n:JanusNode {id: x}) "
            "WITH x, n WHERE n IS NULL RETURN x"
        )
        return [r[0] for r in self._run(namespace, query, {"ids": list(ids)})]

    def _write_nodes(self, namespace: str, label: str, nodes: Sequence[GraphNode]) -> None:
        rows = [
            {"id": n.id, "props": _dump(n.properties), "e": n.event_id, "p": n.position}
            for n in nodes
        ]
        query = (
            "UNWIND $rows AS row MERGE (n:JanusNode {id: row.id}) "
            "SET n.label = $label, n.props = row.props, n.event_id = row.e, n.position = row.p"
        )
        self._run(namespace, query, {"rows": rows, "label": label})

    def _write_edges(self, namespace: str, edge_type: str, edges: Sequence[GraphEdge]) -> None:
        rows = [
            {
                "s": e.source,
                "t": e.target,
                "props": _dump(e.properties),
                "e": e.event_id,
                "p": e.position,
            }
            for e in edges
        ]
        query = (
            "UNWIND $rows AS row "
            "MATCH (a:JanusNode {id: row.s}), (b:JanusNode {id: row.t}) "
            "MERGE (a)-[r:JanusEdge {type: $type}]->(b) "
            "SET r.props = row.props, r.event_id = row.e, r.position = row.p"
        )
        self._run(namespace, query, {"rows": rows, "type": edge_type})

    def _delete_ids(self, namespace: str, ids: Sequence[str]) -> int:
        query = "MATCH (n:JanusNode) WHERE n.id IN $ids DETACH DELETE n RETURN count(*)"
        rows = self._run(namespace, query, {"ids": list(ids)})
        return int(rows[0][0]) if rows else 0

    def _delete_edges(
        self, namespace: str, edge_type: str, pairs: Sequence[tuple[str, str]]
    ) -> int:
        query = (
            "UNWIND $rows AS row "
            "MATCH (:JanusNode {id: row.s})-[r:JanusEdge]->(:JanusNode {id: row.t}) "
            "WHERE r.type = $type DELETE r RETURN count(*)"
        )
        rows = [{"s": s, "t": t} for s, t in pairs]
        found = self._run(namespace, query, {"rows": rows, "type": edge_type})
        return sum(int(r[0]) for r in found)

    def _delete_orphans(self, namespace: str, label: str, via: str) -> int:
        query = (
            "MATCH (n:JanusNode) WHERE n.label = $label AND NOT EXISTS "
            "{ MATCH (:JanusNode)-[r:JanusEdge]->(n) WHERE r.type = $via } "
            "DETACH DELETE n RETURN count(*)"
        )
        rows = self._run(namespace, query, {"label": label, "via": via})
        return int(rows[0][0]) if rows else 0

    # --- reads ---------------------------------------------------------------------------------

    def _reachable(self, namespace: str, node_id: str, depth: int) -> list[str]:
        query = (
            f"MATCH (a:JanusNode {{id: $id}})-[:JanusEdge*0..{depth}]-(b:JanusNode) "
            "RETURN DISTINCT b.id"
        )
        return [r[0] for r in self._run(namespace, query, {"id": node_id})]

    def _neighbours(
        self, namespace: str, ids: Sequence[str], types: Sequence[str], limit: int
    ) -> dict[str, list[str]]:
        # Ladybug's WITH takes ORDER BY only with LIMIT: the list is sorted after collecting.
        query = (
            "UNWIND $ids AS x MATCH (:JanusNode {id: x})-[r:JanusEdge]-(b:JanusNode) "
            "WHERE r.type IN $types WITH x, collect(DISTINCT b.id) AS found "
            "RETURN x, list_slice(list_sort(found), 1, $limit)"
        )
        rows = self._run(namespace, query, {"ids": list(ids), "types": list(types), "limit": limit})
        return {str(x): [str(n) for n in found] for x, found in rows}

    def _induced(self, namespace: str, ids: Sequence[str], with_edges: bool = True) -> Subgraph:
        # By primary key, one lookup per id: `WHERE n.id IN $ids` scans every node.
        params = {"ids": list(ids)}
        nodes = self._run(
            namespace,
            f"UNWIND $ids AS x MATCH (n:JanusNode {{id: x}}) RETURN {NODE_COLUMNS}",
            params,
        )
        if not with_edges:
            return sort_subgraph([_node(n) for n in nodes], [])
        if len(ids) > PER_NODE_EXPANSION:
            # Many ids: one pass over the edges beats a lookup and expansion per id.
            edge_rows = self._run(
                namespace,
                "MATCH (a:JanusNode)-[r:JanusEdge]->(b:JanusNode) WHERE list_contains($ids, a.id) "
                f"AND list_contains($ids, b.id) RETURN {EDGE_COLUMNS}",
                params,
            )
        else:
            # Few ids: each one's own edges, found from its key (ladybug plans an UNWIND-fed
            # expansion as a join over every edge, so the ids are looked up one by one).
            query = (
                "MATCH (a:JanusNode {id: $x})-[r:JanusEdge]->(b:JanusNode) "
                f"WHERE list_contains($ids, b.id) RETURN {EDGE_COLUMNS}"
            )
            edge_rows = [
                row for x in ids for row in self._run(namespace, query, {"x": x, "ids": list(ids)})
            ]
        return sort_subgraph([_node(n) for n in nodes], [_edge(e) for e in edge_rows])

    def _shortest_paths(
        self, namespace: str, source: str, target: str, max_depth: int
    ) -> list[GraphPath]:
        query = (
            f"MATCH p = (a:JanusNode {{id: $s}})-[:JanusEdge* ALL SHORTEST 1..{max_depth}]-"
            "(b:JanusNode {id: $t}) RETURN nodes(p), rels(p)"
        )
        return [
            self._path(nodes, rels)
            for nodes, rels in self._run(namespace, query, {"s": source, "t": target})
        ]

    @staticmethod
    def _path(nodes: list[dict[str, Any]], rels: list[dict[str, Any]]) -> GraphPath:
        # Relationships name their ends by internal id; map those back to the view's ids.
        def internal(ref: Mapping[str, Any]) -> tuple[Any, Any]:
            return (ref["table"], ref["offset"])

        ids = {internal(n["_ID"]): n["id"] for n in nodes}
        path_nodes = [
            _node([n["id"], n["label"], n["props"], n["event_id"], n["position"]]) for n in nodes
        ]
        path_edges = [
            _edge(
                [
                    ids[internal(r["_SRC"])],
                    r["type"],
                    ids[internal(r["_DST"])],
                    r["props"],
                    r["event_id"],
                    r["position"],
                ]
            )
            for r in rels
        ]
        return GraphPath(path_nodes, path_edges)

    def counts(self, graph: str) -> GraphCounts:
        namespace = self.resolve(graph)
        labels = self._run(namespace, "MATCH (n:JanusNode) RETURN n.label, count(*)")
        types = self._run(namespace, "MATCH ()-[r:JanusEdge]->() RETURN r.type, count(*)")
        return GraphCounts({k: int(v) for k, v in labels}, {k: int(v) for k, v in types})

    def export(self, graph: str) -> Subgraph:
        namespace = self.resolve(graph)
        nodes = self._run(namespace, f"MATCH (n:JanusNode) RETURN {NODE_COLUMNS}")
        edges = self._run(
            namespace, f"MATCH (a:JanusNode)-[r:JanusEdge]->(b:JanusNode) RETURN {EDGE_COLUMNS}"
        )
        return sort_subgraph([_node(n) for n in nodes], [_edge(e) for e in edges])

    # --- position ------------------------------------------------------------------------------

    def get_position(self, graph: str) -> int | None:
        namespace = self.resolve(graph)
        rows = self._run(namespace, "MATCH (m:JanusMeta {key: 'position'}) RETURN m.position")
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def set_position(self, graph: str, position: int) -> None:
        namespace = self.resolve(graph)
        self._run(
            namespace,
            "MERGE (m:JanusMeta {key: 'position'}) SET m.position = $p",
            {"p": check_position(position, "position")},
        )
