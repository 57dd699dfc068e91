"""``storecast.common.web`` (JSON errors, typed bodies) and ``openapi_document``, on a tiny app."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from storecast.common import web
from storecast.common.openapi import openapi_document
from storecast.common.web import ApiError, endpoint, parse_body, parse_query, validation_error


class Widget(BaseModel):
    """A widget."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    size: int = Field(ge=1)


class Page(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=10, ge=1)
    cursor: str | None = None


@pytest.fixture
def app() -> Flask:
    """A tiny app using every part of ``storecast.common.web``."""
    app = Flask("tiny")
    web.init_app(app)

    @endpoint(
        "Make a widget",
        tag="widgets",
        roles=("maker",),
        body=Widget,
        responses={201: Widget},
    )
    def make_widget() -> tuple[dict[str, Any], int]:
        return parse_body(Widget).model_dump(), 201

    @endpoint("List widgets", tag="widgets", query=Page, alt_media=("text/csv",))
    def list_widgets() -> dict[str, Any]:
        return {"page": parse_query(Page).model_dump()}

    @endpoint("A widget", tag="widgets", responses={200: Widget, 304: None})
    def show_widget(number: int) -> dict[str, Any]:
        raise ApiError(404, "not_found", f"no widget {number}", hint="try 1")

    @endpoint("Upload a blob", tag="blobs", body_media="application/x-tar")
    def upload(name: str) -> str:
        return ""

    def boom() -> str:
        raise RuntimeError("secret internals")

    def undocumented() -> str:
        return "hidden"

    app.add_url_rule("/widgets", "make_widget", make_widget, methods=["POST"])
    app.add_url_rule("/widgets", "list_widgets", list_widgets, methods=["GET"])
    app.add_url_rule("/widgets/<int:number>", "show_widget", show_widget, methods=["GET"])
    app.add_url_rule("/blobs/<name>", "upload", upload, methods=["PUT"])
    app.add_url_rule("/boom", "boom", boom)
    app.add_url_rule("/undocumented", "undocumented", undocumented)
    return app


def error_of(response: Any) -> dict[str, Any]:
    """The ``error`` object of a JSON error response (and check its shape)."""
    assert response.is_json, response.data
    body = response.get_json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["code"], str)
    assert isinstance(body["error"]["message"], str)
    return dict(body["error"])


# -- validation_error --------------------------------------------------------------------------


def test_validation_error_is_a_422_naming_every_refused_field():
    with pytest.raises(ValidationError) as caught:
        Widget.model_validate({"name": "", "size": 0, "colour": "red"})
    err = validation_error(caught.value)
    assert (err.status, err.code) == (422, "validation_error")
    assert {f["field"] for f in err.extra["fields"]} == {"name", "size", "colour"}
    assert err.message.startswith(err.extra["fields"][0]["field"] + ": ")


def test_validation_error_names_nested_fields_with_dots():
    class Outer(BaseModel):
        inner: Widget

    with pytest.raises(ValidationError) as caught:
        Outer.model_validate({"inner": {"name": "x", "size": "big"}})
    err = validation_error(caught.value)
    assert [f["field"] for f in err.extra["fields"]] == ["inner.size"]
    assert err.message.startswith("inner.size: ")


def test_validation_error_of_a_whole_body_names_the_body():
    with pytest.raises(ValidationError) as caught:
        Widget.model_validate(["not", "an", "object"])
    err = validation_error(caught.value)
    assert err.extra["fields"][0]["field"] == "(body)"


# -- parse_body and parse_query ----------------------------------------------------------------


def test_parse_body_returns_the_validated_model(app):
    with app.test_request_context("/widgets", method="POST", json={"name": "w", "size": 2}):
        assert parse_body(Widget) == Widget(name="w", size=2)


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": '{"name": "w"', "content_type": "application/json"}, 400, "malformed_json"),
        ({"data": b"\xff\xfe{}", "content_type": "application/json"}, 400, "malformed_json"),
        ({"data": "", "content_type": "application/json"}, 400, "malformed_json"),
        ({"data": '{"name": "w", "size": 1}', "content_type": "text/plain"}, 415, None),
        ({"data": '{"name": "w", "size": 1}'}, 415, None),
        ({"json": {"name": "w", "size": 1, "extra": True}}, 422, "validation_error"),
        ({"json": {"name": "w"}}, 422, "validation_error"),
    ],
    ids=[
        "truncated-json",
        "not-utf8",
        "empty-body",
        "text-plain",
        "no-content-type",
        "unknown-field",
        "missing-field",
    ],
)
def test_parse_body_refuses_bad_bodies_with_the_right_status(app, kwargs, status, code):
    with (
        app.test_request_context("/widgets", method="POST", **kwargs),
        pytest.raises(ApiError) as caught,
    ):
        parse_body(Widget)
    assert caught.value.status == status
    if code is not None:
        assert caught.value.code == code


def test_parse_body_accepts_a_json_media_type_with_parameters(app):
    with app.test_request_context(
        "/widgets",
        method="POST",
        data='{"name": "w", "size": 1}',
        content_type="application/json; charset=utf-8",
    ):
        assert parse_body(Widget).size == 1


def test_parse_query_names_the_refused_parameter(app):
    with app.test_request_context("/widgets?limit=0&sort=up"), pytest.raises(ApiError) as caught:
        parse_query(Page)
    assert caught.value.status == 422
    assert {f["field"] for f in caught.value.extra["fields"]} == {"limit", "sort"}


# -- the handlers init_app installs ------------------------------------------------------------


