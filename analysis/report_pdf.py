"""The analysis report as a PDF a process owner reads (reportlab).

Everything shown comes from the results document, the event frame and the DFG; a section whose
figures were not computed (a phase skipped by options) says so instead of disappearing silently.
Helpers that read the document (`key_figures`, `method_texts`, `not_computed`) are shared with
the executive summary.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import matplotlib
import pandas as pd
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, StyleSheet1, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Frame,
    Image,
    KeepTogether,
    NextPageTemplate,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

from analysis import charts
from analysis.columns import CASE
from analysis.dfg import DirectlyFollows
from analysis.formatting import hours_text
from analysis.performance import bottleneck_sentence
from analysis.recommendations import (
    F_SCORE_LABEL,
    PRECISION_LABEL,
    phase_results,
    quality_sentence,
)

LOADING = "Data Loading and Validation"
DISCOVERY = "Process Discovery"
ML = "Machine Learning Analysis"
REPORTING = "Report Generation"
PHASES = (LOADING, DISCOVERY, ML, REPORTING)

FONT, FONT_BOLD = "DejaVuSans", "DejaVuSans-Bold"
_HEADER_BG = colors.HexColor("#2b6cb0")
_ROW_BG = colors.HexColor("#f1f5fb")
_PRIORITY_COLOURS = {"High": "#c53030", "Medium": "#dd8a1e", "Low": "#4a5568"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_METHOD_KEY = re.compile(r"(method|definition|definitions|algorithm)$", re.IGNORECASE)


# --------------------------------------------------------------------------- document reading


def text(value: Any) -> str:
    """Any value as Paragraph-safe markup text: control characters dropped, &, <, > escaped."""
    return escape(_CONTROL.sub("", str(value)))


def num(value: Any, digits: int = 2) -> str:
    """A figure as a reader expects it: ints with thousands separators, floats rounded."""
    if value is None:
        return "not computed"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        return f"{value:,.{digits}f}"
    return str(value)


def case_count(results: Mapping[str, Any], events: pd.DataFrame | None) -> int | None:
    cases = _first(
        phase_results(results, LOADING).get("cases"), (results.get("summary") or {}).get("cases")
    )
    if cases is not None:
        return int(cases)
    if events is not None and len(events):
        return int(events[CASE].nunique())
    return None


def _first(*values: Any) -> Any:
    """The first value that is present (a key may exist with a null value)."""
    return next((v for v in values if v is not None), None)


def _date(value: Any) -> str:
    try:
        return pd.Timestamp(value).strftime("%Y-%m-%d")
    except (ValueError, TypeError):
        return str(value)


def top_bottleneck(results: Mapping[str, Any]) -> str | None:
    perf = phase_results(results, DISCOVERY).get("performanceMetrics") or {}
    names = [b.get("activity") for b in perf.get("bottlenecks") or [] if isinstance(b, Mapping)]
    names += list(perf.get("bottleneckActivities") or [])
    return next((str(n) for n in names if n), None)


def key_figures(
    results: Mapping[str, Any], events: pd.DataFrame | None = None
) -> list[tuple[str, str]]:
    """The headline figures (label, value text); figures that were not computed are left out."""
    summary = results.get("summary") or {}
    loading = phase_results(results, LOADING)
    discovery = phase_results(results, DISCOVERY)
    model = discovery.get("processModel") or {}
    perf = discovery.get("performanceMetrics") or {}
    conf = discovery.get("conformance") or {}
    anomalies = phase_results(results, ML).get("anomalies") or {}
    rows: list[tuple[str, str]] = []

    def add(label: str, value: Any, digits: int = 2) -> None:
        if value is not None and value != "":
            rows.append((label, num(value, digits)))

    add("Events analysed", _first(summary.get("recordsAnalyzed"), loading.get("validRecords")))
    add("Cases", case_count(results, events))
    add("Activities", _first(loading.get("activities"), model.get("activities")))
    add("Process variants", _first(summary.get("processVariants"), model.get("variants")))
    span = loading.get("timeRange") or {}
    if span.get("start") and span.get("end"):
        rows.append(("Time range", f"{_date(span['start'])} to {_date(span['end'])}"))
    add("Average cycle time", perf.get("averageCycleTime"))
    add("Median cycle time", perf.get("medianCycleTime"))
    top = top_bottleneck(results)
    if top:
        rows.append(("Top bottleneck", top))
    add("Process efficiency (%)", perf.get("efficiency"), 1)
    add("Model fitness", conf.get("fitness"))
    add(PRECISION_LABEL, conf.get("precision"))
    add(F_SCORE_LABEL, conf.get("fScore"))
    add("Anomalous cases", _first(anomalies.get("detected"), summary.get("anomaliesDetected")))
    if anomalies.get("highSeverity") is not None:
        add("High-severity anomalies", anomalies.get("highSeverity"))
    # two decimals: a score of 99.98 must not print as 100.0
    add(
        "Data quality score",
        _first(summary.get("dataQualityScore"), loading.get("dataQualityScore")),
    )
    add("Overall confidence score", summary.get("overallConfidenceScore"), 1)
    return rows


def findings(results: Mapping[str, Any], events: pd.DataFrame | None = None) -> list[str]:
    """Plain-language headline sentences (unescaped text) built from the document's figures."""
    out: list[str] = []
    loading = phase_results(results, LOADING)
    discovery = phase_results(results, DISCOVERY)
    model = discovery.get("processModel") or {}
    perf = discovery.get("performanceMetrics") or {}
    conf = discovery.get("conformance") or {}
    anomalies = phase_results(results, ML).get("anomalies") or {}
    cases = case_count(results, events)
    span = loading.get("timeRange") or {}
    if cases is not None:
        sentence = f"{cases:,} cases"
        if model.get("variants") is not None:
            sentence += f" followed {int(model['variants']):,} different paths (variants)"
        if span.get("start") and span.get("end"):
            sentence += f" between {_date(span['start'])} and {_date(span['end'])}"
        out.append(sentence + ".")
    if perf.get("averageCycleTime"):
        out.append(
            f"A case takes {perf['averageCycleTime']} on average "
            f"(median {perf.get('medianCycleTime', 'n/a')})."
        )
    bottlenecks = [b for b in perf.get("bottlenecks") or [] if isinstance(b, Mapping)]
    top = top_bottleneck(results)
    if top:
        entry = next((b for b in bottlenecks if b.get("activity") == top), {})
        out.append(bottleneck_sentence(top, entry))  # median and mean wait, share
    model_quality = quality_sentence(conf)  # fitness always with precision
    if model_quality:
        out.append(model_quality)
    if anomalies.get("detected") is not None:
        out.append(
            f"{int(anomalies['detected']):,} cases look anomalous, "
            f"{int(anomalies.get('highSeverity') or 0):,} of them with high severity."
        )
    return out


