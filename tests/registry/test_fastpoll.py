"""The poll's fast path answers exactly as the Flask view does, and only when it may."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from storecast.cloud import create_app
from storecast.registry.config import RegistryConfig
from storecast.registry.fastpoll import FastPoll
from storecast.registry.setup import init_registry
from tests.registry.conftest import MakeBundle


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    config = RegistryConfig(home=tmp_path / "registry")
    init = init_registry(config)
    app = create_app(config)
    app.config["admin"] = init.admin_token
    return app


def test_fast_and_flask_paths_give_the_same_answers(app: Flask, make_bundle: MakeBundle) -> None:
    admin = {"Authorization": f"Bearer {app.config['admin']}"}
    client = app.test_client()
    published = client.post(
        "/v1/models", data=make_bundle(1), headers={**admin, "Content-Type": "application/x-tar"}
    )
    assert published.status_code == 201
    token = client.post(
        "/v1/devices", headers=admin, json={"device_id": "d1", "store_id": "s1", "region": "north"}
    ).json["token"]
    assert (
        client.post(
            "/v1/deployments", headers=admin, json={"model": "demand-lstm", "version": 1}
        ).status_code
        == 201
    )
    fast = app.wsgi_app
    assert isinstance(fast, FastPoll)

    def both(path: str, headers: dict[str, str]) -> list[tuple[int, object, str | None]]:
        answers = []
        for wsgi in (fast, fast._app):
            app.wsgi_app = wsgi  # type: ignore[method-assign]
            response = app.test_client().get(path, headers=headers)
            answers.append(
                (response.status_code, response.get_json(silent=True), response.headers.get("ETag"))
            )
        app.wsgi_app = fast  # type: ignore[method-assign]
        return answers

    device = {"Authorization": f"Bearer {token}"}
    path = "/v1/devices/d1/assignment"
    first, second = both(path, device)
    assert first == second and first[0] == 200 and first[1]["version"] == 1  # type: ignore[index]
    etag = first[2]
    assert etag is not None
    first, second = both(path, {**device, "If-None-Match": etag})
    assert first == second and first[0] == 304
    first, second = both(path + "?current_model=demand-lstm&current_version=1", device)
    assert first == second and first[0] == 200
    # What the fast path leaves to Flask still gets Flask's answers.
    for headers, query, status in [
        ({}, "", 401),
        ({"Authorization": "Bearer nope"}, "", 401),
        (admin, "", 200),
        (device, "?current_version=0", 422),
        (device, "?current_version=1&current_version=2", 200),
    ]:
        first, second = both(path + query, headers)
        assert first == second and first[0] == status, (headers, query, first)
    other = {"Authorization": f"Bearer {token}"}
    assert app.test_client().get("/v1/devices/d2/assignment", headers=other).status_code == 403
