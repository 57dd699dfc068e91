"""docs/api.md is generated from the running code's OpenAPI document and must match it."""

from __future__ import annotations

from pathlib import Path

from storecast.cloud.apidoc import cloud_openapi, render

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_api_reference_matches_the_openapi_document() -> None:
    assert DOC.read_text() == render(cloud_openapi()), "run `make docs` and commit docs/api.md"


def test_every_operation_has_a_summary_tag_and_error_response() -> None:
    document = cloud_openapi()
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            assert op["summary"], (method, path)
            assert op["tags"], (method, path)
            assert "default" in op["responses"], (method, path)
