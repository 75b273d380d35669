"""Reading an event log file into a raw frame: format sniffing, hostile-input guards, readers.

Helpers of `analysis.eventlog` (import the public names from there). Nothing here validates
records; it only turns bytes into a DataFrame with canonical column names, refusing files that
are not event logs, are corrupt, or are built to exhaust memory or reach outside the file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import tempfile
import unicodedata
import warnings
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.columns import ACTIVITY, CASE, LIFECYCLE, RESOURCE, ROW, TIMESTAMP
from analysis.errors import EventLogError, InvalidParameter
from analysis.eventlog_time import check_timestamp_format, check_timezone
from analysis.progress import Progress

_CHUNK = 1 << 20  # bytes read (and at most produced by zlib) per step
_HEAD = 1 << 16  # bytes used to sniff the format
_RATIO_FREE_BYTES = 8 << 20  # compression ratios are only judged past this much output
_CSV_ROWS_PER_CHUNK = 500_000


@dataclass(frozen=True)
class ColumnMapping:
    """Original column names of the roles (None means "detect it"), and how to read the
    timestamps: `timestamp_format` (strftime; None = decided from the values) and `timezone`
    (IANA name of the zone of values without an offset; None = UTC)."""

    case: str | None = None
    activity: str | None = None
    timestamp: str | None = None
    resource: str | None = None
    lifecycle: str | None = None
    start_timestamp: str | None = None
    timestamp_format: str | None = None
    timezone: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """The four role columns always; the others only when set."""
        out = {
            "caseColumn": self.case,
            "activityColumn": self.activity,
            "timestampColumn": self.timestamp,
            "resourceColumn": self.resource,
        }
        optional = {
            "lifecycleColumn": self.lifecycle,
            "startTimestampColumn": self.start_timestamp,
            "timestampFormat": self.timestamp_format,
            "timezone": self.timezone,
        }
        return out | {k: v for k, v in optional.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, prefix: str = "") -> ColumnMapping:
        """From the API's camelCase fields; blank or absent fields mean "detect" (or the
        default). `prefix` goes before the field names in errors (e.g. "parameters.")."""
        values: dict[str, str | None] = {}
        for key, attr in _MAPPING_FIELDS.items():
            value = (data or {}).get(key)
            if value is not None and not isinstance(value, str):
                what = "a column name" if key.endswith("Column") else "text"
                raise InvalidParameter(f"{key} must be {what} (text).", field=prefix + key)
            values[attr] = (value.strip() or None) if isinstance(value, str) else None
        values["timestamp_format"] = check_timestamp_format(
            values["timestamp_format"], prefix + "timestampFormat"
        )
        if values["timezone"] is not None:
            values["timezone"] = check_timezone(values["timezone"], prefix + "timezone")
        return cls(**values)

    def reading(self, timestamp_format: str | None, timezone: str | None) -> ColumnMapping:
        """This mapping with the given timestamp settings in place of its own (None: keep)."""
        return replace(
            self,
            timestamp_format=timestamp_format or self.timestamp_format,
            timezone=timezone or self.timezone,
        )


_MAPPING_FIELDS = {
    "caseColumn": "case",
    "activityColumn": "activity",
    "timestampColumn": "timestamp",
    "resourceColumn": "resource",
    "lifecycleColumn": "lifecycle",
    "startTimestampColumn": "start_timestamp",
    "timestampFormat": "timestamp_format",
    "timezone": "timezone",
}


@dataclass(frozen=True)
class LoadLimits:
    """Resource bounds for reading one file (defaults suit a 2-core worker with a few GB)."""

    max_file_bytes: int = 2_000_000_000  # on-disk size
    max_uncompressed_bytes: int = 4_000_000_000  # gzip bomb guard, checked while streaming
    max_compression_ratio: float = 200.0  # refused beyond this once past a few MB of output
    max_events: int = 20_000_000
    # CSV columns read: the role columns, then the first others up to this many in all (a
    # 100,000-column file would otherwise take gigabytes; said in `columns_note`)
    max_columns: int = 1_000


@dataclass
class ValidationIssue:
    """One kind of problem found in the records; `resolved` means the records concerned were
    excluded or handled so the analysis is not affected by them."""

    type: str
    count: int
    resolved: bool
    examples: list[str] = field(default_factory=list)  # at most 3, for the reader of a report

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "count": self.count,
            "resolved": self.resolved,
            "examples": list(self.examples),
        }


@dataclass
class RawLog:
    """A log as read, before validation.

    `frame` has CASE, ACTIVITY, TIMESTAMP, (RESOURCE), ROW and the other original columns.
    TIMESTAMP holds values as read: strings for CSV, datetimes for XES and Parquet (XES naive
    values are UTC). `skipped_records` counts records present in the file that the reader could
    not attach to a case (XES events outside a trace); `read_issues` describes them.
    """

    frame: pd.DataFrame
    source_format: str
    mapping: ColumnMapping
    skipped_records: int = 0
    read_issues: list[ValidationIssue] = field(default_factory=list)
    # set when columns of the file were left out (LoadLimits.max_columns)
    columns_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.source_format,
            "records": len(self.frame) + self.skipped_records,
            "columns": [str(c) for c in self.frame.columns if c != ROW],
            "columnMapping": self.mapping.to_dict(),
        }


# --------------------------------------------------------------------------- format sniffing

_BINARY_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (upload the CSV or XES file inside it, or gzip it)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an XZ archive"),
    (b"\x28\xb5\x2f\xfd", "a Zstandard archive"),
    (b"\x7fELF", "an executable"),
    (b"MZ", "a Windows executable"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\xd0\xcf\x11\xe0", "an old Microsoft Office document (save it as CSV)"),
)
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _kind_of(head: bytes) -> str:
    """'gzip' | 'parquet' | 'xml' | 'csv' from the first bytes, or raise unsupported_format."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    for magic, what in _BINARY_MAGIC:
        if head.startswith(magic):
            raise _unsupported(f"The file is {what}, not an event log.")
    if head.startswith(_UTF16_BOMS):
        text = head[2:].decode("utf-16-le" if head[:2] == b"\xff\xfe" else "utf-16-be", "ignore")
        if text.lstrip().startswith("<"):
            raise _unsupported("The XES file is UTF-16 encoded; save it as UTF-8.")
        return "csv"
    stripped = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if stripped.startswith(b"<"):
        return "xml"
    if not _looks_like_text(head):
        raise _unsupported(
            "The file is binary data, not an event log (CSV, XES, XES.GZ or Parquet)."
        )
    return "csv"


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    controls = sum(head.count(bytes([c])) for c in range(32) if c not in (9, 10, 12, 13))
    if controls > max(2, len(head) // 100):
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a character cut by the sniff window is fine; invalid UTF-8 may still be Latin-1 text
        if exc.start < len(head) - 4:
            return _plausible_single_byte_text(head)
    return True


def _plausible_single_byte_text(head: bytes) -> bool:
    # Latin-1 / cp1252 text has mostly ASCII; random bytes have about half above 0x7f
    high = sum(1 for b in head if b >= 0x80)
    return high <= len(head) // 4


def _unsupported(message: str) -> EventLogError:
    return EventLogError(message, field="file", code="unsupported_format")


def _corrupt(message: str) -> EventLogError:
    return EventLogError(message, field="file", code="corrupt_file")


def _too_large(message: str) -> EventLogError:
    return EventLogError(message, field="file", code="too_large")


# --------------------------------------------------------------------------- XML scanning


class _XmlScan:
    """Looks at every decompressed chunk once: refuses DTDs, counts events, keeps the tail.

    A DOCTYPE or ENTITY declaration is refused wherever it appears (entity expansion and
    external entities are the XML attacks; XES never needs a DTD). Counting `<event` lets
    the caller notice a reader that silently dropped events; the tail shows truncation.
    """

    _DECL = re.compile(rb"<!(?:doctype|entity|element|attlist)", re.IGNORECASE)
    _END = re.compile(rb"</log\s*>\s*$")

    def __init__(self) -> None:
        self.events = 0
        self.empty_events = 0  # <event/>: no attribute at all (a boundary split may miss one)
        self.tail = b""
        self._carry = b""
        self.xml: bool | None = None  # decided by the first non-blank byte

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self.xml is None:
            lead = (self._carry + chunk[:64]).removeprefix(b"\xef\xbb\xbf").lstrip()
            if lead:
                self.xml = lead.startswith(b"<")
        # matches across the chunk boundary are looked for in a short edge, so no chunk is
        # copied; 5 carried bytes cannot hold a whole "<event", so none is counted twice
        edge = self._carry + chunk[:9]
        if self.xml and (
            (b"<!" in chunk and self._DECL.search(chunk))
            or (b"<!" in edge and self._DECL.search(edge))
        ):
            raise EventLogError(
                "The XES file declares a DTD or XML entities (<!DOCTYPE>/<!ENTITY>); such "
                "files can expand without bound or read other files, so they are refused.",
                field="file",
                code="unsafe_content",
            )
        self.events += chunk.count(b"<event") + (self._carry[-5:] + chunk[:5]).count(b"<event")
        self.empty_events += len(re.findall(rb"<event\s*/>", chunk))
        self._carry = (self._carry + chunk[-9:])[-9:]
        self.tail = (self.tail + chunk[-4096:])[-4096:]

    def complete(self) -> bool:
        """Whether the document ends with </log> (comments and blanks after it allowed)."""
        tail = self.tail.rstrip()
        while tail.endswith(b"-->"):
            start = tail.rfind(b"<!--")
            if start < 0:
                return False
            tail = tail[:start].rstrip()
        return bool(self._END.search(tail))


def _scan_file(path: Path, scan: _XmlScan, progress: Progress, size: int) -> None:
    done = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK * 4):
            scan.feed(chunk)
            done += len(chunk)
            progress.update(done, size, "Checking the XES file")


