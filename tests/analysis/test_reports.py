from __future__ import annotations

import os
import re
import subprocess
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pptx import Presentation

from analysis import charts
from analysis.columns import ACTIVITY, CASE, ROW, TIMESTAMP
from analysis.dfg import DirectlyFollows, compute_dfg, event_seconds
from analysis.errors import AnalysisError, InvalidParameter
from analysis.executive import write_executive_summary
from analysis.formatting import hours_text
from analysis.process_map import render_process_map
from analysis.progress import Progress
from analysis.recommendations import recommend
from analysis.report_pdf import write_analysis_report
from tests._logs import canonical_frame

SVG = "{http://www.w3.org/2000/svg}"


# --------------------------------------------------------------------------- fixtures


def build_document(events: pd.DataFrame, dfg: DirectlyFollows, name: str) -> dict:
    """A results document like the orchestrator's, with every figure we can compute here from
    the log (cases, variants, cycle times, waits, longest cases) and plausible model figures."""
    variants = charts.variant_counts(events)
    secs = pd.Series(event_seconds(events)).groupby(events[CASE].to_numpy())
    durations = (secs.max() - secs.min()) / 3600
    cases = events[CASE].to_numpy()
    raw = event_seconds(events)
    gap = np.full(len(events), np.nan)
    same = cases[1:] == cases[:-1]
    gap[1:][same] = (raw[1:] - raw[:-1])[same]
    waits = pd.DataFrame({"a": events[ACTIVITY].to_numpy(), "w": gap / 3600}).dropna()
    g = waits.groupby("a")["w"].agg(["mean", "median", "sum", "size"])
    g = g.sort_values("sum", ascending=False)
    total_wait = float(g["sum"].sum())
    bottlenecks = [
        {
            "activity": str(a),
            "meanWaitHours": float(r["mean"]),
            "medianWaitHours": float(r["median"]),
            "totalWaitHours": float(r["sum"]),
            "occurrences": int(r["size"]),
            "shareOfTotalWait": float(r["sum"]) / total_wait,
        }
        for a, r in g.head(5).iterrows()
    ]
    longest = durations.sort_values(ascending=False).head(25)
    z = (longest - durations.mean()) / durations.std()
    top = [
        {
            "caseId": str(c),
            "score": round(float(s), 3),
            "severity": "high" if i < 12 else "medium",
            "reasons": [f"cycle time {hours_text(float(longest[c]))} > p99 & <rare> “path”"],
        }
        for i, (c, s) in enumerate(z.items())
    ]
    n = len(events)
    score = round(100 * n / (n + 2), 2)
    doc = {
        "operationType": "ProcessMiningAnalysis",
        "operationName": f"Analysis of {name} — “Größe” & <check>",
        "status": "Completed",
        "success": True,
        "summary": {
            "recordsAnalyzed": n,
            "processVariants": len(variants),
            "anomaliesDetected": len(top),
            "modelsGenerated": 3,
            "reportsCreated": 1,
            "dataQualityScore": score,
            "overallConfidenceScore": 81.4,
        },
        "phaseResults": [
            {
                "phaseName": "Data Loading and Validation",
                "status": "Completed",
                "results": {
                    "recordsLoaded": n + 2,
                    "validRecords": n,
                    "errorRecords": 2,
                    "dataQualityScore": score,
                    "dataQualityMethod": "valid records / loaded records × 100",
                    "validationErrors": [
                        {"type": "Missing Timestamp", "count": 2, "resolved": True}
                    ],
                    "cases": int(durations.size),
                    "activities": len(dfg.activity_counts),
                    "timeRange": {
                        "start": events[TIMESTAMP].min().isoformat(),
                        "end": events[TIMESTAMP].max().isoformat(),
                    },
                },
            },
            {
                "phaseName": "Process Discovery",
                "status": "Completed",
                "results": {
                    "processModel": {
                        "activities": len(dfg.activity_counts),
                        "transitions": len(dfg.edges),
                        "variants": len(variants),
                        "complexity": "High",
                        "algorithm": "Inductive Miner infrequent (noise 0.2)",
                    },
                    "conformance": {
                        "fitness": 0.93,
                        "fittingTracesPercentage": 71.2,
                        "method": "token-based replay on the discovered Petri net",
                    },
                    "performanceMetrics": {
                        "averageCycleTime": hours_text(float(durations.mean())),
                        "medianCycleTime": hours_text(float(durations.median())),
                        "averageCycleTimeHours": float(durations.mean()),
                        "medianCycleTimeHours": float(durations.median()),
                        "bottleneckActivities": [b["activity"] for b in bottlenecks[:3]],
                        "efficiency": 12.3,
                        "efficiencyMethod": "active time / cycle time (EFFICIENCY-TEXT)",
                        "bottlenecks": bottlenecks,
                    },
                },
            },
            {
                "phaseName": "Machine Learning Analysis",
                "status": "Completed",
                "results": {
                    "anomalies": {
                        "detected": len(top),
                        "highSeverity": 12,
                        "mediumSeverity": len(top) - 12,
                        "lowSeverity": 0,
                        "falsePositiveRate": 0.08,
                        "method": "isolation forest on case features",
                        "topAnomalies": top,
                    },
                    "predictions": {
                        "cycleTimePrediction": {
                            "accuracy": 0.81,
                            "meanAbsoluteError": "3.1 hours",
                            "method": "gradient boosting on prefix features",
                            "accuracyDefinition": "share of test cases within 25%",
                        },
                        "pathPrediction": {"accuracy": 0.77, "confidence": 0.7, "method": "forest"},
                    },
                    "patterns": {
                        "frequentPatterns": 5,
                        "rarePatterns": sum(1 for _, c in variants if c == 1),
                        "criticalPaths": 1,
                        "definitions": "frequent: ≥ 1% of cases; rare: one case",
                        "frequent": [
                            {"variant": list(v), "cases": c, "share": c / durations.size}
                            for v, c in variants[:5]
                        ],
                        "critical": [
                            {
                                "variant": list(variants[0][0]),
                                "cases": variants[0][1],
                                "medianDurationHours": 30.5,
                            }
                        ],
                    },
                },
            },
        ],
        "performance": {"totalExecutionTime": "14.2 seconds"},
    }
    doc["recommendations"] = [r.to_dict() for r in recommend(events, doc)]
    return doc


