"""Loading a user's store-hour history from CSV or Parquet, with validation (pandas).

Required columns: ``ts`` (UTC hour start; ISO 8601, naive times are taken as UTC),
``store_id`` and ``sales_units`` (non-negative numbers). Optional covariates:
``footfall``, ``temperature_c``, ``precip_mm``, ``is_holiday``, ``promo``. Other columns are
ignored, except the ``oracle_*`` columns that ``storecast sim history`` writes.

Every problem raises ``DataError`` naming the file, the column and the first offending rows
(CSV line numbers count the header as line 1).

Missing-hours policy: the history is laid on a dense hourly grid. An hour with no row is
*missing*: its sales are unknown, masked out of the training loss and out of every metric.
Its covariates are filled so inputs stay complete: temperature from the nearest earlier
hour of the same store (else the nearest later one), footfall from the nearest earlier hour
only (it tracks sales, so never from later hours; else 0), precipitation, promo and holiday
with 0. Covariate cells left empty in the file are filled the same way. As model inputs,
the sales and footfall of a missing hour are then replaced by the same hour a week (else a
day) earlier; see ``storecast.forecasting.features``.

A file whose stores have a gap of more than 90 days between two rows, or whose dense grid
would exceed 50 million store-hours, is refused: that is a mistyped timestamp more often
than real data.
``StoreHistory.filled_hours`` counts the missing hours inside each store's first..last row.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from storecast.common.errors import DataError
from storecast.forecasting import schema
from storecast.forecasting.history import Oracle, StoreHistory

log = logging.getLogger(__name__)
MAX_SHOWN = 3  # offending rows quoted in an error
MAX_GRID_CELLS = 50_000_000  # stores x hours of the dense grid
MAX_GAP_HOURS = 90 * 24  # longest gap between two rows of a store before it is refused


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _row_label(path: Path, index: int) -> str:
    return f"row {index}" if _is_parquet(path) else f"line {index + 2}"


def _where(
    path: Path, df: pd.DataFrame, bad: pd.Series, column: str, what: str, hint: str = ""
) -> DataError:
    rows = df.index[bad.to_numpy()]
    shown = ", ".join(
        f"{_row_label(path, i)} ({str(df.at[i, column])!r})" for i in rows[:MAX_SHOWN]
    )
    more = f" and {len(rows) - MAX_SHOWN} more" if len(rows) > MAX_SHOWN else ""
    hint = f"; {hint}" if hint else ""
    return DataError(f"{path}: column '{column}': {len(rows)} {what}: {shown}{more}{hint}")


def _read(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    suffixes = "".join(path.suffixes[-2:]).lower()
    try:
        if _is_parquet(path):
            df = pd.read_parquet(path)
        elif suffixes.endswith((".csv", ".csv.gz")):
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            raise DataError(f"{path}: unsupported file type; use .csv, .csv.gz or .parquet")
    except DataError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        raise DataError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from exc
    if df.empty:
        raise DataError(f"{path}: no rows")
    return df.reset_index(drop=True)


_BOOLEANS = {"true": "1", "false": "0"}


def _numeric(df: pd.DataFrame, column: str) -> tuple[pd.Series, pd.Series]:
    """The column as finite floats (NaN where not a number) and where it was left empty.

    ``true``/``false`` (any case, or real booleans) count as 1/0, for flag columns.
    """
    raw = df[column]
    as_text = raw.astype(str).str.strip()
    blank = raw.isna() | (as_text == "") | (as_text.str.lower().isin(["nan", "none", "null"]))
    as_text = as_text.str.lower().replace(_BOOLEANS)
    values = pd.to_numeric(as_text.where(~blank), errors="coerce")
    return values.where(np.isfinite(values)), blank


def load_history(path: Path) -> StoreHistory:
    """Read, validate and grid a store-hour history file."""
    path = Path(path)
    df = _read(path)
    missing = [c for c in schema.REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing required column(s) {', '.join(map(repr, missing))}; "
            f"found {', '.join(map(repr, map(str, df.columns)))}"
        )

    ts = pd.to_datetime(
        df[schema.TS].astype(str).str.strip(), utc=True, errors="coerce", format="ISO8601"
    )
    if ts.isna().any():
        raise _where(path, df, ts.isna(), schema.TS, "unparsable timestamp(s)")
    off_hour = ts != ts.dt.floor("h")
    if off_hour.any():
        raise _where(
            path,
            df,
            off_hour,
            schema.TS,
            "timestamp(s) not on the hour",
            "data must be hourly: one row per store and UTC hour start",
        )

    store = df[schema.STORE_ID].astype(str).str.strip()
    empty = df[schema.STORE_ID].isna() | (store == "")
    if empty.any():
        raise _where(path, df, empty, schema.STORE_ID, "empty store id(s)")

    sales, _ = _numeric(df, schema.SALES)
    if sales.isna().any():
        raise _where(
            path,
            df,
            sales.isna(),
            schema.SALES,
            "non-numeric or empty value(s)",
            "leave out the row to mark an hour as missing",
        )
    if (sales < 0).any():
        raise _where(path, df, sales < 0, schema.SALES, "negative value(s)")

    dup = pd.DataFrame({"s": store, "t": ts}).duplicated(keep="first")
    if dup.any():
        raise _where(path, df, dup, schema.TS, "duplicate (store_id, ts) row(s)")

    hours = ts.dt.tz_localize(None).to_numpy().astype("datetime64[h]")
    _check_hourly(path, store.to_numpy(), hours)

    covariates: dict[str, pd.Series] = {}
    for column in schema.COVARIATE_COLUMNS + schema.ORACLE_COLUMNS:
        if column not in df.columns:
            continue
        values, blank = _numeric(df, column)
        bad = values.isna() & ~blank
        if bad.any():
            raise _where(path, df, bad, column, "non-numeric value(s)")
        if column in (schema.FOOTFALL, schema.PRECIP) and (values < 0).any():
            raise _where(path, df, values < 0, column, "negative value(s)")
        covariates[column] = values
    return _grid(
        path,
        store.to_numpy(),
        hours,
        sales.to_numpy(dtype=float),
        covariates,
        list(map(str, df.columns)),
    )


def _check_hourly(path: Path, stores: np.ndarray, hours: np.ndarray) -> None:
    order = np.lexsort((hours, stores))
    s, h = stores[order], hours[order].astype(np.int64)
    same = s[1:] == s[:-1]
    gaps = np.diff(h)[same]
    if gaps.size and np.median(gaps) > 1:
        raise DataError(
            f"{path}: column 'ts': rows are {int(np.median(gaps))} hours apart "
            "(median per store); storecast needs hourly data"
        )
    if gaps.size and gaps.max() > MAX_GAP_HOURS:
        at = int(np.argmax(np.where(same, np.diff(h), 0)))
        before, after = int(order[at]), int(order[at + 1])
        raise DataError(
            f"{path}: column 'ts': store {s[at]!r} has a gap of {int(gaps.max())} hours "
            f"between {_row_label(path, before)} and {_row_label(path, after)} (more than "
            f"{MAX_GAP_HOURS // 24} days); is a timestamp mistyped?"
        )


def _grid(
    path: Path,
    stores: np.ndarray,
    hours: np.ndarray,
    sales: np.ndarray,
    covariates: dict[str, pd.Series],
    columns: list[str],
) -> StoreHistory:
    store_ids = tuple(sorted(set(stores.tolist())))
    start = hours.min()
    n_hours = int((hours.max() - start).astype(int)) + 1
    if len(store_ids) * n_hours > MAX_GRID_CELLS:
        raise DataError(
            f"{path}: {len(store_ids)} stores over {n_hours:,} hours is more than "
            f"{MAX_GRID_CELLS:,} store-hours; split the file or check its timestamps"
        )
    s_idx = np.searchsorted(np.array(store_ids), stores)
    t_idx = (hours - start).astype(np.int64)
    shape = (len(store_ids), n_hours)

    def cells(values: np.ndarray) -> np.ndarray:
        grid = np.full(shape, np.nan)
        grid[s_idx, t_idx] = values
        return grid

    observed = np.zeros(shape, dtype=bool)
    observed[s_idx, t_idx] = True
    first = np.full(len(store_ids), n_hours)
    last = np.zeros(len(store_ids), dtype=np.int64)
    np.minimum.at(first, s_idx, t_idx)
    np.maximum.at(last, s_idx, t_idx)
    filled = int(sum(last[i] - first[i] + 1 - observed[i].sum() for i in range(len(store_ids))))

    def carried(column: str, default: float, backward: bool) -> np.ndarray:
        if column not in covariates:
            return np.full(shape, default)
        frame = pd.DataFrame(cells(covariates[column].to_numpy(dtype=float)).T).ffill()
        if backward:
            frame = frame.bfill()
        return np.asarray(np.nan_to_num(frame.to_numpy().T, nan=default))

    def zero_filled(column: str) -> np.ndarray:
        if column not in covariates:
            return np.zeros(shape)
        return np.asarray(np.nan_to_num(cells(covariates[column].to_numpy(dtype=float)), nan=0.0))

    oracle = None
    if all(c in covariates for c in schema.ORACLE_COLUMNS):
        q = np.stack(
            [cells(covariates[c].to_numpy(dtype=float)) for c in schema.ORACLE_COLUMNS[1:]], axis=-1
        )
        oracle = Oracle(mean=cells(covariates["oracle_mean"].to_numpy(dtype=float)), quantiles=q)
    if filled:
        log.info("%s: %d missing store-hours filled (covariates) and masked (sales)", path, filled)
    return StoreHistory(
        start=start,
        store_ids=store_ids,
        sales=cells(sales),
        observed=observed,
        # footfall tracks sales: carried forward only, never from later hours
        footfall=carried(schema.FOOTFALL, 0.0, backward=False),
        temperature_c=carried(schema.TEMPERATURE, 15.0, backward=True),
        precip_mm=zero_filled(schema.PRECIP),
        is_holiday=(zero_filled(schema.HOLIDAY) > 0).astype(float),
        promo=(zero_filled(schema.PROMO) > 0).astype(float),
        filled_hours=filled,
        oracle=oracle,
        source=str(path),
        columns=tuple(columns),
    )
