"""Hypothesis strategies for hostile event-log files: structured-but-broken CSV, XES and Parquet,
their gzip (whole, truncated, bombs within limits) and plain random bytes (issue #16).

Each strategy draws the bytes of one file. tests/analysis/test_fuzz_loader.py feeds them to the
loader the upload uses; tests/api/test_fuzz_upload.py uploads a few through the app.
"""

from __future__ import annotations

import gzip
import io
import zlib
from typing import Any

from hypothesis import strategies as st

# the names resolve_mapping recognises, so a fuzzed header often reaches the value checks
ROLE_NAMES = (
    "case_id",
    "case:concept:name",
    "CaseID",
    "activity",
    "concept:name",
    "Activity",
    "timestamp",
    "time:timestamp",
    "Timestamp",
    "start_timestamp",
    "resource",
    "org:resource",
    "lifecycle:transition",
    "",
    "case_id",  # a duplicate header
)

TIMESTAMPS = (
    "2024-01-02T03:04:05Z",
    "2024-01-02 03:04:05",
    "2024-01-02T03:04:05+09:00",
    "2024-01-02T03:04:05-05:00",
    "02/01/2024 03:04",
    "01/02/2024 03:04:05 PM",
    "2.1.2024 03:04",
    "9999-12-31",
    "9999-12-31T23:59:59.999999+14:00",
    "0000-00-00",
    "0000-00-00 00:00:00",
    "0001-01-01T00:00:00-14:00",
    "1677-09-21",
    "2262-04-12",
    "1970-01-01",
    "-1",
    "0",
    "1e308",
    "nan",
    "inf",
    "1704164645",
    "1704164645000",
    "1704164645000000000",
    "99999999999999999999999",
    "2024-13-45",
    "2024-02-30T25:61:61",
    "24:00",
    "Jan 2 2024",
    "yesterday",
    "",
    "NULL",
    "\x00",
    "T",
    "2024-01-02T03:04:05+99:99",
    "2024-01-02T03:04:05 Europe/Nowhere",
)

_cell_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12
) | st.sampled_from(TIMESTAMPS)
_cell = st.one_of(
    _cell_text,
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(('"', '""', '"a,b"', "\n", "\r", "=1+1", "\x00", "\ufeff")),
    st.integers(min_value=1_000, max_value=200_000).map(lambda n: "x" * n),  # a huge field
)


_CASES = ("c1", "c2", "3", "", " ", "c1 ", "NULL", "nan", "-0", "1e9")
_ACTIVITIES = ("a", "b", "Start", "", "=cmd|' /C calc'!A0", "@SUM(1)", "\u65e5\u672c", "nan")


