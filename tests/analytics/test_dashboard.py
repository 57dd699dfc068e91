"""The dashboard's sign-in, session, headers and assets, through Flask's test client."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from importlib import resources

import pytest
from flask import Flask
from flask.testing import FlaskClient

from storecast.analytics.dashboard import TILES
from storecast.analytics.schemas import FleetKpis
from storecast.registry.setup import init_registry
from tests.registry.conftest import registry_config

ASSETS = resources.files("storecast.analytics")


@dataclass
class Cloud:
    app: Flask
    admin: str

    def client(self) -> FlaskClient:
        return self.app.test_client()

    def _admin_post(self, path: str, body: Mapping[str, object]) -> dict[str, str]:
        response = self.client().post(
            path, json=body, headers={"Authorization": f"Bearer {self.admin}"}
        )
        assert response.status_code == 201, response.get_json()
        return dict(response.get_json())

    def token(self, role: str) -> tuple[str, str]:
        """A new token of ``role``: (id, secret)."""
        made = self._admin_post("/v1/tokens", {"name": f"a {role}", "role": role})
        return made["id"], made["token"]

    def device_token(self, device_id: str) -> str:
        body = {"device_id": device_id, "store_id": "S001", "region": "north", "tags": []}
        return self._admin_post("/v1/devices", body)["token"]

    def revoke(self, token_id: str) -> None:
        response = self.client().delete(
            f"/v1/tokens/{token_id}", headers={"Authorization": f"Bearer {self.admin}"}
        )
        assert response.status_code == 200, response.get_json()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    """One cloud app (SQLite) for the module; each test mints its own tokens."""
    from storecast.cloud import create_app

    home = tmp_path_factory.mktemp("cloud")
    config = registry_config(home / "registry", f"sqlite:///{home / 'cloud.db'}")
    init = init_registry(config)
    app = create_app(config)
    yield Cloud(app, init.admin_token)
    app.extensions["storecast.database"].engine.dispose()


def signed_in(cloud: Cloud, role: str = "viewer") -> tuple[FlaskClient, str]:
    """A client whose session holds a fresh ``role`` token: (client, token id)."""
    token_id, secret = cloud.token(role)
    client = cloud.client()
    response = client.post("/dashboard/login", data={"token": secret})
    assert response.status_code == 303
    return client, token_id


def test_dashboard_without_a_session_redirects_to_the_login_form(cloud: Cloud) -> None:
    response = cloud.client().get("/dashboard")
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard/login"
    form = cloud.client().get("/dashboard/login")
    assert form.status_code == 200
    assert 'name="token"' in form.text


def test_a_viewer_token_signs_in_and_the_cookie_holds_only_its_id(cloud: Cloud) -> None:
    token_id, secret = cloud.token("viewer")
    client = cloud.client()
    response = client.post("/dashboard/login", data={"token": secret})
    assert response.status_code == 303
    assert response.headers["Location"] == "/dashboard"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert secret not in cookie
    with client.session_transaction() as session:
        assert dict(session) == {"token_id": token_id}
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert "a viewer" in page.text
    assert page.headers["Cache-Control"] == "no-store"


def test_admins_may_sign_in_too(cloud: Cloud) -> None:
    client, _ = signed_in(cloud, "admin")
    assert client.get("/dashboard").status_code == 200


@pytest.mark.parametrize("kind", ["unknown", "revoked", "device", "publisher", "oversized"])
def test_a_bad_or_non_viewer_token_gets_the_form_again_with_401(cloud: Cloud, kind: str) -> None:
    # Publishers may not read the analytics API, so the dashboard would be empty for them.
    if kind == "revoked":
        token_id, secret = cloud.token("viewer")
        cloud.revoke(token_id)
    elif kind == "device":
        secret = cloud.device_token("dev-login")
    elif kind == "publisher":
        secret = cloud.token("publisher")[1]
    elif kind == "unknown":
        secret = "sct_" + "x" * 43
    else:
        secret = "y" * 10_000
    client = cloud.client()
    response = client.post("/dashboard/login", data={"token": secret})
    assert response.status_code == 401
    assert 'data-testid="login-error"' in response.text
    assert 'name="token"' in response.text
    with client.session_transaction() as session:
        assert "token_id" not in session
    assert client.get("/dashboard").status_code == 302


def test_sign_ins_are_audited_without_the_secret(cloud: Cloud) -> None:
    _, secret = cloud.token("viewer")
    cloud.client().post("/dashboard/login", data={"token": secret})
    cloud.client().post("/dashboard/login", data={"token": "sct_wrong"})
    response = cloud.client().get(
        "/v1/audit?action=dashboard.login", headers={"Authorization": f"Bearer {cloud.admin}"}
    )
    records = response.get_json()["records"]
    assert {"ok", "denied"} <= {record["outcome"] for record in records}
    assert secret not in response.text
    assert "sct_wrong" not in response.text


def test_signing_out_ends_the_session(cloud: Cloud) -> None:
    client, _ = signed_in(cloud)
    response = client.post("/dashboard/logout")
    assert response.status_code == 303
    assert response.headers["Location"] == "/dashboard/login"
    with client.session_transaction() as session:
        assert "token_id" not in session
    assert client.get("/dashboard").status_code == 302


def test_revoking_the_token_ends_its_session(cloud: Cloud) -> None:
    client, token_id = signed_in(cloud)
    assert client.get("/dashboard").status_code == 200
    cloud.revoke(token_id)
    assert client.get("/dashboard").status_code == 302
    assert client.get("/dashboard/login").status_code == 200  # the form, not a redirect loop


def test_the_session_reads_the_api_but_changes_nothing(cloud: Cloud) -> None:
    client, _ = signed_in(cloud)
    assert client.get("/v1/audit").status_code == 200
    assert client.post("/v1/tokens", json={"name": "x", "role": "admin"}).status_code == 401


def test_the_session_reads_only_what_the_dashboard_shows(cloud: Cloud) -> None:
    # An admin's cookie is not an admin token: the registry's own reads and the device
    # poll still want a bearer token.
    client, _ = signed_in(cloud, "admin")
    assert client.get("/v1/analytics/fleet").status_code == 200
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/devices/dev-1/assignment").status_code == 401


def test_a_sign_in_posted_from_another_site_is_refused(cloud: Cloud) -> None:
    _, secret = cloud.token("viewer")
    client = cloud.client()
    foreign = {"Origin": "https://evil.example"}
    response = client.post("/dashboard/login", data={"token": secret}, headers=foreign)
    assert response.status_code == 403
    with client.session_transaction() as session:
        assert "token_id" not in session
    same_site = {"Origin": "http://localhost"}
    assert (
        client.post("/dashboard/login", data={"token": secret}, headers=same_site).status_code
        == 303
    )


def test_refresh_interval_comes_from_the_query_string_within_bounds(cloud: Cloud) -> None:
    client, _ = signed_in(cloud)

    def refresh(query: str) -> str:
        found = re.search(r'data-refresh-seconds="(\d+)"', client.get(f"/dashboard{query}").text)
        assert found is not None
        return found.group(1)

    assert refresh("") == "30"
    assert refresh("?refresh=5") == "5"
    assert refresh("?refresh=0") == "30"
    assert refresh("?refresh=soon") == "30"


def test_plotly_js_is_served_from_the_package_and_cached_for_good(cloud: Cloud) -> None:
    client, _ = signed_in(cloud)
    page = client.get("/dashboard").text
    found = re.search(r'src="(/dashboard/static/plotly\.min\.js\?v=[0-9a-f]{16})"', page)
    assert found is not None
    plain = cloud.client().get(found.group(1), headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert plain.mimetype == "text/javascript"
    assert b"plotly.js v" in plain.data[:200]
    cache = plain.headers["Cache-Control"]
    assert "max-age=31536000" in cache
    assert "immutable" in cache
    zipped = cloud.client().get(found.group(1), headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.data) == plain.data
    again = cloud.client().get(
        found.group(1),
        headers={"Accept-Encoding": "identity", "If-None-Match": plain.headers["ETag"]},
    )
    assert again.status_code == 304


class _Links(HTMLParser):
    """Every URL a page makes the browser load or send to."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in ("src", "href", "action"):
            if found.get(name) is not None:
                self.urls.append(str(found[name]))
        if tag == "script" and not found.get("src"):
            self.inline_scripts += 1
        if any(name.startswith("on") for name in found):
            self.inline_scripts += 1


