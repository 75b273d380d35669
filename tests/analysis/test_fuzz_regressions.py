"""The loader crashes the fuzzing found (tests/analysis/test_fuzz_loader.py, issue #16), each with
its minimal input: each was a 500 at upload; now the file loads or is a 422 naming the file."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.columns import CASE
from analysis.errors import EventLogError
from analysis.eventlog import inspect_event_log, load_event_log


def _parquet(tmp_path: Path, columns: list[Any], names: list[str]) -> Path:
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table(columns, names=names), path)
    return path


def test_parquet_with_two_columns_of_one_name_is_read(tmp_path: Path) -> None:
    # was AttributeError: 'DataFrame' object has no attribute 'dtype'
    path = _parquet(
        tmp_path,
        [pa.array(["c1"]), pa.array(["a"]), pa.array(["2024-01-02T03:04:05Z"]), pa.array(["x"])],
        ["case_id", "activity", "timestamp", "case_id"],
    )
    result = load_event_log(path)
    assert result.valid_records == 1
    assert "case_id.1" in result.events.columns


def test_parquet_with_a_duplicate_name_only_is_a_missing_column(tmp_path: Path) -> None:
    path = _parquet(tmp_path, [pa.array([0]), pa.array([0])], ["case_id", "case_id"])
    with pytest.raises(EventLogError) as err:
        inspect_event_log(path)
    assert err.value.code == "missing_column"


@pytest.mark.parametrize(
    "timestamps",
    [
        pa.array([{"x": 0, "y": "0"}]),  # a struct: dicts in an object column
        pa.nulls(1),  # all null: None in an object column
        pa.array([[1, 2]]),  # a nested list
    ],
    ids=["struct", "all-null", "list"],
)
def test_parquet_timestamps_that_are_not_text_are_unparseable(
    tmp_path: Path, timestamps: Any
) -> None:
    # was AttributeError: Can only use .str accessor with string values, not floating
    path = _parquet(
        tmp_path,
        [pa.array(["c1"]), pa.array(["a"]), timestamps],
        ["case_id", "activity", "timestamp"],
    )
    with pytest.raises(EventLogError) as err:
        inspect_event_log(path)
    assert err.value.code == "no_valid_events" and err.value.field == "file"


def test_parquet_binary_columns_that_are_not_utf8_are_read_as_text(tmp_path: Path) -> None:
    # was UnicodeDecodeError: 'utf-8' codec can't decode byte 0x80 in position 0
    path = _parquet(
        tmp_path,
        [
            pa.array([b"\x80", b"c2"], pa.binary()),
            pa.array([b"a", b"\xff"], pa.binary()),
            pa.array(["2024-01-02T03:04:05Z", "2024-01-02T03:05:05Z"]),
        ],
        ["case_id", "activity", "timestamp"],
    )
    result = load_event_log(path)
    assert result.valid_records == 2
    assert sorted(result.events[CASE]) == ["c2", "\ufffd"]


@pytest.mark.parametrize("gzipped", [False, True], ids=["csv", "csv.gz"])
def test_csv_header_longer_than_the_csv_field_limit_is_a_corrupt_file(
    tmp_path: Path, gzipped: bool
) -> None:
    # was _csv.Error: field larger than field limit (131072) (a 1 MB gzip bomb of "a"s)
    data = b"a" * 1_000_000
    path = tmp_path / ("log.csv.gz" if gzipped else "log.csv")
    path.write_bytes(gzip.compress(data) if gzipped else data)
    with pytest.raises(EventLogError) as err:
        inspect_event_log(path)
    assert err.value.code == "corrupt_file" and err.value.field == "file"
    assert "longer than 131,072 characters" in err.value.message


def test_parquet_nested_case_and_activity_values_are_read_as_text(tmp_path: Path) -> None:
    # was TypeError: unhashable type: 'dict' (a struct activity column)
    path = _parquet(
        tmp_path,
        [
            pa.array([[1, 2], [1, 2]]),
            pa.array([{"x": 0}, {"x": 0}]),
            pa.array(["2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"]),
        ],
        ["case_id", "activity", "timestamp"],
    )
    result = load_event_log(path)
    assert result.records_loaded == 2 and result.cases == 1 and result.activities == 1


def test_a_timestamp_read_as_a_year_before_1_is_unparseable(tmp_path: Path) -> None:
    # was ValueError: year -1 is out of range (the value "-1" read as a year)
    path = tmp_path / "log.csv"
    path.write_bytes(
        b"case_id,activity,timestamp\nc1,a,2000-01-01T00:00:00\nc1,b,-1\nc2,a,2000-01-02T00:00:00\n"
    )
    result = load_event_log(path)
    assert result.records_loaded == 3
    unparseable = [i for i in result.validation_errors if i.type == "Unparseable Timestamp"]
    assert unparseable and unparseable[0].count == 1
