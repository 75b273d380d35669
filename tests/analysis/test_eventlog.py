"""The event-log loader and validator on real logs, dirty and hostile files."""

from __future__ import annotations

import gzip
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.columns import ACTIVITY, CASE, RESOURCE, ROW, TIMESTAMP
from analysis.errors import AnalysisError, EventLogError, InvalidParameter
from analysis.eventlog import (
    ColumnMapping,
    LoadLimits,
    TimeWindow,
    inspect_event_log,
    load_event_log,
    parse_time_window,
    read_event_log,
    validate_event_log,
)
from analysis.progress import CancelToken, OperationCancelled, Progress


def _pm4py_xes(path: Path, variant: str | None = None) -> pd.DataFrame:
    import pm4py

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if variant is None:
            return pm4py.read_xes(str(path))
        return pm4py.read_xes(str(path), variant=variant, show_progress_bar=False)


def _variants(events: pd.DataFrame) -> int:
    return events.groupby(CASE, sort=False)[ACTIVITY].agg(tuple).nunique()


def _assert_canonical(events: pd.DataFrame) -> None:
    assert str(events[TIMESTAMP].dt.tz) == "UTC"
    assert events.index.equals(pd.RangeIndex(len(events)))
    ordered = events.sort_values([CASE, TIMESTAMP, ROW], kind="stable", ignore_index=True)
    pd.testing.assert_frame_equal(events, ordered)
    assert all(isinstance(v, str) for v in events[CASE])
    assert all(isinstance(v, str) for v in events[ACTIVITY])


def _write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _error(path: Path, **kwargs: object) -> EventLogError:
    with pytest.raises(EventLogError) as info:
        load_event_log(path, **kwargs)  # type: ignore[arg-type]
    return info.value


# --------------------------------------------------------------------------- real logs


def test_receipt_matches_pm4py_strict_reader(datasets: Path) -> None:
    path = datasets / "receipt.xes.gz"
    result = load_event_log(path)
    events = result.events
    _assert_canonical(events)
    assert (result.cases, result.valid_records, result.activities) == (1434, 8577, 27)
    assert result.records_loaded == 8577 and result.error_records == 0
    assert result.data_quality_score == 100.0 and result.validation_errors == []
    assert result.source_format == "xes"

    # pm4py's own lxml reader, independent of the Rust reader we use
    reference = _pm4py_xes(path, "iterparse")
    assert len(events) == len(reference)
    assert events[CASE].nunique() == reference[CASE].nunique()
    assert set(events[ACTIVITY]) == set(reference[ACTIVITY])
    assert events[TIMESTAMP].min() == reference[TIMESTAMP].min()
    assert events[TIMESTAMP].max() == reference[TIMESTAMP].max()
    import pm4py

    assert len(pm4py.get_variants(reference)) == 116
    assert len(pm4py.get_variants(events)) == 116
    assert _variants(events) == 116


def test_bpic2012_matches_pm4py(datasets: Path) -> None:
    path = datasets / "bpic2012.xes.gz"
    result = load_event_log(path)
    events = result.events
    _assert_canonical(events)
    assert (result.cases, result.valid_records, result.records_loaded) == (13087, 262200, 262200)
    assert result.validation_errors == [] and result.data_quality_score == 100.0
    reference = _pm4py_xes(path)
    assert len(reference) == len(events)
    assert reference[CASE].nunique() == result.cases
    assert reference[ACTIVITY].nunique() == result.activities == 24
    assert _variants(events) == 4366
    assert result.to_dict()["timeRange"] == {
        "start": "2011-09-30T22:38:44.546Z",
        "end": "2012-03-14T15:04:54.681Z",
    }
    # the per-case order equals pm4py's stable sort of its own frame
    ref = reference.assign(**{ROW: np.arange(len(reference))})
    ref = ref.sort_values([CASE, TIMESTAMP, ROW], kind="stable", ignore_index=True)
    assert events[ACTIVITY].tolist() == ref[ACTIVITY].tolist()


