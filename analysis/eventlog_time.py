"""Timestamps of an event log: fast vectorised parsing to UTC, and the analysis time window.

Helpers of `analysis.eventlog` (import the public names from there).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from analysis.errors import InvalidParameter
from analysis.progress import Progress

CHUNK_ROWS = 50_000
_SAMPLE = 2_000  # distinct values used to choose a format
_MIXED_PROBE = 1_000  # failed values tried with the slow per-value parser before giving up
NAT = np.iinfo(np.int64).min  # int64 view of NaT


@dataclass(frozen=True)
class TimeWindow:
    """Events kept: start <= timestamp, and timestamp <= end (or < end when not inclusive).

    Both bounds are tz-aware UTC or None (open). An end given as a date covers that whole day:
    it is stored as the next midnight with `end_inclusive=False`.
    """

    start: datetime | None = None
    end: datetime | None = None
    end_inclusive: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "startDate": iso_utc(self.start),
            "endDate": iso_utc(self.end),
            "endInclusive": self.end_inclusive,
        }

    def mask(self, utc_us: np.ndarray) -> np.ndarray:
        """Which of these instants (int64 microseconds since the epoch, UTC) lie inside."""
        keep = np.ones(len(utc_us), dtype=bool)
        if self.start is not None:
            keep &= utc_us >= _epoch_us(self.start)
        if self.end is not None:
            end = _epoch_us(self.end)
            keep &= (utc_us <= end) if self.end_inclusive else (utc_us < end)
        return keep

    def describe(self) -> str:
        start = iso_utc(self.start) or "the beginning"
        if self.end is None:
            return f"from {start} on"
        if not self.end_inclusive and (self.end.hour, self.end.minute, self.end.second) == (
            0,
            0,
            0,
        ):
            return f"from {start} through {(self.end - timedelta(days=1)).date().isoformat()}"
        end = iso_utc(self.end)
        return f"from {start} to {end}" + ("" if self.end_inclusive else " (exclusive)")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def iso_utc(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with 'Z' (milliseconds shown only when present)."""
    if moment is None or pd.isna(moment):
        return None
    ts = pd.Timestamp(moment)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    text = ts.strftime("%Y-%m-%dT%H:%M:%S")
    if ts.microsecond:
        text += f".{ts.microsecond // 1000:03d}"
    return text + "Z"


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_time_window(start: str | None, end: str | None) -> TimeWindow | None:
    """The analysis window from the API's startDate/endDate ("2024-01-01" or ISO datetimes).

    Naive datetimes are UTC; an end date is inclusive (the whole day); None or "" = open.
    """
    lo = _parse_bound(start, "startDate")
    hi = _parse_bound(end, "endDate")
    if lo is None and hi is None:
        return None
    end_moment: datetime | None = None
    inclusive = True
    if hi is not None:
        end_moment, is_date = hi
        if is_date:
            end_moment, inclusive = end_moment + timedelta(days=1), False
    start_moment = lo[0] if lo is not None else None
    if start_moment is not None and end_moment is not None:
        empty = start_moment > end_moment or (not inclusive and start_moment == end_moment)
        if empty:
            raise InvalidParameter(
                f"endDate ({end}) is before startDate ({start}).",
                field="parameters.timeWindow.endDate",
            )
    return TimeWindow(start=start_moment, end=end_moment, end_inclusive=inclusive)


def _parse_bound(value: object, name: str) -> tuple[datetime, bool] | None:
    field = f"parameters.timeWindow.{name}"
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidParameter(f"{name} must be a date such as 2024-01-31.", field=field)
    text = value.strip()
    if not text:
        return None
    try:
        if _DATE_ONLY.match(text):
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC), True
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidParameter(
            f"{name} {value!r} is not a date (2024-01-31) or ISO 8601 datetime "
            "(2024-01-31T17:00:00Z).",
            field=field,
        ) from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment, False


# --------------------------------------------------------------------------- parsing