def test_unknown_fields_come_back_as_a_json_422_naming_the_field(app):
    response = app.test_client().post("/widgets", json={"name": "w", "size": 1, "colour": "red"})
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert error["fields"] == [{"field": "colour", "message": "Extra inputs are not permitted"}]
    assert "colour" in error["message"]


def test_malformed_json_and_wrong_media_type_are_json_errors(app):
    client = app.test_client()
    bad = client.post("/widgets", data="{", content_type="application/json")
    assert (bad.status_code, error_of(bad)["code"]) == (400, "malformed_json")
    plain = client.post("/widgets", data="{}", content_type="text/plain")
    assert (plain.status_code, error_of(plain)["code"]) == (415, "unsupported_media_type")


def test_api_error_extra_fields_are_part_of_the_error_object(app):
    response = app.test_client().get("/widgets/7")
    assert response.status_code == 404
    assert error_of(response) == {"code": "not_found", "message": "no widget 7", "hint": "try 1"}


def test_werkzeug_errors_are_json_and_405_keeps_its_allow_header(app):
    client = app.test_client()
    missing = client.get("/nowhere")
    assert (missing.status_code, error_of(missing)["code"]) == (404, "not_found")
    wrong_method = client.delete("/widgets")
    assert wrong_method.status_code == 405
    assert error_of(wrong_method)["code"] == "method_not_allowed"
    assert set(wrong_method.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_an_unexpected_exception_is_a_500_without_a_stack_trace(app, caplog):
    response = app.test_client().get("/boom", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "internal_error"
    assert "req-42" in error["message"]
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert "secret internals" in caplog.text  # logged for the operator, not shown


def test_a_sane_request_id_is_echoed_and_an_unsafe_one_replaced(app):
    client = app.test_client()

    def echo(request_id: str | None) -> str:
        headers = {"X-Request-ID": request_id} if request_id is not None else {}
        return str(client.get("/undocumented", headers=headers).headers["X-Request-ID"])

    assert echo("abc.DEF_1-2") == "abc.DEF_1-2"
    for unsafe in ("has space", "x" * 65, "semi;colon", ""):
        replaced = echo(unsafe)
        assert replaced != unsafe
        assert len(replaced) == 32
    assert len(echo(None)) == 32


# -- openapi_document --------------------------------------------------------------------------


def test_openapi_document_describes_only_views_with_a_spec(app):
    doc = openapi_document(app, "tiny", "1.2.3")
    assert doc["openapi"].startswith("3.1")
    assert doc["info"] == {"title": "tiny", "version": "1.2.3"}
    assert set(doc["paths"]) == {"/widgets", "/widgets/{number}", "/blobs/{name}"}
    assert set(doc["paths"]["/widgets"]) == {"get", "post"}
    assert set(doc["paths"]["/widgets/{number}"]) == {"get"}  # no head or options
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}


def test_openapi_path_parameters_follow_the_flask_converters(app):
    doc = openapi_document(app, "tiny", "1")
    (number,) = doc["paths"]["/widgets/{number}"]["get"]["parameters"]
    assert number == {
        "name": "number",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
    (name,) = doc["paths"]["/blobs/{name}"]["put"]["parameters"]
    assert name["schema"] == {"type": "string", "pattern": "^[^/]+$"}


def test_openapi_roles_become_bearer_security_and_a_description(app):
    doc = openapi_document(app, "tiny", "1")
    post = doc["paths"]["/widgets"]["post"]
    assert post["security"] == [{"bearer": []}]
    assert post["description"] == "Roles: maker."
    assert "security" not in doc["paths"]["/widgets"]["get"]


def test_openapi_bodies_and_responses_reference_component_schemas(app):
    doc = openapi_document(app, "tiny", "1")
    post = doc["paths"]["/widgets"]["post"]
    ref = {"$ref": "#/components/schemas/Widget"}
    assert post["requestBody"]["content"] == {"application/json": {"schema": ref}}
    assert post["requestBody"]["required"] is True
    assert post["responses"]["201"]["content"]["application/json"]["schema"] == ref
    assert post["responses"]["201"]["description"] == "A widget."
    widget = doc["components"]["schemas"]["Widget"]
    assert widget["additionalProperties"] is False
    assert set(widget["required"]) == {"name", "size"}


def test_openapi_raw_bodies_304s_and_alternative_media_are_described(app):
    doc = openapi_document(app, "tiny", "1")
    upload = doc["paths"]["/blobs/{name}"]["put"]["requestBody"]["content"]
    assert upload == {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}
    show = doc["paths"]["/widgets/{number}"]["get"]["responses"]
    assert show["304"] == {"description": "no body"}
    listing = doc["paths"]["/widgets"]["get"]["responses"]
    assert "text/csv" in listing["200"]["content"]


def test_openapi_query_models_become_query_parameters(app):
    doc = openapi_document(app, "tiny", "1")
    params = {p["name"]: p for p in doc["paths"]["/widgets"]["get"]["parameters"]}
    assert set(params) == {"limit", "cursor"}
    assert all(p["in"] == "query" and p["required"] is False for p in params.values())
    assert params["limit"]["schema"]["minimum"] == 1


def test_openapi_every_operation_documents_the_json_error_body(app):
    doc = openapi_document(app, "tiny", "1")
    for operations in doc["paths"].values():
        for op in operations.values():
            default = op["responses"]["default"]["content"]["application/json"]["schema"]
            assert default == {"$ref": "#/components/schemas/ErrorBody"}
    error_detail = doc["components"]["schemas"]["ErrorDetail"]
    assert set(error_detail["required"]) == {"code", "message"}
