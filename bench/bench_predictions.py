"""Predictions against their baselines on real logs (held-out figures, one time split by case).

For receipt, helpdesk, sepsis and bpic2012 (../shared/datasets): remaining cycle time — mean
absolute error and the share within ±25 % of the actual remaining time — for the model, the
global median, the median per last activity and "finished now" (always 0); next activity —
accuracy of the model, the most frequent next activity after the last activity and the most
frequent one overall; which predictor validation selected; the prediction time (both
predictions, split and prefixes included, frame already loaded).

  .venv/bin/python bench/bench_predictions.py [--logs receipt helpdesk ...] [--repeat 3]
      [--compare-ref REF]   # also time analysis/prediction.py as of git REF, interleaved

Raw figures go to bench/results/predictions.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from analysis import prediction  # noqa: E402
from analysis.eventlog import load_event_log  # noqa: E402

DATASETS = Path(os.environ.get("PMOPS_DATASETS", ROOT.parent / "shared" / "datasets"))
LOGS = {
    "receipt": "receipt.xes.gz",
    "helpdesk": "helpdesk.xes.gz",
    "sepsis": "sepsis.csv",
    "bpic2012": "bpic2012.xes.gz",
}


def _module_at(ref: str) -> ModuleType:
    """analysis/prediction.py as of git `ref`, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{ref}:analysis/prediction.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="bench-pred-")) / "prediction_ref.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("prediction_ref", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["prediction_ref"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _timed(module: Any, events: Any) -> tuple[float, float]:
    """(wall, CPU) seconds of both predictions; CPU time is steadier on a shared machine."""
    module._last_prefixes.clear()
    start, cpu = time.perf_counter(), time.process_time()
    module.predict_cycle_time(events)
    module.predict_next_activity(events)
    return time.perf_counter() - start, time.process_time() - cpu


def bench_log(name: str, repeat: int, ref: ModuleType | None) -> dict[str, Any]:
    events = load_event_log(DATASETS / LOGS[name]).events
    times: list[tuple[float, float]] = []
    ref_times: list[tuple[float, float]] = []
    for _ in range(repeat):  # interleaved, so both see the same machine load
        if ref is not None:
            ref_times.append(_timed(ref, events))
        times.append(_timed(prediction, events))
    prediction._last_prefixes.clear()
    cycle = prediction.predict_cycle_time(events)
    path = prediction.predict_next_activity(events)
    _, pre, _ = prediction._split_prefixes(events, 0)
    row: dict[str, Any] = {
        "log": name,
        "events": len(events),
        "seconds": times,
        "refSeconds": ref_times,
        "cycle": cycle.to_dict(),
        "path": path.to_dict(),
    }
    if pre is not None:  # "finished now": always predict 0 remaining
        actual = pre.remaining_hours[pre.test]
        row["finishedNow"] = prediction.remaining_time_scores(np.zeros(len(actual)), actual)
    return row


def _fig(d: dict[str, Any] | None, key: str, pct: bool = False) -> str:
    value = (d or {}).get(key)
    if value is None:
        return "n/a"
    return f"{100 * value:.1f} %" if pct else f"{value:,.1f}"


def report(rows: list[dict[str, Any]]) -> None:
    print("\nRemaining cycle time, held-out (MAE hours / within ±25 %); * = used\n")
    print("| log | model | global median | median per last activity | finished now (0) | used |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        c = r["cycle"]
        by = {p["name"]: p["heldOut"] for p in c["predictors"]}
        cells = []
        for name in (prediction.MODEL, prediction.GLOBAL_MEDIAN, prediction.LAST_ACTIVITY_MEDIAN):
            mark = "*" if name == c["usedPredictor"] else ""
            h = by.get(name)
            cells.append(
                f"{_fig(h, 'meanAbsoluteErrorHours')} / {_fig(h, 'withinTolerance', True)}{mark}"
            )
        z = r.get("finishedNow")
        cells.append(f"{_fig(z, 'meanAbsoluteErrorHours')} / {_fig(z, 'withinTolerance', True)}")
        print(f"| {r['log']} | " + " | ".join(cells) + f" | {c['usedPredictor']} |")
    print("\nNext activity, held-out accuracy; * = used\n")
    print("| log | model | most frequent after last activity | most frequent | used | confidence |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        p = r["path"]
        by = {q["name"]: q["heldOut"] for q in p["predictors"]}
        cells = [
            _fig(by.get(n), "accuracy", True) + ("*" if n == p["usedPredictor"] else "")
            for n in (
                prediction.MODEL,
                prediction.LAST_ACTIVITY_MOST_FREQUENT,
                prediction.MOST_FREQUENT,
            )
        ]
        print(
            f"| {r['log']} | " + " | ".join(cells) + f" | {p['usedPredictor']} | "
            f"{p['confidence']} |"
        )
    print("\nSelection on validation cases (MAE hours / accuracy)\n")
    for r in rows:
        print(f"- {r['log']}: cycle: {r['cycle']['selectionReason']}")
        print(f"  next: {r['path']['selectionReason']}")
    print("\nPrediction time (both predictions, s, min / median / max: wall; CPU)\n")
    for r in rows:
        line = f"- {r['log']} ({r['events']:,} events): {_spread(r['seconds'])}"
        if r["refSeconds"]:
            line += f"; reference: {_spread(r['refSeconds'])}"
        print(line)


def _spread(pairs: list[tuple[float, float]]) -> str:
    def one(values: list[float]) -> str:
        return f"{min(values):.2f} / {float(np.median(values)):.2f} / {max(values):.2f}"

    return f"wall {one([w for w, _ in pairs])}; CPU {one([c for _, c in pairs])}"


def metrics(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Headline figures for bench/run_all.py (no goals: the issue sets none for predictions)."""
    from _stack import metric

    out: list[dict[str, Any]] = []
    for r in rows:
        c, p, log = r["cycle"], r["path"], r["log"]
        held = {q["name"]: q["heldOut"] for q in c["predictors"]}
        nxt = {q["name"]: q["heldOut"] for q in p["predictors"]}
        for name in (prediction.MODEL, prediction.GLOBAL_MEDIAN, prediction.LAST_ACTIVITY_MEDIAN):
            h = held.get(name) or {}
            out.append(metric(f"{log}: {name} MAE", h.get("meanAbsoluteErrorHours"), "h"))
            out.append(metric(f"{log}: {name} within 25 %", h.get("withinTolerance"), "share"))
        zero = r.get("finishedNow") or {}
        out.append(metric(f"{log}: finished now within 25 %", zero.get("withinTolerance"), "share"))
        for name in (prediction.MODEL, prediction.LAST_ACTIVITY_MOST_FREQUENT):
            acc = (nxt.get(name) or {}).get("accuracy")
            out.append(metric(f"{log}: next activity {name} accuracy", acc, "share"))
        out.append(metric(f"{log}: prediction CPU (median)", _median_cpu(r["seconds"]), "s"))
    return out


def _median_cpu(pairs: list[tuple[float, float]]) -> float | None:
    return float(np.median([c for _, c in pairs])) if pairs else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logs", nargs="+", default=list(LOGS), choices=list(LOGS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare-ref", default=None)
    parser.add_argument("--no-wait", action="store_true", help="accepted for bench/run_all.py")
    args = parser.parse_args()
    ref = _module_at(args.compare_ref) if args.compare_ref else None
    rows = [bench_log(name, args.repeat, ref) for name in args.logs]
    report(rows)
    out = ROOT / "bench" / "results" / "predictions.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"metrics": metrics(rows), "rows": rows}, indent=1))
    print(f"\nraw figures: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
