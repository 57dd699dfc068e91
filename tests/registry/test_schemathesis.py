"""Property tests of the whole API against its own OpenAPI document (schemathesis).

Every operation the live registry documents at ``/openapi.json`` gets generated requests,
valid and invalid, sent as an admin (who may call anything). Each response must not be a
5xx and must match the documented status codes, media types and JSON schemas.

``schemathesis.pytest.from_fixture`` cannot be used with pytest 9 (it writes
``Node._nodeid``, which pytest 9 removed), so each operation is its own parametrized test
that drives the operation's Hypothesis strategy directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from storecast.registry.setup import init_registry
from tests.analytics.conftest import HOUR0, EventMaker
from tests.registry.conftest import LiveRegistry, registry_config, serve_registry

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 30  # per operation; keeps the whole module well under a minute

OPERATIONS = [
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/tuf/metadata/{name}"),
    ("GET", "/tuf/targets/{path}"),
    ("GET", "/v1/artifacts/{sha256}"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/audit/verify"),
    ("GET", "/v1/deployments"),
    ("POST", "/v1/deployments"),
    ("GET", "/v1/deployments/{deployment_id}"),
    ("GET", "/v1/deployments/{deployment_id}/readout"),
    ("POST", "/v1/deployments/{deployment_id}/promote"),
    ("POST", "/v1/deployments/{deployment_id}/pause"),
    ("POST", "/v1/deployments/{deployment_id}/resume"),
    ("POST", "/v1/deployments/{deployment_id}/abort"),
    ("GET", "/v1/devices"),
    ("POST", "/v1/devices"),
    ("GET", "/v1/devices/{device_id}"),
    ("DELETE", "/v1/devices/{device_id}"),
    ("GET", "/v1/devices/{device_id}/assignment"),
    ("GET", "/v1/models"),
    ("POST", "/v1/models"),
    ("GET", "/v1/models/{name}"),
    ("PUT", "/v1/models/{name}/aliases/{alias}"),
    ("DELETE", "/v1/models/{name}/aliases/{alias}"),
    ("GET", "/v1/models/{name}/next-version"),
    ("GET", "/v1/models/{name}/versions/{version}"),
    ("POST", "/v1/models/{name}/versions/{version}/withdraw"),
    ("GET", "/v1/tokens"),
    ("POST", "/v1/tokens"),
    ("DELETE", "/v1/tokens/{token_id}"),
    ("POST", "/v1/devices/{device_id}/token"),
    ("POST", "/v1/telemetry"),
    ("GET", "/v1/analytics/stores"),
    ("GET", "/v1/analytics/stores/{store_id}/summary"),
    ("GET", "/v1/analytics/models"),
    ("GET", "/v1/analytics/fleet"),
    ("GET", "/v1/analytics/fleet/series"),
    ("GET", "/v1/analytics/model-events"),
    ("GET", "/v1/analytics/usage/forecasts"),
    ("GET", "/v1/analytics/usage/api"),
    ("GET", "/v1/analytics/rootcause"),
    ("GET", "/v1/analytics/incidents"),
    ("GET", "/v1/analytics/rollouts"),
]
DEVICE_CALLS = {("POST", "/v1/telemetry")}  # sent with the enrolled device's token


_DEVICE_TOKENS: dict[str, str] = {}  # live registry URL -> its enrolled device's token


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory, bundle_v1: bytes) -> Iterator[LiveRegistry]:
    """A SQLite cloud with a published model, an alias, a deployment, an enrolled device and
    some of its telemetry."""
    home = tmp_path_factory.mktemp("schemathesis")
    config = registry_config(home / "registry", f"sqlite:///{home / 'cloud.db'}")
    with serve_registry(config, init_registry(config)) as live:
        with live.client(live.admin) as http:
            http.post(
                "/v1/models", content=bundle_v1, headers={"Content-Type": "application/x-tar"}
            ).raise_for_status()
            http.put(
                "/v1/models/demand-lstm/aliases/production", json={"version": 1}
            ).raise_for_status()
            http.post(
                "/v1/deployments", json={"model": "demand-lstm", "alias": "production"}
            ).raise_for_status()
        device_token = live.enrol("dev-1", "store-1", region="north", tags=["pilot"])
        _DEVICE_TOKENS[live.url] = device_token
        maker = EventMaker("dev-1", "store-1")
        events = [maker.heartbeat(HOUR0), maker.inference(HOUR0, [3, 2], errors=1)]
        events += [maker.forecast(HOUR0, [4.0, 5.0]), maker.actual(HOUR0, 4.5)]
        with live.client(device_token) as device:
            device.post("/v1/telemetry", json={"events": events}).raise_for_status()
        yield live


@pytest.fixture(scope="module")
def api_schema(populated: LiveRegistry) -> Any:
    """The live registry's own OpenAPI document; bundles are sent as raw bytes."""
    schemathesis.serializer.alias("application/x-tar", "application/octet-stream")
    return schemathesis.openapi.from_url(f"{populated.url}/openapi.json")


def test_the_operation_list_is_what_the_registry_documents(api_schema):
    documented = {
        (method.upper(), path)
        for path, operations in api_schema.raw_schema["paths"].items()
        for method in operations
    }
    assert documented == set(OPERATIONS)


@pytest.mark.parametrize(
    ("method", "path"),
    [pytest.param(m, p, id=f"{m} {p}") for m, p in OPERATIONS],
)
def test_every_operation_answers_as_documented(api_schema, populated, method, path):
    operation = api_schema[path][method]
    modes = [GenerationMode.POSITIVE]
    if operation.path_parameters or operation.query or operation.body:
        modes.append(GenerationMode.NEGATIVE)
    cases = st.one_of(*(operation.as_strategy(generation_mode=mode) for mode in modes))
    token = _DEVICE_TOKENS[populated.url] if (method, path) in DEVICE_CALLS else populated.admin
    auth = {"Authorization": f"Bearer {token}"}

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def answers_as_documented(case: Any) -> None:
        case.call_and_validate(base_url=populated.url, headers=auth, checks=CHECKS)

    answers_as_documented()
