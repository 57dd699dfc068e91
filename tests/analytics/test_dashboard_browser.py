"""The dashboard in real headless Chromium (Playwright, the system ``/usr/bin/chromium``).

A live cloud server on SQLite is filled with simulated telemetry and two canary rollouts
(one in force, one rolled back); a viewer signs in through the form, and the page must load
without console errors, show the fleet API's numbers in its tiles, list the rollouts and
the rollback incident, draw plotly charts, and redraw the store chart for another store.
Nothing may be fetched from anywhere but the server (the page works with no internet).
The screenshot lands in ``$STORECAST_ARTIFACTS`` (default ``<repo>/test-artifacts``).

Skipped when Chromium or playwright is missing, unless ``STORECAST_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from storecast.analytics.dashboard import TILES
from storecast.common.clock import FixedClock
from storecast.common.db import make_engine, make_sessionmaker, transaction
from storecast.registry.setup import init_registry
from storecast.sim.sender import post
from storecast.sim.telemetry import TelemetrySimConfig
from tests.analytics.rollout_rows import add_canary, add_decision
from tests.registry.conftest import LiveRegistry, registry_config, serve_registry

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Route

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
REPO = Path(__file__).resolve().parents[2]
END = datetime(2026, 3, 2, tzinfo=UTC)  # the simulated span's end, and the server's "now"
TIMEOUT_MS = 20_000


def artifacts_dir() -> Path:
    """Where test artifacts go: ``$STORECAST_ARTIFACTS``, else ``<repo>/test-artifacts``."""
    path = Path(os.environ.get("STORECAST_ARTIFACTS") or REPO / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _missing() -> str | None:
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install playwright)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless system Chromium (never a downloaded one)."""
    why = _missing()
    if why is not None:
        if os.environ.get("STORECAST_REQUIRE_BROWSER") == "1":
            pytest.fail(f"the browser test is required (STORECAST_REQUIRE_BROWSER=1) but {why}")
        pytest.skip(f"{why}; set STORECAST_REQUIRE_BROWSER=1 to fail instead")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@dataclass
class Fleet:
    """A live cloud server with telemetry from a small simulated fleet."""

    live: LiveRegistry
    viewer: str
    device: str  # one simulated device's token

    def api(self, path: str) -> Any:
        with self.live.client(self.viewer) as http:
            response = http.get(f"/v1/analytics{path}")
            response.raise_for_status()
            return response.json()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    home = tmp_path_factory.mktemp("dashboard")
    config = registry_config(
        home / "registry", f"sqlite:///{home / 'cloud.db'}", clock=FixedClock(END)
    )
    init = init_registry(config)
    with serve_registry(config, init) as live:
        tokens: dict[str, str] = {}
        sim = TelemetrySimConfig(
            end=END,
            devices=4,
            days=2,
            seed=5,
            heartbeat_every_min=15,
            fault="bad-model",
            fault_hours=6,
        )
        totals = post(live.url, live.admin, sim, tokens=tokens, backoff_s=0.05)
        assert totals.accepted > 0
        assert totals.rejected == 0, totals.rejection_samples
        add_rollouts(config.database_url)
        yield Fleet(live, live.token("viewer", "dashboard viewer"), next(iter(tokens.values())))


def add_rollouts(url: str) -> None:
    """A canary in force at its second step, and one the controller rolled back."""
    arms = [{"arm": "A", "version": 1, "alias": None}, {"arm": "B", "version": 2, "alias": None}]
    engine = make_engine(url)
    with transaction(make_sessionmaker(engine), write=True) as session:
        active = add_canary(session, arms=arms, step_index=1, created_at=END - timedelta(hours=9))
        add_decision(
            session, active, action="promote", decided_at=END - timedelta(hours=3),
            percent_after=25.0, reason="every gate passed: B grows to 25 %",
        )  # fmt: skip
        undone = add_canary(
            session, arms=arms, status="rolled_back", created_at=END - timedelta(hours=5)
        )
        gate = {"name": "error_rate", "passed": False, "value": 0.2, "limit": 0.02}
        add_decision(
            session, undone, action="rollback", decided_at=END - timedelta(hours=1),
            reason="error_rate failed", gates=[gate | {"detail": "20 of 100 failed"}],
        )  # fmt: skip
    engine.dispose()


@dataclass
class Watched:
    """A page and everything that went wrong on it."""

    page: Page
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # requests to anywhere but the server


@pytest.fixture(scope="module")
def context(browser: Browser) -> Iterator[BrowserContext]:
    """One browser context for the module, so plotly.js is fetched and compiled once."""
    shared = browser.new_context(viewport={"width": 1400, "height": 1000})
    shared.set_default_timeout(TIMEOUT_MS)
    yield shared
    shared.close()


@pytest.fixture
def watched(context: BrowserContext, fleet: Fleet) -> Iterator[Watched]:
    """A fresh page, signed out, whose console errors and off-site requests are recorded."""
    context.clear_cookies()
    page = context.new_page()
    seen = Watched(page)
    page.on("console", lambda msg: seen.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: seen.errors.append(f"uncaught: {exc}"))

    def only_local(route: Route) -> None:
        if route.request.url.startswith(fleet.live.url + "/"):
            route.continue_()
        else:
            seen.foreign.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    yield seen
    page.close()


def sign_in(page: Page, url: str, token: str) -> None:
    page.goto(f"{url}/dashboard/login")
    page.fill("#token", token)
    page.click("[data-testid=login-submit]")


def ready(page: Page) -> None:
    """Wait until the page has finished a refresh (every section answered)."""
    page.wait_for_selector("body[data-state=ready]")