def test_sepsis_csv_keeps_case_named_na(datasets: Path) -> None:
    result = load_event_log(datasets / "sepsis.csv")
    events = result.events
    _assert_canonical(events)
    assert result.source_format == "csv"
    assert result.mapping.to_dict() == {
        "caseColumn": "Case ID",
        "activityColumn": "Activity",
        "timestampColumn": "Complete Timestamp",
        "resourceColumn": "org:group",
        "lifecycleColumn": "lifecycle:transition",
    }
    assert result.cases == 1050
    assert "NA" in set(events[CASE])
    assert (events[CASE] == "NA").sum() == 24
    assert result.activities == 16
    # one record repeats the one before it in every column (case ES, Leucocytes): kept by
    # default (pm4py counts 15,214 events), reported
    assert result.records_loaded == 15214 and result.valid_records == 15214
    [duplicate] = result.validation_errors
    assert (duplicate.type, duplicate.count, duplicate.resolved) == ("Duplicate Event", 1, False)
    assert "case 'ES'" in duplicate.examples[0]
    assert result.data_quality_score == 99.9  # 100 * 15213 / 15214 = 99.993, rounded down
    # "2014/10/22 11:15:41.000" has no offset: read as UTC
    first = events[events[CASE] == "A"][TIMESTAMP].iloc[0]
    assert first == pd.Timestamp("2014-10-22T11:15:41Z")
    assert set(events[RESOURCE]) >= {"A", "B"}


def test_read_keeps_values_as_read(datasets: Path) -> None:
    raw = read_event_log(datasets / "sepsis.csv")
    assert raw.source_format == "csv"
    assert raw.frame[TIMESTAMP].iloc[0] == "2014/10/22 11:15:41.000"
    assert raw.frame[ROW].tolist() == list(range(len(raw.frame)))
    assert {"Variant", "Age", "lifecycle:transition"} <= set(raw.frame.columns)
    assert raw.to_dict()["records"] == 15214

    raw_xes = read_event_log(datasets / "running-example.xes")
    assert str(raw_xes.frame[TIMESTAMP].dt.tz) == "UTC"


def test_inspect_receipt(datasets: Path) -> None:
    summary = inspect_event_log(datasets / "receipt.xes.gz")
    assert summary.to_dict() == {
        "cases": 1434,
        "events": 8577,
        "activities": 27,
        "timeRange": {"start": "2010-10-02T07:20:39.266Z", "end": "2012-01-23T14:42:54.644Z"},
        "format": "xes",
        "columnMapping": {
            "caseColumn": "case:concept:name",
            "activityColumn": "concept:name",
            "timestampColumn": "time:timestamp",
            "resourceColumn": "org:resource",
            "lifecycleColumn": "lifecycle:transition",
        },
    }


def test_parquet_roundtrip(datasets: Path, tmp_path: Path) -> None:
    original = load_event_log(datasets / "receipt.xes.gz").events
    path = tmp_path / "receipt.bin"  # content decides the format, not the name
    original.drop(columns=[ROW]).sample(frac=1.0, random_state=0).to_parquet(path)
    result = load_event_log(path)
    assert result.source_format == "parquet"
    assert (result.cases, result.valid_records, result.activities) == (1434, 8577, 27)
    cols = [CASE, ACTIVITY, TIMESTAMP, RESOURCE]
    pd.testing.assert_frame_equal(result.events[cols], original[cols])


def test_parquet_numeric_case_ids_and_string_times(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "CaseNo": [10, 10, 9],
            "Step": ["a", "b", "a"],
            "When": ["2024-01-01T00:00:00+01:00", "2024-01-01T01:00:00Z", "2024-01-02"],
        }
    )
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    result = load_event_log(path, ColumnMapping(case="CaseNo", activity="Step", timestamp="When"))
    # case IDs become text and sort as text ("10" < "9")
    assert result.events[CASE].tolist() == ["10", "10", "9"]
    assert result.events[TIMESTAMP].tolist() == [
        pd.Timestamp("2023-12-31T23:00:00Z"),
        pd.Timestamp("2024-01-01T01:00:00Z"),
        pd.Timestamp("2024-01-02T00:00:00Z"),
    ]