def _timestamp_text(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(st.sampled_from(TIMESTAMPS))
    moment = draw(st.datetimes(timezones=st.none() | st.timezones()))
    fmt = draw(
        st.sampled_from(
            (
                "iso",
                "%Y-%m-%d %H:%M:%S",
                "%d/%m/%Y %H:%M",
                "%m/%d/%Y %I:%M %p",
                "%d.%m.%Y",
                "%Y%m%d%H%M%S",
                "epoch",
            )
        )
    )
    if fmt == "iso":
        return moment.isoformat()
    if fmt == "epoch":
        return str(int(moment.timestamp() if moment.tzinfo else moment.toordinal() * 86400))
    return moment.strftime(fmt)


def _role_cell(draw: st.DrawFn, role: str) -> str:
    """A cell for a column of this role: mostly plausible, sometimes anything."""
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        return draw(_cell)
    if role == "case":
        return draw(st.sampled_from(_CASES))
    if role == "activity":
        return draw(st.sampled_from(_ACTIVITIES))
    if role == "timestamp":
        return _timestamp_text(draw)
    return draw(_cell_text)


_HEADERS = {
    "case": ("case_id", "case:concept:name", "CaseID", "Case ID", "case"),
    "activity": ("activity", "concept:name", "Activity", "event"),
    "timestamp": ("timestamp", "time:timestamp", "Timestamp", "end_timestamp"),
    "start": ("start_timestamp", "start_time"),
    "resource": ("resource", "org:resource"),
    "lifecycle": ("lifecycle:transition", "lifecycle"),
    "other": ("cost", "", "case_id", "activity", "x"),
}


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """A CSV with recognised (or random) headers, random delimiters, quoting and hostile cells:
    mostly a plausible log with broken values, sometimes broken structure."""
    roles = draw(
        st.lists(st.sampled_from(tuple(_HEADERS)), min_size=1, max_size=6)
        | st.just(["case", "activity", "timestamp"])
        | st.permutations(["case", "activity", "timestamp", "resource", "start", "other"])
    )
    header = [
        draw(st.sampled_from(_HEADERS[r]) | (st.sampled_from(ROLE_NAMES) | _cell_text))
        if draw(st.integers(min_value=0, max_value=7)) == 0
        else draw(st.sampled_from(_HEADERS[r]))
        for r in roles
    ]
    ragged = draw(st.integers(min_value=0, max_value=7)) == 0
    rows = [
        [_role_cell(draw, r) for r in roles] + (draw(st.lists(_cell, max_size=2)) if ragged else [])
        for _ in range(draw(st.integers(min_value=0, max_value=12)))
    ]
    delimiter = draw(st.sampled_from((",", ",", ";", "\t", "|", " ", ":", "")))
    quote = draw(st.sampled_from(("minimal", "all", "none")))

    def field(cell: str) -> str:
        needs = any(ch in cell for ch in (delimiter or ",", '"', "\n", "\r"))
        if quote == "all" or (quote == "minimal" and needs):
            return '"' + cell.replace('"', '""') + '"'
        return cell

    newline = draw(st.sampled_from(("\n", "\r\n", "\r")))
    text = newline.join((delimiter or ",").join(field(c) for c in r) for r in [header, *rows])
    encoding = draw(st.sampled_from(("utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252")))
    data = text.encode(encoding, errors="replace")
    # invalid UTF-8 / NULs spliced in somewhere
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        junk = draw(st.sampled_from((b"\xff\xfe\xfd", b"\x00", b"\xc3", b"\xed\xa0\x80", b"\x80")))
        at = draw(st.integers(min_value=0, max_value=len(data)))
        data = data[:at] + junk + data[at:]
    return data


_XES_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<log xes.version="1.0" xmlns="http://www.xes-standard.org/">\n'
)
_XES_ATTRS = (
    '<string key="concept:name" value="{v}"/>',
    '<date key="time:timestamp" value="{v}"/>',
    '<string key="org:resource" value="{v}"/>',
    '<string key="lifecycle:transition" value="{v}"/>',
    '<int key="cost" value="{v}"/>',
    '<float key="amount" value="{v}"/>',
    '<boolean key="flag" value="{v}"/>',
    '<id key="ident" value="{v}"/>',
    '<list key="l"><values><string key="x" value="{v}"/></values></list>',
    '<container key="c"><string key="x" value="{v}"/></container>',
    '<string key="" value="{v}"/>',
    '<string value="{v}"/>',
    '<date key="time:timestamp"/>',
    "<garbage>{v}</garbage>",
    "<event>{v}</event>",
    '<trace><string key="concept:name" value="{v}"/></trace>',
    "{v}",
)
_xml_value = st.sampled_from(TIMESTAMPS) | st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=10
).map(lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;"))


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


@st.composite
def _xes_event(draw: st.DrawFn) -> str:
    shape = draw(st.integers(min_value=0, max_value=9))
    if shape == 0:
        return "<event/>"
    attrs = []
    if shape >= 4:  # a plausible event: an activity and a timestamp, maybe more
        activity = _xml_escape(draw(st.sampled_from(_ACTIVITIES)))
        attrs.append(f'<string key="concept:name" value="{activity}"/>')
        attrs.append(f'<date key="time:timestamp" value="{_xml_escape(_timestamp_text(draw))}"/>')
    attrs += [
        a.format(v=draw(_xml_value))
        for a in draw(st.lists(st.sampled_from(_XES_ATTRS), max_size=3))
    ]
    return "<event>" + "".join(draw(st.permutations(attrs))) + "</event>"


@st.composite
def xes_files(draw: st.DrawFn) -> bytes:
    """A valid XES skeleton with mutated events: empty, missing keys, bad dates, stray tags,
    events outside traces, and sometimes cut short."""
    traces = []
    for i in range(draw(st.integers(min_value=0, max_value=4))):
        case = _xml_escape(draw(st.sampled_from((f"c{i}", *_CASES))))
        name = draw(
            st.sampled_from(
                ("", f'<string key="concept:name" value="{case}"/>')
                + (f'<string key="concept:name" value="{case}"/>',) * 3
            )
        )
        events = "".join(draw(st.lists(_xes_event(), max_size=5)))
        traces.append(f"<trace>{name}{events}</trace>")
    outside = "".join(draw(st.lists(_xes_event(), max_size=2)))
    body = "".join(traces) + outside
    data = _XES_HEAD + body.encode() + b"</log>\n"
    cut = draw(st.sampled_from(("whole", "whole", "truncate", "bytes")))
    if cut == "truncate":
        data = data[: draw(st.integers(min_value=1, max_value=len(data)))]
    elif cut == "bytes":
        at = draw(st.integers(min_value=0, max_value=len(data)))
        data = data[:at] + draw(st.binary(max_size=8)) + data[at:]
    return data


def _parquet_column(draw: st.DrawFn, n: int) -> Any:
    import datetime as dt

    import pyarrow as pa

    kind = draw(
        st.sampled_from(
            (
                "text",
                "null",
                "binary",
                "list",
                "ts_tz",
                "ts_naive",
                "int",
                "uint",
                "float",
                "date",
                "bool",
                "dict",
                "struct",
                "decimal",
                "duration",
            )
        )
    )
    if kind == "text":
        return pa.array(draw(st.lists(_cell_text | st.none(), min_size=n, max_size=n)))
    if kind == "null":
        return pa.nulls(n)
    if kind == "binary":
        return pa.array(draw(st.lists(st.binary(max_size=6), min_size=n, max_size=n)), pa.binary())
    if kind == "list":
        return pa.array(
            draw(st.lists(st.lists(st.integers(0, 9), max_size=3), min_size=n, max_size=n))
        )
    if kind in ("ts_tz", "ts_naive", "duration"):
        unit = draw(st.sampled_from(("s", "ms", "us", "ns")))
        bound = 2**62 if unit != "s" else 2**40
        values = draw(st.lists(st.integers(-bound, bound) | st.none(), min_size=n, max_size=n))
        if kind == "duration":
            return pa.array(values, pa.duration(unit))
        tz = draw(st.sampled_from(("UTC", "Asia/Tokyo", "+05:30", "America/New_York")))
        return pa.array(values, pa.timestamp(unit, tz=tz if kind == "ts_tz" else None))
    if kind == "int":
        return pa.array(
            draw(st.lists(st.integers(-(2**63), 2**63 - 1) | st.none(), min_size=n, max_size=n)),
            pa.int64(),
        )
    if kind == "uint":
        return pa.array(
            draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n)), pa.uint64()
        )
    if kind == "float":
        return pa.array(draw(st.lists(st.floats() | st.none(), min_size=n, max_size=n)))
    if kind == "date":
        return pa.array(draw(st.lists(st.dates() | st.none(), min_size=n, max_size=n)), pa.date32())
    if kind == "bool":
        return pa.array(draw(st.lists(st.booleans() | st.none(), min_size=n, max_size=n)))
    if kind == "dict":
        return pa.array(
            draw(st.lists(st.sampled_from(("a", "b")), min_size=n, max_size=n))
        ).dictionary_encode()
    if kind == "struct":
        return pa.array([{"x": i, "y": str(i)} for i in range(n)])
    import decimal

    return (
        pa.array([decimal.Decimal(i).scaleb(-3) for i in range(n)], pa.decimal128(38, 10))
        if draw(st.booleans())
        else pa.array([dt.time(1, 2)] * n)
    )


