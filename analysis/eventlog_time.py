"""Timestamps of an event log: fast vectorised parsing to UTC, and the analysis time window.

Helpers of `analysis.eventlog` (import the public names from there).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from pandas.errors import OutOfBoundsDatetime
from pandas.tseries.api import guess_datetime_format

from analysis.errors import EventLogError, InvalidParameter
from analysis.progress import Progress

CHUNK_ROWS = 50_000
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
            try:
                end_moment, inclusive = end_moment + timedelta(days=1), False
            except OverflowError:
                raise InvalidParameter(
                    f"endDate {end!r} is beyond the latest date supported (9999-12-30); leave "
                    "it out for an open end.",
                    field="parameters.timeWindow.endDate",
                ) from None
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
    try:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise InvalidParameter(
            f"{name} {value!r} lies outside the supported dates (years 1 to 9999 in UTC).",
            field=field,
        ) from None
    return moment, False


# --------------------------------------------------------------------------- parsing


@dataclass
class ParsedTimes:
    utc_us: np.ndarray  # int64 microseconds since the epoch (UTC); NAT where missing/failed
    missing: np.ndarray  # bool: no value at all
    unparseable: np.ndarray  # bool: a value that is not a timestamp
    method: str  # how the values were read, for the method text
    with_offset: np.ndarray | None = None  # bool: the value carries its own UTC offset
    naive: np.ndarray | None = None  # bool: the value has no offset (read in `timezone`)


class AmbiguousTimestamps(EventLogError):
    """The day/month order of a timestamp column cannot be told from its values."""

    code = "ambiguous_timestamps"


_OFFSET_RE = r":\d\d(?::\d\d)?(?:[.,]\d+)?\s*(?:Z|UTC|GMT|[+-]\d\d(?::?\d\d)?)$"
_ISO_START = r"^\d{4}-\d{1,2}-\d{1,2}(?:$|[T\s])"
_MAX_SHAPES = 50
_GUESS_VALUES = 12  # distinct values of a layout whose format pandas is asked to guess


def check_timezone(name: str | None, field: str = "parameters.timezone") -> str:
    """The IANA zone name, validated; "UTC" when None or blank."""
    if name is None or not str(name).strip():
        return "UTC"
    text = str(name).strip()
    try:
        ZoneInfo(text)
        pd.Timestamp("2000-01-01").tz_localize(text)  # pandas must take it too
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError, KeyError):
        raise InvalidParameter(
            f"timezone {name!r} is not an IANA time zone name (such as Europe/Berlin, "
            "Asia/Tokyo or UTC).",
            field=field,
        ) from None
    return text


def check_timestamp_format(
    fmt: str | None, field: str = "parameters.timestampFormat"
) -> str | None:
    """The strftime format, validated (it must contain a date directive); None when blank."""
    if fmt is None or not str(fmt).strip():
        return None
    text = str(fmt).strip()
    if not re.search(r"%[dmYyjbBU]", text) or len(text) > 100:
        raise InvalidParameter(
            f"timestampFormat {fmt!r} is not a strftime format with a date, such as "
            "%d.%m.%Y %H:%M:%S or %m/%d/%Y %I:%M %p.",
            field=field,
        )
    return text


def parse_timestamps(
    values: pd.Series,
    progress: Progress,
    base: int,
    total: int,
    *,
    timestamp_format: str | None = None,
    timezone: str | None = None,
    column: str = "timestamp",
) -> ParsedTimes:
    """Parse a TIMESTAMP column as read (strings or datetimes) into UTC microseconds.

    Values with a UTC offset are converted; values without one are wall times in `timezone`
    (default UTC). Datetime columns only need their zone settled. Strings are read with
    `timestamp_format` when given; otherwise ISO 8601 values (year first) are read as such and
    every other layout gets one format decided from all its values: when day and month could
    be swapped, any value whose first field cannot be a month makes the whole column day-first
    (and any whose second field cannot be, month-first); a column with no such value (and two
    readings that differ) is refused, as is one with both kinds.
    """
    tz = check_timezone(timezone)
    fmt = check_timestamp_format(timestamp_format)
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        naive_col = values.dt.tz is None
        if naive_col:
            ints = _localize(pd.DatetimeIndex(values), tz)
        else:
            ints = np.asarray(
                pd.DatetimeIndex(values).tz_convert("UTC").as_unit("us").asi8, dtype=np.int64
            )
        missing = ints == NAT
        flags = np.full(len(ints), naive_col, dtype=bool) & ~missing
        method = "datetime values" + (f" (wall times in {tz})" if naive_col and tz != "UTC" else "")
        return ParsedTimes(
            ints, missing, np.zeros(len(ints), dtype=bool), method, ~flags & ~missing, flags
        )
    text = _as_text(values)
    text = text.fillna("").str.strip()
    missing = (text == "").to_numpy(dtype=bool)
    n = len(text)
    ints = np.full(n, NAT, dtype=np.int64)
    offset = text.str.contains(_OFFSET_RE, regex=True).to_numpy(dtype=bool) & ~missing
    naive = ~offset & ~missing
    progress.update(base + n // 4, total, "Reading timestamp layouts")
    methods: list[str] = []
    if fmt is not None:
        for mask, aware in ((offset, True), (naive, False)):
            idx = np.flatnonzero(mask)
            if len(idx):
                ints[idx] = _to_us(text.iloc[idx], fmt, aware, tz)
        if not (ints != NAT).any() and (~missing).any():
            example = text[~missing].iloc[0]
            raise InvalidParameter(
                f"None of the values of the timestamp column {column!r} matches "
                f"timestampFormat {fmt!r} (e.g. {example!r}).",
                field="parameters.timestampFormat",
            )
        methods.append(f"format {fmt} (timestampFormat)")
    else:
        methods += _parse_by_layout(text, offset, naive, ints, tz, column)[0]
    progress.update(base + n, total, "Timestamps parsed")
    unparseable = (ints == NAT) & ~missing
    method = ", ".join(dict.fromkeys(methods)) or "no readable values"
    if naive.any() and tz != "UTC":
        method += f"; values without an offset are wall times in {tz}"
    return ParsedTimes(
        ints, missing, unparseable, method, offset & ~unparseable, naive & ~unparseable
    )


@dataclass
class _Layout:
    idx: np.ndarray  # positions in the column
    fmt: str
    parsed: np.ndarray  # int64 us with `fmt`
    swapped_fmt: str | None = None  # the same layout with day and month exchanged
    swapped: np.ndarray | None = None


def _parse_by_layout(
    text: pd.Series,
    offset: np.ndarray,
    naive: np.ndarray,
    ints: np.ndarray,
    tz: str,
    column: str,
) -> tuple[list[str], bool]:
    """Fill `ints` for a column without an explicit format; returns the method texts and
    whether the column is day-first."""
    methods: list[str] = []
    iso_like = text.str.contains(_ISO_START, regex=True).to_numpy(dtype=bool)
    rest_parts: list[np.ndarray] = []
    layouts: list[_Layout] = []
    for group, aware in ((offset, True), (naive, False)):
        iso_idx = np.flatnonzero(group & iso_like)
        if len(iso_idx):
            ints[iso_idx] = _to_us(text.iloc[iso_idx], "ISO8601", aware, tz)
            if (ints[iso_idx] != NAT).any():
                methods.append("ISO 8601")
        others = np.flatnonzero(group & ~iso_like)
        others = np.concatenate([others, iso_idx[ints[iso_idx] == NAT]])
        if not len(others):
            continue
        sub = text.iloc[others]
        shapes = sub.str.replace(r"\d+", "9", regex=True).str.replace(r"[^\W\d_]+", "a", regex=True)
        counts = shapes.value_counts()
        shape_arr = shapes.to_numpy()
        for shape in counts.index[:_MAX_SHAPES]:
            where = others[shape_arr == shape]
            if str(shape).count("9") < 2:
                rest_parts.append(where)
                continue
            layout = _layout(text.iloc[where], where, aware, tz)
            if layout is None:
                rest_parts.append(where)
            else:
                layouts.append(layout)
        rest_parts.append(others[~np.isin(shape_arr, counts.index[:_MAX_SHAPES].to_numpy())])

    decided = _day_first(layouts, text, column)
    dayfirst = True if decided is None else decided
    for layout in layouts:
        use_swapped = layout.swapped is not None and _is_day_first(layout.fmt) != dayfirst
        chosen = layout.swapped if use_swapped and layout.swapped is not None else layout.parsed
        fmt = layout.swapped_fmt if use_swapped and layout.swapped_fmt else layout.fmt
        ints[layout.idx] = chosen
        failed = layout.idx[chosen == NAT]
        if len(failed):
            rest_parts.append(failed)
        methods.append(f"format {fmt}")

    rest = np.concatenate(rest_parts) if rest_parts else np.zeros(0, dtype=np.int64)
    rest = rest[ints[rest] == NAT]
    # with no layout to decide the order, a value read differently both ways is refused too
    strict = None if decided is not None else column
    if len(rest) and _per_value(text, rest, offset, ints, tz, dayfirst, strict):
        methods.append("other layouts parsed value by value")
    return methods, dayfirst


def decide_day_first(values: pd.Series, column: str = "timestamp") -> bool:
    """Whether a text column's dates are day-first, by the rule of `parse_timestamps` (every
    value counts; AmbiguousTimestamps when no value decides or values disagree). True when the
    question does not arise (ISO 8601 only, or every value reads the same both ways)."""
    text = values.astype("str").fillna("").str.strip().reset_index(drop=True)
    missing = (text == "").to_numpy(dtype=bool)
    offset = text.str.contains(_OFFSET_RE, regex=True).to_numpy(dtype=bool) & ~missing
    scratch = np.full(len(text), NAT, dtype=np.int64)
    return _parse_by_layout(text, offset, ~offset & ~missing, scratch, "UTC", column)[1]


def _is_day_first(fmt: str) -> bool:
    return 0 <= fmt.find("%d") < fmt.find("%m")


def _swap(fmt: str) -> str | None:
    if "%d" not in fmt or "%m" not in fmt or fmt.find("%Y") == 0:
        return None
    return fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


def _layout(values: pd.Series, idx: np.ndarray, aware: bool, tz: str) -> _Layout | None:
    """The format reading most values of one layout, with its day/month swap when it has one."""
    distinct = pd.unique(values.to_numpy())
    step = max(1, len(distinct) // _GUESS_VALUES)
    candidates: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns when dayfirst cannot apply
        for value in distinct[::step][:_GUESS_VALUES]:
            for dayfirst in (False, True):
                guessed = guess_datetime_format(str(value), dayfirst=dayfirst)
                # a year-first layout is year-month-day; nobody writes year-day-month
                if guessed and not (guessed.find("%Y") == 0 and _is_day_first(guessed)):
                    candidates.append(guessed)
    candidates = list(dict.fromkeys(candidates))[:6]
    if not candidates:
        return None
    # a stratified sample ranks the candidates; the winner is then run on every value
    sample = values.iloc[:: max(1, len(values) // 2_000)]
    best = max(candidates, key=lambda f: int((_to_us(sample, f, aware, tz) != NAT).sum()))
    parsed = _to_us(values, best, aware, tz)
    if not (parsed != NAT).any():
        return None
    swapped_fmt = _swap(best)
    swapped = _to_us(values, swapped_fmt, aware, tz) if swapped_fmt else None
    return _Layout(idx, best, parsed, swapped_fmt, swapped)


def _day_first(layouts: list[_Layout], text: pd.Series, column: str) -> bool | None:
    """The column's day/month order from every value of every swappable layout; None when no
    layout has day and month in swappable places."""
    proves_day: list[np.ndarray] = []
    proves_month: list[np.ndarray] = []
    ambiguous: list[np.ndarray] = []
    swappable: list[_Layout] = []
    for layout in layouts:
        if layout.swapped is None or layout.swapped_fmt is None:
            continue
        swappable.append(layout)
        day, month = (
            (layout.parsed, layout.swapped)
            if _is_day_first(layout.fmt)
            else (layout.swapped, layout.parsed)
        )
        ok_d, ok_m = day != NAT, month != NAT
        proves_day.append(layout.idx[ok_d & ~ok_m])
        proves_month.append(layout.idx[ok_m & ~ok_d])
        ambiguous.append(layout.idx[ok_d & ok_m & (day != month)])
    if not swappable:
        return None
    day_idx = np.concatenate(proves_day)
    month_idx = np.concatenate(proves_month)
    unsure = np.concatenate(ambiguous)
    day_fmt = next((lay.fmt if _is_day_first(lay.fmt) else lay.swapped_fmt) for lay in swappable)
    month_fmt = _swap(str(day_fmt)) or ""
    if len(day_idx) and len(month_idx):
        raise AmbiguousTimestamps(
            f"The timestamp column {column!r} mixes day-first and month-first dates: "
            f"{len(day_idx):,} values can only be day-first (e.g. {_ex(text, day_idx)}) and "
            f"{len(month_idx):,} only month-first (e.g. {_ex(text, month_idx)}). Give "
            f"timestampFormat (e.g. {day_fmt!r} or {month_fmt!r}) to say how to read it.",
            field="timestampFormat",
        )
    if len(day_idx):
        return True
    if len(month_idx):
        return False
    if len(unsure):
        raise AmbiguousTimestamps(
            f"The timestamp column {column!r} is ambiguous: in all {len(unsure):,} of its dates "
            f"that read differently both ways, day and month are 12 or less (e.g. "
            f"{_ex(text, unsure)}), so they read as day-first and as month-first. Give "
            f"timestampFormat, e.g. {day_fmt!r} (day first) or {month_fmt!r} (month first).",
            field="timestampFormat",
        )
    return True  # every value reads the same both ways


def _ex(text: pd.Series, idx: np.ndarray) -> str:
    return ", ".join(repr(str(text.iat[int(i)])) for i in np.sort(idx)[:2])


def _per_value(
    text: pd.Series,
    rest: np.ndarray,
    offset: np.ndarray,
    ints: np.ndarray,
    tz: str,
    dayfirst: bool,
    strict: str | None = None,
) -> bool:
    """pandas' per-value parser (with the column's day/month order) on what no layout read; a
    probe first, so hopeless values are not tried one by one. Whether any value was read.
    `strict` (the column's name): the order is not known, so a value that reads differently
    day-first and month-first is refused."""
    probe, later = rest[:_MIXED_PROBE], rest[_MIXED_PROBE:]
    _fill_mixed(text, probe, offset, ints, tz, dayfirst, strict)
    if not (ints[probe] != NAT).any():
        return False
    for start in range(0, len(later), CHUNK_ROWS):
        _fill_mixed(text, later[start : start + CHUNK_ROWS], offset, ints, tz, dayfirst, strict)
    return True


def _fill_mixed(
    text: pd.Series,
    part: np.ndarray,
    offset: np.ndarray,
    ints: np.ndarray,
    tz: str,
    dayfirst: bool,
    strict: str | None,
) -> None:
    for aware in (True, False):
        sel = part[offset[part] == aware]
        if not len(sel):
            continue
        ints[sel] = _to_us(text.iloc[sel], "mixed", aware, tz, dayfirst=dayfirst)
        if strict is None:
            continue
        other = _to_us(text.iloc[sel], "mixed", aware, tz, dayfirst=not dayfirst)
        differ = sel[(ints[sel] != NAT) & (other != NAT) & (ints[sel] != other)]
        if len(differ):
            raise AmbiguousTimestamps(
                f"The timestamp column {strict!r} is ambiguous: values such as "
                f"{_ex(text, differ)} read differently day-first and month-first, and no value "
                "tells which. Give timestampFormat (e.g. %d/%m/%Y %H:%M or %m/%d/%Y %H:%M).",
                field="timestampFormat",
            )


def _as_text(values: pd.Series) -> pd.Series:
    """The values as strings (missing ones kept missing): an object column may hold anything
    (Parquet nulls, bytes, lists, dicts), which `.str` refuses unless every value is a str."""
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype):
        return values
    if not _is_string(dtype):
        return values.astype("str")
    if pd.api.types.infer_dtype(values, skipna=True) == "string":
        return values
    present = values.notna().to_numpy(dtype=bool)
    return pd.Series(
        [_text_of(v) if keep else "" for v, keep in zip(values.to_numpy(), present, strict=True)],
        index=values.index,
        dtype=object,
    )


def _text_of(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _is_string(dtype: object) -> bool:
    return isinstance(dtype, pd.StringDtype) or dtype == object  # noqa: E721 - numpy dtype


def _to_us(
    values: pd.Series, fmt: str, aware: bool, tz: str = "UTC", *, dayfirst: bool = False
) -> np.ndarray:
    """int64 UTC microseconds; NAT where the value does not parse (or is out of range).

    `aware`: the values carry offsets (converted to UTC); otherwise they are wall times in tz.
    Plain numeric formats go through Arrow's strptime (30 times faster than pandas' on
    bpic2012); the values Arrow may have read more leniently than pandas (a day past the
    month's end rolls over to day 1-3 of the next; %Y takes two digits) are read again by
    pandas, so the result is pandas' strict reading.
    """
    if "%" in fmt and _ARROW_SAFE.fullmatch(fmt) and len(values) > 1_000:
        wall = _arrow_us(values, fmt)
        return wall if "%z" in fmt else _localize_us(wall, tz)
    return _pandas_us(values, fmt, aware, tz, dayfirst=dayfirst)


# formats whose every directive Arrow's strptime reads like pandas (up to the rechecked cases)
_ARROW_SAFE = re.compile(r"(?:[^%]|%[dmYHMSz])+")


def _arrow_us(values: pd.Series, fmt: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        arr = pa.array(pd.Index(values).astype("str"), type=pa.large_string())
        parsed = pc.strptime(arr, format=fmt, unit="us", error_is_null=True)
    except (pa.ArrowException, ValueError, TypeError):
        return _pandas_us(values, fmt, True, "UTC")
    ints = np.asarray(parsed.cast(pa.int64()).fill_null(NAT).to_numpy(zero_copy_only=False))
    ints = ints.astype(np.int64, copy=True)
    ok = ints != NAT
    stamps = ints[ok].view("datetime64[us]")
    days = (stamps - stamps.astype("datetime64[M]")).astype("timedelta64[D]").astype(np.int64)
    years = stamps.astype("datetime64[Y]").astype(np.int64) + 1970
    doubtful = np.flatnonzero(ok)[(days < 3) | (years < 1000)]
    if len(doubtful):
        ints[doubtful] = _pandas_us(values.iloc[doubtful], fmt, True, "UTC")
    return ints


def _localize_us(wall: np.ndarray, tz: str) -> np.ndarray:
    if tz == "UTC":
        return wall
    out = np.full(len(wall), NAT, dtype=np.int64)
    ok = wall != NAT
    out[ok] = _localize(pd.DatetimeIndex(wall[ok].view("datetime64[us]")), tz)
    return out


def _pandas_us(
    values: pd.Series, fmt: str, aware: bool, tz: str = "UTC", *, dayfirst: bool = False
) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parsed = pd.to_datetime(
                pd.Index(values),
                format=fmt,
                utc=aware or tz == "UTC",
                errors="coerce",
                dayfirst=dayfirst,
            )
        except (ValueError, TypeError, OverflowError):
            return np.full(len(values), NAT, dtype=np.int64)
    index = pd.DatetimeIndex(parsed)
    if index.tz is not None:
        return np.asarray(index.tz_convert("UTC").as_unit("us").asi8, dtype=np.int64)
    return _localize(index, tz)


def wall_to_utc_us(wall_us: np.ndarray, tz: str | None) -> np.ndarray:
    """Wall times (int64 microseconds, as if UTC) in zone `tz` as UTC microseconds."""
    if tz is None or tz == "UTC" or not len(wall_us):
        return wall_us
    return _localize(pd.DatetimeIndex(wall_us.astype("datetime64[us]")), tz)


def _localize(index: pd.DatetimeIndex, tz: str) -> np.ndarray:
    """Wall times in `tz` as UTC microseconds. A wall time that occurs twice (the end of summer
    time) is read as its first occurrence; one that does not occur is moved forward."""
    if index.tz is not None:
        return np.asarray(index.tz_convert("UTC").as_unit("us").asi8, dtype=np.int64)
    if tz == "UTC":
        return np.asarray(index.as_unit("us").asi8, dtype=np.int64)
    try:
        local = index.tz_localize(
            tz, ambiguous=np.ones(len(index), dtype=bool), nonexistent="shift_forward"
        )
        return np.asarray(local.tz_convert("UTC").as_unit("us").asi8, dtype=np.int64)
    except (ValueError, OverflowError, OutOfBoundsDatetime):
        return np.full(len(index), NAT, dtype=np.int64)
