"""Documents: upload, list, read one (with each view's status), fetch the bytes, retract."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError

from api import document_schemas as d
from api import schemas as s
from api.actions import accepted
from api.context import ApiContext
from api.deps import Cursor, FreshViewer, Limit, OperatorCall, OperatorUpload, Produced
from api.idempotency import fingerprint
from api.problems import ApiProblem, FieldError, responses
from commands import models as m
from commands.ingest import DescribeDocument, sha256_of
from domain.document import DocumentStatus
from projections.document_views import DocumentInView, views_of

router = APIRouter(prefix="/v1/documents", tags=["documents"])

# Room for the form's other parts and the multipart framing around the file.
UPLOAD_OVERHEAD = 64 * 1024
# Where the caller's fields are, by the names the write path checks them under.
FORM_FIELDS = {"source_uri": "source", "title": "title", "content_type": "file"}


def upload_limits(ingest_max_bytes: int) -> dict[str, int]:
    """The request size the upload path allows (BodyLimit): the document cap plus framing."""
    return {router.prefix: ingest_max_bytes + UPLOAD_OVERHEAD}


@router.post(
    "",
    status_code=201,
    response_model=d.DocumentAccepted,
    responses=responses(400, 401, 403, 409, 413, 415, 422, 503),
)
async def upload_document(
    call: OperatorUpload,
    file: Annotated[UploadFile, File(description="The document: text, Markdown, HTML or PDF.")],
    source: Annotated[
        str | None,
        Form(
            max_length=2_000,
            description="Where it comes from (default upload:<file name>). The same bytes from "
            "the same source are the same document.",
        ),
    ] = None,
    title: Annotated[
        str | None, Form(max_length=500, description="Default: the file name.")
    ] = None,
) -> Response:
    """Upload a document (multipart/form-data): its bytes are stored, then it is recorded.
    201 with its id and the log position; the same bytes from the same source again answer the
    first id (outcome already_registered) and record nothing. The media type is the part's
    declared one, else the file name's suffix (415 otherwise); 413 past the size limit."""
    api = call.api
    ingest = api.documents()
    origin = source or f"upload:{file.filename or 'document'}"
    described = _described(api, origin, title, file)
    if file.size is not None:
        ingest.check_size(file.size)
    if call.idempotency_key:
        call = replace(call, fingerprint=await _fingerprint(api, described, file))

    def produce() -> Produced:
        done = ingest.ingest_stream(
            file.file,
            call.invocation,
            filename=file.filename,
            source_uri=described.source_uri,
            title=described.title,
            media_type=described.content_type,
        )
        model = d.DocumentAccepted(
            id=done.document_id,
            outcome=done.outcome,
            position=done.position,
            title=done.title,
            source=done.source_uri,
            media_type=done.content_type,
            size_bytes=done.size_bytes,
            sha256=done.sha256,
        )
        return Produced(model, done.replayed)

    return await call.respond(
        produce, status_code=201, location=lambda done: f"{router.prefix}/{done.id}"
    )


def _described(
    api: ApiContext, source: str, title: str | None, file: UploadFile
) -> DescribeDocument:
    """The caller's fields checked before anything is stored: 415, or 422 naming the field."""
    try:
        return api.documents().describe(source, title, file.content_type, file.filename)
    except ValidationError as invalid:
        errors = [
            FieldError(
                loc=["body", FORM_FIELDS.get(str(e["loc"][0]), str(e["loc"][0]))],
                message=e["msg"],
                type=e["type"],
            )
            for e in invalid.errors(include_input=False)
        ]
        detail = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.message}" for e in errors)
        raise ApiProblem(422, "validation-error", detail, errors=errors) from None


async def _fingerprint(api: ApiContext, described: DescribeDocument, file: UploadFile) -> str:
    """A retry is the same request when its parts are: the multipart framing differs each time."""
    digest = await api.run(sha256_of, file.file)
    parts = {**described.model_dump(), "filename": file.filename, "sha256": digest}
    return fingerprint("POST", router.prefix, "", json.dumps(parts, sort_keys=True).encode())


@router.get("", response_model=s.Page[d.DocumentOut], responses=responses(401, 403, 422, 503))
async def list_documents(
    read: FreshViewer,
    status: DocumentStatus | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> s.Page[d.DocumentOut]:
    """Documents, newest first, optionally in one status."""
    return await read(lambda: read.api.reads.documents(status, limit, cursor))


@router.get(
    "/{document_id}", response_model=d.DocumentDetail, responses=responses(401, 403, 404, 422, 503)
)
async def get_document(read: FreshViewer, document_id: UUID) -> d.DocumentDetail:
    """One document: what was recorded, its chunks, and what each view holds for it."""
    return await read(lambda: _detail(read.api, document_id))


def _detail(api: ApiContext, document_id: UUID) -> d.DocumentDetail:
    found = api.reads.document(document_id)
    views = views_of(document_id, api.document_views())
    objects = views.get("objects")
    return d.DocumentDetail(
        **found.model_dump(),
        chunks=[d.ChunkOut.model_validate(c) for c in objects.chunks] if objects else [],
        views={name: _in_view(seen) for name, seen in views.items()},
    )


def _in_view(seen: DocumentInView) -> d.DocumentInViewOut:
    return d.DocumentInViewOut(
        status=seen.status, reason=seen.reason, position=seen.position, chunk_count=len(seen.chunks)
    )


CONTENT: dict[int | str, dict[str, Any]] = {
    200: {"description": "The bytes (filesystem store).", "content": {"*/*": {}}},
    307: {"description": "A time-limited URL of the bytes (S3 store)."},
    **responses(401, 403, 404, 410, 422, 503),
}


@router.get("/{document_id}/content", response_class=Response, responses=CONTENT)
async def get_document_content(
    read: FreshViewer,
    document_id: UUID,
    expires: Annotated[
        int, Query(ge=1, le=7 * 24 * 3600, description="Seconds a redirect URL stays valid.")
    ] = 900,
) -> Response:
    """The document's raw bytes: a redirect to a presigned URL on S3, a stream from the
    filesystem store. A retracted document's bytes stay recorded but are not served (410)."""
    found = await read(lambda: read.api.reads.document(document_id))
    if found.status == DocumentStatus.RETRACTED:
        raise ApiProblem(410, "document-retracted", f"document {document_id} was retracted")
    blobs = read.api.documents().blobs
    url = await read.api.run(blobs.presigned_url, found.blob_key, timedelta(seconds=expires))
    if url is not None:
        return RedirectResponse(url, status_code=307)
    chunks = await read.api.run(blobs.stream, found.blob_key)
    headers = {
        "Content-Length": str(found.size_bytes),
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(found.title)}",
    }
    return StreamingResponse(chunks, media_type=found.media_type, headers=headers)


@router.post(
    "/{document_id}/retract",
    response_model=s.CommandAccepted,
    responses=responses(400, 401, 403, 404, 409, 413, 422, 503),
)
async def retract_document(
    document_id: UUID, body: d.DocumentRetraction, call: OperatorCall
) -> Response:
    """Withdraw a document from every view; retracting it again changes nothing."""
    cmd = m.RetractDocument(document_id=document_id, reason=body.reason)
    commands = call.api.parts.commands
    return await call.respond(lambda: accepted(commands.retract_document(cmd, call.invocation)))
