"""Issue #14's loading rules on exports of real logs: the day/month order decided from every
value, ambiguous columns refused, timestampFormat and timezone, mixed offsets reported,
lifecycle and start/end columns, header names in six languages, duplicates kept by default.

Each export is written into tmp_path from a real log (receipt, helpdesk, sepsis), so the
expected figures are the XES's own."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.columns import ACTIVITY, CASE, LIFECYCLE, RESOURCE, ROW, TIMESTAMP
from analysis.enrichment import enrich_events
from analysis.errors import EventLogError, InvalidParameter
from analysis.eventlog import ColumnMapping, LoadResult, load_event_log, parse_time_window
from analysis.params import parse_analysis_params, parse_enrichment_params
from analysis.performance import compute_performance
from analysis.runs import ProcessMiningRun


@pytest.fixture(scope="module")
def receipt(datasets: Path) -> LoadResult:
    return load_event_log(datasets / "receipt.xes.gz")


@pytest.fixture(scope="module")
def bpic(datasets: Path) -> pd.DataFrame:
    """bpic2012's first 2,500 cases (by ID; they start in October 2011), with start events."""
    events = load_event_log(datasets / "bpic2012.xes.gz").events
    cases = np.sort(events[CASE].unique())[:2_500]
    part = events[events[CASE].isin(cases)].reset_index(drop=True)
    part[ROW] = np.arange(len(part))
    return part


def _export(
    events: pd.DataFrame,
    path: Path,
    fmt: str = "%Y-%m-%dT%H:%M:%S.%f",
    names: dict[str, str] | None = None,
    order: np.ndarray | None = None,
) -> Path:
    frame = events.drop(columns=[ROW]).copy()
    frame[TIMESTAMP] = frame[TIMESTAMP].dt.strftime(fmt)
    if order is not None:
        frame = frame.iloc[order]
    frame.rename(columns=names or {}).to_csv(path, index=False)
    return path


def _variants(events: pd.DataFrame) -> set[tuple[str, ...]]:
    return set(events.groupby(CASE, sort=False)[ACTIVITY].agg(tuple))