# --------------------------------------------------------------------------- gzip


def _gunzip(src: Path, dst: Path, limits: LoadLimits, progress: Progress, scan: _XmlScan) -> int:
    """Stream-decompress src into dst, refusing bombs before they are written; returns bytes.

    Output is produced at most `_CHUNK` bytes per zlib call, so memory stays bounded whatever
    the ratio; concatenated gzip members (valid per RFC 1952) are followed.
    """
    size = src.stat().st_size
    decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
    written = consumed = 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while True:
            data = fin.read(_CHUNK)
            if not data:
                break
            consumed += len(data)
            while data:
                try:
                    out = decomp.decompress(data, _CHUNK)
                except zlib.error:
                    raise _corrupt(
                        "The gzip data is corrupt; the file cannot be decompressed."
                    ) from None
                written += len(out)
                _check_expansion(written, consumed, limits)
                scan.feed(out)
                fout.write(out)
                data = decomp.unconsumed_tail
                if decomp.eof:
                    rest = decomp.unused_data + data
                    if rest.startswith(_GZIP_MAGIC):
                        decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
                        data = rest
                    elif rest.strip(b"\x00"):
                        raise _corrupt("The gzip file has unexpected data after its end.")
                    else:
                        data = b""
            progress.update(consumed, size, "Decompressing")
    if not decomp.eof:
        raise _corrupt("The gzip file is truncated: it ends before the compressed data does.")
    return written


