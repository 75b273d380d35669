"""Date and header traps of issue #14: bpic2012 exported as CSV the way real exports look.

Builds, from ../shared/datasets/bpic2012.xes.gz (or --log), in a temp directory:
  1. the date trap: `dd.mm.yyyy HH:MM:SS` timestamps, rows ordered so the first ones are all
     1-12 October (a format guessed from the first rows reads them month-first);
  2. the same log with Japanese headers (ケースID, アクティビティ, タイムスタンプ, リソース,
     ライフサイクル) and ISO timestamps;
  3. the same log with German headers (Fall, Aktivität, Zeitstempel, Ressource, Lebenszyklus);
loads each with the engine and prints its figures next to the XES's (the goal: identical).

  .venv/bin/python bench/bench_dates.py [--log PATH] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _stack import metric, write_json  # noqa: E402

from analysis.columns import ACTIVITY, CASE, LIFECYCLE, RESOURCE, ROW, TIMESTAMP  # noqa: E402
from analysis.eventlog import LoadResult, load_event_log  # noqa: E402
from analysis.performance import compute_performance  # noqa: E402

DATASETS = Path(os.environ.get("PMOPS_DATASETS", ROOT.parent / "shared" / "datasets"))

JAPANESE = {
    CASE: "ケースID",
    ACTIVITY: "アクティビティ",
    TIMESTAMP: "タイムスタンプ",
    RESOURCE: "リソース",
    LIFECYCLE: "ライフサイクル",
}
GERMAN = {
    CASE: "Fall",
    ACTIVITY: "Aktivität",
    TIMESTAMP: "Zeitstempel",
    RESOURCE: "Ressource",
    LIFECYCLE: "Lebenszyklus",
}


def day_first_trap(events: pd.DataFrame, path: Path) -> Path:
    """dd.mm.yyyy HH:MM:SS (the milliseconds dropped), the 1-12 October rows first."""
    frame = events.drop(columns=[ROW]).copy()
    stamps = frame.pop(TIMESTAMP)
    frame.insert(2, "timestamp", stamps.dt.strftime("%d.%m.%Y %H:%M:%S"))
    early = ((stamps.dt.month == 10) & (stamps.dt.day <= 12)).to_numpy()
    order = np.concatenate([np.flatnonzero(early), np.flatnonzero(~early)])
    frame = frame.iloc[order].rename(
        columns={CASE: "case_id", ACTIVITY: "activity", RESOURCE: "resource"}
    )
    frame.to_csv(path, index=False)
    return path


def renamed(events: pd.DataFrame, names: dict[str, str], path: Path) -> Path:
    """ISO timestamps (milliseconds kept), the given headers."""
    frame = events.drop(columns=[ROW]).copy()
    frame[TIMESTAMP] = frame[TIMESTAMP].dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    frame.rename(columns=names).to_csv(path, index=False)
    return path


def figures(result: LoadResult) -> dict[str, Any]:
    events = result.events
    perf = compute_performance(events)
    variants = events.groupby(CASE, sort=False)[ACTIVITY].agg(tuple).nunique()
    top = perf.bottlenecks[0] if perf.bottlenecks else None
    return {
        "events": len(events),
        "cases": result.cases,
        "variants": int(variants),
        "mean cycle (days)": round(perf.average_cycle_hours / 24, 2),
        "median cycle (h)": round(perf.median_cycle_hours, 2),
        "efficiency (%)": None if perf.efficiency is None else round(perf.efficiency, 2),
        "top bottleneck": None if top is None else f"{top.activity} {top.mean_wait_hours:.1f} h",
        "first event": str(result.to_dict()["timeRange"]["start"])[:19],
        "last event": str(result.to_dict()["timeRange"]["end"])[:19],
        "data quality": result.data_quality_score,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log", type=Path, default=DATASETS / "bpic2012.xes.gz")
    parser.add_argument("--keep", type=Path, help="write the exports here (kept)")
    parser.add_argument("--no-wait", action="store_true", help="accepted for bench/run_all.py")
    args = parser.parse_args()
    t0 = time.perf_counter()
    xes = load_event_log(args.log)
    columns = {"XES": (figures(xes), time.perf_counter() - t0)}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = args.keep or tmp_dir
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
        builds = {
            "dd.mm.yyyy trap": day_first_trap(xes.events, Path(tmp) / "trap.csv"),
            "Japanese headers": renamed(xes.events, JAPANESE, Path(tmp) / "ja.csv"),
            "German headers": renamed(xes.events, GERMAN, Path(tmp) / "de.csv"),
        }
        for name, path in builds.items():
            t0 = time.perf_counter()
            result = load_event_log(path)
            columns[name] = (figures(result), time.perf_counter() - t0)
            how = result.data_quality_method.split("read as ")[1].split(";")[0]
            print(f"{name}: timestamps read as {how}", file=sys.stderr)
    names = list(columns)
    print(f"log: {args.log.name}\n")
    print("| figure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for key in columns["XES"][0]:
        row = [str(columns[n][0][key]) for n in names]
        print(f"| {key} | " + " | ".join(row) + " |")
    print("| load seconds | " + " | ".join(f"{columns[n][1]:.2f}" for n in names) + " |")
    same = all(_same(columns, n) for n in names)
    print(f"\nidentical to the XES: {same}")
    metrics = [
        metric(
            f"{n}: figures identical to the XES",
            float(_same(columns, n)),
            "bool",
            "= 1",
            _same(columns, n),
        )
        for n in names[1:]
    ]
    metrics += [metric(f"{n}: load", columns[n][1], "s") for n in names]
    write_json(
        "dates",
        {"metrics": metrics, "figures": {n: columns[n][0] for n in names}, "log": args.log.name},
    )


def _same(columns: dict[str, tuple[dict[str, Any], float]], name: str) -> bool:
    """The export's figures equal the XES's (the trap's time range to the second)."""
    return all(columns[name][0][k] == v for k, v in columns["XES"][0].items())


if __name__ == "__main__":
    main()
