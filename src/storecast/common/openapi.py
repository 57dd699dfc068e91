"""The OpenAPI 3.1 document of a storecast Flask app, built from its ``endpoint`` specs."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from pydantic import BaseModel

from storecast.common.web import EndpointSpec, ErrorBody

_PARAM = re.compile(r"<(?:(?P<conv>[a-z]+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>\w+)>")
_REF = "#/components/schemas/{model}"


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=_REF)
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": _REF.format(model=model.__name__)}


def _path_and_params(rule: str) -> tuple[str, list[dict[str, Any]]]:
    params = []
    for match in _PARAM.finditer(rule):
        conv = match.group("conv") or "string"
        schema: dict[str, Any] = {"type": "string"}
        if conv == "int":
            bounds = dict(
                part.split("=") for part in (match.group("args") or "").split(",") if part
            )
            schema = {"type": "integer", "minimum": int(bounds.get("min", 0))}
            if "max" in bounds:
                schema["maximum"] = int(bounds["max"])
        if conv in ("string", "default"):
            schema["pattern"] = "^[^/]+$"
        params.append(
            {"name": match.group("name"), "in": "path", "required": True, "schema": schema}
        )
    return _PARAM.sub(r"{\g<name>}", rule), params


def _query_params(model: type[BaseModel], components: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=_REF)
    components.update(schema.pop("$defs", {}))
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


def _operation(
    spec: EndpointSpec, params: list[dict[str, Any]], components: dict[str, Any]
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": spec.summary, "tags": [spec.tag]}
    if spec.roles:
        op["security"] = [{"bearer": []}]
        op["description"] = "Roles: " + ", ".join(spec.roles) + "."
    if spec.query is not None:
        params = params + _query_params(spec.query, components)
    if params:
        op["parameters"] = params
    if spec.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema(spec.body, components)}},
        }
    elif spec.body_media is not None:
        op["requestBody"] = {
            "required": True,
            "content": {spec.body_media: {"schema": {"type": "string", "format": "binary"}}},
        }
    responses: dict[str, Any] = {}
    for status, kind in spec.responses.items():
        if kind is None:
            responses[str(status)] = {"description": "no body" if status == 304 else "OK"}
        elif isinstance(kind, str):
            responses[str(status)] = {"description": "OK", "content": {kind: {"schema": {}}}}
        else:
            responses[str(status)] = {
                "description": kind.__doc__ or "OK",
                "content": {"application/json": {"schema": _schema(kind, components)}},
            }
        if status == 200:
            for media in spec.alt_media:
                responses["200"].setdefault("content", {})[media] = {"schema": {}}
    responses["default"] = {
        "description": "an error",
        "content": {"application/json": {"schema": _schema(ErrorBody, components)}},
    }
    op["responses"] = responses
    return op


def openapi_document(app: Flask, title: str, version: str) -> dict[str, Any]:
    """Describe every view of ``app`` that carries an ``EndpointSpec``."""
    components: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        spec = getattr(app.view_functions.get(rule.endpoint), "storecast_spec", None)
        if spec is None:
            continue
        path, params = _path_and_params(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(spec, params, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
