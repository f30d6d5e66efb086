"""Schemathesis against the served /openapi.json, on the real app behind a real loopback server.

For every operation and both of schemathesis' generation modes (data that fits the schema, and data
that does not), up to 25 generated requests are sent with the API token; every answer must be no 5xx,
with a documented status code, content type and headers, and a body that matches its documented schema.
Deterministic: hypothesis is derandomized and keeps no example database.

(schemathesis' own pytest loader from a fixture relies on a pytest internal that pytest 9 removed, so
each operation's strategy is driven by hypothesis directly, which is schemathesis' documented Python API.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.web.openapi import OPERATIONS
from tests.gateway.test_openapi import LiveGateway, routes_of
from tests.support import AUTH

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
MAX_EXAMPLES = 25
SENT: list[str] = []


@pytest.fixture(scope="module")
def live_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    with LiveGateway(tmp_path_factory.mktemp("schemathesis")) as live:
        yield live
    print(f"\nschemathesis: {len(SENT)} requests to {len(OPERATIONS)} operations")


@pytest.fixture(scope="module")
def api_schema(live_gateway: LiveGateway) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live_gateway.url}/openapi.json")


def test_schemathesis_reads_every_served_operation(api_schema: schemathesis.BaseSchema,
                                                   live_gateway: LiveGateway) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]  # type: ignore[union-attr]
    seen = {(operation.method.upper(), operation.path) for operation in operations}
    # schemathesis leaves out the operation that serves the schema itself
    assert seen | {("GET", "/openapi.json")} == routes_of(live_gateway.app) == set(OPERATIONS)


def _has_input(operation: dict[str, Any]) -> bool:
    """Whether schemathesis can make a request that does not fit (else negative mode has nothing to vary)."""
    return bool(operation.get("parameters") or operation.get("requestBody") or operation.get("security") != [])


CASES = [(method, path, mode) for (method, path), operation in sorted(OPERATIONS.items())
         for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         if mode is GenerationMode.POSITIVE or _has_input(operation)]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_operation_conforms_and_never_answers_5xx(
    api_schema: schemathesis.BaseSchema, live_gateway: LiveGateway, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]
    sent_before = len(SENT)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case[Any]) -> None:
        SENT.append(f"{method} {path}")
        case.call_and_validate(base_url=live_gateway.url, headers=dict(AUTH), checks=CHECKS, timeout=30)

    run()
    assert len(SENT) > sent_before