@pytest.mark.parametrize("path", ["/dashboard/login", "/dashboard"])
def test_pages_load_nothing_from_elsewhere_and_run_no_inline_script(
    cloud: Cloud, path: str
) -> None:
    client, _ = signed_in(cloud)
    response = client.get(path) if path == "/dashboard" else cloud.client().get(path)
    assert response.status_code == 200
    links = _Links()
    links.feed(response.text)
    assert links.urls
    assert all(
        (url.startswith("/") and not url.startswith("//")) or url == "data:," for url in links.urls
    )
    assert links.inline_scripts == 0
    csp = dict(
        part.strip().split(" ", 1)
        for part in response.headers["Content-Security-Policy"].split(";")
    )
    assert csp["script-src"] == "'self'"
    assert csp["connect-src"] == "'self'"
    assert csp["default-src"] == "'none'"


@pytest.mark.parametrize("name", ["static/dashboard.js", "static/dashboard.css"])
def test_own_scripts_and_styles_name_no_external_url(name: str) -> None:
    text = (ASSETS / name).read_text()
    assert not re.search(r"https?://|@import|url\(", text)


def test_every_tile_reads_a_field_of_the_fleet_kpis() -> None:
    fields = FleetKpis.model_fields
    for tile in TILES:
        head, _, rest = tile.path.partition(".")
        assert head in fields, tile
        annotation = fields[head].annotation
        if rest and isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            assert rest in annotation.model_fields, tile
