"""Property-based fuzzing of every endpoint from the OpenAPI document (schemathesis), on both
stores, over real HTTP: no input a client can send gets a 5xx, every error is problem+json, and
responses match the documented status codes, media types and schemas.

Valid and invalid requests are both generated (schemathesis' positive and negative modes), with
an admin key so requests reach the handlers; the auth matrix covers the other credentials.
``positive_data_acceptance`` is left out: some values the schema cannot constrain are refused
with a 422 naming the field (a min_position beyond the log, a cursor this API never issued, a
crontab that does not parse).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from bootstrap.container import Janus
from domain.api_key import Role
from tests.support.api import (
    ENDPOINTS,
    Api,
    Endpoint,
    request_confirmation,
    serve_api,
)

EXAMPLES = 40
PROBLEM_FIELDS = {"type", "title", "status", "detail"}


@pytest.fixture
def fuzzed(janus: Janus) -> Iterator[Api]:
    with serve_api(janus) as served:
        # Something to find: real ids let some generated requests reach past a 404.
        request_confirmation(janus, hazard="low")
        yield served


@schemathesis.check
def errors_are_problem_details(ctx: Any, response: Any, case: Case) -> bool | None:
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type == "application/problem+json", (
        f"{response.status_code} answered as {content_type!r}"
    )
    body = response.json()
    assert set(body) >= PROBLEM_FIELDS, f"problem without {PROBLEM_FIELDS - set(body)}"
    assert body["status"] == response.status_code
    assert body["type"].startswith("urn:janus:problem:")
    return None


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
def test_no_input_gets_a_server_error_and_every_error_is_a_problem(
    fuzzed: Api, endpoint: Endpoint
) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    # Unknown query parameters are ignored, as most APIs do, so do not send any.
    schema.config.generation.update(allow_extra_parameters=False)
    operation = schema[endpoint.path][endpoint.method]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def fuzz(case: Case) -> None:
        if endpoint.path == "/v1/events/stream":
            # A followed stream never ends on its own; fuzz everything else about it.
            case.query = {**(case.query or {}), "follow": "false"}
        case.call_and_validate(
            base_url=fuzzed.url,
            headers=fuzzed.auth(Role.ADMIN),
            timeout=30,
            excluded_checks=[positive_data_acceptance],
        )

    fuzz()
