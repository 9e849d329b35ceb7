"""The graph view: provenance and knowledge from the log, in one GraphStore namespace.

Run as a projection by the knowledge views' registry (not in this module). Build it with the
vector view's embedder digest as `model_digest`, so its chunk ids are the vector view's point ids.

    Goal -[:DECIDED]-> Decision -[:REQUESTED]-> Confirmation -[:AUTHORISED]-> Effect
    Decision -[:USED_CONTEXT]-> Chunk        Job -[:FIRED]-> Fire
    Document -[:HAS_CHUNK]-> Chunk -[:NEXT]-> Chunk -[:MENTIONS]-> Entity -[:RELATES]-> Entity
    Chunk -[:STATES]-> Relation                (the evidence of each Entity pair's RELATES)

Every node and edge carries the event id and log position that last wrote it. Chunks are the
deterministic derivation the vector view makes (same text, same `ChunkSpec`, same id:
uuid5(document, index, model digest)), so a Decision's context ids are the chunk nodes' ids.
Entities come only from recorded extractions (`Document.EntitiesExtracted`, written by
commands/extraction.py): a rebuild calls no model. Each recorded entity is mentioned by the chunks
whose indexes the extraction recorded (`Chunk -[:MENTIONS]-> Entity`). Each recorded relation is
one `Entity -[:RELATES {type}]-> Entity` per ordered pair, with its evidence kept beside it: a
`Relation` node per pair and `Chunk -[:STATES {type}]-> Relation` from every chunk stating it
(which also mentions both ends). A retraction removes the document's chunks, every entity no chunk
mentions any more (with its relations), every relation no chunk states any more (with its RELATES
edge), and the retracted types from the relations that remain: nothing is orphaned.

The store is not transactional with the log: a batch's nodes and edges are merged (deterministic
ids, so a replay rewrites the same ones), then the position is stored in the namespace. Writes are
buffered across events and flushed before anything reads the store or deletes from it, so reads
always see every earlier event's writes. References to nodes the graph lacks (context ids that
are not chunks, a confirmation whose decision was never recorded) are left out, the same way on
every replay.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar
from uuid import UUID

from adapters.blobs import BlobStore
from adapters.chunking import Chunk, ChunkSpec, chunk_id, chunk_text
from adapters.extraction import ExtractionFailed, TextExtractor
from adapters.graph import GraphEdge, GraphNode, GraphStore, Scalar
from domain.confirmation import Confirmation
from domain.document import Document
from domain.effect import Effect
from domain.goal import Goal
from domain.job import Job, JobFire
from event_store.reader import LoggedEvent
from projections.graph_entities import (
    ENTITY_NAMESPACE,
    entity_id,
    join_types,
    parse_mention,
    parse_relation,
    relation_id,
)
from projections.graph_writes import GraphDrift, GraphWrites

__all__ = [
    "ENTITY_NAMESPACE",
    "RELATES",
    "STATES",
    "GraphDrift",
    "GraphProjection",
    "GraphWrites",
    "entity_id",
    "relation_id",
]

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "graph"
RELATES = "RELATES"
STATES = "STATES"
# A relation's remaining statements are re-read after a retraction in one bounded query.
MAX_STATEMENTS = 10_000
STATUS: dict[type, str] = {
    Goal.Completed: "completed",
    Goal.Failed: "failed",
    Goal.Cancelled: "cancelled",
    Confirmation.Granted: "granted",
    Confirmation.Denied: "denied",
    Confirmation.Expired: "expired",
    Confirmation.Cancelled: "cancelled",
    Effect.Succeeded: "succeeded",
    Effect.Failed: "failed",
    Effect.OutcomeUnknown: "outcome_unknown",
    Effect.Reconciled: "reconciled",
    Job.Paused: "paused",
    Job.Resumed: "active",
    Job.Removed: "removed",
}


class GraphProjection:
    name: ClassVar[str] = "graph"

    def __init__(
        self,
        store: GraphStore,
        blobs: BlobStore,
        extractor: TextExtractor,
        model_digest: str,
        chunking: ChunkSpec | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.extractor = extractor
        self.model_digest = model_digest
        self.chunking = chunking or ChunkSpec()
        self.namespace = namespace
        self.pending = GraphWrites()
        self._position: int | None = None

    def start(self) -> int:
        """Create the namespace if needed; the position to resume after (0: from the start)."""
        self.store.ensure_namespace(self.namespace)
        self._position = self.store.get_position(self.namespace) or 0
        return self._position

    @property
    def position(self) -> int:
        if self._position is None:
            raise RuntimeError("call start() before applying events")
        return self._position

    def apply(self, events: Sequence[LoggedEvent]) -> int:
        """Apply a batch in order, then store its last position; returns how many were new."""
        fresh = [e for e in events if e.position > self.position]
        try:
            for logged in fresh:
                self.process_event(logged)
            if fresh:
                self.flush()
        except BaseException:
            # The batch will be applied again from the stored position (a poison event stops
            # the view there); half a batch's buffered writes must not ride along with it.
            self.pending = GraphWrites()
            raise
        if fresh:
            # After the merges: a crash before this line replays the batch onto the same ids.
            self.store.set_position(self.namespace, fresh[-1].position)
            self._position = fresh[-1].position
        return len(fresh)

    def flush(self) -> None:
        self.pending.flush(self.store, self.namespace)

    def verify(self, events: Iterable[LoggedEvent], scratch: str | None = None) -> GraphDrift:
        """Compare the view's nodes and edges with what `events` imply.

        The expected graph is built by this same projection into a scratch namespace of the same
        store (dropped afterwards), so the comparison covers the store's own round trip too.
        """
        name = scratch or f"{self.namespace}_verify"
        self.store.drop_namespace(name)
        expected = GraphProjection(
            self.store,
            self.blobs,
            self.extractor,
            self.model_digest,
            self.chunking,
            namespace=name,
        )
        expected.start()
        try:
            expected.apply(list(events))
            return GraphDrift.between(self.store.export(name), self.store.export(self.namespace))
        finally:
            self.store.drop_namespace(name)

    def process_event(self, logged: LoggedEvent) -> None:
        event = logged.event
        status = STATUS.get(type(event))
        if status is not None:
            self._restamp(str(logged.originator_id), logged, status=status)
            return
        match event:
            case Goal.Submitted():
                self._goal(logged, event)
            case Goal.DecisionRecorded():
                self._decision(logged, event)
            case Confirmation.Requested():
                self._confirmation(logged, event)
            case Effect.Started():
                self._effect(logged, event)
            case Job.Scheduled():
                self._put(logged, "Job", logged.originator_id, name=event.name, status="active")
            case JobFire.Fired() | JobFire.Missed():
                self._fire(logged, event)
            case Document.Registered():
                self._document(logged, event)
            case Document.EntitiesExtracted():
                self._entities(logged, event)
            case Document.Retracted():
                self.retract(logged.originator_id, logged)
            case _:
                pass

    # --- provenance ----------------------------------------------------------------------------

    def _put(self, logged: LoggedEvent, label: str, node_id: UUID | str, **props: Any) -> str:
        clean = {k: v for k, v in props.items() if isinstance(v, str | int | float | bool)}
        event_id = str(logged.event.meta.event_id)
        node = GraphNode(str(node_id), label, event_id, logged.position, clean)
        self.pending.node(node)
        return node.id

    def _edge(self, logged: LoggedEvent, source: str, edge_type: str, target: str) -> GraphEdge:
        event_id = str(logged.event.meta.event_id)
        return GraphEdge(source, edge_type, target, event_id, logged.position)

    def _link(self, logged: LoggedEvent, source: str, edge_type: str, target: str) -> None:
        self.pending.edge(self._edge(logged, source, edge_type, target))

    def _link_from_first(
        self, logged: LoggedEvent, candidates: Sequence[str], edge_type: str, target: str
    ) -> None:
        """`candidate -[edge_type]-> target` from the first candidate the graph holds."""
        self.pending.edge_to_first(
            candidates, lambda source: self._edge(logged, source, edge_type, target)
        )

    def _restamp(self, node_id: str, logged: LoggedEvent, **changes: Scalar) -> None:
        node = self.pending.nodes.get(node_id) or self.store.node(self.namespace, node_id)
        if node is None:
            return
        props = {**node.properties, **changes}
        event_id = str(logged.event.meta.event_id)
        self.pending.node(
            dataclasses.replace(node, properties=props, event_id=event_id, position=logged.position)
        )

    def _goal(self, logged: LoggedEvent, event: Goal.Submitted) -> None:
        self._put(
            logged,
            "Goal",
            logged.originator_id,
            text=event.text,
            submitted_by=event.submitted_by,
            priority=event.priority,
            status="submitted",
        )

    def _decision(self, logged: LoggedEvent, event: Goal.DecisionRecorded) -> None:
        decision = self._put(
            logged,
            "Decision",
            event.decision_id,
            action=str(event.action.get("name", "")),
            model=event.model,
            model_digest=event.model_digest,
            goal_id=str(logged.originator_id),
        )
        self._link(logged, str(logged.originator_id), "DECIDED", decision)
        for context in dict.fromkeys(str(c) for c in event.context_ids):
            self.pending.edge_to_first(
                [context],
                lambda target: self._edge(logged, decision, "USED_CONTEXT", target),
            )

    def _confirmation(self, logged: LoggedEvent, event: Confirmation.Requested) -> None:
        confirmation = self._put(
            logged,
            "Confirmation",
            logged.originator_id,
            action=event.action,
            hazard=event.hazard,
            status="requested",
        )
        # Under its decision; a confirmation asked for outside any recorded decision hangs
        # off its goal instead.
        self._link_from_first(
            logged, [str(event.decision_id), str(event.goal_id)], "REQUESTED", confirmation
        )

    def _effect(self, logged: LoggedEvent, event: Effect.Started) -> None:
        effect = self._put(
            logged, "Effect", logged.originator_id, action=event.action, status="started"
        )
        self._link_from_first(logged, [str(event.confirmation_id)], "AUTHORISED", effect)

    def _fire(self, logged: LoggedEvent, event: JobFire.Fired | JobFire.Missed) -> None:
        missed = isinstance(event, JobFire.Missed)
        fire = self._put(
            logged,
            "Fire",
            logged.originator_id,
            scheduled_for=event.scheduled_for.isoformat(),
            manual=event.manual,
            missed=missed,
            reason=event.reason if isinstance(event, JobFire.Missed) else "",
        )
        self._link_from_first(logged, [str(event.job_id)], "FIRED", fire)

    # --- knowledge -----------------------------------------------------------------------------

    def _chunks(self, document_id: str, blob_key: str, content_type: str) -> list[Chunk]:
        data = self.blobs.get(blob_key)
        try:
            chunks = chunk_text(self.extractor.extract(data, content_type), self.chunking)
        except ExtractionFailed as failed:
            log.info("graph view: document %s has no text: %s", document_id, failed.reason)
            chunks = []
        return chunks

    def _chunk_id(self, document_id: UUID, chunk: Chunk) -> str:
        return str(chunk_id(document_id, chunk.index, self.model_digest))

    def _document(self, logged: LoggedEvent, event: Document.Registered) -> None:
        doc_uuid = logged.originator_id
        document = self._put(
            logged,
            "Document",
            doc_uuid,
            source_uri=event.source_uri,
            content_type=event.content_type,
            sha256=event.sha256,
            blob_key=event.blob_key,
            status="registered",
        )
        previous: str | None = None
        for chunk in self._chunks(document, event.blob_key, event.content_type):
            node = self._put(
                logged,
                "Chunk",
                self._chunk_id(doc_uuid, chunk),
                document_id=document,
                index=chunk.index,
                start=chunk.start,
                text=chunk.text,
            )
            self._link(logged, document, "HAS_CHUNK", node)
            if previous is not None:
                self._link(logged, previous, "NEXT", node)
            previous = node

    def _present_chunks(self, document_id: UUID, indexes: Iterable[int]) -> dict[int, str]:
        """The recorded chunk indexes whose chunk node the graph holds, with their ids.

        Chunk nodes are written only by Registered (buffered) and deleted only by Retracted
        (which flushes first), so a chunk not buffered is in the store exactly when it exists.
        """
        ids = {i: self._chunk_id_at(document_id, i) for i in indexes}
        unbuffered = [c for c in ids.values() if c not in self.pending.nodes]
        absent = set(self.store.missing(self.namespace, unbuffered)) if unbuffered else set()
        return {i: c for i, c in ids.items() if c not in absent}

    def _chunk_id_at(self, document_id: UUID, index: int) -> str:
        return str(chunk_id(document_id, index, self.model_digest))

    def _entities(self, logged: LoggedEvent, event: Document.EntitiesExtracted) -> None:
        """Chunk -[:MENTIONS]-> Entity for each recorded chunk index; Entity -[:RELATES]->
        Entity for each recorded relation, its chunk as evidence (and as a mention of both)."""
        doc_uuid = logged.originator_id
        mentions = [m for m in (parse_mention(raw) for raw in event.entities) if m is not None]
        relations = [r for r in (parse_relation(raw) for raw in event.relations) if r is not None]
        indexes = {i for m in mentions for i in m.chunks} | {r.chunk for r in relations}
        chunks = self._present_chunks(doc_uuid, sorted(indexes))
        named: dict[str, str] = {}
        for mention in mentions:
            present = [chunks[i] for i in mention.chunks if i in chunks]
            if not present:
                continue  # an entity no chunk mentions would be an orphan from the start
            entity = self._put(
                logged,
                "Entity",
                entity_id(mention.kind, mention.name),
                name=mention.name,
                type=mention.kind,
            )
            named.setdefault(mention.name.casefold(), entity)
            for chunk in present:
                self._link(logged, chunk, "MENTIONS", entity)
        stated: list[tuple[str, str, str, str]] = []
        for relation in relations:
            source = named.get(relation.source.casefold())
            target = named.get(relation.target.casefold())
            evidence = chunks.get(relation.chunk)
            if source is None or target is None or evidence is None or source == target:
                continue
            self._link(logged, evidence, "MENTIONS", source)
            self._link(logged, evidence, "MENTIONS", target)
            stated.append((source, target, relation.kind, evidence))
        if stated:
            self._relate(logged, stated)

    def _relate(self, logged: LoggedEvent, stated: Sequence[tuple[str, str, str, str]]) -> None:
        """Each (source, target, type, chunk): `chunk -[:STATES {type}]-> Relation` (the
        evidence, one edge per chunk, so a pair stated by thousands of chunks costs no more per
        statement than a rare one) and `source -[:RELATES {type}]-> target`, whose type, like the
        Relation node's, is every type still stated for the pair."""
        by_chunk: dict[tuple[str, str, str], set[str]] = {}
        for source, target, kind, chunk in stated:
            by_chunk.setdefault((source, target, chunk), set()).add(kind)
        pairs = {(s, t) for s, t, _ in by_chunk}
        types = self._relation_types(sorted(relation_id(s, t) for s, t in pairs))
        for (source, target, chunk), kinds in sorted(by_chunk.items()):
            relation = relation_id(source, target)
            types.setdefault(relation, set()).update(kinds)
            edge = self._edge(logged, chunk, STATES, relation)
            self.pending.edge(dataclasses.replace(edge, properties={"type": join_types(kinds)}))
        for source, target in sorted(pairs):
            self._put_relation(logged, source, target, types[relation_id(source, target)])

    def _relation_types(self, relations: Sequence[str]) -> dict[str, set[str]]:
        """The types the (buffered or stored) Relation nodes already hold."""
        unbuffered = [r for r in relations if r not in self.pending.nodes]
        stored = {n.id: n for n in self.store.nodes(self.namespace, unbuffered)}
        found: dict[str, set[str]] = {}
        for relation in relations:
            node = self.pending.nodes.get(relation) or stored.get(relation)
            if node is not None:
                found[relation] = set(str(node.properties.get("type", "")).split(", ")) - {""}
        return found

    def _put_relation(
        self, logged: LoggedEvent, source: str, target: str, kinds: Iterable[str]
    ) -> None:
        kind = join_types(kinds)
        self._put(
            logged, "Relation", relation_id(source, target), source=source, target=target, type=kind
        )
        edge = self._edge(logged, source, RELATES, target)
        self.pending.edge(dataclasses.replace(edge, properties={"type": kind}))

    def retract(self, document_id: UUID, logged: LoggedEvent) -> None:
        """Remove a document's chunks, every entity no remaining chunk mentions (with its
        relations), every relation no remaining chunk states, and the retracted statements'
        types from the relations that remain."""
        self.flush()
        doc = str(document_id)
        if self.store.node(self.namespace, doc) is None:
            return
        around = self.store.subgraph(self.namespace, doc, depth=2)
        chunks = {
            n.id
            for n in around.nodes
            if n.label == "Chunk" and n.properties.get("document_id") == doc
        }
        relations = [n for n in around.nodes if n.label == "Relation"]
        self.store.delete_nodes(self.namespace, sorted(chunks))
        self.store.delete_orphans(self.namespace, "Entity", "MENTIONS")
        self.store.delete_orphans(self.namespace, "Relation", STATES)
        self._restate(logged, relations)
        self._restamp(doc, logged, status="retracted")

    def _restate(self, logged: LoggedEvent, relations: Sequence[GraphNode]) -> None:
        """After a retraction: a relation without evidence loses its RELATES edge; one with
        evidence left gets the types its remaining statements give."""
        if not relations:
            return
        ids = [r.id for r in relations]
        gone = set(self.store.missing(self.namespace, ids))
        ends = {str(r.properties["source"]) for r in relations} | {
            str(r.properties["target"]) for r in relations
        }
        absent = set(self.store.missing(self.namespace, sorted(ends)))
        self.store.delete_edges(
            self.namespace,
            [
                (str(r.properties["source"]), RELATES, str(r.properties["target"]))
                for r in relations
                if r.id in gone
            ],
        )
        kept = [r for r in relations if r.id not in gone]
        stating = self.store.neighbours(
            self.namespace, [r.id for r in kept], [STATES], MAX_STATEMENTS
        )
        around = self.store.between(
            self.namespace, [*(r.id for r in kept), *(c for cs in stating.values() for c in cs)]
        )
        types: dict[str, set[str]] = {r.id: set() for r in kept}
        for edge in around.edges:
            if edge.type == STATES and edge.target in types:
                types[edge.target].update(str(edge.properties.get("type", "")).split(", "))
        for relation in kept:
            source, target = str(relation.properties["source"]), str(relation.properties["target"])
            if source not in absent and target not in absent:
                self._put_relation(logged, source, target, types[relation.id] - {""})
