"""Human-readable views of a metrics report (rich tables; building only, no printing)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

METHOD_LABELS = {
    "lstm": "LSTM",
    "snaive_24": "seasonal naive 24h",
    "snaive_168": "seasonal naive 168h",
    "oracle": "oracle (floor)",
}


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value * 100:.1f}%" if pct else f"{value:.3f}"


def metrics_table(report: dict[str, Any], title: str = "Backtest") -> Table:
    """One row per method: WAPE, bias, MASE, pinball at q50, 80% coverage."""
    bt = report.get("backtest", {})
    caption = (
        f"{bt.get('origins')} origins, {bt.get('first_origin')} .. "
        f"{bt.get('last_origin')}, {bt.get('stores')} stores, "
        f"{bt.get('forecast_hours_scored')} store-hours scored"
    )
    table = Table(title=title, caption=caption)
    for col in ("method", "WAPE", "bias", "MASE", "pinball q50", "80% coverage"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for method, wape in report["wape"].items():
        if wape is None:
            continue
        table.add_row(
            METHOD_LABELS.get(method, method),
            _fmt(wape, pct=True),
            _fmt(report["bias"][method], pct=True),
            _fmt(report["mase"][method]),
            _fmt((report["pinball"][method] or {}).get("q50")),
            _fmt(report["coverage_80"][method], pct=True),
        )
    return table
