"""Small PNG charts for the reports (matplotlib rendering with Agg, one shared style).

Each chart function writes one PNG and returns its path. Inputs are plain figures (arrays, the
results document's lists) so a chart can be drawn from a prior analysis's document without the log.
Texts pass through `analysis.i18n.tr` (`lang`); the font family is DejaVu Sans with the CJK font of
`analysis.fonts` as fallback, so Japanese activity names and labels draw without missing glyphs.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import rc_context

# Figure objects straight from matplotlib.figure, not pyplot: no global figure registry, no
# interactive backend; saving a PNG renders with Agg whatever backend the process selected.
from matplotlib.figure import Figure

from analysis import fonts
from analysis.columns import ACTIVITY, CASE
from analysis.dfg import event_seconds
from analysis.formatting import hours_text
from analysis.i18n import register_ja, tr, tr_duration

DPI = fonts.IMAGE_DPI
_BLUE, _RED, _ORANGE, _GREY = "#2b6cb0", "#c53030", "#dd8a1e", "#718096"
_BASE_STYLE: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.axisbelow": True,
}


def font_families() -> list[str]:
    """DejaVu Sans, then the CJK font when one is installed (matplotlib falls back per glyph)."""
    families = ["DejaVu Sans"]
    path = fonts.cjk_font_path()
    if path is not None:
        families.append(fonts.matplotlib_family(path))
    return families


def _style() -> Any:
    return {**_BASE_STYLE, "font.family": font_families()}


register_ja(
    {
        "No variants": "バリアントなし",
        "#{rank} ({steps} steps): {path}": "#{rank}（{steps} ステップ）: {path}",
        "#{rank} (1 step): {path}": "#{rank}（1 ステップ）: {path}",
        "cases": "ケース数",
        "Top {shown} of {total} variants: {share}% of cases": "全 {total} バリアント中の上位 "
        "{shown}: ケースの {share}%",
        "Cycle time distribution": "サイクルタイムの分布",
        "No cases": "ケースなし",
        "{n} cases of a single instant not shown": "所要時間ゼロのケース {n} 件は表示していません",
        "cycle time (log scale)": "サイクルタイム（対数目盛）",
        "cycle time ({unit})": "サイクルタイム（{unit}）",
        "days": "日",
        "hours": "時間",
        "{n} longest cases beyond the axis": "最も長いケース {n} 件は軸の範囲外です",
        "mean {time}": "平均 {time}",
        "median {time}": "中央値 {time}",
        "{title} ({n} cases)": "{title}（{n} ケース）",
        "1 min": "1分",
        "10 min": "10分",
        "1 h": "1時間",
        "6 h": "6時間",
        "1 day": "1日",
        "1 week": "1週間",
        "1 month": "1か月",
        "1 year": "1年",
        "No bottlenecks": "ボトルネックなし",
        "mean wait": "平均待ち時間",
        "median wait": "待ち時間の中央値",
        " ({share}% of all waiting)": "（全待ち時間の {share}%）",
        "waiting time before the activity ({unit})": "アクティビティ前の待ち時間（{unit}）",
        "Bottlenecks: waiting time before activity": "ボトルネック: アクティビティ前の待ち時間",
        "high": "高",
        "medium": "中",
        "low": "低",
        "Anomalous cases by severity ({n} in all)": "重大度別の異常ケース（計 {n} 件）",
    }
)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads bits so that summing hashed elements rarely collides."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        mixed: np.ndarray = x ^ (x >> np.uint64(31))
        return mixed


def variant_counts(events: pd.DataFrame) -> list[tuple[tuple[str, ...], int]]:
    """Variants (activity sequences) with their case counts, most frequent first.

    Each case's sequence is hashed without building Python tuples per case (a 64-bit hash of
    (position, activity) pairs plus the length), which is ~20x faster than joining strings on a
    262k-event log; one representative case per hash gives the sequence back.
    """
    n = len(events)
    if n == 0:
        return []
    cases = events[CASE].to_numpy()
    codes, uniques = pd.factorize(events[ACTIVITY], sort=False)
    names = [str(u) for u in uniques]  # plain list: indexing a pandas Index per event is slow
    change = np.empty(n, dtype=bool)
    change[0] = True
    change[1:] = cases[1:] != cases[:-1]
    starts = np.flatnonzero(change)
    lengths = np.diff(np.append(starts, n))
    pos = np.arange(n, dtype=np.uint64) - np.repeat(starts, lengths).astype(np.uint64)
    with np.errstate(over="ignore"):
        element = _mix64(pos * np.uint64(0x9E3779B97F4A7C15) + codes.astype(np.uint64) + 1)
        hashes = np.add.reduceat(element, starts)
    frame = pd.DataFrame({"h": hashes, "len": lengths, "first": starts})
    grouped = frame.groupby(["h", "len"], sort=False)["first"].agg(["size", "first"])
    grouped = grouped.sort_values("size", ascending=False, kind="stable")
    out = []
    for (_, length), size, first in zip(
        grouped.index, grouped["size"].to_numpy(), grouped["first"].to_numpy(), strict=True
    ):
        seq = tuple(names[c] for c in codes[first : first + length].tolist())
        out.append((seq, int(size)))
    return out


def case_durations_hours(events: pd.DataFrame) -> np.ndarray:
    """Each case's cycle time (last minus first event), in hours."""
    if events.empty:
        return np.array([], dtype=float)
    secs = pd.Series(event_seconds(events))
    grouped = secs.groupby(events[CASE].to_numpy(), sort=False)
    return ((grouped.max() - grouped.min()) / 3600.0).to_numpy(dtype=float)


