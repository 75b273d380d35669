"""The process map: the directly-follows graph drawn by graphviz `dot` as SVG (and PNG).

We write the DOT source ourselves rather than going through pm4py's visualiser so that labels are
escaped once and correctly, big graphs are cut to the most frequent part (and the map says so),
and `dot` runs under a timeout.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis.dfg import DfgEdge, DirectlyFollows
from analysis.errors import AnalysisError
from analysis.formatting import hours_text

DOT_TIMEOUT_SECONDS = 60.0
PNG_DPI = 110
# inches; dot scales a bigger drawing down to fit, which keeps the PNG a few megapixels at most
PNG_MAX_SIZE = 22

# node fill runs from a pale to a strong blue with the activity's frequency
_PALE = np.array([0xEE, 0xF4, 0xFB])
_STRONG = np.array([0x2B, 0x6C, 0xB0])
# slow edges: quantiles of the shown transitions' mean times above which an edge is red / orange
_SLOW_RED, _SLOW_ORANGE = 0.90, 0.75
_EDGE_RED, _EDGE_ORANGE, _EDGE_PLAIN = "#c53030", "#dd8a1e", "#5a6b7d"


@dataclass(frozen=True)
class ProcessMap:
    svg_path: Path
    png_path: Path | None
    activities_total: int
    activities_shown: int
    edges_total: int
    edges_shown: int
    truncated: bool
    title: str

    def to_dict(self) -> dict[str, object]:
        return {
            "svgPath": str(self.svg_path),
            "pngPath": str(self.png_path) if self.png_path is not None else None,
            "activitiesTotal": self.activities_total,
            "activitiesShown": self.activities_shown,
            "edgesTotal": self.edges_total,
            "edgesShown": self.edges_shown,
            "truncated": self.truncated,
            "title": self.title,
        }


def dot_quote(*lines: str) -> str:
    """A DOT double-quoted string of one or more label lines.

    Backslashes are doubled so that names never act as escapes such as \\N or \\l, quotes are
    escaped, line breaks inside a name become spaces; the given lines are joined with DOT's \\n.
    """
    escaped = [
        " ".join(str(line).splitlines()).replace("\\", "\\\\").replace('"', '\\"') for line in lines
    ]
    return '"' + "\\n".join(escaped) + '"'


def _select(
    dfg: DirectlyFollows, max_activities: int, max_edges: int
) -> tuple[list[str], list[DfgEdge]]:
    """The most frequent activities, then the edges among them: each shown activity keeps its
    strongest incoming and outgoing edge (so the map stays connected where the log is), the
    remaining budget goes to the most frequent edges."""
    activities = sorted(dfg.activity_counts, key=lambda a: (-dfg.activity_counts[a], a))
    shown = activities[: max(1, max_activities)]
    keep = set(shown)
    candidates = [e for e in dfg.edges if e.source in keep and e.target in keep]
    candidates.sort(key=lambda e: (-e.frequency, e.source, e.target))
    if len(candidates) <= max_edges:
        return shown, candidates
    chosen: dict[tuple[str, str], DfgEdge] = {}
    best_out: dict[str, DfgEdge] = {}
    best_in: dict[str, DfgEdge] = {}
    for e in candidates:  # sorted by frequency, so the first seen is the strongest
        best_out.setdefault(e.source, e)
        best_in.setdefault(e.target, e)
    backbone = sorted(
        {(e.source, e.target): e for e in [*best_out.values(), *best_in.values()]}.values(),
        key=lambda e: (-e.frequency, e.source, e.target),
    )
    for e in backbone[:max_edges]:
        chosen[(e.source, e.target)] = e
    for e in candidates:
        if len(chosen) >= max_edges:
            break
        chosen.setdefault((e.source, e.target), e)
    edges = sorted(chosen.values(), key=lambda e: (-e.frequency, e.source, e.target))
    return shown, edges


def _fill(count: int, max_count: int) -> tuple[str, str]:
    """Fill colour and a readable font colour for a node of `count` events."""
    # square root keeps mid-frequency activities visibly shaded next to a dominant one
    t = float(np.sqrt(count / max_count)) if max_count > 0 else 0.0
    rgb = (_PALE + (_STRONG - _PALE) * t).round().astype(int)
    font = "white" if t > 0.55 else "#1a202c"
    return "#{:02x}{:02x}{:02x}".format(*rgb), font


def _edge_colours(edges: list[DfgEdge]) -> list[str]:
    """Red for the slowest tenth of the shown edges, orange for the next 15 %; an edge is only
    marked when it is strictly slower than the median edge, so ties with the bulk stay plain."""
    if len(edges) < 2:
        return [_EDGE_PLAIN] * len(edges)
    means = np.array([e.mean_seconds for e in edges])
    red, orange = np.quantile(means, _SLOW_RED), np.quantile(means, _SLOW_ORANGE)
    median = float(np.median(means))
    colours = []
    for m in means:
        if m > median and m >= red:
            colours.append(_EDGE_RED)
        elif m > median and m >= orange:
            colours.append(_EDGE_ORANGE)
        else:
            colours.append(_EDGE_PLAIN)
    return colours


def _legend(
    dfg: DirectlyFollows, shown: list[str], edges: list[DfgEdge], title: str | None
) -> list[str]:
    """The map's title, what it shows of the graph, and how to read it."""
    n_act, n_edges = len(dfg.activity_counts), len(dfg.edges)
    truncated = len(shown) < n_act or len(edges) < n_edges
    legend = [title or "Process map (directly-follows graph)"]
    if truncated:
        acts = (
            f"the {len(shown)} most frequent of {n_act} activities"
            if len(shown) < n_act
            else f"all {n_act} activities"
        )
        legend.append(f"Showing {acts} and {len(edges)} of {n_edges} transitions (most frequent)")
    else:
        legend.append(f"All {n_act} activities and {n_edges} transitions")
    legend.append(
        "Node: activity and number of events. Edge: number of transitions and mean time between."
    )
    legend.append("Red: slowest 10% of shown transitions by mean time; orange: next 15%")
    return legend