@dataclass
class ParsedTimes:
    utc_us: np.ndarray  # int64 microseconds since the epoch (UTC); NAT where missing/failed
    missing: np.ndarray  # bool: no value at all
    unparseable: np.ndarray  # bool: a value that is not a timestamp
    method: str  # how the values were read, for the method text


def parse_timestamps(values: pd.Series, progress: Progress, base: int, total: int) -> ParsedTimes:
    """Parse a TIMESTAMP column as read (strings or datetimes) into UTC microseconds.

    Datetime columns only need their zone settled. Strings are parsed with one format chosen
    on a sample (ISO 8601 first), chunk by chunk; only the values that format rejects go
    through pandas' slow per-value parser, and if a probe of them yields nothing the rest are
    declared unparseable rather than tried one by one.
    """
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        series = values.dt.tz_localize("UTC") if values.dt.tz is None else values
        utc = series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")
        ints = utc.view(np.int64)
        missing = ints == NAT
        return ParsedTimes(ints, missing, np.zeros(len(ints), dtype=bool), "datetime values")
    text = values.astype("str") if not _is_string(dtype) else values
    text = text.fillna("")
    missing = (text.str.strip() == "").to_numpy(dtype=bool)
    n = len(text)
    fmt = _choose_format(text[~missing])
    ints = np.full(n, NAT, dtype=np.int64)
    for start in range(0, n, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, n)
        ints[start:stop] = _to_us(text.iloc[start:stop], fmt)
        progress.update(base + stop, total, "Parsing timestamps")
    failed = np.flatnonzero((ints == NAT) & ~missing)
    method = "ISO 8601" if fmt == "ISO8601" else f"format {fmt}"
    if len(failed):
        probe = failed[:_MIXED_PROBE]
        ints[probe] = _to_us(text.iloc[probe], "mixed")
        rest = failed[_MIXED_PROBE:]
        if len(rest) and (ints[probe] != NAT).any():
            for start in range(0, len(rest), CHUNK_ROWS):
                part = rest[start : start + CHUNK_ROWS]
                ints[part] = _to_us(text.iloc[part], "mixed")
                progress.update(base + n, total, "Parsing irregular timestamps")
        if (ints[failed] != NAT).any():
            method += ", other layouts parsed value by value"
    unparseable = (ints == NAT) & ~missing
    return ParsedTimes(ints, missing, unparseable, method)


def _is_string(dtype: object) -> bool:
    return isinstance(dtype, pd.StringDtype) or dtype == object  # noqa: E721 - numpy dtype


def _to_us(values: pd.Series, fmt: str) -> np.ndarray:
    """int64 UTC microseconds; NAT where the value does not parse (or is out of range)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parsed = pd.to_datetime(pd.Index(values), format=fmt, utc=True, errors="coerce")
        except (ValueError, TypeError, OverflowError):
            return np.full(len(values), NAT, dtype=np.int64)
    return np.asarray(parsed.as_unit("us").asi8, dtype=np.int64)


def _choose_format(present: pd.Series) -> str:
    """The single format that parses most of a sample: ISO 8601, else a guessed layout."""
    sample = pd.Series(pd.unique(present.head(_SAMPLE * 5).to_numpy())[:_SAMPLE])
    if sample.empty:
        return "ISO8601"
    candidates = ["ISO8601"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns when dayfirst cannot apply
        for value in sample.head(20):
            for dayfirst in (False, True):
                guessed = guess_datetime_format(str(value).strip(), dayfirst=dayfirst)
                if guessed and guessed not in candidates:
                    candidates.append(guessed)
    best, best_ok = "ISO8601", -1
    for fmt in candidates:
        ok = int((_to_us(sample, fmt) != NAT).sum())
        if ok > best_ok:  # ties keep the earlier candidate (ISO, then month-first)
            best, best_ok = fmt, ok
        if ok == len(sample):
            break
    return best
