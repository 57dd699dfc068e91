"""Who may call what: every documented operation against every kind of caller.

One SQLite registry serves the whole table (no call in it changes anything a later call
depends on: ids in paths name things that do not exist, and bodies are left out so
allowed mutating calls stop at validation).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from storecast.registry.setup import init_registry
from tests.registry.conftest import LiveRegistry, registry_config, serve_registry

PUBLIC = frozenset({"anyone"})
STAFF_READERS = frozenset({"admin", "viewer", "publisher"})
TUF_READERS = frozenset({"admin", "viewer", "publisher", "device"})
VIEWERS = frozenset({"admin", "viewer"})
DEVICE_ONLY = frozenset({"device"})

# Who may call each operation, as the views' ``@authorize`` say (admin may call anything).
ACCESS: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/tuf/metadata/{name}"): TUF_READERS,
    ("GET", "/tuf/targets/{path}"): TUF_READERS,
    ("GET", "/v1/artifacts/{sha256}"): STAFF_READERS,
    ("GET", "/v1/audit"): frozenset({"admin", "viewer"}),
    ("GET", "/v1/audit/verify"): frozenset({"admin", "viewer"}),
    ("GET", "/v1/deployments"): STAFF_READERS,
    ("POST", "/v1/deployments"): frozenset({"admin", "publisher"}),
    ("GET", "/v1/deployments/{deployment_id}"): STAFF_READERS,
    ("GET", "/v1/deployments/{deployment_id}/readout"): STAFF_READERS,
    ("POST", "/v1/deployments/{deployment_id}/promote"): frozenset({"admin", "publisher"}),
    ("POST", "/v1/deployments/{deployment_id}/pause"): frozenset({"admin", "publisher"}),
    ("POST", "/v1/deployments/{deployment_id}/resume"): frozenset({"admin", "publisher"}),
    ("POST", "/v1/deployments/{deployment_id}/abort"): frozenset({"admin", "publisher"}),
    ("GET", "/v1/devices"): frozenset({"admin", "viewer"}),
    ("POST", "/v1/devices"): frozenset({"admin"}),
    ("GET", "/v1/devices/{device_id}"): frozenset({"admin", "viewer", "device"}),
    ("DELETE", "/v1/devices/{device_id}"): frozenset({"admin"}),
    ("GET", "/v1/devices/{device_id}/assignment"): frozenset({"admin", "device"}),
    ("GET", "/v1/models"): STAFF_READERS,
    ("POST", "/v1/models"): frozenset({"admin", "publisher"}),
    ("GET", "/v1/models/{name}"): STAFF_READERS,
    ("PUT", "/v1/models/{name}/aliases/{alias}"): frozenset({"admin", "publisher"}),
    ("DELETE", "/v1/models/{name}/aliases/{alias}"): frozenset({"admin", "publisher"}),
    ("GET", "/v1/models/{name}/next-version"): STAFF_READERS,
    ("GET", "/v1/models/{name}/versions/{version}"): STAFF_READERS,
    ("POST", "/v1/models/{name}/versions/{version}/withdraw"): frozenset({"admin", "publisher"}),
    ("GET", "/v1/tokens"): frozenset({"admin"}),
    ("POST", "/v1/tokens"): frozenset({"admin"}),
    ("DELETE", "/v1/tokens/{token_id}"): frozenset({"admin"}),
    ("POST", "/v1/devices/{device_id}/token"): frozenset({"admin"}),
    # Analytics (the cloud app serves both): telemetry comes from devices only, even an
    # admin token has no device to speak for; every read is a viewer's.
    ("POST", "/v1/telemetry"): DEVICE_ONLY,
    ("GET", "/v1/analytics/stores"): VIEWERS,
    ("GET", "/v1/analytics/stores/{store_id}/summary"): VIEWERS,
    ("GET", "/v1/analytics/models"): VIEWERS,
    ("GET", "/v1/analytics/fleet"): VIEWERS,
    ("GET", "/v1/analytics/fleet/series"): VIEWERS,
    ("GET", "/v1/analytics/model-events"): VIEWERS,
    ("GET", "/v1/analytics/usage/forecasts"): VIEWERS,
    ("GET", "/v1/analytics/usage/api"): VIEWERS,
    ("GET", "/v1/analytics/rootcause"): VIEWERS,
    ("GET", "/v1/analytics/incidents"): VIEWERS,
    ("GET", "/v1/analytics/rollouts"): VIEWERS,
}

ROLES = ("admin", "publisher", "viewer", "device")
NOBODY = ("no token", "unknown token", "revoked token")
OWN_DEVICE, OTHER_DEVICE = "dev-a", "dev-b"
DIGEST = "0" * 64

# Path parameters: the caller's own device (reads), and things that do not exist
# (writes), so that no allowed call changes what later cases see.
PATH_VALUES = {
    "name": "demand-lstm",
    "version": "1",
    "alias": "production",
    "deployment_id": "1",
    "token_id": "tok_0000000000000000",
    "sha256": DIGEST,
    "path": f"demand-lstm/{DIGEST}.demand-lstm-v1.tar",
    "store_id": "store-1",
}
OVERRIDES = {
    ("GET", "/tuf/metadata/{name}"): {"name": "timestamp.json"},
    ("DELETE", "/v1/devices/{device_id}"): {"device_id": "ghost"},
    ("POST", "/v1/devices/{device_id}/token"): {"device_id": "ghost"},
}


def concrete(method: str, template: str) -> str:
    values = {**PATH_VALUES, "device_id": OWN_DEVICE, **OVERRIDES.get((method, template), {})}
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)


@dataclass
class RoleRegistry:
    """A live registry and a token of every kind."""

    live: LiveRegistry
    secrets: dict[str, str | None]

    def call(self, caller: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self.live.client(self.secrets[caller]) as http:
            return http.request(method, path, **kwargs)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoleRegistry]:
    home = tmp_path_factory.mktemp("roles")
    config = registry_config(home / "registry", f"sqlite:///{home / 'cloud.db'}")
    with serve_registry(config, init_registry(config)) as live:
        with live.client(live.admin) as http:
            doomed = http.post("/v1/tokens", json={"name": "doomed", "role": "viewer"}).json()
            http.delete(f"/v1/tokens/{doomed['id']}").raise_for_status()
        secrets: dict[str, str | None] = {
            "no token": None,
            "unknown token": "sct_this-token-was-never-issued",
            "revoked token": doomed["token"],
            "admin": live.admin,
            "publisher": live.token("publisher"),
            "viewer": live.token("viewer"),
            "device": live.enrol(OWN_DEVICE, "store-1"),
        }
        live.enrol(OTHER_DEVICE, "store-2")
        yield RoleRegistry(live, secrets)


def assert_json_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["code"], str)
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code


# -- the table is complete ---------------------------------------------------------------------


def test_the_access_table_lists_exactly_the_documented_operations(registry):
    document = registry.call("no token", "GET", "/openapi.json").json()
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert documented == set(ACCESS)


def test_every_route_but_static_files_is_documented(registry):
    # The dashboard's HTML pages and assets are a web page, not the API.
    app: Any = registry.live.app
    undocumented = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        and not rule.endpoint.startswith("dashboard.")
        and not hasattr(app.view_functions[rule.endpoint], "storecast_spec")
    ]
    assert undocumented == []


def test_the_documented_roles_are_the_enforced_roles(registry):
    document = registry.call("no token", "GET", "/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            allowed = ACCESS[(method.upper(), path)]
            if allowed == PUBLIC:
                assert "security" not in op, (method, path)
                continue
            assert op["security"] == [{"bearer": []}], (method, path)
            documented = re.fullmatch(r"Roles: (.*)\.", op["description"])
            assert documented is not None, (method, path)
            roles = set(documented.group(1).split(", "))
            assert (roles if allowed == DEVICE_ONLY else {"admin", *roles}) == allowed, path


# -- every operation against every caller ------------------------------------------------------


CASES = [
    pytest.param(method, path, caller, id=f"{method} {path} as {caller}")
    for (method, path) in ACCESS
    for caller in (*NOBODY, *ROLES)
]


@pytest.mark.parametrize(("method", "path", "caller"), CASES)
def test_each_caller_is_let_in_or_refused_as_the_operation_allows(registry, method, path, caller):
    response = registry.call(caller, method, concrete(method, path))
    allowed = ACCESS[(method, path)]
    if allowed == PUBLIC:
        assert response.status_code == 200, response.text
    elif caller in NOBODY:
        assert_json_error(response, 401, "unauthorized")
    elif caller in allowed:
        assert response.status_code not in (401, 403), response.text
        assert response.status_code < 500, response.text
    else:
        assert_json_error(response, 403, "forbidden")
    if response.status_code >= 400:
        assert_json_error(response, response.status_code)


@pytest.mark.parametrize("path", ["/v1/devices/{id}", "/v1/devices/{id}/assignment"])
@pytest.mark.parametrize("device_id", [OTHER_DEVICE, "never-enrolled"])
def test_a_device_token_may_not_see_another_device(registry, path, device_id):
    response = registry.call("device", "GET", path.format(id=device_id))
    assert_json_error(response, 403, "forbidden")


@pytest.mark.parametrize("path", ["/v1/devices/{id}", "/v1/devices/{id}/assignment"])
def test_a_device_token_sees_its_own_device(registry, path):
    response = registry.call("device", "GET", path.format(id=OWN_DEVICE))
    assert response.status_code == 200, response.text
    assert response.json()["device_id"] == OWN_DEVICE


def test_a_viewer_may_not_poll_a_device_assignment(registry):
    response = registry.call("viewer", "GET", f"/v1/devices/{OWN_DEVICE}/assignment")
    assert_json_error(response, 403, "forbidden")


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Token {secret}",
        "{secret}",
        "Bearer {secret}x",
    ],
)
def test_a_malformed_authorization_header_is_a_401(registry, header):
    secret = registry.secrets["admin"]
    with httpx.Client(base_url=registry.live.url) as http:
        response = http.get("/v1/tokens", headers={"Authorization": header.format(secret=secret)})
    assert_json_error(response, 401, "unauthorized")


def test_the_bearer_scheme_is_case_insensitive(registry):
    secret = registry.secrets["viewer"]
    with httpx.Client(base_url=registry.live.url) as http:
        response = http.get("/v1/models", headers={"Authorization": f"bearer {secret}"})
    assert response.status_code == 200


def test_a_revoked_token_is_refused_on_the_very_next_request(registry):
    with registry.live.client(registry.secrets["admin"]) as admin:
        made = admin.post("/v1/tokens", json={"name": "short-lived", "role": "publisher"}).json()
        with registry.live.client(made["token"]) as publisher:
            assert publisher.get("/v1/models").status_code == 200
            revoked = admin.delete(f"/v1/tokens/{made['id']}")
            assert revoked.status_code == 200
            assert revoked.json()["revoked"] is True
            assert_json_error(publisher.get("/v1/models"), 401, "unauthorized")


def test_device_tokens_come_only_from_enrolment(registry):
    with registry.live.client(registry.secrets["admin"]) as admin:
        response = admin.post("/v1/tokens", json={"name": "sneaky", "role": "device"})
    assert_json_error(response, 422, "validation_error")
    assert response.json()["error"]["fields"][0]["field"] == "role"