def _check_expansion(written: int, consumed: int, limits: LoadLimits) -> None:
    if written > limits.max_uncompressed_bytes:
        raise _too_large(
            f"The file expands to more than {limits.max_uncompressed_bytes:,} bytes when "
            "decompressed, beyond the allowed size."
        )
    if written > _RATIO_FREE_BYTES and written > limits.max_compression_ratio * max(consumed, 1):
        raise _too_large(
            f"The file expands more than {limits.max_compression_ratio:g} times when "
            "decompressed; it looks like a compression bomb and was refused."
        )


# --------------------------------------------------------------------------- entry point


def read_raw(
    path: str | Path, mapping: ColumnMapping, limits: LoadLimits, progress: Progress
) -> RawLog:
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise EventLogError(
            "The event log file does not exist.", field="file", code="file_not_found"
        ) from None
    if not p.is_file():
        raise EventLogError(
            "The event log path is not a file.", field="file", code="file_not_found"
        )
    if st.st_size > limits.max_file_bytes:
        raise _too_large(
            f"The file has {st.st_size:,} bytes; at most {limits.max_file_bytes:,} are allowed."
        )
    head = _read_head(p)
    if not head.strip():
        raise EventLogError("The file is empty.", field="file", code="empty_file")
    kind = _kind_of(head)
    with tempfile.TemporaryDirectory(prefix="pmops-log-") as tmp:
        scan = _XmlScan()
        source = p
        if kind == "gzip":
            source = Path(tmp) / "decompressed"
            # decompressing is a fifth of reading a gzipped XES (bpic2012: 0.27 of 1.33 s)
            written = _gunzip(p, source, limits, progress.part(0.0, 0.2), scan)
            progress = progress.part(0.2, 1.0)
            inner = _read_head(source)
            if written == 0 or not inner.strip():
                raise EventLogError(
                    "The compressed file is empty.", field="file", code="empty_file"
                )
            kind = _kind_of(inner)
            if kind == "gzip":
                raise _unsupported("The file is compressed twice; gzip it only once.")
        elif kind == "xml":
            _scan_file(p, scan, progress.part(0.0, 0.1), st.st_size)
            progress = progress.part(0.1, 1.0)
        if kind == "xml":
            return _read_xes(source, scan, mapping, limits, progress)
        if kind == "parquet":
            return _read_parquet(source, mapping, limits, progress)
        return _read_csv(source, mapping, limits, progress)


def _read_head(p: Path) -> bytes:
    with open(p, "rb") as fh:
        return fh.read(_HEAD)


# --------------------------------------------------------------------------- XES


def _read_xes(
    path: Path, scan: _XmlScan, mapping: ColumnMapping, limits: LoadLimits, progress: Progress
) -> RawLog:
    if not re.search(rb"<log[\s>/]", _read_head(path)):
        raise _unsupported("The file is XML but not an XES event log (no <log> element).")
    if not scan.complete():
        raise _corrupt("The XES file is truncated or malformed: it does not end with </log>.")
    if scan.events > limits.max_events:
        raise _too_large(
            f"The log has about {scan.events:,} events; at most {limits.max_events:,} are allowed."
        )
    frame = _xes_with_r4pm(path, scan.events, progress)
    if frame is None or len(frame) != scan.events:
        # r4pm stops quietly at some malformations and skips events outside traces; the
        # strict lxml reader of pm4py then decides whether the XML is sound
        frame = _xes_with_pm4py(path, scan.events, progress)
    if len(frame) == 0:
        detail = f" inside a trace (it has {scan.events:,} outside any)" if scan.events else ""
        raise EventLogError(
            f"The XES file contains no events{detail}.", field="file", code="no_valid_events"
        )
    skipped = max(scan.events - len(frame), 0)
    issues = []
    if skipped:
        issues.append(
            ValidationIssue(
                "Event Outside Trace",
                skipped,
                True,
                [f"{skipped:,} <event> elements were not read as part of a trace"],
            )
        )
    try:
        raw = _canonical(frame, "xes", mapping)
    except EventLogError as exc:
        if exc.code == "missing_column" and scan.empty_events:
            _check_xes_keys(frame, mapping, scan)
        raise
    raw.skipped_records, raw.read_issues = skipped, issues
    return raw