def _words(key: str) -> str:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key).lower()
    return spaced[:1].upper() + spaced[1:]


def _walk(node: Any, path: list[str]) -> Iterator[tuple[list[str], str]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if isinstance(value, str) and _METHOD_KEY.search(str(key)):
                yield [*path, str(key)], value
            elif isinstance(value, Mapping):
                yield from _walk(value, [*path, str(key)])


def method_texts(results: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every *method / *definition / algorithm text in the document, labelled by where it sits."""
    out: list[tuple[str, str]] = []
    for phase in results.get("phaseResults") or []:
        if not isinstance(phase, Mapping):
            continue
        for path, value in _walk(phase.get("results") or {}, []):
            out.append((f"{phase.get('phaseName')}: " + " › ".join(map(_words, path)), value))
    for section in ("summary", "performance"):
        for path, value in _walk(results.get(section) or {}, [section]):
            out.append((" › ".join(map(_words, path)), value))
    return out


def not_computed(results: Mapping[str, Any]) -> list[str]:
    """Phases (and main figure groups) that the document does not contain."""
    out: list[str] = []
    present = {
        p.get("phaseName"): p for p in results.get("phaseResults") or [] if isinstance(p, Mapping)
    }
    for name in (LOADING, DISCOVERY, ML):
        phase = present.get(name)
        if phase is None:
            out.append(f"{name}: not run")
        elif str(phase.get("status", "Completed")) != "Completed":
            out.append(f"{name}: {phase.get('status')}")
    checks = [
        (DISCOVERY, "processModel", "process model"),
        (DISCOVERY, "conformance", "conformance check"),
        (DISCOVERY, "performanceMetrics", "performance metrics and bottlenecks"),
        (ML, "anomalies", "anomaly detection"),
        (ML, "predictions", "predictions"),
        (ML, "patterns", "pattern mining"),
    ]
    for phase_name, key, label in checks:
        if phase_name in present and not phase_results(results, phase_name).get(key):
            out.append(f"{label[:1].upper() + label[1:]}: not computed")
    return out


# --------------------------------------------------------------------------- PDF building blocks


_fonts_ready = False


def register_fonts() -> None:
    """DejaVu Sans (shipped with matplotlib) so any Unicode activity name prints."""
    global _fonts_ready
    if _fonts_ready:
        return
    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    pdfmetrics.registerFont(TTFont(FONT, str(ttf / "DejaVuSans.ttf")))
    pdfmetrics.registerFont(TTFont(FONT_BOLD, str(ttf / "DejaVuSans-Bold.ttf")))
    pdfmetrics.registerFontFamily(
        FONT, normal=FONT, bold=FONT_BOLD, italic=FONT, boldItalic=FONT_BOLD
    )
    _fonts_ready = True


def styles() -> StyleSheet1:
    register_fonts()
    sheet = getSampleStyleSheet()
    for name in ("Normal", "BodyText", "Title", "Heading1", "Heading2", "Heading3", "Italic"):
        sheet[name].fontName = FONT_BOLD if name.startswith(("Title", "Heading")) else FONT
    sheet["Normal"].fontSize, sheet["Normal"].leading = 9.5, 12.5
    sheet["Heading1"].textColor = _HEADER_BG
    sheet["Heading2"].textColor = colors.HexColor("#2d3748")
    sheet.add(ParagraphStyle("Cell", parent=sheet["Normal"], fontSize=8, leading=10))
    sheet.add(ParagraphStyle("CellBold", parent=sheet["Cell"], fontName=FONT_BOLD))
    sheet.add(
        ParagraphStyle("HeadCell", parent=sheet["Cell"], fontName=FONT_BOLD, textColor=colors.white)
    )
    sheet.add(ParagraphStyle("Small", parent=sheet["Normal"], fontSize=8, leading=10))
    sheet.add(ParagraphStyle("Note", parent=sheet["Normal"], textColor=colors.HexColor("#718096")))
    return sheet


def table(
    rows: Sequence[Sequence[Any]],
    sheet: StyleSheet1,
    col_widths: Sequence[float] | None = None,
    header: bool = True,
) -> Table:
    """A table of wrapped Paragraph cells; the first row is the header when `header`."""
    cells = [
        [
            Paragraph(text(v), sheet["HeadCell" if header and i == 0 else "Cell"])
            if not isinstance(v, Flowable)
            else v
            for v in row
        ]
        for i, row in enumerate(rows)
    ]
    t = Table(cells, colWidths=col_widths, repeatRows=1 if header else 0, hAlign="LEFT")
    style = [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#cbd5e0")),
        ("TOPPADDING", (0, 0), (-1, -1), 2.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
    ]
    if header:
        style.append(("BACKGROUND", (0, 0), (-1, 0), _HEADER_BG))
    start = 1 if header else 0
    for r in range(start, len(cells)):
        if (r - start) % 2 == 1:
            style.append(("BACKGROUND", (0, r), (-1, r), _ROW_BG))
    t.setStyle(TableStyle(style))
    return t


def picture(path: Path, max_width: float, max_height: float) -> Image:
    """An image scaled to fit the box, aspect ratio kept."""
    img = Image(str(path))
    # never enlarge past the size the image was drawn for (charts and map are 110 dpi)
    scale = min(max_width / img.imageWidth, max_height / img.imageHeight, 72 / charts.DPI)
    img.drawWidth, img.drawHeight = img.imageWidth * scale, img.imageHeight * scale
    return img


def recommendation_rows(
    recommendations: Sequence[Mapping[str, Any]], sheet: StyleSheet1, with_basis: bool = True
) -> list[list[Any]]:
    rows: list[list[Any]] = [["Priority", "Recommendation"]]
    for r in recommendations:
        priority = str(r.get("priority", ""))
        colour = _PRIORITY_COLOURS.get(priority, "#4a5568")
        body = f"<b>{text(r.get('category', ''))}.</b> {text(r.get('recommendation', ''))}"
        if r.get("expectedImprovement"):
            body += f"<br/><b>Expected:</b> {text(r['expectedImprovement'])}"
        if with_basis and r.get("basis"):
            body += f"<br/><font color='#718096'>How computed: {text(r['basis'])}</font>"
        rows.append(
            [
                Paragraph(f"<font color='{colour}'><b>{text(priority)}</b></font>", sheet["Cell"]),
                Paragraph(body, sheet["Cell"]),
            ]
        )
    return rows


MARGIN_X, MARGIN_TOP, MARGIN_BOTTOM = 1.8 * cm, 1.6 * cm, 1.7 * cm
PORTRAIT, LANDSCAPE = A4, (A4[1], A4[0])


def frame_size(page: tuple[float, float] = PORTRAIT) -> tuple[float, float]:
    return page[0] - 2 * MARGIN_X, page[1] - MARGIN_TOP - MARGIN_BOTTOM


def _footer(title: str, page_size: tuple[float, float]) -> Any:
    def draw(canvas: Canvas, doc: BaseDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 7.5)
        canvas.setFillColor(colors.HexColor("#718096"))
        canvas.drawString(MARGIN_X, 1.0 * cm, title[:110])
        canvas.drawRightString(page_size[0] - MARGIN_X, 1.0 * cm, f"Page {doc.page}")
        canvas.restoreState()

    return draw


def build_pdf(pdf_path: Path, story: list[Flowable], title: str) -> Path:
    """Build A4 pages; `NextPageTemplate("landscape")` in the story switches to a wide page
    (the process map is usually wider than tall) and "portrait" switches back."""
    pdf_path = Path(pdf_path)
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    doc = BaseDocTemplate(str(pdf_path), pagesize=PORTRAIT, title=title, author="pmops")
    templates = []
    for name, size in (("portrait", PORTRAIT), ("landscape", LANDSCAPE)):
        width, height = frame_size(size)
        frame = Frame(
            MARGIN_X,
            MARGIN_BOTTOM,
            width,
            height,
            id=name,
            leftPadding=0,
            rightPadding=0,
            topPadding=0,
            bottomPadding=0,
        )
        templates.append(
            PageTemplate(id=name, frames=[frame], pagesize=size, onPage=_footer(title, size))
        )
    doc.addPageTemplates(templates)
    doc.build(story)
    return pdf_path


# --------------------------------------------------------------------------- sections


def _frame_width() -> float:
    return frame_size()[0]


def _summary_section(
    results: Mapping[str, Any], events: pd.DataFrame | None, sheet: StyleSheet1
) -> list[Flowable]:
    name = results.get("operationName") or "Process mining analysis"
    status = results.get("status") or "unknown"
    story: list[Flowable] = [
        Paragraph("Process Mining Analysis Report", sheet["Title"]),
        Paragraph(text(name), sheet["Heading2"]),
        Paragraph(
            f"Status: {text(status)} · generated "
            f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            sheet["Note"],
        ),
        Spacer(1, 0.4 * cm),
        Paragraph("Key figures", sheet["Heading1"]),
    ]
    figures = key_figures(results, events)
    if figures:
        story.append(table(figures, sheet, [6 * cm, _frame_width() - 6 * cm], header=False))
    else:
        story.append(Paragraph("No figures were computed.", sheet["Normal"]))
    headline = findings(results, events)
    if headline:
        story += [
            Spacer(1, 0.3 * cm),
            Paragraph("Main findings", sheet["Heading1"]),
            *[Paragraph("• " + text(f), sheet["Normal"]) for f in headline],
        ]
    recs = [r for r in results.get("recommendations") or [] if isinstance(r, Mapping)]
    if recs:
        w = _frame_width()
        story += [
            Spacer(1, 0.3 * cm),
            Paragraph("Top recommendations", sheet["Heading1"]),
            table(recommendation_rows(recs[:3], sheet, False), sheet, [w * 0.12, w * 0.88]),
        ]
    missing = not_computed(results)
    if missing:
        story += [
            Spacer(1, 0.3 * cm),
            Paragraph("Not computed in this analysis", sheet["Heading3"]),
            Paragraph("<br/>".join(text(m) for m in missing), sheet["Normal"]),
        ]
    return story


def _map_pages(
    dfg: DirectlyFollows | None, process_map_png: Path | None, sheet: StyleSheet1
) -> list[Flowable]:
    story: list[Flowable] = [
        NextPageTemplate("landscape"),
        PageBreak(),
        Paragraph("Process map", sheet["Heading1"]),
    ]
    if dfg is not None:
        story.append(
            Paragraph(
                f"{len(dfg.activity_counts):,} activities and {len(dfg.edges):,} directly-follows "
                "transitions. Boxes are activities with their number of events (darker = more "
                "frequent); arrows carry the number of transitions and the mean time between the "
                "two activities; red arrows are the slowest transitions.",
                sheet["Normal"],
            )
        )
    if process_map_png is not None and Path(process_map_png).exists():
        width, height = frame_size(LANDSCAPE)
        story += [Spacer(1, 0.2 * cm), picture(Path(process_map_png), width, height - 2.2 * cm)]
    else:
        story.append(Paragraph("The process map was not drawn.", sheet["Note"]))
    return story


def _variant_pages(
    results: Mapping[str, Any],
    events: pd.DataFrame | None,
    model: Mapping[str, Any],
    workdir: Path,
    sheet: StyleSheet1,
) -> list[Flowable]:
    story: list[Flowable] = [
        NextPageTemplate("portrait"),
        PageBreak(),
        Paragraph("Process variants", sheet["Heading1"]),
    ]
    cases = case_count(results, events)
    if events is not None and len(events):
        variants = charts.variant_counts(events)
        total_variants: int | None = len(variants)
    else:
        frequent = (phase_results(results, ML).get("patterns") or {}).get("frequent") or []
        variants = [
            (tuple(map(str, f.get("variant") or [])), int(f.get("cases") or 0)) for f in frequent
        ]
        total_variants = model.get("variants")
    if model:
        story.append(
            Paragraph(
                f"{num(model.get('variants'))} variants (distinct activity sequences); model "
                f"complexity {text(model.get('complexity', 'n/a'))} "
                f"({num(model.get('activities'))} activities, {num(model.get('transitions'))} "
                "transitions).",
                sheet["Normal"],
            )
        )
    if variants:
        png = charts.variants_chart(
            variants, workdir / "variants.png", total_cases=cases, total_variants=total_variants
        )
        story.append(picture(png, _frame_width(), 9 * cm))
    else:
        story.append(Paragraph("Variants were not computed.", sheet["Note"]))
    return story


def _cycle_time(
    perf: Mapping[str, Any], events: pd.DataFrame | None, workdir: Path, sheet: StyleSheet1
) -> list[Flowable]:
    story: list[Flowable] = [Paragraph("Cycle time", sheet["Heading1"])]
    if perf:
        story.append(
            Paragraph(
                f"Average cycle time {text(perf.get('averageCycleTime') or 'n/a')}, median "
                f"{text(perf.get('medianCycleTime') or 'n/a')}."
                + (
                    f" Process efficiency {num(perf['efficiency'], 1)}%."
                    if perf.get("efficiency") is not None
                    else " Process efficiency was not computed."
                ),
                sheet["Normal"],
            )
        )
    if events is not None and len(events):
        png = charts.cycle_time_chart(
            charts.case_durations_hours(events), workdir / "cycle_time.png"
        )
        story.append(picture(png, _frame_width(), 7.5 * cm))
    elif not perf:
        story.append(Paragraph("Cycle times were not computed.", sheet["Note"]))
    return story


def _bottlenecks(perf: Mapping[str, Any], workdir: Path, sheet: StyleSheet1) -> list[Flowable]:
    heading = Paragraph("Bottlenecks", sheet["Heading1"])
    bottlenecks = [b for b in perf.get("bottlenecks") or [] if isinstance(b, Mapping)]
    if bottlenecks:
        png = charts.bottleneck_chart(bottlenecks, workdir / "bottlenecks.png")
        rows: list[list[Any]] = [
            ["Activity", "Mean wait", "Median wait", "Total wait", "Events", "Share of all waiting"]
        ]
        for b in bottlenecks[:10]:
            share = b.get("shareOfTotalWait")
            rows.append(
                [
                    b.get("activity"),
                    _hours(b.get("meanWaitHours")),
                    _hours(b.get("medianWaitHours")),
                    _hours(b.get("totalWaitHours")),
                    num(b.get("occurrences")),
                    f"{100 * float(share):.1f}%" if share is not None else "n/a",
                ]
            )
        w = _frame_width()
        return [
            KeepTogether([heading, picture(png, w, 8 * cm)]),
            table(rows, sheet, [w * 0.32, w * 0.12, w * 0.12, w * 0.14, w * 0.12, w * 0.18]),
        ]
    if perf.get("bottleneckActivities"):
        names = ", ".join(map(str, perf["bottleneckActivities"]))
        return [heading, Paragraph("Bottleneck activities: " + text(names), sheet["Normal"])]
    return [heading, Paragraph("Bottlenecks were not computed.", sheet["Note"])]


def _discovery_section(
    results: Mapping[str, Any],
    events: pd.DataFrame | None,
    dfg: DirectlyFollows | None,
    process_map_png: Path | None,
    workdir: Path,
    sheet: StyleSheet1,
) -> list[Flowable]:
    discovery = phase_results(results, DISCOVERY)
    model = discovery.get("processModel") or {}
    perf = discovery.get("performanceMetrics") or {}
    return (
        _map_pages(dfg, process_map_png, sheet)
        + _variant_pages(results, events, model, workdir, sheet)
        + _cycle_time(perf, events, workdir, sheet)
        + _bottlenecks(perf, workdir, sheet)
    )


def variant_text(variant: Sequence[Any], limit: int = 8) -> str:
    """An activity sequence for a table cell; long ones keep their first and last steps."""
    steps = [str(a) for a in variant]
    if len(steps) <= limit:
        return " → ".join(steps)
    head, tail = steps[: limit - 2], steps[-2:]
    return " → ".join(head) + f" → … ({len(steps) - limit} more steps) … → " + " → ".join(tail)


def _hours(value: Any) -> str:
    return hours_text(float(value)) if value is not None else "n/a"


def _anomaly_rows(
    results: Mapping[str, Any], anomalies: pd.DataFrame | None, limit: int = 20
) -> list[list[Any]]:
    rows: list[list[Any]] = [["Case", "Score", "Severity", "Reasons"]]
    if anomalies is not None and len(anomalies):
        top = anomalies.sort_values("score", ascending=False, kind="stable").head(limit)
        for case, score, severity, reasons in zip(
            top["caseId"], top["score"], top["severity"], top["reasons"], strict=True
        ):
            rows.append([case, num(float(score), 3), severity, reasons])
        return rows
    listed = (phase_results(results, ML).get("anomalies") or {}).get("topAnomalies") or []
    for a in listed[:limit]:
        reasons = a.get("reasons") or []
        joined = "; ".join(map(str, reasons)) if isinstance(reasons, list) else str(reasons)
        score = a.get("score")
        rows.append(
            [
                a.get("caseId"),
                num(float(score), 3) if score is not None else "n/a",
                a.get("severity"),
                joined,
            ]
        )
    return rows


def _anomaly_block(
    results: Mapping[str, Any],
    events: pd.DataFrame | None,
    anomalies: pd.DataFrame | None,
    workdir: Path,
    sheet: StyleSheet1,
) -> list[Flowable]:
    anomaly = phase_results(results, ML).get("anomalies") or {}
    story: list[Flowable] = [PageBreak(), Paragraph("Anomalies", sheet["Heading1"])]
    if anomaly:
        story.append(
            Paragraph(
                f"{num(anomaly.get('detected'))} anomalous cases: "
                f"{num(anomaly.get('highSeverity'))} high, "
                f"{num(anomaly.get('mediumSeverity'))} medium, "
                f"{num(anomaly.get('lowSeverity'))} low severity. Estimated false-positive rate "
                f"{num(anomaly.get('falsePositiveRate'))}.",
                sheet["Normal"],
            )
        )
        png = charts.anomaly_severity_chart(
            {
                "high": anomaly.get("highSeverity") or 0,
                "medium": anomaly.get("mediumSeverity") or 0,
                "low": anomaly.get("lowSeverity") or 0,
            },
            workdir / "anomalies.png",
            total_cases=case_count(results, events),
        )
        story.append(picture(png, _frame_width() * 0.7, 6 * cm))
    rows = _anomaly_rows(results, anomalies)
    if len(rows) > 1:
        w = _frame_width()
        story += [
            Paragraph(f"Top {len(rows) - 1} anomalous cases", sheet["Heading3"]),
            table(rows, sheet, [w * 0.16, w * 0.1, w * 0.11, w * 0.63]),
        ]
    elif not anomaly:
        story.append(Paragraph("Anomaly detection was not run.", sheet["Note"]))
    return story


def _prediction_block(ml: Mapping[str, Any], sheet: StyleSheet1) -> list[Flowable]:
    story: list[Flowable] = [Paragraph("Predictions", sheet["Heading1"])]
    predictions = ml.get("predictions") or {}
    cycle = predictions.get("cycleTimePrediction") or {}
    path = predictions.get("pathPrediction") or {}
    if not (cycle or path):
        return [*story, Paragraph("Predictions were not computed.", sheet["Note"])]
    rows: list[list[Any]] = [["Prediction", "Figure", "Value", "Method"]]
    if cycle:
        rows.append(["Cycle time", "Accuracy", num(cycle.get("accuracy")), cycle.get("method", "")])
        rows.append(
            ["Cycle time", "Mean absolute error", cycle.get("meanAbsoluteError", "n/a"), ""]
        )
    if path:
        rows.append(
            ["Next activity", "Accuracy", num(path.get("accuracy")), path.get("method", "")]
        )
        rows.append(["Next activity", "Confidence", num(path.get("confidence")), ""])
    w = _frame_width()
    story.append(table(rows, sheet, [w * 0.18, w * 0.22, w * 0.15, w * 0.45]))
    if cycle.get("accuracyDefinition"):
        story.append(Paragraph(f"Accuracy: {text(cycle['accuracyDefinition'])}", sheet["Small"]))
    return story


def _pattern_block(ml: Mapping[str, Any], sheet: StyleSheet1) -> list[Flowable]:
    patterns = ml.get("patterns") or {}
    if not patterns:
        return []
    critical = [c for c in patterns.get("critical") or [] if isinstance(c, Mapping)]
    block: list[Flowable] = [
        Paragraph("Patterns", sheet["Heading1"]),
        Paragraph(
            f"{num(patterns.get('frequentPatterns'))} frequent, "
            f"{num(patterns.get('rarePatterns'))} rare patterns and "
            f"{num(patterns.get('criticalPaths'))} critical paths.",
            sheet["Normal"],
        ),
    ]
    if critical:
        rows: list[list[Any]] = [["Critical path", "Cases", "Median duration"]]
        for c in critical[:6]:
            rows.append(
                [
                    variant_text(c.get("variant") or []),
                    num(c.get("cases")),
                    _hours(c.get("medianDurationHours")),
                ]
            )
        w = _frame_width()
        block.append(table(rows, sheet, [w * 0.66, w * 0.12, w * 0.22]))
    return [KeepTogether(block)]


def _ml_section(
    results: Mapping[str, Any],
    events: pd.DataFrame | None,
    anomalies: pd.DataFrame | None,
    workdir: Path,
    sheet: StyleSheet1,
) -> list[Flowable]:
    ml = phase_results(results, ML)
    return (
        _anomaly_block(results, events, anomalies, workdir, sheet)
        + _prediction_block(ml, sheet)
        + _pattern_block(ml, sheet)
    )


def _closing_sections(results: Mapping[str, Any], sheet: StyleSheet1) -> list[Flowable]:
    story: list[Flowable] = [PageBreak(), Paragraph("Recommendations", sheet["Heading1"])]
    recs = [r for r in results.get("recommendations") or [] if isinstance(r, Mapping)]
    w = _frame_width()
    if recs:
        story.append(table(recommendation_rows(recs, sheet), sheet, [w * 0.12, w * 0.88]))
    else:
        story.append(Paragraph("No recommendation applies to this log.", sheet["Normal"]))

    loading = phase_results(results, LOADING)
    errors = [e for e in loading.get("validationErrors") or [] if isinstance(e, Mapping)]
    story.append(Paragraph("Data quality", sheet["Heading1"]))
    if loading:
        story.append(
            Paragraph(
                f"{num(loading.get('recordsLoaded'))} records loaded, "
                f"{num(loading.get('validRecords'))} valid, {num(loading.get('errorRecords'))} "
                f"with errors; data-quality score {num(loading.get('dataQualityScore'))}.",
                sheet["Normal"],
            )
        )
        if errors:
            rows: list[list[Any]] = [["Validation issue", "Records", "Resolved"]]
            rows += [[e.get("type"), num(e.get("count")), num(e.get("resolved"))] for e in errors]
            story.append(table(rows, sheet, [w * 0.6, w * 0.2, w * 0.2]))
    else:
        story.append(Paragraph("Data validation was not run.", sheet["Note"]))

    story.append(Paragraph("How each figure was computed", sheet["Heading1"]))
    methods = method_texts(results)
    if methods:
        rows = [["Figure", "Method"], *[[label, value] for label, value in methods]]
        story.append(table(rows, sheet, [w * 0.35, w * 0.65]))
    else:
        story.append(Paragraph("The document carries no method descriptions.", sheet["Note"]))
    perf = results.get("performance") or {}
    if perf.get("totalExecutionTime"):
        story.append(Spacer(1, 0.3 * cm))
        story.append(
            Paragraph(f"Total execution time: {text(perf['totalExecutionTime'])}.", sheet["Note"])
        )
    return story


def write_analysis_report(
    pdf_path: Path,
    results: dict[str, Any],
    events: pd.DataFrame,
    dfg: DirectlyFollows,
    process_map_png: Path | None,
    anomalies: pd.DataFrame | None,
    workdir: Path,
) -> Path:
    """Write the full analysis report; chart PNGs go to `workdir`."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    sheet = styles()
    story = _summary_section(results, events, sheet)
    story += _discovery_section(results, events, dfg, process_map_png, workdir, sheet)
    story += _ml_section(results, events, anomalies, workdir, sheet)
    story += _closing_sections(results, sheet)
    title = f"Process Mining Analysis Report — {results.get('operationName') or 'analysis'}"
    return build_pdf(pdf_path, story, title)