def _dig(data: Any, path: str) -> Any:
    for key in path.split("."):
        data = data[key]
    return data


def _shown(text: str) -> float:
    return float(text.replace(",", "").removesuffix("%").removesuffix(" ms"))


def check_tiles(page: Page, fleet_kpis: dict[str, Any]) -> None:
    """Each tile holds the API's raw value and shows it at the tile's precision."""
    for tile in TILES:
        node = page.locator(f"[data-kpi={tile.key}]")
        expected = _dig(fleet_kpis, tile.path)
        raw, text = node.get_attribute("data-value"), node.inner_text()
        if expected is None:
            assert (raw, text) == ("", "—"), tile
            continue
        assert raw is not None and float(raw) == pytest.approx(expected, rel=1e-12), tile
        shown = _shown(text)
        if tile.unit == "percent":
            assert shown == pytest.approx(expected * 100, abs=0.05 + 1e-9), (tile, text)
        elif tile.unit == "ms":
            assert shown == pytest.approx(expected, abs=0.05 + 1e-9), (tile, text)
        else:
            assert shown == expected, (tile, text)


def store_chart(page: Page) -> dict[str, Any]:
    """The store chart's plotly data: which store, and its q50 and actual series."""
    result: dict[str, Any] = page.evaluate(
        """() => {
            const gd = document.getElementById("chart-store");
            return {
                store: gd.dataset.storeId,
                q50: gd.data[2].y,
                actual: gd.data[3].y,
            };
        }"""
    )
    return result


def test_dashboard_shows_the_api_numbers_and_draws_the_charts(
    watched: Watched, fleet: Fleet
) -> None:
    page = watched.page
    sign_in(page, fleet.live.url, fleet.viewer)
    page.wait_for_url(f"{fleet.live.url}/dashboard")
    ready(page)

    check_tiles(page, fleet.api("/fleet"))
    stores = fleet.api("/stores")["stores"]
    assert page.locator("#fleet-table tbody tr[data-store-id]").count() == len(stores) >= 2
    events = fleet.api("/model-events?limit=20")["events"]
    assert page.locator("#model-events tbody tr[data-event-id]").count() == len(events) > 0
    incidents = fleet.api("/incidents")["incidents"]  # the planted bad model version
    assert page.locator("#incidents .incident").count() == len(incidents) > 0
    rollback = page.locator("#incidents .incident[data-kind=rollout]")
    assert rollback.count() == sum(i["kind"] == "rollout" for i in incidents) == 1
    assert "20 of 100 failed" in rollback.inner_text()
    rollouts = fleet.api("/rollouts")["rollouts"]
    rows = page.locator("#rollouts tbody tr[data-deployment-id]")
    assert rows.count() == len(rollouts) == 2
    assert "25%" in page.locator("#rollouts tr[data-status=active]").inner_text()

    page.wait_for_selector("#chart-store.js-plotly-plot .scatterlayer .trace path.js-line")
    page.wait_for_selector("#chart-models.js-plotly-plot .barlayer .trace")
    page.wait_for_selector("#chart-series.js-plotly-plot .scatterlayer .trace path.js-line")
    first = store_chart(page)
    assert first["store"] == stores[0]["store_id"]
    assert any(value is not None for value in first["actual"])

    other = stores[1]["store_id"]
    page.select_option("#store-select", other)
    page.wait_for_selector(f"#chart-store[data-store-id='{other}']")
    ready(page)
    second = store_chart(page)
    assert second["actual"] != first["actual"]
    assert second["q50"] != first["q50"]
    summary = fleet.api(f"/stores/{other}/summary")
    assert second["actual"] == [point["actual"] for point in summary["series"]]

    page.screenshot(path=str(artifacts_dir() / "dashboard.png"), full_page=True)
    assert watched.errors == []
    assert watched.foreign == []


def test_a_device_token_cannot_sign_in(watched: Watched, fleet: Fleet) -> None:
    page = watched.page
    page.goto(f"{fleet.live.url}/dashboard/login")
    page.fill("#token", fleet.device)
    with page.expect_response(f"{fleet.live.url}/dashboard/login") as answer:
        page.click("[data-testid=login-submit]")
    assert answer.value.status == 401
    assert "device token" in page.inner_text("[data-testid=login-error]")
    page.goto(f"{fleet.live.url}/dashboard")
    assert page.url == f"{fleet.live.url}/dashboard/login"


def test_the_dashboard_without_a_session_redirects_to_login(watched: Watched, fleet: Fleet) -> None:
    response = watched.page.goto(f"{fleet.live.url}/dashboard")
    assert response is not None and response.ok
    assert watched.page.url == f"{fleet.live.url}/dashboard/login"
    assert watched.page.locator("#token").is_visible()
    assert watched.errors == []


def test_the_page_refreshes_itself_until_its_token_is_revoked(
    watched: Watched, fleet: Fleet
) -> None:
    with fleet.live.client(fleet.live.admin) as http:
        made = http.post("/v1/tokens", json={"name": "short-lived viewer", "role": "viewer"})
        made.raise_for_status()
    page = watched.page
    signed = page.request.post(
        f"{fleet.live.url}/dashboard/login", form={"token": made.json()["token"]}, max_redirects=0
    )
    assert signed.status == 303
    page.goto(f"{fleet.live.url}/dashboard?refresh=1")
    page.wait_for_selector("body[data-refreshes='2']")
    with fleet.live.client(fleet.live.admin) as http:
        http.delete(f"/v1/tokens/{made.json()['id']}").raise_for_status()
    page.wait_for_url(f"{fleet.live.url}/dashboard/login")