def _check_xes_keys(frame: pd.DataFrame, mapping: ColumnMapping, scan: _XmlScan) -> None:
    """An XES with empty <event/> elements whose events carry no activity or no timestamp
    at all: say so (rather than "no activity column"), counting the empty elements."""
    for key, given, what in (
        (ACTIVITY, mapping.activity, "activity (concept:name)"),
        (TIMESTAMP, mapping.timestamp, "timestamp (time:timestamp)"),
    ):
        if given is None and key not in frame.columns:
            empty = (
                f"; {scan.empty_events:,} of its {scan.events:,} <event> elements are empty "
                "(<event/>)"
                if scan.empty_events
                else ""
            )
            raise EventLogError(
                f"No event of the XES file has an {what}{empty}.",
                field="file",
                code="no_valid_events",
            )


def _xes_with_r4pm(path: Path, expected: int, progress: Progress) -> pd.DataFrame | None:
    from r4pm.df import import_xes

    with progress.heartbeat(0, expected, "Parsing XES"):
        try:
            polars_frame, _meta = import_xes(str(path))
        except Exception as exc:  # the Rust reader raises a bare Exception with its reason
            reason = str(exc)
            if "NoTopLevelLog" in reason:
                raise _unsupported(
                    "The file is XML but not an XES event log (no <log> element)."
                ) from None
            if "XMLParsingError" in reason:
                raise _corrupt("The XES file is not well-formed XML.") from None
            return None  # unusual but possibly valid XES: let pm4py try
        except BaseException as exc:
            # the Rust reader panics on some inputs (an empty <event/>); pyo3 raises its
            # PanicException, a BaseException, which must not end the worker: pm4py decides
            if type(exc).__name__ != "PanicException":
                raise
            return None
    if polars_frame.height == 0:
        return polars_frame.to_pandas()
    return _localize(polars_frame.to_pandas())


def _localize(frame: pd.DataFrame) -> pd.DataFrame:
    """r4pm returns UTC instants as naive datetimes: mark them as UTC."""
    for name in frame.columns:
        dtype = frame[name].dtype
        if isinstance(dtype, np.dtype) and dtype.kind == "M":
            frame[name] = frame[name].dt.tz_localize("UTC")
    return frame


def _xes_with_pm4py(path: Path, expected: int, progress: Progress) -> pd.DataFrame:
    from lxml import etree
    from pm4py.objects.conversion.log import converter
    from pm4py.objects.log.importer.xes import importer

    parameters = {"show_progress_bar": False}
    with progress.heartbeat(0, expected, "Parsing XES (strict reader)"):
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                log = importer.apply(
                    str(path), variant=importer.Variants.ITERPARSE, parameters=parameters
                )
                frame = converter.apply(log, variant=converter.Variants.TO_DATA_FRAME)
        except etree.XMLSyntaxError as exc:
            line = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
            raise _corrupt(f"The XES file is not well-formed XML{line}.") from None
        except MemoryError:
            raise _too_large("The XES file is too large to read in memory.") from None
        except Exception:
            raise _corrupt("The XES file could not be read as an event log.") from None
    if not isinstance(frame, pd.DataFrame):
        raise _corrupt("The XES file could not be read as an event log.")
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.DatetimeTZDtype):
            frame[name] = frame[name].dt.tz_convert("UTC")
    return frame.reset_index(drop=True)


# --------------------------------------------------------------------------- Parquet


def _read_parquet(
    path: Path, mapping: ColumnMapping, limits: LoadLimits, progress: Progress
) -> RawLog:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        meta = pf.metadata
    except (pa.ArrowException, OSError):
        raise _corrupt("The Parquet file is corrupt or truncated.") from None
    if meta.num_rows > limits.max_events:
        raise _too_large(
            f"The log has {meta.num_rows:,} rows; at most {limits.max_events:,} are allowed."
        )
    declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if declared > limits.max_uncompressed_bytes:
        raise _too_large(
            f"The Parquet data expands to {declared:,} bytes; at most "
            f"{limits.max_uncompressed_bytes:,} are allowed."
        )
    if meta.num_rows == 0:
        raise EventLogError("The Parquet file has no rows.", field="file", code="no_valid_events")
    names = [str(n) for n in pf.schema_arrow.names]
    columns, note = _capped_names(names, mapping, limits)
    parts = []
    try:
        for i in range(meta.num_row_groups):
            parts.append(pf.read_row_group(i, columns=columns))
            progress.update(i + 1, meta.num_row_groups, "Reading Parquet")
        table = _binary_as_text(pa.concat_tables(parts))
        frame = table.to_pandas()
    except pa.ArrowException:
        raise _corrupt("The Parquet file is corrupt or uses unsupported types.") from None
    del parts, table
    frame.columns = pd.Index(_unique_names([str(c) for c in frame.columns]))
    for name in frame.columns:
        dtype = frame[name].dtype
        nested = isinstance(dtype, np.dtype) and dtype.kind == "O"
        if nested and pd.api.types.infer_dtype(frame[name], skipna=True) != "string":
            frame[name] = frame[name].map(_hashable)  # structs, lists, maps: their text
        if isinstance(dtype, pd.DatetimeTZDtype):
            frame[name] = frame[name].dt.tz_convert("UTC")
    raw = _canonical(frame, "parquet", mapping)
    raw.columns_note = note
    return raw


