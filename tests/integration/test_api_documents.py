"""Documents over HTTP on both stores: upload, list, read one with its views, bytes, retract."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from api.settings import ApiSettings
from bootstrap.container import Janus
from bootstrap.documents import build_blob_store
from domain.api_key import Role
from domain.document import Document
from tests.s3_server import S3Endpoint, unique_bucket
from tests.support.api import Api, is_problem, serve_api
from tests.support.documents import HTML_PAGE, pdf_bytes

LIMIT = 32 * 1024


@pytest.fixture
def janus_small(janus: Janus) -> Janus:
    janus.settings = janus.settings.model_copy(update={"ingest_max_bytes": LIMIT})
    return janus


@pytest.fixture
def api(janus_small: Janus) -> Iterator[Api]:
    with serve_api(janus_small, ApiSettings(read_wait_seconds=10)) as served:
        yield served


def upload(
    api: Api,
    data: bytes,
    filename: str = "manual.pdf",
    media_type: str | None = "application/pdf",
    role: Role = Role.OPERATOR,
    headers: dict[str, str] | None = None,
    **fields: str,
) -> httpx.Response:
    part = (filename, data, media_type) if media_type else (filename, data)
    return api.post(
        "/v1/documents", role=role, files={"file": part}, data=fields, headers=headers or {}
    )


def registered_count(janus: Janus) -> int:
    events = (janus.reader.decode(n).event for n in janus.reader.read_after(0, 10_000))
    return sum(isinstance(e, Document.Registered) for e in events)


def run_object_view(janus: Janus) -> None:
    """What the object projector does (its live generation): extract and chunk every document."""
    view = janus.knowledge_views["objects"]
    view.setup()
    view.catch_up(timeout=60)


def test_an_upload_is_stored_recorded_and_readable_at_its_position(api: Api) -> None:
    data = pdf_bytes("The boiler manual.")

    response = upload(api, data, source="https://example.com/manual.pdf", title="Boiler")

    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert (body["outcome"], body["title"], body["media_type"], body["size_bytes"]) == (
        "registered",
        "Boiler",
        "application/pdf",
        len(data),
    )
    assert response.headers["Location"] == f"/v1/documents/{body['id']}"
    page = api.get(f"/v1/documents?min_position={body['position']}").json()
    assert [d["id"] for d in page["items"]] == [body["id"]]
    one = api.get(f"/v1/documents/{body['id']}").json()
    assert (one["source"], one["status"], one["chunks"], one["views"]) == (
        "https://example.com/manual.pdf",
        "registered",
        [],
        {},
    )


def test_the_same_bytes_from_the_same_source_answer_the_first_id(api: Api, janus: Janus) -> None:
    first = upload(api, b"# notes\n", "notes.md", None).json()
    again = upload(api, b"# notes\n", "notes.md", None).json()
    other = upload(api, b"# notes\n", "notes.md", None, source="elsewhere").json()

    assert (again["id"], again["outcome"]) == (first["id"], "already_registered")
    assert (first["media_type"], first["source"]) == ("text/markdown", "upload:notes.md")
    assert other["id"] != first["id"]
    assert registered_count(janus) == 2


def test_an_idempotency_key_replays_the_first_response_and_refuses_another_file(
    api: Api, janus: Janus
) -> None:
    key = {"Idempotency-Key": "doc-1"}
    first = upload(api, b"hello", "a.txt", "text/plain", headers=key)
    # A new request (a new multipart boundary) for the same parts is the same request.
    again = upload(api, b"hello", "a.txt", "text/plain", headers=key)
    different = upload(api, b"other", "a.txt", "text/plain", headers=key)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert is_problem(different, 409)
    assert registered_count(janus) == 1


def test_each_views_status_and_the_chunks_show_once_the_object_view_has_run(
    api: Api, janus: Janus
) -> None:
    good = upload(api, HTML_PAGE, "policy.html", "text/html").json()
    bad = upload(api, b"%PDF-1.7 not really", "broken.pdf").json()

    run_object_view(janus)

    at = f"min_position={bad['position']}"
    shown = api.get(f"/v1/documents/{good['id']}?{at}").json()
    assert shown["views"]["objects"]["status"] == "extracted"
    assert shown["views"]["objects"]["chunk_count"] == len(shown["chunks"]) >= 1
    assert shown["chunks"][0]["index"] == 0
    failed = api.get(f"/v1/documents/{bad['id']}?{at}").json()
    assert failed["views"]["objects"]["status"] == "failed"
    assert "PDF" in failed["views"]["objects"]["reason"]


def test_content_streams_the_bytes_from_the_file_store_and_not_once_retracted(
    api: Api,
) -> None:
    data = pdf_bytes("Bleed the radiators.")
    made = upload(api, data).json()

    content = api.get(f"/v1/documents/{made['id']}/content?min_position={made['position']}")
    retracted = api.post(f"/v1/documents/{made['id']}/retract", json={"reason": "superseded"})
    again = api.post(f"/v1/documents/{made['id']}/retract", json={"reason": "superseded"})
    gone = api.get(f"/v1/documents/{made['id']}/content?min_position={again.json()['position']}")

    assert content.status_code == 200
    assert content.content == data
    assert content.headers["content-type"] == "application/pdf"
    assert (retracted.json()["outcome"], again.json()["outcome"]) == (
        "retracted",
        "already_retracted",
    )
    assert is_problem(gone, 410, "document-retracted")
    row = api.get(f"/v1/documents/{made['id']}?min_position={retracted.json()['position']}").json()
    assert (row["status"], row["retraction_reason"]) == ("retracted", "superseded")
    listed = api.get(f"/v1/documents?status=retracted&min_position={again.json()['position']}")
    assert [d["id"] for d in listed.json()["items"]] == [made["id"]]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        (
            {"data": b"x" * (LIMIT + 1), "filename": "big.txt", "media_type": "text/plain"},
            413,
            None,
        ),
        (
            {"data": b"x" * (LIMIT * 3), "filename": "huge.txt", "media_type": "text/plain"},
            413,
            None,
        ),
        ({"data": b"\x89PNG", "filename": "img.png", "media_type": "image/png"}, 415, None),
        ({"data": b"??", "filename": "blob", "media_type": None}, 415, None),
        ({"data": b"", "filename": "empty.txt", "media_type": "text/plain"}, 422, None),
        (
            {"data": b"hi", "filename": "a.txt", "media_type": "text/plain", "source": "a\x00b"},
            422,
            "source",
        ),
        (
            {"data": b"hi", "filename": "a.txt", "media_type": "text/plain", "title": " "},
            422,
            "title",
        ),
        (
            {"data": b"hi", "filename": "a.txt", "media_type": "text/plain", "title": "t" * 501},
            422,
            "title",
        ),
    ],
)
def test_bad_uploads_are_problems_that_store_and_record_nothing(
    api: Api, janus: Janus, kwargs: dict[str, Any], status: int, code: str | None
) -> None:
    response = upload(api, **kwargs)

    assert is_problem(response, status), response.text
    if code is not None:
        assert ["body", code] in [e["loc"] for e in response.json()["errors"]]
    assert registered_count(janus) == 0
    assert list(build_blob_store(janus.settings).list_keys()) == []


def test_a_request_without_a_file_names_the_missing_field(api: Api) -> None:
    response = api.post("/v1/documents", data={"source": "x"})

    assert is_problem(response, 422, "validation-error")
    assert ["body", "file"] in [e["loc"] for e in response.json()["errors"]]


def test_viewers_read_documents_but_cannot_upload_or_retract(api: Api) -> None:
    assert is_problem(upload(api, b"hi", "a.txt", "text/plain", role=Role.VIEWER), 403)
    made = upload(api, b"hi", "a.txt", "text/plain").json()
    read = api.get(f"/v1/documents/{made['id']}?min_position={made['position']}", role=Role.VIEWER)
    assert read.status_code == 200
    refused = api.post(
        f"/v1/documents/{made['id']}/retract", role=Role.VIEWER, json={"reason": "no"}
    )
    assert is_problem(refused, 403)
    assert is_problem(api.get("/v1/documents/00000000-0000-0000-0000-000000000000"), 404)


@pytest.mark.parametrize("caller", ["no key", "viewer key"])
def test_an_upload_is_refused_before_its_body_is_read_when_the_key_does_not_allow_it(
    api: Api, caller: str
) -> None:
    """Driven at the ASGI level to see whether the server asks for the body at all."""
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"multipart/form-data; boundary=xyz"),
        (b"content-length", b"2048"),
    ]
    if caller == "viewer key":
        headers.append((b"authorization", f"Bearer {api.tokens[Role.VIEWER]}".encode()))
    asked: list[int] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        asked.append(1)
        return {"type": "http.request", "body": b"x" * 1024, "more_body": len(asked) < 2}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/documents",
        "raw_path": b"/v1/documents",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
    }
    asyncio.run(api.app(scope, receive, send))

    start = next(m for m in sent if m["type"] == "http.response.start")
    body = json.loads(
        b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    )
    assert (start["status"], asked) == ((401, []) if caller == "no key" else (403, []))
    assert body["type"].endswith("unauthorized" if caller == "no key" else "forbidden")


def test_on_s3_content_redirects_to_a_presigned_url_of_the_bytes(
    janus: Janus, seaweed_s3: S3Endpoint
) -> None:
    janus.settings = janus.settings.model_copy(
        update={
            "s3_url": seaweed_s3.url,
            "s3_access_key": seaweed_s3.access_key,
            "s3_secret_key": SecretStr(seaweed_s3.secret_key),
            "s3_bucket": unique_bucket(),
        }
    )
    with serve_api(janus) as api:
        data = pdf_bytes("Stored on S3.")
        made = upload(api, data).json()

        content = api.get(
            f"/v1/documents/{made['id']}/content?min_position={made['position']}&expires=60"
        )

        assert content.status_code == 307
        assert httpx.get(content.headers["Location"], timeout=10).content == data


def test_a_blob_store_that_refuses_is_a_503_and_nothing_is_recorded(
    janus: Janus, seaweed_s3: S3Endpoint
) -> None:
    janus.settings = janus.settings.model_copy(
        update={
            "s3_url": seaweed_s3.url,
            "s3_access_key": seaweed_s3.access_key,
            "s3_secret_key": SecretStr("not-the-secret"),
            "s3_bucket": unique_bucket(),
        }
    )
    with serve_api(janus) as api:
        response = upload(api, pdf_bytes("Never stored."))

    assert is_problem(response, 503, "blob-store-unavailable"), response.text
    assert "not-the-secret" not in response.text
    assert registered_count(janus) == 0
