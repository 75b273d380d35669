"""Generators of the wide and large event logs the memory bench analyses (issue #14 item 10).

  .venv/bin/python bench/wide_logs.py activities OUT.csv   # ~3.9 MB, 100,000 distinct activities
  .venv/bin/python bench/wide_logs.py columns OUT.csv      # 300 rows, 100,000 columns
  .venv/bin/python bench/wide_logs.py variants OUT.parquet # 1.57M events, ~6x bpic2012's variants

Every generator is deterministic (fixed seed) and takes options to build smaller versions for
tests (`--activities`, `--columns`, ...).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("PMOPS_DATASETS", ROOT.parent / "shared" / "datasets"))
START = np.datetime64("2024-01-01T00:00:00", "s")


def many_activities(
    path: Path,
    activities: int = 100_000,
    extra_events: int = 10_000,
    cases: int = 3_000,
    seed: int = 0,
) -> Path:
    """A CSV where every one of `activities` names occurs at least once, plus `extra_events`
    drawn from a Zipf-like law (a few frequent activities), spread over `cases` cases.

    Columns case_id, activity, timestamp (ISO, seconds); 100,000 activities and 10,000 extra
    events give 110,000 rows, about 3.8 MB."""
    rng = np.random.default_rng(seed)
    names = np.array([f"a{i:05d}" for i in range(activities)], dtype=object)
    ranks = np.minimum(rng.zipf(1.3, extra_events) - 1, activities - 1)
    chosen = np.concatenate([np.arange(activities), ranks])
    rng.shuffle(chosen)
    n = len(chosen)
    case = rng.integers(0, cases, n)
    # each case's events one to 600 minutes apart, in row order within the case
    order = np.argsort(case, kind="stable")
    case, chosen = case[order], chosen[order]
    gaps = rng.integers(60, 36_000, n)
    new_case = np.ones(n, dtype=bool)
    new_case[1:] = case[1:] != case[:-1]
    case_start = rng.integers(0, 365 * 86_400, cases)
    offset = np.cumsum(gaps)
    first_offset = np.maximum.accumulate(np.where(new_case, offset, 0))
    seconds = case_start[case] + offset - first_offset
    frame = pd.DataFrame(
        {
            "case_id": [f"c{c:05d}" for c in case],
            "activity": names[chosen],
            "timestamp": (START + seconds.astype("timedelta64[s]")).astype(str),
        }
    )
    frame.to_csv(path, index=False)
    return path


def many_columns(path: Path, columns: int = 100_000, rows: int = 300, seed: int = 0) -> Path:
    """A CSV with case_id, activity, timestamp and `columns - 3` extra attribute columns
    (`attr_00000`...; one-digit values, a third of them empty), `rows` events in 30 cases."""
    rng = np.random.default_rng(seed)
    extra = columns - 3
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["case_id", "activity", "timestamp", *(f"attr_{i:05d}" for i in range(extra))])
        digits = np.array(["", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", ""], dtype=object)
        for r in range(rows):
            case = r % 30
            ts = START + np.timedelta64(r * 3_600 + case * 60, "s")
            values = digits[rng.integers(0, len(digits), extra)]
            out.writerow([f"c{case:03d}", f"step {r // 30 % 12}", str(ts), *values])
    return path


def more_variants(path: Path, source: Path | None = None, copies: int = 6, seed: int = 0) -> Path:
    """bpic2012 with every case replicated `copies` times (new case ids); copy 0 is the
    original, copy k > 0 swaps two adjacent events' activity (with lifecycle and resource) at a
    position drawn from (variant, k), so the cases of one variant stay one variant per copy and
    the log has up to `copies` × bpic2012's variants. Timestamps are kept in place, so the
    event order stays the time order. Written as Parquet."""
    sys.path.insert(0, str(ROOT))
    from analysis.columns import ACTIVITY, CASE, ROW
    from analysis.eventlog import load_event_log

    events = load_event_log(source or DATASETS / "bpic2012.xes.gz").events.drop(columns=[ROW])
    events = events.reset_index(drop=True)
    case_codes, _ = pd.factorize(events[CASE], sort=False)
    moved = [c for c in (ACTIVITY, "lifecycle:transition", "org:resource") if c in events.columns]
    bounds = np.flatnonzero(np.r_[True, case_codes[1:] != case_codes[:-1], True])
    starts, ends = bounds[:-1], bounds[1:]
    acts = events[ACTIVITY].to_numpy()
    # per case: its variant's hash and the positions where two different activities follow
    keys, swappable = [], []
    for s, e in zip(starts, ends, strict=True):
        trace = acts[s:e]
        keys.append(zlib.crc32("\x1f".join(trace).encode()))
        swappable.append(np.flatnonzero(trace[1:] != trace[:-1]))
    parts = []
    for k in range(copies):
        part = events.copy()
        if k:
            i = np.array(
                [
                    s + int(pos[(key * 2654435761 + k * 97 + seed) % len(pos)])
                    for s, key, pos in zip(starts, keys, swappable, strict=True)
                    if len(pos)
                ],
                dtype=np.int64,
            )
            for col in moved:
                values = part[col].to_numpy(copy=True)
                values[i], values[i + 1] = values[i + 1], values[i].copy()
                part[col] = values
            part[CASE] = part[CASE].astype(str) + f"#{k}"
        parts.append(part)
    big = pd.concat(parts, ignore_index=True)
    big.to_parquet(path, index=False)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("kind", choices=("activities", "columns", "variants"))
    ap.add_argument("out", type=Path)
    ap.add_argument("--activities", type=int, default=100_000)
    ap.add_argument("--columns", type=int, default=100_000)
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--copies", type=int, default=6)
    args = ap.parse_args()
    if args.kind == "activities":
        path = many_activities(args.out, args.activities)
    elif args.kind == "columns":
        path = many_columns(args.out, args.columns, args.rows)
    else:
        path = more_variants(args.out, copies=args.copies)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