def _hashable(value: object) -> object:
    """A nested Parquet value (dict, list, array) as its text, so it can be grouped and compared."""
    if isinstance(value, dict | list | tuple | np.ndarray):
        return str(value.tolist() if isinstance(value, np.ndarray) else value)
    return value


def _binary_as_text(table: Any) -> Any:
    """Binary columns as UTF-8 text (undecodable bytes replaced): pandas' text conversions
    raise UnicodeDecodeError on bytes that are not UTF-8."""
    import pyarrow as pa

    for i, fld in enumerate(table.schema):
        kind = fld.type
        if (
            pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind)
            or pa.types.is_fixed_size_binary(kind)
        ):
            text = pa.array(
                [
                    None if v is None else v.decode("utf-8", "replace")
                    for v in table.column(i).to_pylist()
                ],
                pa.large_string(),
            )
            table = table.set_column(i, fld.name, text)
    return table


# --------------------------------------------------------------------------- CSV

_DELIMITERS = (",", ";", "\t", "|")


def _csv_encoding(sample: bytes) -> str:
    if sample.startswith(_UTF16_BOMS):
        return "utf-16"
    try:
        sample.decode("utf-8")
        return "utf-8-sig"
    except UnicodeDecodeError as exc:
        if exc.start >= len(sample) - 4:  # a character cut by the sample window
            return "utf-8-sig"
    try:
        sample.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _sniff_delimiter(text: str) -> str:
    """The candidate that splits the first lines into the most, consistently many, fields."""
    cut = text.rfind("\n")
    if cut > 0:
        text = text[:cut]
    best, best_score = ",", (0.0, 0)
    for delim in _DELIMITERS:
        try:
            rows = [
                len(r)
                for r, _ in zip(
                    csv.reader(io.StringIO(text), delimiter=delim), range(50), strict=False
                )
                if r
            ]
        except csv.Error:
            continue
        if not rows or rows[0] < 2:
            continue
        consistent = sum(1 for n in rows if n == rows[0]) / len(rows)
        score = (round(consistent, 2), rows[0])
        if score > best_score:
            best, best_score = delim, score
    return best


def _read_csv(path: Path, mapping: ColumnMapping, limits: LoadLimits, progress: Progress) -> RawLog:
    with open(path, "rb") as fh:
        sample = fh.read(_CHUNK)
    encoding = _csv_encoding(sample)
    text = sample.decode("utf-16" if encoding == "utf-16" else encoding, "ignore")
    delimiter = _sniff_delimiter(text.removeprefix("\ufeff"))
    size = path.stat().st_size
    fallbacks = {"utf-8-sig": "cp1252", "cp1252": "latin-1"}
    while True:
        try:
            usecols, note = _capped_columns(path, delimiter, encoding, mapping, limits)
            frame = _csv_frame(path, delimiter, encoding, limits, progress, size, usecols)
            break
        except UnicodeDecodeError:
            if encoding not in fallbacks:
                raise _unsupported("The CSV file's text encoding could not be read.") from None
            encoding = fallbacks[encoding]
    if len(frame) > limits.max_events:
        raise _too_large(f"The log has more than {limits.max_events:,} rows; that is the limit.")
    if len(frame) == 0:
        raise EventLogError(
            "The CSV file has a header but no data rows.", field="file", code="no_valid_events"
        )
    raw = _canonical(frame, "csv", mapping)
    raw.columns_note = note
    return raw


def _capped_columns(
    path: Path, delimiter: str, encoding: str, mapping: ColumnMapping, limits: LoadLimits
) -> tuple[list[int] | None, str]:
    """Positions of the columns to read when the header has more than `limits.max_columns`
    (the role columns, then the first others), with the sentence saying so; (None, "") else."""
    with open(path, encoding=encoding, newline="") as fh:
        try:
            header = next(csv.reader(fh, delimiter=delimiter), [])
        except csv.Error:  # a header field past csv's limit (131,072 characters)
            raise _corrupt(
                f"The CSV header is malformed: a column name is longer than "
                f"{csv.field_size_limit():,} characters (or a quote in it is never closed)."
            ) from None
    if len(header) <= limits.max_columns:
        return None, ""
    header = [h.removeprefix("\ufeff") for h in header]
    keep = _kept_positions(header, mapping, limits)
    return keep, _columns_note(len(header), len(keep))


def _kept_positions(header: list[str], mapping: ColumnMapping, limits: LoadLimits) -> list[int]:
    """The role columns wherever they are, then the first others, max_columns in all."""
    resolved = resolve_mapping(header, mapping)
    roles = [getattr(resolved, role) for role in _ROLE_COLUMN]
    keep = {header.index(r) for r in roles if isinstance(r, str) and r in header}
    for i in range(len(header)):
        if len(keep) >= limits.max_columns:
            break
        keep.add(i)
    return sorted(keep)


def _columns_note(total: int, kept: int) -> str:
    return (
        f"Columns capped: the file has {total:,} columns; the role columns and the first "
        f"others, {kept:,} in all, were read, the other {total - kept:,} left out (bounded "
        "memory on wide files)."
    )


