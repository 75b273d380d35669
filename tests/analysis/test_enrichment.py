"""DataEnrichment cleaning rules on real logs with dirt injected in known amounts."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.columns import ACTIVITY, CASE, RESOURCE, ROW, TIMESTAMP
from analysis.enrichment import (
    PARSE_RULE,
    RULES,
    EnrichmentResult,
    enrich_events,
    write_enriched,
)
from analysis.errors import EventLogError, InvalidParameter
from analysis.progress import CancelToken, OperationCancelled, Progress
from tests._logs import canonical_frame

# sepsis.csv itself holds 7 events that repeat case, activity, timestamp and org:group exactly
SEPSIS_OWN_DUPLICATES = 7


@pytest.fixture(scope="module")
def receipt(datasets: Path) -> pd.DataFrame:
    return canonical_frame(datasets / "receipt.xes.gz")


@pytest.fixture(scope="module")
def sepsis(datasets: Path) -> pd.DataFrame:
    return canonical_frame(datasets / "sepsis.csv")


def as_strings(frame: pd.DataFrame, fmt: str | None = None) -> pd.DataFrame:
    """The frame as a CSV reader hands it over: timestamps as naive UTC strings."""
    out = frame.copy()
    naive = frame[TIMESTAMP].dt.tz_convert("UTC").dt.tz_localize(None)
    if fmt is None:
        text = np.datetime_as_string(naive.to_numpy(dtype="datetime64[ms]"), unit="ms")
        out[TIMESTAMP] = pd.Series(text, index=frame.index).str.replace("T", " ").astype(object)
    else:
        out[TIMESTAMP] = naive.dt.strftime(fmt).astype(object)
    return out


def in_file_order(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(ROW).reset_index(drop=True)


def assert_event_frame(result: EnrichmentResult) -> None:
    frame = result.frame
    assert len(frame) == result.records_out
    assert isinstance(frame[TIMESTAMP].dtype, pd.DatetimeTZDtype)
    assert str(frame[TIMESTAMP].dt.tz) == "UTC"
    assert frame[TIMESTAMP].notna().all()
    assert isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0
    resorted = frame.sort_values([CASE, TIMESTAMP, ROW], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(frame, resorted)
    assert frame[ROW].is_unique
    json.dumps(result.to_dict())  # JSON-able as is
    for report in result.to_dict()["rulesApplied"]:
        assert set(report) == {
            "rule",
            "recordsChanged",
            "recordsRemoved",
            "description",
            "examples",
            "counts",
        }
        assert len(report["examples"]) <= 5


def report_of(result: EnrichmentResult, rule: str):
    (report,) = [r for r in result.rules if r.rule == rule]
    return report


def pick_cases(frame: pd.DataFrame, count: int, min_events: int, seed: int) -> list[str]:
    sizes = frame.groupby(CASE).size()
    eligible = sorted(sizes[sizes >= min_events].index)
    rng = np.random.default_rng(seed)
    return [str(c) for c in rng.choice(eligible, size=count, replace=False)]


# ------------------------------------------------------------------------------------------


def test_clean_log_passes_unchanged(receipt: pd.DataFrame) -> None:
    before = receipt.copy()
    result = enrich_events(receipt, RULES)
    assert [r.rule for r in result.rules] == list(RULES)
    for report in result.rules:
        assert (report.records_changed, report.records_removed) == (0, 0), report
    assert result.records_in == result.records_out == len(receipt) == 8577
    pd.testing.assert_frame_equal(result.frame, receipt)
    pd.testing.assert_frame_equal(receipt, before)  # input not mutated
    assert_event_frame(result)


def test_clean_csv_strings_parse_to_the_same_instants(receipt: pd.DataFrame) -> None:
    strings = as_strings(receipt).sample(frac=1, random_state=3)  # CSV rows in any order
    result = enrich_events(strings, RULES)
    for report in result.rules:
        assert (report.records_changed, report.records_removed) == (0, 0), report
    fix = report_of(result, "fix_timestamps")
    assert "8,577 without time zone were taken as UTC" in fix.description
    pd.testing.assert_series_equal(result.frame[TIMESTAMP], receipt[TIMESTAMP])
    pd.testing.assert_series_equal(result.frame[ROW], receipt[ROW])
    assert_event_frame(result)


@pytest.mark.parametrize(
    ("fmt", "label"),
    [("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M:%S %p"), ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M:%S")],
)
def test_other_formats_are_detected_day_and_month_order(
    receipt: pd.DataFrame, fmt: str, label: str
) -> None:
    # receipt spans days above 12, which settles which field is the day
    strings = as_strings(receipt, fmt)
    result = enrich_events(strings, ["fix_timestamps"])
    fix = report_of(result, "fix_timestamps")
    assert (fix.records_changed, fix.records_removed) == (0, 0)
    assert f"8,577 as {label}" in fix.description
    expected = receipt[TIMESTAMP].dt.floor("s")
    pd.testing.assert_series_equal(in_file_order(result.frame)[TIMESTAMP], expected)


def test_ambiguous_day_month_refused_then_read_with_timestamp_format(
    receipt: pd.DataFrame,
) -> None:
    days = receipt[TIMESTAMP].dt.day
    first12 = receipt[(days <= 12) & (receipt[TIMESTAMP].dt.month != days)]
    strings = as_strings(first12, "%d/%m/%Y %H:%M")
    # every value reads both ways: refused (as at loading), naming the parameter to give
    with pytest.raises(EventLogError, match="ambiguous") as info:
        enrich_events(strings, ["fix_timestamps"])
    assert info.value.field == "timestampFormat"
    result = enrich_events(strings, ["fix_timestamps"], timestamp_format="%d/%m/%Y %H:%M")
    assert result.records_out == len(first12) > 100
    expected = in_file_order(first12)[TIMESTAMP].dt.floor("min")
    pd.testing.assert_series_equal(in_file_order(result.frame)[TIMESTAMP], expected)


def test_remove_duplicates_counts_injected_copies(sepsis: pd.DataFrame) -> None:
    own = enrich_events(sepsis, ["remove_duplicates"])
    assert report_of(own, "remove_duplicates").records_removed == SEPSIS_OWN_DUPLICATES

    keys = [CASE, ACTIVITY, TIMESTAMP, RESOURCE]
    unique = sepsis[~sepsis.duplicated(keys, keep=False)]
    copies = unique.sample(n=25, random_state=7).copy()
    copies[ROW] = np.arange(len(copies)) + sepsis[ROW].max() + 1  # later in the file
    # same key but another lifecycle transition: a different event, must survive
    other_phase = unique.sample(n=4, random_state=8).copy()
    other_phase["lifecycle:transition"] = "start"
    other_phase[ROW] = np.arange(4) + copies[ROW].max() + 1
    dirty = pd.concat([sepsis, copies, other_phase], ignore_index=True)

    result = enrich_events(dirty, ["remove_duplicates"])
    report = report_of(result, "remove_duplicates")
    assert report.records_removed == 25 + SEPSIS_OWN_DUPLICATES
    assert report.records_changed == 0
    assert result.records_out == len(sepsis) + 4 - SEPSIS_OWN_DUPLICATES
    # the copies later in the file were dropped, the originals kept
    assert not set(copies[ROW]) & set(result.frame[ROW])
    assert set(unique.loc[copies.index, ROW]) <= set(result.frame[ROW])
    assert set(other_phase[ROW]) <= set(result.frame[ROW])
    assert not result.frame.duplicated([*keys, "lifecycle:transition"]).any()
    assert "32 exact duplicate events" in report.description
    assert len(report.examples) == 5
    assert {"caseId", "activity", "timestamp", "copiesRemoved", "resource"} == set(
        report.examples[0]
    )
    assert sum(e["copiesRemoved"] for e in report.examples) >= 5
    assert_event_frame(result)


def test_remove_duplicates_on_string_timestamps_before_parsing(sepsis: pd.DataFrame) -> None:
    strings = as_strings(sepsis)
    copies = strings.sample(n=10, random_state=11).copy()
    copies[ROW] += sepsis[ROW].max() + 1
    result = enrich_events(pd.concat([strings, copies]), ["remove_duplicates", "fix_timestamps"])
    removed = report_of(result, "remove_duplicates").records_removed
    assert removed == 10 + SEPSIS_OWN_DUPLICATES
    assert result.records_out == len(sepsis) - SEPSIS_OWN_DUPLICATES


def test_validate_activities_unifies_spellings(sepsis: pd.DataFrame) -> None:
    dirty = sepsis.copy()
    reg = dirty.index[dirty[ACTIVITY] == "ER Registration"]
    assert len(reg) >= 1000
    dirty.loc[reg, ACTIVITY] = "Register"
    spellings = {" Register ": 20, "register": 15, "REGISTER": 10, "Register\t\t": 3}
    at = 0
    for spelling, n in spellings.items():
        dirty.loc[reg[at : at + n], ACTIVITY] = spelling
        at += n
    dirty.loc[reg[at : at + 5], ACTIVITY] = "   "
    dirty.loc[reg[at + 5 : at + 7], ACTIVITY] = ""
    # "er triage" written mostly in lower case: the most frequent spelling wins, not the first
    triage = dirty.index[dirty[ACTIVITY] == "ER Triage"]
    lower = triage[: len(triage) * 3 // 5]
    dirty.loc[lower, ACTIVITY] = "er  triage"
    base = enrich_events(sepsis, ["validate_activities"])
    assert report_of(base, "validate_activities").records_changed == 0

    result = enrich_events(dirty, ["validate_activities"])
    report = report_of(result, "validate_activities")
    assert report.records_removed == 7
    assert report.records_changed == 20 + 15 + 10 + 3 + len(triage)
    assert result.records_out == len(sepsis) - 7
    names = set(result.frame[ACTIVITY])
    assert "Register" in names and "er triage" in names
    assert not names & {" Register ", "register", "REGISTER", "ER Triage", "er  triage", ""}
    assert (result.frame[ACTIVITY] == "Register").sum() == len(reg) - 7
    assert (result.frame[ACTIVITY] == "er triage").sum() == len(triage)
    mapping = {(e["before"], e["after"]): e["count"] for e in report.examples}
    assert mapping[("er  triage", "er triage")] == len(lower)
    assert mapping[("ER Triage", "er triage")] == len(triage) - len(lower)
    assert mapping[(" Register ", "Register")] == 20
    assert mapping[("register", "Register")] == 15
    assert mapping[("REGISTER", "Register")] == 10
    assert len(report.examples) == 5
    assert "removed 7 events with an empty activity" in report.description
    assert_event_frame(result)


def _neighbours_in_order(frame: pd.DataFrame, case: str, pos: int) -> bool:
    events = frame[frame[CASE] == case].sort_values(ROW)
    stamps = events[TIMESTAMP].to_numpy()
    return bool(stamps[pos - 1] <= stamps[pos + 1])


def test_fix_timestamps_repairs_and_removes_with_exact_counts(sepsis: pd.DataFrame) -> None:
    strings = as_strings(sepsis)
    cases = pick_cases(sepsis, 60, min_events=5, seed=5)
    by_case = {c: strings[strings[CASE] == c].sort_values(ROW) for c in cases}
    middle = [c for c in cases if _neighbours_in_order(sepsis, c, 2)]
    assert len(middle) >= 30
    plan = {  # kind -> (cases, position in the case, new text or a function of the old value)
        "offset": (middle[:10], 2),
        "zulu": (middle[10:15], 2),
        "missing_middle": (middle[15:21], 2),
        "garbage_middle": (middle[21:23], 2),
        "dotted": (middle[23:28], 2),
        "missing_first": (cases[-4:], 0),
        "garbage_last": (cases[-7:-4], -1),
        "pre1970": (cases[-11:-7], 1),
        "future": (cases[-13:-11], 1),
    }
    used = [c for cs, _ in plan.values() for c in cs]
    assert len(set(used)) == len(used), "one kind of dirt per case"
    dirty = strings.copy()
    rows: dict[str, list[int]] = {}
    for kind, (cs, pos) in plan.items():
        rows[kind] = [int(by_case[c][ROW].iloc[pos]) for c in cs]
        where = dirty[ROW].isin(rows[kind])
        instants = sepsis.set_index(ROW).loc[dirty.loc[where, ROW], TIMESTAMP].to_numpy()
        stamps = pd.DatetimeIndex(instants)
        new = {
            "offset": (stamps + pd.Timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%f+02:00"),
            "zulu": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "missing_middle": [""] * len(stamps),
            "garbage_middle": ["not a date"] * len(stamps),
            "dotted": stamps.strftime("%d.%m.%Y %H:%M:%S"),
            "missing_first": [None] * len(stamps),
            "garbage_last": ["31/02/2014 25:61"] * len(stamps),
            "pre1970": ["1899-12-30 00:00:00"] * len(stamps),
            "future": ["2199-01-01T00:00:00Z"] * len(stamps),
        }[kind]
        dirty.loc[where, TIMESTAMP] = list(new)

    before = dirty.copy()
    result = enrich_events(dirty, ["fix_timestamps"])
    pd.testing.assert_frame_equal(dirty, before)
    fix = report_of(result, "fix_timestamps")
    assert fix.counts == {
        "offset_converted": 10,
        "interpolated": 8,
        "removed_missing": 4,
        "removed_unparseable": 3,
        "removed_before_1970": 4,
        "removed_future": 2,
    }
    assert fix.records_changed == 18
    assert fix.records_removed == 13
    assert result.records_out == len(sepsis) - 13
    assert "8 interpolated between the neighbouring events" in fix.description
    assert "4 removed (timestamp before 1970)" in fix.description
    assert len({e["fix"] for e in fix.examples}) == 5  # one example per kind first
    offset_example = next(e for e in fix.examples if e["fix"] == "offset_converted")
    assert offset_example["before"].endswith("+02:00") and offset_example["after"].endswith("Z")

    out = result.frame.set_index(ROW)[TIMESTAMP]
    original = sepsis.set_index(ROW)[TIMESTAMP]
    removed = set(rows["missing_first"] + rows["garbage_last"] + rows["pre1970"] + rows["future"])
    assert not removed & set(out.index)
    assert set(out.index) == set(original.index) - removed
    # everything not interpolated keeps its instant (offsets and other formats included)
    interpolated = rows["missing_middle"] + rows["garbage_middle"]
    kept = out.drop(index=interpolated)
    pd.testing.assert_series_equal(kept, original.loc[kept.index], check_names=False)
    for row in interpolated:
        case = sepsis.loc[sepsis[ROW] == row, CASE].iloc[0]
        events = sepsis[sepsis[CASE] == case].sort_values(ROW)
        i = int(np.flatnonzero(events[ROW].to_numpy() == row)[0])
        prev, nxt = events[TIMESTAMP].iloc[i - 1], events[TIMESTAMP].iloc[i + 1]
        assert prev <= out.loc[row] <= nxt
    assert_event_frame(result)


def test_without_fix_timestamps_unreadable_ones_are_reported(sepsis: pd.DataFrame) -> None:
    dirty = as_strings(sepsis)
    dirty.loc[dirty.index[:3], TIMESTAMP] = "garbage"
    dirty.loc[dirty.index[3:5], TIMESTAMP] = ""
    dirty.loc[dirty.index[5], TIMESTAMP] = "1899-12-30 00:00:00"
    result = enrich_events(dirty, ["validate_activities"])
    assert [r.rule for r in result.rules] == ["validate_activities", PARSE_RULE]
    parse = report_of(result, PARSE_RULE)
    assert parse.records_removed == 5
    assert parse.counts == {"removed_missing": 2, "removed_unparseable": 3}
    assert result.records_out == len(sepsis) - 5  # the 1899 value is kept: not asked to check
    assert result.frame[TIMESTAMP].min() == pd.Timestamp("1899-12-30", tz="UTC")
    assert_event_frame(result)


def test_python_datetimes_with_zones_are_converted(receipt: pd.DataFrame) -> None:
    # what an XES reader may hand over: Python datetimes, some with a local offset, some naive
    local = receipt[TIMESTAMP].dt.tz_convert("Europe/Amsterdam")
    values = list(local.dt.to_pydatetime())
    for i in range(5):
        values[i] = values[i].astimezone(dt.UTC).replace(tzinfo=None)
    mixed = receipt.assign(**{TIMESTAMP: pd.Series(values, index=receipt.index, dtype=object)})
    result = enrich_events(mixed, ["fix_timestamps"])
    fix = report_of(result, "fix_timestamps")
    assert fix.counts == {"offset_converted": len(receipt) - 5}
    assert "5 without time zone were taken as UTC" in fix.description
    pd.testing.assert_series_equal(result.frame[TIMESTAMP], receipt[TIMESTAMP])


def test_unknown_rule_and_format_are_rejected(receipt: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter) as err:
        enrich_events(receipt, ["remove_duplicates", "deduplicate"])
    assert err.value.field == "parameters.cleaningRules"
    assert all(rule in err.value.message for rule in RULES)
    with pytest.raises(InvalidParameter) as err:
        write_enriched(receipt, tmp_path / "out.json", "json")
    assert err.value.field == "parameters.outputFormat"
    assert not list(tmp_path.iterdir())


def test_processed_csv_round_trip_keeps_case_na(sepsis: pd.DataFrame, tmp_path: Path) -> None:
    result = enrich_events(as_strings(sepsis), RULES)
    path = write_enriched(result.frame, tmp_path / "enriched.csv")
    assert [p.name for p in tmp_path.iterdir()] == ["enriched.csv"]
    back = pd.read_csv(path, keep_default_na=False, dtype=str)
    assert list(back.columns[:4]) == ["case_id", "activity", "timestamp", "resource"]
    assert ROW not in back.columns and "Diagnose" in back.columns
    assert len(back) == result.records_out == len(sepsis) - SEPSIS_OWN_DUPLICATES
    assert back["case_id"].nunique() == result.frame[CASE].nunique() == 1050
    assert "NA" in set(back["case_id"])
    assert back["timestamp"].str.endswith("Z").all()
    stamps = pd.to_datetime(back["timestamp"], format="ISO8601", utc=True)
    assert (stamps.to_numpy() == result.frame[TIMESTAMP].to_numpy()).all()


@pytest.mark.filterwarnings("ignore:In the current version")
def test_parquet_and_xes_outputs(receipt: pd.DataFrame, tmp_path: Path) -> None:
    import pm4py

    result = enrich_events(receipt, RULES)
    parquet = pd.read_parquet(write_enriched(result.frame, tmp_path / "e.parquet", "parquet"))
    assert len(parquet) == 8577 and parquet["case_id"].nunique() == 1434
    xes = pm4py.read_xes(str(write_enriched(result.frame, tmp_path / "e.xes", "xes")))
    assert len(xes) == 8577 and xes[CASE].nunique() == 1434


def test_progress_per_rule_and_cancellation(receipt: pd.DataFrame) -> None:
    calls: list[tuple[int, int, str]] = []
    progress = Progress(sink=lambda d, t, a: calls.append((d, t, a)), min_interval=0)
    enrich_events(as_strings(receipt), RULES, progress)
    texts = " ".join(a for _, _, a in calls)
    for rule in RULES:
        assert rule in texts
    assert calls[-1][0] == calls[-1][1] > 0
    assert [d for d, _, _ in calls] == sorted(d for d, _, _ in calls)
    token = CancelToken()
    token.cancel("user")
    with pytest.raises(OperationCancelled):
        enrich_events(receipt, RULES, Progress(token=token))


@pytest.mark.slow
def test_bpic2012_strings_all_rules(datasets: Path) -> None:
    frame = canonical_frame(datasets / "bpic2012.xes.gz")
    calls: list[tuple[int, int, str]] = []
    progress = Progress(sink=lambda d, t, a: calls.append((d, t, a)), min_interval=0)
    result = enrich_events(as_strings(frame), RULES, progress)
    assert result.records_in == result.records_out == 262_200
    for report in result.rules:
        assert (report.records_changed, report.records_removed) == (0, 0), report
    parsing = [a for _, _, a in calls if "parsing timestamps" in a]
    assert len(parsing) >= 3  # chunked
    pd.testing.assert_series_equal(result.frame[TIMESTAMP], frame[TIMESTAMP])
    assert_event_frame(result)
