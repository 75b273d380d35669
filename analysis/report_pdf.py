"""The analysis report as a PDF a process owner reads (reportlab).

Everything shown comes from the results document, the event frame and the DFG; a section whose
figures were not computed (a phase skipped by options) says so instead of disappearing silently.
Helpers that read the document (`key_figures`, `method_texts`, `not_computed`) are shared with
the executive summary.

Texts are written in English and pass through `analysis.i18n.tr` (`lang`: "en" or "ja"; the
Japanese table is registered below). Latin text prints in DejaVu Sans, CJK text in the TrueType
CJK font `analysis.fonts` finds: a Japanese report uses the CJK font for its body, and `text`
marks every run of characters that only the other font has, so log-derived names (activities,
resources, file names) print in either language.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pandas as pd
from reportlab import rl_config
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

from analysis import fonts
from analysis.columns import CASE
from analysis.dfg import DirectlyFollows
from analysis.formatting import hours_text
from analysis.i18n import register_ja, tr, tr_duration
from analysis.performance import bottleneck_sentence
from analysis.recommendations import (
    F_SCORE_LABEL,
    PRECISION_LABEL,
    phase_results,
    quality_sentence,
)

# images go into the PDF as binary Flate streams, not ASCII85 text: reportlab's ASCII85 encoder
# is pure Python here (~0.3 s for the report's images) and makes the file ~25 % larger
rl_config.useA85 = 0

LOADING = "Data Loading and Validation"
DISCOVERY = "Process Discovery"
ML = "Machine Learning Analysis"
REPORTING = "Report Generation"
PHASES = (LOADING, DISCOVERY, ML, REPORTING)

FONT, FONT_BOLD = "DejaVuSans", "DejaVuSans-Bold"
# reportlab's name of the CJK font (regular only: bold CJK text prints regular)
CJK_FONT = "CJKGothic"
_HEADER_BG = colors.HexColor("#2b6cb0")
_ROW_BG = colors.HexColor("#f1f5fb")
_PRIORITY_COLOURS = {"High": "#c53030", "Medium": "#dd8a1e", "Low": "#4a5568"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_METHOD_KEY = re.compile(r"(method|definition|definitions|algorithm)$", re.IGNORECASE)

register_ja(
    {
        # values and phases
        "not computed": "未計算",
        "yes": "はい",
        "no": "いいえ",
        "n/a": "該当なし",
        "unknown": "不明",
        "Completed": "完了",
        "Failed": "失敗",
        "Cancelled": "キャンセル",
        "Skipped": "スキップ",
        "High": "高",
        "Medium": "中",
        "Low": "低",
        "Medium-High": "やや高",
        "high": "高",
        "medium": "中",
        "low": "低",
        LOADING: "データの読み込みと検証",
        DISCOVERY: "プロセス発見",
        ML: "機械学習分析",
        REPORTING: "レポート生成",
        "Missing Timestamp": "タイムスタンプの欠落",
        "Unparseable Timestamp": "解釈できないタイムスタンプ",
        "Missing Case ID": "ケース ID の欠落",
        "Missing Activity": "アクティビティの欠落",
        "Duplicate Event": "重複イベント",
        # key figures
        "Events analysed": "分析したイベント数",
        "Cases": "ケース数",
        "Activities": "アクティビティ数",
        "Process variants": "プロセスバリアント",
        "Time range": "期間",
        "{start} to {end}": "{start} ～ {end}",
        "Average cycle time": "平均サイクルタイム",
        "Median cycle time": "サイクルタイムの中央値",
        "Top bottleneck": "最大のボトルネック",
        "Process efficiency (%)": "プロセス効率 (%)",
        "Model fitness": "モデルの適合度 (fitness)",
        "Anomalous cases": "異常ケース数",
        "High-severity anomalies": "重大度「高」の異常",
        "Data quality score": "データ品質スコア",
        "Overall confidence score": "総合信頼度スコア",
        # findings
        "{cases} cases followed {variants} different paths (variants) between {start} and "
        "{end}.": "{start} から {end} までの {cases} 件のケースは、{variants} 通りの異なる経路"
        "（バリアント）をたどりました。",
        "{cases} cases followed {variants} different paths (variants).": "{cases} 件のケースは、"
        "{variants} 通りの異なる経路（バリアント）をたどりました。",
        "{cases} cases between {start} and {end}.": "{start} から {end} までのケースは "
        "{cases} 件です。",
        "{cases} cases.": "ケースは {cases} 件です。",
        "A case takes {mean} on average (median {median}).": "1 件のケースにかかる時間は平均 "
        "{mean}（中央値 {median}）です。",
        "The main bottleneck is '{top}': cases wait {wait} on average before it ({share}% of "
        "all waiting time).": "最大のボトルネックは「{top}」です。その前でケースは平均 {wait}"
        "待っています（全待ち時間の {share}%）。",
        "The main bottleneck is '{top}': cases wait {wait} on average before it.": "最大の"
        "ボトルネックは「{top}」です。その前でケースは平均 {wait}待っています。",
        "The main bottleneck is '{top}' ({share}% of all waiting time).": "最大のボトルネックは"
        "「{top}」です（全待ち時間の {share}%）。",
        "The main bottleneck is '{top}'.": "最大のボトルネックは「{top}」です。",
        "The discovered model fits the log with fitness {fitness}.": "発見したモデルのログへの"
        "適合度 (fitness) は {fitness} です。",
        "{detected} cases look anomalous, {high} of them with high severity.": "{detected} 件の"
        "ケースが異常と判定され、そのうち {high} 件は重大度「高」です。",
        # not computed
        "{name}: not run": "{name}: 未実行",
        "{label}: not computed": "{label}: 未計算",
        "Process model": "プロセスモデル",
        "Conformance check": "適合性チェック",
        "Performance metrics and bottlenecks": "パフォーマンス指標とボトルネック",
        "Anomaly detection": "異常検知",
        "Predictions": "予測",
        "Pattern mining": "パターンマイニング",
        # building blocks
        "Priority": "優先度",
        "Recommendation": "推奨事項",
        "Expected:": "期待される効果:",
        # recommendation categories (analysis/recommendations.py)
        "Process Optimization": "プロセス最適化",
        "Rework Reduction": "手戻りの削減",
        "Data Quality": "データ品質",
        "Risk Management": "リスク管理",
        "Compliance": "コンプライアンス",
        "How computed:": "算出方法:",
        "Page {page}": "{page} ページ",
        # sections
        "Status: {status} · generated {time}": "ステータス: {status} · 作成日時 {time}",
        "Process mining analysis": "プロセスマイニング分析",
        "analysis": "分析",
        "Process Mining Analysis Report": "プロセスマイニング分析レポート",
        "Process Mining Analysis Report — {name}": "プロセスマイニング分析レポート — {name}",
        "Key figures": "主要指標",
        "No figures were computed.": "計算された指標はありません。",
        "Main findings": "主な所見",
        "Top recommendations": "主な推奨事項",
        "Not computed in this analysis": "この分析で計算されなかった項目",
        "Process map": "プロセスマップ",
        "{activities} activities and {transitions} directly-follows transitions. Boxes are "
        "activities with their number of events (darker = more frequent); arrows carry the "
        "number of transitions and the mean time between the two activities; red arrows are the "
        "slowest transitions.": "アクティビティ {activities} 個、直接後続 (directly-follows) "
        "の遷移 {transitions} 本。箱はアクティビティとそのイベント数を表し、色が濃いほど頻度が"
        "高いことを示します。矢印には遷移の回数と 2 つのアクティビティ間の平均時間を記しています。"
        "赤い矢印は特に時間のかかる遷移です。",
        "The process map was not drawn.": "プロセスマップは描画されていません。",
        "{variants} variants (distinct activity sequences); model complexity {complexity} "
        "({activities} activities, {transitions} transitions).": "バリアント（異なるアクティビティ"
        "の順序）は {variants} 通りです。モデルの複雑さは {complexity}（アクティビティ "
        "{activities} 個、遷移 {transitions} 本）です。",
        "Variants were not computed.": "バリアントは計算されていません。",
        "Cycle time": "サイクルタイム",
        "Average cycle time {mean}, median {median}.": "平均サイクルタイムは {mean}、中央値は "
        "{median} です。",
        "Process efficiency {efficiency}%.": "プロセス効率は {efficiency}% です。",
        "Process efficiency was not computed.": "プロセス効率は計算されていません。",
        "Cycle times were not computed.": "サイクルタイムは計算されていません。",
        "Bottlenecks": "ボトルネック",
        "Activity": "アクティビティ",
        "Mean wait": "平均待ち時間",
        "Median wait": "待ち時間の中央値",
        "Total wait": "合計待ち時間",
        "Events": "イベント数",
        "Share of all waiting": "全待ち時間に占める割合",
        "Bottleneck activities: ": "ボトルネックとなっているアクティビティ: ",
        "Bottlenecks were not computed.": "ボトルネックは計算されていません。",
        " → … ({n} more steps) … → ": " → …（ほか {n} ステップ）… → ",
        "Case": "ケース",
        "Score": "スコア",
        "Severity": "重大度",
        "Reasons": "理由",
        "Anomalies": "異常",
        "{detected} anomalous cases: {high} high, {medium} medium, {low} low severity. "
        "Estimated false-positive rate {rate}.": "異常ケースは {detected} 件です（重大度 高 "
        "{high} 件、中 {medium} 件、低 {low} 件）。推定偽陽性率は {rate} です。",
        "Top {n} anomalous cases": "異常ケース 上位 {n} 件",
        "Anomaly detection was not run.": "異常検知は実行されていません。",
        "Predictions were not computed.": "予測は計算されていません。",
        "Prediction": "予測",
        "Figure": "指標",
        "Value": "値",
        "Method": "方法",
        "Mean absolute error": "平均絶対誤差",
        "Next activity": "次のアクティビティ",
        "Confidence": "信頼度",
        "Accuracy: {definition}": "精度: {definition}",
        "Patterns": "パターン",
        "{frequent} frequent, {rare} rare patterns and {critical} critical paths.": "頻出パターン "
        "{frequent} 件、まれなパターン {rare} 件、クリティカルパス {critical} 件です。",
        "Critical path": "クリティカルパス",
        "Median duration": "所要時間の中央値",
        "Recommendations": "推奨事項",
        "No recommendation applies to this log.": "このログに当てはまる推奨事項はありません。",
        "Data quality": "データ品質",
        "{loaded} records loaded, {valid} valid, {errors} with errors; data-quality score "
        "{score}.": "読み込んだレコードは {loaded} 件で、うち有効 {valid} 件、エラー {errors} "
        "件です。データ品質スコアは {score} です。",
        "Validation issue": "検証で見つかった問題",
        "Records": "レコード数",
        "Resolved": "解決済み",
        "Data validation was not run.": "データ検証は実行されていません。",
        "How each figure was computed": "各指標の算出方法",
        "Fonts": "フォント",
        "The document carries no method descriptions.": "結果ドキュメントに算出方法の説明は"
        "ありません。",
        "Total execution time: {time}.": "総実行時間: {time}。",
    }
)


# --------------------------------------------------------------------------- document reading


def text(value: Any) -> str:
    """Any value as Paragraph-safe markup text: control characters dropped, &, <, > escaped,
    and each run of characters that only one of the two fonts has set in that font."""
    return font_runs(escape(_CONTROL.sub("", str(value))))


def font_runs(markup: str) -> str:
    """Markup with every run of characters only the CJK font has (kanji, kana) wrapped in
    `<font face=CJK>` and every run only DejaVu has wrapped in `<font face=DejaVu>`; characters
    both have (or neither) print in the paragraph's own font."""
    cjk = _state.cjk_path
    if cjk is None or all(ord(ch) <= 0xFF for ch in markup):
        return markup
    latin, wide = fonts.codepoints(fonts.dejavu_path()), fonts.codepoints(cjk)
    out: list[str] = []
    run: list[str] = []
    run_face: str | None = None
    for ch in markup:
        code = ord(ch)
        face: str | None = None
        if code > 0xFF and (code in latin) != (code in wide):
            face = CJK_FONT if code in wide else FONT
        if face != run_face and run:
            joined = "".join(run)
            out.append(f'<font face="{run_face}">{joined}</font>' if run_face else joined)
            run = []
        run_face = face
        run.append(ch)
    if run:
        joined = "".join(run)
        out.append(f'<font face="{run_face}">{joined}</font>' if run_face else joined)
    return "".join(out)


