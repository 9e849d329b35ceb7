"""The owner's rule for cross-node requests, over every interleaving Hypothesis finds.

A model of the edge (the real Confirmation aggregate, ``decide_request`` and one answer per
request id) receives cloud requests and its own local decisions in any arrival order, with
redeliveries; the cloud (the real EdgeRequest and EdgeSync aggregates) ingests the answers in
any order, with repeats. Whatever the order: exactly one decision stands, the first decisive
arrival; every other request is answered once, as a conflict; the door unlocks at most once;
and the cloud's view converges to the edge's answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.confirmation import Confirmation, ConfirmationStatus, HazardClass
from domain.edge import EdgeSync
from domain.edge_requests import (
    APPLIED,
    EdgeRequest,
    RequestKind,
    RequestStatus,
    decide_request,
)
from domain.meta import Actor, ActorKind, CommandContext

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TTL = timedelta(minutes=15)


def ctx(node: str) -> CommandContext:
    return CommandContext("c", "g", "c", Actor(ActorKind.USER, "dana"), node)


@dataclass(frozen=True)
class Op:
    """One arrival at the edge: a cloud request (``request``) or a local decision."""

    kind: str  # grant | deny | cancel | expire
    request: int | None  # the cloud request's number; None: the edge's own operator or sweeper
    late: bool  # arrives after the confirmation's deadline


@dataclass
class Edge:
    confirmation: Confirmation
    answers: dict[int, str] = field(default_factory=dict)
    executions: int = 0

    def arrive(self, op: Op) -> None:
        now = T0 + (TTL + timedelta(seconds=1) if op.late else timedelta(seconds=1))
        c, before = ctx("edge"), self.confirmation.status
        if op.request is not None:
            if op.request in self.answers:
                return  # a redelivery: answered once
            outcome = decide_request(
                RequestKind(op.kind), before, self.confirmation.is_expired_at(now)
            )
            self.answers[op.request] = outcome
            if outcome == APPLIED:
                self._local(op.kind, now, c)
        else:
            try:
                self._local(op.kind, now, c)
            except Exception:  # noqa: BLE001 - the aggregate refused: decided, or not yet due
                return
        if before is ConfirmationStatus.PENDING and self.confirmation.status is (
            ConfirmationStatus.GRANTED
        ):
            self.executions += 1  # the executor runs once per Granted event

    def _local(self, kind: str, now: datetime, c: CommandContext) -> None:
        conf = self.confirmation
        if kind == "grant":
            conf.grant("dana", now, c)
        elif kind == "deny":
            conf.deny("dana", "no", now, c)
        elif kind == "cancel":
            conf.cancel("dana", "no", now, c)
        else:
            conf.expire(now, c)


def pending() -> Confirmation:
    return Confirmation.request(
        uuid4(), uuid4(), uuid4(), "unlock_door", {}, HazardClass.HIGH, T0, T0 + TTL, ctx("edge")
    )


def first_decisive(arrivals: list[Op]) -> Op | None:
    """The arrival that decides a pending confirmation: the oracle, independent of the model."""
    seen: set[int] = set()
    for op in arrivals:
        if op.request is not None:
            if op.request in seen:
                continue  # a redelivery changes nothing
            seen.add(op.request)
        if (op.kind == "expire" and op.late) or op.kind == "cancel":
            return op
        if op.kind in {"grant", "deny"} and not op.late:
            return op
    return None


ops = st.builds(
    Op,
    kind=st.sampled_from(["grant", "deny", "cancel", "expire"]),
    request=st.none(),
    late=st.booleans(),
)
# A request's content is fixed by its number (a redelivery is the same request): even grants.
cloud_ops = st.builds(
    lambda n, late: Op("grant" if n % 2 == 0 else "deny", n, late),
    st.integers(0, 3),
    st.booleans(),
)


@settings(max_examples=1_000, deadline=None)
@given(
    arrivals=st.lists(st.one_of(ops, cloud_ops), min_size=1, max_size=12),
    cloud_order=st.randoms(use_true_random=False),
)
def test_any_arrival_order_leaves_one_decision_and_the_cloud_converges(
    arrivals: list[Op], cloud_order: object
) -> None:
    edge = Edge(pending())
    for op in arrivals:
        edge.arrive(op)

    first = first_decisive(arrivals)
    want = ConfirmationStatus.PENDING
    if first is not None:
        want = ConfirmationStatus(
            {"grant": "granted", "deny": "denied", "cancel": "cancelled", "expire": "expired"}[
                first.kind
            ]
        )
    assert edge.confirmation.status is want
    assert edge.executions == (1 if want is ConfirmationStatus.GRANTED else 0)
    applied = [n for n, outcome in edge.answers.items() if outcome == APPLIED]
    assert len(applied) <= 1
    assert set(edge.answers) == {op.request for op in arrivals if op.request is not None}

    # The cloud ingests the answers in any order, each possibly twice.
    requests = {
        n: EdgeRequest.make(
            UUID(int=n + 1),
            "edge",
            edge.confirmation.id,
            RequestKind.GRANT,
            "user:dana",
            None,
            ctx("cloud"),
        )
        for n in edge.answers
    }
    sync = EdgeSync.open("edge", ctx("cloud"))
    deliveries = [*edge.answers.items(), *edge.answers.items()]
    cloud_order.shuffle(deliveries)  # type: ignore[attr-defined]
    for n, outcome in deliveries:
        requests[n].resolve(outcome, ctx("cloud"))
        if outcome != APPLIED:
            sync.record_request_conflict(UUID(int=n + 1), edge.confirmation.id, outcome, ctx("c"))

    for n, outcome in edge.answers.items():
        wanted = RequestStatus.APPLIED if outcome == APPLIED else RequestStatus.CONFLICTED
        assert requests[n].status is wanted
    conflicted = sorted(n for n, outcome in edge.answers.items() if outcome != APPLIED)
    assert sorted(UUID(c["request_id"]).int - 1 for c in sync.conflicts) == conflicted


def test_a_stale_grant_is_a_conflict_not_an_execution() -> None:
    assert decide_request(RequestKind.GRANT, ConfirmationStatus.PENDING, expired=True) == "expired"
    assert decide_request(RequestKind.GRANT, ConfirmationStatus.DENIED, False) == "already denied"
    assert decide_request(RequestKind.GRANT, ConfirmationStatus.GRANTED, False) == (
        "already granted"
    )
    assert decide_request(RequestKind.DENY, ConfirmationStatus.PENDING, False) == APPLIED
