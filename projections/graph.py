"""The graph view: provenance and knowledge from the log, in one GraphStore namespace.

Not registered with any runner yet (the graph CLI and rebuild wiring come with issue 14's rest).

    Goal -[:DECIDED]-> Decision -[:REQUESTED]-> Confirmation -[:AUTHORISED]-> Effect
    Decision -[:USED_CONTEXT]-> Chunk        Job -[:FIRED]-> Fire
    Document -[:HAS_CHUNK]-> Chunk -[:NEXT]-> Chunk -[:MENTIONS]-> Entity

Every node and edge carries the event id and log position that last wrote it. Chunks are the
deterministic derivation the vector view makes (same text, same `ChunkSpec`, same id:
uuid5(document, index, model digest)), so a Decision's context ids are the chunk nodes' ids.
Entities come only from recorded extractions (`Document.EntitiesExtracted`): a rebuild calls no
model. An entity is mentioned by each chunk whose text contains its name (case-insensitive), or by
the first chunk when none does. A retraction removes the document's chunks, and every entity no
chunk mentions any more goes with them.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar
from uuid import UUID, uuid5

from adapters.blobs import BlobStore
from adapters.chunking import Chunk, ChunkSpec, chunk_id, chunk_text
from adapters.extraction import ExtractionFailed, TextExtractor
from adapters.graph import GraphEdge, GraphNode, GraphStore, Scalar, Subgraph
from domain.confirmation import Confirmation
from domain.document import Document
from domain.effect import Effect
from domain.goal import Goal
from domain.job import Job, JobFire
from event_store.reader import LoggedEvent

__all__ = ["ENTITY_NAMESPACE", "GraphDrift", "GraphProjection", "GraphWrites", "entity_id"]

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "graph"
ENTITY_NAMESPACE = UUID("6f1d5c0e-1b7a-5a43-9a55-0c6f0e3b7d21")
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


def entity_id(kind: str, name: str) -> str:
    """One node per (kind, name) across documents: what links documents through what they name."""
    return str(uuid5(ENTITY_NAMESPACE, f"{kind.casefold()}:{name.strip().casefold()}"))


def _entity(raw: Mapping[str, Any]) -> tuple[str, str] | None:
    # Extractors record spaCy-like {"text", "label"} or {"name", "type"}; anything without a
    # name is not an entity.
    name = raw.get("name") or raw.get("text")
    kind = raw.get("type") or raw.get("label") or "thing"
    if not isinstance(name, str) or not name.strip():
        return None
    return name.strip(), str(kind)


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
        self._chunk_cache: tuple[str, list[Chunk]] | None = None

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
        # Registered and Extracted both need a document's chunks; one extraction serves both.
        if self._chunk_cache is not None and self._chunk_cache[0] == document_id:
            return self._chunk_cache[1]
        data = self.blobs.get(blob_key)
        try:
            chunks = chunk_text(self.extractor.extract(data, content_type), self.chunking)
        except ExtractionFailed as failed:
            log.info("graph view: document %s has no text: %s", document_id, failed.reason)
            chunks = []
        self._chunk_cache = (document_id, chunks)
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

    def _entities(self, logged: LoggedEvent, event: Document.EntitiesExtracted) -> None:
        doc_uuid = logged.originator_id
        document = self.pending.nodes.get(str(doc_uuid)) or self.store.node(
            self.namespace, str(doc_uuid)
        )
        if document is None:
            return
        props = document.properties
        chunks = self._chunks(document.id, str(props["blob_key"]), str(props["content_type"]))
        if not chunks:
            return
        for raw in event.entities:
            found = _entity(raw) if isinstance(raw, Mapping) else None
            if found is None:
                continue
            name, kind = found
            entity = self._put(logged, "Entity", entity_id(kind, name), name=name, type=kind)
            mentioning = [c for c in chunks if name.casefold() in c.text.casefold()] or chunks[:1]
            for chunk in mentioning:
                self._link(logged, self._chunk_id(doc_uuid, chunk), "MENTIONS", entity)

    def retract(self, document_id: UUID, logged: LoggedEvent) -> None:
        """Remove a document's chunks and every entity no remaining chunk mentions."""
        self.flush()
        doc = str(document_id)
        if self.store.node(self.namespace, doc) is None:
            return
        around = self.store.subgraph(self.namespace, doc, depth=1)
        chunks = [
            n.id
            for n in around.nodes
            if n.label == "Chunk" and n.properties.get("document_id") == doc
        ]
        self.store.delete_nodes(self.namespace, chunks)
        self.store.delete_orphans(self.namespace, "Entity", "MENTIONS")
        self._restamp(doc, logged, status="retracted")