def anomaly_frame(doc: dict) -> pd.DataFrame:
    top = doc["phaseResults"][2]["results"]["anomalies"]["topAnomalies"]
    return pd.DataFrame(
        {
            "caseId": [a["caseId"] for a in top],
            "score": [a["score"] for a in top],
            "severity": [a["severity"] for a in top],
            "reasons": ["; ".join(a["reasons"]) for a in top],
        }
    )


@pytest.fixture(scope="module")
def receipt(datasets: Path):
    events = canonical_frame(datasets / "receipt.xes.gz")
    dfg = compute_dfg(events)
    return events, dfg, build_document(events, dfg, "receipt")


def synthetic(cases: dict[str, list[str]]) -> pd.DataFrame:
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    rows = [
        (c, a, t0 + pd.Timedelta(hours=i * (k + 1)))
        for k, (c, acts) in enumerate(cases.items())
        for i, a in enumerate(acts)
    ]
    df = pd.DataFrame(rows, columns=[CASE, ACTIVITY, TIMESTAMP])
    df[ROW] = np.arange(len(df), dtype=np.int64)
    return df.sort_values([CASE, TIMESTAMP, ROW], kind="stable").reset_index(drop=True)


def plain(text: str) -> str:
    return " ".join(text.split())


def pdf_text(path: Path) -> str:
    out = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, check=True, timeout=60)
    return plain(out.stdout.decode("utf-8"))


def parse_map(svg_path: Path) -> tuple[dict[str, list[str]], dict[tuple[str, str], list[str]]]:
    """Node id -> label lines and (source id, target id) -> label lines, from dot's SVG."""
    root = ET.parse(svg_path).getroot()
    nodes: dict[str, list[str]] = {}
    edges: dict[tuple[str, str], list[str]] = {}
    for g in root.iter(f"{SVG}g"):
        kind = g.get("class")
        if kind not in ("node", "edge"):
            continue
        title = g.find(f"{SVG}title")
        assert title is not None and title.text
        lines = [t.text or "" for t in g.iter(f"{SVG}text")]
        if kind == "node":
            nodes[title.text] = lines
        else:
            source, target = title.text.split("->")
            edges[(source, target)] = lines
    return nodes, edges