# tick positions (hours) for a log-scaled duration axis: minute, hour, day, week, month, year
_LOG_TICKS = [
    (1 / 60, "1 min"),
    (10 / 60, "10 min"),
    (1, "1 h"),
    (6, "6 h"),
    (24, "1 day"),
    (24 * 7, "1 week"),
    (24 * 30, "1 month"),
    (24 * 365, "1 year"),
]


def _figure(width: float = 7.0, height: float = 3.6) -> tuple[Figure, Any]:
    with rc_context(_style()):
        fig = Figure(figsize=(width, height), dpi=DPI)
        ax = fig.add_subplot(1, 1, 1)
    return fig, ax


def _save(fig: Figure, png_path: Path) -> Path:
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(png_path, dpi=DPI)
    return png_path


def warm_up() -> None:
    """Draw a small chart with Latin and CJK text, so the fonts the charts use (and
    matplotlib's font lookups for the chart style) are loaded in this process
    (analysis/warm.py: the runner's forkserver does this once for every flow run)."""
    fig, ax = _figure(2.0, 1.0)
    ax.bar(["pmops", "分析"], [1, 2])
    ax.set_title("pmops 分析 1 h")
    fig.savefig(io.BytesIO(), dpi=DPI, format="png")


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def variants_chart(
    variants: Sequence[tuple[Sequence[str], int]],
    png_path: Path,
    total_cases: int | None = None,
    total_variants: int | None = None,
    top: int = 10,
    lang: str = "en",
) -> Path:
    """Horizontal bars of the `top` most frequent variants' case counts (with share of cases).

    `variants` may be every variant (from `variant_counts`) or only the most frequent ones (the
    results document's patterns); then pass the totals so the title and shares are right."""
    with rc_context(_style()):
        shown = list(variants)[:top]
        total = total_cases if total_cases else sum(n for _, n in variants)
        n_variants = total_variants if total_variants else len(variants)
        fig, ax = _figure(8.0, 1.1 + 0.3 * max(1, len(shown)))
        if not shown:
            ax.text(
                0.5, 0.5, tr("No variants", lang), ha="center", va="center", transform=ax.transAxes
            )
            ax.set_axis_off()
            return _save(fig, png_path)
        labels = [
            tr(
                "#{rank} (1 step): {path}" if len(v) == 1 else "#{rank} ({steps} steps): {path}",
                lang,
            ).format(rank=i + 1, steps=len(v), path=_short(" → ".join(v), 48))
            for i, (v, _) in enumerate(shown)
        ]
        counts = np.array([n for _, n in shown], dtype=float)
        y = np.arange(len(shown))[::-1]
        ax.barh(y, counts, color=_BLUE, height=0.65)
        ax.set_yticks(y, labels, fontsize=7)
        for yi, n in zip(y, counts, strict=True):
            share = f" ({100 * n / total:.1f}%)" if total else ""
            ax.text(n, yi, f" {int(n):,}{share}", va="center", fontsize=7)
        ax.set_xlim(0, counts.max() * 1.25)
        ax.set_xlabel(tr("cases", lang))
        covered = 100 * counts.sum() / total if total else 0.0
        fig.suptitle(
            tr("Top {shown} of {total} variants: {share}% of cases", lang).format(
                shown=len(shown), total=f"{n_variants:,}", share=f"{covered:.1f}"
            ),
            x=0.01,
            ha="left",
            fontweight="bold",
            fontsize=10,
        )
        ax.grid(axis="y", visible=False)
        return _save(fig, png_path)