# --------------------------------------------------------------------------- CSV


_ROWS = [
    ("c1", "register", "2024-01-01T08:00:00Z", "ann"),
    ("c1", "check", "2024-01-01T09:00:00Z", "bob"),
    ("c2", "register", "2024-01-02T08:00:00Z", "ann"),
    ("c2", "pay, fast", "2024-01-02T10:00:00Z", "cy"),
]


def _csv(delimiter: str, header: tuple[str, ...] = ("Case ID", "Activity", "Timestamp", "User")):
    def cell(value: str) -> str:
        return f'"{value}"' if delimiter in value or "," in value else value

    lines = [delimiter.join(header)] + [delimiter.join(cell(v) for v in r) for r in _ROWS]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_delimiters(tmp_path: Path, delimiter: str) -> None:
    result = load_event_log(_write(tmp_path, "log.txt", _csv(delimiter)))
    assert result.mapping == ColumnMapping("Case ID", "Activity", "Timestamp", "User")
    events = result.events
    assert events[ACTIVITY].tolist() == ["register", "check", "register", "pay, fast"]
    assert events[RESOURCE].tolist() == ["ann", "bob", "ann", "cy"]
    assert (result.cases, result.valid_records) == (2, 4)


def test_csv_bom_latin1_and_gzip(tmp_path: Path) -> None:
    bom = load_event_log(_write(tmp_path, "bom.csv", "\ufeff" + _csv(";")))
    assert bom.mapping.case == "Case ID"
    text = "case;activity;timestamp\nc1;Prüfung café;2024-01-01\n"
    latin = load_event_log(_write(tmp_path, "latin.csv", text.encode("latin-1")))
    assert latin.events[ACTIVITY].tolist() == ["Prüfung café"]
    zipped = load_event_log(_write(tmp_path, "log.csv.gz", gzip.compress(_csv(",").encode())))
    assert (zipped.source_format, zipped.valid_records) == ("csv", 4)


def test_explicit_mapping_overrides_detection(tmp_path: Path) -> None:
    text = (
        "case_id,activity,task,timestamp,resource,operator\n"
        "1,a,Intake,2024-01-01T00:00:00Z,r1,Olga\n"
        "1,b,Review,2024-01-01T01:00:00Z,r2,Piet\n"
    )
    path = _write(tmp_path, "log.csv", text)
    detected = load_event_log(path)
    assert detected.mapping == ColumnMapping("case_id", "activity", "timestamp", "resource")
    # names match ignoring case; the displaced "activity" column keeps its data
    chosen = load_event_log(path, ColumnMapping(activity="TASK", resource="operator"))
    assert chosen.mapping == ColumnMapping("case_id", "task", "timestamp", "operator")
    assert chosen.events[ACTIVITY].tolist() == ["Intake", "Review"]
    assert chosen.events[RESOURCE].tolist() == ["Olga", "Piet"]
    assert chosen.events["activity"].tolist() == ["a", "b"]
    assert chosen.to_dict()["columnMapping"]["activityColumn"] == "task"


def test_mapped_column_missing(tmp_path: Path) -> None:
    path = _write(tmp_path, "log.csv", _csv(","))
    error = _error(path, mapping=ColumnMapping(case="Ticket"))
    assert (error.code, error.field) == ("missing_column", "caseColumn")
    assert "Ticket" in error.message and "Case ID" in error.message
    undetectable = _write(tmp_path, "odd.csv", "who,what,when\n1,a,2024-01-01\n")
    assert _error(undetectable).field == "caseColumn"
    with pytest.raises(InvalidParameter) as twice:
        load_event_log(path, ColumnMapping(case="Activity", activity="Activity"))
    assert twice.value.field == "activityColumn"