def check_map(dfg: DirectlyFollows, svg: Path, shown: int) -> None:
    nodes, edges = parse_map(svg)
    activity_nodes = {k: v for k, v in nodes.items() if not k.startswith("__")}
    assert len(activity_nodes) == shown
    # a line break inside an activity name is drawn as a space
    lookup = {" ".join(a.splitlines()): a for a in dfg.activity_counts}
    names = {}
    for node_id, lines in activity_nodes.items():
        name, count = lookup[" ".join(lines[:-1])], int(lines[-1].replace(",", ""))
        assert dfg.activity_counts[name] == count
        names[node_id] = name
    shown_names = sorted(dfg.activity_counts, key=lambda a: -dfg.activity_counts[a])[:shown]
    assert set(names.values()) == set(shown_names)
    frequencies = {(e.source, e.target): e for e in dfg.edges}
    dfg_edges = 0
    for (source, target), lines in edges.items():
        if source.startswith("__") or target.startswith("__"):
            continue
        dfg_edges += 1
        edge = frequencies[(names[source], names[target])]
        assert int(lines[0].replace(",", "")) == edge.frequency
        assert lines[1] == hours_text(edge.mean_seconds / 3600)
    starts = [int(lines[0].replace(",", "")) for (s, t), lines in edges.items() if s == "__start__"]
    assert sum(starts) == sum(dfg.start_counts.get(a, 0) for a in names.values())
    return None


# --------------------------------------------------------------------------- process map


def test_process_map_receipt(receipt, tmp_path: Path):
    _, dfg, _ = receipt
    pm = render_process_map(dfg, tmp_path / "map.svg", tmp_path / "map.png")
    assert not pm.truncated and pm.activities_shown == len(dfg.activity_counts) == 27
    assert pm.edges_shown == len(dfg.edges)
    check_map(dfg, pm.svg_path, 27)
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pm.to_dict()["activitiesShown"] == 27


def test_process_map_bpic2012(datasets: Path, tmp_path: Path):
    dfg = compute_dfg(canonical_frame(datasets / "bpic2012.xes.gz"))
    pm = render_process_map(dfg, tmp_path / "map.svg", max_edges=120)
    assert (pm.activities_total, pm.edges_total) == (24, 125)
    assert pm.truncated and pm.edges_shown == 120 and pm.activities_shown == 24
    assert "120 of 125 transitions" in pm.title
    check_map(dfg, pm.svg_path, 24)
    nodes, edges = parse_map(pm.svg_path)
    ids = {" ".join(v[:-1]): k for k, v in nodes.items()}
    shown = {(e.source, e.target) for e in dfg.edges if (ids[e.source], ids[e.target]) in edges}
    dropped = sorted(e.frequency for e in dfg.edges if (e.source, e.target) not in shown)
    # the dropped transitions are the rarest ones
    assert len(dropped) == 5 and dropped[-1] <= sorted(e.frequency for e in dfg.edges)[4]


def test_process_map_escapes_labels(tmp_path: Path):
    odd = ['Say "hi"', "A & B <c>", "Ünïcødé → ✓ 日本", "back\\slash \\N", "new\nline"]
    events = synthetic({"c1": odd, "c2": odd[::-1], "c3": odd[:3]})
    dfg = compute_dfg(events)
    pm = render_process_map(dfg, tmp_path / "odd.svg", tmp_path / "odd.png", title='T "&" <x>')
    nodes, _ = parse_map(pm.svg_path)
    labels = {" ".join(lines[:-1]) for k, lines in nodes.items() if not k.startswith("__")}
    assert labels == {" ".join(a.splitlines()) for a in odd}
    check_map(dfg, pm.svg_path, len(odd))