def _dot_header(legend: list[str]) -> list[str]:
    """The graph, node and edge defaults, and the start and end nodes."""
    return [
        "digraph process_map {",
        '  charset="UTF-8";',
        # DejaVu for Latin text, a CJK font for Japanese names (pango falls back per glyph)
        '  graph [rankdir=TB, labelloc=t, fontname="DejaVu Sans,IPAexGothic,Noto Sans CJK JP", '
        f"fontsize=16, nodesep=0.35, ranksep=0.45, label={dot_quote(*legend)}];",
        '  node [shape=box, style="rounded,filled", '
        'fontname="DejaVu Sans,IPAexGothic,Noto Sans CJK JP", fontsize=11, '
        'penwidth=1, color="#4a5568"];',
        '  edge [fontname="DejaVu Sans,IPAexGothic,Noto Sans CJK JP", fontsize=9, arrowsize=0.7];',
        '  "__start__" [label="start", shape=circle, style=filled, fillcolor="#38a169", '
        "fontcolor=white, width=0.6, fixedsize=true];",
        '  "__end__" [label="end", shape=doublecircle, style=filled, fillcolor="#4a5568", '
        "fontcolor=white, width=0.5, fixedsize=true];",
    ]


def build_dot(
    dfg: DirectlyFollows,
    max_activities: int = 40,
    max_edges: int = 120,
    title: str | None = None,
) -> tuple[str, list[str], list[DfgEdge], str]:
    """DOT source, the shown activities, the shown edges and the legend text."""
    shown, edges = _select(dfg, max_activities, max_edges)
    legend = _legend(dfg, shown, edges, title)
    legend_text = "\n".join(legend)

    ids = {a: f"a{i}" for i, a in enumerate(shown)}
    max_count = max((dfg.activity_counts[a] for a in shown), default=0)
    max_freq = max((e.frequency for e in edges), default=0)
    max_start = max((dfg.start_counts.get(a, 0) for a in shown), default=0)
    max_end = max((dfg.end_counts.get(a, 0) for a in shown), default=0)
    max_any = max(max_freq, max_start, max_end, 1)

    def width(freq: int) -> str:
        return f"{1.0 + 5.0 * np.sqrt(freq / max_any):.2f}"

    lines = _dot_header(legend)
    for a in shown:
        count = dfg.activity_counts[a]
        fill, font = _fill(count, max_count)
        label, tip = dot_quote(a, f"{count:,}"), dot_quote(f"{a}: {count:,} events")
        lines.append(
            f'  {ids[a]} [label={label}, fillcolor="{fill}", fontcolor="{font}", tooltip={tip}];'
        )
    for a in shown:
        n = dfg.start_counts.get(a, 0)
        if n:
            lines.append(
                f'  "__start__" -> {ids[a]} [label="{n:,}", style=dashed, color="#38a169", '
                f"penwidth={width(n)}];"
            )
    for e, colour in zip(edges, _edge_colours(edges), strict=True):
        label = dot_quote(f"{e.frequency:,}", hours_text(e.mean_seconds / 3600))
        tip = (
            f"{e.source} -> {e.target}: {e.frequency:,} transitions, mean "
            f"{hours_text(e.mean_seconds / 3600)}, median {hours_text(e.median_seconds / 3600)}"
        )
        lines.append(
            f"  {ids[e.source]} -> {ids[e.target]} [label={label}, "
            f'color="{colour}", fontcolor="{colour}", penwidth={width(e.frequency)}, '
            f"tooltip={dot_quote(tip)}];"
        )
    for a in shown:
        n = dfg.end_counts.get(a, 0)
        if n:
            lines.append(
                f'  {ids[a]} -> "__end__" [label="{n:,}", style=dashed, color="#4a5568", '
                f"penwidth={width(n)}];"
            )
    lines.append("}")
    return "\n".join(lines) + "\n", shown, edges, legend_text


