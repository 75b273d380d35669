"""A minimal canonical-frame loader for tests of phases after loading.

Tests of the loader itself use analysis.eventlog; this keeps the other tests independent of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.columns import ACTIVITY, CASE, RESOURCE, ROW, TIMESTAMP


def canonical_frame(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if name.endswith(".csv"):
        raw = pd.read_csv(path, sep=None, engine="python", keep_default_na=False, dtype=str)
        raw = raw.rename(
            columns={
                "Case ID": CASE,
                "Activity": ACTIVITY,
                "Complete Timestamp": TIMESTAMP,
                "org:group": RESOURCE,
            }
        )
        raw[TIMESTAMP] = pd.to_datetime(
            raw[TIMESTAMP], format="%Y/%m/%d %H:%M:%S.%f", utc=True, errors="coerce"
        )
    else:
        from r4pm.df import import_xes

        raw = import_xes(str(path))[0].to_pandas()
        raw[TIMESTAMP] = pd.to_datetime(raw[TIMESTAMP]).dt.tz_localize("UTC")
    raw = raw.dropna(subset=[TIMESTAMP])
    raw[CASE] = raw[CASE].astype(str)
    raw[ACTIVITY] = raw[ACTIVITY].astype(str)
    if RESOURCE in raw:
        raw[RESOURCE] = raw[RESOURCE].fillna("").astype(str)
    raw[ROW] = np.arange(len(raw), dtype=np.int64)
    return raw.sort_values([CASE, TIMESTAMP, ROW], kind="stable").reset_index(drop=True)