def cycle_time_chart(
    case_durations_hours: np.ndarray,
    png_path: Path,
    title: str = "Cycle time distribution",
    bins: int = 40,
    lang: str = "en",
) -> Path:
    """Histogram of case cycle times with mean and median marked.

    Strongly skewed durations get log-spaced bins on a log axis; otherwise the top 1 % is left
    out of the axis range (and the title says how many) so a few extreme cases do not flatten
    the rest."""
    with rc_context(_style()):
        hours = np.asarray(case_durations_hours, dtype=float)
        hours = hours[np.isfinite(hours)]
        fig, ax = _figure()
        if hours.size == 0:
            ax.text(
                0.5, 0.5, tr("No cases", lang), ha="center", va="center", transform=ax.transAxes
            )
            ax.set_axis_off()
            return _save(fig, png_path)
        mean, median = float(hours.mean()), float(np.median(hours))
        positive = hours[hours > 0]
        p99 = float(np.percentile(hours, 99))
        # strongly skewed durations (minutes for most cases, months for a few) need a log axis
        skewed = positive.size > 1 and p99 > 20 * max(float(np.median(positive)), 1e-9)
        if skewed:
            lo = max(float(positive.min()), 1 / 60)
            edges = np.geomspace(lo, max(float(positive.max()), lo * 10), bins + 1)
            ax.hist(np.clip(positive, lo, None), bins=edges, color=_BLUE, alpha=0.85)
            ax.set_xscale("log")
            ticks = [(t, name) for t, name in _LOG_TICKS if edges[0] <= t <= edges[-1]]
            ax.set_xticks([t for t, _ in ticks], [tr(name, lang) for _, name in ticks], fontsize=7)
            ax.minorticks_off()
            zero = int(hours.size - positive.size)
            note = (
                tr("{n} cases of a single instant not shown", lang).format(n=f"{zero:,}")
                if zero
                else ""
            )
            unit_label = tr("cycle time (log scale)", lang)
            scale, floor = 1.0, lo
        else:
            days = median >= 48 or p99 >= 24 * 7
            scale, unit = (24.0, "days") if days else (1.0, "hours")
            values = hours / scale
            cap = float(np.percentile(values, 99))
            inside = values[values <= cap] if cap > 0 else values
            clipped = int(values.size - inside.size)
            ax.hist(inside, bins=bins, color=_BLUE, alpha=0.85)
            note = (
                tr("{n} longest cases beyond the axis", lang).format(n=f"{clipped:,}")
                if clipped
                else ""
            )
            unit_label = tr("cycle time ({unit})", lang).format(unit=tr(unit, lang))
            floor = 0.0
        # on a log axis a zero median is drawn at the axis start (its label says the value)
        mean_label = tr("mean {time}", lang).format(time=tr_duration(hours_text(mean), lang))
        median_label = tr("median {time}", lang).format(time=tr_duration(hours_text(median), lang))
        ax.axvline(max(mean, floor) / scale, color=_RED, lw=1.5, label=mean_label)
        ax.axvline(max(median, floor) / scale, color=_ORANGE, lw=1.5, ls="--", label=median_label)
        ax.legend(frameon=False)
        ax.set_xlabel(unit_label)
        ax.set_ylabel(tr("cases", lang))
        ax.set_title(
            tr("{title} ({n} cases)", lang).format(title=tr(title, lang), n=f"{hours.size:,}"),
            loc="left",
        )
        if note:
            ax.text(0.01, 0.97, note, transform=ax.transAxes, va="top", fontsize=7, color=_GREY)
        return _save(fig, png_path)


