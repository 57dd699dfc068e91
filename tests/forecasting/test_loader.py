import numpy as np
import pandas as pd
import pytest

from storecast.common.errors import DataError
from storecast.forecasting.loader import load_history

HEADER = "ts,store_id,sales_units\n"


def write(tmp_path, text, name="h.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def hourly_rows(store="A", hours=5, start="2025-03-01T00:00:00Z"):
    ts = pd.date_range(start, periods=hours, freq="h")
    return "".join(f"{t.strftime('%Y-%m-%dT%H:%M:%SZ')},{store},{i}\n" for i, t in enumerate(ts))


def test_loads_a_valid_csv_on_a_dense_grid(tmp_path):
    h = load_history(write(tmp_path, HEADER + hourly_rows("A") + hourly_rows("B", 3)))
    assert h.store_ids == ("A", "B")
    assert h.n_hours == 5
    assert h.observed[0].all() and h.observed[1].sum() == 3
    assert h.sales[0].tolist() == [0, 1, 2, 3, 4]
    assert h.filled_hours == 0  # B's missing hours lie after its last row
    assert h.footfall.shape == (2, 5) and (h.temperature_c == 15.0).all()


def test_missing_column_names_the_file_and_the_column(tmp_path):
    path = write(tmp_path, "ts,store_id,units\n2025-01-01T00:00:00Z,A,3\n")
    with pytest.raises(DataError, match=r"h\.csv: missing required column\(s\) 'sales_units'"):
        load_history(path)


def test_unparsable_timestamp_names_the_first_offending_lines(tmp_path):
    text = HEADER + hourly_rows() + "yesterday,A,3\n2025-13-01T00:00:00Z,A,4\n"
    with pytest.raises(
        DataError,
        match=r"column 'ts': 2 unparsable timestamp\(s\): "
        r"line 7 \('yesterday'\), line 8",
    ):
        load_history(write(tmp_path, text))


def test_duplicate_store_hour_is_rejected(tmp_path):
    text = HEADER + hourly_rows() + "2025-03-01T02:00:00Z,A,9\n"
    with pytest.raises(DataError, match=r"1 duplicate \(store_id, ts\) row\(s\): line 7"):
        load_history(write(tmp_path, text))


def test_negative_sales_are_rejected(tmp_path):
    text = HEADER + "2025-03-01T00:00:00Z,A,3\n2025-03-01T01:00:00Z,A,-2\n"
    with pytest.raises(DataError, match=r"column 'sales_units': 1 negative value\(s\): line 3"):
        load_history(write(tmp_path, text))


def test_non_numeric_sales_are_rejected(tmp_path):
    text = HEADER + "2025-03-01T00:00:00Z,A,3\n2025-03-01T01:00:00Z,A,many\n"
    with pytest.raises(
        DataError,
        match=r"column 'sales_units': 1 non-numeric or empty "
        r"value\(s\): line 3 \('many'\)",
    ):
        load_history(write(tmp_path, text))


def test_timestamps_off_the_hour_are_rejected(tmp_path):
    text = HEADER + "2025-03-01T00:00:00Z,A,3\n2025-03-01T00:30:00Z,A,2\n"
    with pytest.raises(DataError, match=r"1 timestamp\(s\) not on the hour.*line 3"):
        load_history(write(tmp_path, text))


def test_daily_data_is_rejected_as_not_hourly(tmp_path):
    text = HEADER + "".join(f"2025-03-{d:02d}T00:00:00Z,A,{d}\n" for d in range(1, 10))
    with pytest.raises(DataError, match=r"rows are 24 hours apart.*needs hourly data"):
        load_history(write(tmp_path, text))


def test_non_numeric_covariate_is_rejected(tmp_path):
    text = "ts,store_id,sales_units,temperature_c\n2025-03-01T00:00:00Z,A,3,warm\n"
    with pytest.raises(DataError, match=r"column 'temperature_c': 1 non-numeric"):
        load_history(write(tmp_path, text))


def test_missing_file_and_unsupported_type(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_history(tmp_path / "absent.csv")
    with pytest.raises(DataError, match="unsupported file type"):
        load_history(write(tmp_path, "x", name="h.xlsx"))


def test_empty_file_is_rejected(tmp_path):
    with pytest.raises(DataError, match="no rows"):
        load_history(write(tmp_path, HEADER))


def test_many_offenders_are_summarised(tmp_path):
    text = HEADER + "".join(f"2025-03-01T{h:02d}:00:00Z,A,-1\n" for h in range(10))
    with pytest.raises(DataError, match=r"10 negative value\(s\): line 2 .* and 7 more"):
        load_history(write(tmp_path, text))


def test_missing_hours_are_counted_masked_and_covariates_filled(tmp_path):
    text = (
        "ts,store_id,sales_units,temperature_c,promo\n"
        "2025-03-01T00:00:00Z,A,3,10.0,1\n"
        "2025-03-01T01:00:00Z,A,4,,\n"  # empty covariates are filled too
        "2025-03-01T04:00:00Z,A,5,12.0,0\n"
        "2025-03-01T05:00:00Z,A,6,13.0,0\n"
        "2025-03-01T06:00:00Z,A,7,14.0,0\n"
    )
    h = load_history(write(tmp_path, text))
    assert h.filled_hours == 2
    assert h.observed[0].tolist() == [True, True, False, False, True, True, True]
    assert np.isnan(h.sales[0, 2]) and np.isnan(h.sales[0, 3])
    assert h.temperature_c[0].tolist() == [
        10.0,
        10.0,
        10.0,
        10.0,
        12.0,
        13.0,
        14.0,
    ]  # carried forward
    assert h.promo[0].tolist() == [1, 0, 0, 0, 0, 0, 0]  # unknown promo is no promo


def test_naive_timestamps_are_utc_and_offsets_are_converted(tmp_path):
    text = HEADER + "2025-03-01 00:00:00,A,1\n2025-03-01T02:00:00+01:00,A,2\n"
    h = load_history(write(tmp_path, text))
    assert h.n_hours == 2 and h.sales[0].tolist() == [1, 2]


def test_parquet_is_supported(tmp_path):
    df = pd.DataFrame(
        {
            "ts": pd.date_range("2025-03-01", periods=4, freq="h", tz="UTC"),
            "store_id": ["A"] * 4,
            "sales_units": [1, 2, 3, 4],
            "footfall": [10, 20, 30, 40],
        }
    )
    path = tmp_path / "h.parquet"
    df.to_parquet(path)
    h = load_history(path)
    assert h.sales[0].tolist() == [1, 2, 3, 4]
    assert h.footfall[0].tolist() == [10, 20, 30, 40]


def test_parquet_errors_name_rows(tmp_path):
    df = pd.DataFrame(
        {
            "ts": ["2025-03-01T00:00:00Z", "2025-03-01T01:00:00Z"],
            "store_id": ["A", "A"],
            "sales_units": [1.0, -5.0],
        }
    )
    path = tmp_path / "h.parquet"
    df.to_parquet(path)
    with pytest.raises(
        DataError,
        match=r"h\.parquet: column 'sales_units': 1 negative "
        r"value\(s\): row 1",
    ):
        load_history(path)


def test_boolean_flags_are_read_as_zero_and_one(tmp_path):
    text = "ts,store_id,sales_units,promo,is_holiday\n" + "".join(
        f"2025-03-01T{h:02d}:00:00Z,A,{h},{'True' if h % 2 else 'false'},FALSE\n" for h in range(4)
    )
    h = load_history(write(tmp_path, text))
    assert h.promo[0].tolist() == [0, 1, 0, 1]
    assert h.is_holiday[0].tolist() == [0, 0, 0, 0]


def test_a_mistyped_year_is_refused_not_gridded(tmp_path):
    text = HEADER + hourly_rows(hours=48) + "2205-03-01T00:00:00Z,A,3\n"
    with pytest.raises(
        DataError,
        match=r"store 'A' has a gap of \d+ hours between line 49 "
        r"and line 50 .*mistyped",
    ):
        load_history(write(tmp_path, text))


def test_footfall_is_never_filled_from_later_hours(tmp_path):
    text = "ts,store_id,sales_units,footfall\n" + "".join(
        f"2025-03-01T{h:02d}:00:00Z,A,{h},{'' if h < 3 else 99}\n" for h in range(6)
    )
    h = load_history(write(tmp_path, text))
    assert h.footfall[0].tolist() == [0, 0, 0, 99, 99, 99]


def test_pq_files_are_parquet_with_row_numbers(tmp_path):
    df = pd.DataFrame(
        {
            "ts": ["2025-03-01T00:00:00Z", "2025-03-01T01:00:00Z"],
            "store_id": ["A", "A"],
            "sales_units": [1.0, -5.0],
        }
    )
    path = tmp_path / "h.pq"
    df.to_parquet(path)
    with pytest.raises(DataError, match=r"1 negative value\(s\): row 1 \('-5.0'\)"):
        load_history(path)
