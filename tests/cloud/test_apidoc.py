"""docs/api.md is generated from the running code's OpenAPI document and must match it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storecast.cloud.apidoc import cloud_openapi, edge_openapi, reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_api_reference_matches_the_openapi_document() -> None:
    assert DOC.read_text() == reference(), "run `make docs` and commit docs/api.md"


def test_every_operation_has_a_summary_tag_and_error_response() -> None:
    for document in (cloud_openapi(), edge_openapi()):
        _check_operations(document)


def _check_operations(document: dict[str, Any]) -> None:
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            assert op["summary"], (method, path)
            assert op["tags"], (method, path)
            assert "default" in op["responses"], (method, path)
