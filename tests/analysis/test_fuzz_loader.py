"""Fuzzing the loader the upload uses (`inspect_event_log`, issue #16): whatever the bytes, it
returns a summary or raises an AnalysisError (a 4xx problem); any other exception, a panic of the
Rust XES reader included, is a 5xx and fails the test.

PMOPS_FUZZ_EXAMPLES examples per strategy (default 40, so `make test` stays short);
`make reliability` sets it so that the examples add up to more than 10,000.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

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

EXAMPLES = int(os.environ.get("PMOPS_FUZZ_EXAMPLES", "40"))
BOMBS = max(EXAMPLES // 100, 3)  # a few MB each to decompress

fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def load_or_refuse(data: bytes, name: str = "upload") -> None:
    """The property: inspect_event_log answers or raises AnalysisError, nothing else."""
    with tempfile.TemporaryDirectory(prefix="pmops-fuzz-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            inspect_event_log(path)
        except AnalysisError as exc:
            assert exc.message.strip(), repr(exc)  # answered as a 422 naming exc.field
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # PanicException of pyo3 is a BaseException
            raise AssertionError(
                f"{type(exc).__name__} escaped the loader: {exc!r}; input ({len(data)} bytes): "
                f"{data[:400]!r}"
            ) from exc


@fuzz
@given(csv_files())
def test_fuzz_csv(data: bytes) -> None:
    load_or_refuse(data, "log.csv")


@fuzz
@given(xes_files())
def test_fuzz_xes(data: bytes) -> None:
    load_or_refuse(data, "log.xes")


@fuzz
@given(parquet_files())
def test_fuzz_parquet(data: bytes) -> None:
    load_or_refuse(data, "log.parquet")


@fuzz
@given(gzip_files())
def test_fuzz_gzip(data: bytes) -> None:
    load_or_refuse(data, "log.xes.gz")


@fuzz
@given(random_bytes)
def test_fuzz_random_bytes(data: bytes) -> None:
    load_or_refuse(data)


@settings(fuzz, max_examples=BOMBS)
@given(gzip_bombs())
def test_fuzz_gzip_bombs_within_limits(data: bytes) -> None:
    load_or_refuse(data, "bomb.gz")


def test_examples_add_up_in_make_reliability() -> None:
    """The Makefile's reliability target runs at least 10,000 fuzzed inputs."""
    makefile = (Path(__file__).parents[2] / "Makefile").read_text()
    line = next(ln for ln in makefile.splitlines() if ln.startswith("FUZZ_EXAMPLES"))
    per_strategy = int(line.split("=")[-1])
    assert 5 * per_strategy + max(per_strategy // 100, 3) >= 10_000
