"""DataEnrichment: cleaning rules that turn an uploaded event log into a new, cleaner one.

`enrich_events` applies the requested rules, in the order given, to a canonical frame as read
(TIMESTAMP may still hold strings from a CSV) and returns the cleaned event frame plus one
`RuleReport` per rule saying what it changed. `write_enriched` writes the result as a new file.

Semantics (each report's description repeats the figures):

- remove_duplicates: events with the same case, activity, timestamp, resource (and lifecycle
  transition, when the log has one: "start" and "complete" at the same instant are two events)
  are duplicates; the first in file order is kept. Values are compared as they are at that
  point, so before fix_timestamps string timestamps must be written identically to match.
- fix_timestamps: strings are parsed (with `timestamp_format` when given; else ISO 8601 first,
  then a fixed list of common export formats chosen per value shape, in the day/month order the
  loader decides from every value (`analysis.eventlog_time.decide_day_first`: an ambiguous
  column is refused); epoch seconds or milliseconds). Offsets are converted to UTC; timestamps
  without zone are wall times in `timezone` (UTC when not given). Values before 1970 or later
  than now + 1 day are impossible and their events removed. A missing or unparseable
  timestamp is interpolated linearly only when the case has valid timestamps on both sides of
  it in file order (and they are in order); otherwise its event is removed.
- validate_activities: whitespace is trimmed and internal runs collapsed to one space; names
  equal up to case are unified to their most frequent spelling (ties: earliest in the file);
  events whose activity is empty are removed.

If fix_timestamps is not requested, timestamps are still parsed at the end with the same
parser so the output is a valid event frame; events whose timestamp is missing or unparseable
are then removed and reported under the pseudo-rule "parse_timestamps".
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from analysis.columns import ACTIVITY, CASE, RESOURCE, ROW, TIMESTAMP
from analysis.csvsafe import neutralise
from analysis.errors import EventLogError, InvalidParameter
from analysis.eventlog_time import decide_day_first, wall_to_utc_us
from analysis.progress import Progress

RULES = ("remove_duplicates", "fix_timestamps", "validate_activities")
PARSE_RULE = "parse_timestamps"
OUTPUT_FORMATS = ("processed_csv", "parquet", "xes")
LIFECYCLE = "lifecycle:transition"
MAX_EXAMPLES = 5
CHUNK = 100_000

_US = "datetime64[us, UTC]"
_MIN_US = 0  # 1970-01-01T00:00:00Z
_NULL_TOKENS = ("", "nan", "nat", "null", "none", "na", "n/a", "-")

# Status of one parsed timestamp.
_OK, _OFFSET, _MISSING, _UNPARSEABLE = 0, 1, 2, 3

_OFFSET_RE = r"\d:\d\d(?::\d\d(?:[.,]\d+)?)?\s*[+-]\d\d(?::?\d\d)?$"
_ZERO_OFFSET_RE = r"[+-]00(?::?00)?$"

# Formats tried on values ISO 8601 could not read; day-first variants come before month-first
# ones so that an ambiguous column is read day-first (a value with day > 12 settles it).
_DATES = (
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d-%m-%Y",
    "%m-%d-%Y",
    "%d.%m.%Y",
    "%Y.%m.%d",
    "%d %b %Y",
    "%d %B %Y",
    "%d-%b-%Y",
    "%b %d %Y",
    "%B %d %Y",
    "%b %d, %Y",
    "%B %d, %Y",
    "%a, %d %b %Y",
    "%a %b %d %Y",
)
_TIMES = ("", " %H:%M", " %H:%M:%S", " %H:%M:%S.%f", " %I:%M %p", " %I:%M:%S %p")
_ZONES = ("", " %z", "%z")
_CANDIDATES = tuple(d + t + z for d in _DATES for t in _TIMES for z in _ZONES)
_SAMPLE = 500
_MAX_SHAPES = 50


@dataclass
class RuleReport:
    rule: str
    records_changed: int
    records_removed: int
    description: str
    examples: list[dict[str, Any]] = field(default_factory=list)
    # per kind of fix (e.g. {"interpolated": 3}); the description states the same figures
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "recordsChanged": self.records_changed,
            "recordsRemoved": self.records_removed,
            "description": self.description,
            "examples": self.examples[:MAX_EXAMPLES],
            "counts": dict(self.counts),
        }


@dataclass
class EnrichmentResult:
    frame: pd.DataFrame
    records_in: int
    records_out: int
    rules: list[RuleReport]

    def to_dict(self) -> dict[str, Any]:
        return {
            "recordsIn": self.records_in,
            "recordsOut": self.records_out,
            "rulesApplied": [r.to_dict() for r in self.rules],
        }


# ---------------------------------------------------------------------------------------------
# Progress over the whole operation: each step (rule, final parse) owns one slice of len(frame).

Tick = Callable[[int, str], None]


def _ticker(progress: Progress | None, step: int, steps: int, size: int) -> Tick:
    total = max(size, 1) * steps

    def tick(done: int, text: str) -> None:
        if progress is not None:
            progress.update(step * max(size, 1) + min(done, max(size, 1)), total, text)

    return tick


# ---------------------------------------------------------------------------------------------
# Timestamp parsing


@dataclass
class _Parsed:
    micros: np.ndarray  # int64 microseconds since epoch, UTC; meaningless where status >= MISSING
    status: np.ndarray  # int8, one of _OK/_OFFSET/_MISSING/_UNPARSEABLE
    formats: dict[str, int]  # format label -> values read with it
    naive: int  # values without zone, read as wall times in the timezone (default UTC)
    naive_mask: np.ndarray | None = None  # bool per value: parsed without a zone


def _to_micros(values: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(values).as_unit("us").asi8, dtype=np.int64)


def _iso8601(texts: pd.Series) -> pd.Series:
    # ISO 8601 also allows a bare year ("2014") or year-month; too vague to be an event time
    parsed = pd.to_datetime(texts, format="ISO8601", utc=True, errors="coerce")
    return parsed.where(texts.str.len().to_numpy() >= 8)


def _record(texts: pd.Series, parsed: pd.Series, label: str, acc: _Parsed) -> np.ndarray:
    """Store the values `parsed` could read; return the positions of those it could not."""
    ok = parsed.notna().to_numpy()
    idx = texts.index.to_numpy()[ok]
    acc.micros[idx] = _to_micros(parsed[ok])
    good = texts[ok]
    zoned = good.str.contains(_OFFSET_RE, regex=True).to_numpy(dtype=bool)
    offset = zoned.copy()
    if zoned.any():
        offset[zoned] = ~good[zoned].str.contains(_ZERO_OFFSET_RE, regex=True).to_numpy(dtype=bool)
    acc.status[idx] = np.where(offset, _OFFSET, _OK)
    naive = ~zoned & ~good.str.endswith("Z").to_numpy(dtype=bool)
    acc.naive += int(naive.sum())
    if acc.naive_mask is not None:
        acc.naive_mask[idx] = naive
    if ok.any():
        acc.formats[label] = acc.formats.get(label, 0) + int(ok.sum())
    return np.asarray(texts.index.to_numpy()[~ok])


def _parse_leftovers(texts: pd.Series, acc: _Parsed, dayfirst: bool = True) -> None:
    """Try epoch numbers and the fixed format list on values ISO 8601 could not read; formats
    with day and month in the other order than the column's (`dayfirst`) are not tried.

    `texts` is indexed by position in the column; results go into `acc`.
    """
    messy = texts.str.contains(r"\s\s|[\t\n\r\f\v]|(?:UTC|GMT)$", regex=True).to_numpy(dtype=bool)
    if messy.any():
        fixed = (
            texts[messy]
            .str.replace(r"\s+", " ", regex=True)
            .str.replace(r"\s*(?:UTC|GMT)$", "+00:00", regex=True)
        )
        rest = _record(fixed, _iso8601(fixed), "ISO 8601", acc)
        texts = pd.concat([texts[~messy], fixed.loc[rest]])

    # The layout of a value: digit runs -> "9", letter runs -> "a" ("9/9/9 9:9:9").
    shapes = texts.str.replace(r"\d+", "9", regex=True).str.replace(r"[A-Za-z]+", "a", regex=True)
    epoch = shapes.isin(["9", "9.9"]).to_numpy(dtype=bool).copy()
    epoch[epoch] = texts[epoch].str.fullmatch(r"\d{10}(?:\.\d+)?|\d{13}").to_numpy(dtype=bool)
    if epoch.any():
        numbers = pd.to_numeric(texts[epoch]).to_numpy(dtype=np.float64)
        millis = texts[epoch].str.len().to_numpy() == 13
        idx = texts.index.to_numpy()[epoch]
        acc.micros[idx] = np.round(np.where(millis, numbers * 1e3, numbers * 1e6)).astype(np.int64)
        acc.status[idx] = _OK
        acc.formats["epoch seconds"] = acc.formats.get("epoch seconds", 0) + int(epoch.sum())

    # One format is chosen per layout, the one reading most of a sample (the earliest on a
    # tie). Layouts with fewer than two digit runs (free text, "n/a") cannot be dates.
    frequent = shapes[~epoch].value_counts().index[:_MAX_SHAPES]
    for shape in frequent:
        if str(shape).count("9") < 2:
            continue
        group = texts[(shapes == shape).to_numpy() & ~epoch]
        sample = group.iloc[:: max(1, len(group) // _SAMPLE)]
        best, best_hits = "", 0
        for fmt in _CANDIDATES:
            if "%d" in fmt and "%m" in fmt and (fmt.find("%d") < fmt.find("%m")) != dayfirst:
                continue
            hits = int(pd.to_datetime(sample, format=fmt, utc=True, errors="coerce").notna().sum())
            if hits > best_hits:
                best, best_hits = fmt, hits
                if hits == len(sample):
                    break
        if best:
            _record(group, pd.to_datetime(group, format=best, utc=True, errors="coerce"), best, acc)


def parse_timestamps(
    values: pd.Series,
    tick: Tick | None = None,
    *,
    timestamp_format: str | None = None,
    timezone: str | None = None,
) -> _Parsed:
    """Parse a timestamp column as read (strings, numbers or datetimes) to UTC microseconds.

    Values without a zone are wall times in `timezone` (UTC when None)."""
    n = len(values)
    acc = _Parsed(
        np.zeros(n, dtype=np.int64),
        np.full(n, _UNPARSEABLE, dtype=np.int8),
        {},
        0,
        np.zeros(n, dtype=bool),
    )
    _parse_into(values, acc, tick, timestamp_format)
    if timezone not in (None, "UTC") and acc.naive_mask is not None:
        wall = acc.naive_mask & (acc.status < _MISSING)
        acc.micros[wall] = wall_to_utc_us(acc.micros[wall], timezone)
        bad = wall & (acc.micros == np.iinfo(np.int64).min)
        acc.status[bad] = _UNPARSEABLE
    return acc


def _parse_into(
    values: pd.Series, acc: _Parsed, tick: Tick | None, timestamp_format: str | None
) -> None:
    n = len(values)
    values = values.reset_index(drop=True)
    missing = values.isna().to_numpy(dtype=bool).copy()

    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values):
        aware = isinstance(values.dtype, pd.DatetimeTZDtype)
        utc = values.dt.tz_convert("UTC") if aware else values.dt.tz_localize("UTC")
        acc.micros[~missing] = _to_micros(utc[~missing])
        acc.status[:] = _OK
        if aware and str(values.dt.tz) != "UTC":
            offsets = values[~missing].map(lambda t: t.utcoffset() != dt.timedelta(0))
            acc.status[np.flatnonzero(~missing)[offsets.to_numpy(dtype=bool)]] = _OFFSET
        acc.status[missing] = _MISSING
        acc.formats["datetime values"] = int((~missing).sum())
        acc.naive = 0 if aware else int((~missing).sum())
        if not aware and acc.naive_mask is not None:
            acc.naive_mask[:] = ~missing
        return

    is_dt = np.zeros(n, dtype=bool)
    if values.dtype == object:
        # pm4py and Parquet readers can hand over Python datetimes mixed with other values
        is_dt = values.map(lambda v: isinstance(v, dt.datetime)).to_numpy(dtype=bool)
        if is_dt.any():
            objs = values[is_dt]
            zone = [v.utcoffset() for v in objs]
            wall = [
                v if z is None else v.astimezone(dt.UTC).replace(tzinfo=None)
                for v, z in zip(objs, zone, strict=True)
            ]
            idx = np.flatnonzero(is_dt)
            acc.micros[idx] = _to_micros(pd.DatetimeIndex(pd.to_datetime(wall)))
            off = np.array([z is not None and z != dt.timedelta(0) for z in zone], dtype=bool)
            acc.status[idx] = np.where(off, _OFFSET, _OK)
            acc.naive += sum(z is None for z in zone)
            if acc.naive_mask is not None:
                acc.naive_mask[idx] = [z is None for z in zone]
            acc.formats["datetime values"] = int(is_dt.sum())
    texts = values.where(~is_dt, "").astype("str").str.strip()
    missing |= ~is_dt & texts.str.lower().isin(_NULL_TOKENS).to_numpy(dtype=bool)
    leftovers: list[np.ndarray] = []
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        part = texts.iloc[start:stop][~(missing | is_dt)[start:stop]]
        if timestamp_format is not None:
            parsed = pd.to_datetime(part, format=timestamp_format, utc=True, errors="coerce")
            _record(part, parsed, f"format {timestamp_format} (timestampFormat)", acc)
        else:
            parsed = _iso8601(part)
            leftovers.append(_record(part, parsed, "ISO 8601", acc))
        if tick is not None:
            tick(stop, f"parsing timestamps ({stop:,} of {n:,})")
    rest = np.concatenate(leftovers) if leftovers else np.zeros(0, dtype=np.int64)
    if len(rest):
        # the day/month order is decided from every value, as at loading (refused if unknown)
        dayfirst = decide_day_first(texts.iloc[rest])
        _parse_leftovers(texts.iloc[rest], acc, dayfirst)
    acc.status[missing] = _MISSING


def _iso(micros: np.ndarray) -> np.ndarray:
    """ISO 8601 UTC strings ending in Z; milliseconds unless a value needs microseconds."""
    unit: Literal["ms", "us"] = "us" if bool((micros % 1000 != 0).any()) else "ms"
    stamps: Any = micros.astype("datetime64[us]")
    return np.char.add(np.datetime_as_string(stamps, unit=unit), "Z")


def _utc_series(micros: np.ndarray) -> pd.Series:
    return pd.Series(pd.DatetimeIndex(micros.astype("datetime64[us]")).tz_localize("UTC"))


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


# ---------------------------------------------------------------------------------------------
# Rules


def _remove_duplicates(frame: pd.DataFrame, tick: Tick) -> tuple[pd.DataFrame, RuleReport]:
    tick(0, "remove_duplicates: finding duplicate events")
    keys = [CASE, ACTIVITY, TIMESTAMP] + [c for c in (RESOURCE, LIFECYCLE) if c in frame]
    # NaN never equals NaN in a comparison but does in duplicated(); treat missing as empty
    probe = frame[keys].copy()
    for col in keys:
        if col != TIMESTAMP and probe[col].isna().any():
            probe[col] = probe[col].astype(object).where(probe[col].notna(), "")
    order = np.argsort(frame[ROW].to_numpy(), kind="stable")
    dup_sorted = probe.iloc[order].duplicated(keep="first").to_numpy()
    dup = np.zeros(len(frame), dtype=bool)
    dup[order] = dup_sorted
    # events without a timestamp are not provably the same event
    stamp = frame[TIMESTAMP]
    dup &= stamp.notna().to_numpy(dtype=bool)
    if not pd.api.types.is_datetime64_any_dtype(stamp):
        dup &= (stamp.astype("str").str.strip() != "").to_numpy(dtype=bool)
    removed = int(dup.sum())
    examples: list[dict[str, Any]] = []
    if removed:
        copies = probe[dup].value_counts(sort=True, dropna=False).head(MAX_EXAMPLES)
        for key, count in copies.items():
            row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
            example = {
                "caseId": _text(row[CASE]),
                "activity": _text(row[ACTIVITY]),
                "timestamp": _text(row[TIMESTAMP]),
                "copiesRemoved": int(count),
            }
            if RESOURCE in row:
                example["resource"] = _text(row[RESOURCE])
            examples.append(example)
    cases = int(frame.loc[dup, CASE].nunique()) if removed else 0
    key_text = ", ".join(
        ["case", "activity", "timestamp"]
        + (["resource"] if RESOURCE in frame else [])
        + (["lifecycle transition"] if LIFECYCLE in frame else [])
    )
    description = (
        f"Removed {removed:,} exact duplicate events (same {key_text}) in {cases:,} cases; "
        "the first occurrence in file order was kept."
        if removed
        else f"No duplicate events found (compared {key_text})."
    )
    tick(len(frame), "remove_duplicates: done")
    report = RuleReport(
        "remove_duplicates", 0, removed, description, examples, {"duplicates": removed}
    )
    return frame[~dup], report


_FIX_LABELS = {
    "offset_converted": "converted from a UTC offset to UTC",
    "interpolated": "interpolated between the neighbouring events of their case",
    "removed_missing": "removed (missing timestamp, no valid neighbour on both sides)",
    "removed_unparseable": "removed (unreadable timestamp, no valid neighbour on both sides)",
    "removed_before_1970": "removed (timestamp before 1970)",
    "removed_future": "removed (timestamp later than now + 1 day)",
}

_PARSE_LABELS = {
    "removed_missing": "removed (missing timestamp)",
    "removed_unparseable": "removed (unreadable timestamp)",
}


def _interpolate(frame: pd.DataFrame, micros: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Positions (into frame) that can be interpolated, and fill micros for them in place.

    Neighbours are the closest events of the same case, in file order, with a valid timestamp.
    """
    if not bad.any():
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((frame[ROW].to_numpy(), pd.factorize(frame[CASE])[0]))
    case_codes = pd.factorize(frame[CASE])[0][order]
    valid = ~bad[order]
    pos = np.arange(len(order), dtype=np.float64)
    t = pd.Series(np.where(valid, micros[order], np.nan).astype(np.float64))
    p = pd.Series(np.where(valid, pos, np.nan))
    groups = pd.Series(case_codes)
    prev_t = t.groupby(groups).ffill().to_numpy()
    next_t = t.groupby(groups).bfill().to_numpy()
    prev_p = p.groupby(groups).ffill().to_numpy()
    next_p = p.groupby(groups).bfill().to_numpy()
    can = ~valid & ~np.isnan(prev_t) & ~np.isnan(next_t) & (next_t >= prev_t)
    # integer arithmetic on the anchors keeps microsecond precision for far-apart neighbours
    lo = np.nan_to_num(prev_t).astype(np.int64)
    hi = np.nan_to_num(next_t).astype(np.int64)
    frac = np.where(can, (pos - np.nan_to_num(prev_p)) / np.maximum(next_p - prev_p, 1), 0.0)
    filled = lo + np.round((hi - lo) * np.nan_to_num(frac)).astype(np.int64)
    # round to the millisecond, like the logs themselves, without leaving [prev, next]
    filled = np.clip((filled // 1000) * 1000, lo, hi)
    targets = order[can]
    micros[targets] = filled[can]
    return targets


def _fix_timestamps(
    frame: pd.DataFrame,
    tick: Tick,
    *,
    rule: str = "fix_timestamps",
    repair: bool = True,
    timestamp_format: str | None = None,
    timezone: str | None = None,
) -> tuple[pd.DataFrame, RuleReport]:
    n = len(frame)
    parsed = parse_timestamps(
        frame[TIMESTAMP],
        lambda d, t: tick(d * 3 // 4, f"{rule}: {t}"),
        timestamp_format=timestamp_format,
        timezone=timezone,
    )
    micros, status = parsed.micros.copy(), parsed.status
    kinds = np.full(n, "", dtype=object)
    kinds[status == _OFFSET] = "offset_converted"
    bad = status >= _MISSING
    remove = np.zeros(n, dtype=bool)
    if repair:
        limit = int(dt.datetime.now(dt.UTC).timestamp() * 1e6) + 86_400_000_000  # now + 1 day
        early = ~bad & (micros < _MIN_US)
        late = ~bad & (micros > limit)
        kinds[early] = "removed_before_1970"
        kinds[late] = "removed_future"
        remove |= early | late
        kept = np.flatnonzero(~remove)
        kept_micros = micros[kept]
        targets = _interpolate(frame.iloc[kept], kept_micros, bad[kept])
        micros[kept] = kept_micros
        filled = np.zeros(n, dtype=bool)
        filled[kept[targets]] = True
        kinds[filled] = "interpolated"
        bad = bad & ~filled
    kinds[bad & (status == _MISSING)] = "removed_missing"
    kinds[bad & (status == _UNPARSEABLE)] = "removed_unparseable"
    remove |= bad
    tick(n, f"{rule}: repairs")

    counts = {k: int((kinds == k).sum()) for k in _FIX_LABELS}
    counts = {k: v for k, v in counts.items() if v}
    labels = _FIX_LABELS if repair else {**_FIX_LABELS, **_PARSE_LABELS}
    examples = _timestamp_examples(frame, kinds, micros)
    changed = counts.get("offset_converted", 0) + counts.get("interpolated", 0)
    removed = int(remove.sum())
    fmt = "; ".join(f"{v:,} as {k}" for k, v in parsed.formats.items())
    parts = [f"Read {int((status < _MISSING).sum()):,} timestamps ({fmt or 'none readable'})"]
    if parsed.naive:
        zone = "as UTC" if timezone in (None, "UTC") else f"as {timezone} time"
        parts.append(f"{parsed.naive:,} without time zone were taken {zone}")
    parts += [f"{v:,} {labels[k]}" for k, v in counts.items()]
    if not repair:
        parts.append("impossible dates were not checked (fix_timestamps not requested)")
    if not counts:
        parts.append("nothing needed fixing")
    out = frame.assign(**{TIMESTAMP: _utc_series(micros).set_axis(frame.index)})[~remove]
    description = "; ".join(parts) + "."
    return out, RuleReport(rule, changed, removed, description, examples, counts)


def _timestamp_examples(
    frame: pd.DataFrame, kinds: np.ndarray, micros: np.ndarray
) -> list[dict[str, Any]]:
    # one example per kind first, so every kind of fix is illustrated
    by_kind = [np.flatnonzero(kinds == k)[:MAX_EXAMPLES] for k in _FIX_LABELS]
    picked: list[int] = []
    for depth in range(MAX_EXAMPLES):
        for positions in by_kind:
            if depth < len(positions) and len(picked) < MAX_EXAMPLES:
                picked.append(int(positions[depth]))
    examples = []
    for i in sorted(picked, key=lambda i: list(_FIX_LABELS).index(str(kinds[i]))):
        kind = str(kinds[i])
        examples.append(
            {
                "caseId": _text(frame[CASE].iat[i]),
                "activity": _text(frame[ACTIVITY].iat[i]),
                "before": _text(frame[TIMESTAMP].iat[i]),
                "after": None if kind.startswith("removed") else str(_iso(micros[i : i + 1])[0]),
                "fix": kind,
            }
        )
    return examples


def _validate_activities(frame: pd.DataFrame, tick: Tick) -> tuple[pd.DataFrame, RuleReport]:
    tick(0, "validate_activities: normalising names")
    codes, uniques = pd.factorize(frame[ACTIVITY], use_na_sentinel=True)
    names = pd.Series(uniques, dtype=object).astype(str)
    cleaned = names.str.split().str.join(" ")  # split() without a separator eats any whitespace
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    rows = frame[ROW].to_numpy()
    first_seen = pd.Series(rows[codes >= 0]).groupby(codes[codes >= 0]).min()
    first_row = first_seen.reindex(range(len(uniques))).to_numpy()
    spellings = pd.DataFrame(
        {"cleaned": cleaned, "key": cleaned.str.casefold(), "count": counts, "first": first_row}
    )
    # frequency of each cleaned spelling, then the winner per case-insensitive key
    freq = spellings.groupby("cleaned", sort=False).agg(
        key=("key", "first"), count=("count", "sum"), first=("first", "min")
    )
    freq = freq.reset_index().sort_values(["key", "count", "first"], ascending=[True, False, True])
    winner = freq.drop_duplicates("key").set_index("key")["cleaned"]
    target = spellings["key"].map(winner)
    empty = (target == "").to_numpy()
    mapped = np.where(empty, "", target.to_numpy(dtype=object))
    renamed = (mapped != names.to_numpy(dtype=object)) & ~empty

    event_target = np.empty(len(frame), dtype=object)
    event_target[codes >= 0] = mapped[codes[codes >= 0]]
    drop = codes < 0
    drop[codes >= 0] |= empty[codes[codes >= 0]]
    changed_events = int(counts[renamed].sum())
    removed = int(drop.sum())
    mapping: list[dict[str, Any]] = [
        {"before": str(names.iat[int(i)]), "after": str(mapped[i]), "count": int(counts[i])}
        for i in np.flatnonzero(renamed)
    ]
    mapping.sort(key=lambda m: (-int(m["count"]), str(m["before"])))
    examples: list[dict[str, Any]] = mapping[:MAX_EXAMPLES]
    if removed and len(examples) < MAX_EXAMPLES:
        examples.append({"before": "", "after": None, "count": removed})
    whitespace_only = int(counts[renamed & (cleaned.to_numpy() == mapped)].sum())
    unified = changed_events - whitespace_only
    targets = len({m["after"] for m in mapping})
    parts = []
    if whitespace_only:
        parts.append(f"fixed whitespace in the activity of {whitespace_only:,} events")
    if unified:
        parts.append(
            f"unified {unified:,} events spelled differently (case/whitespace) to the most "
            "frequent spelling"
        )
    if mapping:
        plural = ("s" if len(mapping) != 1 else "", "s" if targets != 1 else "")
        parts.append(
            f"{len(mapping):,} spelling{plural[0]} mapped onto {targets:,} activity name{plural[1]}"
        )
    if removed:
        parts.append(f"removed {removed:,} events with an empty activity")
    text = "; ".join(parts)
    description = (
        text[:1].upper() + text[1:] + "."
        if parts
        else f"All {len(set(mapped[~empty])):,} activity names were already clean."
    )
    out = frame.assign(**{ACTIVITY: pd.Series(event_target, index=frame.index, dtype="str")})
    tick(len(frame), "validate_activities: done")
    report = RuleReport(
        "validate_activities",
        changed_events,
        removed,
        description,
        examples,
        {"whitespace": whitespace_only, "unified": unified, "removedEmpty": removed},
    )
    return out[~drop], report


_RULE_FUNCS = {"remove_duplicates": _remove_duplicates, "validate_activities": _validate_activities}


def _check_rules(rules: Sequence[str] | None) -> list[str]:
    if rules is None:
        raise InvalidParameter(
            f"cleaningRules is required; allowed values: {', '.join(RULES)}.",
            field="parameters.cleaningRules",
        )
    chosen = [rules] if isinstance(rules, str) else list(rules)
    allowed = ", ".join(RULES)
    for rule in chosen:
        if rule not in RULES:
            raise InvalidParameter(
                f"Unknown cleaning rule {rule!r}; allowed values: {allowed}.",
                field="parameters.cleaningRules",
            )
    if len(set(chosen)) != len(chosen):
        raise InvalidParameter(
            f"A cleaning rule is listed more than once; allowed values: {allowed}.",
            field="parameters.cleaningRules",
        )
    return chosen


def enrich_events(
    frame: pd.DataFrame,
    rules: Sequence[str],
    progress: Progress | None = None,
    *,
    timestamp_format: str | None = None,
    timezone: str | None = None,
) -> EnrichmentResult:
    """Apply the cleaning rules in the order given; the input frame is not modified.

    Timestamps are read with `timestamp_format` when given; values without a zone are wall
    times in `timezone` (UTC when None)."""
    chosen = _check_rules(rules)
    missing = [c for c in (CASE, ACTIVITY, TIMESTAMP) if c not in frame]
    if missing:
        raise EventLogError(
            f"The event log lacks the column(s) {', '.join(missing)}.", field="file"
        )
    work = frame.copy()
    if ROW not in work:
        work[ROW] = np.arange(len(work), dtype=np.int64)
    records_in = len(work)
    steps = len(chosen) + 1
    reports: list[RuleReport] = []
    for step, rule in enumerate(chosen):
        tick = _ticker(progress, step, steps, records_in)
        if rule == "fix_timestamps":
            work, report = _fix_timestamps(
                work, tick, timestamp_format=timestamp_format, timezone=timezone
            )
        else:
            work, report = _RULE_FUNCS[rule](work, tick)
        reports.append(report)
    tick = _ticker(progress, len(chosen), steps, records_in)
    if "fix_timestamps" not in chosen:
        work, report = _fix_timestamps(
            work,
            tick,
            rule=PARSE_RULE,
            repair=False,
            timestamp_format=timestamp_format,
            timezone=timezone,
        )
        reports.append(report)
    tick(records_in // 2, "sorting events")
    work = work.sort_values([CASE, TIMESTAMP, ROW], kind="stable").reset_index(drop=True)
    tick(records_in, "cleaning done")
    return EnrichmentResult(work, records_in, len(work), reports)


# ---------------------------------------------------------------------------------------------
# Output


def _output_frame(frame: pd.DataFrame) -> pd.DataFrame:
    names = {CASE: "case_id", ACTIVITY: "activity", TIMESTAMP: "timestamp", RESOURCE: "resource"}
    core = [c for c in (CASE, ACTIVITY, TIMESTAMP, RESOURCE) if c in frame]
    others = [c for c in frame.columns if c not in names and c != ROW]
    taken = {names[c] for c in core}
    renamed: dict[str, str] = {}
    for col in others:
        new = str(col)
        while new in taken:  # an original column already called e.g. "activity"
            new += "_original"
        taken.add(new)
        renamed[col] = new
    out = frame[core + others].rename(columns={**names, **renamed})
    return out


def write_enriched(
    frame: pd.DataFrame,
    path: Path,
    output_format: str = "processed_csv",
    progress: Progress | None = None,
) -> Path:
    """Write the cleaned frame as a new file; written to a temporary name, then renamed."""
    if output_format not in OUTPUT_FORMATS:
        raise InvalidParameter(
            f"Unknown output format {output_format!r}; "
            f"allowed values: {', '.join(OUTPUT_FORMATS)}.",
            field="parameters.outputFormat",
        )
    path = Path(path)
    # same extension: pm4py appends ".xes" to any other file name
    partial = path.with_name(f".partial-{path.name}")
    n = len(frame)
    try:
        if output_format == "processed_csv":
            out = _output_frame(frame)
            micros = _to_micros(frame[TIMESTAMP].dt.tz_convert("UTC"))
            out["timestamp"] = _iso(micros)
            with open(partial, "w", encoding="utf-8", newline="") as fh:
                for start in range(0, max(n, 1), CHUNK):
                    stop = min(n, start + CHUNK)
                    neutralise(out.iloc[start:stop]).to_csv(  # csvsafe
                        fh, index=False, header=start == 0, lineterminator="\n"
                    )
                    if progress is not None:
                        progress.update(stop, n, f"writing CSV ({stop:,} of {n:,} events)")
        elif output_format == "parquet":
            if progress is not None:
                progress.update(0, n, "writing Parquet")
            _output_frame(frame).to_parquet(partial, index=False)
        else:
            import pm4py

            if progress is not None:
                progress.update(0, n, "writing XES")
            pm4py.write_xes(
                frame.drop(columns=[ROW], errors="ignore"), str(partial), case_id_key=CASE
            )
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    if progress is not None:
        progress.update(n, n, "written")
    return path
