"""Edge sync as the cloud sees it: one aggregate per edge node, holding what went wrong.

The cloud ingester appends an edge's events as they arrive; what it must never do silently is
skip. A retention gap (the edge's stream no longer holds the next sequence the cloud expects), a
re-created origin stream, or an edge event whose place in an aggregate's history the cloud has
already filled with a different event: each is recorded here as a fact, shown in the edge status
and kept in the audit trail. A gap closed by importing the edge's own export is recorded too
(``GapRepaired``), beside the gap it closes.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from domain.base import JanusAggregate, derived_id
from domain.errors import InvalidValue
from domain.meta import CommandContext

# Node ids name a JetStream domain, a stream and a subject token: no dots, no spaces.
EDGE_NODE = re.compile(r"[A-Za-z0-9_-]{1,48}")


def require_edge_node(node: str) -> str:
    if not EDGE_NODE.fullmatch(node):
        raise InvalidValue(
            f"edge node id {node!r} must be 1 to 48 letters, digits, '_' or '-' "
            "(it names a JetStream domain, stream and subject)"
        )
    return node


def edge_sync_id(node: str) -> UUID:
    return derived_id("edge-sync", node)


class EdgeSync(JanusAggregate):
    @classmethod
    def open(cls, node: str, ctx: CommandContext) -> EdgeSync:
        return cls._open(cls.Created, ctx, id=edge_sync_id(node), node=require_edge_node(node))

    class Created(JanusAggregate.Created):
        node: str

    def __init__(self, node: str) -> None:
        self.node = node
        self.gaps: list[dict[str, Any]] = []
        self.conflicts: list[dict[str, Any]] = []

    def detect_gap(self, expected: int, found: int, reason: str, ctx: CommandContext) -> bool:
        """Record a gap once: the same (expected, found) seen again after a restart is no news."""
        if found <= expected and reason == "retention":
            raise InvalidValue(f"no gap: expected {expected}, found {found}")
        if any(g["expected"] == expected and g["found"] == found for g in self.gaps):
            return False
        self._record(
            self.GapDetected, ctx, node=self.node, expected=expected, found=found, reason=reason
        )
        return True

    class GapDetected(JanusAggregate.Event):
        node: str
        expected: int
        found: int
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.gaps.append(
                {
                    "expected": self.expected,
                    "found": self.found,
                    "reason": self.reason,
                    "at": self.timestamp.isoformat(),
                }
            )

    def repair_gap(
        self, expected: int, found: int, sha256: str, imported: int, ctx: CommandContext
    ) -> bool:
        """An import from the edge's own export filled the gap (proven by its caller): once."""
        gap = next(
            (g for g in self.gaps if g["expected"] == expected and g["found"] == found), None
        )
        if gap is None:
            raise InvalidValue(f"no gap from {expected} to {found} is recorded for {self.node}")
        if gap.get("repaired_at"):
            return False
        self._record(
            self.GapRepaired,
            ctx,
            node=self.node,
            expected=expected,
            found=found,
            sha256=sha256,
            imported=imported,
        )
        return True

    @property
    def open_gaps(self) -> list[dict[str, Any]]:
        return [g for g in self.gaps if not g.get("repaired_at")]

    class GapRepaired(JanusAggregate.Event):
        node: str
        expected: int
        found: int
        sha256: str  # the imported file's: which export closed it
        imported: int

        def apply(self, aggregate: Any) -> None:
            for gap in aggregate.gaps:
                if gap["expected"] == self.expected and gap["found"] == self.found:
                    gap["repaired_at"] = self.timestamp.isoformat()
                    gap["repaired_by"] = self.sha256
                    gap["imported"] = self.imported

    def record_conflict(
        self,
        event_id: UUID,
        aggregate_id: UUID,
        version: int,
        origin_sequence: int,
        ctx: CommandContext,
    ) -> bool:
        """The cloud holds another event at this (aggregate, version): kept, never overwritten."""
        if any(c["event_id"] == str(event_id) for c in self.conflicts):
            return False
        self._record(
            self.ConflictRecorded,
            ctx,
            node=self.node,
            event_id=str(event_id),
            aggregate_id=str(aggregate_id),
            version=version,
            origin_sequence=origin_sequence,
        )
        return True

    def record_request_conflict(
        self, request_id: UUID, confirmation_id: UUID, outcome: str, ctx: CommandContext
    ) -> bool:
        """The edge refused a cloud request (it had decided otherwise): counted as a conflict."""
        if any(c.get("request_id") == str(request_id) for c in self.conflicts):
            return False
        self._record(
            self.RequestConflicted,
            ctx,
            node=self.node,
            request_id=str(request_id),
            confirmation_id=str(confirmation_id),
            outcome=outcome,
        )
        return True

    class RequestConflicted(JanusAggregate.Event):
        node: str
        request_id: str
        confirmation_id: str
        outcome: str

        def apply(self, aggregate: Any) -> None:
            aggregate.conflicts.append(
                {
                    "request_id": self.request_id,
                    "aggregate_id": self.confirmation_id,
                    "outcome": self.outcome,
                    "at": self.timestamp.isoformat(),
                }
            )

    class ConflictRecorded(JanusAggregate.Event):
        node: str
        event_id: str
        aggregate_id: str
        version: int
        origin_sequence: int

        def apply(self, aggregate: Any) -> None:
            aggregate.conflicts.append(
                {
                    "event_id": self.event_id,
                    "aggregate_id": self.aggregate_id,
                    "version": self.version,
                    "origin_sequence": self.origin_sequence,
                    "at": self.timestamp.isoformat(),
                }
            )