def test_mapping_dict_roundtrip() -> None:
    mapping = ColumnMapping.from_dict({"caseColumn": " Case ID ", "activityColumn": ""})
    assert mapping == ColumnMapping(case="Case ID")
    assert mapping.to_dict() == {
        "caseColumn": "Case ID",
        "activityColumn": None,
        "timestampColumn": None,
        "resourceColumn": None,
    }
    with pytest.raises(InvalidParameter):
        ColumnMapping.from_dict({"caseColumn": 3})


DIRTY = """case,activity,timestamp,resource
c1,A,2024-01-01T08:00:00Z,r1
c1,B,2024-01-01T09:00:00Z,r1
c1,B,2024-01-01T09:00:00Z,r1
c1,C,,r2
c2,A,not a date,r1
c2,B,2024-13-45 10:00,r1
,A,2024-01-02T08:00:00Z,r1
c2,   ,2024-01-02T09:00:00Z,r1
,C,,r1
c2,C,2024-01-02T10:00:00Z,
NA,A,2024-01-03T08:00:00Z,r3
c2,B,2024-01-02T09:30:00Z,r2
c1,B,2024-01-01T09:00:00Z,r9
"""


def test_dirty_csv_counts_and_score(tmp_path: Path) -> None:
    result = load_event_log(_write(tmp_path, "dirty.csv", DIRTY), drop_duplicates=True)
    issues = {i.type: i for i in result.validation_errors}
    assert {t: i.count for t, i in issues.items()} == {
        "Missing Case ID": 2,
        "Missing Activity": 1,
        "Missing Timestamp": 2,
        "Unparseable Timestamp": 2,
        "Duplicate Event": 1,  # record 13 differs in resource, so it is kept
    }
    assert all(i.resolved for i in issues.values())
    assert issues["Unparseable Timestamp"].examples == [
        "record 5 (value 'not a date', case 'c2', activity 'A')",
        "record 6 (value '2024-13-45 10:00', case 'c2', activity 'B')",
    ]
    assert issues["Duplicate Event"].examples == [
        "record 3 (case 'c1', activity 'B', at 2024-01-01T09:00:00Z)"
    ]
    assert (result.records_loaded, result.valid_records, result.error_records) == (13, 6, 7)
    assert result.data_quality_score == 46.1  # floor(1000 * 6 / 13) / 10
    assert "rounded down" in result.data_quality_method
    events = result.events
    assert events[CASE].tolist() == ["NA", "c1", "c1", "c1", "c2", "c2"]
    assert events[ROW].tolist() == [10, 0, 1, 12, 11, 9]
    assert events[RESOURCE].tolist() == ["r3", "r1", "r1", "r9", "r2", ""]
    payload = result.to_dict()
    assert payload["validationErrors"][0].keys() >= {"type", "count", "resolved"}
    assert payload["errorRecords"] == 7 and payload["dataQualityScore"] == 46.1


def test_duplicates_can_be_kept(tmp_path: Path) -> None:
    result = load_event_log(_write(tmp_path, "dirty.csv", DIRTY))  # kept by default
    duplicate = next(i for i in result.validation_errors if i.type == "Duplicate Event")
    assert (duplicate.count, duplicate.resolved) == (1, False)
    assert (result.valid_records, result.error_records) == (7, 6)
    assert result.data_quality_score == 46.1  # the kept duplicate still counts as an issue


def test_timezones_and_layouts(tmp_path: Path) -> None:
    text = (
        "case;activity;timestamp\n"
        "x;D;2024-03-01T04:15:00-05:00\n"
        "x;A;2024-03-01T10:00:00+02:00\n"
        "x;C;2024-03-01 09:00:00\n"
        "x;B;2024-03-01T08:30:00Z\n"
    )
    events = load_event_log(_write(tmp_path, "tz.csv", text)).events
    assert events[ACTIVITY].tolist() == ["A", "B", "C", "D"]
    assert [t.isoformat() for t in events[TIMESTAMP]] == [
        "2024-03-01T08:00:00+00:00",
        "2024-03-01T08:30:00+00:00",
        "2024-03-01T09:00:00+00:00",
        "2024-03-01T09:15:00+00:00",
    ]
    # one layout decided from all its values (day first, since 31 cannot be a month); ISO apart
    text = "case,activity,time\nx,a,31.01.2024 10:00\nx,b,01.02.2024 11:00\nx,c,2024-02-02T12:00Z\n"
    result = load_event_log(_write(tmp_path, "layout.csv", text))
    assert result.events[TIMESTAMP].tolist() == [
        pd.Timestamp("2024-01-31T10:00Z"),
        pd.Timestamp("2024-02-01T11:00Z"),
        pd.Timestamp("2024-02-02T12:00Z"),
    ]
    assert "format %d.%m.%Y %H:%M" in result.data_quality_method
    assert "ISO 8601" in result.data_quality_method


