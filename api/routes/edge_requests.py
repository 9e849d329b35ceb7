"""Requests to edges: ask the edge that owns a confirmation to grant or deny it (as
``janus edge grant|deny``), and list the requests sent (as ``janus edge requests``).

The cloud never writes an edge's confirmation: it records a request, the ingester sends it, the
edge applies it or records a conflict, and the answer syncs back into the request's status.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api import schemas as s
from api.actions import accepted
from api.deps import Call, OperatorCall, Produced, Viewer
from api.problems import responses
from commands.edge_requests import SendEdgeRequest
from domain.edge_requests import RequestKind

router = APIRouter(prefix="/v1/edges", tags=["edges"])

SEND = responses(400, 401, 403, 404, 409, 413, 422, 503)
Node = Annotated[
    str,
    Path(pattern=r"^[A-Za-z0-9_\-]{1,48}$", description="The edge that owns the confirmation."),
]


class EdgeRequestOut(BaseModel):
    id: UUID = Field(description="The request's id.")
    node: str = Field(description="The edge it was sent to.")
    confirmation_id: UUID = Field(description="The edge's confirmation it asks about.")
    kind: str = Field(description="grant or deny.")
    status: str = Field(description="sent, applied (by the edge) or conflicted.")
    conflict: str | None = Field(description="What the edge had decided instead, if conflicted.")
    requested_by: str = Field(description="Who asked, as the edge records it.")


@router.get("/requests", response_model=list[EdgeRequestOut], responses=responses(401, 403, 503))
async def list_edge_requests(read: Viewer) -> list[EdgeRequestOut]:
    """The requests this node sent to edges, newest first, each as it now stands."""
    found = await read(read.api.parts.statuses.edge_requests)
    return [
        EdgeRequestOut(
            id=r.id,
            node=r.node,
            confirmation_id=r.confirmation_id,
            kind=r.kind.value,
            status=r.status.value,
            conflict=r.conflict,
            requested_by=r.requested_by,
        )
        for r in found
    ]


@router.post(
    "/{node}/confirmations/{confirmation_id}/grant",
    response_model=s.CommandAccepted,
    responses=SEND,
)
async def grant_on_edge(node: Node, confirmation_id: UUID, call: OperatorCall) -> Response:
    """Ask the edge to grant its pending confirmation: outcome sent (or already_sent). The edge
    applies it, or records a conflict if it decided otherwise meanwhile; see GET requests."""
    cmd = SendEdgeRequest(confirmation_id=confirmation_id, kind=RequestKind.GRANT, node=node)
    return await call.respond(lambda: _send(call, cmd))


@router.post(
    "/{node}/confirmations/{confirmation_id}/deny",
    response_model=s.CommandAccepted,
    responses=SEND,
)
async def deny_on_edge(
    node: Node, confirmation_id: UUID, body: s.Denial, call: OperatorCall
) -> Response:
    """Ask the edge to deny its pending confirmation, with the reason it will record."""
    cmd = SendEdgeRequest(
        confirmation_id=confirmation_id, kind=RequestKind.DENY, reason=body.reason, node=node
    )
    return await call.respond(lambda: _send(call, cmd))


def _send(call: Call, cmd: SendEdgeRequest) -> Produced:
    return accepted(call.api.parts.edge_requests.send(cmd, call.invocation))
