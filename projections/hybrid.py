"""Hybrid retrieval: vector top-k, expanded through the graph, fused by reciprocal rank.

    hits = hybrid_search(index, collection, embedder, graph, "who fitted the front door?", k=5)

1. Seeds: the `seeds` chunks nearest the query in the vector view (``VectorIndex.search``).
2. Expansion through the graph view, one bounded hop at a time (``GraphStore.neighbours``, at
   most `fanout` neighbours per node, so a hub entity costs no more than a rare one):
   a seed's neighbouring chunks (NEXT), the entities it mentions and the other chunks mentioning
   them (chunks sharing entities), and the decisions that used it (USED_CONTEXT).
3. Two rankings: the vector ranking of the seeds, and a graph ranking of everything reached,
   scored by its evidence paths, each weighted by its seed's vector rank (1 / (1 + rank)) and
   by the path's kind (a seed counts as its own evidence, twice a neighbour or a decision, and
   those twice a chunk sharing an entity).
4. Reciprocal rank fusion (``score = sum 1 / (rrf_k + rank)`` over the rankings a hit is in;
   rrf_k = 60 as in Cormack et al.), best first, each hit with its paths of evidence.

Chunk ids are the same in both views (uuid5(document, index, embedding model digest)), so the
graph projection must be built with the vector view's embedder digest for seeds to be found in
the graph; a seed the graph lacks is still returned, with its vector evidence only. Both views are
read as they are: nothing here calls a model besides the embedder for the query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.embeddings import Embedder
from adapters.graph import GraphEdge, GraphNode, GraphStore, NamespaceNotFound
from adapters.vectors import Filter, SearchHit, VectorIndex
from projections.graph import DEFAULT_NAMESPACE
from projections.search import SearchFilters, VectorSearch

__all__ = ["EvidenceStep", "HybridHit", "HybridSearch", "hits_json", "hybrid_search"]

RRF_K = 60
MAX_PATHS = 3
# How much one path of each kind adds to a reached node's graph score (times its seed's weight).
# A seed is its own evidence, and counts most: what it leads to ranks below it.
PATH_WEIGHT = {"VECTOR": 2.0, "NEXT": 1.0, "USED_CONTEXT": 1.0, "MENTIONS": 0.5}
EXPAND = ("NEXT", "MENTIONS", "USED_CONTEXT")


@dataclass(frozen=True)
class EvidenceStep:
    """A node on a path of evidence, and the edge type that led to it (None for the first)."""

    id: str
    label: str
    via: str | None = None
    name: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "via": self.via, "name": self.name}


@dataclass
class HybridHit:
    id: str
    kind: str  # "chunk" or "decision"
    score: float
    text: str
    document_id: str | None
    vector_rank: int | None = None
    vector_score: float | None = None
    graph_rank: int | None = None
    paths: list[list[EvidenceStep]] = field(default_factory=list)
    source: str | None = None  # the document's title or source, where a seed of it told

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "score": round(self.score, 6),
            "text": self.text,
            "document_id": self.document_id,
            "vector_rank": self.vector_rank,
            "vector_score": self.vector_score,
            "graph_rank": self.graph_rank,
            "source": self.source,
            "paths": [[s.as_json() for s in path] for path in self.paths],
            "via": self.via,
        }

    @property
    def via(self) -> str:
        """How the hit was found, in a few words: "vector", "next", an entity's name, ..."""
        found = []
        for path in self.paths:
            last = path[-1] if len(path) < 3 else path[1]  # through an entity: name it
            word = last.name if last.label == "Entity" and last.name else (last.via or "")
            found.append(word.lower() if last.label != "Entity" else word)
        return ", ".join(dict.fromkeys(w for w in found if w))


def hybrid_search(
    index: VectorIndex,
    collection: str,
    embedder: Embedder,
    graph: GraphStore,
    query: str,
    *,
    k: int = 10,
    seeds: int | None = None,
    fanout: int = 20,
    where: Filter | None = None,
    graph_name: str = DEFAULT_NAMESPACE,
    rrf_k: int = RRF_K,
    seed_documents_only: bool = False,
) -> list[HybridHit]:
    """The `k` best chunks and decisions for `query` (see the module doc), best first.

    ``seed_documents_only``: a chunk the graph reached counts only if its document has a seed.
    With a `where` on document fields (id, source, time) that keeps every chunk inside the filter:
    the seeds passed it, and the graph knows no source or time to check the others by."""
    if k < 1 or fanout < 1 or rrf_k < 0:
        raise ValueError("k and fanout must be at least 1, rrf_k not negative")
    found = index.search(collection, embedder.embed_query(query), k=seeds or k, where=where)
    expansion = _expand(graph, graph_name, [str(h.id) for h in found], fanout)
    hits = _seed_hits(found)
    graph_ranked = _graph_ranking(expansion, [str(h.id) for h in found])
    for rank, (node_id, paths) in enumerate(graph_ranked):
        hit = hits.get(node_id) or _reached_hit(expansion.nodes[node_id])
        if hit is None or (seed_documents_only and not _admitted(hit, hits)):
            continue
        hit.graph_rank = rank
        hit.paths += paths[: MAX_PATHS - len(hit.paths)]
        hits[node_id] = hit
    sources = {h.document_id: h.source for h in hits.values() if h.vector_rank is not None}
    for hit in hits.values():
        hit.source = hit.source or sources.get(hit.document_id)
        hit.score = sum(
            1.0 / (rrf_k + rank + 1)
            for rank in (hit.vector_rank, hit.graph_rank)
            if rank is not None
        )
    return sorted(hits.values(), key=lambda h: (-h.score, h.id))[:k]