# --------------------------------------------------------------------------- time window

WINDOW = """case,activity,timestamp
a,x,2024-01-01T08:00:00Z
a,y,2024-01-02T23:59:59.999Z
b,x,2024-01-03T00:00:00Z
b,y,2024-01-03T23:59:59Z
c,x,2024-01-04T00:00:00Z
"""


def test_parse_time_window() -> None:
    window = parse_time_window("2024-01-02", "2024-01-03")
    assert window == TimeWindow(
        datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 4, tzinfo=UTC), end_inclusive=False
    )
    moment = parse_time_window(None, "2024-01-03T02:00:00+02:00")
    assert moment == TimeWindow(None, datetime(2024, 1, 3, tzinfo=UTC), end_inclusive=True)
    assert parse_time_window(None, "") is None
    with pytest.raises(InvalidParameter) as bad:
        parse_time_window("01/02/2024", None)
    assert bad.value.field == "parameters.timeWindow.startDate"
    with pytest.raises(InvalidParameter) as order:
        parse_time_window("2024-02-01", "2024-01-31")
    assert order.value.field == "parameters.timeWindow.endDate"
    assert parse_time_window("2024-01-31", "2024-01-31") is not None  # one whole day


def test_time_window_filters_with_inclusive_end_date(tmp_path: Path) -> None:
    path = _write(tmp_path, "w.csv", WINDOW)
    result = load_event_log(path, time_window=parse_time_window("2024-01-02", "2024-01-03"))
    assert (result.valid_records, result.filtered_by_time_window) == (5, 3 - 1)
    assert len(result.events) == 3 and result.cases == 2
    assert result.to_dict()["timeRange"] == {
        "start": "2024-01-02T23:59:59.999Z",
        "end": "2024-01-03T23:59:59Z",
    }
    assert "removed 2 valid events" in result.data_quality_method
    instant = load_event_log(path, time_window=parse_time_window(None, "2024-01-03T00:00:00Z"))
    assert (len(instant.events), instant.filtered_by_time_window) == (3, 2)
    later = load_event_log(path, time_window=parse_time_window("2024-01-03", None))
    assert later.events[CASE].tolist() == ["b", "b", "c"]
    with pytest.raises(InvalidParameter) as nothing:
        load_event_log(path, time_window=parse_time_window("2025-01-01", None))
    assert nothing.value.field == "parameters.timeWindow"
    assert "2024-01-01T08:00:00Z" in nothing.value.message


def test_time_window_on_real_log(datasets: Path) -> None:
    raw = read_event_log(datasets / "receipt.xes.gz")
    window = parse_time_window("2011-01-01", "2011-06-30")
    result = validate_event_log(raw, window)
    full = load_event_log(datasets / "receipt.xes.gz").events
    ts = full[TIMESTAMP]
    inside = (ts >= pd.Timestamp("2011-01-01T00:00Z")) & (ts < pd.Timestamp("2011-07-01T00:00Z"))
    assert len(result.events) == int(inside.sum()) > 0
    assert result.filtered_by_time_window == int((~inside).sum())
    assert result.valid_records == 8577 and result.data_quality_score == 100.0


# --------------------------------------------------------------------------- bad files


