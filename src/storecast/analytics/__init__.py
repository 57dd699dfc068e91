"""Analytics: telemetry ingestion, rollups, queries, root cause and the dashboard."""
