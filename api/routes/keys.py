"""API keys, for admins: list and revoke. Keys are created with ``janus keys create``: a key
can be shown only once, and an HTTP retry could not show it again."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import Response

from api import schemas as s
from api.actions import revoke_key
from api.deps import Admin, AdminCall
from api.problems import responses

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.get("", response_model=list[s.KeyOut], responses=responses(401, 403, 503))
async def list_keys(read: Admin) -> list[s.KeyOut]:
    """Every key ever created (never the key nor its hash)."""
    infos = await read(read.api.parts.keys.list_keys)
    return [s.KeyOut.model_validate(info) for info in infos]


@router.delete(
    "/{key_id}",
    response_model=s.CommandAccepted,
    responses=responses(401, 403, 404, 409, 422, 503),
)
async def revoke(key_id: UUID, call: AdminCall) -> Response:
    """Revoke a key: it stops working at once on this server, within the key cache time on
    others. Revoking again answers already_revoked."""
    return await call.respond(lambda: revoke_key(call, key_id))
