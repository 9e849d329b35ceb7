"""The auth matrix: every endpoint with every kind of credential and every role.

No or bad credentials are a 401, too low a role a 403, both problem+json; enough role is never
refused for who it is. The table must list every operation the OpenAPI document declares.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from uuid import uuid4

import httpx
import pytest

from bootstrap.container import Janus
from commands.keys import RevokeApiKey
from domain.api_key import Role
from tests.support.api import (
    ADMIN_CLI,
    ENDPOINTS,
    Api,
    Endpoint,
    is_problem,
    request_confirmation,
    serve_api,
)


@pytest.fixture
def api(janus: Janus) -> Iterator[Api]:
    with serve_api(janus) as served:
        yield served


def credentials(api: Api) -> dict[str, tuple[dict[str, str], Role | None]]:
    """Name -> (headers, role the server should see; None when it must refuse the caller)."""
    revoked_name, revoked = api.new_key(Role.ADMIN)
    api.keys.revoke_key(RevokeApiKey(key_id=api.keys.find(revoked_name).id), ADMIN_CLI)
    real_id = re.fullmatch(r"jns_([0-9a-f]{32})_.*", api.tokens[Role.ADMIN])
    assert real_id is not None
    wrong_secret = f"jns_{real_id.group(1)}_{'A' * 43}"
    unknown = f"jns_{uuid4().hex}_{'B' * 43}"
    refused: dict[str, tuple[dict[str, str], Role | None]] = {
        "none": ({}, None),
        "not-bearer": ({"Authorization": "Basic YWRtaW46YWRtaW4="}, None),
        "malformed": ({"Authorization": "Bearer let-me-in"}, None),
        "unknown-key": ({"Authorization": f"Bearer {unknown}"}, None),
        "wrong-secret": ({"Authorization": f"Bearer {wrong_secret}"}, None),
        "revoked-key": ({"Authorization": f"Bearer {revoked}"}, None),
    }
    return refused | {role.value: (api.auth(role), role) for role in Role}


def call(api: Api, endpoint: Endpoint, headers: dict[str, str]) -> httpx.Response:
    path = re.sub(r"\{[a-z_]+\}", str(uuid4()), endpoint.path)
    return api.client.request(
        endpoint.method, path, headers=headers, json=endpoint.body, params=endpoint.query
    )


def test_the_matrix_covers_every_documented_operation(api: Api) -> None:
    documented = {
        f"{method.upper()} {path}"
        for path, operations in api.client.get("/openapi.json").json()["paths"].items()
        for method in operations
    }
    assert {e.id for e in ENDPOINTS} == documented


def test_every_endpoint_with_every_credential(api: Api) -> None:
    wrong: list[str] = []
    for name, (headers, role) in credentials(api).items():
        for endpoint in ENDPOINTS:
            response = call(api, endpoint, headers)
            status = response.status_code
            if endpoint.role is None:
                expected_ok = status not in (401, 403)
            elif role is None:
                expected_ok = is_problem(response, 401, "unauthorized")
            elif not role.allows(endpoint.role):
                expected_ok = is_problem(response, 403, "forbidden")
            else:
                expected_ok = status not in (401, 403) and status < 500
            if not expected_ok:
                wrong.append(f"{endpoint.id} as {name}: {status} {response.text[:120]}")
    assert wrong == []


def test_granting_a_high_hazard_needs_an_approver_whatever_else_the_key_may_do(
    api: Api, janus: Janus
) -> None:
    answers = {}
    for role in Role:
        _, confirmation_id = request_confirmation(janus, hazard="high")
        response = api.post(f"/v1/confirmations/{confirmation_id}/grant", role=role)
        answers[role] = response.status_code
    assert answers == {Role.VIEWER: 403, Role.OPERATOR: 403, Role.APPROVER: 200, Role.ADMIN: 200}
