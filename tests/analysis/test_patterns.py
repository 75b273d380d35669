from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.columns import ACTIVITY, CASE
from analysis.dfg import event_seconds
from analysis.patterns import (
    CRITICAL_QUANTILE,
    FREQUENT_SHARE,
    RARE_SHARE,
    SEPARATOR,
    case_variants,
    find_patterns,
)
from tests._logs import canonical_frame
from tests.synthetic_logs import generate_log

KEYS = {
    "frequentPatterns",
    "rarePatterns",
    "criticalPaths",
    "definitions",
    "frequent",
    "rare",
    "critical",
}


def _independent(events: pd.DataFrame) -> pd.DataFrame:
    """Variants, counts and median durations computed the slow, obvious way."""
    secs = pd.Series(event_seconds(events), index=events.index)
    per_case = events.assign(s=secs).groupby(CASE, sort=False)
    cases = pd.DataFrame(
        {
            "variant": per_case[ACTIVITY].agg(lambda a: SEPARATOR.join(a)),
            "hours": (per_case["s"].max() - per_case["s"].min()) / 3600,
        }
    )
    out = cases.groupby("variant")["hours"].agg(["size", "median"])
    out["share"] = out["size"] / len(cases)
    out.attrs["p75"] = float(np.quantile(cases["hours"], CRITICAL_QUANTILE))
    return out


@pytest.mark.parametrize("name", ["receipt.xes.gz", "sepsis.csv"])
def test_patterns_match_an_independent_count(datasets: Path, name: str) -> None:
    events = canonical_frame(datasets / name)
    result = find_patterns(events)
    d = result.to_dict()
    assert set(d) == KEYS
    ref = _independent(events)
    frequent = ref[(ref["share"] >= FREQUENT_SHARE) & (ref["size"] >= 2)]
    rare = ref[(ref["size"] == 1) | (ref["share"] < RARE_SHARE)]
    critical = ref[
        (ref["size"] >= 2) & (ref["share"] >= RARE_SHARE) & (ref["median"] >= ref.attrs["p75"])
    ]
    assert d["frequentPatterns"] == len(frequent)
    assert d["rarePatterns"] == len(rare)
    assert d["criticalPaths"] == len(critical)
    assert result.total_variants == len(ref)
    for item in d["frequent"]:
        assert ref.loc[SEPARATOR.join(item["variant"]), "size"] == item["cases"]
    assert [i["cases"] for i in d["frequent"]] == sorted(frequent["size"], reverse=True)[:10]
    assert all(ref.loc[SEPARATOR.join(i["variant"]), "size"] == i["cases"] for i in d["rare"])
    for item in d["critical"]:
        assert item["medianDurationHours"] == pytest.approx(
            ref.loc[SEPARATOR.join(item["variant"]), "median"], abs=0.01
        )
    assert len(d["frequent"]) <= 10 and len(d["rare"]) <= 10 and len(d["critical"]) <= 10
    assert set(d["definitions"]) == {"frequent", "rare", "critical"}
    print(f"\n{name}: {[(k, d[k]) for k in ('frequentPatterns', 'rarePatterns', 'criticalPaths')]}")


def test_given_variant_counts_are_used() -> None:
    events = generate_log(n_cases=800, anomaly_share=0.05, seed=2).events
    computed = find_patterns(events)
    variants, variant_of, _ = case_variants(events)
    tally = np.bincount(variant_of)
    counts = [(variants[i], int(tally[i])) for i in np.argsort(-tally, kind="stable")]
    assert find_patterns(events, variant_counts=None).to_dict() == computed.to_dict()
    # a discovery phase may pass its own counts: they decide the classification
    doubled = [(v, 2 * c) for v, c in counts]
    given = find_patterns(events, variant_counts=doubled)
    assert [v.cases for v in given.frequent] == [2 * v.cases for v in computed.frequent]


def test_synthetic_log_has_expected_frequent_paths() -> None:
    log = generate_log(n_cases=2000, anomaly_share=0.05, seed=0)
    result = find_patterns(log.events)
    top = result.frequent[0].activities
    assert top[0] == "Receive order" and top[-1] == "Close order"
    # anomalous cases are the rare variants' main source
    rare_cases = sum(v.cases for v in result.rare)
    assert 0 < rare_cases <= 0.2 * 2000
    assert all(v.share >= FREQUENT_SHARE for v in result.frequent)


def test_tiny_log(datasets: Path) -> None:
    events = canonical_frame(datasets / "running-example.xes")
    d = find_patterns(events).to_dict()
    assert d["frequentPatterns"] == 0 and d["rarePatterns"] == 6 and d["criticalPaths"] == 0