def num(value: Any, digits: int = 2, lang: str = "en") -> str:
    """A figure as a reader expects it: ints with thousands separators, floats rounded."""
    if value is None:
        return tr("not computed", lang)
    if isinstance(value, bool):
        return tr("yes" if value else "no", lang)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return tr("n/a", lang)
        return f"{value:,.{digits}f}"
    return str(value)


def sentences(parts: Sequence[str], lang: str = "en") -> str:
    """Sentences joined as the language writes them (Japanese: no space between)."""
    return ("" if lang == "ja" else " ").join(p for p in parts if p)


def duration(value: Any, lang: str = "en") -> str:
    """A duration text of the document ("4.2 hours") in the report's language."""
    return tr_duration(str(value), lang) if value is not None else tr("n/a", lang)


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
    results: Mapping[str, Any], events: pd.DataFrame | None = None, lang: str = "en"
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
            rows.append((tr(label, lang), num(value, digits, lang)))

    add("Events analysed", _first(summary.get("recordsAnalyzed"), loading.get("validRecords")))
    add("Cases", case_count(results, events))
    add("Activities", _first(loading.get("activities"), model.get("activities")))
    add("Process variants", _first(summary.get("processVariants"), model.get("variants")))
    span = loading.get("timeRange") or {}
    if span.get("start") and span.get("end"):
        period = tr("{start} to {end}", lang).format(
            start=_date(span["start"]), end=_date(span["end"])
        )
        rows.append((tr("Time range", lang), period))
    for label, key in (
        ("Average cycle time", "averageCycleTime"),
        ("Median cycle time", "medianCycleTime"),
    ):
        if perf.get(key):
            rows.append((tr(label, lang), duration(perf[key], lang)))
    top = top_bottleneck(results)
    if top:
        rows.append((tr("Top bottleneck", lang), top))
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