def _same_figures(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same events in the same order, same variants and performance figures."""
    assert len(got) == len(expected)
    assert got[CASE].tolist() == expected[CASE].tolist()
    assert got[ACTIVITY].tolist() == expected[ACTIVITY].tolist()
    assert (got[TIMESTAMP].to_numpy() == expected[TIMESTAMP].to_numpy()).all()
    assert _variants(got) == _variants(expected)
    assert compute_performance(got).to_dict() == compute_performance(expected).to_dict()


def _floor_seconds(events: pd.DataFrame) -> pd.DataFrame:
    out = events.copy()
    out[TIMESTAMP] = out[TIMESTAMP].dt.floor("s")
    return out.sort_values([CASE, TIMESTAMP, ROW], kind="stable", ignore_index=True)


# --------------------------------------------------------------------------- day / month


def test_day_first_trap_reads_like_the_xes(bpic: pd.DataFrame, tmp_path: Path) -> None:
    """The audit's trap: bpic2012 as dd.mm.yyyy HH:MM:SS, the first rows all 1-12 October."""
    stamps = bpic[TIMESTAMP]
    early = ((stamps.dt.month == 10) & (stamps.dt.day <= 12)).to_numpy()
    order = np.concatenate([np.flatnonzero(early), np.flatnonzero(~early)])
    assert early.sum() > 10_000  # well past any first-rows sample
    path = _export(bpic, tmp_path / "trap.csv", "%d.%m.%Y %H:%M:%S", order=order)
    result = load_event_log(path)
    assert "format %d.%m.%Y %H:%M:%S" in result.data_quality_method
    got = result.events.sort_values([CASE, TIMESTAMP], kind="stable", ignore_index=True)
    expected = _floor_seconds(bpic).sort_values([CASE, TIMESTAMP], kind="stable")
    expected = expected.reset_index(drop=True)
    assert len(got) == len(bpic) and result.cases == bpic[CASE].nunique()
    assert (got[TIMESTAMP].to_numpy() == expected[TIMESTAMP].to_numpy()).all()
    assert _variants(got) == _variants(expected)
    assert compute_performance(got).to_dict() == compute_performance(expected).to_dict()


def test_month_first_proved_by_one_value(receipt: LoadResult, tmp_path: Path) -> None:
    result = load_event_log(_export(receipt.events, tmp_path / "us.csv", "%m/%d/%Y %H:%M:%S"))
    assert "format %m/%d/%Y %H:%M:%S" in result.data_quality_method
    _same_figures(result.events, _floor_seconds(receipt.events))


def _ambiguous_slice(receipt: LoadResult) -> pd.DataFrame:
    events = receipt.events
    days = events[TIMESTAMP].dt.day
    return events[(days <= 12) & (events[TIMESTAMP].dt.month != days)]


def test_ambiguous_column_refused_naming_it(receipt: LoadResult, tmp_path: Path) -> None:
    names = {TIMESTAMP: "Zeitstempel"}
    path = _export(_ambiguous_slice(receipt), tmp_path / "amb.csv", "%d.%m.%Y %H:%M:%S", names)
    with pytest.raises(EventLogError) as info:
        load_event_log(path)
    error = info.value
    assert error.code == "ambiguous_timestamps" and error.field == "timestampFormat"
    assert "'Zeitstempel'" in error.message and "%d.%m.%Y %H:%M:%S" in error.message
    assert "%m.%d.%Y %H:%M:%S" in error.message


def test_timestamp_format_makes_it_load(receipt: LoadResult, tmp_path: Path) -> None:
    part = _ambiguous_slice(receipt)
    path = _export(part, tmp_path / "amb.csv", "%d.%m.%Y %H:%M:%S")
    mapping = ColumnMapping(timestamp_format="%d.%m.%Y %H:%M:%S")
    result = load_event_log(path, mapping)
    expected = _floor_seconds(part.reset_index(drop=True).assign(**{ROW: np.arange(len(part))}))
    _same_figures(result.events, expected)
    assert result.mapping.to_dict()["timestampFormat"] == "%d.%m.%Y %H:%M:%S"
    # the other reading is taken when asked for: different instants, nothing refused
    swapped = load_event_log(path, ColumnMapping(timestamp_format="%m.%d.%Y %H:%M:%S"))
    assert swapped.valid_records == len(part)
    assert swapped.start != result.start
    # through the operation's parameters, over the dataset's mapping
    run = ProcessMiningRun(
        path, tmp_path / "out", {"timestampFormat": "%d.%m.%Y %H:%M:%S"}, ColumnMapping()
    )
    run.sink = None
    run.run_load()
    assert run.load is not None and run.load.start == result.start
    # a format nothing matches is named
    with pytest.raises(InvalidParameter) as info:
        load_event_log(path, ColumnMapping(timestamp_format="%Y/%m/%d"))
    assert info.value.field == "parameters.timestampFormat"


def test_conflicting_orders_refused(tmp_path: Path) -> None:
    text = "case,activity,timestamp\na,x,13.01.2024 10:00\na,y,01.14.2024 10:00\n"
    path = tmp_path / "both.csv"
    path.write_text(text)
    with pytest.raises(EventLogError, match="mixes day-first and month-first"):
        load_event_log(path)


def test_values_equal_both_ways_are_not_ambiguous(tmp_path: Path) -> None:
    path = tmp_path / "same.csv"
    path.write_text("case,activity,timestamp\na,x,01/01/2024 10:00\na,y,02/02/2024 10:00\n")
    assert load_event_log(path).valid_records == 2


# --------------------------------------------------------------------------- zones


def test_timezone_parameter(receipt: LoadResult, tmp_path: Path) -> None:
    path = _export(receipt.events, tmp_path / "naive.csv")
    utc = load_event_log(path)
    tokyo = load_event_log(path, ColumnMapping(timezone="Asia/Tokyo"))
    shift = utc.events[TIMESTAMP] - tokyo.events[TIMESTAMP]
    assert (shift == pd.Timedelta(hours=9)).all()
    assert "wall times in Asia/Tokyo" in tokyo.data_quality_method
    # summer and winter offsets of a zone with daylight saving time
    berlin = load_event_log(path, ColumnMapping(timezone="Europe/Berlin")).events[TIMESTAMP]
    assert set((utc.events[TIMESTAMP] - berlin).unique()) == {
        pd.Timedelta(hours=1),
        pd.Timedelta(hours=2),
    }
    with pytest.raises(InvalidParameter) as info:
        parse_analysis_params({"timezone": "Mars/Olympus"})
    assert info.value.field == "parameters.timezone"
    with pytest.raises(InvalidParameter) as info:
        ColumnMapping.from_dict({"timezone": "CEST+5"})
    assert info.value.field == "timezone"
    assert parse_enrichment_params({"timezone": "Asia/Tokyo"}).timezone == "Asia/Tokyo"


def test_mixed_offsets_reported(receipt: LoadResult, tmp_path: Path) -> None:
    events = receipt.events.drop(columns=[ROW]).copy()
    text = events[TIMESTAMP].dt.strftime("%Y-%m-%d %H:%M:%S")
    # every second row carries the instant as Amsterdam time with its offset
    local = events[TIMESTAMP].dt.tz_convert("Europe/Amsterdam")
    offset = local.dt.strftime("%Y-%m-%d %H:%M:%S") + local.dt.strftime("%z").str.replace(
        r"(\d\d)(\d\d)$", r"\1:\2", regex=True
    )
    with_offset = np.arange(len(events)) % 2 == 1
    events[TIMESTAMP] = np.where(with_offset, offset, text)
    path = tmp_path / "mixed.csv"
    events.to_csv(path, index=False)

    result = load_event_log(path)
    [issue] = [i for i in result.validation_errors if i.type == "Mixed Timezone Offsets"]
    naive = int((~with_offset).sum())
    assert (issue.count, issue.resolved) == (naive, False)
    assert issue.examples[0].startswith(f"{naive:,} values without an offset, read as UTC")
    assert issue.examples[1].startswith(f"{int(with_offset.sum()):,} values with an offset")
    # handled by the rule: naive values are UTC here, so every instant is the XES's
    _same_figures(result.events, _floor_seconds(receipt.events))
    assert result.data_quality_score == (1000 * (len(events) - naive) // len(events)) / 10
    # with a timezone given, the naive ones are read in it and the finding is resolved
    tz = load_event_log(path, ColumnMapping(timezone="Europe/Amsterdam"))
    [issue] = [i for i in tz.validation_errors if i.type == "Mixed Timezone Offsets"]
    assert issue.resolved and "Europe/Amsterdam" in issue.examples[0]


# --------------------------------------------------------------------------- columns


def test_lifecycle_column_gives_the_xes_efficiency(bpic: pd.DataFrame, tmp_path: Path) -> None:
    events = bpic.copy()
    events[LIFECYCLE] = events[LIFECYCLE].str.capitalize()  # "Start", "Complete", "Schedule"
    path = _export(events, tmp_path / "lc.csv", names={LIFECYCLE: "Lifecycle"})
    result = load_event_log(path)
    assert result.mapping.lifecycle == "Lifecycle"
    assert set(result.events[LIFECYCLE]) == {"start", "complete", "schedule"}
    perf = compute_performance(result.events).to_dict()
    expected = compute_performance(bpic).to_dict()
    assert perf["efficiency"] is not None and perf == expected
    assert perf["bottlenecks"][0] == expected["bottlenecks"][0]
    # without the lifecycle column the figures are those of a log of completions only
    plain = load_event_log(_export(bpic.drop(columns=[LIFECYCLE]), tmp_path / "plain.csv"))
    assert compute_performance(plain.events).efficiency is None


def test_status_is_not_a_lifecycle(tmp_path: Path) -> None:
    path = tmp_path / "status.csv"
    path.write_text("case,activity,timestamp,Status\na,x,2024-01-01,start\na,y,2024-01-02,open\n")
    result = load_event_log(path)
    assert result.mapping.lifecycle is None and LIFECYCLE not in result.events


def test_start_and_end_columns_become_start_and_complete(tmp_path: Path) -> None:
    text = (
        "Fall;Tätigkeit;Startzeit;Endzeit;Bearbeiter\n"
        "1;Antrag;2024-01-01 08:00;2024-01-01 09:00;anna\n"
        "1;Prüfung;2024-01-01 12:00;2024-01-01 12:30;bernd\n"
        "1;Bescheid;;2024-01-02 10:00;anna\n"
    )
    path = tmp_path / "intervals.csv"
    path.write_text(text, encoding="utf-8")
    result = load_event_log(path)
    mapping = result.mapping.to_dict()
    assert (mapping["startTimestampColumn"], mapping["timestampColumn"]) == ("Startzeit", "Endzeit")
    events = result.events
    assert events[LIFECYCLE].tolist() == ["start", "complete"] * 2 + ["complete"]
    perf = compute_performance(events)
    # 1.5 h of work in a 26 h case; the waits: 3 h before the check, 21.5 h before the decision
    assert perf.efficiency == pytest.approx(100 * 1.5 / 26)
    assert {b.activity: b.total_wait_hours for b in perf.bottlenecks} == {
        "Prüfung": 3.0,
        "Bescheid": 21.5,
    }
    same = tmp_path / "same.csv"
    same.write_text("case,activity,start_time,end_time\na,x,2024-01-01,2024-01-01\n")
    assert len(load_event_log(same).events) == 1  # start = end in every row: one event each


HEADERS = {
    "de": {CASE: "Fall", ACTIVITY: "Aktivitaet", TIMESTAMP: "Zeitstempel", RESOURCE: "Bearbeiter"},
    "ja": {
        CASE: "ケースID",
        ACTIVITY: "アクティビティ",
        TIMESTAMP: "タイムスタンプ",
        RESOURCE: "担当者",
    },
    "fr": {CASE: "Dossier", ACTIVITY: "Activité", TIMESTAMP: "Horodatage", RESOURCE: "Ressource"},
    "es": {CASE: "Caso", ACTIVITY: "Actividad", TIMESTAMP: "Marca de tiempo", RESOURCE: "Recurso"},
    "nl": {CASE: "Zaak", ACTIVITY: "Activiteit", TIMESTAMP: "Tijdstempel", RESOURCE: "Medewerker"},
}


@pytest.mark.parametrize("language", sorted(HEADERS))
def test_header_languages(receipt: LoadResult, tmp_path: Path, language: str) -> None:
    names = HEADERS[language] | {
        LIFECYCLE: {"ja": "ライフサイクル", "de": "Lebenszyklus"}.get(language, "lifecycle")
    }
    english = {CASE: "case id", ACTIVITY: "activity", TIMESTAMP: "timestamp", RESOURCE: "resource"}
    result = load_event_log(_export(receipt.events, tmp_path / f"{language}.csv", names=names))
    reference = load_event_log(_export(receipt.events, tmp_path / "en.csv", names=english))
    assert result.mapping.case == names[CASE] and result.mapping.resource == names[RESOURCE]
    assert "read as ISO 8601;" in result.data_quality_method
    _same_figures(result.events, reference.events)
    _same_figures(result.events, receipt.events)


# --------------------------------------------------------------------------- duplicates


def test_duplicates_kept_by_default_and_counted_like_pm4py(datasets: Path, tmp_path: Path) -> None:
    import pm4py

    path = datasets / "helpdesk.xes.gz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = pm4py.read_xes(str(path))
    result = load_event_log(path)
    assert len(result.events) == len(reference) == 21_348
    assert len(_variants(result.events)) == len(pm4py.get_variants(reference)) == 226
    [issue] = result.validation_errors
    assert (issue.type, issue.count, issue.resolved) == ("Duplicate Event", 127, False)
    assert len(issue.examples) == 3
    assert result.data_quality_score == (1000 * (21_348 - 127) // 21_348) / 10  # 99.4

    # removeDuplicates: true removes them (and says so)
    run = ProcessMiningRun(path, tmp_path / "out", {"removeDuplicates": True})
    run.sink = None
    run.run_load()
    assert run.load is not None and len(run.load.events) == 21_221
    assert len(_variants(run.load.events)) == 211
    assert run.load.validation_errors[0].resolved
    # the DataEnrichment rule still removes the same events
    cleaned = enrich_events(result.events, ["remove_duplicates"])
    assert cleaned.records_out == 21_221

    sepsis = load_event_log(datasets / "sepsis.xes.gz")
    assert len(sepsis.events) == 15_214


# --------------------------------------------------------------------------- no 5xx from input


def test_far_end_date_is_a_parameter_error() -> None:
    with pytest.raises(InvalidParameter) as info:
        parse_time_window(None, "9999-12-31")
    assert info.value.field == "parameters.timeWindow.endDate"
    with pytest.raises(InvalidParameter) as info:
        parse_time_window("0001-01-01T00:00:00+05:00", None)
    assert info.value.field == "parameters.timeWindow.startDate"
    assert parse_time_window(None, "9999-12-30") is not None


EMPTY_EVENT = """<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1.0">
<trace><string key="concept:name" value="c1"/>
{events}
</trace>
</log>
"""
GOOD_EVENT = (
    '<event><string key="concept:name" value="A"/>'
    '<date key="time:timestamp" value="2020-01-01T10:00:00.000+00:00"/></event>'
)


def test_empty_xes_event_does_not_panic(tmp_path: Path) -> None:
    """The Rust reader panics (a BaseException) on <event/>: pm4py's reader takes over."""
    path = tmp_path / "empty-event.xes"
    path.write_text(EMPTY_EVENT.format(events=GOOD_EVENT + "\n<event/>"))
    result = load_event_log(path)
    assert (result.records_loaded, result.valid_records) == (2, 1)
    assert {i.type for i in result.validation_errors} == {"Missing Activity", "Missing Timestamp"}
    path.write_text(EMPTY_EVENT.format(events="<event/>"))
    with pytest.raises(EventLogError) as info:
        load_event_log(path)
    assert info.value.field == "file" and "1 of its 1 <event> elements are empty" in str(info.value)


def test_enrichment_reads_naive_values_in_the_timezone(receipt: LoadResult) -> None:
    frame = receipt.events.copy()
    frame[TIMESTAMP] = frame[TIMESTAMP].dt.strftime("%d.%m.%Y %H:%M:%S.%f")
    utc = enrich_events(frame, ["fix_timestamps"]).frame
    tokyo = enrich_events(frame, ["fix_timestamps"], timezone="Asia/Tokyo")
    assert "taken as Asia/Tokyo time" in tokyo.rules[0].description
    shift = (
        utc.sort_values(ROW)[TIMESTAMP].to_numpy()
        - tokyo.frame.sort_values(ROW)[TIMESTAMP].to_numpy()
    )
    assert (shift == np.timedelta64(9, "h")).all()