@st.composite
def parquet_files(draw: st.DrawFn) -> bytes:
    """A Parquet file of odd dtypes (all-null, binary, nested lists, tz timestamps, overflow),
    under recognised or random column names; sometimes cut short."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = draw(st.integers(min_value=0, max_value=6))
    roles = draw(
        st.lists(st.sampled_from(tuple(_HEADERS)), min_size=1, max_size=5)
        | st.just(["case", "activity", "timestamp"])
        | st.just(["case", "activity", "timestamp", "start", "other"])
    )
    names = [
        draw(st.sampled_from(ROLE_NAMES) | _cell_text)
        if draw(st.integers(min_value=0, max_value=7)) == 0
        else draw(st.sampled_from(_HEADERS[r]))
        for r in roles
    ]
    columns = []
    for role in roles:
        plausible = draw(st.integers(min_value=0, max_value=3)) > 0
        if plausible and role in ("case", "activity"):
            pool = _CASES if role == "case" else _ACTIVITIES
            columns.append(pa.array([draw(st.sampled_from(pool)) for _ in range(n)]))
        elif plausible and role in ("timestamp", "start") and draw(st.booleans()):
            columns.append(pa.array([_timestamp_text(draw) for _ in range(n)]))
        else:
            columns.append(_parquet_column(draw, n))
    table = pa.table(columns, names=names)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    data = sink.getvalue()
    if draw(st.integers(min_value=0, max_value=5)) == 0:
        data = data[: draw(st.integers(min_value=1, max_value=len(data)))]
    return data


def _gzip_of(draw: st.DrawFn, inner: bytes) -> bytes:
    how = draw(st.sampled_from(("whole", "whole", "truncated", "twice", "trailing", "members")))
    data = gzip.compress(inner, compresslevel=1, mtime=0)
    if how == "truncated":
        return data[: draw(st.integers(min_value=2, max_value=max(len(data) - 1, 2)))]
    if how == "twice":
        return gzip.compress(data, mtime=0)
    if how == "trailing":
        return data + draw(st.binary(min_size=1, max_size=8))
    if how == "members":
        return data + gzip.compress(inner[: len(inner) // 2], mtime=0)
    return data


@st.composite
def gzip_bombs(draw: st.DrawFn) -> bytes:
    """A highly compressible payload (up to a few MB out of a few KB in): a bomb within limits,
    sometimes shaped like a CSV or XES."""
    size = draw(st.integers(min_value=1, max_value=8)) * 1_000_000
    start = draw(st.sampled_from((b"", b"case_id,activity,timestamp\n", _XES_HEAD)))
    filler = draw(st.sampled_from((b"\x00", b"a", b"1,a,2024-01-01\n", b"<event/>")))
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [comp.compress(start)]
    chunk = filler * (1_000_000 // len(filler))
    for _ in range(size // 1_000_000):
        out.append(comp.compress(chunk))
    out.append(comp.flush())
    return b"".join(out)


@st.composite
def gzip_files(draw: st.DrawFn) -> bytes:
    """gzip of a CSV, XES, Parquet or random bytes: whole, truncated, double, with trailing
    bytes or several members."""
    inner = draw(csv_files() | xes_files() | parquet_files() | st.binary(max_size=64))
    return _gzip_of(draw, inner)


random_bytes = (
    st.binary(min_size=0, max_size=512)
    | st.binary(max_size=64).map(lambda b: b"\x1f\x8b" + b)
    | st.binary(max_size=64).map(lambda b: b"PAR1" + b + b"PAR1")
    | st.binary(max_size=64).map(lambda b: b"<log>" + b)
)

any_file = csv_files() | xes_files() | parquet_files() | gzip_files() | random_bytes