def findings(
    results: Mapping[str, Any], events: pd.DataFrame | None = None, lang: str = "en"
) -> list[str]:
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
        has_variants = model.get("variants") is not None
        has_span = bool(span.get("start") and span.get("end"))
        template = {
            (True, True): "{cases} cases followed {variants} different paths (variants) "
            "between {start} and {end}.",
            (True, False): "{cases} cases followed {variants} different paths (variants).",
            (False, True): "{cases} cases between {start} and {end}.",
            (False, False): "{cases} cases.",
        }[(has_variants, has_span)]
        out.append(
            tr(template, lang).format(
                cases=f"{cases:,}",
                variants=f"{int(model['variants']):,}" if has_variants else "",
                start=_date(span["start"]) if has_span else "",
                end=_date(span["end"]) if has_span else "",
            )
        )
    if perf.get("averageCycleTime"):
        out.append(
            tr("A case takes {mean} on average (median {median}).", lang).format(
                mean=duration(perf["averageCycleTime"], lang),
                median=duration(perf.get("medianCycleTime"), lang),
            )
        )
    bottlenecks = [b for b in perf.get("bottlenecks") or [] if isinstance(b, Mapping)]
    top = top_bottleneck(results)
    if top:
        entry = next((b for b in bottlenecks if b.get("activity") == top), {})
        out.append(bottleneck_sentence(top, entry, lang))  # median and mean wait, share
    model_quality = quality_sentence(conf, lang)  # fitness always with precision
    if model_quality:
        out.append(model_quality)
    if anomalies.get("detected") is not None:
        out.append(
            tr("{detected} cases look anomalous, {high} of them with high severity.", lang).format(
                detected=f"{int(anomalies['detected']):,}",
                high=f"{int(anomalies.get('highSeverity') or 0):,}",
            )
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


def method_texts(results: Mapping[str, Any], lang: str = "en") -> list[tuple[str, str]]:
    """Every *method / *definition / algorithm text in the document, labelled by where it sits
    (the phase name in `lang`; the rest of the label and the text as the document has them)."""
    out: list[tuple[str, str]] = []
    for phase in results.get("phaseResults") or []:
        if not isinstance(phase, Mapping):
            continue
        phase_name = tr(str(phase.get("phaseName")), lang)
        for path, value in _walk(phase.get("results") or {}, []):
            out.append((f"{phase_name}: " + " › ".join(map(_words, path)), value))
    for section in ("summary", "performance"):
        for path, value in _walk(results.get(section) or {}, [section]):
            out.append((" › ".join(map(_words, path)), value))
    return out


def not_computed(results: Mapping[str, Any], lang: str = "en") -> list[str]:
    """Phases (and main figure groups) that the document does not contain."""
    out: list[str] = []
    present = {
        p.get("phaseName"): p for p in results.get("phaseResults") or [] if isinstance(p, Mapping)
    }
    for name in (LOADING, DISCOVERY, ML):
        phase = present.get(name)
        if phase is None:
            out.append(tr("{name}: not run", lang).format(name=tr(name, lang)))
        elif str(phase.get("status", "Completed")) != "Completed":
            out.append(f"{tr(name, lang)}: {tr(str(phase.get('status')), lang)}")
    checks = [
        (DISCOVERY, "processModel", "Process model"),
        (DISCOVERY, "conformance", "Conformance check"),
        (DISCOVERY, "performanceMetrics", "Performance metrics and bottlenecks"),
        (ML, "anomalies", "Anomaly detection"),
        (ML, "predictions", "Predictions"),
        (ML, "patterns", "Pattern mining"),
    ]
    for phase_name, key, label in checks:
        if phase_name in present and not phase_results(results, phase_name).get(key):
            out.append(tr("{label}: not computed", lang).format(label=tr(label, lang)))
    return out


# --------------------------------------------------------------------------- PDF building blocks


class _FontState:
    """What is registered with reportlab: DejaVu once, the CJK font once per file found."""

    dejavu = False
    cjk_path: Path | None = None
    registered_cjk: Path | None = None


_state = _FontState()


def register_fonts() -> bool:
    """Register DejaVu Sans (shipped with matplotlib) and the CJK font when one is installed;
    True when CJK text can print."""
    if not _state.dejavu:
        pdfmetrics.registerFont(TTFont(FONT, str(fonts.dejavu_path())))
        pdfmetrics.registerFont(TTFont(FONT_BOLD, str(fonts.dejavu_path(bold=True))))
        pdfmetrics.registerFontFamily(
            FONT, normal=FONT, bold=FONT_BOLD, italic=FONT, boldItalic=FONT_BOLD
        )
        _state.dejavu = True
    path = fonts.cjk_font_path()
    if path is not None and path != _state.registered_cjk:
        pdfmetrics.registerFont(TTFont(CJK_FONT, str(path)))
        pdfmetrics.registerFontFamily(
            CJK_FONT, normal=CJK_FONT, bold=CJK_FONT, italic=CJK_FONT, boldItalic=CJK_FONT
        )
        _state.registered_cjk = path
    _state.cjk_path = path
    return path is not None


def report_language(lang: str, *texts: str) -> tuple[str, list[str]]:
    """The language the report is written in and a note for the reader about fonts: Japanese
    needs the CJK font (without it the report falls back to English), and so do log-derived
    names with CJK characters (they print as boxes without it)."""
    if register_fonts():
        return lang, []
    if lang == "ja" or fonts.needs_cjk(*texts):
        return "en", [fonts.missing_font_note()]
    return lang, []


def document_texts(results: Mapping[str, Any]) -> list[str]:
    """The names a report prints from the document (operation, activities, variants,
    recommendations): enough to tell whether CJK characters occur."""
    out = [str(results.get("operationName") or "")]
    perf = phase_results(results, DISCOVERY).get("performanceMetrics") or {}
    out += [str(b.get("activity")) for b in perf.get("bottlenecks") or [] if isinstance(b, Mapping)]
    out += [str(a) for a in perf.get("bottleneckActivities") or []]
    patterns = phase_results(results, ML).get("patterns") or {}
    for group in ("frequent", "critical"):
        for p in patterns.get(group) or []:
            if isinstance(p, Mapping):
                out += [str(a) for a in p.get("variant") or []]
    for r in results.get("recommendations") or []:
        if isinstance(r, Mapping):
            out.append(str(r.get("recommendation") or ""))
    return out


def styles(lang: str = "en") -> StyleSheet1:
    """The paragraph styles; a Japanese report sets its body in the CJK font."""
    cjk = register_fonts() and lang == "ja"
    regular, bold = (CJK_FONT, CJK_FONT) if cjk else (FONT, FONT_BOLD)
    sheet = getSampleStyleSheet()
    for name in ("Normal", "BodyText", "Title", "Heading1", "Heading2", "Heading3", "Italic"):
        sheet[name].fontName = bold if name.startswith(("Title", "Heading")) else regular
    sheet["Normal"].fontSize, sheet["Normal"].leading = 9.5, 12.5
    sheet["Heading1"].textColor = _HEADER_BG
    sheet["Heading2"].textColor = colors.HexColor("#2d3748")
    sheet.add(ParagraphStyle("Cell", parent=sheet["Normal"], fontSize=8, leading=10))
    sheet.add(ParagraphStyle("CellBold", parent=sheet["Cell"], fontName=bold))
    sheet.add(
        ParagraphStyle("HeadCell", parent=sheet["Cell"], fontName=bold, textColor=colors.white)
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
    scale = min(max_width / img.imageWidth, max_height / img.imageHeight, 72 / fonts.IMAGE_DPI)
    img.drawWidth, img.drawHeight = img.imageWidth * scale, img.imageHeight * scale
    return img


def recommendation_rows(
    recommendations: Sequence[Mapping[str, Any]],
    sheet: StyleSheet1,
    with_basis: bool = True,
    lang: str = "en",
) -> list[list[Any]]:
    rows: list[list[Any]] = [[tr("Priority", lang), tr("Recommendation", lang)]]
    for r in recommendations:
        priority = str(r.get("priority", ""))
        colour = _PRIORITY_COLOURS.get(priority, "#4a5568")
        category = tr(str(r.get("category", "")), lang)
        body = f"<b>{text(category)}{'。' if lang == 'ja' else '.'}</b> "
        body += text(r.get("recommendation", ""))
        if r.get("expectedImprovement"):
            body += f"<br/><b>{text(tr('Expected:', lang))}</b> {text(r['expectedImprovement'])}"
        if with_basis and r.get("basis"):
            body += (
                f"<br/><font color='#718096'>{text(tr('How computed:', lang))} "
                f"{text(r['basis'])}</font>"
            )
        shown = text(tr(priority, lang))
        rows.append(
            [
                Paragraph(f"<font color='{colour}'><b>{shown}</b></font>", sheet["Cell"]),
                Paragraph(body, sheet["Cell"]),
            ]
        )
    return rows


MARGIN_X, MARGIN_TOP, MARGIN_BOTTOM = 1.8 * cm, 1.6 * cm, 1.7 * cm
PORTRAIT, LANDSCAPE = A4, (A4[1], A4[0])


def frame_size(page: tuple[float, float] = PORTRAIT) -> tuple[float, float]:
    return page[0] - 2 * MARGIN_X, page[1] - MARGIN_TOP - MARGIN_BOTTOM


def _footer(title: str, page_size: tuple[float, float], lang: str) -> Any:
    # a canvas string has one font: the CJK one when the title or the language needs it
    cjk = register_fonts() and (lang == "ja" or fonts.needs_cjk(title))
    font = CJK_FONT if cjk else FONT

    def draw(canvas: Canvas, doc: BaseDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont(font, 7.5)
        canvas.setFillColor(colors.HexColor("#718096"))
        canvas.drawString(MARGIN_X, 1.0 * cm, title[:110])
        page = tr("Page {page}", lang).format(page=doc.page)
        canvas.drawRightString(page_size[0] - MARGIN_X, 1.0 * cm, page)
        canvas.restoreState()

    return draw


def build_pdf(pdf_path: Path, story: list[Flowable], title: str, lang: str = "en") -> Path:
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
            PageTemplate(id=name, frames=[frame], pagesize=size, onPage=_footer(title, size, lang))
        )
    doc.addPageTemplates(templates)
    doc.build(story)
    return pdf_path


# --------------------------------------------------------------------------- sections


def _frame_width() -> float:
    return frame_size()[0]


def _status_line(results: Mapping[str, Any], lang: str) -> str:
    return tr("Status: {status} · generated {time}", lang).format(
        status=tr(str(results.get("status") or "unknown"), lang),
        time=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def _summary_section(
    results: Mapping[str, Any], events: pd.DataFrame | None, sheet: StyleSheet1, lang: str = "en"
) -> list[Flowable]:
    name = results.get("operationName") or tr("Process mining analysis", lang)
    story: list[Flowable] = [
        Paragraph(text(tr("Process Mining Analysis Report", lang)), sheet["Title"]),
        Paragraph(text(name), sheet["Heading2"]),
        Paragraph(text(_status_line(results, lang)), sheet["Note"]),
        Spacer(1, 0.4 * cm),
        Paragraph(text(tr("Key figures", lang)), sheet["Heading1"]),
    ]
    figures = key_figures(results, events, lang)
    if figures:
        story.append(table(figures, sheet, [6 * cm, _frame_width() - 6 * cm], header=False))
    else:
        story.append(Paragraph(text(tr("No figures were computed.", lang)), sheet["Normal"]))
    headline = findings(results, events, lang)
    if headline:
        story += [
            Spacer(1, 0.3 * cm),
            Paragraph(text(tr("Main findings", lang)), sheet["Heading1"]),
            *[Paragraph("• " + text(f), sheet["Normal"]) for f in headline],
        ]
    recs = [r for r in results.get("recommendations") or [] if isinstance(r, Mapping)]
    if recs:
        w = _frame_width()
        story += [
            Spacer(1, 0.3 * cm),
            Paragraph(text(tr("Top recommendations", lang)), sheet["Heading1"]),
            table(recommendation_rows(recs[:3], sheet, False, lang), sheet, [w * 0.12, w * 0.88]),
        ]
    missing = not_computed(results, lang)
    if missing:
        story += [
            Spacer(1, 0.3 * cm),
            Paragraph(text(tr("Not computed in this analysis", lang)), sheet["Heading3"]),
            Paragraph("<br/>".join(text(m) for m in missing), sheet["Normal"]),
        ]
    return story


def map_picture(process_map_png: Path, landscape: bool = True, reserve: float = 2.2 * cm) -> Image:
    """The process map scaled to a page's frame (landscape by default), `reserve` left for the
    heading and text above it; the analysis report and the executive summary both use it."""
    width, height = frame_size(LANDSCAPE if landscape else PORTRAIT)
    return picture(Path(process_map_png), width, height - reserve)


def _map_pages(
    dfg: DirectlyFollows | None,
    process_map_png: Path | None,
    sheet: StyleSheet1,
    lang: str = "en",
) -> list[Flowable]:
    story: list[Flowable] = [
        NextPageTemplate("landscape"),
        PageBreak(),
        Paragraph(text(tr("Process map", lang)), sheet["Heading1"]),
    ]
    if dfg is not None:
        legend = tr(
            "{activities} activities and {transitions} directly-follows transitions. Boxes are "
            "activities with their number of events (darker = more frequent); arrows carry the "
            "number of transitions and the mean time between the two activities; red arrows are "
            "the slowest transitions.",
            lang,
        ).format(activities=f"{len(dfg.activity_counts):,}", transitions=f"{len(dfg.edges):,}")
        story.append(Paragraph(text(legend), sheet["Normal"]))
    if process_map_png is not None and Path(process_map_png).exists():
        story += [Spacer(1, 0.2 * cm), map_picture(Path(process_map_png))]
    else:
        story.append(Paragraph(text(tr("The process map was not drawn.", lang)), sheet["Note"]))
    return story


def _variants_chart(results: Mapping[str, Any], events: pd.DataFrame | None) -> Any:
    """The variants chart's inputs: the log's variants when events are given, else the frequent
    ones of the results."""
    from analysis import charts

    if events is not None and len(events):
        variants = charts.variant_counts(events)
        return variants, len(variants)
    frequent = (phase_results(results, ML).get("patterns") or {}).get("frequent") or []
    variants = [
        (tuple(map(str, f.get("variant") or [])), int(f.get("cases") or 0)) for f in frequent
    ]
    model = phase_results(results, DISCOVERY).get("processModel") or {}
    return variants, model.get("variants")


def _bottleneck_rows(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    perf = phase_results(results, DISCOVERY).get("performanceMetrics") or {}
    return [b for b in perf.get("bottlenecks") or [] if isinstance(b, Mapping)]


def _severities(results: Mapping[str, Any]) -> dict[str, Any]:
    anomaly = phase_results(results, ML).get("anomalies") or {}
    if not anomaly:
        return {}
    return {
        "high": anomaly.get("highSeverity") or 0,
        "medium": anomaly.get("mediumSeverity") or 0,
        "low": anomaly.get("lowSeverity") or 0,
    }


# the report's charts, in drawing order
CHARTS = ("variants", "cycle_time", "bottlenecks", "anomalies")


class ChartSet:
    """The analysis report's charts (PNG files in `workdir`), each drawn on first use, or taken
    from `drawn` (prerender_charts, on the same events) when its key, the plain data it is drawn
    from besides the events, is the same."""

    def __init__(
        self,
        results: Mapping[str, Any],
        events: pd.DataFrame | None,
        workdir: Path,
        lang: str,
        drawn: Mapping[str, tuple[Any, Path | None]] | None = None,
    ) -> None:
        self.results, self.events, self.workdir, self.lang = results, events, workdir, lang
        self._drawn = dict(drawn or {})
        self._got: dict[str, Path | None] = {}

    def key(self, name: str) -> Any:
        """Everything the chart `name` is drawn from but the events (which do not change)."""
        results, has_events = self.results, self.events is not None and len(self.events) > 0
        cases = case_count(results, self.events)
        if name == "variants":
            frequent = None if has_events else _variants_chart(results, None)
            return (self.lang, has_events, cases, frequent)
        if name == "cycle_time":
            return (self.lang, has_events)
        if name == "bottlenecks":
            return (self.lang, _bottleneck_rows(results))
        return (self.lang, cases, _severities(results))

    def get(self, name: str) -> Path | None:
        """The chart's PNG, or None when there is nothing to draw."""
        if name not in self._got:
            drawn = self._drawn.get(name)
            if drawn is not None and drawn[0] == self.key(name):
                path = drawn[1]
                self._got[name] = path if path is None or path.is_file() else self._draw(name)
            else:
                self._got[name] = self._draw(name)
        return self._got[name]

    def _draw(self, name: str) -> Path | None:
        from analysis import charts

        results, events, lang = self.results, self.events, self.lang
        path = self.workdir / f"{name}.png"
        if name == "variants":
            variants, total = _variants_chart(results, events)
            if not variants:
                return None
            cases = case_count(results, events)
            return charts.variants_chart(
                variants, path, total_cases=cases, total_variants=total, lang=lang
            )
        if name == "cycle_time":
            if events is None or not len(events):
                return None
            return charts.cycle_time_chart(charts.case_durations_hours(events), path, lang=lang)
        if name == "bottlenecks":
            rows = _bottleneck_rows(results)
            return charts.bottleneck_chart(rows, path, lang=lang) if rows else None
        severities = _severities(results)
        if not severities:
            return None
        return charts.anomaly_severity_chart(
            severities, path, total_cases=case_count(results, events), lang=lang
        )


def _variant_pages(
    results: Mapping[str, Any],
    model: Mapping[str, Any],
    figures: ChartSet,
    sheet: StyleSheet1,
    lang: str = "en",
) -> list[Flowable]:
    story: list[Flowable] = [
        NextPageTemplate("portrait"),
        PageBreak(),
        Paragraph(text(tr("Process variants", lang)), sheet["Heading1"]),
    ]
    if model:
        line = tr(
            "{variants} variants (distinct activity sequences); model complexity {complexity} "
            "({activities} activities, {transitions} transitions).",
            lang,
        ).format(
            variants=num(model.get("variants"), lang=lang),
            complexity=tr(str(model.get("complexity", "n/a")), lang),
            activities=num(model.get("activities"), lang=lang),
            transitions=num(model.get("transitions"), lang=lang),
        )
        story.append(Paragraph(text(line), sheet["Normal"]))
    png = figures.get("variants")
    if png is not None:
        story.append(picture(png, _frame_width(), 9 * cm))
    else:
        story.append(Paragraph(text(tr("Variants were not computed.", lang)), sheet["Note"]))
    return story


def _cycle_time(
    perf: Mapping[str, Any], figures: ChartSet, sheet: StyleSheet1, lang: str = "en"
) -> list[Flowable]:
    story: list[Flowable] = [Paragraph(text(tr("Cycle time", lang)), sheet["Heading1"])]
    if perf:
        parts = [
            tr("Average cycle time {mean}, median {median}.", lang).format(
                mean=duration(perf.get("averageCycleTime"), lang),
                median=duration(perf.get("medianCycleTime"), lang),
            ),
            tr("Process efficiency {efficiency}%.", lang).format(
                efficiency=num(perf["efficiency"], 1, lang)
            )
            if perf.get("efficiency") is not None
            else tr("Process efficiency was not computed.", lang),
        ]
        story.append(Paragraph(text(sentences(parts, lang)), sheet["Normal"]))
    png = figures.get("cycle_time")
    if png is not None:
        story.append(picture(png, _frame_width(), 7.5 * cm))
    elif not perf:
        story.append(Paragraph(text(tr("Cycle times were not computed.", lang)), sheet["Note"]))
    return story


def _bottlenecks(
    perf: Mapping[str, Any], figures: ChartSet, sheet: StyleSheet1, lang: str = "en"
) -> list[Flowable]:
    heading = Paragraph(text(tr("Bottlenecks", lang)), sheet["Heading1"])
    bottlenecks = [b for b in perf.get("bottlenecks") or [] if isinstance(b, Mapping)]
    png = figures.get("bottlenecks")
    if png is not None:
        header = [
            "Activity",
            "Mean wait",
            "Median wait",
            "Total wait",
            "Events",
            "Share of all waiting",
        ]
        rows: list[list[Any]] = [[tr(h, lang) for h in header]]
        for b in bottlenecks[:10]:
            share = b.get("shareOfTotalWait")
            rows.append(
                [
                    b.get("activity"),
                    _hours(b.get("meanWaitHours"), lang),
                    _hours(b.get("medianWaitHours"), lang),
                    _hours(b.get("totalWaitHours"), lang),
                    num(b.get("occurrences"), lang=lang),
                    f"{100 * float(share):.1f}%" if share is not None else tr("n/a", lang),
                ]
            )
        w = _frame_width()
        return [
            KeepTogether([heading, picture(png, w, 8 * cm)]),
            table(rows, sheet, [w * 0.32, w * 0.12, w * 0.12, w * 0.14, w * 0.12, w * 0.18]),
        ]
    if perf.get("bottleneckActivities"):
        names = ", ".join(map(str, perf["bottleneckActivities"]))
        return [
            heading,
            Paragraph(text(tr("Bottleneck activities: ", lang) + names), sheet["Normal"]),
        ]
    return [heading, Paragraph(text(tr("Bottlenecks were not computed.", lang)), sheet["Note"])]


def _discovery_section(
    results: Mapping[str, Any],
    dfg: DirectlyFollows | None,
    process_map_png: Path | None,
    figures: ChartSet,
    sheet: StyleSheet1,
    lang: str = "en",
) -> list[Flowable]:
    discovery = phase_results(results, DISCOVERY)
    model = discovery.get("processModel") or {}
    perf = discovery.get("performanceMetrics") or {}
    return (
        _map_pages(dfg, process_map_png, sheet, lang)
        + _variant_pages(results, model, figures, sheet, lang)
        + _cycle_time(perf, figures, sheet, lang)
        + _bottlenecks(perf, figures, sheet, lang)
    )


def variant_text(variant: Sequence[Any], limit: int = 8, lang: str = "en") -> str:
    """An activity sequence for a table cell; long ones keep their first and last steps."""
    steps = [str(a) for a in variant]
    if len(steps) <= limit:
        return " → ".join(steps)
    head, tail = steps[: limit - 2], steps[-2:]
    middle = tr(" → … ({n} more steps) … → ", lang).format(n=len(steps) - limit)
    return " → ".join(head) + middle + " → ".join(tail)


def _hours(value: Any, lang: str = "en") -> str:
    if value is None:
        return tr("n/a", lang)
    return tr_duration(hours_text(float(value)), lang)


def _anomaly_rows(
    results: Mapping[str, Any],
    anomalies: pd.DataFrame | None,
    limit: int = 20,
    lang: str = "en",
) -> list[list[Any]]:
    rows: list[list[Any]] = [[tr(h, lang) for h in ("Case", "Score", "Severity", "Reasons")]]
    if anomalies is not None and len(anomalies):
        top = anomalies.sort_values("score", ascending=False, kind="stable").head(limit)
        for case, score, severity, reasons in zip(
            top["caseId"], top["score"], top["severity"], top["reasons"], strict=True
        ):
            rows.append([case, num(float(score), 3), tr(str(severity), lang), reasons])
        return rows
    listed = (phase_results(results, ML).get("anomalies") or {}).get("topAnomalies") or []
    for a in listed[:limit]:
        reasons = a.get("reasons") or []
        joined = "; ".join(map(str, reasons)) if isinstance(reasons, list) else str(reasons)
        score = a.get("score")
        rows.append(
            [
                a.get("caseId"),
                num(float(score), 3) if score is not None else tr("n/a", lang),
                tr(str(a.get("severity")), lang),
                joined,
            ]
        )
    return rows


def _anomaly_block(
    results: Mapping[str, Any],
    anomalies: pd.DataFrame | None,
    figures: ChartSet,
    sheet: StyleSheet1,
    lang: str = "en",
) -> list[Flowable]:
    anomaly = phase_results(results, ML).get("anomalies") or {}
    story: list[Flowable] = [
        PageBreak(),
        Paragraph(text(tr("Anomalies", lang)), sheet["Heading1"]),
    ]
    if anomaly:
        line = tr(
            "{detected} anomalous cases: {high} high, {medium} medium, {low} low severity. "
            "Estimated false-positive rate {rate}.",
            lang,
        ).format(
            detected=num(anomaly.get("detected"), lang=lang),
            high=num(anomaly.get("highSeverity"), lang=lang),
            medium=num(anomaly.get("mediumSeverity"), lang=lang),
            low=num(anomaly.get("lowSeverity"), lang=lang),
            rate=num(anomaly.get("falsePositiveRate"), lang=lang),
        )
        story.append(Paragraph(text(line), sheet["Normal"]))
        png = figures.get("anomalies")
        assert png is not None
        story.append(picture(png, _frame_width() * 0.7, 6 * cm))
    rows = _anomaly_rows(results, anomalies, lang=lang)
    if len(rows) > 1:
        w = _frame_width()
        heading = tr("Top {n} anomalous cases", lang).format(n=len(rows) - 1)
        story += [
            Paragraph(text(heading), sheet["Heading3"]),
            table(rows, sheet, [w * 0.16, w * 0.1, w * 0.11, w * 0.63]),
        ]
    elif not anomaly:
        story.append(Paragraph(text(tr("Anomaly detection was not run.", lang)), sheet["Note"]))
    return story


def _prediction_block(
    ml: Mapping[str, Any], sheet: StyleSheet1, lang: str = "en"
) -> list[Flowable]:
    # the model beside its baselines: analysis.prediction_report (the predictions owner's)
    from analysis.prediction_report import prediction_flowables

    return prediction_flowables(ml, sheet, _frame_width(), table, lang)


def _pattern_block(ml: Mapping[str, Any], sheet: StyleSheet1, lang: str = "en") -> list[Flowable]:
    patterns = ml.get("patterns") or {}
    if not patterns:
        return []
    critical = [c for c in patterns.get("critical") or [] if isinstance(c, Mapping)]
    line = tr(
        "{frequent} frequent, {rare} rare patterns and {critical} critical paths.", lang
    ).format(
        frequent=num(patterns.get("frequentPatterns"), lang=lang),
        rare=num(patterns.get("rarePatterns"), lang=lang),
        critical=num(patterns.get("criticalPaths"), lang=lang),
    )
    block: list[Flowable] = [
        Paragraph(text(tr("Patterns", lang)), sheet["Heading1"]),
        Paragraph(text(line), sheet["Normal"]),
    ]
    if critical:
        rows: list[list[Any]] = [
            [tr(h, lang) for h in ("Critical path", "Cases", "Median duration")]
        ]
        for c in critical[:6]:
            rows.append(
                [
                    variant_text(c.get("variant") or [], lang=lang),
                    num(c.get("cases"), lang=lang),
                    _hours(c.get("medianDurationHours"), lang),
                ]
            )
        w = _frame_width()
        block.append(table(rows, sheet, [w * 0.66, w * 0.12, w * 0.22]))
    return [KeepTogether(block)]


def _ml_section(
    results: Mapping[str, Any],
    anomalies: pd.DataFrame | None,
    figures: ChartSet,
    sheet: StyleSheet1,
    lang: str = "en",
) -> list[Flowable]:
    ml = phase_results(results, ML)
    return (
        _anomaly_block(results, anomalies, figures, sheet, lang)
        + _prediction_block(ml, sheet, lang)
        + _pattern_block(ml, sheet, lang)
    )


def _closing_sections(
    results: Mapping[str, Any],
    sheet: StyleSheet1,
    lang: str = "en",
    notes: Sequence[str] = (),
) -> list[Flowable]:
    """Recommendations, data quality and the method texts (`notes`: the report's own, such as
    a missing font, listed first among the methods)."""
    story: list[Flowable] = [
        PageBreak(),
        Paragraph(text(tr("Recommendations", lang)), sheet["Heading1"]),
    ]
    recs = [r for r in results.get("recommendations") or [] if isinstance(r, Mapping)]
    w = _frame_width()
    if recs:
        story.append(
            table(recommendation_rows(recs, sheet, lang=lang), sheet, [w * 0.12, w * 0.88])
        )
    else:
        story.append(
            Paragraph(text(tr("No recommendation applies to this log.", lang)), sheet["Normal"])
        )

    loading = phase_results(results, LOADING)
    errors = [e for e in loading.get("validationErrors") or [] if isinstance(e, Mapping)]
    story.append(Paragraph(text(tr("Data quality", lang)), sheet["Heading1"]))
    if loading:
        line = tr(
            "{loaded} records loaded, {valid} valid, {errors} with errors; data-quality score "
            "{score}.",
            lang,
        ).format(
            loaded=num(loading.get("recordsLoaded"), lang=lang),
            valid=num(loading.get("validRecords"), lang=lang),
            errors=num(loading.get("errorRecords"), lang=lang),
            score=num(loading.get("dataQualityScore"), lang=lang),
        )
        story.append(Paragraph(text(line), sheet["Normal"]))
        if errors:
            rows: list[list[Any]] = [
                [tr(h, lang) for h in ("Validation issue", "Records", "Resolved")]
            ]
            rows += [
                [
                    tr(str(e.get("type")), lang),
                    num(e.get("count"), lang=lang),
                    num(e.get("resolved"), lang=lang),
                ]
                for e in errors
            ]
            story.append(table(rows, sheet, [w * 0.6, w * 0.2, w * 0.2]))
    else:
        story.append(Paragraph(text(tr("Data validation was not run.", lang)), sheet["Note"]))

    story.append(Paragraph(text(tr("How each figure was computed", lang)), sheet["Heading1"]))
    methods = [(tr("Fonts", lang), note) for note in notes] + method_texts(results, lang)
    if methods:
        rows = [
            [tr("Figure", lang), tr("Method", lang)],
            *[[label, value] for label, value in methods],
        ]
        story.append(table(rows, sheet, [w * 0.35, w * 0.65]))
    else:
        story.append(
            Paragraph(text(tr("The document carries no method descriptions.", lang)), sheet["Note"])
        )
    perf = results.get("performance") or {}
    if perf.get("totalExecutionTime"):
        story.append(Spacer(1, 0.3 * cm))
        line = tr("Total execution time: {time}.", lang).format(
            time=tr_duration(str(perf["totalExecutionTime"]), lang)
        )
        story.append(Paragraph(text(line), sheet["Note"]))
    return story


def _report_language(
    results: Mapping[str, Any], dfg: DirectlyFollows, lang: str
) -> tuple[str, list[str]]:
    names = [*document_texts(results), *map(str, dfg.activity_counts)]
    return report_language(lang, *names)


def prerender_charts(
    results: Mapping[str, Any],
    events: pd.DataFrame,
    dfg: DirectlyFollows,
    workdir: Path,
    lang: str = "en",
) -> dict[str, tuple[Any, Path | None]]:
    """Every chart of the analysis report, drawn now into `workdir` from `results` (the document
    so far: recommendations may still be missing) and `events`; `write_analysis_report(...,
    drawn=...)` takes each one whose inputs are still the same. The Report Generation phase runs
    this in a forked child while it derives the recommendations and writes the other files."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    figures = ChartSet(results, events, workdir, _report_language(results, dfg, lang)[0])
    return {name: (figures.key(name), figures.get(name)) for name in CHARTS}


def write_analysis_report(
    pdf_path: Path,
    results: dict[str, Any],
    events: pd.DataFrame,
    dfg: DirectlyFollows,
    process_map_png: Path | None,
    anomalies: pd.DataFrame | None,
    workdir: Path,
    lang: str = "en",
    drawn: Mapping[str, tuple[Any, Path | None]] | None = None,
) -> Path:
    """Write the full analysis report in `lang` ("en" or "ja"); chart PNGs go to `workdir`
    (those in `drawn`, from prerender_charts on the same events, are used when their inputs are
    the same)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    lang, notes = _report_language(results, dfg, lang)
    figures = ChartSet(results, events, workdir, lang, drawn)
    sheet = styles(lang)
    story = _summary_section(results, events, sheet, lang)
    story += _discovery_section(results, dfg, process_map_png, figures, sheet, lang)
    story += _ml_section(results, anomalies, figures, sheet, lang)
    story += _closing_sections(results, sheet, lang, notes)
    name = results.get("operationName") or tr("analysis", lang)
    title = tr("Process Mining Analysis Report — {name}", lang).format(name=name)
    return build_pdf(pdf_path, story, title, lang)