def _capped_names(
    names: list[str], mapping: ColumnMapping, limits: LoadLimits
) -> tuple[list[str] | None, str]:
    """The column names to read from a Parquet file wider than max_columns, with the note."""
    if len(names) <= limits.max_columns:
        return None, ""
    keep = _kept_positions(names, mapping, limits)
    return [names[i] for i in keep], _columns_note(len(names), len(keep))


def _csv_frame(
    path: Path,
    delimiter: str,
    encoding: str,
    limits: LoadLimits,
    progress: Progress,
    size: int,
    usecols: list[int] | None = None,
) -> pd.DataFrame:
    chunks: list[pd.DataFrame] = []
    rows = 0
    try:
        with (
            open(path, "rb") as fh,
            pd.read_csv(
                fh,
                sep=delimiter,
                usecols=usecols,
                dtype=str,
                keep_default_na=False,  # a case named "NA" (sepsis) is a case, not a gap
                na_filter=False,
                encoding=encoding,
                engine="c",
                nrows=limits.max_events + 1,
                chunksize=_CSV_ROWS_PER_CHUNK,
            ) as reader,
        ):
            for chunk in reader:
                chunks.append(chunk)
                rows += len(chunk)
                progress.update(min(_tell(fh), size), size, f"Reading CSV ({rows:,} rows)")
    except pd.errors.EmptyDataError:
        raise EventLogError("The CSV file is empty.", field="file", code="empty_file") from None
    except pd.errors.ParserError as exc:
        raise _corrupt(_csv_problem(str(exc))) from None
    except MemoryError:
        raise _too_large("The CSV file is too large to read in memory.") from None
    if len(chunks) == 1:
        return chunks[0]
    frame = pd.concat(chunks, ignore_index=True)
    chunks.clear()
    return frame


def _tell(fh: io.BufferedReader) -> int:
    try:
        return fh.tell()
    except OSError:
        return 0


def _csv_problem(message: str) -> str:
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if fields:
        expected, line, saw = fields.groups()
        return f"CSV line {line} has {saw} fields where the header has {expected}."
    if "EOF inside string" in message:
        row = re.search(r"row (\d+)", message)
        where = f" (starting at row {row.group(1)})" if row else ""
        return f"The CSV file has a quoted value that is never closed{where}."
    return "The CSV file is malformed and cannot be parsed."


# --------------------------------------------------------------------------- columns

