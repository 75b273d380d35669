"""Fuzzing the loader the upload uses (`inspect_event_log`, issue #16): whatever the bytes, it
returns a summary or raises an AnalysisError (a 422 problem naming the field); any other
exception, a panic of the Rust XES reader included, would be a 5xx and fails the test.

PMOPS_FUZZ_EXAMPLES examples per strategy (default 25, so `make test` stays short);
`make reliability` sets it (FUZZ_EXAMPLES in the Makefile) so that they add up to more than
10,000. The crashes found are kept as regressions in tests/analysis/test_fuzz_regressions.py.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.errors import AnalysisError
from analysis.eventlog import inspect_event_log
from tests.analysis.fuzz_inputs import (
    csv_files,
    gzip_bombs,
    gzip_files,
    parquet_files,
    random_bytes,
    xes_files,
)

pytestmark = pytest.mark.security

EXAMPLES = int(os.environ.get("PMOPS_FUZZ_EXAMPLES", "25"))
BOMBS = max(EXAMPLES // 100, 3)  # a few MB each to decompress


def load_or_refuse(data: bytes, name: str = "upload") -> str:
    """The property: inspect_event_log answers or raises AnalysisError, nothing else.
    Returns "loaded" or the error's code."""
    with tempfile.TemporaryDirectory(prefix="pmops-fuzz-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            inspect_event_log(path)
        except AnalysisError as exc:
            assert exc.message.strip(), repr(exc)  # answered as a 422 naming exc.field
            return exc.code
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # PanicException of pyo3 is a BaseException
            raise AssertionError(
                f"{type(exc).__name__} escaped the loader: {exc!r}; input ({len(data)} bytes): "
                f"{data[:400]!r}"
            ) from exc
    return "loaded"


def fuzz(
    strategy: st.SearchStrategy[bytes],
    name: str,
    examples: int,
    record_property: Callable[[str, object], None],
) -> None:
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=examples,
        deadline=None,
        # make test: the same examples every run (CI never meets a new input by chance);
        # make reliability sets PMOPS_FUZZ_EXAMPLES and explores afresh each run
        derandomize="PMOPS_FUZZ_EXAMPLES" not in os.environ,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(strategy)
    def run(data: bytes) -> None:
        outcomes[load_or_refuse(data, name)] += 1

    try:
        run()
    finally:
        tried = sum(outcomes.values())
        record_property("tried", tried)
        common = ", ".join(f"{code} {n}" for code, n in outcomes.most_common(4))
        record_property("observed", f"{tried} files: {common}; no other exception")


def test_fuzz_csv(record_property: Callable[[str, object], None]) -> None:
    """Fuzzed CSV files (recognised and random headers, delimiters, quoting, NULs, invalid
    UTF-8, huge fields, mixed and out-of-range timestamps) each load or get a 422."""
    fuzz(csv_files(), "log.csv", EXAMPLES, record_property)


def test_fuzz_xes(record_property: Callable[[str, object], None]) -> None:
    """Fuzzed XES files (empty <event/>, missing keys, bad dates, stray and nested tags, events
    outside traces, truncated) each load or get a 422."""
    fuzz(xes_files(), "log.xes", EXAMPLES, record_property)


def test_fuzz_parquet(record_property: Callable[[str, object], None]) -> None:
    """Fuzzed Parquet files (all-null, binary, nested, struct, tz timestamp, overflowing and
    duplicate-named columns; truncated) each load or get a 422."""
    fuzz(parquet_files(), "log.parquet", EXAMPLES, record_property)


def test_fuzz_gzip(record_property: Callable[[str, object], None]) -> None:
    """gzip of fuzzed CSV/XES/Parquet/bytes (whole, truncated, twice, trailing bytes, several
    members) each load or get a 422."""
    fuzz(gzip_files(), "log.xes.gz", EXAMPLES, record_property)


def test_fuzz_random_bytes(record_property: Callable[[str, object], None]) -> None:
    """Random bytes (also behind gzip, Parquet and XML magic) each get a 422."""
    fuzz(random_bytes, "upload", EXAMPLES, record_property)


def test_fuzz_gzip_bombs_within_limits(record_property: Callable[[str, object], None]) -> None:
    """gzip bombs of up to 8 MB (zeros, CSV rows, <event/>s) each load or get a 422."""
    fuzz(gzip_bombs(), "bomb.gz", BOMBS, record_property)


def test_examples_add_up_in_make_reliability() -> None:
    """The Makefile's reliability target runs at least 10,000 fuzzed loader inputs."""
    makefile = (Path(__file__).parents[2] / "Makefile").read_text()
    line = next(ln for ln in makefile.splitlines() if ln.startswith("FUZZ_EXAMPLES"))
    per_strategy = int(line.split("=")[-1])
    assert 5 * per_strategy + max(per_strategy // 100, 3) >= 10_000
    assert "PMOPS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES)" in makefile
