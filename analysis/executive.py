"""Report Generation: a short executive summary as PDF and as a PowerPoint deck.

Works from a results document alone (a prior analysis): the event frame and the DFG are optional
and only add the process map; without them the analysis's own map (its SVG, `map_svg`) is turned
into the picture by `rsvg-convert` (Debian's librsvg2-bin). Every figure otherwise comes from the
document. Texts pass through `analysis.i18n.tr` (`lang`: "en" or "ja"); the title is the
operation's name (`title`), else the document's operation name.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
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
from analysis.i18n import register_ja, tr
from analysis.performance import bottleneck_line
from analysis.prediction_report import (
    cycle_table_rows,
    next_table_rows,
    prediction_flowables,
    prediction_notes,
    predictions_of,
)
from analysis.process_map import render_process_map
from analysis.progress import Progress
from analysis.recommendations import phase_results
from analysis.report_pdf import (
    DISCOVERY,
    build_pdf,
    document_texts,
    findings,
    frame_size,
    key_figures,
    map_picture,
    not_computed,
    picture,
    recommendation_rows,
    report_language,
    styles,
    table,
    text,
)

FORMAT_FIELD = "parameters.exportFormats"
_FORMATS = {"pdf": "PDF", "powerpoint": "PowerPoint", "pptx": "PowerPoint"}
# a readable map on one slide/page: fewer boxes than the full report's map
EXEC_MAP_ACTIVITIES, EXEC_MAP_EDGES = 15, 30
# an earlier analysis's map SVG as a picture: the PNG resolution of analysis.process_map, and
# at most this many pixels on the longer side
SVG_DPI, SVG_MAX_PIXELS = 110, 2420
SVG_TIMEOUT_SECONDS = 60.0

register_ja(
    {
        "Process map (most frequent paths)": "プロセスマップ（頻度の高い経路）",
        "Process map not drawn: {reason}": "プロセスマップは描画されていません: {reason}",
        "the event log was not available": "イベントログを利用できませんでした",
        "Executive Summary": "エグゼクティブサマリー",
        "Executive Summary — {title}": "エグゼクティブサマリー — {title}",
        "Source analysis: {name}": "元の分析: {name}",
        "Not included: {items}.": "含まれていない項目: {items}。",
        "Not included: {item}": "含まれていない項目: {item}",
        "Process Mining — Executive Summary": "プロセスマイニング — エグゼクティブサマリー",
        "Status: {status} · {date}": "ステータス: {status} · {date}",
        "{activity}: {wait} mean wait, {share}% of all waiting": "{activity}: 平均待ち時間 "
        "{wait}、全待ち時間の {share}%",
        "{activity}: {wait} mean wait": "{activity}: 平均待ち時間 {wait}",
        "{activity}: {share}% of all waiting": "{activity}: 全待ち時間の {share}%",
        "Expected improvement": "期待される改善",
    }
)


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


_SVG_SIZE = re.compile(r'<svg[^>]*?\swidth="([\d.]+)pt"[^>]*?\sheight="([\d.]+)pt"', re.S)


def svg_to_png(svg_path: Path, png_path: Path) -> Path:
    """A process map SVG (graphviz's, sized in points) as a PNG at the map's resolution, the
    longer side capped, drawn by `rsvg-convert` (pango: CJK names print with the CJK font)."""
    tool = shutil.which("rsvg-convert")
    if tool is None:
        raise AnalysisError(
            "rsvg-convert was not found on PATH; install librsvg2-bin to draw the map",
            code="rsvg_missing",
        )
    head = Path(svg_path).read_bytes()[:4096].decode("utf-8", "replace")
    size = _SVG_SIZE.search(head)
    args = [tool, "--format=png", "--background-color=white"]
    if size is not None:
        width_pt, height_pt = float(size.group(1)), float(size.group(2))
        scale = min(SVG_DPI / 72, SVG_MAX_PIXELS / max(width_pt, height_pt, 1.0))
        args += [f"--width={max(1, round(width_pt * scale))}"]
        args += [f"--height={max(1, round(height_pt * scale))}"]
    args += ["--output", str(png_path), str(svg_path)]
    try:
        done = subprocess.run(args, capture_output=True, timeout=SVG_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AnalysisError(
            f"rsvg-convert took longer than {SVG_TIMEOUT_SECONDS:.0f} s", code="rsvg_timeout"
        ) from exc
    if done.returncode != 0 or not Path(png_path).exists():
        message = done.stderr.decode("utf-8", "replace").strip()[:300]
        raise AnalysisError(f"rsvg-convert failed: {message}", code="rsvg_failed")
    return Path(png_path)


def _assets(
    tmp: Path,
    results: Mapping[str, Any],
    events: pd.DataFrame | None,
    dfg: DirectlyFollows | None,
    lang: str = "en",
    map_svg: Path | None = None,
) -> tuple[dict[str, Path], list[str]]:
    """Pictures for the summary and notes on the ones that could not be drawn: the map from
    the log when there is one, else the analysis's own map SVG."""
    assets: dict[str, Path] = {}
    notes: list[str] = []
    if dfg is None and events is not None and len(events):
        dfg = compute_dfg(events)
    not_drawn = tr("Process map not drawn: {reason}", lang)
    if dfg is not None and dfg.activity_counts:
        try:
            pm = render_process_map(
                dfg,
                tmp / "map.svg",
                tmp / "map.png",
                max_activities=EXEC_MAP_ACTIVITIES,
                max_edges=EXEC_MAP_EDGES,
                title=tr("Process map (most frequent paths)", lang),
            )
            if pm.png_path is not None:
                assets["map"] = pm.png_path
        except AnalysisError as exc:  # the summary is still useful without the picture
            notes.append(not_drawn.format(reason=exc.message))
    elif map_svg is not None and Path(map_svg).is_file():
        try:
            assets["map"] = svg_to_png(Path(map_svg), tmp / "map.png")
        except (AnalysisError, OSError) as exc:
            reason = exc.message if isinstance(exc, AnalysisError) else str(exc)
            notes.append(not_drawn.format(reason=reason))
    else:
        notes.append(not_drawn.format(reason=tr("the event log was not available", lang)))
    perf = phase_results(results, DISCOVERY).get("performanceMetrics") or {}
    bottlenecks = [b for b in perf.get("bottlenecks") or [] if isinstance(b, Mapping)]
    if bottlenecks:
        assets["bottlenecks"] = charts.bottleneck_chart(
            bottlenecks, tmp / "bottlenecks.png", 5, lang=lang
        )
    return assets, notes


def _recommendations(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in results.get("recommendations") or [] if isinstance(r, Mapping)]


def _bottleneck_lines(results: Mapping[str, Any], limit: int = 3, lang: str = "en") -> list[str]:
    perf = phase_results(results, DISCOVERY).get("performanceMetrics") or {}
    lines = []
    for b in [b for b in perf.get("bottlenecks") or [] if isinstance(b, Mapping)][:limit]:
        lines.append(bottleneck_line(b, lang))  # median and mean wait, share of all waiting
    if not lines and perf.get("bottleneckActivities"):
        lines = [str(a) for a in perf["bottleneckActivities"][:limit]]
    return lines


def _title(results: Mapping[str, Any], title: str | None = None, lang: str = "en") -> str:
    """The operation's name, else the document's operation name."""
    return str(title or results.get("operationName") or tr("Process mining analysis", lang))


def _source_line(results: Mapping[str, Any], title: str | None, lang: str) -> str | None:
    """'Source analysis: name' when the summary's name differs from the analysis it reads."""
    source = results.get("operationName")
    if title and source and str(source) != title:
        return tr("Source analysis: {name}", lang).format(name=source)
    return None


def _status_text(results: Mapping[str, Any], lang: str, with_time: bool = True) -> str:
    now = dt.datetime.now(dt.UTC)
    status = tr(str(results.get("status") or "unknown"), lang)
    if with_time:
        return tr("Status: {status} · generated {time}", lang).format(
            status=status, time=now.strftime("%Y-%m-%d %H:%M UTC")
        )
    return tr("Status: {status} · {date}", lang).format(
        status=status, date=now.strftime("%Y-%m-%d")
    )


def _write_pdf(
    path: Path,
    results: Mapping[str, Any],
    events: pd.DataFrame | None,
    assets: Mapping[str, Path],
    notes: Sequence[str],
    lang: str = "en",
    title: str | None = None,
    remarks: Sequence[str] = (),
) -> Path:
    """The summary PDF; `remarks` (such as a missing font) print below the status line."""
    sheet = styles(lang)
    width, _ = frame_size()
    story: list[Flowable] = [
        Paragraph(text(tr("Executive Summary", lang)), sheet["Title"]),
        Paragraph(text(_title(results, title, lang)), sheet["Heading2"]),
    ]
    source = _source_line(results, title, lang)
    if source:
        story.append(Paragraph(text(source), sheet["Normal"]))
    story.append(Paragraph(text(_status_text(results, lang)), sheet["Note"]))
    story += [Paragraph(text(remark), sheet["Note"]) for remark in remarks]
    story.append(Spacer(1, 0.3 * cm))
    headline = findings(results, events, lang)
    if headline:
        story.append(Paragraph(text(tr("Main findings", lang)), sheet["Heading1"]))
        story += [Paragraph("• " + text(f), sheet["Normal"]) for f in headline]
    figures = key_figures(results, events, lang)
    if figures:
        story += [
            Paragraph(text(tr("Key figures", lang)), sheet["Heading1"]),
            table(figures, sheet, [6 * cm, width - 6 * cm], header=False),
        ]
    missing = [*not_computed(results, lang), *notes]
    if missing:
        line = tr("Not included: {items}.", lang).format(items="; ".join(missing))
        story.append(Paragraph(text(line), sheet["Note"]))
    if any(predictions_of(results)):  # the model beside its baselines
        story += prediction_flowables(results, sheet, width, table, lang)
    recs = _recommendations(results)
    story.append(PageBreak())
    story.append(Paragraph(text(tr("Recommendations", lang)), sheet["Heading1"]))
    if recs:
        rows = recommendation_rows(recs[:6], sheet, False, lang)
        story.append(table(rows, sheet, [width * 0.12, width * 0.88]))
    else:
        story.append(
            Paragraph(text(tr("No recommendation applies to this log.", lang)), sheet["Normal"])
        )
    if "bottlenecks" in assets:
        story.append(
            KeepTogether(
                [
                    Paragraph(text(tr("Bottlenecks", lang)), sheet["Heading1"]),
                    picture(assets["bottlenecks"], width, 7 * cm),
                ]
            )
        )
    if "map" in assets:
        story += [
            NextPageTemplate("landscape"),
            PageBreak(),
            Paragraph(text(tr("Process map", lang)), sheet["Heading1"]),
            map_picture(assets["map"], reserve=2 * cm),
        ]
    pdf_title = tr("Executive Summary — {title}", lang).format(title=_title(results, title, lang))
    return build_pdf(path, story, pdf_title, lang)


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


def _prediction_slide(
    deck: Any,
    results: Mapping[str, Any],
    left: int,
    top: int,
    width: int,
    slide_h: int,
    lang: str = "en",
) -> None:
    """The model beside its baselines (analysis.prediction_report), when predictions ran."""
    cycle_rows, next_rows = cycle_table_rows(results, lang), next_table_rows(results, lang)
    if not (cycle_rows or next_rows):
        return
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    _heading(slide, tr("Predictions", lang))
    y = top
    for rows, fractions in ((cycle_rows, [0.46, 0.2, 0.18, 0.16]), (next_rows, [0.6, 0.2, 0.2])):
        if rows:
            _table(slide, rows, left, y, width, fractions, size=12)
            y += _in(0.32) * len(rows) + _in(0.25)
    _bullets(
        slide, prediction_notes(results, lang), left, y, width, slide_h - y - _in(0.2), size=11
    )


def _recommendation_slide(
    deck: Any,
    results: Mapping[str, Any],
    left: int,
    top: int,
    width: int,
    body_h: int,
    lang: str = "en",
) -> None:
    """The top five recommendations, their priority in its colour."""
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    _heading(slide, tr("Recommendations", lang))
    recs = _recommendations(results)[:5]
    if recs:
        header = [tr(h, lang) for h in ("Priority", "Recommendation", "Expected improvement")]
        rows = [header] + [
            [
                tr(str(r.get("priority", "")), lang),
                f"{tr(str(r.get('category', '')), lang)}: {r.get('recommendation', '')}",
                str(r.get("expectedImprovement", "")),
            ]
            for r in recs
        ]
        _table(slide, rows, left, top, width, [0.1, 0.5, 0.4], size=11)
        tbl = next(s for s in slide.shapes if s.has_table).table
        for i, r in enumerate(recs, start=1):
            colour = _PRIORITY_RGB.get(str(r.get("priority")))
            for run in tbl.cell(i, 0).text_frame.paragraphs[0].runs:
                run.font.bold = True
                if colour is not None:
                    run.font.color.rgb = colour
    else:
        empty = [tr("No recommendation applies to this log.", lang)]
        _bullets(slide, empty, left, top, width, body_h)


def _write_pptx(
    path: Path,
    results: Mapping[str, Any],
    events: pd.DataFrame | None,
    assets: Mapping[str, Path],
    notes: Sequence[str],
    lang: str = "en",
    title: str | None = None,
    remarks: Sequence[str] = (),
) -> Path:
    """The summary deck; `remarks` (such as a missing font) close the key figures' bullets."""
    deck = Presentation()
    slide_w, slide_h = _in(13.333), _in(7.5)  # 16:9
    deck.slide_width, deck.slide_height = Emu(slide_w), Emu(slide_h)
    full_w = slide_w - _in(1.0)
    left, top = _in(0.5), _in(1.4)
    body_h = slide_h - top - _in(0.4)

    slide = deck.slides.add_slide(deck.slide_layouts[0])
    assert slide.shapes.title is not None
    slide.shapes.title.text = tr("Process Mining — Executive Summary", lang)
    subtitle = slide.placeholders[1]
    subtitle_lines = [_title(results, title, lang)]
    source = _source_line(results, title, lang)
    if source:
        subtitle_lines.append(source)
    subtitle_lines.append(_status_text(results, lang, with_time=False))
    subtitle.text = "\n".join(subtitle_lines)

    slide = deck.slides.add_slide(deck.slide_layouts[5])
    _heading(slide, tr("Key figures", lang))
    figures = key_figures(results, events, lang)
    if figures:
        _table(slide, figures, left, top, _in(5.8), [0.5, 0.5], size=13, header=False)
    lines = findings(results, events, lang) + [
        tr("Not included: {item}", lang).format(item=m) for m in not_computed(results, lang)
    ]
    lines += list(remarks)
    empty = [tr("No figures were computed.", lang)]
    _bullets(slide, lines or empty, _in(6.7), top, _in(6.1), body_h)

    if "map" in assets:
        slide = deck.slides.add_slide(deck.slide_layouts[5])
        _heading(slide, tr("Process map", lang))
        _picture(slide, assets["map"], left, _in(1.25), full_w, slide_h - _in(1.45))
    elif notes:
        slide = deck.slides.add_slide(deck.slide_layouts[5])
        _heading(slide, tr("Process map", lang))
        _bullets(slide, list(notes), left, top, full_w, body_h)

    slide = deck.slides.add_slide(deck.slide_layouts[5])
    _heading(slide, tr("Bottlenecks", lang))
    lines = _bottleneck_lines(results, lang=lang)
    if "bottlenecks" in assets:
        _picture(slide, assets["bottlenecks"], left, top, _in(7.6), body_h)
        _bullets(slide, lines, _in(8.4), top, _in(4.4), body_h, size=15)
    else:
        empty = [tr("Bottlenecks were not computed.", lang)]
        _bullets(slide, lines or empty, left, top, full_w, body_h)

    _prediction_slide(deck, results, left, top, full_w, slide_h, lang)

    _recommendation_slide(deck, results, left, top, full_w, body_h, lang)

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
    lang: str = "en",
    title: str | None = None,
    map_svg: Path | None = None,
) -> list[Path]:
    """Write executive_summary.pdf and/or executive_summary.pptx into `out_dir`, in `lang`,
    titled `title` (the operation's name; default: the document's operation name). `map_svg`:
    the analysis's process map, drawn when the event log is not at hand."""
    progress = progress or Progress()
    kinds = normalise_formats(formats)  # fail before any work on a bad parameter
    names = [*document_texts(results), title or ""]
    if dfg is not None:
        names += map(str, dfg.activity_counts)
    lang, font_notes = report_language(lang, *names)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = len(kinds) + 1
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="pmops-executive-") as tmp_name:
        progress.update(0, total, "Drawing summary pictures")
        assets: dict[str, Path] = {}
        notes: list[str] = []
        if include_visualizations:
            assets, notes = _assets(Path(tmp_name), results, events, dfg, lang, map_svg)
        for i, kind in enumerate(kinds, start=1):
            progress.update(i, total, f"Writing executive summary ({kind})")
            write = _write_pdf if kind == "PDF" else _write_pptx
            suffix = "pdf" if kind == "PDF" else "pptx"
            path = out_dir / f"executive_summary.{suffix}"
            written.append(write(path, results, events, assets, notes, lang, title, font_notes))
        progress.update(total, total, "Executive summary written")
    return written