# Header names recognised per role, in order of preference (compared after _norm: case,
# accents, full-width forms and separators ignored). English, German, French, Spanish, Dutch,
# Japanese; docs/analysis.md lists them. Only names that mean the role in any log are here
# ("Status" is not a lifecycle: it is often an order's or a ticket's state).
_CANDIDATES: dict[str, tuple[str, ...]] = {
    "case": (
        "case:concept:name",
        "case id",
        "caseid",
        "case",
        "case name",
        "case key",
        "case number",
        "case no",
        "trace id",
        "traceid",
        "trace",
        "process instance",
        "process instance id",
        "instance id",
        "instance",
        "ticket id",
        "order id",
        # de
        "fall",
        "fall id",
        "fallid",
        "fallnummer",
        "fall nr",
        "vorgang",
        "vorgang id",
        "vorgangs id",
        "vorgangsnummer",
        "prozessinstanz",
        # fr
        "dossier",
        "cas",
        "id cas",
        "id du cas",
        "identifiant du cas",
        "numero de dossier",
        "id dossier",
        # es
        "caso",
        "id caso",
        "id de caso",
        "id del caso",
        "numero de caso",
        "expediente",
        # nl
        "zaak",
        "zaak id",
        "zaakid",
        "zaaknummer",
        "casus",
        "casus id",
        # ja
        "ケースid",
        "ケース",
        "ケース番号",
        "案件id",
        "案件",
        "案件番号",
    ),
    "activity": (
        "concept:name",
        "activity",
        "activity name",
        "activity id",
        "activityname",
        "event",
        "event name",
        "eventname",
        "task",
        "task name",
        "action",
        "operation",
        "step",
        # de
        "aktivität",
        "aktivitaet",
        "aktivitätsname",
        "tätigkeit",
        "taetigkeit",
        "ereignis",
        "aufgabe",
        # fr
        "activité",
        "nom activité",
        "tâche",
        "événement",
        "étape",
        # es
        "actividad",
        "nombre actividad",
        "nombre de actividad",
        "tarea",
        "evento",
        # nl
        "activiteit",
        "activiteitnaam",
        "taak",
        "gebeurtenis",
        # ja
        "アクティビティ",
        "アクティビティ名",
        "活動",
        "活動名",
        "作業",
        "イベント",
    ),
    "timestamp": (
        "time:timestamp",
        "timestamp",
        "complete timestamp",
        "completion timestamp",
        "end timestamp",
        "end time",
        "endtime",
        "completion time",
        "complete time",
        "event time",
        "time",
        "datetime",
        "date time",
        "date",
        # de
        "zeitstempel",
        "endzeit",
        "endzeitpunkt",
        "abschlusszeit",
        "zeitpunkt",
        "datum",
        "datum uhrzeit",
        # fr
        "horodatage",
        "date de fin",
        "heure de fin",
        "date heure",
        # es
        "marca de tiempo",
        "marca temporal",
        "fecha fin",
        "fecha de fin",
        "hora de fin",
        "fecha hora",
        "fecha y hora",
        "fecha",
        # nl
        "tijdstempel",
        "eindtijd",
        "tijdstip",
        "datum tijd",
        # ja
        "タイムスタンプ",
        "終了時刻",
        "終了日時",
        "完了時刻",
        "完了日時",
        "日時",
        "時刻",
        "日付",
    ),
    "start_timestamp": (
        "start timestamp",
        "start time",
        "starttime",
        "start date",
        "start",
        # de
        "startzeit",
        "startzeitpunkt",
        "beginn",
        # fr
        "date de debut",
        "heure de debut",
        "debut",
        # es
        "fecha inicio",
        "fecha de inicio",
        "hora de inicio",
        "inicio",
        # nl
        "starttijd",
        "begintijd",
        # ja
        "開始時刻",
        "開始日時",
        "開始",
    ),
    "resource": (
        "org:resource",
        "resource",
        "user",
        "user id",
        "performer",
        "executor",
        "agent",
        "employee",
        "actor",
        # de
        "ressource",
        "bearbeiter",
        "sachbearbeiter",
        "mitarbeiter",
        "benutzer",
        # fr
        "utilisateur",
        "acteur",
        "employé",
        # es
        "recurso",
        "usuario",
        "empleado",
        "responsable",
        # nl
        "medewerker",
        "behandelaar",
        "gebruiker",
        "uitvoerder",
        # ja
        "リソース",
        "担当者",
        "担当",
        "作業者",
        "実行者",
        "ユーザー",
        # a group or role stands in for the resource only when no language names one
        "org:group",
        "group",
        "org:role",
        "role",
    ),
    "lifecycle": (
        "lifecycle:transition",
        "lifecycle",
        "lifecycle transition",
        "lebenszyklus",
        "cycle de vie",
        "ciclo de vida",
        "levenscyclus",
        "ライフサイクル",
    ),
}
_FIELD = {
    "case": "caseColumn",
    "activity": "activityColumn",
    "timestamp": "timestampColumn",
    "resource": "resourceColumn",
    "lifecycle": "lifecycleColumn",
    "start_timestamp": "startTimestampColumn",
}
_ROLE_COLUMN = {
    "case": CASE,
    "activity": ACTIVITY,
    "timestamp": TIMESTAMP,
    "resource": RESOURCE,
    "lifecycle": LIFECYCLE,
}
# XES standard lifecycle transitions; a detected lifecycle column must hold mostly these
_LIFECYCLE_VALUES = frozenset(
    (
        "schedule",
        "assign",
        "withdraw",
        "reassign",
        "start",
        "suspend",
        "resume",
        "pi_abort",
        "ate_abort",
        "complete",
        "autoskip",
        "manualskip",
        "unknown",
    )
)


