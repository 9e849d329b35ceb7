"""Edge nodes as the cloud sees them, for viewers: sync position, lag, link, gaps, conflicts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import Viewer
from api.problems import responses

router = APIRouter(prefix="/v1/edges", tags=["edges"])


class EdgeOut(BaseModel):
    node: str = Field(description="The edge's node id (its JetStream domain is edge-<node>).")
    origin_sequence: int = Field(description="The last edge stream sequence the cloud holds.")
    lag_events: int | None = Field(description="Events the edge holds that the cloud lacks.")
    lag_seconds: float | None = Field(description="Age of the cloud's newest event when lagging.")
    link: str = Field(
        description="up, down, no-stream (as the ingester last saw the edge's stream), "
        "unknown (not probed yet) or stale (no ingester has probed it lately)."
    )
    last_contact: datetime | None
    gaps: list[dict[str, Any]] = Field(
        description="Recorded gaps (expected, found, reason, at); a gap closed by "
        "`janus edge import` also has repaired_at, repaired_by (the file's sha256), imported."
    )
    parked: int = Field(
        default=0,
        description="Edge events held back until a gap's repair brings their aggregate's "
        "earlier versions.",
    )
    conflicts: list[dict[str, Any]] = Field(description="Edge events the cloud kept apart.")


@router.get("", response_model=list[EdgeOut], responses=responses(401, 403, 503))
async def list_edges(read: Viewer) -> list[EdgeOut]:
    """Every edge the cloud has heard from, and how far behind it is."""
    statuses = await read(read.api.parts.statuses.edges)
    return [EdgeOut.model_validate(status, from_attributes=True) for status in statuses]
