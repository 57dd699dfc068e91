"""The device's TUF fetcher and updater factory, against mock transports and a tiny server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.exceptions import (
    DownloadError,
    DownloadHTTPError,
    DownloadLengthMismatchError,
    SlowRetrievalError,
)
from tuf.api.metadata import Metadata, Root
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from storecast.common.errors import ConfigError
from storecast.common.tuf_client import CHUNK_SIZE, BearerFetcher, make_updater

URL = "http://registry.test/tuf/metadata/timestamp.json"
TOKEN = "sct_secret"

Handler = Callable[[httpx.Request], httpx.Response]


def fetcher_with(handler: Handler, token: str = TOKEN) -> BearerFetcher:
    return BearerFetcher(token, client=httpx.Client(transport=httpx.MockTransport(handler)))


class CountingStream(httpx.SyncByteStream):
    """A response body that records how far it was read and whether it was closed."""

    def __init__(self, chunks: list[bytes], fail_after: int | None = None) -> None:
        self.chunks = chunks
        self.fail_after = fail_after
        self.sent = 0
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            if self.fail_after is not None and self.sent >= self.fail_after:
                raise httpx.ReadError("connection reset by peer")
            self.sent += 1
            yield chunk

    def close(self) -> None:
        self.closed = True


# --- BearerFetcher ----------------------------------------------------------------------


def test_fetcher_sends_the_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"{}")

    assert fetcher_with(handler).download_bytes(URL, 100) == b"{}"
    assert [str(r.url) for r in seen] == [URL]
    assert seen[0].headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("status", [301, 401, 403, 404, 500, 503])
def test_fetcher_turns_a_non_2xx_status_into_download_http_error(status: int) -> None:
    fetcher = fetcher_with(lambda request: httpx.Response(status, content=b'{"error": {}}'))
    with pytest.raises(DownloadHTTPError) as raised:
        fetcher.fetch(URL)
    assert raised.value.status_code == status


def test_fetcher_streams_the_body_in_chunks_after_the_headers() -> None:
    body = bytes(range(256)) * (3 * CHUNK_SIZE // 256 + 7)
    stream = CountingStream([body[i : i + 1000] for i in range(0, len(body), 1000)])
    fetcher = fetcher_with(lambda request: httpx.Response(200, stream=stream))

    chunks = fetcher.fetch(URL)
    assert stream.sent == 0  # nothing read until the updater asks for it
    received = list(chunks)

    assert b"".join(received) == body
    assert len(received) == 4
    assert all(len(chunk) == CHUNK_SIZE for chunk in received[:-1])
    assert stream.closed


def test_fetcher_closes_the_response_when_the_reader_stops_early() -> None:
    stream = CountingStream([b"x" * 1000] * 200)
    fetcher = fetcher_with(lambda request: httpx.Response(200, stream=stream))
    with pytest.raises(DownloadLengthMismatchError):
        fetcher.download_bytes(URL, max_length=CHUNK_SIZE - 1)
    assert stream.closed
    assert stream.sent < 200


def test_fetcher_turns_a_connection_failure_into_download_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(DownloadError) as raised:
        fetcher_with(refuse).fetch(URL)
    assert not isinstance(raised.value, DownloadHTTPError)


def test_fetcher_turns_a_timeout_into_slow_retrieval_error() -> None:
    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(SlowRetrievalError):
        fetcher_with(stall).fetch(URL)


def test_fetcher_turns_a_failure_mid_body_into_download_error() -> None:
    stream = CountingStream([b"a" * 100, b"b" * 100, b"c" * 100], fail_after=1)
    fetcher = fetcher_with(lambda request: httpx.Response(200, stream=stream))
    with pytest.raises(DownloadError):
        fetcher.download_bytes(URL, 1000)
    assert stream.closed


def test_fetcher_follows_redirects_but_keeps_the_token_to_its_origin() -> None:
    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] = request.headers.get("Authorization")
        if request.url.host == "registry.test":
            return httpx.Response(302, headers={"Location": "http://cdn.test/blob"})
        return httpx.Response(200, content=b"blob")

    assert fetcher_with(handler).download_bytes(URL, 100) == b"blob"
    assert seen == {"registry.test": f"Bearer {TOKEN}", "cdn.test": None}


def test_fetcher_needs_a_token() -> None:
    with pytest.raises(ConfigError, match="token"):
        BearerFetcher("")


def test_fetcher_closes_only_the_client_it_created() -> None:
    given = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    BearerFetcher(TOKEN, client=given).close()
    assert not given.is_closed

    own = BearerFetcher(TOKEN)
    own.close()
    assert own._client.is_closed


# --- make_updater, against a tiny real server ---------------------------------------------


def self_signed_root() -> bytes:
    """Root v1 with one key for every role (enough for the updater to start)."""
    signer = CryptoSigner.generate_ed25519()
    root = Root(expires=datetime.now(UTC) + timedelta(days=1), consistent_snapshot=True)
    for role in (Root.type, "targets", "snapshot", "timestamp"):
        root.add_key(signer.public_key, role)
    md = Metadata(root)
    md.sign(signer)
    return md.to_bytes()


@pytest.fixture
def not_found_server() -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    """A server on port 0 that answers 404 to everything and records (path, Authorization)."""
    seen: list[tuple[str, str | None]] = []

    @Request.application
    def app(request: Request) -> Response:
        seen.append((request.path, request.headers.get("Authorization")))
        return Response(b'{"error": {}}', status=404, mimetype="application/json")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", seen
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_make_updater_asks_the_registry_tuf_routes_with_the_token(
    tmp_path: Path, not_found_server: tuple[str, list[tuple[str, Any]]]
) -> None:
    base_url, seen = not_found_server  # a trailing slash is fine
    updater = make_updater(
        base_url, TOKEN, tmp_path / "metadata", tmp_path / "targets", self_signed_root()
    )
    with pytest.raises(DownloadHTTPError) as raised:
        updater.refresh()

    assert raised.value.status_code == 404
    assert seen == [
        ("/tuf/metadata/2.root.json", f"Bearer {TOKEN}"),  # 404: root v1 is the newest
        ("/tuf/metadata/timestamp.json", f"Bearer {TOKEN}"),
    ]
    assert (tmp_path / "metadata" / "root.json").is_file()


def test_make_updater_without_a_root_trusts_the_one_kept_from_an_earlier_run(
    tmp_path: Path,
) -> None:
    metadata_dir = tmp_path / "metadata"
    with pytest.raises(ConfigError, match="trusted TUF root"):
        make_updater("http://registry.test", TOKEN, metadata_dir, tmp_path / "targets")

    root = self_signed_root()
    make_updater("http://registry.test", TOKEN, metadata_dir, tmp_path / "targets", root)
    make_updater("http://registry.test", TOKEN, metadata_dir, tmp_path / "targets")
    assert (metadata_dir / "root.json").read_bytes() == root
