"""A small HTTP client for the storecast cloud API (what the CLI and the pipeline use).

Every refusal by the server becomes an ``ApiRefused`` carrying the status, the error code
and the server's message; an unreachable server becomes a ``ConfigError``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from storecast.common.errors import ConfigError, StorecastError

DEFAULT_URL = "http://127.0.0.1:8080"


class ApiRefused(StorecastError):
    """The server answered with an error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status}, {code})")
        self.status = status
        self.code = code


class CloudClient:
    """Calls the registry/analytics API with a bearer token."""

    def __init__(self, url: str, token: str | None, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    @classmethod
    def from_env(cls, url: str | None, token: str | None) -> CloudClient:
        """``url`` or ``STORECAST_REGISTRY``; ``token`` or ``STORECAST_TOKEN``."""
        return cls(
            url or os.environ.get("STORECAST_REGISTRY") or DEFAULT_URL,
            token or os.environ.get("STORECAST_TOKEN"),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CloudClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ConfigError(f"cannot reach {self.url}: {exc}") from exc
        if response.status_code >= 400:
            raise _refusal(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    # -- the calls the CLI makes --------------------------------------------------------------

    def publish(self, bundle: Path) -> dict[str, Any]:
        try:
            data = bundle.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{bundle}: {exc.strerror or exc}") from exc
        return dict(
            self.json(
                "POST", "/v1/models", content=data, headers={"Content-Type": "application/x-tar"}
            )
        )

    def next_version(self, name: str) -> int:
        return int(self.json("GET", f"/v1/models/{name}/next-version")["version"])


def _refusal(response: httpx.Response) -> ApiRefused:
    try:
        error = response.json()["error"]
        return ApiRefused(response.status_code, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:200] or response.reason_phrase
        return ApiRefused(response.status_code, "http_error", text)