def test_empty_and_header_only(tmp_path: Path) -> None:
    assert _error(_write(tmp_path, "empty.csv", b"")).code == "empty_file"
    assert _error(_write(tmp_path, "blank.xes", b"  \n\n")).code == "empty_file"
    header = _error(_write(tmp_path, "header.csv", "case,activity,timestamp\n"))
    assert header.code == "no_valid_events"
    noevents = '<?xml version="1.0"?><log xes.version="1.0"><trace></trace></log>'
    assert _error(_write(tmp_path, "none.xes", noevents)).code == "no_valid_events"
    assert _error(_write(tmp_path, "e.xes.gz", gzip.compress(b""))).code == "empty_file"


def test_no_valid_events(tmp_path: Path) -> None:
    text = "case,activity,timestamp\n,a,2024-01-01\nc,b,\n"
    error = _error(_write(tmp_path, "bad.csv", text))
    assert error.code == "no_valid_events"
    assert "Missing Case ID: 1" in error.message and "Missing Timestamp: 1" in error.message


def test_binary_files_named_as_logs(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    error = _error(_write(tmp_path, "log.csv", png))
    assert (error.code, error.field) == ("unsupported_format", "file")
    assert "PNG" in error.message
    assert "ZIP" in _error(_write(tmp_path, "log.xes", b"PK\x03\x04" + png)).message
    noise = np.random.default_rng(7).bytes(20_000)
    assert _error(_write(tmp_path, "noise.xes", noise)).code == "unsupported_format"
    inner = _error(_write(tmp_path, "noise.xes.gz", gzip.compress(noise)))
    assert inner.code == "unsupported_format"
    bad_parquet = _error(_write(tmp_path, "x.parquet", b"PAR1" + noise))
    assert bad_parquet.code == "corrupt_file"
    missing = _error(tmp_path / "nope.csv")
    assert missing.field == "file"


def test_corrupt_xes(datasets: Path, tmp_path: Path) -> None:
    data = (datasets / "receipt.xes.gz").read_bytes()
    truncated = _error(_write(tmp_path, "cut.xes.gz", data[: len(data) // 2]))
    assert truncated.code == "corrupt_file" and "truncated" in truncated.message
    plain = (datasets / "running-example.xes").read_bytes()
    # the Rust reader would quietly return the first half of this one
    half = _error(_write(tmp_path, "half.xes", plain[: len(plain) // 2]))
    assert half.code == "corrupt_file"
    # ... and nothing at all for this one: the strict reader names the problem
    broken = plain.replace(b"</event>", b"</evnt>", 1)
    assert _error(_write(tmp_path, "broken.xes", broken)).code == "corrupt_file"
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    assert _error(_write(tmp_path, "flip.xes.gz", bytes(flipped))).code == "corrupt_file"
    not_xes = _error(_write(tmp_path, "page.xes", "<html><body>hi</body></html>"))
    assert not_xes.code == "unsupported_format"


def test_events_outside_traces_are_counted(datasets: Path, tmp_path: Path) -> None:
    plain = (datasets / "running-example.xes").read_text()
    stray = (
        '<event><string key="concept:name" value="stray"/>'
        '<date key="time:timestamp" value="2011-01-01T00:00:00"/></event></log>'
    )
    result = load_event_log(_write(tmp_path, "stray.xes", plain.replace("</log>", stray)))
    [issue] = result.validation_errors
    assert (issue.type, issue.count, issue.resolved) == ("Event Outside Trace", 1, True)
    assert (result.records_loaded, result.valid_records, result.error_records) == (43, 42, 1)
    assert result.data_quality_score == 97.6  # floor(1000 * 42 / 43) / 10


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<log xes.version="1.0"><trace><string key="concept:name" value="&lol9;"/>
<event><string key="concept:name" value="a"/>
<date key="time:timestamp" value="2024-01-01T00:00:00Z"/></event></trace></log>
"""


def test_billion_laughs_and_external_entities_refused(tmp_path: Path) -> None:
    for name, data in (
        ("laughs.xes", BILLION_LAUGHS.encode()),
        ("laughs.xes.gz", gzip.compress(BILLION_LAUGHS.encode())),
        (
            "xxe.xes",
            b'<?xml version="1.0"?><!DOCTYPE log [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<log><trace><string key="concept:name" value="&x;"/></trace></log>',
        ),
    ):
        error = _error(_write(tmp_path, name, data))
        assert (error.code, error.field) == ("unsafe_content", "file"), name


def test_dtd_across_a_read_boundary_refused(tmp_path: Path) -> None:
    # the scanner reads 4 MiB at a time; put "<!DOCTYPE" across that boundary
    prefix = b'<?xml version="1.0"?><!--'
    pad = (4 << 20) - len(prefix) - 3 - 4
    data = prefix + b"x" * pad + b"-->" + b"<!DOCTYPE log []><log></log>"
    assert _error(_write(tmp_path, "edge.xes", data)).code == "unsafe_content"


def test_gzip_bomb_stopped_by_size_limit(tmp_path: Path) -> None:
    body = b"<trace><event></event></trace>" * 400_000  # 12 MB, compresses about 1000x
    path = _write(tmp_path, "bomb.xes.gz", gzip.compress(b"<log>" + body + b"</log>"))
    error = _error(path, limits=LoadLimits(max_uncompressed_bytes=1_000_000))
    assert error.code == "too_large" and "1,000,000" in error.message


def test_gzip_bomb_stopped_by_ratio(tmp_path: Path) -> None:
    # 4,096 concatenated members of 1 MiB of zeros: 4 MB on disk, 4 GiB once expanded
    member = gzip.compress(b"\0" * (1 << 20), compresslevel=9)
    path = tmp_path / "bomb.gz"
    with open(path, "wb") as fh:
        for _ in range(4096):
            fh.write(member)
    error = _error(path)
    assert error.code == "too_large" and "compression bomb" in error.message


def test_size_and_event_limits(datasets: Path, tmp_path: Path) -> None:
    path = datasets / "receipt.xes.gz"
    assert _error(path, limits=LoadLimits(max_file_bytes=1000)).code == "too_large"
    assert _error(path, limits=LoadLimits(max_events=8000)).code == "too_large"
    csv_path = _write(tmp_path, "log.csv", _csv(","))
    assert _error(csv_path, limits=LoadLimits(max_events=3)).code == "too_large"


def test_malformed_csv(tmp_path: Path) -> None:
    ragged = "case,activity,timestamp\n1,a,2024-01-01\n1,b,2024-01-02,x,y\n"
    error = _error(_write(tmp_path, "ragged.csv", ragged))
    assert error.code == "corrupt_file" and "line 3" in error.message
    quote = 'case,activity,timestamp\n1,"a,2024-01-01\n1,b,2024-01-02\n'
    assert _error(_write(tmp_path, "quote.csv", quote)).code == "corrupt_file"


@pytest.mark.parametrize("seed", range(6))
def test_hostile_bytes_raise_only_analysis_errors(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    prefixes = [b"", b"<?xml version='1.0'?><log>", b"\x1f\x8b", b"PAR1", b"case,activity\n"]
    data = prefixes[seed % len(prefixes)] + rng.bytes(int(rng.integers(1, 5000)))
    with pytest.raises(AnalysisError):
        load_event_log(_write(tmp_path, f"h{seed}.csv", data))


# --------------------------------------------------------------------------- progress


def test_progress_and_cancellation(datasets: Path) -> None:
    updates: list[tuple[int, int, str]] = []
    progress = Progress(sink=lambda d, t, a: updates.append((d, t, a)), min_interval=0.0)
    load_event_log(datasets / "bpic2012.xes.gz", progress=progress)
    texts = {a for _, _, a in updates}
    assert any("Decompressing" in a for a in texts)
    assert any("Parsing XES" in a for a in texts)
    assert updates[-1][0] == updates[-1][1] and updates[-1][2] == "Validation finished"

    token = CancelToken()
    token.cancel("user asked")
    with pytest.raises(OperationCancelled):
        load_event_log(datasets / "sepsis.csv", progress=Progress(token=token))