def test_slow_transitions_are_red(tmp_path: Path):
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    hours = {"x": [0, 1, 2, 3, 103], "y": [0, 1, 2, 3, 4]}  # d -> e takes 100 h in case x
    rows = [
        (c, a, t0 + pd.Timedelta(hours=h))
        for c, hs in hours.items()
        for a, h in zip("abcde", hs, strict=True)
    ]
    events = pd.DataFrame(rows, columns=[CASE, ACTIVITY, TIMESTAMP])
    events[ROW] = np.arange(len(events), dtype=np.int64)
    pm = render_process_map(compute_dfg(events), tmp_path / "slow.svg")
    root = ET.parse(pm.svg_path).getroot()
    red = []
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "edge":
            path = next(g.iter(f"{SVG}path"))
            if path.get("stroke") == "#c53030":
                red.append(g.find(f"{SVG}title").text)
    assert red == ["a3->a4"]  # d -> e only (a0..a4 are a..e)


def test_process_map_truncates_big_graphs(tmp_path: Path):
    # 60 activities; activity k occurs in 60 - k cases so the ranking is unambiguous
    names = [f"step {k:02d}" for k in range(60)]
    cases = {f"case {k}": names[: 60 - k] for k in range(60)}
    dfg = compute_dfg(synthetic(cases))
    pm = render_process_map(dfg, tmp_path / "big.svg", max_activities=40, max_edges=30)
    assert pm.truncated
    assert (pm.activities_total, pm.activities_shown, pm.edges_shown) == (60, 40, 30)
    assert "40 most frequent of 60 activities" in pm.title
    nodes, edges = parse_map(pm.svg_path)
    assert sum(1 for k in nodes if not k.startswith("__")) == 40
    assert sum(1 for s, t in edges if not s.startswith("__") and not t.startswith("__")) == 30
    check_map(dfg, pm.svg_path, 40)


