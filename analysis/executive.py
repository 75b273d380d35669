"""Report Generation: a short executive summary as PDF and as a PowerPoint deck.

Works from a results document alone (a prior analysis): the event frame and the DFG are optional
and only add the process map; every figure otherwise comes from the document.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from pptx import Presentation
from pptx.dml.color import RGBColor
from pptx.slide import Slide
from pptx.util import Emu, Inches, Pt
from reportlab.lib.units import cm
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    NextPageTemplate,
    PageBreak,
    Paragraph,
    Spacer,
)

from analysis import charts
from analysis.dfg import DirectlyFollows, compute_dfg
from analysis.errors import AnalysisError, InvalidParameter
from analysis.performance import bottleneck_line
from analysis.process_map import render_process_map
from analysis.progress import Progress
from analysis.recommendations import phase_results
from analysis.report_pdf import (
    DISCOVERY,
    LANDSCAPE,
    build_pdf,
    findings,
    frame_size,
    key_figures,
    not_computed,
    picture,
    recommendation_rows,
    styles,
    table,
    text,
)

FORMAT_FIELD = "parameters.exportFormats"
_FORMATS = {"pdf": "PDF", "powerpoint": "PowerPoint", "pptx": "PowerPoint"}
# a readable map on one slide/page: fewer boxes than the full report's map
EXEC_MAP_ACTIVITIES, EXEC_MAP_EDGES = 15, 30


# python-pptx has no annotations: its colour constructor, typed
_rgb: Callable[[int, int, int], RGBColor] = RGBColor


_BLUE = _rgb(0x2B, 0x6C, 0xB0)
_GREY = _rgb(0x4A, 0x55, 0x68)
_PRIORITY_RGB = {
    "High": _rgb(0xC5, 0x30, 0x30),
    "Medium": _rgb(0xDD, 0x8A, 0x1E),
    "Low": _GREY,
}


def normalise_formats(formats: Sequence[str]) -> list[str]:
    """Canonical format names ("PDF", "PowerPoint") in the given order, without repeats."""
    if isinstance(formats, str):
        formats = [formats]
    out: list[str] = []
    for f in formats:
        key = f.strip().lower() if isinstance(f, str) else None
        if key not in _FORMATS:
            raise InvalidParameter(
                f"Unknown export format {f!r}; use 'PDF' or 'PowerPoint'", field=FORMAT_FIELD
            )
        if _FORMATS[key] not in out:
            out.append(_FORMATS[key])
    if not out:
        raise InvalidParameter("Choose at least one export format", field=FORMAT_FIELD)
    return out


def _assets(
    tmp: Path,
    results: Mapping[str, Any],
    events: pd.DataFrame | None,
    dfg: DirectlyFollows | None,
) -> tuple[dict[str, Path], list[str]]:
    """Pictures for the summary and notes on the ones that could not be drawn."""
    assets: dict[str, Path] = {}
    notes: list[str] = []
    if dfg is None and events is not None and len(events):
        dfg = compute_dfg(events)
    if dfg is not None and dfg.activity_counts:
        try:
            pm = render_process_map(
                dfg,
                tmp / "map.svg",
                tmp / "map.png",
                max_activities=EXEC_MAP_ACTIVITIES,
                max_edges=EXEC_MAP_EDGES,
                title="Process map (most frequent paths)",
            )
            if pm.png_path is not None:
                assets["map"] = pm.png_path
        except AnalysisError as exc:  # the summary is still useful without the picture
            notes.append(f"Process map not drawn: {exc.message}")
    else:
        notes.append("Process map not drawn: the event log was not available")
    perf = phase_results(results, DISCOVERY).get("performanceMetrics") or {}
    bottlenecks = [b for b in perf.get("bottlenecks") or [] if isinstance(b, Mapping)]
    if bottlenecks:
        assets["bottlenecks"] = charts.bottleneck_chart(bottlenecks, tmp / "bottlenecks.png", 5)
    return assets, notes


def _recommendations(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in results.get("recommendations") or [] if isinstance(r, Mapping)]


def _bottleneck_lines(results: Mapping[str, Any], limit: int = 3) -> list[str]:
    perf = phase_results(results, DISCOVERY).get("performanceMetrics") or {}
    lines = []
    for b in [b for b in perf.get("bottlenecks") or [] if isinstance(b, Mapping)][:limit]:
        lines.append(bottleneck_line(b))  # median and mean wait, share of all waiting
    if not lines and perf.get("bottleneckActivities"):
        lines = [str(a) for a in perf["bottleneckActivities"][:limit]]
    return lines


def _title(results: Mapping[str, Any]) -> str:
    return str(results.get("operationName") or "Process mining analysis")


def _write_pdf(
    path: Path,
    results: Mapping[str, Any],
    events: pd.DataFrame | None,
    assets: Mapping[str, Path],
    notes: Sequence[str],
) -> Path:
    sheet = styles()
    width, _ = frame_size()
    story: list[Flowable] = [
        Paragraph("Executive Summary", sheet["Title"]),
        Paragraph(text(_title(results)), sheet["Heading2"]),
        Paragraph(
            f"Status: {text(results.get('status') or 'unknown')} · generated "
            f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            sheet["Note"],
        ),
        Spacer(1, 0.3 * cm),
    ]
    headline = findings(results, events)
    if headline:
        story.append(Paragraph("Main findings", sheet["Heading1"]))
        story += [Paragraph("• " + text(f), sheet["Normal"]) for f in headline]
    figures = key_figures(results, events)
    if figures:
        story += [
            Paragraph("Key figures", sheet["Heading1"]),
            table(figures, sheet, [6 * cm, width - 6 * cm], header=False),
        ]
    missing = [*not_computed(results), *notes]
    if missing:
        story.append(Paragraph("Not included: " + text("; ".join(missing)) + ".", sheet["Note"]))
    recs = _recommendations(results)
    story.append(PageBreak())
    story.append(Paragraph("Recommendations", sheet["Heading1"]))
    if recs:
        story.append(
            table(recommendation_rows(recs[:6], sheet, False), sheet, [width * 0.12, width * 0.88])
        )
    else:
        story.append(Paragraph("No recommendation applies to this log.", sheet["Normal"]))
    if "bottlenecks" in assets:
        story.append(
            KeepTogether(
                [
                    Paragraph("Bottlenecks", sheet["Heading1"]),
                    picture(assets["bottlenecks"], width, 7 * cm),
                ]
            )
        )
    if "map" in assets:
        map_w, map_h = frame_size(LANDSCAPE)
        story += [
            NextPageTemplate("landscape"),
            PageBreak(),
            Paragraph("Process map", sheet["Heading1"]),
            picture(assets["map"], map_w, map_h - 2 * cm),
        ]
    return build_pdf(path, story, f"Executive Summary — {_title(results)}")


# --------------------------------------------------------------------------- PowerPoint


def _in(inches: float) -> int:
    """EMU for a length in inches (python-pptx lengths are EMU ints)."""
    return int(Inches(inches))


def _heading(slide: Slide, title: str) -> None:
    assert slide.shapes.title is not None
    slide.shapes.title.text = title
    for p in slide.shapes.title.text_frame.paragraphs:
        for r in p.runs:
            r.font.size, r.font.bold, r.font.color.rgb = Pt(30), True, _BLUE


def _bullets(
    slide: Slide, lines: Sequence[str], left: int, top: int, width: int, height: int, size: int = 16
) -> None:
    frame = slide.shapes.add_textbox(Emu(left), Emu(top), Emu(width), Emu(height)).text_frame
    frame.word_wrap = True
    for i, line in enumerate(lines):
        p = frame.paragraphs[0] if i == 0 else frame.add_paragraph()
        p.text = "• " + line
        p.space_after = Pt(6)
        for r in p.runs:
            r.font.size = Pt(size)


def _picture(slide: Slide, path: Path, left: int, top: int, width: int, height: int) -> None:
    """Add a picture scaled to fit the box (aspect ratio kept), centred horizontally."""
    pic = slide.shapes.add_picture(str(path), Emu(left), Emu(top))
    scale = min(width / pic.width, height / pic.height)
    pic.width, pic.height = Emu(int(pic.width * scale)), Emu(int(pic.height * scale))
    pic.left = Emu(int(left + (width - pic.width) / 2))


def _table(
    slide: Slide,
    rows: Sequence[Sequence[str]],
    left: int,
    top: int,
    width: int,
    col_fractions: Sequence[float],
    size: int = 12,
    header: bool = True,
) -> None:
    shape = slide.shapes.add_table(
        len(rows), len(rows[0]), Emu(left), Emu(top), Emu(width), Emu(_in(0.3) * len(rows))
    )
    tbl = shape.table
    for j, frac in enumerate(col_fractions):
        tbl.columns[j].width = Emu(int(width * frac))
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            cell = tbl.cell(i, j)
            cell.text = str(value)
            for p in cell.text_frame.paragraphs:
                for r in p.runs:
                    r.font.size = Pt(size)
                    r.font.bold = header and i == 0
    if not header:
        tbl.first_row = False


def _write_pptx(
    path: Path,
    results: Mapping[str, Any],
    events: pd.DataFrame | None,
    assets: Mapping[str, Path],
    notes: Sequence[str],
) -> Path:
    deck = Presentation()
    slide_w, slide_h = _in(13.333), _in(7.5)  # 16:9
    deck.slide_width, deck.slide_height = Emu(slide_w), Emu(slide_h)
    full_w = slide_w - _in(1.0)
    left, top = _in(0.5), _in(1.4)
    body_h = slide_h - top - _in(0.4)

    slide = deck.slides.add_slide(deck.slide_layouts[0])
    assert slide.shapes.title is not None
    slide.shapes.title.text = "Process Mining — Executive Summary"
    subtitle = slide.placeholders[1]
    subtitle.text = (
        f"{_title(results)}\nStatus: {results.get('status') or 'unknown'} · "
        f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d')}"
    )

    slide = deck.slides.add_slide(deck.slide_layouts[5])
    _heading(slide, "Key figures")
    figures = key_figures(results, events)
    if figures:
        _table(slide, figures, left, top, _in(5.8), [0.5, 0.5], size=13, header=False)
    lines = findings(results, events) + [f"Not included: {m}" for m in not_computed(results)]
    _bullets(slide, lines or ["No figures were computed."], _in(6.7), top, _in(6.1), body_h)

    if "map" in assets:
        slide = deck.slides.add_slide(deck.slide_layouts[5])
        _heading(slide, "Process map")
        _picture(slide, assets["map"], left, _in(1.25), full_w, slide_h - _in(1.45))
    elif notes:
        slide = deck.slides.add_slide(deck.slide_layouts[5])
        _heading(slide, "Process map")
        _bullets(slide, list(notes), left, top, full_w, body_h)

    slide = deck.slides.add_slide(deck.slide_layouts[5])
    _heading(slide, "Bottlenecks")
    lines = _bottleneck_lines(results)
    if "bottlenecks" in assets:
        _picture(slide, assets["bottlenecks"], left, top, _in(7.6), body_h)
        _bullets(slide, lines, _in(8.4), top, _in(4.4), body_h, size=15)
    else:
        _bullets(slide, lines or ["Bottlenecks were not computed."], left, top, full_w, body_h)

    slide = deck.slides.add_slide(deck.slide_layouts[5])
    _heading(slide, "Recommendations")
    recs = _recommendations(results)[:5]
    if recs:
        rows = [["Priority", "Recommendation", "Expected improvement"]] + [
            [
                str(r.get("priority", "")),
                f"{r.get('category', '')}: {r.get('recommendation', '')}",
                str(r.get("expectedImprovement", "")),
            ]
            for r in recs
        ]
        _table(slide, rows, left, top, full_w, [0.1, 0.5, 0.4], size=11)
        tbl = next(s for s in slide.shapes if s.has_table).table
        for i, r in enumerate(recs, start=1):
            colour = _PRIORITY_RGB.get(str(r.get("priority")))
            for run in tbl.cell(i, 0).text_frame.paragraphs[0].runs:
                run.font.bold = True
                if colour is not None:
                    run.font.color.rgb = colour
    else:
        _bullets(slide, ["No recommendation applies to this log."], left, top, full_w, body_h)

    path.parent.mkdir(parents=True, exist_ok=True)
    deck.save(str(path))
    return path


def write_executive_summary(
    out_dir: Path,
    results: dict[str, Any],
    events: pd.DataFrame | None,
    dfg: DirectlyFollows | None,
    formats: Sequence[str] = ("PDF", "PowerPoint"),
    include_visualizations: bool = True,
    progress: Progress | None = None,
) -> list[Path]:
    """Write executive_summary.pdf and/or executive_summary.pptx into `out_dir`."""
    progress = progress or Progress()
    kinds = normalise_formats(formats)  # fail before any work on a bad parameter
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = len(kinds) + 1
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="pmops-executive-") as tmp_name:
        progress.update(0, total, "Drawing summary pictures")
        assets: dict[str, Path] = {}
        notes: list[str] = []
        if include_visualizations:
            assets, notes = _assets(Path(tmp_name), results, events, dfg)
        for i, kind in enumerate(kinds, start=1):
            progress.update(i, total, f"Writing executive summary ({kind})")
            if kind == "PDF":
                written.append(
                    _write_pdf(out_dir / "executive_summary.pdf", results, events, assets, notes)
                )
            else:
                written.append(
                    _write_pptx(out_dir / "executive_summary.pptx", results, events, assets, notes)
                )
        progress.update(total, total, "Executive summary written")
    return written
