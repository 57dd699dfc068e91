"""``docs/api.md``, generated from the OpenAPI documents of the cloud app and the edge agent.

``python -m storecast.cloud.apidoc docs/api.md`` rewrites it (``make docs``); a test fails
when the committed page and the running code disagree.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from storecast.common.files import atomic_write_bytes
from storecast.common.openapi import openapi_document

log = logging.getLogger(__name__)

HEADER = """\
# Cloud API reference

Generated from the OpenAPI document the cloud app serves at `/openapi.json`
(`make docs` regenerates this page). Every endpoint answers errors as
`{"error": {"code": "...", "message": "..."}}`. Send tokens as `Authorization: Bearer ...`;
admin tokens may call every endpoint.
"""

EDGE_HEADER = """# Edge agent API reference

Generated from the OpenAPI document a running agent serves at `/openapi.json`
(`storecast edge run`; it listens on 127.0.0.1:8700 unless configured otherwise).
Readings and forecasts need no token (the store's own network); rollback needs the local
admin token `storecast edge init` printed. Errors are `{"error": {"code", "message"}}`.
"""


def cloud_openapi() -> dict[str, Any]:
    """The OpenAPI document of ``storecast cloud serve`` (built on a throwaway registry)."""
    from storecast.cloud import create_app
    from storecast.common.cloud import Database
    from storecast.registry.config import RegistryConfig
    from storecast.registry.setup import init_registry

    with tempfile.TemporaryDirectory() as tmp:
        config = RegistryConfig(home=Path(tmp) / "registry")
        init_registry(config)
        app = create_app(config)
        try:
            return openapi_document(app, "storecast cloud", "v1")
        finally:
            database = app.extensions["storecast.database"]
            if isinstance(database, Database):
                database.engine.dispose()


def edge_openapi() -> dict[str, Any]:
    """The OpenAPI document of ``storecast edge run`` (over a throwaway device home)."""
    from storecast.edge.agent import Agent
    from storecast.edge.api import create_app
    from storecast.edge.config import init_home

    root = b'{"signed": {"_type": "root"}, "signatures": []}'
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "device"
        init_home(
            home,
            device_id="edge-S001",
            store_id="S001",
            registry_url="http://127.0.0.1:9",
            analytics_url="http://127.0.0.1:9",
            token="doc-only-token",
            trusted_root=root,
        )
        agent = Agent(home)
        try:
            return openapi_document(create_app(agent), "storecast edge agent", "v1")
        finally:
            agent.stop()


def reference() -> str:
    """The whole of ``docs/api.md``: the cloud's API, then the edge agent's."""
    return render(cloud_openapi()) + "\n" + render(edge_openapi(), EDGE_HEADER)


def _schema_name(schema: dict[str, Any]) -> str:
    ref = str(schema.get("$ref", ""))
    return ref.rsplit("/", 1)[-1] if ref else str(schema.get("type", "any"))


def render(document: dict[str, Any], header: str = HEADER) -> str:
    """The API as Markdown: one table per tag, then each operation's parameters."""
    lines = [header]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            by_tag.setdefault(op["tags"][0], []).append((method.upper(), path, op))
    for tag in sorted(by_tag):
        lines += [f"## {tag}", "", "| method | path | what | roles |", "| --- | --- | --- | --- |"]
        for method, path, op in by_tag[tag]:
            roles = op.get("description", "Roles: none.").removeprefix("Roles: ").rstrip(".")
            lines.append(f"| {method} | `{path}` | {op['summary']} | {roles} |")
        lines.append("")
        for method, path, op in by_tag[tag]:
            params = op.get("parameters", [])
            body = op.get("requestBody", {}).get("content", {})
            ok = {k: v for k, v in op["responses"].items() if k != "default"}
            lines.append(f"### {method} `{path}`")
            lines.append("")
            lines.append(op["summary"] + ".")
            lines.append("")
            for param in params:
                need = "required" if param.get("required") else "optional"
                lines.append(f"- `{param['name']}` ({param['in']}, {need})")
            for media, content in body.items():
                lines.append(f"- body: `{media}` {_schema_name(content['schema'])}")
            for status, response in ok.items():
                kinds = ", ".join(
                    f"`{m}` {_schema_name(c['schema'])}".rstrip()
                    for m, c in response.get("content", {}).items()
                )
                lines.append(f"- {status}: {kinds or response['description']}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("docs/api.md")
    atomic_write_bytes(out, reference().encode())
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