def test_missing_dot_is_a_clear_error(receipt, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without graphviz
    with pytest.raises(AnalysisError, match="Graphviz 'dot' was not found") as err:
        render_process_map(receipt[1], tmp_path / "x.svg")
    assert err.value.code == "graphviz_missing"


# --------------------------------------------------------------------------- PDF report


def test_analysis_report_pdf(receipt, tmp_path: Path):
    events, dfg, doc = receipt
    pm = render_process_map(dfg, tmp_path / "map.svg", tmp_path / "map.png")
    pdf = write_analysis_report(
        tmp_path / "report.pdf", doc, events, dfg, pm.png_path, anomaly_frame(doc), tmp_path / "w"
    )
    text = pdf_text(pdf)
    top = doc["phaseResults"][1]["results"]["performanceMetrics"]["bottlenecks"][0]["activity"]
    assert "Cases 1,434" in text
    assert f"Top bottleneck {top}" in text
    assert "Process variants 116" in text
    assert "“Größe” & <check>" in text  # escaped for reportlab, shown verbatim
    for rec in doc["recommendations"]:
        assert plain(rec["recommendation"])[:60] in text
    assert "EFFICIENCY-TEXT" in text  # "How each figure was computed"
    assert "token-based replay" in text
    first_anomaly = anomaly_frame(doc).iloc[0]
    assert f"{first_anomaly['caseId']} {first_anomaly['score']:.3f} high" in text
    pages = int(
        re.search(
            r"Pages:\s+(\d+)",
            subprocess.run(
                ["pdfinfo", str(pdf)], capture_output=True, text=True, check=True
            ).stdout,
        ).group(1)
    )
    subprocess.run(
        ["pdftoppm", "-png", "-r", "50", str(pdf), str(tmp_path / "page")], check=True, timeout=60
    )
    rendered = sorted(tmp_path.glob("page-*.png"))
    assert len(rendered) == pages >= 5
    assert {p.name for p in (tmp_path / "w").iterdir()} >= {
        "variants.png",
        "cycle_time.png",
        "bottlenecks.png",
        "anomalies.png",
    }


def test_prerendered_charts_are_used_when_their_inputs_match(receipt, tmp_path: Path, monkeypatch):
    """The Report Generation phase draws the charts in a forked child (prerender_charts) from
    the document without recommendations; the PDF takes them and prints the same pages."""
    from analysis import report_pdf

    events, dfg, doc = receipt
    before = {k: v for k, v in doc.items() if k != "recommendations"}
    drawn = report_pdf.prerender_charts(before, events, dfg, tmp_path / "pre")
    assert set(drawn) == set(report_pdf.CHARTS)
    assert all(path is not None and path.is_file() for _, path in drawn.values())
    direct = write_analysis_report(
        tmp_path / "direct.pdf", doc, events, dfg, None, anomaly_frame(doc), tmp_path / "d"
    )

    def no_drawing(self, name):
        raise AssertionError(f"{name} drawn again")

    with monkeypatch.context() as m:
        m.setattr(report_pdf.ChartSet, "_draw", no_drawing)
        reused = write_analysis_report(
            tmp_path / "reused.pdf",
            doc,
            events,
            dfg,
            None,
            anomaly_frame(doc),
            tmp_path / "pre",
            drawn=drawn,
        )
    stamp = re.compile(r"generated \S+ \S+ UTC")  # the minute may turn between the two
    assert stamp.sub("", pdf_text(reused)) == stamp.sub("", pdf_text(direct))
    for name in report_pdf.CHARTS:
        png = f"{name}.png"
        assert (tmp_path / "pre" / png).read_bytes() == (tmp_path / "d" / png).read_bytes()

    # other inputs (here: other bottlenecks) -> that chart is drawn again, the others reused
    changed = {**doc, "phaseResults": [dict(p) for p in doc["phaseResults"]]}
    discovery = dict(changed["phaseResults"][1]["results"])
    perf = dict(discovery["performanceMetrics"])
    perf["bottlenecks"] = perf["bottlenecks"][:1]
    discovery["performanceMetrics"] = perf
    changed["phaseResults"][1] = {**changed["phaseResults"][1], "results": discovery}
    redrawn: list[str] = []
    draw = report_pdf.ChartSet._draw

    def counting(self, name):
        redrawn.append(name)
        return draw(self, name)

    monkeypatch.setattr(report_pdf.ChartSet, "_draw", counting)
    write_analysis_report(
        tmp_path / "changed.pdf", changed, events, dfg, None, None, tmp_path / "c", drawn=drawn
    )
    assert redrawn == ["bottlenecks"]


def test_report_with_skipped_phases(receipt, tmp_path: Path):
    events, dfg, doc = receipt
    partial = {
        "operationName": "loading only",
        "status": "Completed",
        "phaseResults": [doc["phaseResults"][0]],
    }
    pdf = write_analysis_report(tmp_path / "p.pdf", partial, events, dfg, None, None, tmp_path)
    text = pdf_text(pdf)
    assert "Process Discovery: not run" in text
    assert "Machine Learning Analysis: not run" in text
    assert "Bottlenecks were not computed" in text
    assert "No recommendation applies" in text
    assert "Cases 1,434" in text


# --------------------------------------------------------------------------- executive summary


def test_executive_summary_pdf_and_pptx(receipt, tmp_path: Path):
    events, dfg, doc = receipt
    paths = write_executive_summary(tmp_path, doc, events, dfg)
    assert [p.name for p in paths] == ["executive_summary.pdf", "executive_summary.pptx"]
    top = doc["phaseResults"][1]["results"]["performanceMetrics"]["bottlenecks"][0]["activity"]
    text = pdf_text(paths[0])
    assert "Cases 1,434" in text and top in text
    assert plain(doc["recommendations"][0]["recommendation"])[:60] in text
    pages = subprocess.run(["pdfinfo", str(paths[0])], capture_output=True, text=True).stdout
    assert 1 <= int(re.search(r"Pages:\s+(\d+)", pages).group(1)) <= 3

    deck = Presentation(str(paths[1]))
    texts = []
    pictures = 0
    for slide in deck.slides:
        for shape in slide.shapes:
            pictures += shape.shape_type == 13
            if shape.has_text_frame:
                texts.append(shape.text_frame.text)
            if shape.has_table:
                texts += [c.text for row in shape.table.rows for c in row.cells]
    joined = plain(" ".join(texts))
    assert len(deck.slides) == 5
    assert "1,434" in joined and "116" in joined and top in joined
    assert doc["recommendations"][0]["expectedImprovement"][:50] in joined
    assert pictures == 2  # process map and bottleneck chart


def test_executive_summary_from_document_only(receipt, tmp_path: Path):
    _, _, doc = receipt
    (path,) = write_executive_summary(tmp_path, doc, None, None, formats=["powerpoint"])
    deck = Presentation(str(path))
    joined = " ".join(
        s.text_frame.text for slide in deck.slides for s in slide.shapes if s.has_text_frame
    )
    assert "event log was not available" in joined
    updates: list[tuple[int, int, str]] = []
    progress = Progress(sink=lambda d, t, a: updates.append((d, t, a)))
    (pdf,) = write_executive_summary(tmp_path, doc, None, None, ["PDF"], False, progress)
    assert "Cases 1,434" in pdf_text(pdf)
    assert updates[0][0] == 0 and updates[-1][0] == updates[-1][1] == 2


def test_executive_summary_rejects_unknown_format(receipt, tmp_path: Path):
    with pytest.raises(InvalidParameter) as err:
        write_executive_summary(tmp_path, receipt[2], None, None, formats=["PDF", "Word"])
    assert err.value.field == "parameters.exportFormats"
    assert not list(tmp_path.iterdir())


def test_charts_write_png(receipt, tmp_path: Path):
    events, _, _ = receipt
    durations = charts.case_durations_hours(events)
    assert durations.size == 1434
    for path in (
        charts.cycle_time_chart(durations, tmp_path / "c.png"),
        charts.cycle_time_chart(np.array([]), tmp_path / "empty.png"),
        charts.variants_chart(charts.variant_counts(events), tmp_path / "v.png"),
        charts.bottleneck_chart([], tmp_path / "b.png"),
        charts.anomaly_severity_chart({"high": 3}, tmp_path / "a.png", total_cases=10),
    ):
        assert path.read_bytes()[:4] == b"\x89PNG"
    assert os.path.getsize(tmp_path / "c.png") < 200_000


# --------------------------------------------------------------------------- Japanese reports

JA_ACTIVITIES = {
    "register request": "申請受付",
    "examine thoroughly": "詳細審査",
    "examine casually": "簡易審査",
    "check ticket": "チケット確認",
    "decide": "判断",
    "reinitiate request": "再申請",
    "pay compensation": "補償金支払",
    "reject request": "申請却下",
}


@pytest.fixture(scope="module")
def japanese(datasets: Path):
    """running-example with Japanese activity and resource names, its DFG and a document."""
    events = canonical_frame(datasets / "running-example.xes")
    events[ACTIVITY] = events[ACTIVITY].map(JA_ACTIVITIES)
    dfg = compute_dfg(events)
    doc = build_document(events, dfg, "申請ログ.csv")
    doc["operationName"] = "申請プロセス分析"
    return events, dfg, doc


@pytest.fixture(scope="module")
def japanese_csv(japanese, tmp_path_factory: pytest.TempPathFactory) -> Path:
    events = japanese[0]
    path = tmp_path_factory.mktemp("ja") / "申請ログ.csv"
    pd.DataFrame(
        {
            "case_id": events[CASE],
            "activity": events[ACTIVITY],
            "timestamp": events[TIMESTAMP].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "resource": events["org:resource"].map(lambda r: f"担当者{r}"),
        }
    ).to_csv(path, index=False)
    return path


def pdf_fonts(path: Path) -> str:
    return subprocess.run(
        ["pdffonts", str(path)], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def pdf_images(path: Path) -> list[tuple[int, int, int]]:
    """(page, width, height) of every image in the PDF."""
    out = subprocess.run(
        ["pdfimages", "-list", str(path)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    rows = []
    for line in out.splitlines()[2:]:
        cells = line.split()
        if cells and cells[2] == "image":
            rows.append((int(cells[0]), int(cells[3]), int(cells[4])))
    return rows


def pptx_text(path: Path) -> tuple[str, int]:
    """All text of a deck (text frames and tables) and its number of pictures."""
    texts, pictures = [], 0
    for slide in Presentation(str(path)).slides:
        for shape in slide.shapes:
            pictures += shape.shape_type == 13
            if shape.has_text_frame:
                texts.append(shape.text_frame.text)
            if shape.has_table:
                texts += [c.text for row in shape.table.rows for c in row.cells]
    return plain(" ".join(texts)), pictures


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_pdf_prints_japanese_names_in_both_languages(japanese, tmp_path: Path, lang: str):
    events, dfg, doc = japanese
    pm = render_process_map(dfg, tmp_path / "map.svg", tmp_path / "map.png")
    pdf = write_analysis_report(
        tmp_path / "r.pdf", doc, events, dfg, pm.png_path, None, tmp_path / "w", lang=lang
    )
    text = pdf_text(pdf)
    for name in ("申請受付", "判断", "チケット確認", "申請プロセス分析"):
        assert name in text
    top = doc["phaseResults"][1]["results"]["performanceMetrics"]["bottlenecks"][0]["activity"]
    assert top in text
    # the CJK font is embedded (subset), beside DejaVu
    fonts_listed = pdf_fonts(pdf)
    embedded = re.findall(r"^\w{6}\+(\S+)\s+TrueType\s+\S+\s+yes", fonts_listed, re.M)
    assert "IPAexGothic" in embedded and "DejaVuSans" in embedded
    if lang == "ja":
        for heading in ("プロセスマイニング分析レポート", "主要指標", "主な所見", "プロセスマップ"):
            assert heading in text
        assert "ケース数 6" in text and "各指標の算出方法" in text
        assert "Key figures" not in text
    else:
        assert "Key figures" in text and "Cases 6" in text
        assert "主要指標" not in text


def test_charts_draw_japanese_without_missing_glyphs(japanese, tmp_path: Path, monkeypatch):
    events, _, doc = japanese
    bottlenecks = doc["phaseResults"][1]["results"]["performanceMetrics"]["bottlenecks"]

    def draw(lang: str) -> None:
        charts.variants_chart(charts.variant_counts(events), tmp_path / "v.png", lang=lang)
        charts.bottleneck_chart(bottlenecks, tmp_path / "b.png", lang=lang)
        charts.cycle_time_chart(charts.case_durations_hours(events), tmp_path / "c.png", lang=lang)
        charts.anomaly_severity_chart({"high": 1}, tmp_path / "a.png", lang=lang)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font(s)" would raise
        draw("ja")
        draw("en")
    # the check has teeth: without the CJK font the same charts miss glyphs
    monkeypatch.setattr("analysis.fonts.CJK_FONT_CANDIDATES", ())
    with pytest.warns(UserWarning, match="missing from font"):
        draw("ja")


def test_executive_summary_in_japanese(japanese, tmp_path: Path):
    events, dfg, doc = japanese
    pdf, pptx = write_executive_summary(tmp_path, doc, events, dfg, lang="ja", title="月次レポート")
    text = pdf_text(pdf)
    top = doc["phaseResults"][1]["results"]["performanceMetrics"]["bottlenecks"][0]["activity"]
    for expected in ("エグゼクティブサマリー", "月次レポート", "主な所見", "推奨事項", top):
        assert expected in text
    assert "元の分析: 申請プロセス分析" in text
    title = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
    assert "エグゼクティブサマリー — 月次レポート" in title
    deck, pictures = pptx_text(pptx)
    for expected in ("プロセスマイニング — エグゼクティブサマリー", "月次レポート", "主要指標"):
        assert expected in deck
    assert "ボトルネック" in deck and "推奨事項" in deck and top in deck
    assert "Key figures" not in deck and pictures == 2


def test_report_language_is_validated(tmp_path: Path, japanese_csv: Path):
    from analysis.params import parse_analysis_params, parse_report_params
    from analysis.runs import ProcessMiningRun, ReportGenerationRun

    assert parse_analysis_params({}).report_language == "en"
    assert parse_report_params({"reportLanguage": "ja"}).report_language == "ja"
    for parse in (parse_analysis_params, parse_report_params):
        for bad in ("fr", "JA", 1):
            with pytest.raises(InvalidParameter) as err:
                parse({"reportLanguage": bad})
            assert err.value.field == "parameters.reportLanguage"
    for run in (ProcessMiningRun, ReportGenerationRun):
        with pytest.raises(InvalidParameter) as err:
            run(japanese_csv, tmp_path, {"reportLanguage": "de"})
        assert err.value.field == "parameters.reportLanguage"


def test_report_generation_from_an_analysis_draws_its_map(tmp_path: Path, japanese_csv: Path):
    from analysis.runs import ProcessMiningRun, ReportGenerationRun

    analysis_dir = tmp_path / "analysis"
    ProcessMiningRun(
        japanese_csv,
        analysis_dir,
        {"analysisType": "quick", "reportLanguage": "ja"},
        name="申請プロセス分析",
    ).run_all()
    text = pdf_text(analysis_dir / "report.pdf")
    assert "主要指標" in text and "判断" in text and "申請プロセス分析" in text

    out = tmp_path / "summary"
    doc = ReportGenerationRun(
        analysis_dir / "results.json", out, {"reportLanguage": "ja"}, name="週次レポート"
    ).run_all()
    assert doc["operationName"] == "週次レポート"
    pdf, pptx = out / "executive_summary.pdf", out / "executive_summary.pptx"
    text = pdf_text(pdf)
    assert "週次レポート" in text and "元の分析: 申請プロセス分析" in text
    assert "プロセスマップは描画されていません" not in text
    pages = int(
        re.search(
            r"Pages:\s+(\d+)",
            subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout,
        ).group(1)
    )
    # the map is the picture on the last (landscape) page, the analysis's SVG drawn as PNG
    (chart_page, *_), (map_page, *_) = pdf_images(pdf)  # the bottleneck chart, then the map
    assert chart_page < map_page == pages and "プロセスマップ" in text
    _, pictures = pptx_text(pptx)
    assert pictures == 2  # the map and the bottleneck chart


def test_summary_of_a_log_is_titled_by_its_name(tmp_path: Path, japanese_csv: Path):
    from analysis.runs import ReportGenerationRun

    # the CLI names a run after its file when no name is given
    ReportGenerationRun(
        japanese_csv, tmp_path, {"exportFormats": ["PDF"]}, name=japanese_csv.name
    ).run_all()
    pdf = tmp_path / "executive_summary.pdf"
    text = pdf_text(pdf)
    assert "申請ログ.csv" in text and "ProcessMiningAnalysis" not in text
    assert "Source analysis" not in text  # the summary and its quick analysis share the name
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
    assert "Executive Summary — 申請ログ.csv" in info


def test_missing_cjk_font_falls_back_with_a_note(japanese, tmp_path: Path, monkeypatch):
    events, dfg, doc = japanese
    monkeypatch.setattr("analysis.fonts.CJK_FONT_CANDIDATES", ("/nonexistent/font.ttf",))
    with pytest.warns(UserWarning, match="missing from font"):  # the charts' names: boxes
        pdf = write_analysis_report(
            tmp_path / "r.pdf", doc, events, dfg, None, None, tmp_path / "w", lang="ja"
        )
    text = pdf_text(pdf)
    assert "Key figures" in text  # Japanese texts would print as boxes: English instead
    assert "No CJK font was found" in text and "fonts-ipaexfont-gothic" in text
    with pytest.warns(UserWarning, match="missing from font"):
        (pptx,) = write_executive_summary(
            tmp_path / "x", doc, events, dfg, ["PowerPoint"], lang="ja"
        )
    deck, _ = pptx_text(pptx)
    assert "Key figures" in deck and "No CJK font was found" in deck


def test_map_svg_without_rsvg_convert_is_a_note(japanese, tmp_path: Path, monkeypatch):
    _, dfg, doc = japanese
    pm = render_process_map(dfg, tmp_path / "map.svg")
    (first,) = write_executive_summary(
        tmp_path / "a", doc, None, None, ["PowerPoint"], map_svg=pm.svg_path
    )
    assert pptx_text(first)[1] == 2  # drawn from the SVG: map and bottleneck chart
    monkeypatch.setenv("PATH", str(tmp_path))  # no rsvg-convert
    (pptx,) = write_executive_summary(
        tmp_path / "b", doc, None, None, ["PowerPoint"], map_svg=pm.svg_path
    )
    deck, pictures = pptx_text(pptx)
    assert "Process map not drawn: rsvg-convert was not found" in deck and pictures == 1