def _norm(name: str) -> str:
    """Case, accents (Latin diacritics only: Japanese voicing marks stay), full-width forms
    and separators ignored."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", str(name)).casefold())
    text = unicodedata.normalize("NFC", "".join(c for c in text if not "\u0300" <= c <= "\u036f"))
    return re.sub(r"[\s_\-.'’]+", " ", text.strip()).strip()


_NORM_CANDIDATES = {role: tuple(_norm(n) for n in names) for role, names in _CANDIDATES.items()}


def resolve_mapping(
    columns: list[str], mapping: ColumnMapping, frame: pd.DataFrame | None = None
) -> ColumnMapping:
    """Original column of each role: explicit names first (exact, then ignoring case, accents
    and separators), then the first known header of the role that is present and not taken.
    A detected lifecycle column must hold mostly XES lifecycle values (when `frame` is given);
    a start-timestamp column alone serves as the timestamp."""
    by_norm: dict[str, str] = {}
    for c in columns:
        by_norm.setdefault(_norm(c), c)
    resolved: dict[str, str | None] = {}
    taken: set[str] = set()
    for role in _CANDIDATES:
        wanted = getattr(mapping, role)
        if wanted is None:
            continue
        found = wanted if wanted in columns else by_norm.get(_norm(wanted))
        if found is None:
            raise EventLogError(
                f"The column {wanted!r} given as {_FIELD[role]} is not in the file "
                f"(columns: {_column_list(columns)}).",
                field=_FIELD[role],
                code="missing_column",
            )
        if found in taken:
            other = next(r for r in _CANDIDATES if resolved.get(r) == found)
            raise InvalidParameter(
                f"The column {found!r} cannot be both {_FIELD[other]} and {_FIELD[role]}.",
                field=_FIELD[role],
            )
        resolved[role] = found
        taken.add(found)
    for role, names in _NORM_CANDIDATES.items():
        if role in resolved:
            continue
        resolved[role] = None
        for n in names:
            if n not in by_norm or by_norm[n] in taken:
                continue
            if (
                role == "lifecycle"
                and n != "lifecycle:transition"
                and frame is not None
                and not _lifecycle_like(frame[by_norm[n]])
            ):
                continue
            resolved[role] = by_norm[n]
            taken.add(by_norm[n])
            break
    if resolved["timestamp"] is None and resolved["start_timestamp"] is not None:
        resolved["timestamp"], resolved["start_timestamp"] = resolved["start_timestamp"], None
    for role in ("case", "activity", "timestamp"):
        if resolved[role] is None:
            raise EventLogError(
                f"No {role} column was found (columns: {_column_list(columns)}); "
                f"name it with {_FIELD[role]}.",
                field=_FIELD[role],
                code="missing_column",
            )
    return ColumnMapping(
        **resolved, timestamp_format=mapping.timestamp_format, timezone=mapping.timezone
    )


def _lifecycle_like(values: pd.Series) -> bool:
    text = values.astype("str").str.strip().str.casefold()
    text = text[text != ""]
    return len(text) > 0 and float(text.isin(_LIFECYCLE_VALUES).mean()) >= 0.9


def _column_list(columns: list[str], limit: int = 12) -> str:
    shown = ", ".join(repr(str(c)) for c in columns[:limit])
    return shown + (f", … ({len(columns)} in all)" if len(columns) > limit else "")


def _canonical(frame: pd.DataFrame, source_format: str, mapping: ColumnMapping) -> RawLog:
    """Rename the role columns to the canonical names and add ROW (file order).

    Separate start and end timestamp columns (and no lifecycle column) make two events of each
    row: a `start` at its start time (when it has one) and a `complete` at its end time, as an
    XES log records them. Lifecycle values are trimmed, and the XES standard ones lower-cased.
    """
    columns = _unique_names([str(c) for c in frame.columns])
    frame.columns = pd.Index(columns)
    resolved = resolve_mapping(columns, mapping, frame)
    if source_format == "xes" and mapping.start_timestamp is None:
        # XES records starts as lifecycle events; an attribute named like a start is not one
        resolved = replace(resolved, start_timestamp=None)
    split = resolved.start_timestamp is not None and resolved.lifecycle is None
    if split and _same_times(frame[resolved.start_timestamp], frame[resolved.timestamp]):
        split = False  # start equals end in every row: one event per row
        resolved = replace(resolved, start_timestamp=None)
    renames: dict[str, str] = {}
    for role, canonical in _ROLE_COLUMN.items():
        original = getattr(resolved, role)
        if original is not None and original != canonical:
            renames[original] = canonical
    # an unmapped column already bearing a canonical name keeps its data under a new name
    targets = set(renames.values()) | {ROW} | ({LIFECYCLE} if split else set())
    for c in columns:
        if c in targets and c not in renames:
            renames[c] = _free_name(f"{c} (original)", columns)
    if renames:
        frame = frame.rename(columns=renames)
    start_col = renames.get(str(resolved.start_timestamp), resolved.start_timestamp)
    if split and start_col is not None:
        frame = _start_and_complete(frame, start_col)
    else:
        frame[ROW] = np.arange(len(frame), dtype=np.int64)
    if LIFECYCLE in frame.columns and resolved.lifecycle not in (None, LIFECYCLE):
        frame[LIFECYCLE] = _lifecycle_values(frame[LIFECYCLE])
    return RawLog(frame=frame, source_format=source_format, mapping=resolved)


def _same_times(start: pd.Series, end: pd.Series) -> bool:
    a = start.astype("str").str.strip().to_numpy()
    b = end.astype("str").str.strip().to_numpy()
    blank = (a == "") | (a == "nan") | (a == "NaT") | (a == "None")
    return bool(((a == b) | blank).all())


def _start_and_complete(frame: pd.DataFrame, start_col: str) -> pd.DataFrame:
    """Each row as a complete event at its end time, preceded by a start event at its start
    time when it has one; ROW numbers the events (start 2i, complete 2i + 1)."""
    n = len(frame)
    start_values = frame[start_col]
    text = start_values.astype("str").str.strip()
    has_start = (start_values.notna() & ~text.isin(["", "nan", "NaT", "None"])).to_numpy(dtype=bool)
    complete = frame.copy()
    complete[LIFECYCLE] = "complete"
    complete[ROW] = np.arange(n, dtype=np.int64) * 2 + 1
    starts = frame.loc[has_start].copy()
    starts[TIMESTAMP] = starts[start_col]
    starts[LIFECYCLE] = "start"
    starts[ROW] = np.flatnonzero(has_start).astype(np.int64) * 2
    both = pd.concat([starts, complete], ignore_index=True)
    both.sort_values(ROW, inplace=True, kind="stable")
    both.reset_index(drop=True, inplace=True)
    return both


def _lifecycle_values(values: pd.Series) -> pd.Series:
    text = values.astype("str").str.strip()
    folded = text.str.casefold()
    return text.where(~folded.isin(_LIFECYCLE_VALUES), folded)


def _free_name(name: str, taken: list[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name} {n}", n + 1
    return candidate


def _unique_names(names: list[str]) -> list[str]:
    """Column names made unique as pandas reads a CSV header ("a", "a.1"): a Parquet file may
    name two columns alike, and a frame with a repeated name answers a table for a column."""
    seen: set[str] = set()
    unique = []
    for name in names:
        candidate, n = name, 1
        while candidate in seen:
            candidate, n = f"{name}.{n}", n + 1
        seen.add(candidate)
        unique.append(candidate)
    return unique
