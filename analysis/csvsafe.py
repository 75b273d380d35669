"""CSV formula neutralisation (OWASP "CSV injection"): every CSV we write goes through here.

A spreadsheet opening a CSV runs a cell that starts with `=`, `+`, `-` or `@` as a formula
(`=HYPERLINK(...)`, `=cmd|' /C calc'!A0`), and some also treat a leading tab or carriage return
so. Event logs carry such strings in activity, resource and case names, and they flow into the
artifacts (anomalies.csv, the enriched CSV). A text cell starting with one of those characters is
written with a `'` in front, which spreadsheets show as text; a negative number (`-2`, `-0.5`,
`-1e3`) is a number, not a formula, and stays as it is. Numeric columns are never touched; column
names are neutralised the same way.

The price: a neutralised value read back as data keeps its `'` (an activity `=x` of a cleaned
log becomes `'=x` when the enriched CSV is analysed again).
"""

from __future__ import annotations

import re

import pandas as pd

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_STARTS = r"[=+\-@\t\r]"
_NUMBER = r"-(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER_RE = re.compile(_NUMBER)


def neutralise_cell(value: str) -> str:
    """The cell as a spreadsheet will show it as text: `'` in front of a formula start."""
    if value.startswith(TRIGGERS) and not _NUMBER_RE.fullmatch(value):
        return "'" + value
    return value


def _needs(values: pd.Series) -> pd.Series:
    """Which cells of a column of strings (others: False) need the prefix."""
    starts = values.str.match(_STARTS, na=False)
    if not starts.any():
        return starts
    return starts & ~values.str.fullmatch(_NUMBER, na=False)


def _column(column: pd.Series) -> pd.Series:
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = pd.Series(column.cat.categories)
        if not pd.api.types.is_string_dtype(categories) or not _needs(categories).any():
            return column
        column = column.astype(object)
    elif not (pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)):
        return column
    try:
        mask = _needs(column)
    except AttributeError:  # an object column without strings: nothing to neutralise
        return column
    if not mask.any():
        return column
    column = column.copy()
    column[mask] = "'" + column[mask].astype(str)
    return column


def neutralise(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every text cell and column name neutralised (the same frame when nothing
    needed it, else a copy: the caller's frame is never changed)."""
    out = frame
    for i in range(frame.shape[1]):
        original = frame.iloc[:, i]
        column = _column(original)
        if column is not original:
            if out is frame:
                out = frame.copy()
            out.isetitem(i, column.array)
    names = [neutralise_cell(c) if isinstance(c, str) else c for c in frame.columns]
    if names != list(frame.columns):
        out = out.set_axis(names, axis=1) if out is not frame else frame.set_axis(names, axis=1)
    return out
