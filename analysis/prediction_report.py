"""The predictions section of the reports (PDF and PowerPoint): each prediction's predictors —
the model and its baselines — side by side with their held-out figures, and which one is used.

Works from a results document alone (the ML phase's `predictions`, see analysis.prediction).
Texts are written in English and passed through `analysis.i18n.tr`; their Japanese is
registered below. The report modules call `prediction_flowables` (PDF) and
`cycle_table_rows` / `next_table_rows` (PowerPoint tables).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib.styles import StyleSheet1
from reportlab.platypus import Flowable, KeepTogether, Paragraph

from analysis.i18n import register_ja, tr
from analysis.phases import MACHINE_LEARNING
from analysis.recommendations import phase_results

# (rows, sheet, column widths) -> a table flowable: analysis.report_pdf.table
MakeTable = Callable[[list[list[Any]], StyleSheet1, list[float]], Flowable]

PREDICTOR_LABELS = {
    "model": "Model",
    "globalMedian": "Median remaining time",
    "lastActivityMedian": "Median remaining time after the last activity",
    "mostFrequent": "Most frequent next activity",
    "lastActivityMostFrequent": "Most frequent next activity after the last activity",
}
WITHIN_NOTE = (
    "Within ±25 %: the share of held-out prefixes whose predicted remaining time is within 25 % "
    "of the actual remaining time (|predicted - actual| <= 0.25 x actual), over the prefixes "
    "with time remaining. Mean absolute error over all held-out prefixes."
)
HELD_OUT_NOTE = (
    "Held-out figures on {cases} test cases ({prefixes} prefixes) that start after the "
    "training cases. The used predictor was chosen on {validation} validation cases (the "
    "training cases that start last): {criterion}."
)
CONFIDENCE_NOTE = (
    "Confidence {confidence}: the lower bound of the 95 % interval of the used predictor's "
    "held-out accuracy."
)

register_ja(
    {
        "Predictions": "予測",
        "Predictions were not computed.": "予測は計算されていません。",
        "Remaining cycle time": "残りサイクルタイム",
        "Next activity": "次のアクティビティ",
        "Predictor": "予測手法",
        "Mean absolute error": "平均絶対誤差",
        "Within ±25 %": "誤差25 %以内",
        "Accuracy": "正解率",
        "Confidence": "信頼度",
        "Figure": "指標",
        "Value": "値",
        "Used": "採用",
        "yes": "はい",
        "no": "いいえ",
        "n/a": "該当なし",
        "Not computed: {reason}": "未計算: {reason}",
        "Model": "モデル",
        "Median remaining time": "残り時間の中央値",
        "Median remaining time after the last activity": "直前アクティビティ別の残り時間の中央値",
        "Most frequent next activity": "最頻の次アクティビティ",
        "Most frequent next activity after the last activity": (
            "直前アクティビティ別の最頻の次アクティビティ"
        ),
        WITHIN_NOTE: (
            "誤差25 %以内: 評価用プレフィックスのうち、予測した残り時間と実際の残り時間の差が"
            "実際の残り時間の25 %以内（|予測 - 実際| <= 0.25 x 実際）であるものの割合"
            "（残り時間のあるプレフィックスが対象）。平均絶対誤差は評価用の全プレフィックスが対象。"
        ),
        HELD_OUT_NOTE: (
            "学習ケースより後に開始した{cases}件のテストケース（{prefixes}個のプレフィックス）での"
            "評価値。採用する予測手法は{validation}件の検証ケース（学習ケースのうち最後に開始した"
            "もの）で選びました: {criterion}。"
        ),
        "lowest mean absolute error": "平均絶対誤差が最小",
        "highest accuracy": "正解率が最高",
        CONFIDENCE_NOTE: (
            "信頼度 {confidence}: 採用した予測手法の評価用正解率の95 %信頼区間の下限。"
        ),
    }
)


def predictions_of(document: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """(cycleTimePrediction, pathPrediction) of a results document or of the ML phase's
    results; empty mappings when absent."""
    predictions = document.get("predictions")
    if not isinstance(predictions, Mapping):
        predictions = phase_results(document, MACHINE_LEARNING).get("predictions")
    if not isinstance(predictions, Mapping):
        return {}, {}
    cycle, path = predictions.get("cycleTimePrediction"), predictions.get("pathPrediction")
    return (
        cycle if isinstance(cycle, Mapping) else {},
        path if isinstance(path, Mapping) else {},
    )


def _share(value: Any, lang: str) -> str:
    return f"{100 * value:.1f} %" if isinstance(value, int | float) else tr("n/a", lang)


def _hours(value: Any, lang: str) -> str:
    # one unit down the column, so the predictors compare at a glance
    return f"{value:,.1f} h" if isinstance(value, int | float) else tr("n/a", lang)


def _predictors(prediction: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [p for p in prediction.get("predictors") or [] if isinstance(p, Mapping)]


def _label(predictor: Mapping[str, Any], lang: str) -> str:
    name = str(predictor.get("name", ""))
    return tr(PREDICTOR_LABELS.get(name, name), lang)


def _used(predictor: Mapping[str, Any], lang: str) -> str:
    return tr("yes" if predictor.get("used") else "no", lang)


def cycle_table_rows(document: Mapping[str, Any], lang: str = "en") -> list[list[str]]:
    """Predictor | mean absolute error | within 25 % | used — held-out figures of the
    remaining-time predictors; [] when none was evaluated."""
    cycle, _ = predictions_of(document)
    rows = [
        [
            _label(p, lang),
            _hours((p.get("heldOut") or {}).get("meanAbsoluteErrorHours"), lang),
            _share((p.get("heldOut") or {}).get("withinTolerance"), lang),
            _used(p, lang),
        ]
        for p in _predictors(cycle)
    ]
    if not rows:
        return []
    header = [tr(t, lang) for t in ("Predictor", "Mean absolute error", "Within ±25 %", "Used")]
    return [header, *rows]


def next_table_rows(document: Mapping[str, Any], lang: str = "en") -> list[list[str]]:
    """Predictor | accuracy | used — held-out figures of the next-activity predictors."""
    _, path = predictions_of(document)
    rows = [
        [
            _label(p, lang),
            _share((p.get("heldOut") or {}).get("accuracy"), lang),
            _used(p, lang),
        ]
        for p in _predictors(path)
    ]
    if not rows:
        return []
    return [[tr(t, lang) for t in ("Predictor", "Accuracy", "Used")], *rows]


def _held_out_note(
    prediction: Mapping[str, Any], criterion: str, lang: str, cases: Any = None
) -> str:
    prefixes = prediction.get("testPrefixes")
    cases = prediction.get("testCases", cases)  # pathPrediction: the cycle-time's (one split)
    return tr(HELD_OUT_NOTE, lang).format(
        cases=f"{cases:,}" if isinstance(cases, int) else tr("n/a", lang),
        prefixes=f"{prefixes:,}" if isinstance(prefixes, int) else tr("n/a", lang),
        validation=f"{prediction.get('validationCases', 0) or 0:,}",
        criterion=tr(criterion, lang),
    )


def prediction_notes(document: Mapping[str, Any], lang: str = "en") -> list[str]:
    """Short texts for slides: what the figures mean and how the predictor was chosen."""
    cycle, path = predictions_of(document)
    notes: list[str] = []
    if _predictors(cycle):
        notes += [
            _held_out_note(cycle, "lowest mean absolute error", lang),
            tr(WITHIN_NOTE, lang),
        ]
    if _predictors(path):
        notes += _next_notes(cycle, path, lang)
    return notes


def _next_notes(cycle: Mapping[str, Any], path: Mapping[str, Any], lang: str) -> list[str]:
    notes = [_held_out_note(path, "highest accuracy", lang, cycle.get("testCases"))]
    if isinstance(path.get("confidence"), int | float):
        notes.append(tr(CONFIDENCE_NOTE, lang).format(confidence=f"{path['confidence']:.2f}"))
    return notes


def prediction_flowables(
    document: Mapping[str, Any],
    sheet: StyleSheet1,
    width: float,
    make_table: MakeTable,
    lang: str = "en",
) -> list[Flowable]:
    """The PDF section: a heading, then per prediction the predictors' table (the model beside
    its baselines, the used one marked) and what the figures mean; the skip reason otherwise."""
    story: list[Flowable] = [Paragraph(escape(tr("Predictions", lang)), sheet["Heading1"])]
    cycle, path = predictions_of(document)
    if not (cycle or path):
        return [
            *story,
            Paragraph(escape(tr("Predictions were not computed.", lang)), sheet["Note"]),
        ]
    blocks: list[tuple[str, Mapping[str, Any], list[list[str]], list[float], list[str]]] = []
    if cycle:
        notes = [_held_out_note(cycle, "lowest mean absolute error", lang), tr(WITHIN_NOTE, lang)]
        widths = [width * 0.46, width * 0.2, width * 0.18, width * 0.16]
        blocks.append(
            ("Remaining cycle time", cycle, cycle_table_rows(document, lang), widths, notes)
        )
    if path:
        widths = [width * 0.6, width * 0.22, width * 0.18]
        notes = _next_notes(cycle, path, lang)
        blocks.append(("Next activity", path, next_table_rows(document, lang), widths, notes))
    for title, prediction, rows, widths, notes in blocks:
        block: list[Flowable] = [Paragraph(escape(tr(title, lang)), sheet["Heading3"])]
        if rows:
            block.append(make_table(rows, sheet, widths))
            block += [Paragraph(escape(n), sheet["Small"]) for n in notes]
        elif _legacy_rows(prediction, lang):  # a document of an earlier version
            block.append(make_table(_legacy_rows(prediction, lang), sheet, [width * 0.5] * 2))
        else:
            reason = str(prediction.get("method") or "").removeprefix("skipped: ")
            note = tr("Not computed: {reason}", lang).format(reason=reason)
            block.append(Paragraph(escape(note), sheet["Note"]))
        story.append(KeepTogether(block))
    return story


def _legacy_rows(prediction: Mapping[str, Any], lang: str) -> list[list[str]]:
    """Figure | value, for a document written before the predictors were reported."""
    rows = [
        [tr(label, lang), value]
        for label, value in (
            ("Accuracy", prediction.get("accuracy")),
            ("Mean absolute error", prediction.get("meanAbsoluteError")),
            ("Confidence", prediction.get("confidence")),
        )
        if value is not None
    ]
    if not rows:
        return []
    return [[tr("Figure", lang), tr("Value", lang)], *[[k, str(v)] for k, v in rows]]
