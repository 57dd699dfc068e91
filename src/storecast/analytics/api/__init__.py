"""The analytics HTTP API: telemetry ingestion and one read-only blueprint per question.

    stores        /v1/analytics/stores, /v1/analytics/stores/<store_id>/summary
    models        /v1/analytics/models
    fleet         /v1/analytics/fleet, /v1/analytics/fleet/series
    usage         /v1/analytics/model-events, /v1/analytics/usage/forecasts|api
    diagnostics   /v1/analytics/rootcause, /v1/analytics/incidents
    rollouts      /v1/analytics/rollouts
    telemetry     POST /v1/telemetry (registered by ``storecast.analytics.app`` itself)

``BLUEPRINTS`` lists the read API's blueprints (viewer role; admin passes too).
"""

from __future__ import annotations

from storecast.analytics.api import diagnostics, fleet, models, rollouts, stores, usage

BLUEPRINTS = (stores.bp, models.bp, fleet.bp, usage.bp, diagnostics.bp, rollouts.bp)