@dataclass
class _Expansion:
    nodes: dict[str, GraphNode] = field(default_factory=dict)
    edges: list[GraphEdge] = field(default_factory=list)


def _expand(graph: GraphStore, name: str, seeds: Sequence[str], fanout: int) -> _Expansion:
    """Seeds, their neighbours, and the chunks mentioning the entities reached: three queries,
    then one for the nodes and edges among them all."""
    if not seeds:
        return _Expansion()
    try:
        first = graph.neighbours(name, seeds, EXPAND, fanout)
        reached = {n for ns in first.values() for n in ns}
        # Entities are the only neighbours whose MENTIONS lead on to other chunks; asking for
        # every reached node's MENTIONS finds them without knowing labels yet.
        second = graph.neighbours(name, sorted(reached - set(seeds)), ["MENTIONS"], fanout)
        ids = set(seeds) | reached | {n for ns in second.values() for n in ns}
        sub = graph.between(name, sorted(ids))
    except NamespaceNotFound:
        return _Expansion()  # no graph built yet: the vector ranking alone
    return _Expansion({n.id: n for n in sub.nodes}, sub.edges)


def _admitted(hit: HybridHit, seeds: Mapping[str, HybridHit]) -> bool:
    if hit.id in seeds or hit.kind != "chunk":
        return True  # a decision is reached only through a seed
    return any(
        s.document_id == hit.document_id for s in seeds.values() if s.vector_rank is not None
    )


def _seed_hits(found: Sequence[SearchHit]) -> dict[str, HybridHit]:
    hits: dict[str, HybridHit] = {}
    for rank, hit in enumerate(found):
        payload = hit.payload
        hits[str(hit.id)] = HybridHit(
            id=str(hit.id),
            kind="chunk",
            score=0.0,
            text=str(payload.get("text", "")),
            document_id=str(payload["document_id"]) if "document_id" in payload else None,
            vector_rank=rank,
            vector_score=round(float(hit.score), 6),
            source=str(payload.get("title") or payload.get("source") or "") or None,
            paths=[[EvidenceStep(str(hit.id), "Chunk", "VECTOR")]],
        )
    return hits


def _reached_hit(node: GraphNode) -> HybridHit | None:
    props = node.properties
    if node.label == "Chunk":
        document = props.get("document_id")
        return HybridHit(
            node.id, "chunk", 0.0, str(props.get("text", "")), str(document) if document else None
        )
    if node.label == "Decision":
        return HybridHit(node.id, "decision", 0.0, f"decision: {props.get('action', '')}", None)
    return None


def _step(node: GraphNode, via: str | None) -> EvidenceStep:
    name = node.properties.get("name") if node.label == "Entity" else None
    return EvidenceStep(node.id, node.label, via, str(name) if name is not None else None)


def _graph_ranking(
    expansion: _Expansion, seeds: Sequence[str]
) -> list[tuple[str, list[list[EvidenceStep]]]]:
    """Reached chunks and decisions by the weight of their evidence paths, best first."""
    nodes = expansion.nodes
    adjacent: dict[str, list[tuple[str, str]]] = {}
    for edge in expansion.edges:
        adjacent.setdefault(edge.source, []).append((edge.type, edge.target))
        adjacent.setdefault(edge.target, []).append((edge.type, edge.source))
    scores: dict[str, float] = {}
    paths: dict[str, list[list[EvidenceStep]]] = {}

    def credit(target: str, weight: float, path: list[EvidenceStep] | None) -> None:
        scores[target] = scores.get(target, 0.0) + weight
        found = paths.setdefault(target, [])
        if path is not None:
            found.append(path)

    for rank, seed in enumerate(seeds):
        if seed not in nodes:
            continue
        weight = 1.0 / (1 + rank)
        start = _step(nodes[seed], "VECTOR")
        credit(seed, weight * PATH_WEIGHT["VECTOR"], None)  # its path is the vector hit
        for edge_type, near in sorted(adjacent.get(seed, [])):
            label = nodes[near].label if near in nodes else ""
            if edge_type in ("NEXT", "USED_CONTEXT") and label in ("Chunk", "Decision"):
                credit(
                    near, weight * PATH_WEIGHT[edge_type], [start, _step(nodes[near], edge_type)]
                )
            elif edge_type == "MENTIONS" and label == "Entity":
                via = _step(nodes[near], "MENTIONS")
                for far_type, far in sorted(adjacent.get(near, [])):
                    if far_type != "MENTIONS" or far == seed or nodes[far].label != "Chunk":
                        continue
                    credit(
                        far,
                        weight * PATH_WEIGHT["MENTIONS"],
                        [start, via, _step(nodes[far], "MENTIONS")],
                    )
    ranked = sorted(scores, key=lambda n: (-scores[n], n))
    return [(n, paths[n]) for n in ranked]


class HybridSearch:
    """Hybrid search over the live vector collection (checked as ``VectorSearch`` checks it) and
    the graph view's alias; the same filters as vector search, applied to every chunk found."""

    def __init__(self, vectors: VectorSearch, graph: GraphStore) -> None:
        self.vectors = vectors
        self.graph = graph

    def search(
        self, query: str, k: int = 10, filters: SearchFilters | None = None
    ) -> list[HybridHit]:
        live = self.vectors.live()
        if live is None:
            return []
        where = (filters or SearchFilters()).where() or None
        return hybrid_search(
            self.vectors.index,
            live,
            self.vectors.embedder,
            self.graph,
            query,
            k=k,
            where=where,
            seed_documents_only=where is not None,
        )


def hits_json(hits: Sequence[HybridHit]) -> list[Mapping[str, Any]]:
    return [h.as_json() for h in hits]