def bottleneck_chart(
    bottlenecks: Sequence[Mapping[str, Any]],
    png_path: Path,
    top: int = 10,
    lang: str = "en",
) -> Path:
    """Mean waiting time before each bottleneck activity (the results document's
    `bottlenecks` entries: activity, meanWaitHours, medianWaitHours, shareOfTotalWait)."""
    with rc_context(_style()):
        rows = [b for b in bottlenecks if b.get("activity") is not None][:top]
        fig, ax = _figure(7.0, 0.9 + 0.35 * max(1, len(rows)))
        if not rows:
            ax.text(
                0.5,
                0.5,
                tr("No bottlenecks", lang),
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
            ax.set_axis_off()
            return _save(fig, png_path)
        mean = np.array([float(b.get("meanWaitHours") or 0.0) for b in rows])
        median = np.array([float(b.get("medianWaitHours") or 0.0) for b in rows])
        days = float(mean.max()) >= 48
        scale, unit = (24.0, "days") if days else (1.0, "hours")
        y = np.arange(len(rows))[::-1]
        ax.barh(y + 0.18, mean / scale, height=0.36, color=_RED, label=tr("mean wait", lang))
        ax.barh(y - 0.18, median / scale, height=0.36, color=_ORANGE, label=tr("median wait", lang))
        ax.set_yticks(y, [_short(str(b["activity"]), 45) for b in rows], fontsize=8)
        for yi, b, m in zip(y, rows, mean, strict=True):
            share = b.get("shareOfTotalWait")
            extra = (
                tr(" ({share}% of all waiting)", lang).format(share=f"{100 * float(share):.0f}")
                if share is not None
                else ""
            )
            label = f" {tr_duration(hours_text(m), lang)}{extra}"
            ax.text(m / scale, yi + 0.18, label, va="center", fontsize=7)
        ax.set_xlim(0, float(mean.max() / scale) * 1.6 or 1.0)
        ax.set_xlabel(
            tr("waiting time before the activity ({unit})", lang).format(unit=tr(unit, lang))
        )
        ax.legend(frameon=False, loc="lower right")
        ax.set_title(tr("Bottlenecks: waiting time before activity", lang), loc="left")
        ax.grid(axis="y", visible=False)
        return _save(fig, png_path)


def anomaly_severity_chart(
    severity_counts: Mapping[str, int],
    png_path: Path,
    total_cases: int | None = None,
    lang: str = "en",
) -> Path:
    """Bars of anomalous cases by severity ('high', 'medium', 'low')."""
    with rc_context(_style()):
        order = [("high", _RED), ("medium", _ORANGE), ("low", _GREY)]
        fig, ax = _figure(5.0, 2.6)
        counts = [int(severity_counts.get(k, 0) or 0) for k, _ in order]
        x = np.arange(len(order))
        ax.bar(x, counts, color=[c for _, c in order], width=0.6)
        ax.set_xticks(x, [tr(k, lang) for k, _ in order])
        for xi, n in zip(x, counts, strict=True):
            share = f" ({100 * n / total_cases:.1f}%)" if total_cases else ""
            ax.text(xi, n, f"{n:,}{share}", ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, max(1, max(counts)) * 1.2)
        ax.set_ylabel(tr("cases", lang))
        ax.set_title(
            tr("Anomalous cases by severity ({n} in all)", lang).format(n=f"{sum(counts):,}"),
            loc="left",
        )
        ax.grid(axis="x", visible=False)
        return _save(fig, png_path)