def _run_dot(args: list[str], source: str) -> None:
    dot = shutil.which("dot")
    if dot is None:
        raise AnalysisError(
            "Graphviz 'dot' was not found on PATH; install graphviz to draw the process map",
            code="graphviz_missing",
        )
    try:
        done = subprocess.run(
            [dot, *args],
            input=source.encode("utf-8"),
            capture_output=True,
            timeout=DOT_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AnalysisError(
            f"Graphviz took longer than {DOT_TIMEOUT_SECONDS:.0f} s to lay out the process map",
            code="graphviz_timeout",
        ) from exc
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip()[:500]
        raise AnalysisError(
            f"Graphviz failed to draw the process map: {message}", code="graphviz_failed"
        )


def render_process_map(
    dfg: DirectlyFollows,
    svg_path: Path,
    png_path: Path | None = None,
    max_activities: int = 40,
    max_edges: int = 120,
    title: str | None = None,
) -> ProcessMap:
    if not dfg.activity_counts:
        raise AnalysisError("The event log has no activities to draw a process map from")
    source, shown, edges, legend = build_dot(dfg, max_activities, max_edges, title)
    svg_path = Path(svg_path)
    svg_path.parent.mkdir(parents=True, exist_ok=True)
    _run_dot(["-Tsvg", "-o", str(svg_path)], source)
    if png_path is not None:
        png_path = Path(png_path)
        png_path.parent.mkdir(parents=True, exist_ok=True)
        # separate run: the dpi attribute would also rescale the SVG's coordinates
        _run_dot(
            [
                f"-Gdpi={PNG_DPI}",
                f"-Gsize={PNG_MAX_SIZE},{PNG_MAX_SIZE}",
                "-Tpng",
                "-o",
                str(png_path),
            ],
            source,
        )
    n_act, n_edges = len(dfg.activity_counts), len(dfg.edges)
    return ProcessMap(
        svg_path=svg_path,
        png_path=png_path,
        activities_total=n_act,
        activities_shown=len(shown),
        edges_total=n_edges,
        edges_shown=len(edges),
        truncated=len(shown) < n_act or len(edges) < n_edges,
        title=legend,
    )
