"""How a device talks TUF to the registry: python-tuf's ``Updater`` over an authenticated fetcher.

The registry serves its TUF repository only to callers with a bearer token, so devices plug
``BearerFetcher`` (httpx) into the unmodified ``tuf.ngclient.Updater``; all verification
stays python-tuf's. ``make_updater`` wires the two for a registry base URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
from tuf.api.exceptions import DownloadError, DownloadHTTPError, SlowRetrievalError
from tuf.ngclient import FetcherInterface, Updater

from storecast.common.errors import ConfigError

__all__ = ["BearerFetcher", "make_updater"]

CHUNK_SIZE = 64 * 1024  # bytes per chunk handed to the updater


class BearerFetcher(FetcherInterface):
    """A ``FetcherInterface`` over httpx that sends ``Authorization: Bearer <token>``.

    Errors follow python-tuf's fetchers: ``DownloadHTTPError`` (with the status) for a
    response that is not 2xx, ``SlowRetrievalError`` on a timeout and ``DownloadError`` for
    any other transport failure, also while the body streams.
    """

    def __init__(
        self,
        token: str,
        timeout: float = 30.0,  # seconds to connect, and between bytes received
        client: httpx.Client | None = None,
    ) -> None:
        if not token:
            raise ConfigError("a registry token is required to fetch TUF metadata and targets")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = httpx.Timeout(timeout)
        self._owns_client = client is None
        self._client = httpx.Client() if client is None else client

    def close(self) -> None:
        """Close the HTTP client when this fetcher created it."""
        if self._owns_client:
            self._client.close()

    def _fetch(self, url: str) -> Iterator[bytes]:
        request = self._client.build_request(
            "GET", url, headers=self._headers, timeout=self._timeout
        )
        try:
            # httpx drops the Authorization header on redirects to another origin.
            response = self._client.send(request, stream=True, follow_redirects=True)
        except httpx.TimeoutException as exc:
            raise SlowRetrievalError(f"timed out fetching {url}") from exc
        except httpx.HTTPError as exc:
            raise DownloadError(f"failed to fetch {url}: {exc}") from exc
        if not response.is_success:
            response.close()
            raise DownloadHTTPError(
                f"HTTP error occurred with status {response.status_code}", response.status_code
            )
        return _chunks(response, url)


def _chunks(response: httpx.Response, url: str) -> Iterator[bytes]:
    """Stream the body (lazily, so ``fetch`` returns once the headers are in)."""
    try:
        yield from response.iter_bytes(CHUNK_SIZE)
    except httpx.TimeoutException as exc:
        raise SlowRetrievalError(f"timed out reading {url}") from exc
    except httpx.HTTPError as exc:
        raise DownloadError(f"failed reading {url}: {exc}") from exc
    finally:
        response.close()


def make_updater(
    base_url: str,
    token: str,
    metadata_dir: Path,
    targets_dir: Path,
    trusted_root: bytes | None = None,
    client: httpx.Client | None = None,
) -> Updater:
    """Return a ``tuf.ngclient.Updater`` for the registry at ``base_url``.

    ``trusted_root`` is the root metadata the device was provisioned with (the registry's
    ``1.root.json``). Without it the updater trusts ``metadata_dir/root.json`` left by an
    earlier run. Either way the trusted metadata kept in ``metadata_dir`` is what later
    runs check new metadata against (rollback protection). ``client`` is an httpx client
    to fetch with (kept open by its owner); without it the fetcher makes its own.
    """
    if trusted_root is None and not (metadata_dir / "root.json").exists():
        raise ConfigError(
            f"no trusted TUF root: pass trusted_root or keep root.json in {metadata_dir}"
        )
    metadata_dir.mkdir(parents=True, exist_ok=True)
    base = base_url.rstrip("/")
    return Updater(
        str(metadata_dir),
        f"{base}/tuf/metadata/",
        str(targets_dir),
        f"{base}/tuf/targets/",
        fetcher=BearerFetcher(token, client=client),
        bootstrap=trusted_root,
    )
